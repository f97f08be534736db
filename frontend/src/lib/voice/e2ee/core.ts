// Main-thread side of call frame encryption: owns the frame worker, attaches encoded transforms to
// senders/receivers, and distributes this participant's frame keys over a to-device transport
// (Olm in the app: `E2ee.sendToUsers` / `onToDevice`).
//
// Keys: one random 32-byte SFrame base key per participant and call, under a random 48-bit key
// generation (the SFrame KID is `generation << 4`, so the KID names the sender's key). It is sent
// to every participant who joins; when someone leaves a new key is generated, sent to those who
// remain, and used once delivered (+1 s). Receivers keep superseded keys for 10 s (the crate's
// FrameReceiver grace window).
import {
	GENERATION_LIMIT,
	type FrameSample,
	type FrameStats,
	type FromWorker,
	type MediaKind,
	type Role,
	type ToWorker,
	type TransformOptions
} from './protocol';

/** The to-device message type carrying a participant's frame key. */
export const KEY_TYPE = 'call_frame_key';
/** The to-device message type asking participants to send their current key again. */
export const KEY_REQUEST_TYPE = 'call_frame_key_request';
/** Delay between a rotated key's delivery and its use, so receivers have it first. */
export const ROTATE_DELAY_MS = 1000;
const KEY_LEN = 32;
const RESEND_MIN_INTERVAL_MS = 2000;

export type DeviceRef = { userId: string; deviceId: string };

/** What frame keys travel over (the app passes its Olm to-device channel). */
export interface KeyTransport {
	sendToUsers(userIds: string[], type: string, content: unknown): Promise<void>;
	onToDevice(type: string, handler: (from: DeviceRef, content: unknown) => void): () => void;
}

export interface FrameCrypto {
	attachSender(sender: RTCRtpSender, kind: 'audio' | 'video'): void;
	attachReceiver(receiver: RTCRtpReceiver, kind: 'audio' | 'video'): void;
	/** the call's participants changed (user ids incl. me): distribute/rotate frame keys */
	setParticipants(userIds: string[]): void;
	close(): void;
}

/** Test hooks (not part of the interface the call code uses). */
export interface FrameCryptoTesting extends FrameCrypto {
	/** Switch decryption of received frames off (they go to the decoder as they came off the wire) or on. */
	setDecryptionForTest(enabled: boolean): void;
	stats(): Promise<FrameStats>;
	/** The next frame of this role and kind, before and after the transform. */
	sampleFrame(role: Role, kind: MediaKind): Promise<FrameSample>;
	/** The key generation frames are sent under (null until the first key is in use). */
	readonly sendGeneration: number | null;
}

export type FrameKeyMessage = { v: 1; channel_id: string; generation: number; key: string };

export type Mode = 'script' | 'streams';

type EncodedStreams = { readable: ReadableStream; writable: WritableStream };
type WithStreams = { createEncodedStreams?: () => EncodedStreams };
type ScriptTransformCtor = new (worker: Worker, options: TransformOptions) => RTCRtpScriptTransform;

function scriptTransformCtor(): ScriptTransformCtor | undefined {
	return (globalThis as { RTCRtpScriptTransform?: ScriptTransformCtor }).RTCRtpScriptTransform;
}

/** Which encoded-transform API this browser offers (null: none, calls cannot be encrypted). */
export function detectMode(): Mode | null {
	if (scriptTransformCtor()) return 'script';
	const proto = (globalThis as { RTCRtpSender?: { prototype: object } }).RTCRtpSender?.prototype;
	if (proto && 'createEncodedStreams' in proto) return 'streams';
	return null;
}

function b64(bytes: Uint8Array): string {
	let s = '';
	for (const b of bytes) s += String.fromCharCode(b);
	return btoa(s).replace(/=+$/, '');
}

function unb64(s: string): Uint8Array | null {
	try {
		const bin = atob(s);
		const out = new Uint8Array(bin.length);
		for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
		return out;
	} catch {
		return null;
	}
}

/** Validates a received key message for this channel. */
export function parseKeyMessage(content: unknown, channelId: string): { generation: number; key: Uint8Array } | null {
	if (typeof content !== 'object' || content === null) return null;
	const m = content as Partial<FrameKeyMessage>;
	if (m.v !== 1 || m.channel_id !== channelId) return null;
	if (typeof m.generation !== 'number' || !Number.isInteger(m.generation)) return null;
	if (m.generation < 1 || m.generation >= GENERATION_LIMIT) return null;
	if (typeof m.key !== 'string' || m.key.length > 64) return null;
	const key = unb64(m.key);
	if (!key || key.length !== KEY_LEN) return null;
	return { generation: m.generation, key };
}

/**
 * Creates the call's frame crypto on `transport`. `mode` forces an encoded-transform API
 * (tests exercise both); by default RTCRtpScriptTransform when present.
 */
export async function createFrameCryptoWith(
	opts: { channelId: string; selfUserId: string; mode?: Mode },
	transport: KeyTransport
): Promise<FrameCryptoTesting> {
	const mode = opts.mode ?? detectMode();
	if (!mode) throw new Error('this browser cannot encrypt call media (no encoded transform API)');
	const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'copains-frames' });
	let nextId = 1;
	const waiting = new Map<number, (m: FromWorker) => void>();
	const send = (m: ToWorker, transfer: Transferable[] = []) => worker.postMessage(m, transfer);
	const request = <T extends FromWorker>(make: (id: number) => ToWorker): Promise<T> => {
		const id = nextId++;
		return new Promise<T>((resolve) => {
			waiting.set(id, resolve as (m: FromWorker) => void);
			send(make(id));
		});
	};

	let readyResolve!: () => void;
	let readyReject!: (e: Error) => void;
	const ready = new Promise<void>((res, rej) => {
		readyResolve = res;
		readyReject = rej;
	});
	let onUnknownKey = () => {};
	worker.onmessage = (e: MessageEvent<FromWorker>) => {
		const m = e.data;
		if (m.t === 'ready') readyResolve();
		else if (m.t === 'failed') {
			readyReject(new Error(`frame worker: ${m.message}`));
			console.error(`frame worker: ${m.message}`);
		} else if (m.t === 'unknownKey') onUnknownKey();
		else if ('id' in m) {
			waiting.get(m.id)?.(m);
			waiting.delete(m.id);
		}
	};
	worker.onerror = (e) => readyReject(new Error(`frame worker: ${e.message}`));
	// The same wasm file the main thread's E2EE engine loads (one download, then the HTTP cache).
	send({ t: 'init', wasmUrl: new URL('../../../../../crypto/pkg/copains_crypto_bg.wasm', import.meta.url).href });
	await ready;

	let closed = false;
	let participants = new Set<string>();
	let current: { generation: number; message: FrameKeyMessage } | null = null;
	let rotating: Promise<void> = Promise.resolve();
	const lastResend = new Map<string, number>();

	const newKey = async () => {
		const m = await request<Extract<FromWorker, { t: 'sendKey' }>>((id) => ({ t: 'newSendKey', id }));
		const message: FrameKeyMessage = { v: 1, channel_id: opts.channelId, generation: m.generation, key: b64(m.key) };
		m.key.fill(0);
		return { generation: m.generation, message };
	};
	const others = () => [...participants].filter((u) => u !== opts.selfUserId);
	const sendKey = async (userIds: string[], message: FrameKeyMessage) => {
		if (userIds.length === 0) return;
		try {
			await transport.sendToUsers(userIds, KEY_TYPE, message);
		} catch (e) {
			console.error('call frame key not delivered', e);
		}
	};

	// The first key is in use at once: nobody can decrypt before receiving it anyway.
	current = await newKey();
	send({ t: 'useSendKey', generation: current.generation });

	const rotate = async (recipients: string[]) => {
		const next = await newKey();
		await sendKey(recipients, next.message);
		if (recipients.length) await new Promise((r) => setTimeout(r, ROTATE_DELAY_MS));
		if (closed) return;
		current = next;
		send({ t: 'useSendKey', generation: next.generation });
		// Someone who joined while this key was on its way gets it too.
		const missed = others().filter((u) => !recipients.includes(u));
		await sendKey(missed, next.message);
	};

	const unsubscribeKey = transport.onToDevice(KEY_TYPE, (from, content) => {
		if (closed) return;
		const parsed = parseKeyMessage(content, opts.channelId);
		if (!parsed) return;
		const sender = `${from.userId}/${from.deviceId}`;
		send({ t: 'addRecvKey', sender, generation: parsed.generation, key: parsed.key, nowMs: Date.now() }, [
			parsed.key.buffer as ArrayBuffer
		]);
	});
	const unsubscribeRequest = transport.onToDevice(KEY_REQUEST_TYPE, (from, content) => {
		if (closed || !current) return;
		const m = content as { channel_id?: unknown } | null;
		if (m?.channel_id !== opts.channelId || !participants.has(from.userId)) return;
		const now = Date.now();
		if (now - (lastResend.get(from.userId) ?? 0) < RESEND_MIN_INTERVAL_MS) return;
		lastResend.set(from.userId, now);
		void sendKey([from.userId], current.message);
	});
	let lastRequest = 0;
	onUnknownKey = () => {
		// Frames under a key we never got (a lost or late key message): ask everyone again.
		const now = Date.now();
		if (closed || now - lastRequest < 5000 || others().length === 0) return;
		lastRequest = now;
		transport.sendToUsers(others(), KEY_REQUEST_TYPE, { channel_id: opts.channelId }).catch(() => {});
	};

	const api: FrameCryptoTesting = {
		attachSender(sender, kind) {
			const s = sender as RTCRtpSender & WithStreams;
			if (mode === 'script') {
				const Ctor = scriptTransformCtor();
				if (!Ctor) throw new Error('RTCRtpScriptTransform missing');
				s.transform = new Ctor(worker, { role: 'send', kind });
			} else {
				const { readable, writable } = (s.createEncodedStreams as () => EncodedStreams)();
				send({ t: 'streams', role: 'send', kind, readable, writable }, [
					readable as unknown as Transferable,
					writable as unknown as Transferable
				]);
			}
		},
		attachReceiver(receiver, kind) {
			const r = receiver as RTCRtpReceiver & WithStreams;
			if (mode === 'script') {
				const Ctor = scriptTransformCtor();
				if (!Ctor) throw new Error('RTCRtpScriptTransform missing');
				r.transform = new Ctor(worker, { role: 'recv', kind });
			} else {
				const { readable, writable } = (r.createEncodedStreams as () => EncodedStreams)();
				send({ t: 'streams', role: 'recv', kind, readable, writable }, [
					readable as unknown as Transferable,
					writable as unknown as Transferable
				]);
			}
		},
		setParticipants(userIds) {
			if (closed) return;
			const next = new Set(userIds);
			const joined = [...next].filter((u) => !participants.has(u) && u !== opts.selfUserId);
			const left = [...participants].filter((u) => !next.has(u) && u !== opts.selfUserId);
			participants = next;
			for (const u of left) {
				lastResend.delete(u);
				// Their receive keys stay for the grace window (frames still in flight), then go.
				setTimeout(() => {
					if (closed || participants.has(u)) return;
					send({ t: 'dropUser', userId: u });
				}, 10_000);
			}
			if (joined.length && current) void sendKey(joined, current.message);
			if (left.length) {
				const recipients = others();
				rotating = rotating.then(() => rotate(recipients)).catch((e) => console.error('frame key rotation', e));
			}
		},
		close() {
			if (closed) return;
			closed = true;
			unsubscribeKey();
			unsubscribeRequest();
			worker.terminate();
		},
		setDecryptionForTest(enabled) {
			send({ t: 'setDecrypt', enabled });
		},
		stats() {
			return request<Extract<FromWorker, { t: 'stats' }>>((id) => ({ t: 'stats', id })).then((m) => m.stats);
		},
		sampleFrame(role, kind) {
			return request<Extract<FromWorker, { t: 'sample' }>>((id) => ({ t: 'sample', id, role, kind })).then(
				(m) => m.sample
			);
		},
		get sendGeneration() {
			return current?.generation ?? null;
		}
	};
	return api;
}
