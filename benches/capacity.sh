#!/usr/bin/env bash
# The end-to-end capacity benchmark (docs/PERFORMANCE.md, "Capacity"): how many moving arena players one
# server core holds at a tick rate, with the kernel's own cost of the same sends beside it.
#
#   bash benches/capacity.sh [--steps 100,250,500,1000,2000] [--duration 20s] [--tick-hz 20]
#
# For each player count N, in order: start the release server (--npcs 0; the per-address limits off, since
# every bot connects from 127.0.0.1) pinned to one core (--server-cpu,
# default 0), listening on 127.0.0.1 only; run N wandering bots on the other cores (--bot-cpus) for
# --duration; once all N are connected and 2 s have passed, read /metrics, /proc/PID/stat and /proc/stat at
# the start and at the end of the steady-state window; stop the server; then run the kernel floor
# (benches/send_floor.rs: one plain non-blocking send() per socket per round, N loopback sockets, the step's
# mean update size, paced at the tick period, the sender on the server's core, the readers on the bots';
# with --floor-drain between also the whole job: before each round every socket sends one input of the
# bots' mean size, which the sender reads through epoll first, so send + recv + epoll share per player).
# Stepping stops at the first step where the server passed its limit (tick p99 over the tick budget,
# 1000/tick-hz ms, or ticks skipped) or the bots did (input slots skipped, updates/s per bot under 90 % of
# the tick rate, not every bot connected, or the bots at 95 % of their cores), and says which. After a bot limit the remaining steps get a
# floor-only projection (clearly labelled as such).
#
# Writes $CARGO_TARGET_DIR/capacity/capacity.md and capacity.json (target/ by default; raw files in
# capacity/raw/) and prints the markdown. Every wait is bounded; everything started is killed on exit.
set -u -o pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
usage: bash benches/capacity.sh [options]
  --steps LIST        player counts, ascending               [100,250,500,1000,2000]
  --duration D        bot run per step, ramp-up included     [20s]   (s, ms or m suffix)
  --tick-hz HZ        server tick rate                       [20]
  --server-cpu C      the server's core (and the floor's sender) [0]
  --bot-cpus LIST     the bots' cores (and the floor's readers)  [1-(nproc-1)]
  --bot-threads T     bot worker threads                     [number of bot cores]
  --connect-rate R    bot connections per second in ramp-up  [500]
  --floor-rounds R    floor rounds per step, one tick apart  [100]
  --floor-drain M     between: the floor's readers drain after each round (the floor proper, a lower
                      bound); concurrent: they read while the round is sent, as live clients do  [between]
  --quiet-wait S      before each step, wait up to S seconds for the machine to be under 25 % busy
                      (other work on the cores skews every figure; the busy % is recorded)  [120]
  --attempts K        runs of a step at most, while others used over 25 % of the server's or the
                      bots' cores during it (the last one is kept, marked contended)   [3]
  --no-build          use the binaries already built
  --no-projection     after a bot limit, skip the floor-only rows for the remaining steps
  --tls               the server serves TLS (a certificate made for the run with openssl), the bots speak
                      wss:// trusting it; the floor stays plain sends (benches/tls.sh compares both)
  --out DIR           where capacity.md, capacity.json and raw/ go   [$CARGO_TARGET_DIR/capacity]
  --server-args ARGS  more flags for the server, one word each (e.g. "--read-coalesce-us 2000")
  --verify-fraction F the share of bots that mirror the world and check checksums; the others skim (read
                      each update up to their own entity: acks still measured)   [1]
EOF
}

STEPS=100,250,500,1000,2000
DURATION=20s
TICK_HZ=20
SERVER_CPU=0
NCPU=$(nproc)
BOT_CPUS=""
BOT_THREADS=""
CONNECT_RATE=500
FLOOR_ROUNDS=100
FLOOR_DRAIN=between
QUIET_WAIT=120
ATTEMPTS=3
BUILD=1
PROJECT=1
TLS=0
OUT=""
SERVER_ARGS=""
VERIFY_FRACTION=1
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) STEPS=${2:?}; shift 2 ;;
        --duration) DURATION=${2:?}; shift 2 ;;
        --tick-hz) TICK_HZ=${2:?}; shift 2 ;;
        --server-cpu) SERVER_CPU=${2:?}; shift 2 ;;
        --bot-cpus) BOT_CPUS=${2:?}; shift 2 ;;
        --bot-threads) BOT_THREADS=${2:?}; shift 2 ;;
        --connect-rate) CONNECT_RATE=${2:?}; shift 2 ;;
        --floor-rounds) FLOOR_ROUNDS=${2:?}; shift 2 ;;
        --floor-drain) FLOOR_DRAIN=${2:?}; shift 2 ;;
        --quiet-wait) QUIET_WAIT=${2:?}; shift 2 ;;
        --attempts) ATTEMPTS=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-projection) PROJECT=0; shift ;;
        --tls) TLS=1; shift ;;
        --out) OUT=${2:?}; shift 2 ;;
        --server-args) SERVER_ARGS=${2:?}; shift 2 ;;
        --verify-fraction) VERIFY_FRACTION=${2:?}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "capacity: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ "$NCPU" -lt 2 ]; then
    echo "capacity: needs at least 2 cores (one for the server, the rest for the bots)" >&2
    exit 2
fi
if [ -z "$BOT_CPUS" ]; then
    BOT_CPUS=$(seq 0 $((NCPU - 1)) | grep -vx "$SERVER_CPU" | paste -sd, -)
fi
# How many cores the bots have: expand "1-3,5".
BOT_NCPU=$(echo "$BOT_CPUS" | tr ',' '\n' | awk -F- 'NF==2 {n+=$2-$1+1; next} NF==1 && $1!="" {n++} END {print n+0}')
[ -n "$BOT_THREADS" ] || BOT_THREADS=$BOT_NCPU
for v in "$TICK_HZ" "$SERVER_CPU" "$BOT_THREADS" "$FLOOR_ROUNDS" "$QUIET_WAIT" "$ATTEMPTS"; do
    case "$v" in ''|*[!0-9]*) echo "capacity: expected a number, got '$v'" >&2; exit 2 ;; esac
done
case "$FLOOR_DRAIN" in between|concurrent) ;; *) echo "capacity: --floor-drain between|concurrent" >&2; exit 2 ;; esac
for cmd in python3 curl taskset $([ "$TLS" = 1 ] && echo openssl); do
    command -v "$cmd" >/dev/null || { echo "capacity: needs $cmd" >&2; exit 2; }
done

TARGET=${CARGO_TARGET_DIR:-target}
[ -n "$OUT" ] || OUT=$TARGET/capacity
RAW=$OUT/raw
rm -rf "$RAW"
mkdir -p "$RAW"
PY=$RAW/capacity.py
CLK_TCK=$(getconf CLK_TCK)

# ---- the arithmetic (python3, standard library only) -----------------------------------------------------
cat >"$PY" <<'PYEOF'
import json, os, re, sys, time

def secs(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", s.strip())
    if not m:
        sys.exit(f"capacity: bad duration {s!r} (use 20s, 1500ms or 2m)")
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
                return lower  # above the last bound: a lower bound
            return lower + (le - lower) * (rank - seen) / c
        seen += c
        if le != float("inf"):
            lower = le
    return lower

def hmax(buckets):
    """Upper bound of the highest non-empty bucket (the max is at most this); seconds."""
    top = None
    for le, c in buckets:
        if c > 0:
            top = le
    return top

def d(m1, m2, k):
    return m2.get(k, 0.0) - m1.get(k, 0.0)

def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:,.{nd}f}"

def cmd_secs(a):
    print(secs(a[0]))

def cmd_frame(a):
    m1, m2 = metrics(a[0]), metrics(a[1])
    frames = d(m1, m2, "tickcast_frames_out_total")
    inputs = d(m1, m2, "tickcast_frames_in_total")
    # The mean update, and the mean message the bots sent (on the wire: header and mask included).
    print(round(d(m1, m2, "tickcast_bytes_out_total") / frames) if frames > 0 else 0,
          round(d(m1, m2, "tickcast_bytes_in_total") / inputs) if inputs > 0 else 0)

def busy_before(raw, n):
    try:
        return int(open(os.path.join(raw, f"busy-{n}")).read().strip())
    except (OSError, ValueError):
        return None

OTHERS_MAX_PCT = 25.0
BOTS_SATURATED_PCT = 95.0

def cmd_row(a):
    n, raw, hz, clk, bot_ncpu = int(a[0]), a[1], float(a[2]), float(a[3]), int(a[4])
    attempt, final = int(a[5]), a[6] == "1"
    p = lambda name: os.path.join(raw, f"{name}-{n}")
    m1, m2 = metrics(p("m1")), metrics(p("m2"))
    s1, s2 = env(p("s1")), env(p("s2"))
    bots = json.load(open(p("bots") + ".json")) if os.path.exists(p("bots") + ".json") else None
    floor = json.load(open(p("floor") + ".json")) if os.path.exists(p("floor") + ".json") else None
    wall = s2["t"] - s1["t"]
    budget_ms = 1000.0 / hz
    ticks = d(m1, m2, "tickcast_ticks_total")
    phases = d(m1, m2, "tickcast_tick_duration_seconds_count")
    work_s = d(m1, m2, "tickcast_tick_duration_seconds_sum")
    frames = d(m1, m2, "tickcast_frames_out_total")
    bytes_out = d(m1, m2, "tickcast_bytes_out_total")
    ws_open = m2.get("tickcast_websockets_open", 0.0)
    entities = m2.get("tickcast_entities", 0.0)
    dur = hist("tickcast_tick_duration_seconds", m1, m2)
    late = hist("tickcast_tick_lateness_seconds", m1, m2)
    ms = lambda v: None if v is None else v * 1000.0
    srv_cpu_s = (s2["srv_jiffies"] - s1["srv_jiffies"]) / clk
    bots_cpu_s = (s2["bots_jiffies"] - s1["bots_jiffies"]) / clk
    core_busy_s = (s2["core_busy"] - s1["core_busy"]) / clk
    bot_cores_busy_s = (s2["bot_cores_busy"] - s1["bot_cores_busy"]) / clk
    mean_frame = bytes_out / frames if frames else None
    row = {
        "players": n,
        "window_s": round(wall, 2),
        "websockets_open": int(ws_open),
        "entities": int(entities),
        "ticks": int(ticks),
        "tick_phases": int(phases),
        "tick_ms": {
            "mean": ms(work_s / phases) if phases else None,
            "p50": ms(quantile(dur, 0.50)),
            "p99": ms(quantile(dur, 0.99)),
            "max_at_most": ms(hmax(dur)),
            "resolution": "bucket bounds 25 us .. 250 ms, linear inside a bucket",
        },
        "tick_lateness_ms": {"p50": ms(quantile(late, 0.50)), "p99": ms(quantile(late, 0.99)),
                             "max_at_most": ms(hmax(late))},
        "ticks_skipped": int(d(m1, m2, "tickcast_ticks_skipped_total")),
        "server_cpu_pct": 100.0 * srv_cpu_s / wall,
        "server_core_others_pct": max(0.0, 100.0 * (core_busy_s - srv_cpu_s) / wall),
        "bot_cores_others_pct": max(0.0, 100.0 * (bot_cores_busy_s - bots_cpu_s) / wall / bot_ncpu),
        "server_rss_kib": int(s2["rss_kib"]),
        "load1_at_end": s2.get("load1"),
        "busy_before_pct": busy_before(raw, n),
        "server_rss_peak_kib": int(s2["hwm_kib"]),
        "bots_cpu_pct_of_their_cores": 100.0 * bots_cpu_s / wall / bot_ncpu,
        "updates_delivered": int(frames),
        "updates_per_tick": frames / ticks if ticks else None,
        "mean_update_bytes": mean_frame,
        "bytes_per_moving_entity": mean_frame / entities if mean_frame and entities else None,
        "bytes_per_s_per_client": bytes_out / wall / ws_open if ws_open else None,
        "server_coalesced": int(d(m1, m2, "tickcast_updates_coalesced_total")),
        "server_full_snapshots": int(d(m1, m2, "tickcast_full_snapshots_total")),
        "server_updates_skipped": int(d(m1, m2, "tickcast_updates_skipped_total")),
        "slow_consumer_closes": int(d(m1, m2, "tickcast_slow_consumer_closes_total")),
        "tick_work_ns_per_update": work_s * 1e9 / frames if frames else None,
        "server_cpu_ns_per_update": srv_cpu_s * 1e9 / frames if frames else None,
    }
    if bots:
        row["bots"] = {k: bots.get(k) for k in (
            "connected", "bots_ever_connected", "updates_per_sec", "bytes_per_sec", "coalesced_updates",
            "resyncs", "checksum_mismatches", "checksums_verified", "protocol_errors",
            "unexpected_disconnects", "passed", "rtt_ms", "lateness_ms")}
        row["bots"]["slots_skipped"] = bots.get("inputs", {}).get("slots_skipped")
    if floor:
        row["floor"] = floor
        f = floor["ns_per_send"]["mean"]
        if row["tick_work_ns_per_update"]:
            row["ratio_tick_work_to_floor"] = row["tick_work_ns_per_update"] / f
            row["ratio_server_cpu_to_floor"] = row["server_cpu_ns_per_update"] / f
        # The whole job's floor (send + recv + epoll share, CPU time), against the whole process's CPU.
        whole = floor.get("whole_cpu_ns_per_player")
        if whole and floor.get("input_bytes") and row["server_cpu_ns_per_update"]:
            row["ratio_server_cpu_to_whole_floor"] = row["server_cpu_ns_per_update"] / whole
    # The verdict of this step. Other work on the cores (this is often a shared machine) stretches ticks and
    # starves bots without saying anything about the server: such a step is retried (--attempts), and a
    # tick budget passed while the server used under half its core and others used over a quarter of it
    # is called "contended", not a server limit.
    server, bot = [], []
    p99 = row["tick_ms"]["p99"]
    if p99 is not None and p99 > budget_ms:
        server.append(f"tick p99 {p99:.2f} ms > budget {budget_ms:.1f} ms")
    if row["ticks_skipped"] > 0:
        server.append(f"{row['ticks_skipped']} ticks skipped")
    if bots is None:
        bot.append("no bot report")
    else:
        b = row["bots"]
        if (b["slots_skipped"] or 0) > 0:
            bot.append(f"bots skipped {b['slots_skipped']} input slots (their threads fell behind)")
        if (b["updates_per_sec"] or 0) < 0.9 * hz:
            bot.append(f"bots received {b['updates_per_sec']} updates/s per bot, under 90 % of {hz:g} Hz")
        if (b["connected"] or 0) < n:
            bot.append(f"only {b['connected']} of {n} bots connected")
        # The server's figures stay valid while the bots still took every update on time.
        row["bots_kept_up"] = not bot
        if row["bots_cpu_pct_of_their_cores"] >= BOTS_SATURATED_PCT:
            bot.append(f"bots used {row['bots_cpu_pct_of_their_cores']:.0f} % of their cores (saturated)")
    others_srv, others_bots = row["server_core_others_pct"], row["bot_cores_others_pct"]
    row["contended"] = others_srv > OTHERS_MAX_PCT or others_bots > OTHERS_MAX_PCT
    row["attempt"] = attempt
    server_own = row["server_cpu_pct"] >= 50 or others_srv <= OTHERS_MAX_PCT
    row["server_limit"] = server
    row["bot_limit"] = bot
    if server and server_own and (not bot or row["server_cpu_pct"] >= 50):
        row["limit"] = "server limit"
    elif bot:
        row["limit"] = "bot limit"
    elif server:
        row["limit"] = "contended"
    else:
        row["limit"] = None
    note = ""
    if row["contended"]:
        note = (f" [others used {others_srv:.0f} % of the server core, {others_bots:.0f} % of the bot cores"
                + ("; retrying]" if not final else "]"))
    retry = row["contended"] and not final
    with open(os.path.join(raw, "attempts.jsonl" if retry else "rows.jsonl"), "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"  players {n}: tick p50/p99 {fmt(row['tick_ms']['p50'], 2)}/{fmt(p99, 2)} ms, server CPU "
          f"{row['server_cpu_pct']:.1f} %, bots CPU {row['bots_cpu_pct_of_their_cores']:.0f} %, "
          f"{fmt(row['tick_work_ns_per_update'] and row['tick_work_ns_per_update'] / 1000, 2)} us tick work "
          f"per update, floor {fmt(floor and floor['ns_per_send']['mean'] / 1000, 2)} us"
          + (f"  -> {row['limit']}: " + "; ".join(server + bot) if row["limit"] else "") + note,
          file=sys.stderr)
    print("retry" if retry else "stop" if row["limit"] else "go")

def rows(raw):
    path = os.path.join(raw, "rows.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []

def cmd_project_frame(a):
    """Projected mean update size at N players, from the steps that hit no limit: a + b * N."""
    n, raw = int(a[0]), a[1]
    pts = [(r["entities"], r["mean_update_bytes"]) for r in rows(raw)
           if r["limit"] in (None, "bot limit") and r.get("bots_kept_up") and r["mean_update_bytes"]
           and r["entities"]]
    if not pts:
        print(0); return
    if len(pts) == 1:
        b, a0 = pts[0][1] / pts[0][0], 0.0
    else:
        mx = sum(x for x, _ in pts) / len(pts); my = sum(y for _, y in pts) / len(pts)
        b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        a0 = my - b * mx
    print(round(a0 + b * n))

def cmd_report(a):
    raw, out, hz, machine, settings = a[0], a[1], float(a[2]), json.loads(a[3]), json.loads(a[4])
    rs = rows(raw)
    budget = 1000.0 / hz
    stop = next((r for r in rs if r["limit"]), None)
    ok = [r for r in rs if r["limit"] in (None, "bot limit") and r.get("bots_kept_up")]
    base = ok[-1] if ok else None
    projections = []
    for f in sorted(os.listdir(raw)):
        mm = re.fullmatch(r"projfloor-(\d+)\.json", f)
        if mm and base and base.get("ratio_tick_work_to_floor"):
            fl = json.load(open(os.path.join(raw, f)))
            n = int(mm.group(1))
            per = fl["ns_per_send"]["mean"]
            tick_mean = base["ratio_tick_work_to_floor"] * per * n / 1e6
            tail = (base["tick_ms"]["p99"] / base["tick_ms"]["mean"]) if base["tick_ms"]["mean"] else None
            projections.append({
                "players": n, "projected_update_bytes": fl["frame_bytes"], "floor": fl,
                "based_on_step": base["players"],
                "projected_tick_ms_mean": tick_mean,
                "projected_tick_ms_p99": tick_mean * tail if tail else None,
                "projected_server_cpu_pct": base["ratio_server_cpu_to_floor"] * per * n * hz / 1e7,
            })
    projections.sort(key=lambda p: p["players"])
    if stop is None:
        verdict = "no limit reached: every step passed (add larger steps)"
    else:
        verdict = (f"stopped at {stop['players']} players: {stop['limit']} ("
                   + "; ".join(stop["bot_limit"] + stop["server_limit"] if stop["limit"] == "bot limit"
                               else stop["server_limit"] + stop["bot_limit"]) + ")")
    doc = {"machine": machine, "settings": settings, "tick_budget_ms": budget, "steps": rs,
           "stopped_by": stop["limit"] if stop else None, "verdict": verdict, "projections": projections,
           "discarded_contended_attempts": [json.loads(l) for l in open(os.path.join(raw, "attempts.jsonl"))]
           if os.path.exists(os.path.join(raw, "attempts.jsonl")) else []}
    json.dump(doc, open(os.path.join(out, "capacity.json"), "w"), indent=2)

    L = []
    L.append(f"# tickcast capacity, arena, {hz:g} Hz (tick budget {budget:.1f} ms)\n")
    L.append(f"{machine['date']}, commit {machine['commit']}; {machine['cpus']} x {machine['cpu_model']}, "
             f"{machine['mem_gib']} GiB, Linux {machine['kernel']}, {machine['rustc']}. Server on core "
             f"{settings['server_cpu']}, bots ({settings['bot_threads']} threads) and the floor's readers on "
             f"cores {settings['bot_cpus']}; bots run {settings['duration']} per step"
             f"{'' if settings.get('verify_fraction', 1) >= 1 else ', ' + str(settings['verify_fraction']) + ' of them verifying (the others skim: acks measured, checksums unchecked)'}"
             f"{'; server flags: ' + settings['server_args'] if settings.get('server_args') else ''}.\n")
    L.append("| players | tick p50 / p99 / max ms | tick lateness p99 ms | ticks skipped | server CPU % of one core "
             "| server RSS MiB | bytes/s per client | B per moving entity | input -> ack p99 ms | coalesced (server / bots) "
             "| checksum mismatches | bots CPU % | others on server / bot cores % | limit |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        t, b = r["tick_ms"], r.get("bots") or {}
        rtt = (b.get("rtt_ms") or {}).get("p99")
        L.append(
            f"| {r['players']:,} | {fmt(t['p50'], 2)} / {fmt(t['p99'], 2)} / <= {fmt(t['max_at_most'], 1)} "
            f"| {fmt(r['tick_lateness_ms']['p99'], 2)} | {r['ticks_skipped']} | {r['server_cpu_pct']:.1f} "
            f"| {r['server_rss_kib'] / 1024:.1f} | {fmt(r['bytes_per_s_per_client'] and r['bytes_per_s_per_client'] / 1024, 1)} KiB "
            f"| {fmt(r['bytes_per_moving_entity'], 2)} | {fmt(rtt, 1)} "
            f"| {r['server_coalesced']:,} / {b.get('coalesced_updates', 0):,} "
            f"| {b.get('checksum_mismatches', 'n/a')} of {b.get('checksums_verified', 0) + (b.get('checksum_mismatches') or 0):,} "
            f"| {r['bots_cpu_pct_of_their_cores']:.0f} | {r['server_core_others_pct']:.0f} / {r['bot_cores_others_pct']:.0f} "
            f"| {r['limit'] or 'none'}{' (contended)' if r['contended'] else ''} |")
    L.append("")
    L.append("| players | mean update B | tick work per update us | server CPU per update us | floor us per send mean / p50 / p99 "
             "| floor would-block | tick work / floor | server CPU / floor |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rs:
        f = r.get("floor")
        fl = f["ns_per_send"] if f else None
        us = lambda v: None if v is None else v / 1000
        L.append(
            f"| {r['players']:,} | {fmt(r['mean_update_bytes'], 0)} | {fmt(us(r['tick_work_ns_per_update']), 2)} "
            f"| {fmt(us(r['server_cpu_ns_per_update']), 2)} "
            f"| {fmt(us(fl and fl['mean']), 2)} / {fmt(us(fl and fl['p50']), 2)} / {fmt(us(fl and fl['p99']), 2)} "
            f"| {f['would_block'] + f['short_sends'] if f else 'n/a'} "
            f"| {fmt(r.get('ratio_tick_work_to_floor'), 2)}x | {fmt(r.get('ratio_server_cpu_to_floor'), 2)}x |")
    L.append("")
    L.append("The whole job: server CPU per delivered update against the whole-job floor's CPU per player "
             "(one send of the update, one recv of one input of the bots' mean size, the share of one "
             "epoll_wait per round; the floor's sender thread, CPU time).\n")
    L.append("| players | input B | floor CPU us per player: send / recv + epoll / whole | epoll waits per input "
             "| server CPU per update us | server CPU / whole floor |")
    L.append("|---|---|---|---|---|---|")
    for r in rs:
        f = r.get("floor") or {}
        us = lambda v: None if v is None else v / 1000
        L.append(
            f"| {r['players']:,} | {f.get('input_bytes', 'n/a')} | {fmt(us(f.get('cpu_ns_per_send')), 2)} / "
            f"{fmt(us(f.get('input_cpu_ns_per_player')), 2)} / {fmt(us(f.get('whole_cpu_ns_per_player')), 2)} "
            f"| {fmt(f.get('epoll_waits_per_input'), 4)} | {fmt(us(r['server_cpu_ns_per_update']), 2)} "
            f"| {fmt(r.get('ratio_server_cpu_to_whole_floor'), 2)}x |")
    L.append("")
    L.append(f"**{verdict}.**\n")
    if projections:
        L.append(f"Projection (not a measurement): the floor measured at the remaining steps with the update size "
                 f"extrapolated from the steps that hit no limit, times the tick-work / floor ratio of the "
                 f"{projections[0]['based_on_step']}-player step; p99 scaled by that step's p99 / mean.\n")
        L.append("| players | projected update B | floor us per send | projected tick ms mean / p99 | projected server CPU % |")
        L.append("|---|---|---|---|---|")
        for p in projections:
            L.append(f"| {p['players']:,} | {p['projected_update_bytes']:,} | {p['floor']['ns_per_send']['mean'] / 1000:.2f} "
                     f"| {p['projected_tick_ms_mean']:.2f} / {fmt(p['projected_tick_ms_p99'], 2)} "
                     f"| {p['projected_server_cpu_pct']:.0f} |")
        L.append("")
    L.append(f"Floor: one plain non-blocking send() per socket per round over the step's N loopback sockets, "
             f"the step's mean update size, {settings['floor_rounds']} rounds {settings['floor_interval_ms']} ms "
             f"apart, sender on the server's core, readers draining "
             f"{'after each round' if settings['floor_drain'] == 'between' else 'while the round is sent'} "
             f"(--floor-drain {settings['floor_drain']}).\n")
    L.append("Tick p50/p99 are interpolated inside the server's histogram buckets (bounds 25 us .. 250 ms), max is "
             "the upper bound of the highest non-empty bucket; server figures cover the steady-state window "
             "(all bots connected + 2 s, to 1.5 s before the bots stop); bot figures (input -> ack, bots' "
             "coalesced, checksums) cover the whole bot run. Tick work = tickcast_tick_duration_seconds: step, "
             "encoding and the fan-out's sends; server CPU = the whole process (reads, decoding, timers too). "
             "Others on server / bot cores = those cores' busy time (steal included) minus the server's / "
             "bots' own CPU time; a step where others used over 25 % is run again (--attempts) and, if still "
             "so, marked contended.")
    text = "\n".join(L) + "\n"
    open(os.path.join(out, "capacity.md"), "w").write(text)
    print(text)

{"secs": cmd_secs, "frame": cmd_frame, "row": cmd_row, "project-frame": cmd_project_frame,
 "report": cmd_report}[sys.argv[1]](sys.argv[2:])
PYEOF

py() { python3 "$PY" "$@"; }
DUR_MS=$(py secs "$DURATION" | awk '{printf "%d", $1 * 1000}') || exit 2
[ "${DUR_MS:-0}" -ge 8000 ] || { echo "capacity: --duration must be at least 8s" >&2; exit 2; }
PERIOD_MS=$(( (1000 + TICK_HZ / 2) / TICK_HZ ))

# ---- processes we start, and their end ------------------------------------------------------------------
# The server, the bots and the floor of the current step; each is cleared once reaped, so the exit trap
# only ever signals a process this script started and has not yet waited for.
SP="" BP="" FP=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# stop PID SIGNAL SECONDS: send SIGNAL, wait up to SECONDS, then SIGKILL; reap it.
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
# wait_exit PID SECONDS: let PID end on its own, bounded; then SIGTERM, then SIGKILL.
wait_exit() {
    local pid=$1 secs=$2 i
    for ((i = 0; i < secs * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        echo "capacity: pid $pid still running after ${secs}s, stopping it" >&2
        stop "$pid" TERM 5
    fi
    wait "$pid" 2>/dev/null
    return 0
}
cleanup() {
    stop "$FP" KILL 0
    stop "$BP" TERM 3
    stop "$SP" TERM 6
}
trap cleanup EXIT
trap 'echo "capacity: interrupted" >&2; exit 130' INT TERM

# ---- build ----------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    echo "capacity: building (release)" >&2
    cargo build --release -p tickcast -p bots >&2 || exit 1
    cargo bench --no-run --bench send_floor --message-format=json >"$RAW/cargo-bench-build.jsonl" || exit 1
    FLOOR_BIN=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "send_floor" and m.get("executable"):
        print(m["executable"])' "$RAW/cargo-bench-build.jsonl" | tail -1)
else
    FLOOR_BIN=$(ls -t "$TARGET"/release/deps/send_floor-* 2>/dev/null | grep -v '\.d$' | head -1)
fi
SERVER_BIN=$TARGET/release/tickcast
BOTS_BIN=$TARGET/release/bots
for bin in "$SERVER_BIN" "$BOTS_BIN" "$FLOOR_BIN"; do
    [ -n "$bin" ] && [ -x "$bin" ] || { echo "capacity: missing binary '$bin' (drop --no-build)" >&2; exit 1; }
done

# ---- TLS (--tls): a certificate for this run only, trusted by the bots and curl ---------------------------
TLS_FLAGS=()
BOT_TLS_FLAGS=()
CURL_TLS_FLAGS=()
WS_SCHEME=ws
HTTP_SCHEME=http
if [ "$TLS" = 1 ]; then
    mkdir -p "$RAW/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE -days 1 \
        -keyout "$RAW/tls/key.pem" -out "$RAW/tls/cert.pem" 2>"$RAW/tls/openssl.err" \
        || { echo "capacity: openssl could not make a certificate" >&2; cat "$RAW/tls/openssl.err" >&2; exit 1; }
    TLS_FLAGS=(--tls-cert "$RAW/tls/cert.pem" --tls-key "$RAW/tls/key.pem")
    BOT_TLS_FLAGS=(--ca-file "$RAW/tls/cert.pem")
    CURL_TLS_FLAGS=(--cacert "$RAW/tls/cert.pem")
    WS_SCHEME=wss
    HTTP_SCHEME=https
fi

# ---- measuring ------------------------------------------------------------------------------------------
proc_jiffies() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cores_busy "cpu0 cpu3": busy time of those cores, everyone's (user nice system irq softirq steal), in ticks.
cores_busy() {
    awk -v names="$1" 'BEGIN {split(names, a, " "); for (i in a) want[a[i]] = 1}
        ($1 in want) {s += $2 + $3 + $4 + $7 + $8 + $9} END {print s + 0}' /proc/stat
}
BOT_CPU_NAMES=$(echo "$BOT_CPUS" | tr ',' '\n' | awk -F- 'NF == 2 {for (c = $1; c <= $2; c++) printf "cpu%d ", c; next}
    $1 != "" {printf "cpu%d ", $1}')
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# snapshot FILE: the clock, CPU times, the server's memory, the load.
snapshot() {
    {
        echo "t=$(date +%s.%N)"
        echo "srv_jiffies=$(proc_jiffies "$SP")"
        echo "bots_jiffies=$(proc_jiffies "$BP")"
        echo "core_busy=$(cores_busy "cpu$SERVER_CPU")"
        echo "bot_cores_busy=$(cores_busy "$BOT_CPU_NAMES")"
        echo "rss_kib=$(status_kib "$SP" VmRSS)"
        echo "hwm_kib=$(status_kib "$SP" VmHWM)"
        echo "load1=$(cut -d' ' -f1 /proc/loadavg)"
    } >"$1"
}
scrape() { curl -s --max-time 5 "${CURL_TLS_FLAGS[@]}" "$HTTP_SCHEME://$1/metrics"; }
gauge() { awk -v n="$2" '$1 == n {print int($2)}' "$1"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# busy_pct: how busy all cores were over the last second, everyone's work, in percent.
busy_pct() {
    local a b
    a=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    b=$(awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    echo "$a $b" | awk '{busy = $3 - $1; all = busy + $4 - $2; printf "%d\n", (all > 0) ? 100 * busy / all : 0}'
}
# wait_quiet N: before a step, wait (at most --quiet-wait s) for the machine to be under 25 % busy.
wait_quiet() {
    local deadline=$(( $(now_ms) + QUIET_WAIT * 1000 )) busy
    busy=$(busy_pct)
    while [ "$busy" -ge 25 ] && [ "$(now_ms)" -lt "$deadline" ]; do
        echo "capacity: the machine is ${busy} % busy with other work; waiting (--quiet-wait)" >&2
        sleep 4
        busy=$(busy_pct)
    done
    [ "$busy" -ge 25 ] && echo "capacity: still ${busy} % busy; measuring anyway (see busy_before_pct)" >&2
    echo "$busy" >"$RAW/busy-$1"
}

# floor N FRAME_BYTES OUT_JSON [INPUT_BYTES]: the kernel floor at N sockets and that frame size, paced like
# the ticks; with INPUT_BYTES (and --floor-drain between) the whole job: each round also reads one input of
# that size from every socket first.
floor() {
    local input=()
    [ "${4:-0}" -gt 0 ] && [ "$FLOOR_DRAIN" = between ] && input=(--input-bytes "$4")
    "$FLOOR_BIN" --sockets "$1" --frame-bytes "$2" --rounds "$FLOOR_ROUNDS" --interval-ms "$PERIOD_MS" \
        --sender-cpu "$SERVER_CPU" --reader-cpus "$BOT_CPUS" --readers "$BOT_NCPU" --drain "$FLOOR_DRAIN" \
        "${input[@]}" >"$3" 2>"$3.err" &
    FP=$!
    wait_exit "$FP" $(( FLOOR_ROUNDS * PERIOD_MS / 1000 + 60 ))
    FP=""
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$3" 2>/dev/null \
        || { echo "capacity: the floor failed at $1 sockets, see $3.err" >&2; rm -f "$3"; }
}

# step N ATTEMPT FINAL: one server, one bot run, one floor; writes $RAW/verdict-N ("go", "stop", "retry").
step() {
    local n=$1 attempt=$2 final=$3 log=$RAW/server-$n.log addr i open t0 end floor_bytes input_bytes
    wait_quiet "$n"
    taskset -c "$SERVER_CPU" "$SERVER_BIN" --listen 127.0.0.1:0 --npcs 0 --tick-hz "$TICK_HZ" \
        --max-connections $((n + 64)) --max-connections-per-ip 0 --accepts-per-ip-per-s 0 "${TLS_FLAGS[@]}" $SERVER_ARGS \
        2>"$log" &
    SP=$!
    addr=""
    for ((i = 0; i < 100; i++)); do
        addr=$(sed -n 's|.*listening on https\{0,1\}://\([0-9.:]*\) .*|\1|p' "$log" | head -1)
        [ -n "$addr" ] && break
        alive "$SP" || break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        echo "capacity: the server did not start; its log:" >&2
        cat "$log" >&2
        exit 1
    fi
    t0=$(now_ms)
    end=$(( t0 + DUR_MS ))
    taskset -c "$BOT_CPUS" "$BOTS_BIN" --url "$WS_SCHEME://$addr/ws" "${BOT_TLS_FLAGS[@]}" --count "$n" --duration "$DURATION" \
        --threads "$BOT_THREADS" --connect-rate "$CONNECT_RATE" --verify-fraction "$VERIFY_FRACTION" --json "$RAW/bots-$n.json" \
        >"$RAW/bots-$n.txt" 2>"$RAW/bots-$n.err" &
    BP=$!
    # Steady state: every bot connected (waiting at most until 6 s before the bots stop), then 2 s more.
    while [ "$(now_ms)" -lt $(( end - 6000 )) ] && alive "$BP"; do
        scrape "$addr" >"$RAW/probe-$n" 2>/dev/null
        open=$(gauge "$RAW/probe-$n" tickcast_websockets_open)
        [ "${open:-0}" -ge "$n" ] && break
        sleep 0.5
    done
    sleep 2
    snapshot "$RAW/s1-$n"
    scrape "$addr" >"$RAW/m1-$n"
    # The window ends 1.5 s before the bots stop.
    while [ "$(now_ms)" -lt $(( end - 1500 )) ] && alive "$BP"; do sleep 0.2; done
    snapshot "$RAW/s2-$n"
    scrape "$addr" >"$RAW/m2-$n"
    if ! alive "$SP" || ! [ -s "$RAW/m1-$n" ] || ! [ -s "$RAW/m2-$n" ]; then
        echo "capacity: the server died or stopped answering /metrics during the step; its log:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    wait_exit "$BP" 30
    BP=""
    stop "$SP" TERM 10
    SP=""
    read -r floor_bytes input_bytes < <(py frame "$RAW/m1-$n" "$RAW/m2-$n")
    if [ "${floor_bytes:-0}" -gt 0 ]; then
        floor "$n" "$floor_bytes" "$RAW/floor-$n.json" "${input_bytes:-0}"
    fi
    py row "$n" "$RAW" "$TICK_HZ" "$CLK_TCK" "$BOT_NCPU" "$attempt" "$final" >"$RAW/verdict-$n"
    if [ "$(cat "$RAW/verdict-$n")" = retry ]; then
        mkdir -p "$RAW/contended-$n-$attempt"
        for f in m1 m2 s1 s2 probe busy server bots floor; do
            mv "$RAW/$f-$n" "$RAW/$f-$n".* "$RAW/contended-$n-$attempt/" 2>/dev/null
        done
    fi
}

echo "capacity: server on core $SERVER_CPU, bots on $BOT_CPUS ($BOT_THREADS threads), steps $STEPS," \
    "$DURATION each, $TICK_HZ Hz; raw files in $RAW" >&2
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STOPPED=""
REMAINING=()
for n in ${STEPS//,/ }; do
    case "$n" in ''|*[!0-9]*) echo "capacity: bad step '$n'" >&2; exit 2 ;; esac
    if [ -n "$STOPPED" ]; then REMAINING+=("$n"); continue; fi
    echo "capacity: step $n players" >&2
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        step "$n" "$attempt" "$([ "$attempt" -eq "$ATTEMPTS" ] && echo 1 || echo 0)"
        [ "$(cat "$RAW/verdict-$n" 2>/dev/null)" = retry ] || break
    done
    [ "$(cat "$RAW/verdict-$n" 2>/dev/null)" = go ] || STOPPED=$n
done
if [ "$PROJECT" = 1 ] && [ -n "$STOPPED" ] && [ "${#REMAINING[@]}" -gt 0 ] \
    && [ -s "$RAW/rows.jsonl" ] \
    && python3 -c "import json,sys; sys.exit(0 if json.loads(open(sys.argv[1]).readlines()[-1])['limit'] == 'bot limit' else 1)" "$RAW/rows.jsonl"; then
    for n in "${REMAINING[@]}"; do
        bytes=$(py project-frame "$n" "$RAW")
        if [ "${bytes:-0}" -gt 0 ]; then
            echo "capacity: floor only at $n players, $bytes B (projection)" >&2
            wait_quiet "proj-$n"
            floor "$n" "$bytes" "$RAW/projfloor-$n.json"
        fi
    done
fi

MACHINE=$(python3 - "$LOAD_START" <<'EOF'
import json, os, platform, subprocess, sys, time
def run(*a):
    try: return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return "?"
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
commit = run("git", "rev-parse", "--short", "HEAD")
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "cpus": os.cpu_count(),
    "cpu_model": model, "mem_gib": round(mem / 2**20), "kernel": platform.release(), "rustc": run("rustc", "-V"),
    "loadavg_at_start": sys.argv[1], "loadavg_at_end": open("/proc/loadavg").read().split()[:3]}))
EOF
)
SETTINGS=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps({"steps": a[0], "duration": a[1],
    "tick_hz": int(a[2]), "server_cpu": a[3], "bot_cpus": a[4], "bot_threads": int(a[5]), "connect_rate": a[6],
    "floor_rounds": int(a[7]), "floor_interval_ms": int(a[8]), "floor_drain": a[9], "verify_fraction": float(a[10]),
    "server_args": a[11]}))' \
    "$STEPS" "$DURATION" "$TICK_HZ" "$SERVER_CPU" "$BOT_CPUS" "$BOT_THREADS" "$CONNECT_RATE" "$FLOOR_ROUNDS" "$PERIOD_MS" \
    "$FLOOR_DRAIN" "$VERIFY_FRACTION" "$SERVER_ARGS")
py report "$RAW" "$OUT" "$TICK_HZ" "$MACHINE" "$SETTINGS"
echo "capacity: wrote $OUT/capacity.md and $OUT/capacity.json" >&2
