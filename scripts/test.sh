#!/usr/bin/env bash
# The whole test suite, on a clean machine: installs what the tests need, then runs every test.
# CI runs exactly this (.ci/run). Everything it starts listens on 127.0.0.1 only and is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup: Python client for the independent-client test"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt

echo "== setup: redis-server for the cluster tests (a real one, started by each test on a free port)"
if ! command -v redis-server >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

echo "== Rust: unit, property and socket tests (server, bots)"
cargo test --workspace --locked

echo "== browser: JS SDK vectors and Playwright in headless Chromium"
cargo build --locked --workspace --bins
bash web/test/run.sh target/debug/tickcast

echo "== fuzzing: every cargo-fuzz target for a bounded time (docs/FUZZING.md)"
if ! command -v c++ >/dev/null; then
    echo "installing Debian's g++ (libFuzzer is built from source)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y g++
fi
bash scripts/fuzz.sh "${FUZZ_SECONDS_PER_TARGET:-15}"

echo "== all tests passed"
