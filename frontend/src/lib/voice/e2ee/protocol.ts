// Messages between the call's FrameCrypto (main thread) and its frame worker, plus the SFrame
// header reading the worker needs to route a frame to its sender's key. The crypto itself
// (RFC 9605, AES_128_GCM_SHA256_128) is the crypto crate's, run as wasm in the worker.

export type MediaKind = 'audio' | 'video';
export type Role = 'send' | 'recv';

/** Worker counters, for tests and diagnostics. */
export type FrameStats = {
	encrypted: number;
	decrypted: number;
	/** Received frames passed through undecrypted because decryption is switched off (tests). */
	passedThrough: number;
	/** Frames dropped: no send key yet, unknown KID, failed decryption, malformed. */
	dropped: number;
	unknownKey: number;
	/** Decryption failed: tampered, wrong key, expired key, malformed. */
	authFailed: number;
	/** A frame counter seen before under that key (Chromium sometimes hands a frame over twice). */
	replayed: number;
	/** The last decryption error (the crate's message). */
	lastError: string | null;
};

/** One frame before and after the transform (tests: the wire bytes really differ). */
export type FrameSample = { role: Role; kind: MediaKind; before: Uint8Array; after: Uint8Array };

export type ToWorker =
	/** First message: where the crypto wasm is (the main thread's copy, so the browser fetches it once). */
	| { t: 'init'; wasmUrl: string }
	| { t: 'newSendKey'; id: number }
	| { t: 'useSendKey'; generation: number }
	| { t: 'addRecvKey'; sender: string; generation: number; key: Uint8Array; nowMs: number }
	/** Forget every device of a user who left (after the grace window). */
	| { t: 'dropUser'; userId: string }
	| { t: 'setDecrypt'; enabled: boolean }
	| { t: 'stats'; id: number }
	| { t: 'sample'; id: number; role: Role; kind: MediaKind }
	| { t: 'streams'; role: Role; kind: MediaKind; readable: ReadableStream; writable: WritableStream };

export type FromWorker =
	| { t: 'ready' }
	| { t: 'failed'; message: string }
	| { t: 'sendKey'; id: number; generation: number; key: Uint8Array }
	| { t: 'stats'; id: number; stats: FrameStats }
	| { t: 'sample'; id: number; sample: FrameSample }
	/** A frame arrived under a key generation nobody sent us (throttled by the worker). */
	| { t: 'unknownKey'; generation: number };

/** Options carried by RTCRtpScriptTransform to the worker's `rtctransform` event. */
export type TransformOptions = { role: Role; kind: MediaKind };

/** Key generations are random below 2^48: the KID (generation << 4 | ratchet step) stays a safe JS integer. */
export const GENERATION_LIMIT = 2 ** 48;

/** Bytes left in clear before the SFrame header (mirrors crypto/src/sframe.rs `Codec::clear_prefix_len`). */
export function clearPrefixLen(codec: 'vp8' | 'opus' | 'none', frame: Uint8Array): number {
	let want = 0;
	if (codec === 'vp8') want = frame.length > 0 && (frame[0] & 0x01) === 0 ? 10 : 3;
	else if (codec === 'opus') want = 1;
	return Math.min(want, frame.length);
}

/**
 * The KID of an SFrame frame (RFC 9605 §4.3 header after the clear prefix), or null when the
 * header is truncated. KIDs beyond 2^53 come back as a number that matches no generation.
 */
export function readKid(codec: 'vp8' | 'opus' | 'none', frame: Uint8Array): number | null {
	const at = clearPrefixLen(codec, frame);
	if (at >= frame.length) return null;
	const config = frame[at];
	if ((config & 0x80) === 0) return (config >> 4) & 0x07;
	const len = ((config >> 4) & 0x07) + 1;
	if (at + 1 + len > frame.length) return null;
	let kid = 0;
	for (let i = 0; i < len; i++) kid = kid * 256 + frame[at + 1 + i];
	return kid;
}

/** The key generation of a KID (RATCHET_BITS = 4 in the crate). */
export function generationOfKid(kid: number): number {
	return Math.floor(kid / 16);
}
