#!/usr/bin/env bash
# The cluster's numbers in docs/PERFORMANCE.md and docs/CLUSTER.md: redis-server on a free loopback port,
# two release tickcast processes in one cluster, then scripts/cluster_bench.py's three measurements:
# matchmaking requests per second with p50/p99, the cross-process chat latency p50/p99 (backplane), and
# the CPU the cluster's threads take with 1,000 rooms. Stops everything it started.
#   bash scripts/cluster-bench.sh [MATCHMAKE_REQUESTS=4000] [SPEAKERS=50] [ROOMS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-4000}
SPEAKERS=${2:-50}
ROOMS=${3:-1000}
[[ -x .venv/bin/python ]] || { echo "$0: run scripts/test.sh once first (it makes .venv with websockets)" >&2; exit 2; }
cargo build --release --bin tickcast
source scripts/cluster-lib.sh
trap cluster_end EXIT
cluster_begin
ports=()
for i in 1 2; do
    port=$(free_port)
    ./target/release/tickcast --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$redis_port/" \
        --public-url "ws://127.0.0.1:$port" --process-id "bench-$i" --cluster-secret-file "$secret" \
        --npcs 0 --max-rooms 2000 --max-rooms-per-ip 2000 --max-connections-per-ip 4000 \
        --accepts-per-ip-per-s 100000 --accept-burst-per-ip 100000 2>/dev/null &
    pids+=($!)
    ports+=("$port")
done
for port in "${ports[@]}"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" | grep -qx ok && break; sleep 0.05; done
done
sleep 1 # both heartbeats in the directory
echo "cpus: $(nproc), $(lscpu | sed -n 's/^Model name: *//p')"
echo "-- matchmaking: POST /matchmake {\"type\":\"arena\"} on process 1, 4 client threads"
.venv/bin/python scripts/cluster_bench.py matchmake "http://127.0.0.1:${ports[0]}" "$REQUESTS" 4
echo "-- chat: $SPEAKERS players on process 1 say a line a second, one player on process 2 hears them"
.venv/bin/python scripts/cluster_bench.py chat "ws://127.0.0.1:${ports[0]}" "ws://127.0.0.1:${ports[1]}" "$SPEAKERS" 20
echo "-- cluster threads' CPU with $ROOMS rooms on process 2 (a spectator each)"
.venv/bin/python scripts/cluster_bench.py rooms "ws://127.0.0.1:${ports[1]}" "$ROOMS" 20 "${pids[2]}" "${pids[0]}"
