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

cat >"$T/client.py" <<'EOF'
"""A client through Caddy: register, create a server, post, receive on the gateway; TURN."""
import asyncio, base64, hashlib, hmac, http.client, json, os, socket, ssl, struct, sys, time
import websockets

host, port, ca = "localhost", int(os.environ["CPORT"]), os.environ["CA"]
public = f"https://{host}:{port}"
ctx = ssl.create_default_context(cafile=ca)
ok = True

def report(good, what):
    global ok
    print(("\033[1;32mPASS\033[0m " if good else "\033[1;31mFAIL\033[0m ") + what, flush=True)
    ok = ok and good

def call(method, path, body=None, token=None, source="127.0.0.2", xff=None):
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=10, source_address=(source, 0))
    h = {"content-type": "application/json"}
    if token: h["authorization"] = f"Bearer {token}"
    if xff: h["x-forwarded-for"] = xff
    c.request(method, path, None if body is None else json.dumps(body), h)
    r = c.getresponse(); data = r.read(); c.close()
    return r.status, (json.loads(data) if data else None)

async def gateway(token, origin):
    return await websockets.connect(f"wss://{host}:{port}/gateway", ssl=ctx, origin=origin,
                                    local_addr=("127.0.0.2", 0), open_timeout=10)

async def next_frame(ws, pred, timeout=10):
    end = time.monotonic() + timeout
    while True:
        f = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic())))
        if pred(f): return f

async def main():
    # The client comes from 127.0.0.2 and lies in X-Forwarded-For: Caddy must replace the
    # header, and the api (trusting only Caddy at 127.0.0.1) must record 127.0.0.2.
    st, reg = call("POST", "/api/v1/auth/register",
                   {"username": "alice", "email": "alice@example.org", "password": "alice-password-1"},
                   xff="198.51.100.7")
    report(st in (200, 201) and "access_token" in reg, f"register through Caddy ({st})")
    token = reg["access_token"]
    st, sessions = call("GET", "/api/v1/users/@me/sessions", token=token)
    ips = [s.get("ip") for s in sessions] if isinstance(sessions, list) else sessions
    report(st == 200 and ips == ["127.0.0.2"],
           f"the api sees the client's address from Caddy's X-Forwarded-For, not the spoofed one (sessions ip: {ips})")
    st, server = call("POST", "/api/v1/servers", {"name": "Selfhost"}, token=token)
    report(st in (200, 201), f"create a server ({st})")

    # A foreign Origin is refused by the gateway behind Caddy.
    try:
        ws = await gateway(token, "https://evil.example")
        await next_frame(ws, lambda f: False, timeout=3)
        report(False, "gateway refuses a foreign Origin")
    except websockets.exceptions.WebSocketException as e:
        report(True, f"gateway refuses a foreign Origin ({type(e).__name__})")

    ws = await gateway(token, public)
    hello = await next_frame(ws, lambda f: True)
    await ws.send(json.dumps({"op": "identify", "token": token}))
    ready = await next_frame(ws, lambda f: f.get("op") == "ready")
    report(hello.get("op") == "hello" and "user" in json.dumps(ready), f"wss://localhost:{port}/gateway through Caddy: hello, identify, ready")
    srv = next(s for s in ready["d"]["servers"] if s["id"] == server["id"])
    channel = next(c for c in srv["channels"] if c["kind"] == "text")["id"]
    nonce = f"selfhost-{os.getpid()}"
    st, msg = call("POST", f"/api/v1/channels/{channel}/messages",
                   {"content": "hello through caddy", "nonce": nonce}, token=token)
    report(st in (200, 201), f"POST /api/v1/channels/{channel}/messages through Caddy ({st})")
    got = await next_frame(ws, lambda f: f.get("op") == "dispatch" and f.get("t") == "message_create")
    d = got["d"].get("message", got["d"])
    report(d.get("content") == "hello through caddy" and d.get("id") == msg.get("id"),
           "message_create received on the gateway WebSocket (api -> Redis -> gateway -> Caddy -> client)")
    with open(os.environ["OUT"], "w") as f:
        f.write(channel)

    # Voice: join a voice channel and send an SDP offer over the gateway; the answer comes
    # back from the separate sfu process (gateway -> Redis -> sfu -> Redis -> gateway -> Caddy).
    st, vc = call("POST", f"/api/v1/servers/{server['id']}/channels", {"name": "Lounge", "kind": "voice"}, token=token)
    report(st in (200, 201), f"create a voice channel ({st})")
    fp = ":".join(f"{b:02X}" for b in os.urandom(32))
    offer = "\r\n".join([
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "a=msid-semantic: WMS selfhost", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:sLfh", "a=ice-pwd:selfhosttestpassword0123",
        "a=ice-options:trickle", f"a=fingerprint:sha-256 {fp}", "a=setup:actpass", "a=mid:0",
        "a=sendrecv", "a=msid:selfhost track0", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1", "a=ssrc:11111111 cname:selfhost", ""])
    await ws.send(json.dumps({"op": "voice_state_update", "server_id": server["id"], "channel_id": vc["id"]}))
    await ws.send(json.dumps({"op": "voice_signal", "channel_id": vc["id"], "kind": "offer", "data": {"sdp": offer}}))
    try:
        sig = await next_frame(ws, lambda f: f.get("t") == "voice_signal" and f["d"].get("channel_id") == vc["id"]
                               and f["d"].get("kind") in ("answer", "other"), timeout=10)
        d = sig["d"]
        sdp = (d.get("data") or {}).get("sdp") or ""
        report(d.get("kind") == "answer" and "a=fingerprint:sha-256" in sdp and "m=audio" in sdp,
               "voice: SDP answer from the sfu process over wss through Caddy" + ("" if d.get("kind") == "answer" else f": {d.get('data')}"))
    except asyncio.TimeoutError:
        report(False, "voice: no SDP answer from the sfu within 10 s")
    await ws.send(json.dumps({"op": "voice_state_update", "server_id": server["id"], "channel_id": None}))
    await ws.close()

    st, ice = call("GET", "/api/v1/voice/ice-servers", token=token)
    turn_entry = next((i for i in (ice or {}).get("ice_servers", []) if i.get("credential")), None)
    report(st == 200 and turn_entry is not None, f"GET /api/v1/voice/ice-servers through Caddy mints TURN credentials ({st})")
    return turn_entry

# ---- TURN (RFC 5389/5766) with the REST-API credentials of use-auth-secret
MAGIC = 0x2112A442
def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * ((4 - len(v) % 4) % 4)
def stun(method, attrs, key=None):
    tid = os.urandom(12)
    body = b"".join(attrs)
    if key is not None:
        hdr = struct.pack("!HHI", method, len(body) + 24, MAGIC) + tid
        body += attr(0x0008, hmac.new(key, hdr + body, hashlib.sha1).digest())
    return struct.pack("!HHI", method, len(body), MAGIC) + tid + body
def parse(data):
    typ, _, _ = struct.unpack("!HHI", data[:8]); out = {}; i = 20
    while i + 4 <= len(data):
        t, l = struct.unpack("!HH", data[i:i + 4]); out[t] = data[i + 4:i + 4 + l]; i += 4 + l + (4 - l % 4) % 4
    return typ, out
def turn(tport, ice):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    def ask(msg):
        s.sendto(msg, ("127.0.0.1", tport)); return parse(s.recv(2048))
    typ, _ = ask(stun(0x0001, []))
    report(typ == 0x0101, "coturn answers a STUN binding request")
    transport = attr(0x0019, bytes([17, 0, 0, 0]))
    typ, a = ask(stun(0x0003, [transport]))
    realm, nonce = a.get(0x0014, b""), a.get(0x0015, b"")
    # The credentials copains minted (GET /voice/ice-servers), checked by coturn with the
    # same secret.
    user, good = ice["username"].encode(), ice["credential"].encode()
    def key_for(password):
        return hashlib.md5(user + b":" + realm + b":" + password).digest()
    creds = [attr(0x0006, user), attr(0x0014, realm), attr(0x0015, nonce)]
    typ, a = ask(stun(0x0003, [transport] + creds, key_for(b"wrong-password")))
    report(typ == 0x0113, "coturn refuses an Allocate with a wrong password (401)")
    typ, a = ask(stun(0x0003, [transport] + creds, key_for(good)))
    report(typ == 0x0103 and 0x0016 in a, "coturn allocates a relay with the credentials copains minted (use-auth-secret, shared secret)")
    def permission(peer):
        x = bytes(a ^ b for a, b in zip(socket.inet_aton(peer), struct.pack("!I", MAGIC)))
        xpeer = attr(0x0012, struct.pack("!BBH", 0, 1, 3478 ^ (MAGIC >> 16)) + x)
        typ, r = ask(stun(0x0008, [xpeer] + creds, key_for(good)))
        code = r.get(0x0009, b"\0\0\0\0")
        return 200 if typ == 0x0108 else code[2] * 100 + code[3]
    for peer in ("10.1.2.3", "172.17.0.2", "192.168.1.1", "169.254.169.254", "100.64.0.1"):
        st = permission(peer)
        report(st == 403, f"coturn refuses {peer} as a relay peer (denied-peer-ip): {st}")
    st = permission("93.184.215.14")
    report(st == 200, f"coturn accepts a public peer (93.184.215.14): {st}")

ice = asyncio.run(main())
if ice:
    turn(int(os.environ["TURN_PORT"]), ice)
sys.exit(0 if ok else 1)
EOF
# A Python with `websockets`: Debian's (apt above), else a venv under target/.
PY=""
for c in python3 /usr/bin/python3; do "$c" -c 'import websockets' 2>/dev/null && { PY="$c"; break; }; done
if [ -z "$PY" ]; then
  [ -x target/selfhost-venv/bin/python ] || python3 -m venv target/selfhost-venv
  target/selfhost-venv/bin/pip install -q 'websockets>=10,<16' && PY=target/selfhost-venv/bin/python
fi
if CPORT="$CPORT" CA="$CA" TURN_PORT="$TURN_PORT" TURN_SECRET="$TURN_SECRET" OUT="$T/channel" timeout 60 "$PY" "$T/client.py"; then :; else
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
