// Real WebRTC through the SFU: headless Chromium pages (fake camera and microphone) join one
// voice channel of a live `copains serve` over the gateway, and each decodes the others'
// video and audio; a third page's screen share is decoded by both.
//   COPAINS_URL=http://localhost:8080 node sfu/browser-test/voice.mjs
import { chromium } from 'playwright-core';

const base = process.env.COPAINS_URL ?? 'http://localhost:8080';
const args = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--auto-select-desktop-capture-source=Entire screen', '--autoplay-policy=no-user-gesture-required',
];

// Runs inside each page: the gateway voice client (what the web app's voice code does).
const pageLib = () => {
  window.api = async (path, token, body, method) => {
    const r = await fetch(path, {
      method: method ?? (body ? 'POST' : 'GET'),
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  window.register = async (name) => {
    const v = await api('/api/v1/auth/register', null, { username: name, email: `${name}@example.org`, password: `password-${name}` });
    return { token: v.access_token, id: v.user.id };
  };
  window.joinVoice = async (token, serverId, channelId, mode) => {
    const ws = new WebSocket(`${location.origin.replace('http', 'ws')}/gateway`);
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    window.voice = { ws, pc, log: [] };
    pc.ontrack = (e) => {
      const el = document.createElement(e.track.kind === 'video' ? 'video' : 'audio');
      el.autoplay = true; el.muted = true; el.playsInline = true;
      el.srcObject = new MediaStream([e.track]);
      document.body.appendChild(el);
      el.play().catch(() => {});
    };
    const send = (o) => ws.send(JSON.stringify(o));
    const signal = (kind, sdp) => send({ op: 'voice_signal', channel_id: channelId, kind, data: { sdp } });
    let chain = Promise.resolve();
    await new Promise((resolve, reject) => {
      ws.onerror = () => reject(new Error('gateway socket error'));
      ws.onmessage = (m) => {
        const f = JSON.parse(m.data);
        if (f.op === 'hello') send({ op: 'identify', token });
        else if (f.op === 'ready') resolve();
        else if (f.op === 'dispatch' && f.t === 'voice_signal' && f.d.channel_id === channelId) {
          const d = f.d;
          chain = chain.then(async () => {
            if (d.kind === 'answer') await pc.setRemoteDescription({ type: 'answer', sdp: d.data.sdp });
            else if (d.kind === 'offer') {
              await pc.setRemoteDescription({ type: 'offer', sdp: d.data.sdp });
              await pc.setLocalDescription(await pc.createAnswer());
              signal('answer', pc.localDescription.sdp);
            } else if (d.data && d.data.error) window.voice.log.push(`error: ${JSON.stringify(d.data)}`);
          }).catch((e) => window.voice.log.push(`signal error: ${e}`));
        }
      };
    });
    send({ op: 'voice_state_update', server_id: serverId, channel_id: channelId });
    if (mode === 'screen') {
      let stream;
      try {
        stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
        window.voice.screenSource = 'getDisplayMedia';
      } catch (e) {
        const c = document.createElement('canvas'); c.width = 640; c.height = 360;
        const g = c.getContext('2d'); let n = 0;
        setInterval(() => { g.fillStyle = `hsl(${(n += 7) % 360} 70% 50%)`; g.fillRect(0, 0, 640, 360); }, 33);
        stream = c.captureStream(30);
        window.voice.screenSource = `canvas (getDisplayMedia failed: ${e.name})`;
      }
      pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
    } else {
      const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
      window.voice.media = media;
      pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
      pc.addTransceiver(media.getVideoTracks()[0], {
        direction: 'sendonly',
        sendEncodings: [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }],
      });
    }
    await pc.setLocalDescription(await pc.createOffer());
    signal('offer', pc.localDescription.sdp);
  };
  window.inbound = async () => {
    const out = { video: [], audio: [] };
    const stats = await window.voice.pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.video.push({ mid: s.mid, framesDecoded: s.framesDecoded ?? 0 });
      if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio.push({ mid: s.mid, packets: s.packetsReceived ?? 0 });
    });
    return { ...out, state: window.voice.pc.connectionState, log: window.voice.log, screen: window.voice.screenSource };
  };
};

let failed = 0;
let passed = 0;
const check = (ok, what) => {
  if (ok) { passed += 1; console.log(`  ok    ${what}`); } else { failed += 1; console.log(`  FAIL  ${what}`); }
};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args });
try {
  const ctx = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const open = async () => {
    const p = await ctx.newPage();
    await p.goto(base);
    await p.evaluate(pageLib);
    return p;
  };
  const [a, b, c] = [await open(), await open(), await open()];
  const tag = Date.now().toString(36);
  const alice = await a.evaluate((n) => register(n), `va${tag}`);
  const bob = await b.evaluate((n) => register(n), `vb${tag}`);
  const carol = await c.evaluate((n) => register(n), `vc${tag}`);
  const ids = await a.evaluate(async (t) => {
    const s = await api('/api/v1/servers', t, { name: 'Voice test' });
    const ch = await api(`/api/v1/servers/${s.id}/channels`, t, { name: 'Lounge', kind: 'voice' });
    const inv = await api(`/api/v1/servers/${s.id}/invites`, t, {});
    return { server: s.id, channel: ch.id, code: inv.code };
  }, alice.token);
  for (const [p, u] of [[b, bob], [c, carol]]) {
    await p.evaluate(([t, code]) => api(`/api/v1/invites/${code}`, t, {}), [u.token, ids.code]);
  }
  await a.waitForTimeout(500);
  await a.evaluate(([t, s, ch]) => joinVoice(t, s, ch, 'camera'), [alice.token, ids.server, ids.channel]);
  await b.evaluate(([t, s, ch]) => joinVoice(t, s, ch, 'camera'), [bob.token, ids.server, ids.channel]);

  const waitFor = async (page, pred, ms) => {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      last = await page.evaluate(() => inbound());
      if (pred(last)) return last;
      await page.waitForTimeout(250);
    }
    return last;
  };
  const decodes = (s, n = 1) => s.video.filter((v) => v.framesDecoded > 0).length >= n;
  const hears = (s) => s.audio.some((x) => x.packets > 0);
  const sa = await waitFor(a, (s) => decodes(s) && hears(s), 25000);
  const sb = await waitFor(b, (s) => decodes(s) && hears(s), 25000);
  check(decodes(sa), `alice decodes bob's video (${JSON.stringify(sa.video)}, ${sa.state}) ${sa.log.join(';')}`);
  check(hears(sa), `alice receives bob's audio (${JSON.stringify(sa.audio)})`);
  check(decodes(sb), `bob decodes alice's video (${JSON.stringify(sb.video)}, ${sb.state}) ${sb.log.join(';')}`);
  check(hears(sb), `bob receives alice's audio (${JSON.stringify(sb.audio)})`);

  await c.evaluate(([t, s, ch]) => joinVoice(t, s, ch, 'screen'), [carol.token, ids.server, ids.channel]);
  const sa2 = await waitFor(a, (s) => decodes(s, 2), 45000);
  const sb2 = await waitFor(b, (s) => decodes(s, 2), 45000);
  const sc = await c.evaluate(() => inbound());
  check(decodes(sa2, 2), `alice decodes carol's screen share too (${JSON.stringify(sa2.video)}; carol: ${sc.state}, source: ${sc.screen}) ${sa2.log.join(';')} ${sc.log.join(';')}`);
  check(decodes(sb2, 2), `bob decodes carol's screen share too (${JSON.stringify(sb2.video)})`);

  // Hanging up releases the camera and microphone.
  const ended = await a.evaluate(() => {
    window.voice.media.getTracks().forEach((t) => t.stop());
    window.voice.pc.close();
    window.voice.ws.send(JSON.stringify({ op: 'voice_state_update', server_id: null, channel_id: null }));
    return window.voice.media.getTracks().every((t) => t.readyState === 'ended');
  });
  check(ended, 'hanging up stops the local tracks');
} catch (e) {
  failed += 1;
  console.log(`  FAIL  ${e.stack ?? e}`);
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
