#!/usr/bin/env bash
# A local cluster: redis-server on a free loopback port and K tickcast processes on 127.0.0.1, each in the
# directory (docs/CLUSTER.md). Prints their URLs; Ctrl-C (or SIGTERM) stops everything it started.
#   bash scripts/cluster.sh [K, default 3] [extra tickcast flags...]
# Builds the release server first. Needs redis-server (apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-3}
shift || true
[[ $K =~ ^[1-9][0-9]?$ ]] || { echo "usage: $0 [K, 1 to 99] [tickcast flags...]" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "$0: redis-server not found (apt-get install redis-server)" >&2; exit 2; }
cargo build --release --bin tickcast
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The cluster's shared secret (seat tickets): one random file for every process, gone with the cluster.
secret=$(mktemp)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret"
pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping ${#pids[@]} processes"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    rm -f "$secret"
}
trap stop INT TERM EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    sleep 0.05
done
echo "redis:     redis://127.0.0.1:$redis_port/"
for i in $(seq 1 "$K"); do
    port=$(free_port)
    ./target/release/tickcast --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$redis_port/" \
        --public-url "ws://127.0.0.1:$port" --process-id "local-$i" --cluster-secret-file "$secret" \
        "$@" 2>"target/cluster-$i.log" &
    pids+=($!)
    echo "process $i: http://127.0.0.1:$port (ws://127.0.0.1:$port/ws/ROOM), log target/cluster-$i.log"
done
echo "matchmake:  curl -s -d '{\"type\":\"arena\"}' http://127.0.0.1:$port/matchmake"
echo "the directory: redis-cli -p $redis_port --scan --pattern 'tickcast:*'; Ctrl-C stops everything"
wait
