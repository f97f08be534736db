import { describe, expect, it } from 'vitest';
import { b64decode, b64encode, megolmIndex, padB64 } from '../src/lib/e2ee/util';

describe('e2ee helpers', () => {
	it('round-trips base64, padded or not', () => {
		const bytes = new Uint8Array([0, 1, 2, 250, 255]);
		const b = b64encode(bytes);
		expect(b).toBe('AAEC+v8=');
		expect(Array.from(b64decode(b))).toEqual(Array.from(bytes));
		expect(Array.from(b64decode('AAEC+v8'))).toEqual(Array.from(bytes));
		expect(padB64('AAEC+v8')).toBe('AAEC+v8=');
		expect(padB64('AAAA')).toBe('AAAA');
	});

	it('reads the Megolm message index (protobuf varint after the version byte)', () => {
		const msg = (index: number[]) => b64encode(new Uint8Array([3, 0x08, ...index, 0x12, 1, 0]));
		expect(megolmIndex(msg([0]))).toBe(0);
		expect(megolmIndex(msg([5]))).toBe(5);
		expect(megolmIndex(msg([0xac, 0x02]))).toBe(300);
		expect(megolmIndex(b64encode(new Uint8Array([2, 0x08, 1])))).toBeNull();
		expect(megolmIndex('not base64!')).toBeNull();
	});
});
