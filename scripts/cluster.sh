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
cargo build --release --bin tickcast
source scripts/cluster-lib.sh

stop() {
    trap - INT TERM EXIT
    echo "stopping ${#pids[@]} processes"
    cluster_end
}
trap stop INT TERM EXIT
cluster_begin
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
