#!/usr/bin/env bash
# TLS against plain, in one run (docs/PERFORMANCE.md, "TLS"): benches/capacity.sh at the same steps twice,
# plain then --tls (server pinned to one core, bots on the others; a certificate made for the run), and a
# table of what TLS costs per delivered update: server CPU per update, tick p99, and the ratios.
#
#   bash benches/tls.sh [--steps 100,500,1000] [--duration 20s] [any other capacity.sh option]
#
# Writes $CARGO_TARGET_DIR/capacity-plain/, capacity-tls/ and tls.md (target/ by default); prints tls.md.
set -u -o pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
args=(--steps 100,500,1000 "$@")
bash benches/capacity.sh "${args[@]}" --no-projection --out "$TARGET/capacity-plain" || exit 1
bash benches/capacity.sh "${args[@]}" --no-build --no-projection --tls --out "$TARGET/capacity-tls" || exit 1
python3 - "$TARGET/capacity-plain/capacity.json" "$TARGET/capacity-tls/capacity.json" "$TARGET/tls.md" <<'PYEOF'
import json, sys
plain, tls = (json.load(open(p)) for p in sys.argv[1:3])
by = lambda doc: {s["players"]: s for s in doc["steps"]}
P, T = by(plain), by(tls)
us = lambda ns: ns / 1000 if ns else None
f = lambda v, d=2: "-" if v is None else f"{v:,.{d}f}"
L = [f"# TLS against plain, {plain['machine']['date']}, commit {plain['machine']['commit']}, "
     f"{plain['machine']['cpu_model']} ({plain['machine']['cpus']} cores)\n",
     "| players | plain: server CPU per update (us) | TLS: server CPU per update (us) | ratio | plain: tick p99 (ms) "
     "| TLS: tick p99 (ms) | plain: server CPU % | TLS: server CPU % | mean update bytes |",
     "|---|---|---|---|---|---|---|---|---|"]
for n in sorted(set(P) & set(T)):
    p, t = P[n], T[n]
    pc, tc = us(p["server_cpu_ns_per_update"]), us(t["server_cpu_ns_per_update"])
    L.append(f"| {n:,} | {f(pc)} | {f(tc)} | {f(tc / pc if pc and tc else None)} | {f(p['tick_ms']['p99'])} "
             f"| {f(t['tick_ms']['p99'])} | {f(p['server_cpu_pct'], 1)} | {f(t['server_cpu_pct'], 1)} "
             f"| {f(t['mean_update_bytes'], 0)} |")
L.append(f"\nplain: {plain['verdict']}\n\nTLS: {tls['verdict']}\n")
open(sys.argv[3], "w").write("\n".join(L) + "\n")
print("\n".join(L))
PYEOF
