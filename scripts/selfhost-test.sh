#!/usr/bin/env bash
# Self-hosting acceptance (issue 9). No Docker engine runs here, so this checks the files
# the way a machine without one can, then runs the compose topology natively:
#   1. deploy/init.sh writes a .env (random secrets, the domain; twice gives other secrets),
#      and `docker-compose -f docker-compose.yml config` accepts the file with it;
#   2. `caddy validate` accepts caddy/Caddyfile;
#   3. PostgreSQL (a throwaway database), Redis (with a password, like compose), coturn with
#      deploy/coturn/turnserver.conf and use-auth-secret, `copains api`, `copains gateway`
#      and `copains sfu` as separate processes, and Caddy with `tls internal` on https://localhost:PORT
#      importing the same routes as production (caddy/copains.caddy). A client checks the
#      headers, registers, creates a server, posts a message through Caddy and receives it on
#      the gateway WebSocket through Caddy, joins a voice channel and gets the sfu's SDP
#      answer; coturn accepts the TURN credentials copains mints, refuses bad ones and
#      refuses internal relay peers. 4. deploy/backup.sh and deploy/restore.sh round-trip.
# Installs what it needs (caddy, coturn, docker-compose, python3-websockets) with apt-get.
#   COPAINS_TEST_DATABASE_URL   admin URL of the PostgreSQL [postgres://postgres@127.0.0.1:5432/postgres]
#   COPAINS_SELFHOST_TIMEOUT    seconds allowed once built [180]
#   COPAINS_BIN                 a prebuilt copains binary (skips `cargo build`)
source "$(dirname "$0")/lib/common.sh"

apt_install caddy coturn docker-compose python3 python3-websockets redis-server curl ca-certificates openssl
ensure_postgres_programs
ensure_rust

ADMIN_URL="${COPAINS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
T="$(mktemp -d /tmp/copains-selfhost.XXXXXX)"
DB="copains_test_selfhost_$$"
PIDS=()
FAILS=0
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS ${DB}_restored WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "---- $(basename "$f") (last 15 lines)"; tail -15 "$f"; }; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { printf '\033[1;32mPASS\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31mFAIL\033[0m %s\n' "$*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# ------------------------------------------------------------------ 1. init script + compose
# An admin's copy: the compose file, caddy/ and deploy/ (as in docs/deployment.md).
mkdir -p "$T/site" && cp -R docker-compose.yml caddy deploy "$T/site/"
init_env() {
  local s1 s2 site="$T/site"
  "$site/deploy/init.sh" --domain chat.example.org --public-ip 203.0.113.5 >"$T/init.log" 2>&1 || return 1
  "$site/deploy/init.sh" --domain chat.example.org --public-ip 203.0.113.5 --env-file "$T/env2" >>"$T/init.log" 2>&1 || return 1
  if "$site/deploy/init.sh" --domain chat.example.org --public-ip 203.0.113.5 >"$T/init-again.log" 2>&1 ||
    ! grep -q 'exists; keeping it' "$T/init-again.log"; then echo "overwrote an .env" >&2; return 1; fi
  if "$site/deploy/init.sh" --domain 'bad domain' --env-file "$T/env3" >>"$T/init.log" 2>&1; then echo "took a bad domain" >&2; return 1; fi
  if "$site/deploy/init.sh" --domain chat.example.org --public-ip 'x;y' --env-file "$T/env4" >>"$T/init.log" 2>&1; then echo "took a bad address" >&2; return 1; fi
  [ "$(stat -c %a "$site/.env")" = 600 ] && grep -q '^COPAINS_DOMAIN=chat.example.org$' "$site/.env" || return 1
  s1="$(grep '^POSTGRES_PASSWORD=' "$site/.env" | cut -d= -f2)"
  s2="$(grep '^POSTGRES_PASSWORD=' "$T/env2" | cut -d= -f2)"
  [ "${#s1}" -ge 32 ] && [ "$s1" != "$s2" ]
}
check "deploy/init.sh writes a 0600 .env with the domain and fresh random secrets, refuses to overwrite one, refuses a bad domain or address" init_env

compose_config() {
  (cd "$T/site" && docker-compose -f docker-compose.yml config) >"$T/compose.out" 2>"$T/compose.log" || { cat "$T/compose.log"; return 1; }
  # Warnings (an unset variable, a deprecated key) fail the check too.
  [ ! -s "$T/compose.log" ] || { cat "$T/compose.log"; return 1; }
  local pw; pw="$(grep '^POSTGRES_PASSWORD=' "$T/site/.env" | cut -d= -f2)"
  grep -q "DATABASE_URL: postgres://copains:$pw@postgres:5432/copains" "$T/compose.out" &&
    grep -q 'COPAINS_PUBLIC_URL: https://chat.example.org' "$T/compose.out" &&
    grep -q 'COPAINS_TRUSTED_PROXIES: 172.29.0.10' "$T/compose.out" &&
    grep -q 'ipv4_address: 172.29.0.10' "$T/compose.out" &&
    grep -q 'COPAINS_SFU_ANNOUNCED_IP: 203.0.113.5' "$T/compose.out" &&
    grep -q "COPAINS_TURN_SECRET: $(grep '^TURN_SECRET=' "$T/site/.env" | cut -d= -f2)" "$T/compose.out" &&
    grep -q -- "--static-auth-secret=$(grep '^TURN_SECRET=' "$T/site/.env" | cut -d= -f2)" "$T/compose.out" &&
    grep -q 'condition: service_healthy' "$T/compose.out" &&
    [ "$(grep -c 'pull_policy: always' "$T/compose.out")" -ge 8 ] &&
    grep -Eq '^  sfu:' "$T/compose.out"
}
check "docker-compose -f docker-compose.yml config accepts the file with the generated .env (no warning; secrets, trusted proxy, healthchecks wired)" compose_config
compose_without_env() {
  ! (cd "$T/site" && mv .env env.bak && docker-compose -f docker-compose.yml config >/dev/null 2>&1); local rc=$?
  mv "$T/site/env.bak" "$T/site/.env"; return $rc
}
check "docker-compose refuses to run without the .env (no default secret)" compose_without_env

check "no .env nor rendered secret is tracked by git" bash -c '! git ls-files --error-unmatch .env deploy/.env >/dev/null 2>&1'

# ------------------------------------------------------------------ 2. caddy validate
caddy_validate() {
  env COPAINS_DOMAIN=chat.example.org XDG_DATA_HOME="$T/xdg" XDG_CONFIG_HOME="$T/xdg" \
    caddy validate --config caddy/Caddyfile --adapter caddyfile >"$T/caddy-validate.log" 2>&1 &&
    grep -q '^Valid configuration' "$T/caddy-validate.log"
}
check "caddy validate --config caddy/Caddyfile (COPAINS_DOMAIN=chat.example.org)" caddy_validate

# ------------------------------------------------------------------ 3. the topology, natively
if [ -n "${COPAINS_BIN:-}" ]; then
  BIN="$COPAINS_BIN"; log "using $BIN (COPAINS_BIN)"
else
  log "building copains (debug)"
  cargo build --locked --bin copains >"$T/build.log" 2>&1 || { tail -30 "$T/build.log"; die "build failed"; }
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/copains"
fi

# From here on the clock runs.
( trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "${COPAINS_SELFHOST_TIMEOUT:-180}" & s=$!
  wait "$s" && { echo "selfhost-test: time is up" >&2; kill -TERM $$; } ) &
PIDS+=($!)

psql "$ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null || die "cannot create $DB on $ADMIN_URL"
DATABASE_URL="${ADMIN_URL%/*}/$DB"

RPORT="$(free_port)"; RPASS="$(openssl rand -hex 16)"
redis-server --port "$RPORT" --bind 127.0.0.1 --requirepass "$RPASS" --save '' --appendonly no >"$T/redis.log" 2>&1 &
PIDS+=($!)

TURN_PORT="$(free_port)"; TURN_SECRET="$(openssl rand -hex 32)"
turnserver -c deploy/coturn/turnserver.conf --listening-ip 127.0.0.1 --listening-port "$TURN_PORT" \
  --relay-ip 127.0.0.1 --static-auth-secret "$TURN_SECRET" --realm localhost \
  --pidfile "$T/turn.pid" --userdb "$T/turndb" >"$T/coturn.log" 2>&1 &
PIDS+=($!)

CPORT="$(free_port)"; HPORT="$(free_port)"; APORT="$(free_port)"; GPORT="$(free_port)"
PUBLIC="https://localhost:$CPORT"
mkdir -p "$T/data"
copains_env=(
  DATABASE_URL="$DATABASE_URL" COPAINS_REDIS_URL="redis://:$RPASS@127.0.0.1:$RPORT"
  COPAINS_DATA_DIR="$T/data" COPAINS_PUBLIC_URL="$PUBLIC" COPAINS_TRUSTED_PROXIES=127.0.0.1/32
  COPAINS_WEB_DIR="$T/no-web" COPAINS_LOG=info,tower_http=warn
  # As in docker-compose.yml: the api mints TURN credentials with coturn's secret.
  COPAINS_TURN_SECRET="$TURN_SECRET" COPAINS_STUN_URLS="stun:127.0.0.1:$TURN_PORT"
  COPAINS_TURN_URLS="turn:127.0.0.1:$TURN_PORT?transport=udp"
)
env "${copains_env[@]}" COPAINS_HTTP_ADDR="127.0.0.1:$APORT" COPAINS_NODE_ID=1 "$BIN" api >"$T/api.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$APORT/readyz" 60 || die "copains api did not become ready"
# The gateway starts once the api has created the shared signing key (as in compose).
env "${copains_env[@]}" COPAINS_HTTP_ADDR="127.0.0.1:$GPORT" COPAINS_NODE_ID=2 "$BIN" gateway >"$T/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$GPORT/readyz" 60 || die "copains gateway did not become ready"
SFU_LO=$((42000 + RANDOM % 5000)); SPORT="$(free_port)"
env "${copains_env[@]}" COPAINS_HTTP_ADDR="127.0.0.1:$SPORT" COPAINS_NODE_ID=4 \
  COPAINS_SFU_BIND_IP=127.0.0.1 COPAINS_SFU_PORTS="$SFU_LO-$((SFU_LO + 20))" "$BIN" sfu >"$T/sfu.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SPORT/readyz" 60 || die "copains sfu did not become ready"
pass "copains api (:$APORT), gateway (:$GPORT) and sfu (:$SPORT, UDP $SFU_LO-$((SFU_LO + 20))) run as separate processes on PostgreSQL + Redis"

WEB="$ROOT/frontend/build"
if [ ! -f "$WEB/index.html" ]; then
  WEB="$T/web"; mkdir -p "$WEB"
  { echo '<!doctype html><title>Copains</title><div id="app"></div>'; for i in $(seq 40); do echo "<!-- placeholder $i: frontend/build is not built -->"; done; } >"$WEB/index.html"
  log "frontend/build is not built: Caddy serves a placeholder index.html"
fi
cat >"$T/Caddyfile" <<EOF
{
	admin off
	http_port $HPORT
	https_port $CPORT
	skip_install_trust
}

import $ROOT/caddy/copains.caddy

$PUBLIC {
	tls internal
	import copains
}
EOF
env XDG_DATA_HOME="$T/xdg" XDG_CONFIG_HOME="$T/xdg" \
  COPAINS_API_HOST=127.0.0.1 COPAINS_API_PORT="$APORT" \
  COPAINS_GATEWAY_HOST=127.0.0.1 COPAINS_GATEWAY_PORT="$GPORT" COPAINS_WEB_ROOT="$WEB" \
  caddy run --config "$T/Caddyfile" --adapter caddyfile >"$T/caddy.log" 2>&1 &
PIDS+=($!)
CA="$T/xdg/caddy/pki/authorities/local/root.crt"
for _ in $(seq 150); do
  [ -f "$CA" ] && curl -fsS --cacert "$CA" -o /dev/null "$PUBLIC/healthz" 2>/dev/null && break
  sleep 0.2
done
curl -fsS --cacert "$CA" -o /dev/null "$PUBLIC/healthz" || die "Caddy does not answer on $PUBLIC"
pass "Caddy serves $PUBLIC with a certificate for localhost from its internal CA (verified, not -k)"

headers() { curl -fsS --cacert "$CA" -o /dev/null -D - "$@" | tr -d '\r'; }
H="$(headers "$PUBLIC/")"
has() { grep -qi "^$1" <<<"$H" || { echo "missing header: $1" >&2; return 1; }; }
sec_headers() {
  has 'strict-transport-security: max-age=31536000' &&
    has "content-security-policy: default-src 'self'; script-src 'self' 'wasm-unsafe-eval';" &&
    has 'x-frame-options: DENY' && has 'x-content-type-options: nosniff' &&
    has 'referrer-policy: strict-origin-when-cross-origin' &&
    has 'permissions-policy: camera=(self), microphone=(self), display-capture=(self)' &&
    has "alt-svc: h3=\":$CPORT\"" && ! has 'server:' 2>/dev/null
}
check "web app: HSTS, CSP with 'wasm-unsafe-eval', X-Frame-Options, nosniff, Referrer-Policy, Permissions-Policy, HTTP/3 advertised, no Server header" sec_headers
csp_matches_binary() { # Caddy's CSP is the one `copains serve` sends (src/web.rs), character for character
  local want got
  want="$(python3 -c 'import re,sys; s=open("src/web.rs").read(); m=re.search(r"pub const CSP: &str = \"(.*?)\";", s, re.S); print(re.sub(r"\\\n\s*", "", m.group(1)))')"
  got="$(grep -i '^content-security-policy: ' <<<"$H" | cut -d' ' -f2-)"
  [ -n "$want" ] && [ "$want" = "$got" ] || { echo "src/web.rs: $want" >&2; echo "caddy:      $got" >&2; return 1; }
}
check "web app: Caddy's Content-Security-Policy is exactly src/web.rs's" csp_matches_binary
# (On these test ports Caddy 2.6 redirects to https://localhost/x, without the custom HTTPS
# port; in production that is 80 -> 443.)
check "http://localhost:$HPORT answers 308 to HTTPS" bash -c "curl -sS -o /dev/null -D - 'http://localhost:$HPORT/x' | tr -d '\r' | grep -qi '^location: https://localhost[:0-9]*/x'"
check "web app: gzip/zstd compression" bash -c "curl -fsS --cacert '$CA' -H 'Accept-Encoding: gzip' -o /dev/null -D - '$PUBLIC/' | tr -d '\r' | grep -qi '^content-encoding: gzip'"
check "web app: an unknown path falls back to index.html (SPA)" bash -c "curl -fsS --cacert '$CA' '$PUBLIC/channels/1/2' | grep -qi '<!doctype html>'"
check "api: /version through Caddy answers with the schema version" bash -c "curl -fsS --cacert '$CA' '$PUBLIC/version' | grep -q '\"schema\":[1-9]'"
check "api: /metrics is not exposed through Caddy (404)" bash -c "[ \"\$(curl -sS --cacert '$CA' -o /dev/null -w '%{http_code}' '$PUBLIC/metrics')\" = 404 ]"
check "api: an unknown /api route is the API's JSON 404, not the web app" bash -c "curl -sS --cacert '$CA' '$PUBLIC/api/v1/nope' | grep -q '\"code\"'"

# A Python with `websockets`: Debian's (apt above), else a venv under target/.
PY=""
for c in python3 /usr/bin/python3; do "$c" -c 'import websockets' 2>/dev/null && { PY="$c"; break; }; done
if [ -z "$PY" ]; then
  [ -x target/selfhost-venv/bin/python ] || python3 -m venv target/selfhost-venv
  target/selfhost-venv/bin/pip install -q 'websockets>=10,<16' && PY=target/selfhost-venv/bin/python
fi
if CPORT="$CPORT" CA="$CA" TURN_PORT="$TURN_PORT" TURN_SECRET="$TURN_SECRET" OUT="$T/channel" timeout 60 "$PY" "$ROOT/scripts/lib/selfhost_client.py"; then :; else
  fail "the client run through Caddy (see above)"
fi

# ------------------------------------------------------------------ 4. backup and restore
backup_restore() {
  local db2="${DB}_restored" url2 port ch token
  url2="${ADMIN_URL%/*}/$db2"
  DATABASE_URL="$DATABASE_URL" deploy/backup.sh "$T/backup/copains.dump" >"$T/backup.log" 2>&1 || return 1
  if deploy/restore.sh "$T/backup/copains.dump" >>"$T/backup.log" 2>&1; then echo "restore ran without --yes" >&2; return 1; fi
  psql "$ADMIN_URL" -qc "CREATE DATABASE $db2" >/dev/null || return 1
  # Twice: into an empty database, then over its own contents (--clean).
  DATABASE_URL="$url2" deploy/restore.sh --yes "$T/backup/copains.dump" >>"$T/backup.log" 2>&1 &&
    DATABASE_URL="$url2" deploy/restore.sh --yes "$T/backup/copains.dump" >>"$T/backup.log" 2>&1 || return 1
  # A copains api on the restored database: Alice logs in and reads her message.
  port="$(free_port)"
  env "${copains_env[@]}" DATABASE_URL="$url2" COPAINS_DATA_DIR="$T/data" COPAINS_HTTP_ADDR="127.0.0.1:$port" \
    COPAINS_NODE_ID=3 "$BIN" api >"$T/api-restored.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$port/readyz" 60 || return 1
  ch="$(cat "$T/channel")"
  token="$(curl -fsS "http://127.0.0.1:$port/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"login":"alice","password":"alice-password-1"}' | "$PY" -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')" || return 1
  curl -fsS "http://127.0.0.1:$port/api/v1/channels/$ch/messages" -H "authorization: Bearer $token" |
    grep -q '"content":"hello through caddy"' || return 1
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db2 WITH (FORCE)" >/dev/null 2>&1 || true
}
if [ -s "$T/channel" ]; then
  check "deploy/backup.sh + deploy/restore.sh (pg_dump/pg_restore): a copains api on the restored database logs Alice in and serves her message" backup_restore
else
  fail "backup/restore not tried: the client run did not get that far"
fi

if grep -q panicked "$T"/api*.log "$T"/gateway.log "$T"/sfu.log; then fail "a copains process panicked"; fi

if [ "$FAILS" = 0 ]; then
  printf '\033[1;32mselfhost-test: all checks passed\033[0m\n'
else
  printf '\033[1;31mselfhost-test: %s check(s) failed\033[0m\n' "$FAILS"
  exit 1
fi
