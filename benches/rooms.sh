#!/usr/bin/env bash
# The rooms benchmark (docs/PERFORMANCE.md, "Rooms"): the same players at the same tick rate, arranged in
# one big room or many small ones, and what a room costs on its own.
#
#   bash benches/rooms.sh [--total 400] [--layouts 1x400,10x40,40x10,100x4] [--duration 20s]
#
# For each layout K x N (K rooms of N wandering players, K x N = --total): start the release server
# (--npcs 0, so a room's world is its players; --default-room bots-0, so it runs exactly the K rooms; the
# per-address limits off, since every bot connects from 127.0.0.1) pinned to one core (--server-cpu, default 0), listening on 127.0.0.1 only; run the bots with
# `--rooms K --room-size N` on the other cores (--bot-cpus) for --duration; once all of them are connected
# and 2 s have passed, read /metrics, /proc/PID/stat and /proc/stat at the start and at the end of the
# steady-state window (to 1.5 s before the bots stop); stop the server. Per layout: the server's CPU, the
# tick duration p50/p99 (tickcast_tick_duration_seconds, one sample per room tick), the worst room's
# update-interval p99 as the bots saw it, bytes per client per second, checksum mismatches.
#
# Then the fixed cost of a room (--fixed-rooms K, default the largest K of the layouts): the same K
# spectators once as K rooms of one spectator and once as one room of K. Both runs send the same number
# of the same (empty-world) updates; only the number of rooms differs, so
#   (CPU of K rooms - CPU of 1 room) / ((K - 1) x tick rate)
# is what one more room costs per tick with nobody moving in it (its tick, its empty delta, its checksum,
# its bookkeeping), on top of what its connections cost.
#
# Writes $CARGO_TARGET_DIR/rooms/rooms.md and rooms.json (target/ by default; raw files in rooms/raw/)
# and prints the markdown. Every wait is bounded; everything started is killed on exit.
set -u -o pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bash benches/rooms.sh [options]
  --total N           players in every layout                     [400]
  --layouts LIST      KxN,... (K rooms of N players, K x N = --total)
                      [1xT,10x(T/10),(T/10)x10,(T/4)x4 for --total T, those that divide it]
  --fixed-rooms K     rooms of the fixed-cost runs (K x 1 and 1 x K spectators), 0 to skip
                      [the largest K of the layouts]
  --duration D        bot run per layout, ramp-up included       [20s]   (s, ms or m suffix)
  --tick-hz HZ        server tick rate                            [20]
  --server-cpu C      the server's core                           [0]
  --bot-cpus LIST     the bots' cores                             [every other core]
  --bot-threads T     bot worker threads                          [number of bot cores]
  --connect-rate R    bot connections per second in ramp-up       [500]
  --quiet-wait S      before each run, wait up to S seconds for the machine to be under 25 % busy
                      (other work on the cores skews every figure; the busy % is recorded)  [60]
  --no-build          use the binaries already built
EOF
}

TOTAL=400
LAYOUTS=""
FIXED_ROOMS=""
DURATION=20s
TICK_HZ=20
SERVER_CPU=0
NCPU=$(nproc)
BOT_CPUS=""
BOT_THREADS=""
CONNECT_RATE=500
QUIET_WAIT=60
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --total) TOTAL=${2:?}; shift 2 ;;
        --layouts) LAYOUTS=${2:?}; shift 2 ;;
        --fixed-rooms) FIXED_ROOMS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --tick-hz) TICK_HZ=${2:?}; shift 2 ;;
        --server-cpu) SERVER_CPU=${2:?}; shift 2 ;;
        --bot-cpus) BOT_CPUS=${2:?}; shift 2 ;;
        --bot-threads) BOT_THREADS=${2:?}; shift 2 ;;
        --connect-rate) CONNECT_RATE=${2:?}; shift 2 ;;
        --quiet-wait) QUIET_WAIT=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "rooms: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$NCPU" -lt 2 ]; then
    echo "rooms: needs at least 2 cores (one for the server, the rest for the bots)" >&2
    exit 2
fi
if [ -z "$BOT_CPUS" ]; then
    BOT_CPUS=$(seq 0 $((NCPU - 1)) | grep -vx "$SERVER_CPU" | paste -sd, -)
fi
BOT_NCPU=$(echo "$BOT_CPUS" | tr ',' '\n' | awk -F- 'NF==2 {n+=$2-$1+1; next} NF==1 && $1!="" {n++} END {print n+0}')
[ -n "$BOT_THREADS" ] || BOT_THREADS=$BOT_NCPU
for v in "$TOTAL" "$TICK_HZ" "$SERVER_CPU" "$BOT_THREADS" "$QUIET_WAIT"; do
    case "$v" in ''|*[!0-9]*) echo "rooms: expected a number, got '$v'" >&2; exit 2 ;; esac
done
[ "$TOTAL" -ge 1 ] || { echo "rooms: --total must be at least 1" >&2; exit 2; }
if [ -z "$LAYOUTS" ]; then
    LAYOUTS="1x$TOTAL"
    for k in 10 $((TOTAL / 10)) $((TOTAL / 4)); do
        if [ "$k" -gt 1 ] && [ $((TOTAL % k)) -eq 0 ] && ! echo ",$LAYOUTS," | grep -q ",${k}x"; then
            LAYOUTS="$LAYOUTS,${k}x$((TOTAL / k))"
        fi
    done
fi
MAX_K=1
MAX_N=1
for l in ${LAYOUTS//,/ }; do
    case "$l" in
        *[!0-9x]*|x*|*x|*x*x*) echo "rooms: bad layout '$l' (use KxN, e.g. 10x40)" >&2; exit 2 ;;
        *x*) ;;
        *) echo "rooms: bad layout '$l' (use KxN, e.g. 10x40)" >&2; exit 2 ;;
    esac
    k=${l%x*}; n=${l#*x}
    if [ "$k" -lt 1 ] || [ "$n" -lt 1 ] || [ $((k * n)) -ne "$TOTAL" ]; then
        echo "rooms: layout $l is $((k * n)) players, not --total $TOTAL" >&2
        exit 2
    fi
    [ "$k" -gt "$MAX_K" ] && MAX_K=$k
    [ "$n" -gt "$MAX_N" ] && MAX_N=$n
done
[ -n "$FIXED_ROOMS" ] || FIXED_ROOMS=$MAX_K
case "$FIXED_ROOMS" in ''|*[!0-9]*) echo "rooms: --fixed-rooms expects a number" >&2; exit 2 ;; esac
if [ "$FIXED_ROOMS" -eq 1 ]; then
    echo "rooms: --fixed-rooms 1 compares nothing; use 0 to skip, or at least 2" >&2
    exit 2
fi
for cmd in python3 curl taskset; do
    command -v "$cmd" >/dev/null || { echo "rooms: needs $cmd" >&2; exit 2; }
done

TARGET=${CARGO_TARGET_DIR:-target}
OUT=$TARGET/rooms
RAW=$OUT/raw
rm -rf "$RAW"
mkdir -p "$RAW"
PY=$RAW/rooms.py
CLK_TCK=$(getconf CLK_TCK)

# ---- the arithmetic (python3, standard library only) -----------------------------------------------------
cat >"$PY" <<'PYEOF'
import json, os, re, sys

def secs(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", s.strip())
    if not m:
        sys.exit(f"rooms: bad duration {s!r} (use 20s, 1500ms or 2m)")
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) == "m" else v

def metrics(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            pass
    return out

def env(path):
    return {k: float(v) for k, v in (l.strip().split("=", 1) for l in open(path) if "=" in l)}

def hist(prefix, m1, m2):
    """Bucket deltas of a Prometheus histogram: [(upper bound in s, count in bucket)], +Inf last."""
    pat = re.compile(re.escape(prefix) + r'_bucket\{le="([^"]+)"\}')
    cum = []
    for k, v in m2.items():
        mm = pat.fullmatch(k)
        if mm:
            le = float("inf") if mm.group(1) == "+Inf" else float(mm.group(1))
            cum.append((le, v - m1.get(k, 0.0)))
    cum.sort()
    out, prev = [], 0.0
    for le, c in cum:
        out.append((le, c - prev))
        prev = c
    return out

def quantile(buckets, q):
    """Linear interpolation inside the bucket that holds the q-quantile (bucket resolution); seconds."""
    total = sum(c for _, c in buckets)
    if total <= 0:
        return None
    rank, seen, lower = q * total, 0.0, 0.0
    for le, c in buckets:
        if c > 0 and seen + c >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - seen) / c
        seen += c
        if le != float("inf"):
            lower = le
    return lower

def d(m1, m2, k):
    return m2.get(k, 0.0) - m1.get(k, 0.0)

def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:,.{nd}f}"

BOTS_SATURATED_PCT = 95.0

def cmd_secs(a):
    print(secs(a[0]))

def cmd_row(a):
    """One run: NAME K N MIX RAW HZ CLK BOT_NCPU -> a line of rows.jsonl."""
    name, k, n, mix, raw, hz, clk, bot_ncpu = a[0], int(a[1]), int(a[2]), a[3], a[4], float(a[5]), float(a[6]), int(a[7])
    p = lambda what: os.path.join(raw, f"{what}-{name}")
    m1, m2 = metrics(p("m1")), metrics(p("m2"))
    s1, s2 = env(p("s1")), env(p("s2"))
    bots = json.load(open(p("bots") + ".json")) if os.path.exists(p("bots") + ".json") else None
    wall = s2["t"] - s1["t"]
    room_ticks = d(m1, m2, "tickcast_tick_duration_seconds_count")
    work_s = d(m1, m2, "tickcast_tick_duration_seconds_sum")
    dur = hist("tickcast_tick_duration_seconds", m1, m2)
    bytes_out = d(m1, m2, "tickcast_bytes_out_total")
    frames = d(m1, m2, "tickcast_frames_out_total")
    ws_open = m2.get("tickcast_websockets_open", 0.0)
    srv_cpu_s = (s2["srv_jiffies"] - s1["srv_jiffies"]) / clk
    bots_cpu_s = (s2["bots_jiffies"] - s1["bots_jiffies"]) / clk
    core_busy_s = (s2["core_busy"] - s1["core_busy"]) / clk
    bot_cores_busy_s = (s2["bot_cores_busy"] - s1["bot_cores_busy"]) / clk
    ms = lambda v: None if v is None else v * 1000.0
    clients = k * n
    row = {
        "name": name, "rooms": k, "per_room": n, "mix": mix, "clients": clients,
        "window_s": round(wall, 2),
        "websockets_open": int(ws_open),
        "room_ticks": int(room_ticks),
        "room_ticks_per_s": room_ticks / wall if wall > 0 else None,
        "tick_ms": {"mean": ms(work_s / room_ticks) if room_ticks else None,
                    "p50": ms(quantile(dur, 0.50)), "p99": ms(quantile(dur, 0.99))},
        "tick_work_pct": 100.0 * work_s / wall,
        "ticks_skipped": int(d(m1, m2, "tickcast_ticks_skipped_total")),
        "server_cpu_pct": 100.0 * srv_cpu_s / wall,
        "server_cpu_us_per_room_tick": srv_cpu_s * 1e6 / room_ticks if room_ticks else None,
        "server_cpu_us_per_client_tick": srv_cpu_s * 1e6 / (clients * hz * wall) if clients else None,
        "server_core_others_pct": max(0.0, 100.0 * (core_busy_s - srv_cpu_s) / wall),
        "bots_cpu_pct_of_their_cores": 100.0 * bots_cpu_s / wall / bot_ncpu,
        "bot_cores_others_pct": max(0.0, 100.0 * (bot_cores_busy_s - bots_cpu_s) / wall / bot_ncpu),
        "server_rss_kib": int(s2["rss_kib"]),
        "updates_sent_per_s": frames / wall,
        "mean_update_bytes": bytes_out / frames if frames else None,
        "bytes_per_s_per_client": bytes_out / wall / ws_open if ws_open else None,
        "server_coalesced": int(d(m1, m2, "tickcast_updates_coalesced_total")),
        "busy_before_pct": int(open(p("busy")).read().strip()) if os.path.exists(p("busy")) else None,
    }
    if bots:
        rs = bots.get("rooms_summary", {})
        row["bots"] = {
            "connected": bots.get("connected"),
            "updates_per_sec": bots.get("updates_per_sec"),
            "checksums_verified": bots.get("checksums_verified"),
            "checksum_mismatches": bots.get("checksum_mismatches"),
            "protocol_errors": bots.get("protocol_errors"),
            "unexpected_disconnects": bots.get("unexpected_disconnects"),
            "slots_skipped": bots.get("inputs", {}).get("slots_skipped"),
            "passed": bots.get("passed"),
            "rooms_all_connected": rs.get("rooms_all_connected"),
            "interval_all_rooms_ms": rs.get("update_interval_ms"),
            "interval_p99_median_room_ms": rs.get("update_interval_p99_median_room_ms"),
            "worst_room": rs.get("worst_room"),
            "worst_room_interval_ms": rs.get("worst_room_update_interval_ms"),
            "rtt_ms": bots.get("rtt_ms"),
        }
    notes = []
    if bots is None:
        notes.append("no bot report")
    else:
        b = row["bots"]
        if (b["slots_skipped"] or 0) > 0:
            notes.append(f"bots skipped {b['slots_skipped']} input slots")
        if (b["updates_per_sec"] or 0) < 0.9 * hz:
            notes.append(f"bots got {b['updates_per_sec']} updates/s, under 90 % of {hz:g} Hz")
        if (b["connected"] or 0) < clients:
            notes.append(f"only {b['connected']} of {clients} bots connected")
        if not b["passed"]:
            notes.append("the bots' run FAILED")
    if row["bots_cpu_pct_of_their_cores"] >= BOTS_SATURATED_PCT:
        notes.append(f"bots used {row['bots_cpu_pct_of_their_cores']:.0f} % of their cores (saturated)")
    if row["server_core_others_pct"] > 25 or row["bot_cores_others_pct"] > 25:
        notes.append(f"contended: others used {row['server_core_others_pct']:.0f} % of the server core, "
                     f"{row['bot_cores_others_pct']:.0f} % of the bot cores")
    if row["ticks_skipped"]:
        notes.append(f"{row['ticks_skipped']} ticks skipped")
    row["notes"] = notes
    with open(os.path.join(raw, "rows.jsonl"), "a") as fh:
        fh.write(json.dumps(row) + "\n")
    w = row.get("bots", {}).get("worst_room_interval_ms") or {}
    print(f"  {name}: server CPU {row['server_cpu_pct']:.1f} %, tick p99 {fmt(row['tick_ms']['p99'], 3)} ms, "
          f"worst room interval p99 {fmt(w.get('p99'))} ms, {fmt(row['bytes_per_s_per_client'] and row['bytes_per_s_per_client'] / 1024)} KiB/s "
          f"per client, bots CPU {row['bots_cpu_pct_of_their_cores']:.0f} %"
          + (" -- " + "; ".join(notes) if notes else ""), file=sys.stderr)

def cmd_report(a):
    raw, out, hz = a[0], a[1], float(a[2])
    machine, settings = json.loads(a[3]), json.loads(a[4])
    rows = [json.loads(l) for l in open(os.path.join(raw, "rows.jsonl"))] if os.path.exists(os.path.join(raw, "rows.jsonl")) else []
    layouts = [r for r in rows if r["name"].startswith("layout-")]
    fixed = {r["name"]: r for r in rows if r["name"].startswith("fixed-")}
    result = {"machine": machine, "settings": settings, "layouts": layouts, "fixed_runs": list(fixed.values())}
    fc = None
    k = settings["fixed_rooms"]
    many, one = fixed.get(f"fixed-{k}x1"), fixed.get(f"fixed-1x{k}")
    if many and one:
        per_s = lambda r: r["server_cpu_pct"] / 100.0
        work_per_s = lambda r: r["tick_work_pct"] / 100.0
        extra_room_ticks = (k - 1) * hz
        fc = {
            "rooms": k,
            "cpu_us_per_room_tick": (per_s(many) - per_s(one)) * 1e6 / extra_room_ticks,
            "tick_work_us_per_room_tick": (work_per_s(many) - work_per_s(one)) * 1e6 / extra_room_ticks,
            "server_cpu_pct_many": many["server_cpu_pct"], "server_cpu_pct_one": one["server_cpu_pct"],
            "tick_work_pct_many": many["tick_work_pct"], "tick_work_pct_one": one["tick_work_pct"],
            "method": "(server CPU of K rooms x 1 spectator - of 1 room x K spectators) / ((K - 1) x tick rate)",
        }
    result["fixed_cost"] = fc
    json.dump(result, open(os.path.join(out, "rooms.json"), "w"), indent=2)
    L = []
    L.append(f"Rooms benchmark, {machine['date']}, commit {machine['commit']}: {machine['cpus']} x {machine['cpu_model']}, "
             f"{machine['mem_gib']} GiB, Linux {machine['kernel']}, {machine['rustc']}; load average at start "
             f"{machine['loadavg_at_start']}, at end {' '.join(machine['loadavg_at_end'])}.\n")
    L.append(f"Server: release, pinned to core {settings['server_cpu']}, --npcs 0, {settings['tick_hz']} Hz. Bots: "
             f"cores {settings['bot_cpus']}, {settings['bot_threads']} threads, `--rooms K --room-size N`, "
             f"{settings['duration']} per run (steady-state window: all connected + 2 s to 1.5 s before the end).\n")
    L.append("| rooms x players | server CPU % | room ticks/s | tick ms mean / p50 / p99 | tick work % | "
             "server CPU us per player-tick | worst room update interval p99 ms (median room) | KiB/s per client | "
             "mean update B | mismatches of verified | bots CPU % | notes |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in layouts:
        b = r.get("bots", {})
        w = b.get("worst_room_interval_ms") or {}
        t = r["tick_ms"]
        L.append(
            f"| {r['rooms']} x {r['per_room']} | {r['server_cpu_pct']:.1f} | {fmt(r['room_ticks_per_s'], 0)} "
            f"| {fmt(t['mean'], 3)} / {fmt(t['p50'], 3)} / {fmt(t['p99'], 3)} | {r['tick_work_pct']:.1f} "
            f"| {fmt(r['server_cpu_us_per_client_tick'], 2)} "
            f"| {fmt(w.get('p99'))} ({fmt(b.get('interval_p99_median_room_ms'))}) "
            f"| {fmt(r['bytes_per_s_per_client'] and r['bytes_per_s_per_client'] / 1024, 2)} "
            f"| {fmt(r['mean_update_bytes'], 0)} "
            f"| {b.get('checksum_mismatches', 'n/a')} of {b.get('checksums_verified', 0) or 0:,} "
            f"| {r['bots_cpu_pct_of_their_cores']:.0f} | {'; '.join(r['notes']) or '-'} |")
    L.append("")
    if fixed:
        L.append("| fixed-cost run | server CPU % | room ticks/s | tick ms mean / p99 | tick work % | KiB/s per client | notes |")
        L.append("|---|---|---|---|---|---|---|")
        for r in fixed.values():
            t = r["tick_ms"]
            L.append(f"| {r['rooms']} x {r['per_room']} spectators | {r['server_cpu_pct']:.1f} | {fmt(r['room_ticks_per_s'], 0)} "
                     f"| {fmt(t['mean'], 3)} / {fmt(t['p99'], 3)} | {r['tick_work_pct']:.1f} "
                     f"| {fmt(r['bytes_per_s_per_client'] and r['bytes_per_s_per_client'] / 1024, 2)} | {'; '.join(r['notes']) or '-'} |")
        L.append("")
    if fc:
        L.append(f"**Fixed cost of a room: {fc['cpu_us_per_room_tick']:.2f} us of server CPU per room per tick** "
                 f"({fc['tick_work_us_per_room_tick']:.2f} us of it inside the tick), from {k} rooms of one spectator "
                 f"({fc['server_cpu_pct_many']:.1f} % CPU) against one room of {k} ({fc['server_cpu_pct_one']:.1f} %): "
                 f"the same updates to the same number of connections, {k - 1} rooms more.\n")
    L.append("Tick = tickcast_tick_duration_seconds, one sample per room tick (p50/p99 interpolated inside the "
             "histogram's buckets); tick work % = its sum over the window; server CPU = the whole process "
             "(/proc/PID/stat); per player-tick = server CPU / (players x tick rate). Update interval = the gap "
             "between two consecutive updates one bot received (bots' per-room histograms, 0.5 ms buckets), "
             "over the whole bot run. Bytes per client = the server's tickcast_bytes_out_total over the window "
             "per open WebSocket.")
    text = "\n".join(L) + "\n"
    open(os.path.join(out, "rooms.md"), "w").write(text)
    print(text)

{"secs": cmd_secs, "row": cmd_row, "report": cmd_report}[sys.argv[1]](sys.argv[2:])
PYEOF

py() { python3 "$PY" "$@"; }
DUR_MS=$(py secs "$DURATION" | awk '{printf "%d", $1 * 1000}') || exit 2
[ "${DUR_MS:-0}" -ge 8000 ] || { echo "rooms: --duration must be at least 8s" >&2; exit 2; }

# ---- processes we start, and their end ------------------------------------------------------------------
# The server and the bots of the current run; each is cleared once reaped, so the exit trap only ever
# signals a process this script started and has not yet waited for.
SP="" BP=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop() {
    local pid=$1 sig=$2 secs=$3 i
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null
        for ((i = 0; i < secs * 10; i++)); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}
wait_exit() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        echo "rooms: pid $pid still running after ${secs}s, stopping it" >&2
        stop "$pid" TERM 5
    fi
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    stop "$BP" TERM 3
    stop "$SP" TERM 6
}
trap cleanup EXIT
trap 'echo "rooms: interrupted" >&2; exit 130' INT TERM

# ---- build ----------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    echo "rooms: building (release)" >&2
    cargo build --release -p tickcast -p bots >&2 || exit 1
fi
SERVER_BIN=$TARGET/release/tickcast
BOTS_BIN=$TARGET/release/bots
for bin in "$SERVER_BIN" "$BOTS_BIN"; do
    [ -x "$bin" ] || { echo "rooms: missing binary '$bin' (drop --no-build)" >&2; exit 1; }
done
# The server's room flags, where this build has them (they came with protocol 3).
SERVER_HELP=$("$SERVER_BIN" --help 2>&1)
has_flag() { echo "$SERVER_HELP" | grep -q -- "$1"; }
has_flag --max-rooms || { echo "rooms: $SERVER_BIN has no --max-rooms: a server without rooms" >&2; exit 1; }

# ---- measuring ------------------------------------------------------------------------------------------
proc_jiffies() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cores_busy() {
    awk -v names="$1" 'BEGIN {split(names, a, " "); for (i in a) want[a[i]] = 1}
        ($1 in want) {s += $2 + $3 + $4 + $7 + $8 + $9} END {print s + 0}' /proc/stat
}
BOT_CPU_NAMES=$(echo "$BOT_CPUS" | tr ',' '\n' | awk -F- 'NF == 2 {for (c = $1; c <= $2; c++) printf "cpu%d ", c; next}
    $1 != "" {printf "cpu%d ", $1}')
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
snapshot() {
    {
        echo "t=$(date +%s.%N)"
        echo "srv_jiffies=$(proc_jiffies "$SP")"
        echo "bots_jiffies=$(proc_jiffies "$BP")"
        echo "core_busy=$(cores_busy "cpu$SERVER_CPU")"
        echo "bot_cores_busy=$(cores_busy "$BOT_CPU_NAMES")"
        echo "rss_kib=$(status_kib "$SP" VmRSS)"
    } >"$1"
}
scrape() { curl -s --max-time 5 "http://$1/metrics"; }
gauge() { awk -v n="$2" '$1 == n {print int($2)}' "$1"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
busy_pct() {
    local a b
    a=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    b=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    echo "$a $b" | awk '{busy = $3 - $1; all = busy + $4 - $2; printf "%d\n", (all > 0) ? 100 * busy / all : 0}'
}
wait_quiet() {
    local deadline=$(( $(now_ms) + QUIET_WAIT * 1000 )) busy
    busy=$(busy_pct)
    while [ "$busy" -ge 25 ] && [ "$(now_ms)" -lt "$deadline" ]; do
        echo "rooms: the machine is ${busy} % busy with other work; waiting (--quiet-wait)" >&2
        sleep 4
        busy=$(busy_pct)
    done
    [ "$busy" -ge 25 ] && echo "rooms: still ${busy} % busy; measuring anyway (see busy_before_pct)" >&2
    echo "$busy" >"$RAW/busy-$1"
}

# run NAME K N MIX: one server, one bot run of K rooms x N bots of MIX.
run() {
    local name=$1 k=$2 n=$3 mix=$4 log=$RAW/server-$1.log addr i open t0 end room_flags
    local clients=$((k * n))
    wait_quiet "$name"
    # Room caps out of the way (up to N players or spectators per room); the bots' first room is the
    # server's default room, so the server runs exactly the K rooms of the layout (the default room
    # always exists, and its empty ticks would otherwise count in the tick histogram beside the layout's).
    room_flags=(--max-rooms $((k + 8)) --default-room bots-0)
    has_flag --max-rooms-per-ip && room_flags+=(--max-rooms-per-ip 0)
    has_flag --room-max-players && room_flags+=(--room-max-players "$n")
    has_flag --room-max-spectators && room_flags+=(--room-max-spectators "$n")
    taskset -c "$SERVER_CPU" "$SERVER_BIN" --listen 127.0.0.1:0 --npcs 0 --tick-hz "$TICK_HZ" \
        --max-connections $((clients + 64)) --max-connections-per-ip 0 --accepts-per-ip-per-s 0 \
        "${room_flags[@]}" 2>"$log" &
    SP=$!
    addr=""
    for ((i = 0; i < 100; i++)); do
        addr=$(sed -n 's|.*listening on http://\([0-9.:]*\) .*|\1|p' "$log" | head -1)
        [ -n "$addr" ] && break
        alive "$SP" || break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "rooms: the server did not start; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    t0=$(now_ms)
    end=$(( t0 + DUR_MS ))
    taskset -c "$BOT_CPUS" "$BOTS_BIN" --url "ws://$addr/ws" --rooms "$k" --room-size "$n" --mix "$mix" \
        --duration "$DURATION" --threads "$BOT_THREADS" --connect-rate "$CONNECT_RATE" \
        --json "$RAW/bots-$name.json" >"$RAW/bots-$name.txt" 2>"$RAW/bots-$name.err" &
    BP=$!
    while [ "$(now_ms)" -lt $(( end - 6000 )) ] && alive "$BP"; do
        scrape "$addr" >"$RAW/probe-$name" 2>/dev/null
        open=$(gauge "$RAW/probe-$name" tickcast_websockets_open)
        [ "${open:-0}" -ge "$clients" ] && break
        sleep 0.5
    done
    sleep 2
    snapshot "$RAW/s1-$name"
    scrape "$addr" >"$RAW/m1-$name"
    curl -s --max-time 5 "http://$addr/rooms?limit=100" >"$RAW/rooms-$name.json"
    while [ "$(now_ms)" -lt $(( end - 1500 )) ] && alive "$BP"; do sleep 0.2; done
    snapshot "$RAW/s2-$name"
    scrape "$addr" >"$RAW/m2-$name"
    if ! alive "$SP" || ! [ -s "$RAW/m1-$name" ] || ! [ -s "$RAW/m2-$name" ]; then
        echo "rooms: the server died or stopped answering /metrics during $name; its log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    wait_exit "$BP" 30
    BP=""
    stop "$SP" TERM 10
    SP=""
    py row "$name" "$k" "$n" "$mix" "$RAW" "$TICK_HZ" "$CLK_TCK" "$BOT_NCPU"
}

echo "rooms: server on core $SERVER_CPU, bots on $BOT_CPUS ($BOT_THREADS threads), layouts $LAYOUTS," \
    "fixed-cost rooms $FIXED_ROOMS, $DURATION each, $TICK_HZ Hz; raw files in $RAW" >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for l in ${LAYOUTS//,/ }; do
    echo "rooms: layout $l" >&2
    run "layout-$l" "${l%x*}" "${l#*x}" wander
done
if [ "$FIXED_ROOMS" -ge 2 ]; then
    echo "rooms: fixed cost, $FIXED_ROOMS rooms of one spectator against one room of $FIXED_ROOMS" >&2
    run "fixed-${FIXED_ROOMS}x1" "$FIXED_ROOMS" 1 spectator
    run "fixed-1x${FIXED_ROOMS}" 1 "$FIXED_ROOMS" spectator
fi

MACHINE=$(python3 - "$LOAD_START" <<'EOF'
import json, os, platform, subprocess, sys, time
def run(*a):
    try: return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return "?"
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": run("git", "rev-parse", "--short", "HEAD"),
    "cpus": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem / 2**20), "kernel": platform.release(),
    "rustc": run("rustc", "-V"), "loadavg_at_start": sys.argv[1], "loadavg_at_end": open("/proc/loadavg").read().split()[:3]}))
EOF
)
SETTINGS=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps({"total": int(a[0]), "layouts": a[1],
    "fixed_rooms": int(a[2]), "duration": a[3], "tick_hz": int(a[4]), "server_cpu": a[5], "bot_cpus": a[6],
    "bot_threads": int(a[7]), "connect_rate": a[8]}))' \
    "$TOTAL" "$LAYOUTS" "$FIXED_ROOMS" "$DURATION" "$TICK_HZ" "$SERVER_CPU" "$BOT_CPUS" "$BOT_THREADS" "$CONNECT_RATE")
py report "$RAW" "$OUT" "$TICK_HZ" "$MACHINE" "$SETTINGS"
echo "rooms: wrote $OUT/rooms.md and $OUT/rooms.json" >&2
