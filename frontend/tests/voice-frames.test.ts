import { describe, expect, it } from 'vitest';
import { parseKeyMessage } from '../src/lib/voice/e2ee/core';
import { clearPrefixLen, generationOfKid, readKid } from '../src/lib/voice/e2ee/protocol';

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

describe('call frame encryption: SFrame header routing', () => {
	it('keeps the codec bytes the crate keeps in clear', () => {
		// VP8 key frame (P bit 0): 10 bytes; delta frame: 3; Opus: the TOC byte; never past the end.
		expect(clearPrefixLen('vp8', new Uint8Array(40).fill(0x10))).toBe(10);
		expect(clearPrefixLen('vp8', new Uint8Array(40).fill(0x11))).toBe(3);
		expect(clearPrefixLen('vp8', new Uint8Array([0x10, 0, 0]))).toBe(3);
		expect(clearPrefixLen('opus', new Uint8Array(40))).toBe(1);
		expect(clearPrefixLen('none', new Uint8Array(40))).toBe(0);
	});

	it('reads the KID after the clear prefix (RFC 9605 §4.3 encodings)', () => {
		// Opus: TOC byte, then the header.
		expect(readKid('opus', new Uint8Array([0xfc, 0x70, 1, 2]))).toBe(7); // short KID 7, CTR 0
		expect(readKid('opus', new Uint8Array([0xfc, 0x80, 0x08, 0]))).toBe(8); // 1-byte KID
		expect(readKid('opus', new Uint8Array([0xfc, 0x95, 0x12, 0x34, 0]))).toBe(0x1234); // 2-byte KID, CTR 5
		// A 7-byte KID of a 48-bit generation, after a VP8 delta frame's 3 clear bytes.
		const generation = 0xabcdef123456;
		const kid = generation * 16;
		const kidBytes = [0x0a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x60];
		const frame = new Uint8Array([0x31, 0, 0, 0xe8, ...kidBytes, 0x01, 9, 9]);
		expect(readKid('vp8', frame)).toBe(kid);
		expect(generationOfKid(kid)).toBe(generation);
		// Truncated headers are refused.
		expect(readKid('opus', new Uint8Array([0xfc]))).toBeNull();
		expect(readKid('opus', new Uint8Array([0xfc, 0xe8, 1, 2]))).toBeNull();
	});
});

describe('call frame encryption: key messages', () => {
	const key = new Uint8Array(32).fill(7);
	const ok = { v: 1, channel_id: 'c1', generation: 12345, key: b64(key) };

	it('accepts a well-formed key for this call', () => {
		const parsed = parseKeyMessage(ok, 'c1');
		expect(parsed?.generation).toBe(12345);
		expect(parsed?.key).toEqual(key);
	});

	it('refuses keys of another call or of the wrong shape', () => {
		expect(parseKeyMessage(ok, 'c2')).toBeNull();
		expect(parseKeyMessage({ ...ok, v: 2 }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, generation: 0 }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, generation: 2 ** 48 }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, generation: 1.5 }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, key: b64(new Uint8Array(16)) }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, key: '!!not base64!!' }, 'c1')).toBeNull();
		expect(parseKeyMessage({ ...ok, key: 'A'.repeat(1000) }, 'c1')).toBeNull();
		expect(parseKeyMessage(null, 'c1')).toBeNull();
		expect(parseKeyMessage('x', 'c1')).toBeNull();
	});
});
