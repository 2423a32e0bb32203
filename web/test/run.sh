#!/usr/bin/env bash
# The browser client's tests: the SDK against the wire vectors, then the arena page in headless Chromium
# driven by Playwright against a real server (cluster.test.mjs: two in a cluster on a real redis-server).
# Installs what it needs on a clean machine (Debian's chromium, redis-server and openssl, playwright-core
# from web/package-lock.json; never Playwright's own browser download).
#
#   bash web/test/run.sh [path to the tickcast binary, default target/debug/tickcast]
#
# The bot swarm's binary (dashboard.test.mjs) is taken from beside it, or from $TICKCAST_BOTS.
# A relative binary path is taken from the current directory, or else from the repository root.
# The screenshot lands in test-artifacts/ at the repository root.
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$web/.." && pwd)"

server="${1:-target/debug/tickcast}"
if [[ "$server" != /* ]]; then
  if [[ -e "$server" ]]; then server="$PWD/$server"; else server="$root/$server"; fi
fi
if [[ ! -x "$server" ]]; then
  echo "web/test/run.sh: no tickcast binary at $server (cargo build --bin tickcast first)" >&2
  exit 1
fi

# dashboard.test.mjs runs the bot swarm: the bots binary beside the server's, unless TICKCAST_BOTS says.
bots="${TICKCAST_BOTS:-$(dirname "$server")/bots}"
if [[ ! -x "$bots" ]]; then
  echo "web/test/run.sh: no bots binary at $bots (cargo build -p bots --bin bots first)" >&2
  exit 1
fi

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/redis-server ]] || missing+=(redis-server) # cluster.test.mjs
command -v openssl >/dev/null || missing+=(openssl)       # tls.test.mjs: its test certificate
if (( ${#missing[@]} )); then
  echo "web/test/run.sh: installing Debian's ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

wanted="$(node -p "require('$web/package.json').devDependencies['playwright-core']")"
have="$(node -p "try { require('$web/node_modules/playwright-core/package.json').version } catch { '' }")"
if [[ "$have" != "$wanted" ]]; then
  echo "web/test/run.sh: installing playwright-core $wanted"
  (cd "$web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

mkdir -p "$root/test-artifacts"
cd "$web"
export TICKCAST_SERVER="$server" TICKCAST_BOTS="$bots" TICKCAST_ARTIFACTS="$root/test-artifacts"
exec node --test --test-concurrency=2 --test-timeout=150000 test/*.test.mjs
