#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET (default 20), one after the other, and prints
# one summary line per target. Exits non-zero if any target found a crash (or could not run); the failing
# input is under fuzz/artifacts/<target>/. See docs/FUZZING.md for the targets and for long runs by hand.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment: FUZZ_TARGETS (default "http_request client_message connection"), FUZZ_SANITIZER (address,
# or none for about twice the speed), FUZZ_LOG_DIR (default fuzz/artifacts/logs), FUZZ_NO_CLOSE_CHECK=1
# (see docs/FUZZING.md). Works on a stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the -Z flags cargo-fuzz
# passes). Needs a C++ compiler (libFuzzer is built from source) and, once, crates.io to install cargo-fuzz.
# Everything it starts listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2; }
read -r -a targets <<<"${FUZZ_TARGETS:-http_request client_message connection}"
sanitizer=${FUZZ_SANITIZER:-address}
log_dir=${FUZZ_LOG_DIR:-fuzz/artifacts/logs}
export RUSTC_BOOTSTRAP=1

# Per target: the longest input libFuzzer may make, and extra flags. http_request goes past the 8192-byte
# head limit; connection past the fuzz server's 1024-byte head and message limits.
max_len() {
    case $1 in
        http_request) echo 10000 ;;
        client_message) echo 256 ;;
        *) echo 4096 ;;
    esac
}
extra_flags() {
    case $1 in
        http_request | connection) echo "-dict=fuzz/dict/http.dict" ;;
    esac
}

command -v c++ >/dev/null || { echo "fuzz.sh: a C++ compiler (c++) is needed to build libFuzzer" >&2; exit 2; }
t0=$SECONDS
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
t_install=$((SECONDS - t0))

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
t0=$SECONDS
for t in "${targets[@]}"; do
    cargo fuzz build --sanitizer "$sanitizer" "$t"
done
t_build=$((SECONDS - t0))

mkdir -p "$log_dir"
summary=()
failed=0
t0=$SECONDS
for t in "${targets[@]}"; do
    log=$log_dir/$t.log
    echo "== $t: ${seconds}s (log: $log)"
    # -timeout: one input running longer than 20 s is a hang (every wait in the targets is bounded below it).
    # The outer timeout is a safety net should libFuzzer itself not stop.
    # shellcheck disable=SC2046
    if timeout --kill-after=10 $((seconds + 120)) \
        cargo fuzz run --sanitizer "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
        -print_final_stats=1 $(extra_flags "$t") >"$log" 2>&1; then
        status=ok
    else
        status="FAILED (exit $?)"
        failed=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    line="$t: $status, ${execs:-?} execs in ${took:-?} s, coverage ${cov:-?} edges"
    if [[ $status != ok ]]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
        line+=", input: ${artifact:-none written}"
        grep -m1 -A1 "panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer" "$log" | sed 's/^/    /' || true
    fi
    summary+=("$line")
done
t_run=$((SECONDS - t0))

echo "== summary (install ${t_install}s, build ${t_build}s, runs ${t_run}s)"
printf '%s\n' "${summary[@]}"
exit "$failed"
