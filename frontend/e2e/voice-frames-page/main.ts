// Test page for frontend/e2e/voice-frames.test.mjs: two RTCPeerConnections in one page (loopback),
// alice sends the fake camera and microphone through her FrameCrypto, bob receives through his.
// Keys travel over an in-page to-device bus (the app uses Olm; see voice-e2ee.test.mjs for that);
// the bus also lets the test decrypt a wire frame independently with the crate's FrameReceiver.
import init, { FrameReceiver } from '../../../crypto/pkg/copains_crypto.js';
import {
	createFrameCryptoWith,
	KEY_TYPE,
	type DeviceRef,
	type FrameCryptoTesting,
	type FrameKeyMessage,
	type KeyTransport,
	type Mode
} from '../../src/lib/voice/e2ee/core';
import { clearPrefixLen, generationOfKid, readKid } from '../../src/lib/voice/e2ee/protocol';

type Handler = (from: DeviceRef, content: unknown) => void;

/** An in-page to-device bus: what each user's transport sends is delivered (asynchronously, as JSON) to the others. */
class Bus {
	handlers = new Map<string, Map<string, Set<Handler>>>();
	sent: { from: string; to: string; type: string; content: unknown }[] = [];
	/** "to/type" of messages to lose once (a key message that never arrives). */
	lose = new Set<string>();
	transport(userId: string): KeyTransport {
		return {
			sendToUsers: async (userIds, type, content) => {
				const json = JSON.stringify(content);
				for (const to of userIds) {
					if (this.lose.delete(`${to}/${type}`)) continue;
					this.sent.push({ from: userId, to, type, content: JSON.parse(json) });
					setTimeout(() => {
						for (const h of this.handlers.get(to)?.get(type) ?? []) h({ userId, deviceId: `dev-${userId}` }, JSON.parse(json));
					}, 5);
				}
			},
			onToDevice: (type, handler) => {
				const byType = this.handlers.get(userId) ?? new Map<string, Set<Handler>>();
				this.handlers.set(userId, byType);
				const set = byType.get(type) ?? new Set<Handler>();
				byType.set(type, set);
				set.add(handler);
				return () => set.delete(handler);
			}
		};
	}
}

type Call = {
	alice: FrameCryptoTesting;
	bob: FrameCryptoTesting;
	a: RTCPeerConnection;
	b: RTCPeerConnection;
	bus: Bus;
	stream: MediaStream;
};

let call: Call | null = null;

async function start(mode: Mode, decryptOnBob: boolean, loseFirstKeyToBob = false): Promise<void> {
	const bus = new Bus();
	if (loseFirstKeyToBob) bus.lose.add(`bob/${KEY_TYPE}`);
	const channelId = 'chan-1';
	const alice = await createFrameCryptoWith({ channelId, selfUserId: 'alice', mode }, bus.transport('alice'));
	const bob = await createFrameCryptoWith({ channelId, selfUserId: 'bob', mode }, bus.transport('bob'));
	if (!decryptOnBob) bob.setDecryptionForTest(false);
	const config = (mode === 'streams' ? { encodedInsertableStreams: true } : {}) as RTCConfiguration;
	const a = new RTCPeerConnection(config);
	const b = new RTCPeerConnection(config);
	a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
	b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
	b.ontrack = (e) => {
		bob.attachReceiver(e.receiver, e.track.kind as 'audio' | 'video');
		const el = document.createElement(e.track.kind === 'video' ? 'video' : 'audio');
		el.muted = true;
		el.autoplay = true;
		el.srcObject = new MediaStream([e.track]);
		document.body.appendChild(el);
		void el.play().catch(() => {});
	};
	const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
	for (const track of stream.getTracks()) {
		const sender = a.addTrack(track, stream);
		alice.attachSender(sender, track.kind as 'audio' | 'video');
	}
	const local = document.createElement('video');
	local.id = 'local';
	local.muted = true;
	local.autoplay = true;
	local.srcObject = new MediaStream(stream.getVideoTracks());
	document.body.appendChild(local);
	void local.play().catch(() => {});
	alice.setParticipants(['alice', 'bob']);
	bob.setParticipants(['alice', 'bob']);
	await a.setLocalDescription(await a.createOffer());
	await b.setRemoteDescription(a.localDescription as RTCSessionDescriptionInit);
	await b.setLocalDescription(await b.createAnswer());
	await a.setRemoteDescription(b.localDescription as RTCSessionDescriptionInit);
	call = { alice, bob, a, b, bus, stream };
}

async function inbound(kind: 'audio' | 'video') {
	if (!call) throw new Error('no call');
	const report = await call.b.getStats();
	for (const s of report.values()) {
		if (s.type === 'inbound-rtp' && s.kind === kind) {
			return {
				framesDecoded: (s.framesDecoded as number | undefined) ?? 0,
				bytesReceived: (s.bytesReceived as number | undefined) ?? 0,
				packetsReceived: (s.packetsReceived as number | undefined) ?? 0,
				framesReceived: (s.framesReceived as number | undefined) ?? 0
			};
		}
	}
	return { framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, framesReceived: 0 };
}

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');

/**
 * Alice's next video frame before/after encryption, then decrypted independently with the crate's
 * FrameReceiver under the key alice sent bob over the bus.
 */
async function wireCheck(kind: 'audio' | 'video') {
	if (!call) throw new Error('no call');
	const sample = await call.alice.sampleFrame('send', kind);
	const codec = kind === 'video' ? 'vp8' : 'opus';
	const prefix = clearPrefixLen(codec, sample.before);
	const kid = readKid(codec, sample.after);
	const generation = kid === null ? null : generationOfKid(kid);
	const keyMsg = call.bus.sent
		.filter((m) => m.from === 'alice' && m.to === 'bob' && m.type === KEY_TYPE)
		.map((m) => m.content as FrameKeyMessage)
		.find((m) => m.generation === generation);
	let independent: string | null = null;
	if (keyMsg) {
		const raw = atob(keyMsg.key);
		const key = Uint8Array.from(raw, (c) => c.charCodeAt(0));
		const rx = new FrameReceiver(10_000);
		rx.addKey(keyMsg.generation, key, Date.now());
		independent = hex(rx.decrypt(codec, sample.after, Date.now()));
		rx.free();
	}
	// The longest run of plaintext bytes after the clear prefix that also appears in the wire frame.
	const body = hex(sample.before.slice(prefix, prefix + 16));
	return {
		beforeLen: sample.before.length,
		afterLen: sample.after.length,
		prefix,
		prefixKept: hex(sample.before.slice(0, prefix)) === hex(sample.after.slice(0, prefix)),
		plaintextBodyOnWire: body.length >= 16 && hex(sample.after).includes(body),
		generation,
		sendGeneration: call.alice.sendGeneration,
		independentDecryptMatches: independent === hex(sample.before),
		keyFound: !!keyMsg
	};
}

/** The next frame bob receives, before/after his transform. */
async function bobSample(kind: 'audio' | 'video') {
	if (!call) throw new Error('no call');
	const s = await call.bob.sampleFrame('recv', kind);
	const codec = kind === 'video' ? 'vp8' : 'opus';
	const kid = readKid(codec, s.before);
	return { changed: hex(s.before) !== hex(s.after), generation: kid === null ? null : generationOfKid(kid) };
}

/** Alice sees carol join and leave: her key rotates, bob gets the new one and keeps decoding. */
async function rotate() {
	if (!call) throw new Error('no call');
	const before = call.alice.sendGeneration;
	call.alice.setParticipants(['alice', 'bob', 'carol']);
	call.alice.setParticipants(['alice', 'bob']);
	const deadline = Date.now() + 10_000;
	while (call.alice.sendGeneration === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
	const keysToCarol = call.bus.sent.filter((m) => m.to === 'carol' && m.type === KEY_TYPE).map((m) => (m.content as FrameKeyMessage).generation);
	return { before, after: call.alice.sendGeneration, keysToCarol };
}

/** The to-device messages sent so far (type, from, to). */
function sentLog() {
	return call?.bus.sent.map((m) => `${m.type}:${m.from}->${m.to}`) ?? [];
}

const W = 32;
const H = 24;
const canvas = document.createElement('canvas');
canvas.width = W;
canvas.height = H;
const ctx = canvas.getContext('2d', { willReadFrequently: true }) as CanvasRenderingContext2D;

/** A 32×24 grey thumbnail of what a video element shows now (null before its first frame). */
function thumb(video: HTMLVideoElement): Float32Array | null {
	if (video.videoWidth === 0) return null;
	ctx.drawImage(video, 0, 0, W, H);
	const px = ctx.getImageData(0, 0, W, H).data;
	const out = new Float32Array(W * H);
	for (let i = 0; i < W * H; i++) out[i] = (px[4 * i] + px[4 * i + 1] + px[4 * i + 2]) / 3;
	return out;
}

/**
 * Does bob's picture show alice's camera? Samples bob's video for `ms`, comparing each thumbnail
 * with alice's local preview over the last second (latency), and returns the mean absolute pixel
 * difference per sample (0-255; Infinity while bob shows nothing).
 */
async function pictureDiffs(ms: number): Promise<number[]> {
	const local = document.getElementById('local') as HTMLVideoElement;
	const remote = document.querySelector('video:not(#local)') as HTMLVideoElement | null;
	const recent: Float32Array[] = [];
	const diffs: number[] = [];
	const end = Date.now() + ms;
	let n = 0;
	while (Date.now() < end) {
		const l = thumb(local);
		if (l) recent.push(l);
		if (recent.length > 20) recent.shift();
		if (++n % 5 === 0) {
			const r = remote ? thumb(remote) : null;
			let best = Infinity;
			if (r) {
				for (const l2 of recent) {
					let sum = 0;
					for (let i = 0; i < r.length; i++) sum += Math.abs(r[i] - l2[i]);
					best = Math.min(best, sum / r.length);
				}
			}
			diffs.push(Math.round(best * 10) / 10);
		}
		await new Promise((res) => setTimeout(res, 50));
	}
	return diffs;
}

/** Mallory announces alice's current key generation to bob with a key of her own. */
async function hijack() {
	if (!call) throw new Error('no call');
	const key = crypto.getRandomValues(new Uint8Array(32));
	const message: FrameKeyMessage = {
		v: 1,
		channel_id: 'chan-1',
		generation: call.alice.sendGeneration as number,
		key: btoa(String.fromCharCode(...key)).replace(/=+$/, '')
	};
	await call.bus.transport('mallory').sendToUsers(['bob'], KEY_TYPE, message);
	await new Promise((r) => setTimeout(r, 200));
}

async function stop() {
	if (!call) return;
	call.a.close();
	call.b.close();
	for (const t of call.stream.getTracks()) t.stop();
	call.alice.close();
	call.bob.close();
	call = null;
	for (const el of document.querySelectorAll('video, audio')) el.remove();
}

async function stats() {
	if (!call) throw new Error('no call');
	return { alice: await call.alice.stats(), bob: await call.bob.stats() };
}

Object.assign(window, {
	frames: {
		start,
		inbound,
		pictureDiffs,
		wireCheck,
		bobSample,
		rotate,
		hijack,
		sentLog,
		stop,
		stats,
		setBobDecrypt: (on: boolean) => call?.bob.setDecryptionForTest(on),
		hasScriptTransform: 'RTCRtpScriptTransform' in window,
		hasEncodedStreams: 'createEncodedStreams' in RTCRtpSender.prototype
	}
});
await init();
(window as unknown as { framesReady: boolean }).framesReady = true;
