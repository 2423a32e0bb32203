#!/usr/bin/env bash
# Server CPU per tick and bytes per client per tick with N wandering bots at 20 Hz, as in docs/PERFORMANCE.md.
# The release server is pinned to core 0 and the bots to the other cores; both on 127.0.0.1 only; 25 s.
# usage: scripts/tick-cost.sh N      (build first: cargo build --release -p tickcast -p bots)
# SERVER=path picks another server binary; SERVER_FLAGS replaces the per-address limits' switch-off (every
# bot connects from 127.0.0.1), e.g. SERVER_FLAGS= for a build that predates those flags.
set -u
cd "$(dirname "$0")/.."
N=${1:?usage: scripts/tick-cost.sh N}; PORT=${PORT:-7311}
BOT_CORES=1-$(( $(nproc) - 1 ))
taskset -c 0 ${SERVER:-./target/release/tickcast} --listen 127.0.0.1:$PORT --npcs 0 --max-connections $(( N + 64 )) \
    ${SERVER_FLAGS---max-connections-per-ip 0 --accepts-per-ip-per-s 0} 2>/tmp/srv.log &
SP=$!
sleep 0.5
taskset -c $BOT_CORES ./target/release/bots --url ws://127.0.0.1:$PORT/ws --count $N --duration 25s --threads $(( $(nproc) - 1 )) --json /tmp/bots-$N.json >/tmp/bots-$N.txt 2>/tmp/bots-$N.err &
BP=$!
sleep 8   # after ramp-up: measure 12 s of steady state
m1=$(curl -s 127.0.0.1:$PORT/metrics); c1=$(awk '{print $14+$15}' /proc/$SP/stat); t1=$(date +%s.%N)
sleep 12
m2=$(curl -s 127.0.0.1:$PORT/metrics); c2=$(awk '{print $14+$15}' /proc/$SP/stat); t2=$(date +%s.%N)
rss=$(grep VmRSS /proc/$SP/status | awk '{print $2}')
wait $BP
kill -TERM $SP; wait $SP
get() { echo "$1" | awk -v n="$2" '$1==n {print $2}'; }
python3 - "$N" "$c1" "$c2" "$t1" "$t2" "$rss" <<PY
import sys
N,c1,c2,t1,t2,rss=sys.argv[1:]
m1="""$m1"""; m2="""$m2"""
def g(m,n):
    for l in m.splitlines():
        p=l.split()
        if len(p)==2 and p[0]==n: return float(p[1])
    return 0.0
ticks=g(m2,'tickcast_ticks_total')-g(m1,'tickcast_ticks_total')
dur=g(m2,'tickcast_tick_duration_seconds_sum')-g(m1,'tickcast_tick_duration_seconds_sum')
out=g(m2,'tickcast_bytes_out_total')-g(m1,'tickcast_bytes_out_total')
inb=g(m2,'tickcast_bytes_in_total')-g(m1,'tickcast_bytes_in_total')
hz=100.0  # USER_HZ: /proc/PID/stat counts CPU time in 1/100 s
cpu=(float(c2)-float(c1))/hz; wall=float(t2)-float(t1)
clients=g(m2,'tickcast_websockets_open')
print(f"clients={clients:.0f} ticks={ticks:.0f} cpu_pct={100*cpu/wall:.1f} cpu_ms_per_tick={1000*cpu/ticks:.3f} "
      f"tick_work_ms={1000*dur/ticks:.3f} bytes_out_per_client_per_tick={out/ticks/max(clients,1):.0f} "
      f"bytes_in_per_client_per_tick={inb/ticks/max(clients,1):.1f} rss_kib={rss} "
      f"skipped={g(m2,'tickcast_ticks_skipped_total'):.0f} coalesced={g(m2,'tickcast_updates_coalesced_total'):.0f}")
PY
tail -30 /tmp/bots-$N.txt
