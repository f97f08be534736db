"""A member through Caddy: register, create a server, post, receive on the gateway, get the
sfu's SDP answer, get TURN credentials and allocate a relay from coturn with them.

Used by scripts/selfhost-test.sh (native processes) and scripts/image-test.sh (the compose
stack). Environment: CPORT (Caddy's HTTPS port on localhost), CA (Caddy's root certificate),
TURN_PORT, OUT (a file that receives the text channel's id); ORIGIN (the public URL the
instance believes it is at, default https://localhost:CPORT); CLIENT_IP (the address the api
must record for this client, default 127.0.0.2, the address it connects from)."""
import asyncio, base64, hashlib, hmac, http.client, json, os, socket, ssl, struct, sys, time
import websockets

host, port, ca = "localhost", int(os.environ["CPORT"]), os.environ["CA"]
public = os.environ.get("ORIGIN") or f"https://{host}:{port}"
client_ip = os.environ.get("CLIENT_IP", "127.0.0.2")
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
    report(st == 200 and ips == [client_ip],
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
