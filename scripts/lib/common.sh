# Shared helpers of scripts/run.sh and scripts/test.sh (sourced, not run).
# Everything here installs only what is missing, so a second run is fast.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# Where cargo puts binaries (honours CARGO_TARGET_DIR).
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() { # apt_install PKG... : installs the packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them yourself"
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run as root or install them"
  if [ "$APT_UPDATED" = 0 ]; then log "apt-get update"; apt-get update -qq; APT_UPDATED=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      apt_install curl ca-certificates build-essential pkg-config
      log "installing the Rust toolchain (rustup)"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cc >/dev/null || apt_install build-essential
}

ensure_node() {
  command -v npm >/dev/null || apt_install nodejs npm
}

ensure_postgres_programs() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
  command -v psql >/dev/null || apt_install postgresql-client
  command -v runuser >/dev/null || apt_install util-linux
}

ensure_wasm_pkg() { # builds crypto/pkg (the web app imports it) unless it is newer than the crypto sources
  local wasm=crypto/pkg/copains_crypto_bg.wasm
  if [ ! -f "$wasm" ] || [ ! -f crypto/pkg/copains_crypto.js ] || [ -n "$(find crypto/src crypto/Cargo.toml crypto/scripts/build-wasm.sh Cargo.lock -newer "$wasm" 2>/dev/null | head -1)" ]; then
    ensure_rust
    log "building the crypto wasm (crypto/pkg)"
    crypto/scripts/build-wasm.sh
  fi
}

build_frontend() { # builds frontend/build unless it is newer than every source file
  ensure_node
  ensure_wasm_pkg
  if [ ! -d frontend/node_modules ] || [ frontend/package-lock.json -nt frontend/node_modules/.package-lock.json ]; then
    log "installing web app dependencies (npm ci)"
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -f frontend/build/index.html ] || [ -n "$(find frontend/src frontend/static frontend/scripts frontend/package.json frontend/svelte.config.js frontend/vite.config.ts crypto/pkg -newer frontend/build/index.html 2>/dev/null | head -1)" ]; then
    log "building the web app"
    (cd frontend && npm run build --silent)
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # wait_http URL SECONDS
  local url="$1" t="${2:-60}" i=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -gt $((t * 5)) ] && return 1; sleep 0.2
  done
}
