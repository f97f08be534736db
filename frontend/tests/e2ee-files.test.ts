import { describe, expect, it } from 'vitest';
import { decodeBody, decryptFile, encodeBody, encryptFile, type EncryptedFile } from '../src/lib/e2ee/files';

describe('encrypted attachments', () => {
	const bytes = new TextEncoder().encode('hello, a secret file '.repeat(20));

	it('encrypts with a fresh key: the blob is not the bytes, and decrypts back after the hash check', async () => {
		const a = await encryptFile(bytes, 'notes.txt', 'text/plain');
		const b = await encryptFile(bytes, 'notes.txt', 'text/plain');
		expect(a.blob.length).toBe(bytes.length + 16);
		expect(a.info.key).not.toBe(b.info.key);
		expect(new TextDecoder().decode(a.blob)).not.toContain('secret');
		expect(a.info).toMatchObject({ name: 'notes.txt', type: 'text/plain', size: bytes.length });
		const file: EncryptedFile = { id: '123', ...a.info };
		expect(new TextDecoder().decode(await decryptFile(a.blob, file))).toBe(new TextDecoder().decode(bytes));
	});

	it('refuses an altered, replaced or truncated blob', async () => {
		const a = await encryptFile(bytes, 'x.bin', 'application/octet-stream');
		const file: EncryptedFile = { id: '1', ...a.info };
		const flipped = a.blob.slice();
		flipped[3] ^= 1;
		await expect(decryptFile(flipped, file)).rejects.toThrow(/hash/);
		await expect(decryptFile(a.blob.slice(1), file)).rejects.toThrow(/size/);
		const other = await encryptFile(bytes, 'x.bin', 'application/octet-stream');
		await expect(decryptFile(other.blob, file)).rejects.toThrow(/hash/);
		// Right hash but wrong key: GCM refuses it.
		await expect(decryptFile(a.blob, { ...file, key: other.info.key })).rejects.toThrow(/decrypted/);
	});

	it('cleans the name and type it is given', async () => {
		const a = await encryptFile(bytes, '../../etc/pa\u0000sswd', 'Image/PNG');
		expect(a.info.name).toBe('passwd');
		expect(a.info.type).toBe('image/png');
		expect((await encryptFile(bytes, '..', 'not a type')).info).toMatchObject({ name: 'file', type: 'application/octet-stream' });
	});

	it('encodes a body with files and reads it back; anything else is plain text', async () => {
		const a = await encryptFile(bytes, 'p.png', 'image/png');
		const f: EncryptedFile = { id: '42', ...a.info };
		expect(encodeBody('hi', [])).toBe('hi');
		expect(decodeBody(encodeBody('hi', [f]))).toEqual({ text: 'hi', files: [f] });
		expect(decodeBody('{"type":"copains.message.v1"')).toEqual({ text: '{"type":"copains.message.v1"', files: [] });
		const bad = (patch: Partial<Record<keyof EncryptedFile, unknown>>) =>
			JSON.stringify({ type: 'copains.message.v1', text: 't', files: [{ ...f, ...patch }] });
		for (const p of [{ key: 'AAAA' }, { iv: 5 }, { id: 'abc' }, { size: -1 }, { name: '' }, { sha256: 'x'.repeat(80) }])
			expect(decodeBody(bad(p)).files).toEqual([]);
		const many = JSON.stringify({ type: 'copains.message.v1', text: 't', files: Array(11).fill(f) });
		expect(decodeBody(many).files).toEqual([]);
	});
});
