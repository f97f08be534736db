/** Small pure helpers of the E2EE engine (unit-tested without the wasm). */

/** Standard base64 (padded). */
export function b64encode(bytes: Uint8Array): string {
	let s = '';
	for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
	return btoa(s);
}

/** Standard base64, padded or not. */
export function b64decode(s: string): Uint8Array {
	const clean = s.replace(/=+$/, '');
	const padded = clean + '='.repeat((4 - (clean.length % 4)) % 4);
	const bin = atob(padded);
	const out = new Uint8Array(bin.length);
	for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
	return out;
}

/** Pads unpadded base64 (vodozemac writes it unpadded; the messaging routes want padding). */
export function padB64(s: string): string {
	return s + '='.repeat((4 - (s.length % 4)) % 4);
}

/** The Megolm message index from a vodozemac MegolmMessage (version 3, protobuf field 1 varint). */
export function megolmIndex(ciphertextB64: string): number | null {
	try {
		const b = b64decode(ciphertextB64);
		if (b[0] !== 3 || b[1] !== 0x08) return null;
		let v = 0;
		let shift = 0;
		for (let i = 2; i < Math.min(b.length, 8); i++) {
			v += (b[i] & 0x7f) * 2 ** shift;
			if ((b[i] & 0x80) === 0) return v;
			shift += 7;
		}
		return null;
	} catch {
		return null;
	}
}
