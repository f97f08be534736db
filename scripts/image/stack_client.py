"""A member of the compose stack, through its scaling and an upgrade (scripts/image-test.sh, issue 14).

  stack_client.py prepare STATE   register, create a server, post 20 messages, upload an
                                    attachment, store key-backup blobs; keep it all in STATE
  stack_client.py live STATE OUT  keep sending (one message every 100 ms, each retried with
                                    its nonce until the api takes it) and keep a gateway
                                    connection open (reconnect, resume or identify, catch up by
                                    REST) until the file STATE.stop appears; then check that
                                    every message the api acknowledged is stored and was seen
                                    on the gateway; results to OUT (JSON)
  stack_client.py fanout STATE API_IP GW_IP...
                                    a message posted to one api replica reaches the member
                                    on every gateway replica
  stack_client.py spread STATE API_IP...
                                    Caddy spreads requests over the api replicas (their
                                    /metrics; METRICS_TOKEN is the instance's token)
  stack_client.py verify STATE    after the upgrade: the old refresh token still refreshes,
                                    login works, the 20 messages, the attachment (same bytes)
                                    and the key-backup blobs are all there

Environment: CPORT (Caddy's HTTPS port on localhost), CA (Caddy's root certificate), ORIGIN
(the instance's public URL). Exit status 0 only when every check passed.
"""
import asyncio, hashlib, http.client, json, os, ssl, sys, time
import websockets

HOST, PORT, CA = "localhost", int(os.environ["CPORT"]), os.environ["CA"]
ORIGIN = os.environ.get("ORIGIN") or f"https://{HOST}:{PORT}"
CTX = ssl.create_default_context(cafile=CA)
OK = True


def report(good, what):
    global OK
    print(("\033[1;32mPASS\033[0m " if good else "\033[1;31mFAIL\033[0m ") + what, flush=True)
    OK = OK and good


def call(method, path, body=None, token=None, raw=None, ctype="application/json", timeout=10):
    """One request through Caddy; (status, parsed body). A connection error is status 0."""
    try:
        c = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=timeout)
        h = {"content-type": ctype}
        if token:
            h["authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        c.request(method, path, data, h)
        r = c.getresponse()
        out = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return 0, {"error": repr(e)}
    if r.getheader("content-type", "").startswith("application/json") and out:
        return r.status, json.loads(out)
    return r.status, out


def history(channel, token):
    """Every message of the channel, oldest first (pages of 100)."""
    out, after = [], "1"  # ids are positive: "after 1" is from the start
    while True:
        st, page = call("GET", f"/api/v1/channels/{channel}/messages?after={after}&limit=100", token=token)
        if st != 200:
            raise RuntimeError(f"history: {st} {page}")
        out += page
        if len(page) < 100:
            return out
        after = page[-1]["id"]


def prepare(state_file):
    st, reg = call("POST", "/api/v1/auth/register",
                   {"username": "upgrader", "email": "upgrader@example.org", "password": "upgrader-password-1"})
    report(st in (200, 201), f"register the member who lives through the upgrade ({st})")
    token = reg["access_token"]
    st, server = call("POST", "/api/v1/servers", {"name": "Upgrade"}, token=token)
    report(st in (200, 201), f"create a server ({st})")
    st, channels = call("GET", f"/api/v1/servers/{server['id']}/channels", token=token)
    channel = next(c for c in channels if c["kind"] == "text")["id"]
    sent = []
    for i in range(20):
        st, m = call("POST", f"/api/v1/channels/{channel}/messages",
                     {"content": f"before the upgrade {i}", "nonce": f"before-{i}"}, token=token)
        if st in (200, 201):
            sent.append(m["id"])
    report(len(sent) == 20, f"20 messages before the upgrade ({len(sent)} taken)")
    blob = os.urandom(200_000)
    st, att = call("POST", f"/api/v1/channels/{channel}/attachments?filename=upgrade.bin",
                   token=token, raw=blob, ctype="application/octet-stream")
    report(st in (200, 201), f"upload a 200 KB attachment ({st})")
    st, backup = call("PUT", "/api/v1/keys/backup", {"auth_data": "upgrade-check"}, token=token)
    report(st in (200, 201), f"start a key backup ({st})")
    sessions = [{"channel_id": channel, "session_id": f"s{i}", "data": hashlib.sha256(bytes([i])).hexdigest()}
                for i in range(5)]
    st, put = call("PUT", "/api/v1/keys/backup/sessions",
                   {"version": backup["version"], "sessions": sessions}, token=token)
    report(st == 200 and put.get("sessions") == 5, f"store 5 key-backup blobs ({st})")
    with open(state_file, "w") as f:
        json.dump({"token": token, "refresh": reg["refresh_token"], "channel": channel, "server": server["id"],
                   "before": sent, "attachment": att["id"], "attachment_sha256": hashlib.sha256(blob).hexdigest(),
                   "sessions": sessions}, f)


class Gateway:
    """One member's gateway connection that outlives the node it is on: on a close it
    reconnects through Caddy, resumes when the node still knows the session, else identifies
    and catches up with the REST history after the last message it saw."""

    def __init__(self, token, channel):
        self.token, self.channel = token, channel
        self.seen, self.session, self.seq, self.last_id = set(), None, 0, "0"
        self.connections, self.resumed, self.caught_up, self.down = 0, 0, 0, []
        self.connected = asyncio.Event()

    @property
    def reconnects(self):
        """Sessions established after the first one (resumed or identified again)."""
        return max(0, self.connections - 1)

    def note(self, m):
        if m.get("channel_id", self.channel) == self.channel:
            self.seen.add(m["id"])
            if int(m["id"]) > int(self.last_id):
                self.last_id = m["id"]

    async def run(self, stop):
        while not stop.is_set():
            was_up = self.connected.is_set()
            try:
                async with websockets.connect(f"wss://{HOST}:{PORT}/gateway", ssl=CTX, origin=ORIGIN,
                                              open_timeout=5, max_size=2**24) as ws:
                    await self.session_on(ws, stop)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
                pass
            if not stop.is_set():
                if self.connected.is_set() or was_up:
                    self.down.append(time.monotonic())  # a session that was up just ended
                self.connected.clear()
                await asyncio.sleep(0.2)

    async def session_on(self, ws, stop):
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        interval = hello.get("heartbeat_interval_ms", 30000) / 1000
        if self.session:
            await ws.send(json.dumps({"op": "resume", "token": self.token, "session_id": self.session, "seq": self.seq}))
        else:
            await ws.send(json.dumps({"op": "identify", "token": self.token}))
        beat = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - beat > interval / 2:
                await ws.send(json.dumps({"op": "heartbeat", "seq": self.seq}))
                beat = time.monotonic()
            try:
                f = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except asyncio.TimeoutError:
                continue
            op = f.get("op")
            if op == "ready":
                self.connections += 1
                self.session, self.seq = f["session_id"], 0
                await self.catch_up()
                self.connected.set()
            elif op == "resumed":
                self.connections += 1
                self.resumed += 1
                self.connected.set()
            elif op == "invalid_session":
                self.session = None
                await ws.send(json.dumps({"op": "identify", "token": self.token}))
            elif op == "dispatch":
                self.seq = f.get("s", self.seq)
                if f.get("t") == "message_create":
                    self.note(f["d"].get("message", f["d"]))

    async def catch_up(self):
        """What was posted while this member was away, from the REST history."""
        if self.last_id == "0":
            return
        loop = asyncio.get_running_loop()
        st, page = await loop.run_in_executor(None, lambda: call(
            "GET", f"/api/v1/channels/{self.channel}/messages?after={self.last_id}&limit=100", token=self.token))
        if st == 200:
            for m in page:
                self.note(m)
            self.caught_up += len(page)


async def live(state_file, out_file):
    s = json.load(open(state_file))
    stop = asyncio.Event()
    gw = Gateway(s["token"], s["channel"])
    gw_task = asyncio.create_task(gw.run(stop))
    await asyncio.wait_for(gw.connected.wait(), 15)
    loop = asyncio.get_running_loop()
    acked, attempts, failed_at, failures, statuses = [], 0, [], 0, {}
    t_start, slowest = time.monotonic(), 0.0
    i = 0
    while not os.path.exists(state_file + ".stop"):
        nonce = f"live-{i}"
        while True:  # the same nonce until the api takes it: a retry never makes a duplicate
            attempts += 1
            t = time.monotonic()
            st, m = await loop.run_in_executor(None, lambda: call(
                "POST", f"/api/v1/channels/{s['channel']}/messages",
                {"content": f"during the upgrade {i}", "nonce": nonce}, token=s["token"], timeout=20))
            slowest = max(slowest, time.monotonic() - t)
            if st in (200, 201):
                acked.append((m["id"], nonce))
                break
            failures += 1
            failed_at.append(t)
            statuses[str(st)] = statuses.get(str(st), 0) + 1
            await asyncio.sleep(0.1)
            if time.monotonic() - t > 120:
                break
        i += 1
        await asyncio.sleep(0.1)
    # Time for the gateway to settle (a reconnect in flight, its catch-up).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(a in gw.seen for a, _ in acked):
        await asyncio.sleep(0.2)
    stop.set()
    await gw_task
    stored = {m["id"]: m for m in history(s["channel"], s["token"])}
    lost = [a for a, _ in acked if a not in stored]
    texts = [m.get("content") for m in stored.values() if str(m.get("content", "")).startswith("during the upgrade ")]
    unseen = [a for a, _ in acked if a not in gw.seen]
    # The failed-request gap: from the first failure to the last one (plus one retry interval).
    gap = (max(failed_at) - min(failed_at) + 0.1) if failed_at else 0.0
    res = {"messages_sent": len(acked), "messages_lost": len(lost), "duplicates": len(texts) - len(set(texts)),
           "post_attempts": attempts, "post_failures": failures, "failed_request_gap_s": round(gap, 2),
           "gateway_reconnects": gw.reconnects, "gateway_resumed": gw.resumed,
           "gateway_caught_up_by_rest": gw.caught_up, "gateway_unseen": len(unseen),
           "failure_statuses": statuses, "slowest_post_s": round(slowest, 2),
           "failures_from_s": round(min(failed_at) - t_start, 2) if failed_at else None,
           "failures_until_s": round(max(failed_at) - t_start, 2) if failed_at else None,
           "gateway_down_at_s": [round(d - t_start, 2) for d in gw.down]}
    json.dump(res, open(out_file, "w"), indent=2)
    report(len(acked) > 0 and not lost, f"{len(acked)} messages acknowledged while the stack upgraded, {len(lost)} lost")
    report(res["duplicates"] == 0, f"no message stored twice (retries with the same nonce): {res['duplicates']} duplicates")
    report(gw.reconnects >= 1 and not unseen,
           f"the open gateway connection reconnected ({gw.reconnects}×, {gw.resumed} resumed) and saw every message "
           f"({gw.caught_up} by catch-up, {len(unseen)} missing)")
    report(True, f"failed requests during the upgrade: {failures}, over {res['failed_request_gap_s']} s; "
                 f"the slowest answer took {res['slowest_post_s']} s (Caddy holds requests while no api answers)")


def verify(state_file):
    s = json.load(open(state_file))
    st, tok = call("POST", "/api/v1/auth/refresh", {"refresh_token": s["refresh"]})
    report(st == 200 and tok.get("access_token"), f"the refresh token of before the upgrade still refreshes ({st})")
    st, me = call("GET", "/api/v1/users/@me", token=tok.get("access_token") if isinstance(tok, dict) else None)
    report(st == 200 and me.get("username") == "upgrader", f"its new access token works ({st})")
    st, login = call("POST", "/api/v1/auth/login", {"login": "upgrader", "password": "upgrader-password-1"})
    report(st == 200, f"the account logs in with its password ({st})")
    token = login["access_token"]
    ids = {m["id"] for m in history(s["channel"], token)}
    report(all(i in ids for i in s["before"]), f"the 20 messages of before the upgrade are there")
    st, blob = call("GET", f"/api/v1/channels/{s['channel']}/attachments/{s['attachment']}", token=token)
    good = st == 200 and isinstance(blob, bytes) and hashlib.sha256(blob).hexdigest() == s["attachment_sha256"]
    report(good, f"the attachment downloads with the same bytes ({st})")
    st, page = call("GET", "/api/v1/keys/backup/sessions", token=token)
    got = sorted((b["session_id"], b["data"]) for b in (page.get("sessions", []) if isinstance(page, dict) else []))
    want = sorted((b["session_id"], b["data"]) for b in s["sessions"])
    report(st == 200 and got == want, f"the key-backup blobs are there ({st}, {len(got)} of {len(want)})")


def direct(ip, method, path, body=None, token=None):
    """A request straight to one replica (its address on the compose network)."""
    c = http.client.HTTPConnection(ip, 8080, timeout=10)
    h = {"content-type": "application/json"}
    if token:
        h["authorization"] = f"Bearer {token}"
    c.request(method, path, None if body is None else json.dumps(body), h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


async def fanout(state_file, api_ip, gateway_ips):
    """A message posted to one api replica reaches the member's connection on every gateway."""
    s = json.load(open(state_file))
    conns = []
    for ip in gateway_ips:
        ws = await websockets.connect(f"ws://{ip}:8080/gateway", origin=ORIGIN, open_timeout=5)
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(json.dumps({"op": "identify", "token": s["token"]}))
        while json.loads(await asyncio.wait_for(ws.recv(), 5)).get("op") != "ready":
            pass
        conns.append(ws)
    st, data = direct(api_ip, "POST", f"/api/v1/channels/{s['channel']}/messages",
                      {"content": "to every gateway", "nonce": "fanout"}, s["token"])
    mid = json.loads(data)["id"] if st in (200, 201) else None
    got = []
    for ip, ws in zip(gateway_ips, conns):
        end = time.monotonic() + 10
        seen = False
        while not seen and time.monotonic() < end:
            try:
                f = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic())))
            except asyncio.TimeoutError:
                break
            if f.get("t") == "message_create":
                seen = f["d"].get("message", f["d"]).get("id") == mid
        got.append(seen)
        await ws.close()
    report(mid is not None and all(got) and len(got) == 3,
           f"posted to the api at {api_ip}; seen on the gateways at {', '.join(gateway_ips)}: {got}")


def spread(state_file, api_ips):
    """Caddy sends API requests to every api replica (their request counters, by /metrics)."""
    s = json.load(open(state_file))
    metrics_token = os.environ["METRICS_TOKEN"]

    def answered(ip):
        st, data = direct(ip, "GET", "/metrics", token=metrics_token)
        if st != 200:
            raise RuntimeError(f"/metrics at {ip}: {st}")
        return sum(float(line.split()[-1]) for line in data.decode().splitlines()
                   if line.startswith("copains_http_requests_total{"))

    before = [answered(ip) for ip in api_ips]
    for _ in range(40):
        call("GET", "/api/v1/users/@me", token=s["token"])
    after = [answered(ip) for ip in api_ips]
    # Each replica's count includes its own /metrics answers (one per look) and healthchecks.
    grew = [a - b for a, b in zip(after, before)]
    report(len(api_ips) == 2 and all(g >= 10 for g in grew),
           f"40 requests through Caddy: the api replicas answered {', '.join(f'{g:.0f}' for g in grew)} more")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "prepare":
        prepare(sys.argv[2])
    elif mode == "live":
        asyncio.run(live(sys.argv[2], sys.argv[3]))
    elif mode == "verify":
        verify(sys.argv[2])
    elif mode == "fanout":
        asyncio.run(fanout(sys.argv[2], sys.argv[3], sys.argv[4:]))
    elif mode == "spread":
        spread(sys.argv[2], sys.argv[3:])
    sys.exit(0 if OK else 1)
