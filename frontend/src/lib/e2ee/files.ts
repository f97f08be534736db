/**
 * Encrypted attachments (as Matrix and Signal do it): the browser encrypts each file with a fresh
 * random AES-256-GCM key (WebCrypto) and uploads only the ciphertext; the server stores it as
 * `application/octet-stream` under the name `encrypted`. The real name, media type, size, the key,
 * the IV and the SHA-256 of the ciphertext travel inside the Megolm-encrypted message body
 * ({@link encodeBody}). A reader downloads the blob, checks its hash and length, decrypts it
 * (GCM authenticates it too) and shows it from a `blob:` URL.
 *
 * Pure WebCrypto: no wasm, so this module is small and unit-tested in Node.
 */
import { b64decode, b64encode } from './util';

/** What a reader needs to fetch, check and decrypt one attachment (inside the encrypted body). */
export interface EncryptedFile {
	/** The server's attachment id of the ciphertext blob. */
	id: string;
	/** The real file name (1–255 characters). */
	name: string;
	/** The real media type. */
	type: string;
	/** Plaintext size in bytes. */
	size: number;
	/** AES-256-GCM key, base64 (32 bytes). */
	key: string;
	/** GCM IV, base64 (12 bytes). */
	iv: string;
	/** SHA-256 of the ciphertext blob, base64 (32 bytes). */
	sha256: string;
}

/** The plaintext of an encrypted message that carries files (plain text when it carries none). */
export interface MessageBody {
	text: string;
	files: EncryptedFile[];
}

/** Largest file this browser encrypts or decrypts (it is held in memory; the server's cap applies too). */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** Most files on one message (the server's limit). */
export const MAX_FILES = 10;
/** GCM's tag: the ciphertext is the plaintext plus these bytes. */
const TAG_BYTES = 16;
/** Marks a message body that carries files (a JSON object; any other plaintext is plain text). */
const BODY_TYPE = 'copains.message.v1';

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
	return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as BufferSource));
}

/** Encrypts one file's bytes: the ciphertext blob to upload, and its description without the id. */
export async function encryptFile(
	bytes: Uint8Array,
	name: string,
	type: string
): Promise<{ blob: Uint8Array; info: Omit<EncryptedFile, 'id'> }> {
	if (bytes.length > MAX_FILE_BYTES) throw new Error(`Files over ${MAX_FILE_BYTES / 1024 / 1024} MB cannot be encrypted here.`);
	const rawKey = crypto.getRandomValues(new Uint8Array(32));
	const iv = crypto.getRandomValues(new Uint8Array(12));
	const key = await crypto.subtle.importKey('raw', rawKey, { name: 'AES-GCM' }, false, ['encrypt']);
	const blob = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, bytes as BufferSource));
	return {
		blob,
		info: {
			name: cleanName(name),
			type: cleanType(type),
			size: bytes.length,
			key: b64encode(rawKey),
			iv: b64encode(iv),
			sha256: b64encode(await sha256(blob))
		}
	};
}

/** Checks a downloaded blob against its description and decrypts it; throws a human reason. */
export async function decryptFile(blob: Uint8Array, info: EncryptedFile): Promise<Uint8Array> {
	if (blob.length !== info.size + TAG_BYTES) throw new Error('The encrypted file does not have the announced size.');
	const hash = b64encode(await sha256(blob));
	if (hash !== info.sha256) throw new Error('The encrypted file does not match its hash (altered or replaced).');
	const key = await crypto.subtle.importKey('raw', b64decode(info.key) as BufferSource, { name: 'AES-GCM' }, false, ['decrypt']);
	try {
		return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv: b64decode(info.iv) as BufferSource }, key, blob as BufferSource));
	} catch {
		throw new Error('The file could not be decrypted.');
	}
}

/** The plaintext to encrypt for a message: plain text without files, the JSON body with them. */
export function encodeBody(text: string, files: EncryptedFile[]): string {
	if (!files.length) return text;
	return JSON.stringify({ type: BODY_TYPE, text, files });
}

/** Reads a decrypted plaintext: a body with files, or plain text (anything that is not a valid body). */
export function decodeBody(plaintext: string): MessageBody {
	const plain = { text: plaintext, files: [] };
	if (!plaintext.startsWith('{')) return plain;
	let v: unknown;
	try {
		v = JSON.parse(plaintext);
	} catch {
		return plain;
	}
	const o = v as Record<string, unknown> | null;
	if (!o || typeof o !== 'object' || o.type !== BODY_TYPE || typeof o.text !== 'string' || !Array.isArray(o.files)) return plain;
	if (o.files.length > MAX_FILES) return plain;
	const files: EncryptedFile[] = [];
	for (const f of o.files) {
		const parsed = toFile(f);
		if (!parsed) return plain;
		files.push(parsed);
	}
	return { text: o.text, files };
}

function b64Len(s: unknown, n: number): s is string {
	if (typeof s !== 'string' || s.length > 64) return false;
	try {
		return b64decode(s).length === n;
	} catch {
		return false;
	}
}

function toFile(raw: unknown): EncryptedFile | null {
	const f = raw as Record<string, unknown> | null;
	if (!f || typeof f !== 'object') return null;
	const { id, name, type, size, key, iv, sha256 } = f;
	if (typeof id !== 'string' || !/^[0-9]{1,20}$/.test(id)) return null;
	if (typeof name !== 'string' || name.length === 0 || name.length > 255) return null;
	if (typeof type !== 'string' || type.length > 255) return null;
	if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_FILE_BYTES) return null;
	if (!b64Len(key, 32) || !b64Len(iv, 12) || !b64Len(sha256, 32)) return null;
	return { id, name: cleanName(name), type: cleanType(type), size, key, iv, sha256 };
}

/** A file name safe to show and to offer as a download name (no path, no control characters). */
function cleanName(name: string): string {
	// eslint-disable-next-line no-control-regex
	const n = (name.split(/[/\\]/).pop() ?? '').replace(/[\u0000-\u001f\u007f]/g, '').slice(0, 255);
	return n && n !== '.' && n !== '..' ? n : 'file';
}

function cleanType(type: string): string {
	const t = type.trim().toLowerCase();
	return t.length <= 255 && /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(t) ? t : 'application/octet-stream';
}
