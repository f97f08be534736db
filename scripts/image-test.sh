#!/usr/bin/env bash
# The image and the compose stack, run for real (issue 14), as a step of scripts/test.sh:
#   1. a Docker engine: the one at DOCKER_HOST when it answers, else a private dockerd
#      (scripts/image/lib.sh; stopped at the end), with Debian's client and compose v2;
#   2. base images: pulled when a registry answers, else made here (debootstrap, the host's
#      Rust toolchain, Node 22 from the npm registry);
#   3. the image, built with the real Dockerfile (twice: two version labels of one tree, for
#      the upgrade), then checked: --help, non-root, size, `serve` on a fresh database answers
#      /readyz, the HEALTHCHECK turns healthy, an unreachable database is said and retried;
#   4. the shipped docker-compose.yml, up on that image (scripts/image/compose.test.yml swaps
#      in stand-ins built from Debian's packages for caddy, postgres, redis and coturn, and
#      remaps the published ports), scaled to two api and three gateway replicas; a member's
#      journey through Caddy over HTTPS and coturn (scripts/lib/selfhost_client.py); a message
#      through one api replica reaches every gateway replica;
#   5. the upgrade as docs/upgrading.md gives it, while a client keeps sending: messages lost,
#      seconds of failed requests, gateway catch-up (bench/results/upgrade.json);
#   6. everything torn down.
# Environment:
#   COPAINS_IMAGE_CACHE   engine data root and caches [~/.cache/copains-image-test]
#   COPAINS_IMAGE_UNTIL   stop after this phase: engine, bases, image, checks, compose (iteration)
#   COPAINS_TEST_DATABASE_URL  admin URL of a PostgreSQL for the `serve` check [postgres://postgres@127.0.0.1:5432/postgres]
source "$(dirname "$0")/lib/common.sh"
T="$(mktemp -d /tmp/copains-image.XXXXXX)"
export DOCKER_CONFIG="$T/docker-config"
source "$ROOT/scripts/image/lib.sh"

ADMIN_URL="${COPAINS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
UNTIL="${COPAINS_IMAGE_UNTIL:-}"
FAILS=0
CONTAINERS=()
DBS=()
PROJECT="copains-test-$$"
SITE="$T/site"
cleanup() {
  local rc=$?
  if [ -f "$SITE/docker-compose.yml" ]; then
    if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
      (cd "$SITE" && docker compose logs --no-color --tail 30 2>&1 | tail -150) || true
    fi
    (cd "$SITE" && docker compose down -v --remove-orphans >/dev/null 2>&1) || true
  fi
  for c in "${CONTAINERS[@]}"; do docker_cli rm -f "$c" >/dev/null 2>&1 || true; done
  for d in "${DBS[@]}"; do psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  stop_engine
  if [ "$rc" != 0 ] || [ "$FAILS" != 0 ]; then
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "---- $(basename "$f") (last 20 lines)"; tail -20 "$f"; }; done
  fi
  rm -rf "$T" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { printf '\033[1;32mPASS\033[0m %s\n' "$*"; }
fail() { printf '\033[1;31mFAIL\033[0m %s\n' "$*"; FAILS=$((FAILS + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
done_if() { [ "$UNTIL" = "$1" ] && { log "stopping after '$1' (COPAINS_IMAGE_UNTIL)"; exit "$((FAILS > 0))"; }; return 0; }
elapsed() { echo $(( $(date +%s) - $1 )); }

# ------------------------------------------------------------------ 1. the engine
ensure_docker_programs
ensure_postgres_programs
start_engine
docker compose version >/dev/null 2>&1 || die "docker compose v2 does not run"
pass "Docker engine $(docker_cli version -f '{{.Server.Version}}' 2>/dev/null), $(docker compose version --short)"
done_if engine

# ------------------------------------------------------------------ 2. base images
t0=$(date +%s)
# The Rust stand-in carries the host's toolchain: give it what the Dockerfile asks for.
ensure_rust
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >/dev/null
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src >/dev/null
WB="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB" ]; then
  log "installing wasm-bindgen-cli $WB on the host (the Rust base image copies it)"
  cargo install wasm-bindgen-cli --version "$WB" --locked >/dev/null 2>&1 || cargo install wasm-bindgen-cli --version "$WB" >/dev/null
fi
ensure_node
base_debian
base_rust
base_node
pass "base images ($(elapsed "$t0") s): $BASE_DEBIAN, $BASE_RUST, $BASE_NODE"
done_if bases

# ------------------------------------------------------------------ 3. the image
IMAGE1=copains:test-1
IMAGE2=copains:test-2
build_copains() { # build_copains TAG VERSION
  build_local "$1" "$ROOT/Dockerfile" "$ROOT" "RUST_IMAGE=$BASE_RUST" "NODE_IMAGE=$BASE_NODE" \
    "DEBIAN_IMAGE=$BASE_DEBIAN" "COPAINS_IMAGE_VERSION=$2"
}
t0=$(date +%s)
log "building $IMAGE1 with the Dockerfile (cold: ~15 min on 2 cores)"
keep_log() { mkdir -p "$IMAGE_CACHE/logs" && cp "$1" "$IMAGE_CACHE/logs/" && grep -n -i -B2 -A8 'error' "$1" | grep -v 'level=' | tail -80; echo "(whole log: $IMAGE_CACHE/logs/$(basename "$1"))"; }
build_copains "$IMAGE1" test-1 >"$T/build-1.log" 2>&1 || { keep_log "$T/build-1.log"; die "docker build failed"; }
BUILD1_S=$(elapsed "$t0")
t0=$(date +%s)
build_copains "$IMAGE2" test-2 >"$T/build-2.log" 2>&1 || { keep_log "$T/build-2.log"; die "docker build (second label) failed"; }
BUILD2_S=$(elapsed "$t0")
IMAGE_MB=$(( $(docker_cli image inspect -f '{{.Size}}' "$IMAGE1") / 1000000 ))
pass "docker build: $IMAGE1 in $BUILD1_S s, $IMAGE2 (same tree, another label) in $BUILD2_S s; $IMAGE_MB MB"
done_if image

# ------------------------------------------------------------------ 4. the image, run
D=/usr/bin/docker
help_works() { $D run --rm "$IMAGE1" --help >"$T/help.out" 2>&1 && grep -q 'serve' "$T/help.out"; }
check "docker run $IMAGE1 --help" help_works
non_root() {
  [ "$($D image inspect -f '{{.Config.User}}' "$IMAGE1")" = 10001:10001 ] &&
    [ "$($D run --rm --entrypoint id "$IMAGE1" -u)" = 10001 ]
}
check "the image runs as uid 10001, not root" non_root

DB="copains_test_image_$$"; DBS+=("$DB")
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB" >/dev/null || die "cannot create $DB on $ADMIN_URL"
SERVE_PORT="$(free_port)"
serve_ready() {
  local c="copains-test-serve-$$" t0
  CONTAINERS+=("$c")
  t0=$(date +%s%N)
  $D run -d --name "$c" --network host -e DATABASE_URL="${ADMIN_URL%/*}/$DB" \
    -e COPAINS_HTTP_ADDR="127.0.0.1:$SERVE_PORT" -e COPAINS_PUBLIC_URL="http://127.0.0.1:$SERVE_PORT" \
    "$IMAGE1" serve >/dev/null || return 1
  wait_http "http://127.0.0.1:$SERVE_PORT/readyz" 60 || { $D logs "$c" 2>&1 | tail -20; return 1; }
  FIRST_START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  curl -fsS "http://127.0.0.1:$SERVE_PORT/" | grep -qi '<!doctype html>' || { echo "no web app at /" >&2; return 1; }
  local h=""
  for _ in $(seq 60); do
    h="$($D inspect -f '{{.State.Health.Status}}' "$c")"
    [ "$h" = healthy ] && break
    sleep 1
  done
  [ "$h" = healthy ] || { echo "health: $h" >&2; return 1; }
  [ "$($D exec "$c" id -u)" = 10001 ]
}
check "serve on a fresh database: /readyz answers, the web app is served, the HEALTHCHECK turns healthy, the process is uid 10001" serve_ready
log "first start to /readyz: ${FIRST_START_MS:-?} ms"
no_database() {
  local c="copains-test-nodb-$$" n=0 logs
  CONTAINERS+=("$c")
  $D run -d --name "$c" --network host --restart on-failure -e COPAINS_DB_WAIT_SECS=2 \
    -e DATABASE_URL="postgres://copains:secret@127.0.0.1:9/copains" -e COPAINS_HTTP_ADDR="127.0.0.1:$(free_port)" \
    "$IMAGE1" api >/dev/null || return 1
  for _ in $(seq 60); do
    n="$($D inspect -f '{{.RestartCount}}' "$c")"
    [ "$n" -ge 1 ] && break
    sleep 1
  done
  logs="$($D logs "$c" 2>&1)"
  grep -q 'PostgreSQL at 127.0.0.1:9/copains is not reachable' <<<"$logs" && ! grep -q 'secret' <<<"$logs" &&
    [ "$n" -ge 1 ] || { echo "restarts: $n; logs:"; tail -5 <<<"$logs"; return 1; } >&2
}
check "an unreachable database at start: a log line that names it (not its password), then an exit the restart policy restarts" no_database
done_if checks

# ------------------------------------------------------------------ 5. the compose stack
# Stand-ins for the images compose pulls, where no registry gives them.
t0=$(date +%s)
for s in caddy postgres redis coturn; do
  DOCKER_BUILDKIT=1 $D build --network host --progress plain --target "$s" -t "copains-standin/$s" \
    --build-arg "DEBIAN_IMAGE=$BASE_DEBIAN" $(proxy_build_args) -f "$ROOT/scripts/image/standins.Dockerfile" \
    "$ROOT/scripts/image" >"$T/standin-$s.log" 2>&1 || { keep_log "$T/standin-$s.log"; die "stand-in $s failed"; }
done
pass "stand-ins for caddy, postgres, redis, coturn from Debian's packages ($(elapsed "$t0") s)"

# The admin's copy, as docs/deployment.md has it, plus the test override.
mkdir -p "$SITE" && cp -R docker-compose.yml caddy deploy "$SITE/" && cp scripts/image/compose.test.yml "$SITE/"
"$SITE/deploy/init.sh" --domain localhost --public-ip 127.0.0.1 --image "$IMAGE1" >"$T/init.log" 2>&1 || { cat "$T/init.log"; die "deploy/init.sh failed"; }
HTTPS_PORT="$(free_port)"; HTTP_PORT="$(free_port)"; METRICS_TOKEN="$(openssl rand -hex 24)"
# Below the kernel's ephemeral range (32768-60999), where the default 50000-50100 sits: a
# resolver's passing UDP socket there once made the publish fail ("address already in use").
SFU_LO=$((20000 + RANDOM % 10000))
cat >>"$SITE/.env" <<ENV
COMPOSE_FILE=docker-compose.yml:compose.test.yml
COMPOSE_PROJECT_NAME=$PROJECT
TEST_HTTP_PORT=$HTTP_PORT
TEST_HTTPS_PORT=$HTTPS_PORT
COPAINS_METRICS_TOKEN=$METRICS_TOKEN
COPAINS_SFU_PORTS=$SFU_LO-$((SFU_LO + 20))
ENV
grep -q "^COPAINS_IMAGE=$IMAGE1\$" "$SITE/.env" || die "deploy/init.sh --image did not set COPAINS_IMAGE"
compose() { (cd "$SITE" && docker compose "$@"); }
SCALE=(--scale api=2 --scale gateway=3)
CA="$T/caddy-root.crt"
stack_ready() { # stack_ready SECONDS: every copains replica healthy and Caddy answering over HTTPS
  local until=$(( $(date +%s) + $1 )) c
  while [ "$(date +%s)" -lt "$until" ]; do
    local ok=1
    for c in $(compose ps -q api gateway sfu 2>/dev/null); do
      [ "$($D inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null)" = healthy ] || ok=0
    done
    [ "$(compose ps -q api gateway sfu | wc -l)" = 6 ] || ok=0
    if [ "$ok" = 1 ] && { [ -s "$CA" ] || $D cp "$(compose ps -q caddy)":/data/caddy/pki/authorities/local/root.crt "$CA" >/dev/null 2>&1; } &&
      curl -fsS --cacert "$CA" -o /dev/null "https://localhost:$HTTPS_PORT/readyz" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  return 1
}
t0=$(date +%s)
compose up -d "${SCALE[@]}" >"$T/compose-up.log" 2>&1 || { cat "$T/compose-up.log"; die "docker compose up failed"; }
stack_ready 240 || { compose ps -a; die "the stack did not become ready within 240 s"; }
COMPOSE_UP_S=$(elapsed "$t0")
pass "docker compose up -d --scale api=2 --scale gateway=3: 2 api, 3 gateway, 1 sfu healthy, Caddy on https://localhost:$HTTPS_PORT in $COMPOSE_UP_S s"

distinct_node_ids() {
  local ids n
  ids="$(compose logs --no-color api gateway sfu 2>/dev/null | grep -o '"node_id":[0-9]*' | sort -u)"
  n="$(wc -l <<<"$ids")"
  [ "$n" = 6 ] || { echo "node ids: $(tr '\n' ' ' <<<"$ids")" >&2; return 1; }
}
check "each of the 6 copains processes leased its own node id (no COPAINS_NODE_ID in docker-compose.yml)" distinct_node_ids

# A Python with `websockets` (as scripts/selfhost-test.sh).
apt_install python3 python3-websockets
PY=""
for c in python3 /usr/bin/python3; do "$c" -c 'import websockets' 2>/dev/null && { PY="$c"; break; }; done
if [ -z "$PY" ]; then
  [ -x target/selfhost-venv/bin/python ] || python3 -m venv target/selfhost-venv
  target/selfhost-venv/bin/pip install -q 'websockets>=10,<16' && PY=target/selfhost-venv/bin/python
fi
EDGE_GW="$($D network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "${PROJECT}_edge")"
export CPORT="$HTTPS_PORT" CA ORIGIN="https://localhost" METRICS_TOKEN
journey() {
  CLIENT_IP="${EDGE_GW:-172.29.0.1}" TURN_PORT=3478 OUT="$T/channel" timeout 90 "$PY" "$ROOT/scripts/lib/selfhost_client.py"
}
check "a member through Caddy over HTTPS: register, server, message on the gateway, SDP answer from the sfu, a relay from coturn with the TURN credentials copains minted" journey

ips_of() { # ips_of SERVICE: its replicas' addresses on the edge network
  local c
  for c in $(compose ps -q "$1"); do
    $D inspect -f "{{(index .NetworkSettings.Networks \"${PROJECT}_edge\").IPAddress}}" "$c"
  done
}
fanout() {
  "$PY" "$ROOT/scripts/image/stack_client.py" fanout "$T/state.json" "$(ips_of api | head -1)" $(ips_of gateway)
}
t_state() { "$PY" "$ROOT/scripts/image/stack_client.py" prepare "$T/state.json"; }
check "the member of the upgrade test registers, posts 20 messages, uploads an attachment, stores key-backup blobs" t_state
check "a message posted to one api replica reaches a member on each of the 3 gateway replicas" fanout
spread() { "$PY" "$ROOT/scripts/image/stack_client.py" spread "$T/state.json" $(ips_of api); }
check "Caddy spreads API requests over both api replicas" spread
done_if compose

# ------------------------------------------------------------------ 6. the upgrade
migrations() { compose exec -T postgres psql -U copains -d copains -Atc "SELECT version, installed_on FROM _sqlx_migrations ORDER BY version"; }
migrations >"$T/migrations-before.txt" || die "cannot read _sqlx_migrations in the postgres container"
"$PY" "$ROOT/scripts/image/stack_client.py" live "$T/state.json" "$T/live.json" >"$T/live.out" 2>&1 &
LIVE=$!
sleep 3
# docs/upgrading.md: a new COPAINS_IMAGE (a release tag) in .env, then pull and up. Scaled
# services keep their replicas when the same --scale flags are given again.
sed -i "s|^COPAINS_IMAGE=.*|COPAINS_IMAGE=$IMAGE2|" "$SITE/.env"
t0=$(date +%s%N)
stamp() { while IFS= read -r l; do echo "$(( ($(date +%s%N) - t0) / 1000000 )) ms $l"; done; }
if ! { compose pull && compose up -d "${SCALE[@]}"; } 2>&1 | stamp >"$T/compose-upgrade.log"; then
  cat "$T/compose-upgrade.log"; fail "docker compose pull && up -d (the upgrade)"
fi
stack_ready 240 || fail "the upgraded stack did not become ready within 240 s"
sed 's/^/  compose: /' "$T/compose-upgrade.log" | grep -v 'Pulling\|Skipped' | tail -40
UPGRADE_S=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 3
touch "$T/state.json.stop"
LIVE_RC=0
wait "$LIVE" || LIVE_RC=$?
cat "$T/live.out"
[ "$LIVE_RC" = 0 ] || fail "the member who kept sending through the upgrade (above)"
new_image() {
  local c
  for c in $(compose ps -q api gateway sfu); do
    [ "$($D inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' "$c")" = test-2 ] || return 1
  done
}
check "every copains container runs the new image (label test-2) after the upgrade ($UPGRADE_S ms for pull + up)" new_image
migrations_once() {
  migrations >"$T/migrations-after.txt" &&
    [ "$(wc -l <"$T/migrations-after.txt")" = "$(ls postgres/migrations/*.sql | wc -l)" ] &&
    diff "$T/migrations-before.txt" "$T/migrations-after.txt"
}
check "the migrations ran once: each version applied once, at the first start, none again at the upgrade" migrations_once
verify() { "$PY" "$ROOT/scripts/image/stack_client.py" verify "$T/state.json"; }
check "after the upgrade: old refresh token, login, messages, the attachment's bytes, the key-backup blobs" verify
check "no copains process panicked" bash -c "! (cd '$SITE' && docker compose logs --no-color api gateway sfu 2>&1) | grep -q panicked"

# ------------------------------------------------------------------ results
mkdir -p bench/results
python3 - "$T/live.json" <<PYEOF
import json, sys, datetime
live = json.load(open(sys.argv[1])) if len(sys.argv) > 1 else {}
out = {
  "what": "scripts/image-test.sh: the image built with the Dockerfile, the compose stack (2 api, 3 gateway) upgraded to a second image while a member keeps sending",
  "rerun": "scripts/image-test.sh (a step of scripts/test.sh)",
  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  "image_mb": $IMAGE_MB, "build_s": $BUILD1_S, "build_second_label_s": $BUILD2_S,
  "first_start_to_readyz_ms": ${FIRST_START_MS:-0}, "compose_up_s": $COMPOSE_UP_S,
  "upgrade_pull_and_up_ms": $UPGRADE_S,
  **live,
}
json.dump(out, open("bench/results/upgrade.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PYEOF

if [ "$FAILS" = 0 ]; then
  printf '\033[1;32mimage-test: all checks passed\033[0m\n'
else
  printf '\033[1;31mimage-test: %s check(s) failed\033[0m\n' "$FAILS"
  exit 1
fi
