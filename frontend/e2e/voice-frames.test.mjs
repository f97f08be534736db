// Call frame encryption (lib/voice/e2ee) on its own, in real Chromium WebRTC: two RTCPeerConnections
// in one page (loopback, fake camera + microphone), alice's frames encrypted by her FrameCrypto's
// worker, bob's decrypted by his. Needs crypto/pkg (crypto/scripts/build-wasm.sh). The page
// (e2e/voice-frames-page) is built here with vite and served with the app's CSP, so the worker,
// the wasm and both encoded-transform APIs run under the same rules as in the app.
// The same scheme through the SFU with Olm key distribution: voice-e2ee.test.mjs.
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { assert, eventually } from './lib.mjs';

const here = import.meta.dirname;
const pkg = join(here, '..', '..', 'crypto', 'pkg', 'copains_crypto.js');
// The production CSP (src/web.rs), which also governs the worker.
const CSP =
	"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; worker-src 'self' blob:; " +
	"object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'";
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

let served;
/** Builds the test page once and serves it on an ephemeral port; returns its URL. */
function page() {
	served ??= (async () => {
		if (!existsSync(pkg)) throw new Error(`${pkg} missing: run crypto/scripts/build-wasm.sh first`);
		const { build } = await import('vite');
		const out = mkdtempSync(join(tmpdir(), 'voice-frames-page-'));
		await build({
			configFile: false,
			root: join(here, 'voice-frames-page'),
			logLevel: 'warn',
			build: { outDir: out, emptyOutDir: true, target: 'esnext', minify: false },
			worker: { format: 'es' }
		});
		const server = createServer((req, res) => {
			const path = new URL(req.url, 'http://x').pathname;
			const rel = normalize(path === '/' ? 'index.html' : path.slice(1));
			const file = join(out, rel);
			if (rel.startsWith('..') || !existsSync(file)) {
				res.writeHead(404).end();
				return;
			}
			res.writeHead(200, {
				'content-type': types[extname(file)] ?? 'application/octet-stream',
				'content-security-policy': CSP
			});
			res.end(readFileSync(file));
		});
		await new Promise((r) => server.listen(0, '127.0.0.1', r));
		server.unref();
		process.on('exit', () => rmSync(out, { recursive: true, force: true }));
		return `http://127.0.0.1:${server.address().port}/`;
	})();
	return served;
}

async function open(p) {
	const errors = [];
	p.on('console', (m) => {
		if (m.type() === 'error') errors.push(m.text());
	});
	await p.goto(await page());
	await p.waitForFunction(() => window.framesReady === true, null, { timeout: 20000 });
	return errors;
}

/** Mean absolute difference (0-255) of 32×24 grey thumbnails: at most MATCH is the same picture, NO_MATCH or more is not. */
const MATCH = 6;
const NO_MATCH = 20;

const inbound = (p, kind = 'video') => p.evaluate((k) => window.frames.inbound(k), kind);

/** Encrypt on alice, decrypt on bob: video decodes; the wire frame is SFrame under alice's key; rotation. */
async function decodes(p, mode, shot) {
	const errors = await open(p);
	const api = await p.evaluate(() => ({ script: window.frames.hasScriptTransform, streams: window.frames.hasEncodedStreams }));
	assert(api[mode], `this Chromium offers ${mode === 'script' ? 'RTCRtpScriptTransform' : 'createEncodedStreams'}`);
	await p.evaluate((m) => window.frames.start(m, true), mode);
	await eventually(async () => (await inbound(p)).framesDecoded > 5, `bob decodes alice's encrypted video (${mode})`, 20000);
	await eventually(async () => (await inbound(p, 'audio')).bytesReceived > 0, 'bob receives audio', 10000);

	for (const kind of ['video', 'audio']) {
		const w = await p.evaluate((k) => window.frames.wireCheck(k), kind);
		assert(w.keyFound, `${kind}: the wire frame's KID names the key alice sent bob (${JSON.stringify(w)})`);
		assert(w.generation === w.sendGeneration, `${kind}: KID generation ${w.generation} = alice's ${w.sendGeneration}`);
		assert(w.prefixKept, `${kind}: the ${w.prefix} codec bytes stay clear`);
		assert(kind === 'audio' ? w.prefix === 1 : w.prefix === 3 || w.prefix === 10, `${kind}: clear prefix ${w.prefix}`);
		// SFrame header (≥ 1 byte config + 7 bytes KID) and a 16-byte tag are added.
		assert(w.afterLen >= w.beforeLen + 16 + 8, `${kind}: ${w.beforeLen} → ${w.afterLen} bytes`);
		assert(!w.plaintextBodyOnWire, `${kind}: plaintext bytes after the prefix do not appear on the wire`);
		assert(w.independentDecryptMatches, `${kind}: the crate's FrameReceiver decrypts the wire frame to the original`);
	}
	const diffs = await p.evaluate(() => window.frames.pictureDiffs(3000));
	const close = diffs.filter((d) => d <= MATCH);
	assert(close.length >= diffs.length * 0.8, `bob's picture is alice's camera (mean pixel differences ${diffs.join(' ')})`);
	const b = await p.evaluate(() => window.frames.bobSample('video'));
	assert(b.changed, 'bob: the frame given to the decoder differs from the one received');

	// Carol joins and leaves alice's call: alice sends carol her key, then rotates; bob keeps decoding.
	const r = await p.evaluate(() => window.frames.rotate());
	assert(r.keysToCarol.includes(r.before), `carol got alice's key on joining (${JSON.stringify(r)})`);
	assert(r.after !== r.before && !r.keysToCarol.includes(r.after), `alice rotated to a key carol never got (${JSON.stringify(r)})`);
	const decodedAtRotation = (await inbound(p)).framesDecoded;
	await eventually(
		async () => (await p.evaluate(() => window.frames.bobSample('video'))).generation === r.after,
		'bob receives frames under the new key'
	);
	await eventually(async () => (await inbound(p)).framesDecoded > decodedAtRotation + 10, 'bob decodes after the rotation', 15000);
	// Another participant announcing alice's key generation with her own key changes nothing.
	await p.evaluate(() => window.frames.hijack());
	const decodedAtHijack = (await inbound(p)).framesDecoded;
	await eventually(async () => (await inbound(p)).framesDecoded > decodedAtHijack + 10, 'bob still decodes alice after mallory’s claim', 15000);
	const s = await p.evaluate(() => window.frames.stats());
	assert(s.bob.authFailed === 0, `no frame failed authentication (${JSON.stringify(s)})`);
	assert(s.alice.encrypted > 20 && s.bob.decrypted > 20, `frames went through the worker (${JSON.stringify(s)})`);
	await shot(`decoding-${mode}`);
	await p.evaluate(() => window.frames.stop());
	assert(errors.length === 0, `console errors: ${errors.join(' | ')}`);
}

/** Bob's decryption off: packets arrive but no video frame decodes (they really are encrypted). */
async function noDecode(p, mode, shot) {
	const errors = await open(p);
	await p.evaluate((m) => window.frames.start(m, false), mode);
	await eventually(async () => (await inbound(p)).bytesReceived > 50_000, `bob receives alice's video (${mode})`, 20000);
	const w = await p.evaluate(() => window.frames.bobSample('video'));
	assert(!w.changed, 'bob passes the wire frame to the decoder unchanged');
	// Give the decoder time, with key frames requested along the way.
	const diffs = await p.evaluate(() => window.frames.pictureDiffs(5000));
	const v = await inbound(p);
	console.log(`        decryption off (${mode}): ${v.framesReceived} frames received, ${v.framesDecoded} "decoded"; picture differences ${diffs.join(' ')}`);
	const s = await p.evaluate(() => window.frames.stats());
	assert(v.bytesReceived > 100_000 && v.packetsReceived > 100, `video keeps arriving (${JSON.stringify(v)})`);
	assert(s.bob.passedThrough > 50 && s.bob.decrypted === 0, `bob's worker passed frames through (${JSON.stringify(s)})`);
	// libvpx sometimes accepts a frame of ciphertext and outputs noise (framesDecoded > 0 then):
	// what counts is that alice's picture never appears.
	assert(diffs.length >= 10 && diffs.every((d) => d >= NO_MATCH), `bob never shows alice's picture (mean pixel differences ${diffs.join(' ')})`);
	// Switched back on, the same stream decodes: the frames were fine, just encrypted.
	await p.evaluate(() => window.frames.setBobDecrypt(true));
	await eventually(async () => (await inbound(p)).framesDecoded > 5, 'video decodes once decryption is back on', 20000);
	await shot(`decrypt-off-${mode}`);
	await p.evaluate(() => window.frames.stop());
	// Chromium logs decoder failures of the undecryptable frames; anything else is unexpected.
	const other = errors.filter((e) => !/decod|vp8|video/i.test(e));
	assert(other.length === 0, `console errors: ${other.join(' | ')}`);
}

export default [
	{
		name: 'RTCRtpScriptTransform: encrypted frames decode, SFrame on the wire, key rotation',
		timeoutMs: 60000,
		run: ({ page: p, shot }) => decodes(p, 'script', shot)
	},
	{
		name: 'RTCRtpScriptTransform: decryption off, no video decodes',
		timeoutMs: 60000,
		run: ({ page: p, shot }) => noDecode(p, 'script', shot)
	},
	{
		name: 'a lost key message is asked for again and the video decodes',
		timeoutMs: 45000,
		run: async ({ page: p }) => {
			await open(p);
			await p.evaluate(() => window.frames.start('script', true, true));
			await eventually(async () => (await inbound(p)).framesDecoded > 5, 'bob decodes after asking alice for her key again', 25000);
			const log = await p.evaluate(() => window.frames.sentLog());
			assert(log.includes('call_frame_key_request:bob->alice'), `bob asked alice (${log.join(', ')})`);
			assert(log.includes('call_frame_key:alice->bob'), `alice sent her key again (${log.join(', ')})`);
			const s = await p.evaluate(() => window.frames.stats());
			assert(s.bob.unknownKey > 0, `frames under the unknown key were dropped first (${JSON.stringify(s.bob)})`);
			await p.evaluate(() => window.frames.stop());
		}
	},
	{
		name: 'createEncodedStreams fallback: encrypted frames decode, decryption off decodes nothing',
		timeoutMs: 90000,
		run: async ({ page: p, shot, context }) => {
			await decodes(p, 'streams', shot);
			const p2 = await context.newPage();
			await noDecode(p2, 'streams', shot);
		}
	}
];
