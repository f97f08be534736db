/**
 * End-to-end encryption for the web app: the thin, statically importable part.
 *
 * The crypto itself (the `copains-crypto` wasm from crypto/pkg and the engine driving it) is
 * loaded lazily by {@link ensureE2ee}: nothing heavy lands in the initial bundle. The scheme is
 * docs/e2ee.md's; the engine (./engine.ts) mirrors the native client (client/src/e2ee.rs).
 */
import { session } from '$lib/session.svelte';
import { e2eeStatus } from './status.svelte';

export { e2eeStatus } from './status.svelte';

/** The `encrypted` envelope of a message in a DM, group DM or encrypted channel. */
export type Envelope = { algorithm: string; sender_device_id: string; session_id: string; ciphertext: string };
/** The outcome of a decryption: never an exception, a failure carries a human reason. */
export type Decrypted = { ok: true; plaintext: string } | { ok: false; reason: string; detail?: string };
/** A device of a user. */
export type DeviceRef = { userId: string; deviceId: string };

/** Extra facts about an envelope that make the checks stricter (both optional). */
export interface DecryptOptions {
	/** The message's author as the server says: the session must have been shared by their device. */
	authorId?: string | null;
	/** The message id: a Megolm message index bound to another message is refused as a replay. */
	messageId?: string;
}

/** A device of a user as this device knows it (keys checked against their self-signature). */
export interface KnownDevice {
	userId: string;
	deviceId: string;
	ed25519: string;
	curve25519: string;
	/** Verified by SAS on this device. */
	verified: boolean;
	/** Its identity keys changed since first seen (trust on first use: messages are not sent to it until accepted). */
	changed: boolean;
	/** A new device of a user I had verified (it is not verified itself). */
	isNew: boolean;
	/** The 60-digit safety number of my identity and this device's. */
	safetyNumber: string;
}

/** A SAS verification in progress (over to-device messages). */
export interface SasState {
	id: string;
	peer: DeviceRef;
	/** `waiting` for the other side, `compare` the emoji, then `done`, `cancelled` or `mismatch`. */
	phase: 'waiting' | 'compare' | 'done' | 'cancelled' | 'mismatch';
	emoji: { emoji: string; name: string }[];
	/** I started it (the other side accepts). */
	outgoing: boolean;
}

export interface E2ee {
	readonly userId: string;
	readonly deviceId: string;
	/** Encrypts for a DM, group DM or encrypted channel (a Megolm session per place, its room key
	 *  shared over Olm with every member device as needed); returns the envelope the API stores as `encrypted`. */
	encryptForPlace(channelId: string, plaintext: string): Promise<Envelope>;
	/** Decrypts an envelope of that place; never throws: a failure carries a human reason. */
	decryptFromPlace(channelId: string, envelope: Envelope, options?: DecryptOptions): Promise<Decrypted>;
	/** Olm-encrypted to-device message to every device of these users (and my other devices). */
	sendToUsers(userIds: string[], type: string, content: unknown): Promise<void>;
	/** Subscribes to decrypted to-device messages of one `type`; returns an unsubscribe function. */
	onToDevice(type: string, handler: (from: DeviceRef, content: unknown) => void): () => void;
	/** Asks the author's devices for the key of an envelope I cannot decrypt (they re-share it if I may read). */
	requestKey(channelId: string, envelope: Envelope, authorId: string): Promise<void>;
	/** Fetches and handles this device's to-device queue now. */
	sync(): Promise<void>;
	/** My identity keys. */
	identityKeys(): { ed25519: string; curve25519: string };
	/** The devices of a user (queried now), with verification state and safety numbers. */
	devicesOf(userId: string): Promise<KnownDevice[]>;
	/** Starts a SAS verification with a device. */
	startSas(peer: DeviceRef): Promise<string>;
	/** Confirms (the emoji match) or rejects (they do not) a SAS verification. */
	confirmSas(id: string, match: boolean): Promise<void>;
	/** Accepts the identity change of a device (re-trust its new keys). */
	acceptIdentityChange(userId: string, deviceId: string): Promise<void>;
	/** Creates a recovery key and a server-side key backup; returns the key to write down. */
	setUpBackup(): Promise<string>;
	/** Backs up every Megolm session key this device holds (needs the recovery key in memory). */
	backupNow(): Promise<number>;
	/** Restores Megolm session keys from the server's backup with a recovery key. */
	restoreBackup(recoveryKey: string): Promise<number>;
}

let loading: Promise<E2ee> | null = null;
let loadingFor: string | null = null;

/** Loads the wasm once, creates (first login) or restores this browser's device, uploads its keys. */
export function ensureE2ee(): Promise<E2ee> {
	const userId = session.user?.id;
	if (!userId) return Promise.reject(new Error('Sign in to use end-to-end encryption.'));
	if (loading && loadingFor === userId) return loading;
	loadingFor = userId;
	e2eeStatus.state = 'loading';
	const p = import('./engine').then((m) => m.startEngine(userId));
	loading = p;
	p.then(
		(e) => {
			e2eeStatus.state = 'ready';
			e2eeStatus.deviceId = e.deviceId;
			e2eeStatus.error = null;
		},
		(e: unknown) => {
			if (loading === p) loading = null;
			e2eeStatus.state = 'error';
			e2eeStatus.error = e instanceof Error ? e.message : String(e);
		}
	);
	return p;
}

/** Forgets the loaded device (logout); its state stays in IndexedDB for the next login. */
export function stopE2ee(): void {
	const p = loading;
	loading = null;
	loadingFor = null;
	e2eeStatus.state = 'idle';
	e2eeStatus.deviceId = null;
	void p?.then((e) => (e as E2ee & { stop?: () => void }).stop?.()).catch(() => {});
}

const DEVICE_ID_KEY = 'copains.e2ee.device.';

/** This browser's device id for a user (not secret: the gateway's identify names it), or null. */
export function storedDeviceId(userId: string): string | null {
	try {
		return localStorage.getItem(DEVICE_ID_KEY + userId);
	} catch {
		return null;
	}
}

/** Records this browser's device id for a user (see {@link storedDeviceId}). */
export function rememberDeviceId(userId: string, deviceId: string): void {
	try {
		localStorage.setItem(DEVICE_ID_KEY + userId, deviceId);
	} catch {
		// Private mode without storage: the gateway just will not push to-device events.
	}
}
