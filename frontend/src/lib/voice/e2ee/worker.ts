// The call's frame worker: encrypts outgoing and decrypts incoming encoded frames in SFrame
// (RFC 9605) format with the crypto crate's FrameSender / FrameReceiver (wasm). Frames reach it
// through RTCRtpScriptTransform (`rtctransform` events) or, where only the older API exists,
// as transferred createEncodedStreams() streams. A frame that cannot be encrypted is dropped,
// never sent in clear.
import init, { FrameReceiver, FrameSender, generateFrameKey } from '../../../../../crypto/pkg/copains_crypto.js';
import {
	GENERATION_LIMIT,
	generationOfKid,
	readKid,
	type FrameSample,
	type FrameStats,
	type FromWorker,
	type MediaKind,
	type Role,
	type ToWorker,
	type TransformOptions
} from './protocol';

/** How long a superseded receive key stays usable (brief: keep the old key ~10 s). */
const GRACE_MS = 10_000;
/** Remote senders tracked at once (each holds at most 4 key generations in the crate). */
const MAX_SENDERS = 64;
/** Key generations a FrameReceiver keeps (crypto/src/sframe.rs MAX_GENERATIONS). */
const GENERATIONS_PER_SENDER = 4;
/** Keys generated but not yet in use (a rotation waiting for its delivery). */
const MAX_PENDING = 4;

type EncodedFrame = {
	data: ArrayBuffer;
	type?: 'key' | 'delta' | 'empty';
	getMetadata?: () => { mimeType?: string };
};

// The dedicated worker scope (typed by hand: the app's TypeScript lib is the DOM's).
const scope = self as unknown as {
	postMessage(message: unknown, transfer: Transferable[]): void;
	onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
	onrtctransform: ((e: Event & { transformer: RtcTransformer }) => void) | null;
};
type RtcTransformer = { readable: ReadableStream; writable: WritableStream; options: TransformOptions };

const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);

let sender: FrameSender | null = null;
const pending = new Map<number, Uint8Array>();
/** Remote sender ("user/device") → its receiver, in insertion (≈ recency) order. */
const receivers = new Map<string, FrameReceiver>();
/** Key generation → the remote sender who announced it. */
const generationOwner = new Map<number, string>();
let decryptEnabled = true;
const stats: FrameStats = { encrypted: 0, decrypted: 0, passedThrough: 0, dropped: 0, unknownKey: 0, authFailed: 0, replayed: 0, lastError: null };
const sampleWaiters: { id: number; role: Role; kind: MediaKind }[] = [];
let lastUnknownReport = 0;

function codecOf(kind: MediaKind, frame: EncodedFrame): 'vp8' | 'opus' | 'none' {
	if (kind === 'audio') return 'opus';
	const mime = frame.getMetadata?.().mimeType?.toLowerCase();
	// The SFU negotiates VP8 only; anything else is fully encrypted (no clear bytes).
	return !mime || mime === 'video/vp8' ? 'vp8' : 'none';
}

function takeSample(role: Role, kind: MediaKind, before: Uint8Array, after: Uint8Array) {
	const i = sampleWaiters.findIndex((w) => w.role === role && w.kind === kind);
	if (i < 0) return;
	const [w] = sampleWaiters.splice(i, 1);
	const sample: FrameSample = { role, kind, before: before.slice(), after: after.slice() };
	post({ t: 'sample', id: w.id, sample });
}

function encrypt(kind: MediaKind, frame: EncodedFrame): boolean {
	if (!sender) return false;
	const plain = new Uint8Array(frame.data);
	const wire = sender.encrypt(codecOf(kind, frame), plain);
	if (sampleWaiters.length) takeSample('send', kind, plain, wire);
	frame.data = wire.buffer as ArrayBuffer;
	stats.encrypted++;
	return true;
}

function decrypt(kind: MediaKind, frame: EncodedFrame): boolean {
	const wire = new Uint8Array(frame.data);
	if (!decryptEnabled) {
		stats.passedThrough++;
		if (sampleWaiters.length) takeSample('recv', kind, wire, wire);
		return true;
	}
	const codec = codecOf(kind, frame);
	const kid = readKid(codec, wire);
	if (kid === null) return false;
	const generation = generationOfKid(kid);
	const owner = generationOwner.get(generation);
	const rx = owner === undefined ? undefined : receivers.get(owner);
	if (!rx) {
		stats.unknownKey++;
		const now = Date.now();
		if (now - lastUnknownReport > 3000) {
			lastUnknownReport = now;
			post({ t: 'unknownKey', generation });
		}
		return false;
	}
	let plain: Uint8Array;
	try {
		plain = rx.decrypt(codec, wire, Date.now());
	} catch (e) {
		const message = String(e);
		if (message.includes('replayed')) stats.replayed++;
		else stats.authFailed++;
		stats.lastError = `${kind}: ${message}`;
		return false;
	}
	if (sampleWaiters.length) takeSample('recv', kind, wire, plain);
	frame.data = plain.buffer as ArrayBuffer;
	stats.decrypted++;
	return true;
}

function pipe(role: Role, kind: MediaKind, readable: ReadableStream, writable: WritableStream) {
	const step = role === 'send' ? encrypt : decrypt;
	const transform = new TransformStream<EncodedFrame, EncodedFrame>({
		async transform(frame, controller) {
			await ready;
			let ok = false;
			try {
				ok = step(kind, frame);
			} catch {
				ok = false;
			}
			if (ok) controller.enqueue(frame);
			else stats.dropped++;
		}
	});
	readable
		.pipeThrough(transform)
		.pipeTo(writable)
		.catch(() => {
			// The track or connection ended.
		});
}

function addRecvKey(sender: string, generation: number, key: Uint8Array, nowMs: number) {
	// A generation belongs to the first sender who announced it: another participant cannot take
	// over someone's KID (frames under it would then be checked against their key).
	const owner = generationOwner.get(generation);
	if (owner !== undefined && owner !== sender) return;
	let rx = receivers.get(sender);
	if (rx) {
		receivers.delete(sender);
	} else {
		rx = new FrameReceiver(GRACE_MS);
		if (receivers.size >= MAX_SENDERS) {
			const oldest = receivers.keys().next().value;
			if (oldest !== undefined) dropSender(oldest);
		}
	}
	receivers.set(sender, rx);
	rx.addKey(generation, key, nowMs);
	generationOwner.delete(generation);
	generationOwner.set(generation, sender);
	// The crate's receiver keeps this sender's 4 newest generations: route no older ones.
	const mine = [...generationOwner].filter(([, s]) => s === sender).map(([g]) => g);
	for (const g of mine.slice(0, Math.max(0, mine.length - GENERATIONS_PER_SENDER))) generationOwner.delete(g);
}

function dropSender(sender: string) {
	receivers.get(sender)?.free();
	receivers.delete(sender);
	for (const [g, s] of generationOwner) if (s === sender) generationOwner.delete(g);
}

function randomGeneration(): number {
	const b = new Uint32Array(2);
	crypto.getRandomValues(b);
	// 48 random bits, never 0.
	return ((b[0] & 0xffff) * 2 ** 32 + b[1]) % GENERATION_LIMIT || 1;
}

function handle(m: ToWorker) {
	switch (m.t) {
		case 'newSendKey': {
			const key = generateFrameKey();
			let generation = randomGeneration();
			while (pending.has(generation)) generation = randomGeneration();
			pending.set(generation, key);
			while (pending.size > MAX_PENDING) pending.delete(pending.keys().next().value as number);
			post({ t: 'sendKey', id: m.id, generation, key: key.slice() });
			break;
		}
		case 'useSendKey': {
			const key = pending.get(m.generation);
			if (!key) break;
			pending.delete(m.generation);
			if (sender) sender.setKey(m.generation, key);
			else sender = new FrameSender(m.generation, key);
			key.fill(0);
			break;
		}
		case 'addRecvKey':
			addRecvKey(m.sender, m.generation, m.key, m.nowMs);
			m.key.fill(0);
			break;
		case 'dropUser':
			for (const s of [...receivers.keys()]) if (s.startsWith(`${m.userId}/`)) dropSender(s);
			break;
		case 'setDecrypt':
			decryptEnabled = m.enabled;
			break;
		case 'stats':
			post({ t: 'stats', id: m.id, stats: { ...stats } });
			break;
		case 'sample':
			sampleWaiters.push({ id: m.id, role: m.role, kind: m.kind });
			break;
		case 'streams':
			pipe(m.role, m.kind, m.readable, m.writable);
			break;
		case 'init':
			break;
	}
}

scope.onrtctransform = (e) => {
	const { readable, writable, options } = e.transformer;
	pipe(options.role, options.kind, readable, writable);
};

let startInit!: (wasmUrl: string) => void;
const ready = new Promise<void>((resolve, reject) => {
	startInit = (wasmUrl) =>
		init({ module_or_path: wasmUrl }).then(
			() => {
				post({ t: 'ready' });
				resolve();
			},
			(e: unknown) => {
				post({ t: 'failed', message: String(e) });
				reject(e);
			}
		);
});

scope.onmessage = async (e: MessageEvent<ToWorker>) => {
	if (e.data.t === 'init') {
		startInit(e.data.wasmUrl);
		return;
	}
	await ready;
	try {
		handle(e.data);
	} catch (err) {
		post({ t: 'failed', message: String(err) });
	}
};
// A failed load is reported to the main thread above; frames waiting on it are dropped.
ready.catch(() => {});
