#!/usr/bin/env bash
# What many small rooms cost the server, as in docs/PERFORMANCE.md ("Rooms: memory, and rooms nobody is in"):
# K rooms of one bot each (the bots' --rooms K --room-size 1), for --npcs 0 and --npcs 16 (the arena's
# default wanderers in every room): the server's RSS and CPU while the bots play, then with the bots gone
# and every room still open (--room-idle-ms and --resume-grace-ms 600000 keep them). Release server pinned
# to core 0, bots to the others, 127.0.0.1 only; about 40 s. Needs curl and bc.
# usage: scripts/room-cost.sh [K, default 1000]   (build first: cargo build --release -p tickcast -p bots)
set -euo pipefail
cd "$(dirname "$0")/.."
K=${1:-1000}; PORT=${PORT:-7312}
BOT_CORES=1-$(( $(nproc) - 1 ))
HZ=$(getconf CLK_TCK)
rss_kib() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# CPU % of process $1 over the next $2 seconds.
cpu_pct() {
    local c0 c1 t0 t1
    c0=$(cpu_ticks "$1"); t0=$(date +%s.%N); sleep "$2"; c1=$(cpu_ticks "$1"); t1=$(date +%s.%N)
    echo "scale=1; ($c1 - $c0) * 100 / $HZ / ($t1 - $t0)" | bc -l
}
echo "| --npcs | rooms open | RSS idle server MiB | RSS with K players MiB | CPU % with K players | rooms open, players gone (detached) | RSS, players gone MiB | CPU % of the rooms alone |"
echo "|---|---|---|---|---|---|---|---|"
for npcs in 0 16; do
    taskset -c 0 ./target/release/tickcast --listen 127.0.0.1:$PORT --npcs $npcs --max-rooms $(( K + 8 )) \
        --max-connections $(( K + 64 )) --max-rooms-per-ip 0 --max-connections-per-ip 0 --accepts-per-ip-per-s 0 \
        --room-idle-ms 600000 --resume-grace-ms 600000 2>/tmp/room-cost-srv.log &
    SP=$!
    sleep 0.5
    base=$(rss_kib $SP)
    taskset -c "$BOT_CORES" ./target/release/bots --url ws://127.0.0.1:$PORT/ws --rooms "$K" --room-size 1 \
        --duration 14s --connect-rate 500 >/tmp/room-cost-bots.txt 2>/dev/null &
    BP=$!
    sleep 8
    live_cpu=$(cpu_pct $SP 4)
    live=$(rss_kib $SP)
    open=$(metric tickcast_rooms_open)
    wait $BP || true
    sleep 1
    alone_cpu=$(cpu_pct $SP 4)
    after=$(rss_kib $SP)
    open_after="$(metric tickcast_rooms_open) ($(metric tickcast_players_detached))"
    mib() { echo "scale=1; $1 / 1024" | bc -l; }
    echo "| $npcs | $open | $(mib "$base") | $(mib "$live") | $live_cpu | $open_after | $(mib "$after") | $alone_cpu |"
    kill -TERM $SP; wait $SP || true
done
