#!/usr/bin/env bash
# Runs every test of the repo. Installs what is missing (Debian, as root); uses the
# PostgreSQL on 127.0.0.1:5432 and the Redis on 127.0.0.1:6379 when they answer, else
# starts throwaway ones. Each step is reported; the last line counts them.
#   COPAINS_TEST_SKIP="clippy e2e"   skips named steps (for local iteration only)
source "$(dirname "$0")/lib/common.sh"

WORK="$(mktemp -d /tmp/copains-test.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${THROWAWAY_PG:-}" ] && runuser -u postgres -- "$THROWAWAY_PG/pg_ctl" -D "$WORK/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

PASSED=(); FAILED=(); SKIPPED=()
step() { # step NAME COMMAND... : runs one step, records the outcome, goes on
  local name="$1"; shift
  if [[ " ${COPAINS_TEST_SKIP:-} " == *" $name "* ]]; then SKIPPED+=("$name"); log "skip: $name"; return 0; fi
  log "step: $name"
  local t0=$SECONDS
  if "$@"; then PASSED+=("$name"); log "ok: $name ($((SECONDS - t0)) s)"
  else FAILED+=("$name"); printf '\033[1;31m==> FAILED: %s\033[0m\n' "$name" >&2; fi
}

# ---------------------------------------------------------------- prerequisites
ensure_rust
apt_install curl ca-certificates python3 python3-venv
ensure_node
ensure_postgres_programs
command -v redis-server >/dev/null || apt_install redis-server
[ -x /usr/bin/chromium ] || apt_install chromium

# PostgreSQL for the tests: the local one if it answers with trust auth, else a throwaway cluster.
if psql "postgres://postgres@127.0.0.1:5432/postgres" -tAc 'SELECT 1' >/dev/null 2>&1; then
  export COPAINS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
else
  THROWAWAY_PG="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PGPORT="$(free_port)"
  log "starting a throwaway PostgreSQL on port $PGPORT"
  mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
  runuser -u postgres -- "$THROWAWAY_PG/initdb" -D "$WORK/pg" --auth=trust --username=postgres >/dev/null
  runuser -u postgres -- "$THROWAWAY_PG/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -c unix_socket_directories='' -c max_connections=300 -c fsync=off" >/dev/null
  export COPAINS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
fi
# Leftovers of killed runs.
for db in $(psql "$COPAINS_TEST_DATABASE_URL" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'copains_test_%'"); do
  psql "$COPAINS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
done

# Redis for the tests: the local one if it answers, else a throwaway server.
if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; then
  export COPAINS_TEST_REDIS_URL="redis://127.0.0.1:6379"
else
  RPORT="$(free_port)"
  log "starting a throwaway Redis on port $RPORT"
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  export COPAINS_TEST_REDIS_URL="redis://127.0.0.1:$RPORT"
fi

# ---------------------------------------------------------------- Rust
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo-test cargo test --workspace --locked --no-fail-fast
config_doc() { diff -u docs/configuration.md <(cargo run -q --locked --bin copains -- config-reference); }
step docs-config config_doc

# ---------------------------------------------------------------- crypto in the browser (wasm)
step crypto-wasm-browser crypto/scripts/test-browser.sh

# ---------------------------------------------------------------- web app
web_unit() { build_frontend && (cd frontend && npm test --silent && npm run check --silent && npm run budget --silent); }
step web-unit web_unit

# ---------------------------------------------------------------- the README's run command, live
SERVE_PORT="$(free_port)"
export COPAINS_DATA_DIR="$WORK/data" COPAINS_HTTP_ADDR="127.0.0.1:$SERVE_PORT" COPAINS_PUBLIC_URL="http://localhost:$SERVE_PORT"
run_command() {
  COPAINS_BUILD_PROFILE=dev COPAINS_AUTH_RATE_BURST=1000 COPAINS_AUTH_RATE_PERIOD_MS=10 \
    scripts/run.sh >"$WORK/serve.log" 2>&1 &
  PIDS+=($!)
  if wait_http "http://127.0.0.1:$SERVE_PORT/readyz" 600; then
    log "scripts/run.sh serves /readyz = 200 on port $SERVE_PORT (embedded PostgreSQL)"
  else
    tail -40 "$WORK/serve.log"; return 1
  fi
}
step run-command run_command

e2e() {
  # The embedded PostgreSQL of scripts/run.sh (its port is line 4 of postmaster.pid): e2ee.test.mjs
  # reads the stored message rows to check that encrypted places hold no plaintext.
  local pid_file="$COPAINS_DATA_DIR/postgres/postmaster.pid"
  [ -f "$pid_file" ] && export COPAINS_E2E_DATABASE_URL="postgres://copains@127.0.0.1:$(sed -n 4p "$pid_file")/copains"
  (cd frontend && COPAINS_URL="http://localhost:$SERVE_PORT" COPAINS_ADMIN_CMD="$TARGET/debug/copains admin" npm run e2e --silent)
}
step web-e2e e2e

voice_browser() {
  (cd sfu/browser-test && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --silent; } \
    && COPAINS_URL="http://localhost:$SERVE_PORT" node voice.mjs)
}
step voice-browser voice_browser

# ---------------------------------------------------------------- schemathesis against the OpenAPI document
schemathesis_run() {
  local venv="$ROOT/target/venv"
  [ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q 'schemathesis>=4,<5'; }
  local db="copains_test_schemathesis_$$" port; port="$(free_port)"
  psql "$COPAINS_TEST_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
  DATABASE_URL="${COPAINS_TEST_DATABASE_URL%/*}/$db" COPAINS_HTTP_ADDR="127.0.0.1:$port" COPAINS_DATA_DIR="$WORK/st" \
    COPAINS_AUTH_RATE_BURST=100000 COPAINS_AUTH_RATE_PERIOD_MS=1 "$TARGET/debug/copains" api >"$WORK/api-st.log" 2>&1 &
  local pid=$!; PIDS+=($pid)
  wait_http "http://127.0.0.1:$port/readyz" 60 || { tail -20 "$WORK/api-st.log"; return 1; }
  local token
  token="$(curl -fsS "http://127.0.0.1:$port/api/v1/auth/register" -H 'content-type: application/json' \
    -d '{"username":"fuzzer","email":"fuzzer@example.org","password":"fuzzer-password"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')"
  # Logout and session revocation would end the fuzzer's own session; integration tests cover them.
  (cd "$WORK" && "$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --exclude-path /api/v1/auth/logout --exclude-path '/api/v1/users/@me/sessions/{session_id}' \
    --max-examples 40 --workers 1 --phases examples,coverage,fuzzing --warnings off)
  local rc=$?
  kill "$pid" 2>/dev/null || true
  if grep -q "panicked" "$WORK/api-st.log"; then log "the server panicked during the fuzz run"; rc=1; fi
  psql "$COPAINS_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  return $rc
}
step schemathesis schemathesis_run

# ---------------------------------------------------------------- self-hosting: compose, Caddy, coturn (issue 9)
step selfhost scripts/selfhost-test.sh

# ---------------------------------------------------------------- the image and the compose stack, for real (issue 14)
step image scripts/image-test.sh

# ---------------------------------------------------------------- summary
log "passed: ${PASSED[*]:-none}"
[ ${#SKIPPED[@]} -gt 0 ] && log "skipped: ${SKIPPED[*]}"
[ ${#FAILED[@]} -gt 0 ] && log "failed: ${FAILED[*]}"
echo "steps: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
[ ${#FAILED[@]} -eq 0 ]
