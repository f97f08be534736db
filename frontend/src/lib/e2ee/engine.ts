/**
 * The E2EE engine of the web app (loaded lazily by ./index.ts with the crypto wasm).
 *
 * It mirrors the native client (client/src/e2ee.rs) and docs/e2ee.md:
 * - one device per user per browser, created at first login, its keys uploaded and its one-time
 *   keys topped up to 50; its whole state (Olm account, Olm and Megolm sessions, known devices)
 *   is kept in IndexedDB, encrypted with AES-GCM under a non-extractable WebCrypto key that
 *   never leaves the browser (the server never sees it);
 * - every DM, group DM and encrypted channel is a *place*: each sending device has one outbound
 *   Megolm session per place, whose room key goes over Olm (to-device queue) to every device of
 *   every member and my own other devices; it rotates when a member leaves, after 100 messages
 *   or 7 days (the crate's RotationPolicy);
 * - incoming to-device messages are fetched from `GET /to-device` (the gateway's `to_device`
 *   event, or a poll, says when), decrypted, checked (the Olm payload names sender and recipient)
 *   and acknowledged.
 */
import init, * as wasm from '../../../../crypto/pkg/copains_crypto.js';
import { api, ApiError } from '$lib/api';
import { gatewayDevice, onGatewayEvent } from '$lib/gateway/events';
import type { Decrypted, DecryptOptions, DeviceRef, E2ee, Envelope, KnownDevice, SasState } from './index';
import { rememberDeviceId } from './index';
import { e2eeStatus } from './status.svelte';
import { b64decode, b64encode, megolmIndex, padB64 } from './util';

/** `algorithm` of a Megolm envelope. */
export const MEGOLM_ALGORITHM = 'copains.megolm.v1';
const OLM_TYPE = 'copains.olm';
const ROOM_KEY = 'copains.room_key';
/** The answer to a key request: an exported Megolm session (from its first known index). */
const ROOM_KEY_EXPORT = 'copains.room_key_export';
const KEY_REQUEST = 'copains.room_key_request';
const SAS_START = 'copains.sas.start';
const SAS_ACCEPT = 'copains.sas.accept';
const SAS_MAC = 'copains.sas.mac';
const SAS_CANCEL = 'copains.sas.cancel';
const TARGET_ONE_TIME_KEYS = 50;
const BACKUP_AUTH_DATA = 'copains.backup.v1';
/** How long a user's device list is trusted before it is queried again. */
const DEVICES_TTL_MS = 60_000;
/** How long a place's member list is trusted. */
const MEMBERS_TTL_MS = 5_000;
/** The fallback poll of the to-device queue when the gateway pushes `to_device` events for this device. */
const POLL_MS = 30_000;
/** The poll when it does not (its identify did not name this device: a first login until it reconnects). */
const FAST_POLL_MS = 3_000;
/** Megolm indexes remembered per session for replay detection (older ones are forgotten). */
const MAX_INDEXES_PER_SESSION = 2000;

/** What a person reads when a message does not decrypt: what happened, then what to do. */
const NO_KEY =
	'This message was sent before this device could read the conversation. Restore your keys with your recovery key (Settings › Encryption), or press Retry to ask the sender’s device.';
const KEY_STARTS_LATER =
	'This message was sent before this device joined the conversation’s current key. Restore your keys with your recovery key (Settings › Encryption), or press Retry to ask the sender’s device.';
const NOT_TRUSTED = 'The key for this message did not come from the sender’s own device, so it is not trusted and the message stays hidden.';
const REPLAYED = 'This message repeats an earlier one exactly (a replay), so it was refused.';

type IdentityKeys = { curve25519: string; ed25519: string };

interface InboundInfo {
	pickle: string;
	channelId: string;
	senderUser: string;
	senderDevice: string;
	/** Megolm index → the message (or ciphertext) it was first seen in. */
	indexes: Record<string, string>;
}

interface OutboundInfo {
	pickle: string;
	sessionId: string;
	/** `user|device` it was shared with. */
	sharedWith: string[];
	/** Members (user ids) when last shared. */
	members: string[];
}

interface Persisted {
	v: 1;
	userId: string;
	deviceId: string;
	device: string;
	olm: string;
	inbound: Record<string, InboundInfo>;
	outbound: Record<string, OutboundInfo>;
	known: Record<string, IdentityKeys>;
	verified: Record<string, true>;
	changed: Record<string, IdentityKeys>;
	since: number;
	recoveryKey: string | null;
	backupVersion: number | null;
	backedUp: Record<string, true>;
}

interface OlmPayload {
	type: string;
	sender: string;
	sender_device: string;
	sender_ed25519: string;
	recipient: string;
	recipient_device: string;
	recipient_ed25519: string;
	content: unknown;
}

/** The inner pickles use this fixed key: the real protection is the AES-GCM layer around the whole state. */
const PICKLE_KEY = new Uint8Array(32);
const enc = new TextEncoder();
const dec = new TextDecoder();

const ref = (u: string, d: string) => `${u}|${d}`;
const unref = (r: string): DeviceRef => {
	const i = r.indexOf('|');
	return { userId: r.slice(0, i), deviceId: r.slice(i + 1) };
};

function randomId(bytes = 16): string {
	const b = crypto.getRandomValues(new Uint8Array(bytes));
	return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
function newDeviceId(): string {
	const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
	const b = crypto.getRandomValues(new Uint8Array(10));
	return 'WEB_' + Array.from(b, (x) => alphabet[x % alphabet.length]).join('');
}
function errText(e: unknown): string {
	return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------- storage (IndexedDB + WebCrypto)

const DB_NAME = 'copains-e2ee';
const STORE = 'kv';

function openDb(): Promise<IDBDatabase> {
	return new Promise((resolve, reject) => {
		const r = indexedDB.open(DB_NAME, 1);
		r.onupgradeneeded = () => r.result.createObjectStore(STORE);
		r.onsuccess = () => resolve(r.result);
		r.onerror = () => reject(r.error ?? new Error('IndexedDB is not available'));
	});
}
function idbGet<T>(db: IDBDatabase, key: string): Promise<T | undefined> {
	return new Promise((resolve, reject) => {
		const r = db.transaction(STORE, 'readonly').objectStore(STORE).get(key);
		r.onsuccess = () => resolve(r.result as T | undefined);
		r.onerror = () => reject(r.error);
	});
}
function idbPut(db: IDBDatabase, key: string, value: unknown): Promise<void> {
	return new Promise((resolve, reject) => {
		const t = db.transaction(STORE, 'readwrite');
		t.objectStore(STORE).put(value, key);
		t.oncomplete = () => resolve();
		t.onerror = () => reject(t.error);
		t.onabort = () => reject(t.error ?? new Error('the IndexedDB write was aborted'));
	});
}

/** The AES-GCM key of this user's state: generated non-extractable, stored as a CryptoKey object. */
async function storageKey(db: IDBDatabase, userId: string): Promise<CryptoKey> {
	const existing = await idbGet<CryptoKey>(db, `key:${userId}`);
	if (existing) return existing;
	const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
	await idbPut(db, `key:${userId}`, key);
	return key;
}

// ---------------------------------------------------------------- the engine

type Handler = (from: DeviceRef, content: unknown) => void;

class Engine implements E2ee {
	readonly userId: string;
	readonly deviceId: string;
	#db: IDBDatabase;
	#key: CryptoKey;
	#state: Persisted;
	#device: wasm.Device;
	#olm: wasm.OlmSessionStore;
	#inbound = new Map<string, wasm.InboundGroup>();
	#outbound = new Map<string, wasm.OutboundGroup>();
	#handlers = new Map<string, Set<Handler>>();
	#devicesFetched = new Map<string, number>();
	#members = new Map<string, { at: number; users: string[] }>();
	#lock: Promise<unknown> = Promise.resolve();
	#syncing: Promise<void> | null = null;
	#syncAgain = false;
	#timer: ReturnType<typeof setInterval> | null = null;
	#unsub: (() => void) | null = null;
	#sas = new Map<string, { sas: wasm.Sas | null; est: wasm.EstablishedSas | null; theirMac: string | null; confirmed: boolean; pub: string }>();
	#stopped = false;

	constructor(db: IDBDatabase, key: CryptoKey, state: Persisted) {
		this.#db = db;
		this.#key = key;
		this.#state = state;
		this.userId = state.userId;
		this.deviceId = state.deviceId;
		this.#device = wasm.Device.unpickle(state.device, PICKLE_KEY);
		this.#olm = wasm.OlmSessionStore.unpickle(state.olm, PICKLE_KEY);
		for (const [id, info] of Object.entries(state.inbound)) {
			try {
				this.#inbound.set(id, wasm.InboundGroup.unpickle(info.pickle, PICKLE_KEY));
			} catch {
				delete state.inbound[id];
			}
		}
		for (const [channel, info] of Object.entries(state.outbound)) {
			try {
				this.#outbound.set(channel, wasm.OutboundGroup.unpickle(info.pickle, PICKLE_KEY));
			} catch {
				delete state.outbound[channel];
			}
		}
		e2eeStatus.backupEnabled = state.recoveryKey !== null;
		this.#publishChanged();
	}

	/**
	 * Runs `fn` alone (the wasm objects are mutated in place), then saves the state — at once, or
	 * `lazy`ly (within a moment, once for a burst: decrypting a page of history only records indexes).
	 */
	#exclusive<T>(fn: () => Promise<T>, lazy = false): Promise<T> {
		const run = this.#lock.then(fn, fn);
		if (lazy) {
			const done = () => this.#saveSoon();
			this.#lock = run.then(done, done);
			return run;
		}
		// The caller goes on only once the new state is stored: a message is never posted with a
		// Megolm index (or an Olm ratchet step) that a reload would forget.
		const saved = run.then(this.#saveNow, this.#saveNow);
		this.#lock = saved;
		return saved.then(() => run);
	}

	#saveNow = () => {
		if (this.#saveTimer) clearTimeout(this.#saveTimer);
		this.#saveTimer = null;
		return this.#save().catch((e) => console.warn(`e2ee: saving the device state failed: ${errText(e)}`));
	};
	#saveTimer: ReturnType<typeof setTimeout> | null = null;
	#saveSoon(): void {
		this.#saveTimer ??= setTimeout(() => {
			this.#saveTimer = null;
			this.#lock = this.#lock.then(this.#saveNow, this.#saveNow);
		}, 500);
	}

	async #save(): Promise<void> {
		if (this.#stopped) return;
		const s = this.#state;
		s.device = this.#device.pickle(PICKLE_KEY);
		s.olm = this.#olm.pickle(PICKLE_KEY);
		for (const [id, g] of this.#inbound) {
			const info = s.inbound[id];
			if (info) info.pickle = g.pickle(PICKLE_KEY);
		}
		for (const [channel, g] of this.#outbound) {
			const info = s.outbound[channel];
			if (info) info.pickle = g.pickle(PICKLE_KEY);
		}
		await saveState(this.#db, this.#key, s);
	}

	/** Releases the tab lock (see {@link startEngine}). */
	release: () => void = () => {};

	stop(): void {
		this.#stopped = true;
		this.release();
		if (this.#timer) clearInterval(this.#timer);
		this.#unsub?.();
	}

	start(): void {
		this.#unsub = onGatewayEvent((t, d) => {
			if (t === 'to_device') {
				const dev = (d as { device_id?: unknown } | null)?.device_id;
				if (dev === this.deviceId) void this.sync();
			} else if (t === 'device_keys_changed') {
				const u = (d as { user_id?: unknown } | null)?.user_id;
				if (typeof u === 'string') this.#devicesFetched.delete(u);
			} else if (t === 'ready') {
				void this.sync();
			} else if (t === 'member_add' || t === 'member_remove') {
				this.#members.clear();
			}
		});
		this.#timer = setInterval(() => {
			const due = gatewayDevice() === this.deviceId ? POLL_MS : FAST_POLL_MS;
			if (Date.now() - this.#lastSync >= due) void this.sync();
		}, FAST_POLL_MS);
		void this.sync();
	}

	identityKeys(): IdentityKeys {
		return JSON.parse(this.#device.identityKeys()) as IdentityKeys;
	}

	// ------------------------------------------------------------ keys

	async uploadKeys(): Promise<{ one_time_key_counts: Record<string, number>; fallback_key_unused: boolean }> {
		const body = JSON.parse(this.#device.keysForUpload()) as Record<string, unknown>;
		body.display_name = browserName();
		const r = await api.request<{ one_time_key_counts: Record<string, number>; fallback_key_unused: boolean }>('POST', '/keys/upload', { body });
		this.#device.markKeysAsPublished();
		return r;
	}

	/** Tops the server's one-time keys up to 50 and replaces a used fallback key. */
	replenish(): Promise<void> {
		return this.#exclusive(async () => {
			const r = await this.uploadKeys();
			const have = r.one_time_key_counts?.curve25519 ?? 0;
			const missing = Math.max(0, TARGET_ONE_TIME_KEYS - have);
			if (missing === 0 && r.fallback_key_unused) return;
			if (missing > 0) this.#device.generateOneTimeKeys(missing);
			if (!r.fallback_key_unused) this.#device.generateFallbackKey();
			await this.uploadKeys();
		});
	}

	/** Queries users' devices, checks each self-signature, pins identity keys (trust on first use). */
	async #refreshDevices(users: string[], force = false): Promise<void> {
		const now = Date.now();
		const wanted = [...new Set(users)].filter((u) => force || now - (this.#devicesFetched.get(u) ?? 0) > DEVICES_TTL_MS);
		for (let i = 0; i < wanted.length; i += 100) {
			const chunk = wanted.slice(i, i + 100);
			const r = await api.request<{ devices: Record<string, Record<string, { user_id: string; device_id: string; identity_keys: IdentityKeys; signature: string }>> }>(
				'POST',
				'/keys/query',
				{ body: { user_ids: chunk } }
			);
			for (const u of chunk) {
				this.#devicesFetched.set(u, now);
				// Devices no longer listed are forgotten (deleted devices get nothing more).
				for (const k of Object.keys(this.#state.known)) if (k.startsWith(u + '|') && !r.devices?.[u]?.[k.slice(u.length + 1)]) delete this.#state.known[k];
			}
			for (const [user, devices] of Object.entries(r.devices ?? {})) {
				for (const [deviceId, d] of Object.entries(devices)) {
					if (d.user_id !== user || d.device_id !== deviceId) continue;
					try {
						wasm.verifyKeysUpload(JSON.stringify({ user_id: d.user_id, device_id: d.device_id, identity_keys: d.identity_keys, signature: d.signature, one_time_keys: {} }));
					} catch {
						continue; // a bad self-signature: not a device we talk to
					}
					const k = ref(user, deviceId);
					const old = this.#state.known[k];
					if (old && (old.ed25519 !== d.identity_keys.ed25519 || old.curve25519 !== d.identity_keys.curve25519)) {
						// Trust on first use: a known device whose keys changed gets nothing until accepted.
						const seen = this.#state.changed[k];
						if (!seen || seen.ed25519 !== d.identity_keys.ed25519 || seen.curve25519 !== d.identity_keys.curve25519) {
							this.#state.changed[k] = { ed25519: d.identity_keys.ed25519, curve25519: d.identity_keys.curve25519 };
							delete this.#state.verified[k];
							this.#publishChanged();
						}
						continue;
					}
					if (!old) {
						this.#state.known[k] = { ed25519: d.identity_keys.ed25519, curve25519: d.identity_keys.curve25519 };
						// A new device of a user I verified: warn (it is not verified).
						if (user !== this.userId && Object.keys(this.#state.verified).some((v) => v.startsWith(user + '|'))) {
							this.#state.changed[k] = { ed25519: d.identity_keys.ed25519, curve25519: d.identity_keys.curve25519 };
							this.#publishChanged();
						}
					}
				}
			}
		}
	}

	#publishChanged(): void {
		const out: Record<string, string[]> = {};
		for (const k of Object.keys(this.#state.changed)) {
			const { userId, deviceId } = unref(k);
			(out[userId] ??= []).push(deviceId);
		}
		e2eeStatus.identityChanged = out;
	}

	/** Every device of these users and my other devices, except those whose identity changed. */
	async #targets(users: string[]): Promise<DeviceRef[]> {
		const all = [...new Set([...users, this.userId])];
		await this.#refreshDevices(all);
		const out: DeviceRef[] = [];
		for (const k of Object.keys(this.#state.known)) {
			const d = unref(k);
			if (!all.includes(d.userId)) continue;
			if (d.userId === this.userId && d.deviceId === this.deviceId) continue;
			const changed = this.#state.changed[k];
			if (changed && (changed.ed25519 !== this.#state.known[k].ed25519 || changed.curve25519 !== this.#state.known[k].curve25519)) continue;
			out.push(d);
		}
		return out;
	}

	/** Opens Olm sessions to targets that have none (claiming a key each); returns those reachable. */
	async #ensureSessions(targets: DeviceRef[]): Promise<DeviceRef[]> {
		const wanted: Record<string, string[]> = {};
		for (const t of targets) {
			const keys = this.#state.known[ref(t.userId, t.deviceId)];
			if (keys && !this.#olm.hasSession(keys.curve25519)) (wanted[t.userId] ??= []).push(t.deviceId);
		}
		if (Object.keys(wanted).length) {
			const r = await api.request<{ one_time_keys: Record<string, Record<string, { user_id: string; device_id: string; identity_keys: IdentityKeys }>> }>(
				'POST',
				'/keys/claim',
				{ body: { device_keys: wanted } }
			);
			for (const [user, devices] of Object.entries(r.one_time_keys ?? {})) {
				for (const [deviceId, claimed] of Object.entries(devices)) {
					const known = this.#state.known[ref(user, deviceId)];
					if (!known || claimed.user_id !== user || claimed.device_id !== deviceId) continue;
					if (claimed.identity_keys?.ed25519 !== known.ed25519 || claimed.identity_keys?.curve25519 !== known.curve25519) continue;
					try {
						this.#olm.insert(wasm.OlmSession.outbound(this.#device, JSON.stringify(claimed)));
					} catch {
						// A bad signature on the claimed key: skip this device.
					}
				}
			}
		}
		return targets.filter((t) => {
			const keys = this.#state.known[ref(t.userId, t.deviceId)];
			return keys && this.#olm.hasSession(keys.curve25519);
		});
	}

	/** Encrypts `content` of inner type `kind` with Olm for each target; one to-device transaction. */
	async #sendOlm(targets: DeviceRef[], kind: string, content: unknown): Promise<number> {
		const reachable = await this.#ensureSessions(targets);
		const me = this.identityKeys();
		const messages: Record<string, Record<string, unknown>> = {};
		for (const t of reachable) {
			const keys = this.#state.known[ref(t.userId, t.deviceId)];
			const payload: OlmPayload = {
				type: kind,
				sender: this.userId,
				sender_device: this.deviceId,
				sender_ed25519: me.ed25519,
				recipient: t.userId,
				recipient_device: t.deviceId,
				recipient_ed25519: keys.ed25519,
				content
			};
			const envelope = this.#olm.encryptFor(keys.curve25519, enc.encode(JSON.stringify(payload)));
			(messages[t.userId] ??= {})[t.deviceId] = JSON.parse(envelope);
		}
		if (!Object.keys(messages).length) return 0;
		const r = await api.request<{ queued: number }>('PUT', `/to-device/${randomId()}?device_id=${encodeURIComponent(this.deviceId)}`, {
			body: { type: OLM_TYPE, messages }
		});
		return r?.queued ?? 0;
	}

	// ------------------------------------------------------------ places (Megolm)

	/**
	 * The users who may read a place, as the server's permission rules say
	 * (`GET /keys/places/{id}`: members with VIEW_CHANNEL on the channel or a thread's parent,
	 * or a DM's recipients). The one answer to "who gets this place's room keys".
	 */
	async #placeMembers(channelId: string, fresh = false): Promise<string[]> {
		const cached = this.#members.get(channelId);
		if (!fresh && cached && Date.now() - cached.at < MEMBERS_TTL_MS) return cached.users;
		let users: string[];
		try {
			users = (await api.request<{ place_id: string; user_ids: string[] }>('GET', `/keys/places/${encodeURIComponent(channelId)}`)).user_ids;
		} catch (e) {
			if (e instanceof ApiError && e.status === 409) throw new Error('This place has too many readers to be end-to-end encrypted.');
			throw e;
		}
		this.#members.set(channelId, { at: Date.now(), users });
		return users;
	}

	#newOutbound(channelId: string): wasm.OutboundGroup {
		const out = new wasm.OutboundGroup(channelId, Date.now());
		const sessionId = out.sessionId();
		// Keep an inbound copy so my own messages stay readable on this device.
		this.#addInbound(wasm.InboundGroup.fromRoomKey(out.roomKey()), channelId, this.userId, this.deviceId);
		this.#outbound.get(channelId)?.free();
		this.#outbound.set(channelId, out);
		this.#state.outbound[channelId] = { pickle: '', sessionId, sharedWith: [], members: [] };
		return out;
	}

	#addInbound(g: wasm.InboundGroup, channelId: string, senderUser: string, senderDevice: string): void {
		const id = g.sessionId();
		const prev = this.#state.inbound[id];
		this.#inbound.get(id)?.free();
		this.#inbound.set(id, g);
		this.#state.inbound[id] = { pickle: g.pickle(PICKLE_KEY), channelId, senderUser, senderDevice, indexes: prev?.indexes ?? {} };
		e2eeStatus.keysVersion++;
		if (this.#state.recoveryKey) queueMicrotask(() => void this.backupNow().catch(() => {}));
	}

	encryptForPlace(channelId: string, plaintext: string): Promise<Envelope> {
		return this.#exclusive(async () => {
			const members = await this.#placeMembers(channelId, true);
			let out = this.#outbound.get(channelId);
			let info = this.#state.outbound[channelId];
			if (out && info && info.members.some((u) => !members.includes(u))) out.memberLeft();
			if (!out || !info || out.needsRotation(Date.now())) {
				out = this.#newOutbound(channelId);
				info = this.#state.outbound[channelId];
			}
			// Share the room key with member devices that do not have it yet (new members, new devices).
			const targets = await this.#targets(members);
			const missing = targets.filter((t) => !info.sharedWith.includes(ref(t.userId, t.deviceId)));
			if (missing.length) {
				const reachable = await this.#ensureSessions(missing);
				if (reachable.length) await this.#sendOlm(reachable, ROOM_KEY, JSON.parse(out.roomKey()));
				for (const t of reachable) info.sharedWith.push(ref(t.userId, t.deviceId));
			}
			info.members = members;
			const msg = JSON.parse(out.encrypt(enc.encode(plaintext))) as { session_id: string; ciphertext: string };
			// Remember my own index so reading my message back is not taken for a replay.
			const idx = megolmIndex(msg.ciphertext);
			const inb = this.#state.inbound[msg.session_id];
			if (idx !== null && inb) inb.indexes[idx] = 'c:' + msg.ciphertext.slice(-32);
			return { algorithm: MEGOLM_ALGORITHM, sender_device_id: this.deviceId, session_id: msg.session_id, ciphertext: padB64(msg.ciphertext) };
		});
	}

	async decryptFromPlace(channelId: string, envelope: Envelope, options: DecryptOptions = {}): Promise<Decrypted> {
		if (!envelope || typeof envelope !== 'object' || typeof envelope.session_id !== 'string' || typeof envelope.ciphertext !== 'string') {
			return { ok: false, reason: 'This message is damaged: it carries no encrypted content this app can read.' };
		}
		if (envelope.algorithm !== MEGOLM_ALGORITHM) {
			return { ok: false, reason: 'This message was encrypted in a way this version of the app cannot read. Updating the app may help.', detail: `algorithm ${JSON.stringify(envelope.algorithm)}` };
		}
		if (!this.#inbound.has(envelope.session_id)) {
			// The room key may be waiting in the to-device queue (it is sent before the message).
			await this.sync();
		}
		return this.#exclusive(async () => this.#decrypt(channelId, envelope, options), true);
	}

	#decrypt(channelId: string, envelope: Envelope, options: DecryptOptions): Decrypted {
		const g = this.#inbound.get(envelope.session_id);
		const info = this.#state.inbound[envelope.session_id];
		if (!g || !info) {
			return { ok: false, reason: NO_KEY, detail: `no room key for session ${envelope.session_id}` };
		}
		if (info.channelId !== channelId) return { ok: false, reason: NOT_TRUSTED, detail: `the room key belongs to conversation ${info.channelId}` };
		if (info.senderDevice !== envelope.sender_device_id || (options.authorId && info.senderUser !== options.authorId)) {
			return { ok: false, reason: NOT_TRUSTED, detail: `the room key came from device ${info.senderDevice}, the message names ${envelope.sender_device_id}` };
		}
		const ciphertext = envelope.ciphertext.replace(/=+$/, '');
		const msg = JSON.stringify({ session_id: envelope.session_id, ciphertext });
		const idx = megolmIndex(ciphertext);
		const tag = options.messageId ? 'm:' + options.messageId : 'c:' + ciphertext.slice(-32);
		const bound = idx === null ? undefined : info.indexes[idx];
		try {
			let bytes: Uint8Array;
			if (bound === undefined) {
				bytes = g.decrypt(msg);
			} else if (bound === tag || bound === 'c:' + ciphertext.slice(-32)) {
				// The same message again (a reload, a re-render): decrypt with a fresh copy of the session.
				const copy = wasm.InboundGroup.fromExported(g.export());
				try {
					bytes = copy.decrypt(msg);
				} finally {
					copy.free();
				}
			} else {
				return { ok: false, reason: REPLAYED, detail: `message index ${idx} already used` };
			}
			if (idx !== null) {
				info.indexes[idx] = tag;
				const keys = Object.keys(info.indexes);
				if (keys.length > MAX_INDEXES_PER_SESSION) delete info.indexes[keys[0]];
			}
			return { ok: true, plaintext: dec.decode(bytes) };
		} catch (e) {
			const m = errText(e);
			if (/replay/i.test(m)) return { ok: false, reason: REPLAYED, detail: m };
			if (/index|ratchet|unknown message/i.test(m)) return { ok: false, reason: KEY_STARTS_LATER, detail: m };
			return { ok: false, reason: 'This message could not be decrypted on this device. Press Retry to ask the sender’s device for its key.', detail: m };
		}
	}

	requestKey(channelId: string, envelope: Envelope, authorId: string): Promise<void> {
		return this.#exclusive(async () => {
			await this.#refreshDevices([authorId], true);
			const target = { userId: authorId, deviceId: envelope.sender_device_id };
			if (!this.#state.known[ref(target.userId, target.deviceId)]) throw new Error("The sender's device no longer exists: nobody can send this key again.");
			await this.#sendOlm([target], KEY_REQUEST, { channel_id: channelId, session_id: envelope.session_id });
		});
	}

	// ------------------------------------------------------------ to-device

	sendToUsers(userIds: string[], type: string, content: unknown): Promise<void> {
		return this.#exclusive(async () => {
			const targets = await this.#targets(userIds);
			await this.#sendOlm(targets, type, content);
		});
	}

	onToDevice(type: string, handler: Handler): () => void {
		let set = this.#handlers.get(type);
		if (!set) this.#handlers.set(type, (set = new Set()));
		set.add(handler);
		return () => set.delete(handler);
	}

	/** Fetches, handles and acknowledges this device's to-device queue (one run at a time). */
	sync(): Promise<void> {
		if (this.#syncing) {
			this.#syncAgain = true;
			return this.#syncing;
		}
		const run = async () => {
			do {
				this.#syncAgain = false;
				if (this.#stopped) return;
				try {
					await this.#exclusive(() => this.#syncOnce());
				} catch (e) {
					// Offline, or signed out meanwhile: the next event or poll tries again.
					if (!this.#stopped) console.warn(`e2ee: fetching to-device messages failed: ${errText(e)}`);
					return;
				}
			} while (this.#syncAgain && !this.#stopped);
		};
		this.#syncing = run().finally(() => (this.#syncing = null));
		return this.#syncing;
	}

	#lastSync = 0;

	async #syncOnce(): Promise<void> {
		this.#lastSync = Date.now();
		const q = `device_id=${encodeURIComponent(this.deviceId)}`;
		const deliveries: (() => void)[] = [];
		for (let page = 0; page < 20 && !this.#stopped; page++) {
			const r = await api.request<{ messages: { id: number; sender_user_id: string; sender_device_id: string; type: string; content: unknown }[]; next_since: number }>(
				'GET',
				`/to-device?${q}&since=${this.#state.since}&limit=100`
			);
			if (!r.messages?.length) break;
			for (const m of r.messages) {
				try {
					const d = await this.#handle(m.sender_user_id, m.sender_device_id, m.type, m.content);
					if (d) deliveries.push(d);
				} catch (e) {
					console.warn(`e2ee: a to-device message from ${m.sender_user_id}/${m.sender_device_id} was dropped: ${errText(e)}`);
				}
			}
			// Stored before acknowledged: a key the server deleted is never lost with an unloaded page.
			this.#state.since = r.next_since;
			await this.#save();
			await api.request('POST', `/to-device/ack?${q}`, { body: { up_to: r.next_since } });
		}
		// Application handlers run after the state is consistent (they may call back into the engine).
		for (const d of deliveries) queueMicrotask(d);
		const r = await this.uploadKeysIfLow();
		void r;
	}

	#lowCheck = 0;
	async uploadKeysIfLow(): Promise<void> {
		// Re-count at most once a minute (each claim by a peer uses up a one-time key).
		if (Date.now() - this.#lowCheck < 60_000) return;
		this.#lowCheck = Date.now();
		const r = await this.uploadKeys();
		const have = r.one_time_key_counts?.curve25519 ?? 0;
		if (have < TARGET_ONE_TIME_KEYS / 2 || !r.fallback_key_unused) {
			if (have < TARGET_ONE_TIME_KEYS) this.#device.generateOneTimeKeys(TARGET_ONE_TIME_KEYS - have);
			if (!r.fallback_key_unused) this.#device.generateFallbackKey();
			await this.uploadKeys();
		}
	}

	async #handle(sender: string, senderDevice: string, type: string, content: unknown): Promise<(() => void) | null> {
		if (type !== OLM_TYPE) return null;
		const envelope = content as { sender_key?: unknown };
		const k = ref(sender, senderDevice);
		if (!this.#state.known[k]) await this.#refreshDevices([sender], true);
		const keys = this.#state.known[k];
		if (!keys) throw new Error('a message from a device with no published keys');
		if (this.#state.changed[k]) throw new Error('a message from a device whose identity changed');
		if (keys.curve25519 !== envelope.sender_key) throw new Error("the Olm sender key is not the sending device's key");
		const plaintext = this.#olm.decrypt(this.#device, JSON.stringify(content));
		const p = JSON.parse(dec.decode(plaintext)) as OlmPayload;
		const me = this.identityKeys();
		if (
			p.sender !== sender ||
			p.sender_device !== senderDevice ||
			p.sender_ed25519 !== keys.ed25519 ||
			p.recipient !== this.userId ||
			p.recipient_device !== this.deviceId ||
			p.recipient_ed25519 !== me.ed25519
		) {
			throw new Error('the Olm payload names another sender or recipient');
		}
		const c = (p.content ?? {}) as Record<string, unknown>;
		switch (p.type) {
			case ROOM_KEY: {
				const g = wasm.InboundGroup.fromRoomKey(JSON.stringify(c));
				const prev = this.#state.inbound[g.sessionId()];
				if (prev && (prev.senderUser !== sender || prev.senderDevice !== senderDevice)) {
					g.free();
					throw new Error('a room key already shared by another device');
				}
				if (prev) {
					g.free(); // already held (from its first index): keep what I have
					return null;
				}
				this.#addInbound(g, String(c.channel_id), sender, senderDevice);
				return null;
			}
			case ROOM_KEY_EXPORT: {
				// The answer to my key request: accepted only from the session's own device.
				const g = wasm.InboundGroup.fromExported(JSON.stringify({ channel_id: c.channel_id, session_id: c.session_id, exported_key: c.exported_key }));
				const prev = this.#state.inbound[g.sessionId()];
				if (prev && (prev.senderUser !== sender || prev.senderDevice !== senderDevice)) {
					g.free();
					throw new Error('a room key already shared by another device');
				}
				this.#addInbound(g, String(c.channel_id), sender, senderDevice);
				return null;
			}
			case KEY_REQUEST: {
				await this.#answerKeyRequest({ userId: sender, deviceId: senderDevice }, String(c.channel_id), String(c.session_id));
				return null;
			}
			case SAS_START:
			case SAS_ACCEPT:
			case SAS_MAC:
			case SAS_CANCEL:
				this.#sasMessage({ userId: sender, deviceId: senderDevice }, p.type, c);
				return null;
			default: {
				const set = this.#handlers.get(p.type);
				if (!set?.size) return null;
				const from = { userId: sender, deviceId: senderDevice };
				return () => {
					for (const h of set) {
						try {
							h(from, p.content);
						} catch (e) {
							console.warn(`e2ee: a ${p.type} handler failed: ${errText(e)}`);
						}
					}
				};
			}
		}
	}

	/** Re-shares one of my sessions with a device that asked, if its user may read the place. */
	async #answerKeyRequest(from: DeviceRef, channelId: string, sessionId: string): Promise<void> {
		const info = this.#state.inbound[sessionId];
		const g = this.#inbound.get(sessionId);
		if (!info || !g || info.senderUser !== this.userId || info.senderDevice !== this.deviceId || info.channelId !== channelId) return;
		if (from.userId !== this.userId) {
			const members = await this.#placeMembers(channelId, true);
			if (!members.includes(from.userId)) return; // not (or no longer) allowed to read it
		}
		const exported = JSON.parse(g.export()) as Record<string, unknown>;
		await this.#sendOlm([from], ROOM_KEY_EXPORT, exported);
	}

	// ------------------------------------------------------------ verification

	async devicesOf(userId: string): Promise<KnownDevice[]> {
		await this.#exclusive(() => this.#refreshDevices([userId], true));
		const me = this.identityKeys();
		const out: KnownDevice[] = [];
		for (const [k, keys] of Object.entries(this.#state.known)) {
			const d = unref(k);
			if (d.userId !== userId) continue;
			const changed = this.#state.changed[k];
			out.push({
				...d,
				ed25519: changed?.ed25519 ?? keys.ed25519,
				curve25519: changed?.curve25519 ?? keys.curve25519,
				verified: !!this.#state.verified[k],
				changed: !!changed && (changed.ed25519 !== keys.ed25519 || changed.curve25519 !== keys.curve25519),
				isNew: !!changed && changed.ed25519 === keys.ed25519 && changed.curve25519 === keys.curve25519,
				safetyNumber: wasm.safetyNumber(this.userId, me.ed25519, userId, changed?.ed25519 ?? keys.ed25519)
			});
		}
		return out.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
	}

	acceptIdentityChange(userId: string, deviceId: string): Promise<void> {
		return this.#exclusive(async () => {
			const k = ref(userId, deviceId);
			const changed = this.#state.changed[k];
			if (changed) this.#state.known[k] = { ed25519: changed.ed25519, curve25519: changed.curve25519 };
			delete this.#state.changed[k];
			this.#publishChanged();
		});
	}

	#publishSas(id: string, patch: Partial<SasState> & { peer?: DeviceRef }): void {
		const i = e2eeStatus.sas.findIndex((s) => s.id === id);
		if (i >= 0) Object.assign(e2eeStatus.sas[i], patch);
		else e2eeStatus.sas.push({ id, peer: patch.peer ?? { userId: '', deviceId: '' }, phase: 'waiting', emoji: [], outgoing: false, ...patch });
	}

	startSas(peer: DeviceRef): Promise<string> {
		return this.#exclusive(async () => {
			const id = randomId(8);
			const sas = new wasm.Sas();
			const pub = sas.publicKey();
			this.#sas.set(id, { sas, est: null, theirMac: null, confirmed: false, pub });
			this.#publishSas(id, { peer, phase: 'waiting', outgoing: true });
			await this.#refreshDevices([peer.userId]);
			await this.#sendOlm([peer], SAS_START, { transaction_id: id, public_key: pub });
			return id;
		});
	}

	#sasMessage(from: DeviceRef, type: string, c: Record<string, unknown>): void {
		const id = String(c.transaction_id ?? '');
		if (!/^[0-9a-f]{16}$/.test(id)) return;
		const entry = this.#sas.get(id);
		const st = e2eeStatus.sas.find((s) => s.id === id);
		if (type === SAS_START && !entry) {
			const sas = new wasm.Sas();
			const pub = sas.publicKey();
			try {
				const est = sas.establish(String(c.public_key), JSON.stringify({ initiator: [from.userId, from.deviceId, String(c.public_key)], acceptor: [this.userId, this.deviceId, pub], transaction_id: id }));
				this.#sas.set(id, { sas: null, est, theirMac: null, confirmed: false, pub });
				this.#publishSas(id, { peer: from, phase: 'compare', emoji: JSON.parse(est.emoji()), outgoing: false });
				void this.#sendOlm([from], SAS_ACCEPT, { transaction_id: id, public_key: pub }).catch(() => {});
			} catch {
				this.#publishSas(id, { peer: from, phase: 'cancelled' });
			}
			return;
		}
		if (!entry || !st || st.peer.userId !== from.userId || st.peer.deviceId !== from.deviceId) return;
		if (type === SAS_ACCEPT && entry.sas && !entry.est) {
			try {
				entry.est = entry.sas.establish(String(c.public_key), JSON.stringify({ initiator: [this.userId, this.deviceId, entry.pub], acceptor: [from.userId, from.deviceId, String(c.public_key)], transaction_id: id }));
				entry.sas = null;
				this.#publishSas(id, { phase: 'compare', emoji: JSON.parse(entry.est.emoji()) });
			} catch {
				this.#publishSas(id, { phase: 'cancelled' });
			}
		} else if (type === SAS_MAC) {
			entry.theirMac = String(c.mac ?? '');
			this.#finishSas(id);
		} else if (type === SAS_CANCEL) {
			this.#publishSas(id, { phase: c.reason === 'mismatch' ? 'mismatch' : 'cancelled' });
			this.#sas.delete(id);
		}
	}

	#finishSas(id: string): void {
		const entry = this.#sas.get(id);
		const st = e2eeStatus.sas.find((s) => s.id === id);
		if (!entry?.est || !st || !entry.confirmed || entry.theirMac === null) return;
		const k = ref(st.peer.userId, st.peer.deviceId);
		const keys = this.#state.known[k];
		try {
			if (!keys) throw new Error('unknown device');
			entry.est.verifyMac(keys.ed25519, `ed25519:${st.peer.deviceId}`, entry.theirMac);
			this.#state.verified[k] = true;
			delete this.#state.changed[k];
			this.#publishChanged();
			this.#publishSas(id, { phase: 'done' });
		} catch {
			this.#publishSas(id, { phase: 'mismatch' });
		}
		this.#sas.delete(id);
	}

	confirmSas(id: string, match: boolean): Promise<void> {
		return this.#exclusive(async () => {
			const entry = this.#sas.get(id);
			const st = e2eeStatus.sas.find((s) => s.id === id);
			if (!entry?.est || !st) return;
			if (!match) {
				this.#publishSas(id, { phase: 'mismatch' });
				this.#sas.delete(id);
				await this.#sendOlm([st.peer], SAS_CANCEL, { transaction_id: id, reason: 'mismatch' });
				return;
			}
			entry.confirmed = true;
			const me = this.identityKeys();
			await this.#sendOlm([st.peer], SAS_MAC, { transaction_id: id, mac: entry.est.mac(me.ed25519, `ed25519:${this.deviceId}`) });
			this.#finishSas(id);
		});
	}

	// ------------------------------------------------------------ key backup

	setUpBackup(): Promise<string> {
		return this.#exclusive(async () => {
			const key = wasm.generateRecoveryKey();
			const r = await api.request<{ version: number }>('PUT', '/keys/backup', { body: { auth_data: BACKUP_AUTH_DATA } });
			this.#state.recoveryKey = key;
			this.#state.backupVersion = r.version;
			this.#state.backedUp = {};
			e2eeStatus.backupEnabled = true;
			return key;
		}).then(async (key) => {
			await this.backupNow();
			return key;
		});
	}

	backupNow(): Promise<number> {
		return this.#exclusive(async () => {
			const key = this.#state.recoveryKey;
			const version = this.#state.backupVersion;
			if (!key || version === null) return 0;
			const sessions: { channel_id: string; session_id: string; data: string }[] = [];
			for (const [id, g] of this.#inbound) {
				const info = this.#state.inbound[id];
				if (!info || this.#state.backedUp[id]) continue;
				const plain = JSON.stringify({ key: JSON.parse(g.export()), sender: info.senderUser, sender_device: info.senderDevice });
				sessions.push({ channel_id: info.channelId, session_id: id, data: b64encode(wasm.backupEncrypt(key, enc.encode(plain))) });
			}
			for (let i = 0; i < sessions.length; i += 500) {
				try {
					await api.request('PUT', '/keys/backup/sessions', { body: { version, sessions: sessions.slice(i, i + 500) } });
				} catch (e) {
					if (e instanceof ApiError && e.code === 'wrong_backup_version') {
						// Another device made a new backup: this device stops backing up until set up again.
						this.#state.recoveryKey = null;
						this.#state.backupVersion = null;
						e2eeStatus.backupEnabled = false;
					}
					throw e;
				}
			}
			for (const s of sessions) this.#state.backedUp[s.session_id] = true;
			return sessions.length;
		});
	}

	restoreBackup(recoveryKey: string): Promise<number> {
		return this.#exclusive(async () => {
			let since = 0;
			let n = 0;
			let version: number | null = null;
			for (let page = 0; page < 200; page++) {
				const r = await api.request<{ version: number; sessions: { channel_id: string; session_id: string; data: string }[]; next: number }>(
					'GET',
					`/keys/backup/sessions?since=${since}&limit=1000`
				);
				version = r.version;
				for (const s of r.sessions) {
					let plain: Uint8Array;
					try {
						plain = wasm.backupDecrypt(recoveryKey.trim(), b64decode(s.data));
					} catch (e) {
						throw new Error(`That recovery key does not open this backup (${errText(e)}).`);
					}
					const k = JSON.parse(dec.decode(plain)) as { key: { channel_id: string; session_id: string; exported_key: string }; sender: string; sender_device: string };
					if (this.#state.inbound[k.key.session_id]) continue;
					const g = wasm.InboundGroup.fromExported(JSON.stringify(k.key));
					this.#addInbound(g, k.key.channel_id, k.sender, k.sender_device);
					this.#state.backedUp[k.key.session_id] = true;
					n++;
				}
				if (!r.sessions.length || r.next === since) break;
				since = r.next;
			}
			// The key works: keep backing up new keys into the same backup.
			this.#state.recoveryKey = recoveryKey.trim();
			this.#state.backupVersion = version;
			e2eeStatus.backupEnabled = true;
			return n;
		});
	}
}

function browserName(): string {
	const ua = navigator.userAgent;
	const b = /Firefox\//.test(ua) ? 'Firefox' : /Edg\//.test(ua) ? 'Edge' : /Chrom(e|ium)\//.test(ua) ? 'Chromium' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
	return `Web (${b})`;
}

async function saveState(db: IDBDatabase, key: CryptoKey, s: Persisted): Promise<void> {
	const iv = crypto.getRandomValues(new Uint8Array(12));
	const data = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, enc.encode(JSON.stringify(s)));
	await idbPut(db, `state:${s.userId}`, { iv, data });
}

async function loadState(db: IDBDatabase, key: CryptoKey, userId: string): Promise<Persisted | null> {
	const rec = await idbGet<{ iv: Uint8Array; data: ArrayBuffer }>(db, `state:${userId}`);
	if (!rec) return null;
	try {
		const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: rec.iv as Uint8Array<ArrayBuffer> }, key, rec.data);
		const s = JSON.parse(dec.decode(plain)) as Persisted;
		return s.v === 1 && s.userId === userId ? s : null;
	} catch {
		return null;
	}
}

let wasmReady: Promise<unknown> | null = null;

/** Loads the wasm, restores or creates this user's device, uploads its keys, starts syncing. */
export async function startEngine(userId: string): Promise<E2ee> {
	// One tab per browser drives the device: two engines saving the same state would undo each
	// other's ratchet steps. The lock is held (Web Locks) for the engine's life.
	const release = await tabLock(userId);
	try {
		const engine = await startLocked(userId);
		engine.release = release;
		return engine;
	} catch (e) {
		release();
		throw e;
	}
}

/** Takes this user's E2EE lock in this browser; throws when another tab holds it. */
async function tabLock(userId: string): Promise<() => void> {
	if (!('locks' in navigator)) return () => {};
	let release: () => void = () => {};
	const held = new Promise<void>((r) => (release = r));
	const attempt = () =>
		new Promise<boolean>((resolve) => {
			void navigator.locks.request(`copains-e2ee:${userId}`, { ifAvailable: true }, (lock) => {
				resolve(lock !== null);
				return lock ? held : undefined;
			});
		});
	// A page being replaced (reload, navigation) may still hold it for a moment.
	let got = await attempt();
	for (let i = 0; !got && i < 15; i++) {
		await new Promise((r) => setTimeout(r, 200));
		got = await attempt();
	}
	if (!got) throw new Error('End-to-end encryption is already running in another tab of this browser: use that tab, or close it and reload this one.');
	return release;
}

async function startLocked(userId: string): Promise<Engine> {
	wasmReady ??= init();
	await wasmReady;
	const db = await openDb();
	const key = await storageKey(db, userId);
	let state = await loadState(db, key, userId);
	let fresh = false;
	if (!state) {
		const deviceId = newDeviceId();
		const device = new wasm.Device(userId, deviceId);
		device.generateOneTimeKeys(TARGET_ONE_TIME_KEYS);
		device.generateFallbackKey();
		state = {
			v: 1,
			userId,
			deviceId,
			device: device.pickle(PICKLE_KEY),
			olm: new wasm.OlmSessionStore().pickle(PICKLE_KEY),
			inbound: {},
			outbound: {},
			known: {},
			verified: {},
			changed: {},
			since: 0,
			recoveryKey: null,
			backupVersion: null,
			backedUp: {}
		};
		device.free();
		fresh = true;
	}
	const engine = new Engine(db, key, state);
	const ik = engine.identityKeys();
	state.known[ref(userId, state.deviceId)] = ik;
	if (fresh) {
		// Saved before the upload: a device whose keys reached the server is never lost locally.
		await saveState(db, key, state);
	}
	await engine.replenish();
	// Remembered once its keys are on the server (the gateway's identify names it from then on).
	rememberDeviceId(userId, state.deviceId);
	engine.start();
	return engine;
}
