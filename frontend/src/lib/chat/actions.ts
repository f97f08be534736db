/** What the chat screens do: REST calls that update the chat model (live changes come from the gateway). */
import { api, errorMessage, isApiError, type Attachment, type Channel, type DmChannel, type Message, type Role, type Server } from '$lib/api';
import { gatewaySend } from '$lib/gateway';
import { applyMyReaction, chat, compareIds, isEncryptedPlace, upsertMessage, type ChannelHistory, type ChatMessage, type ServerState } from './state.svelte';
import { ensureE2ee, type Envelope } from '$lib/e2ee';
import { decodeBody, encodeBody, encryptFile, MAX_FILE_BYTES, type EncryptedFile } from '$lib/e2ee/files';

/** Messages per history page. */
export const PAGE = 50;

function historyOf(channelId: string): ChannelHistory {
	return (chat.history[channelId] ??= { items: [], hasMore: true, loading: false, error: null, loaded: false });
}

/** Explains a failed messaging call; a missing route (404/405 on the whole API) says messaging is unavailable. */
function messagingError(e: unknown): string {
	if (isApiError(e) && (e.status === 405 || (e.status === 404 && e.code === 'http_404'))) {
		return 'Messages are not available on this server yet.';
	}
	return errorMessage(e);
}

/** Loads the newest page of a channel once (again after a reconnect with a fresh `ready`). */
export async function loadLatest(channelId: string): Promise<void> {
	const h = historyOf(channelId);
	if (h.loaded || h.loading) return;
	h.loading = true;
	h.error = null;
	try {
		const page = await api.messages(channelId, { limit: PAGE });
		const live = h.items; // events that arrived while loading are not in `page` only if newer
		const cur = historyOf(channelId);
		cur.items = page;
		cur.loaded = true;
		cur.hasMore = page.length >= PAGE;
		for (const m of live) if (!m.pending && m.failed === undefined) upsertMessage(chat, m);
		for (const m of live) if (m.pending || m.failed !== undefined) cur.items.push(m);
	} catch (e) {
		historyOf(channelId).error = messagingError(e);
	} finally {
		historyOf(channelId).loading = false;
	}
}

/** Loads the page before the oldest loaded message; returns how many were added. */
export async function loadOlder(channelId: string): Promise<number> {
	const h = historyOf(channelId);
	if (!h.loaded || h.loading || !h.hasMore) return 0;
	const oldest = h.items.find((m) => !m.pending && m.failed === undefined);
	if (!oldest) {
		h.hasMore = false;
		return 0;
	}
	h.loading = true;
	try {
		const page = await api.messages(channelId, { before: oldest.id, limit: PAGE });
		const cur = historyOf(channelId);
		// Only what is older than the cursor (no need to look through everything already loaded).
		const older = page.filter((m) => compareIds(m.id, oldest.id) < 0).sort((a, b) => compareIds(a.id, b.id));
		cur.items = [...older, ...cur.items];
		cur.hasMore = page.length >= PAGE;
		return older.length;
	} catch (e) {
		historyOf(channelId).error = messagingError(e);
		return 0;
	} finally {
		historyOf(channelId).loading = false;
	}
}

/** A client nonce (1–64 printable ASCII) for safe retries. */
export function newNonce(): string {
	const bytes = new Uint8Array(12);
	crypto.getRandomValues(bytes);
	return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Encrypted uploads of this tab not sent yet: attachment id → what the message body will carry. */
const encryptedUploads = new Map<string, EncryptedFile>();

/**
 * Uploads a file to attach to my next message in a place. In an encrypted place the file is
 * encrypted here first (a fresh AES-256-GCM key) and only the ciphertext is uploaded, under no
 * real name; the returned attachment shows the real name locally.
 */
export async function uploadFile(channelId: string, file: File): Promise<Attachment> {
	const name = file.name || 'file';
	if (!isEncryptedPlace(chat, channelId)) return api.uploadAttachment(channelId, file, name);
	if (file.size > MAX_FILE_BYTES) throw new Error(`Files over ${MAX_FILE_BYTES / 1024 / 1024} MB cannot be sent encrypted.`);
	const { blob, info } = await encryptFile(new Uint8Array(await file.arrayBuffer()), name, file.type || 'application/octet-stream');
	const a = await api.uploadAttachment(channelId, new Blob([blob as BlobPart], { type: 'application/octet-stream' }), 'encrypted');
	encryptedUploads.set(a.id, { id: a.id, ...info });
	if (encryptedUploads.size > 100) encryptedUploads.delete(encryptedUploads.keys().next().value as string);
	return { ...a, filename: info.name };
}

/** Sends a message optimistically: shown at once as pending, confirmed (or marked failed) by the server. */
export async function sendMessage(
	channelId: string,
	content: string,
	nonce: string = newNonce(),
	replyTo: string | null = null,
	attachments: Attachment[] = []
): Promise<void> {
	const h = historyOf(channelId);
	const existing = h.items.find((m) => m.nonce === nonce && (m.pending || m.failed !== undefined));
	const pending: ChatMessage = existing ?? {
		id: `pending-${nonce}`,
		channel_id: channelId,
		author_id: chat.meId,
		content,
		nonce,
		reply_to: replyTo,
		attachments,
		edited_at: null,
		created_at: new Date().toISOString(),
		pending: true
	};
	pending.pending = true;
	delete pending.failed;
	if (!existing) h.items.push(pending);
	try {
		let m: Message;
		if (isEncryptedPlace(chat, channelId)) {
			// End-to-end encrypted: the server gets only the envelope and the ids of ciphertext blobs;
			// each file's name, type, key and hash travel inside the envelope.
			const files = attachments.map((a) => {
				const f = encryptedUploads.get(a.id);
				if (!f) throw new Error(`${a.filename} was not encrypted on this device: attach it again.`);
				return f;
			});
			const shown = historyOf(channelId).items.find((x) => x.pending && x.nonce === nonce);
			if (shown) shown.e2eeFiles = files;
			const e2ee = await ensureE2ee();
			const encrypted = await e2ee.encryptForPlace(channelId, encodeBody(content, files));
			m = await api.sendEncryptedMessage(
				channelId,
				encrypted,
				nonce,
				replyTo,
				attachments.map((a) => a.id)
			);
		} else {
			m = await api.sendMessage(
				channelId,
				content,
				nonce,
				replyTo,
				attachments.map((a) => a.id)
			);
		}
		upsertMessage(chat, m);
		for (const a of attachments) encryptedUploads.delete(a.id);
		// If the history was not loaded yet, the pending copy is still there: replace it.
		const cur = historyOf(channelId);
		const i = cur.items.findIndex((x) => x.pending && x.nonce === nonce);
		if (i >= 0) {
			if (cur.items.some((y) => y.id === m.id)) cur.items.splice(i, 1);
			else cur.items[i] = { ...m };
		}
	} catch (e) {
		const cur = historyOf(channelId);
		const i = cur.items.findIndex((x) => x.nonce === nonce && x.pending);
		if (i >= 0) cur.items[i] = { ...cur.items[i], pending: false, failed: messagingError(e) };
	}
}

/** Retries a failed send with the same nonce (the server deduplicates). */
export function retrySend(m: ChatMessage): Promise<void> {
	return sendMessage(m.channel_id, m.content ?? '', m.nonce ?? newNonce(), m.reply_to ?? null, m.attachments ?? []);
}

/** Drops a failed message from the pane. */
export function discardFailed(m: ChatMessage): void {
	const h = chat.history[m.channel_id];
	if (h) h.items = h.items.filter((x) => x !== m && x.id !== m.id);
}

/** Edits my message; the model is updated from the answer (and the gateway's message_update). */
export async function editMessage(m: ChatMessage, content: string): Promise<void> {
	if (isEncryptedPlace(chat, m.channel_id)) {
		const e2ee = await ensureE2ee();
		// The files stay: the edited body carries their descriptions again.
		const files = m.e2eeFiles ?? [];
		const encrypted = await e2ee.encryptForPlace(m.channel_id, encodeBody(content, files));
		const updated = await api.editEncryptedMessage(m.channel_id, m.id, encrypted);
		upsertMessage(chat, { ...updated, content: updated.content ?? content });
		const cur = chat.history[m.channel_id]?.items.find((x) => x.id === m.id);
		if (cur && files.length) cur.e2eeFiles = files;
		return;
	}
	const updated = await api.editMessage(m.channel_id, m.id, content);
	upsertMessage(chat, updated);
}

// ---------------------------------------------------------------- end-to-end encrypted places

/** Envelope + key version of the last decryption attempt per message (no retry loop). */
const attempts = new Map<string, string>();

/** Decrypts an encrypted message of the model in place (its text, or why it cannot be read). */
export async function decryptMessage(m: ChatMessage, keysVersion: number): Promise<void> {
	if (m.content !== null || !m.encrypted || m.pending) return;
	const envelope = m.encrypted as Envelope;
	const mark = `${envelope.ciphertext?.slice(-24)}@${keysVersion}`;
	if (attempts.get(m.id) === mark) return;
	attempts.set(m.id, mark);
	if (attempts.size > 5000) attempts.delete(attempts.keys().next().value as string);
	let text: string | null = null;
	let reason: string | undefined;
	let detail: string | undefined;
	try {
		const e2ee = await ensureE2ee();
		const r = await e2ee.decryptFromPlace(m.channel_id, envelope, { authorId: m.author_id, messageId: m.id });
		if (r.ok) text = r.plaintext;
		else ({ reason, detail } = r);
	} catch (e) {
		reason = 'Encryption could not start in this browser, so encrypted messages cannot be read here. Reloading the page may help.';
		detail = errorMessage(e);
	}
	const cur = chat.history[m.channel_id]?.items.find((x) => x.id === m.id);
	if (!cur || cur.content !== null) return;
	if ((cur.encrypted as Envelope | undefined)?.ciphertext !== envelope.ciphertext) {
		// Edited meanwhile: the new envelope gets its own attempt.
		attempts.delete(m.id);
		return;
	}
	if (text !== null) {
		const body = decodeBody(text);
		// Only files the server says this message carries (a body cannot point at other blobs).
		const own = new Set((cur.attachments ?? []).map((a) => a.id));
		cur.e2eeFiles = body.files.filter((f) => own.has(f.id));
		cur.content = body.text;
		delete cur.undecryptable;
		delete cur.undecryptableDetail;
	} else {
		cur.undecryptable = reason;
		cur.undecryptableDetail = detail;
	}
}

/** Asks the author's device for the key of an undecryptable message (it re-shares it if I may read). */
export async function requestMessageKey(m: ChatMessage): Promise<void> {
	if (!m.encrypted || !m.author_id) return;
	const e2ee = await ensureE2ee();
	await e2ee.requestKey(m.channel_id, m.encrypted as Envelope, m.author_id);
}

/** Refreshes my DM list. */
export async function loadDms(): Promise<void> {
	chat.dms = await api.dms();
	for (const dm of chat.dms) for (const u of dm.recipients) chat.users[u.id] ??= u;
}

/** Opens (or creates) the 1:1 DM with a user; returns its id. */
export async function openDm(userId: string): Promise<string> {
	const dm = await api.openDm([userId]);
	if (!chat.dms.some((d) => d.id === dm.id)) chat.dms = [dm, ...chat.dms];
	for (const u of dm.recipients) chat.users[u.id] ??= u;
	return dm.id;
}

/** Creates a group DM with 2–9 other users (owned by me); returns its id. */
export async function createGroupDm(userIds: string[]): Promise<string> {
	const dm = await api.openDm(userIds);
	putDm(dm);
	return dm.id;
}

/** The owner adds a member to a group DM. */
export async function addGroupMember(channelId: string, userId: string): Promise<void> {
	putDm(await api.addDmRecipient(channelId, userId));
}

/** The owner removes a member from a group DM, or I leave it (my own id). */
export async function removeGroupMember(channelId: string, userId: string): Promise<void> {
	await api.removeDmRecipient(channelId, userId);
	if (userId === chat.meId) {
		chat.dms = chat.dms.filter((d) => d.id !== channelId);
		delete chat.history[channelId];
	} else {
		const dm = chat.dms.find((d) => d.id === channelId);
		if (dm) putDm({ ...dm, recipients: dm.recipients.filter((u) => u.id !== userId) });
	}
}

function putDm(dm: DmChannel): void {
	for (const u of dm.recipients) chat.users[u.id] ??= u;
	const i = chat.dms.findIndex((d) => d.id === dm.id);
	if (i >= 0) chat.dms[i] = dm;
	else chat.dms = [dm, ...chat.dms];
}

/** Deletes a message. */
export async function deleteMessage(m: ChatMessage): Promise<void> {
	await api.deleteMessage(m.channel_id, m.id);
	const h = chat.history[m.channel_id];
	if (h) h.items = h.items.filter((x) => x.id !== m.id);
}

/** Loads a server's members once (kept fresh by member events). */
export async function loadMembers(serverId: string): Promise<string | null> {
	if (chat.members[serverId]) return null;
	try {
		const list = await api.members(serverId);
		for (const m of list) chat.users[m.user.id] = m.user;
		chat.members[serverId] = list;
		return null;
	} catch (e) {
		return errorMessage(e);
	}
}

const lastTyping = new Map<string, number>();

/** Tells the channel I am typing (at most once per 5 s, as the gateway allows). */
export function notifyTyping(channelId: string, now: number = Date.now()): void {
	const key = `${chat.meId}:${channelId}`;
	const last = lastTyping.get(key) ?? 0;
	if (now - last < 5000) return;
	if (gatewaySend('typing_start', { channel_id: channelId })) lastTyping.set(key, now);
}

/** Sets my presence status (sent to the gateway for this connection). */
export function setMyStatus(status: 'online' | 'idle' | 'dnd' | 'invisible', customStatus: string = chat.myCustomStatus): void {
	chat.myStatus = status;
	chat.myCustomStatus = customStatus.slice(0, 128);
	if (chat.meId) {
		chat.presences[chat.meId] = status === 'invisible' ? 'offline' : status;
		if (chat.myCustomStatus) chat.customStatus[chat.meId] = chat.myCustomStatus;
		else delete chat.customStatus[chat.meId];
	}
	gatewaySend('presence_update', chat.myCustomStatus ? { status, custom_status: chat.myCustomStatus } : { status });
}

/** The channels and roles of a server, over REST. */
function fetchStructure(serverId: string): Promise<[Channel[], Role[]]> {
	return Promise.all([
		api.channels(serverId),
		api.request<Role[]>('GET', `/servers/${encodeURIComponent(serverId)}/roles`).catch(() => [] as Role[])
	]);
}

/**
 * Puts freshly fetched channels and roles into a server of the model. What live events added while
 * the fetch ran (ids not in `before` nor in the answer) is kept; everything else is the answer.
 */
function mergeStructure(s: ServerState, before: Set<string>, channels: Channel[], roles: Role[]): void {
	const fetched = new Set(channels.map((c) => c.id));
	s.channels = [...channels, ...s.channels.filter((c) => !fetched.has(c.id) && !before.has(c.id))];
	const fetchedRoles = new Set(roles.map((r) => r.id));
	if (roles.length) s.roles = [...roles, ...s.roles.filter((r) => !fetchedRoles.has(r.id) && !before.has(r.id))];
}

function idsOf(s: ServerState | undefined): Set<string> {
	return new Set([...(s?.channels ?? []).map((c) => c.id), ...(s?.roles ?? []).map((r) => r.id)]);
}

/**
 * Puts a server I just created or joined into the model with its channels and roles, without
 * waiting for the gateway's `server_create`.
 */
export async function addServer(server: Server): Promise<void> {
	const before = idsOf(chat.servers.find((s) => s.id === server.id));
	const [channels, roles] = await fetchStructure(server.id);
	const existing = chat.servers.find((s) => s.id === server.id);
	if (existing) {
		mergeStructure(existing, before, channels, roles);
		return;
	}
	chat.servers.push({ ...server, channels, roles });
}

/**
 * After the gateway's `server_create` (its server object has no channels nor roles): loads them
 * over REST when the model has none. This is not only for servers joined elsewhere: a `ready`
 * computed before a join here may reach the page after the join's own {@link addServer}, replace
 * the server list without the new server, and the held `server_create` then brings it back empty.
 */
export async function loadAnnouncedServer(serverId: string): Promise<void> {
	const known = chat.servers.find((s) => s.id === serverId);
	if (!known || (known.channels.length && known.roles.length)) return;
	const before = idsOf(known);
	try {
		const [channels, roles] = await fetchStructure(serverId);
		const existing = chat.servers.find((s) => s.id === serverId);
		if (existing) mergeStructure(existing, before, channels, roles);
	} catch (e) {
		console.warn('loading an announced server:', e);
	}
}

/** Loads unread and mention counts once per `ready`. */
export async function loadReadStates(): Promise<void> {
	if (chat.readStatesLoaded) return;
	chat.readStatesLoaded = true;
	try {
		const states = await api.readStates();
		for (const r of states) {
			if (r.last_read_id) chat.lastRead[r.channel_id] = r.last_read_id;
			if (r.unread_count > 0 && r.channel_id !== chat.viewing) chat.unread[r.channel_id] = { count: r.unread_count, mentions: r.mention_count };
			else delete chat.unread[r.channel_id];
		}
	} catch {
		// Counts are a convenience: without them the sidebar simply shows no badges.
		chat.readStatesLoaded = false;
	}
}

const acked = new Map<string, string>();

/** Marks a channel read up to its newest loaded message (once per message). */
export async function markRead(channelId: string): Promise<void> {
	delete chat.unread[channelId];
	const items = chat.history[channelId]?.items ?? [];
	// From the end (10,000 loaded messages must not be copied or all read for this).
	let newest: ChatMessage | undefined;
	for (let i = items.length - 1; i >= 0 && !newest; i--) if (!items[i].pending && items[i].failed === undefined) newest = items[i];
	const key = `${chat.meId}:${channelId}`;
	if (!newest || acked.get(key) === newest.id) return;
	acked.set(key, newest.id);
	chat.lastRead[channelId] = newest.id;
	try {
		await api.ack(channelId, newest.id);
	} catch {
		acked.delete(key);
	}
}

/** Adds or removes my reaction (the gateway's reaction events update the counts for everyone). */
export async function toggleReaction(m: ChatMessage, emoji: string): Promise<void> {
	const mine = m.reactions?.find((r) => r.emoji === emoji)?.me ?? false;
	applyMyReaction(chat, m.channel_id, m.id, emoji, !mine);
	try {
		if (mine) await api.removeReaction(m.channel_id, m.id, emoji);
		else await api.addReaction(m.channel_id, m.id, emoji);
	} catch (e) {
		applyMyReaction(chat, m.channel_id, m.id, emoji, mine);
		throw e;
	}
}

/** Loads the active threads of a channel (once per opening). */
export async function loadThreads(channelId: string): Promise<void> {
	try {
		chat.threads[channelId] = await api.threads(channelId);
	} catch {
		// Threads are optional here: without the list, starter messages just show no thread link.
	}
}

/** Starts a thread from a message and opens it. */
export async function startThread(m: ChatMessage, name: string): Promise<void> {
	const t = await api.startThread(m.channel_id, m.id, name);
	const list = (chat.threads[m.channel_id] ??= []);
	if (!list.some((x) => x.id === t.id)) list.push(t);
	chat.openThread = t;
}
