#!/usr/bin/env bash
# Build the wasm package and run the headless-Chromium test (exits non-zero on failure).
#   crypto/scripts/test-browser.sh            # test only
#   BENCH=1 crypto/scripts/test-browser.sh    # also merge wasm timings into bench/results/crypto.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$ROOT/crypto/scripts/build-wasm.sh"
command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ] || {
  echo "test-browser: /usr/bin/chromium missing (apt-get install -y chromium)" >&2
  exit 1
}
cd "$ROOT/crypto/browser-test"
[ -d node_modules/playwright-core ] || npm install --no-audit --no-fund
if [ "${BENCH:-0}" = "1" ]; then
  BENCH_OUT="$ROOT/bench/results/crypto.json" node run.mjs
else
  node run.mjs
fi
