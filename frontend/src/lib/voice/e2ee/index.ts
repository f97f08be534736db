// Call media end-to-end encryption (issue #8): every encoded audio/video frame is encrypted in a
// worker in SFrame format (RFC 9605, AES-GCM, the crypto crate's implementation as wasm) before it
// leaves the browser, and decrypted after it arrives; the SFU forwards RTP unchanged. Each
// participant's random frame key travels over Olm (E2ee.sendToUsers 'call_frame_key') and is
// rotated when someone leaves. See core.ts for the key handling and worker.ts for the frames.
//
// Usage by the call code:
//   const fc = await createFrameCrypto({ channelId, selfUserId });
//   const pc = new RTCPeerConnection(needsInsertableStreamsFlag ? { encodedInsertableStreams: true } : {});
//   fc.attachSender(pc.addTrack(track, stream), 'video');          // right after creating the sender
//   pc.ontrack = (e) => fc.attachReceiver(e.receiver, e.track.kind as 'audio' | 'video'); // synchronously
//   fc.setParticipants(userIdsInTheCallIncludingMe);                // on every change
//   fc.close();                                                     // when leaving
// If createFrameCrypto rejects, the call must not send media: there is no unencrypted fallback.
import { ensureE2ee } from '$lib/e2ee';
import { createFrameCryptoWith, detectMode, type FrameCrypto, type FrameCryptoTesting } from './core';

export type { FrameCrypto } from './core';

/** true when only createEncodedStreams exists: then create the RTCPeerConnection with { encodedInsertableStreams: true } */
export const needsInsertableStreamsFlag: boolean = detectMode() === 'streams';

/**
 * Test-only switch, outside the UI: when this localStorage item is "1" when a call starts, received
 * frames reach the decoder exactly as they came off the wire (no decryption). The e2e test uses it
 * to show that what travels is really encrypted. Sending is never affected.
 */
export const TEST_DECRYPT_OFF_STORAGE_KEY = 'copains.test.frameDecryptOff';

export async function createFrameCrypto(opts: { channelId: string; selfUserId: string }): Promise<FrameCrypto> {
	// Frame keys travel over the web app's Olm to-device channel.
	const e2ee = await ensureE2ee();
	const fc: FrameCryptoTesting = await createFrameCryptoWith(opts, e2ee);
	try {
		if (globalThis.localStorage?.getItem(TEST_DECRYPT_OFF_STORAGE_KEY) === '1') fc.setDecryptionForTest(false);
	} catch {
		// No storage access: the switch stays off.
	}
	return fc;
}
