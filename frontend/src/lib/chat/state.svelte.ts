/**
 * The client-side model of servers, channels, members, messages, presence and typing, filled
 * from the gateway's `ready`, its dispatched events and REST pages. `applyReady` and
 * `applyDispatch` are plain functions of this state (unit-tested without a socket).
 */
import type { Channel, DmChannel, Member, Message, Relationship, Role, Server, Thread, UserSummary } from '$lib/api';
import type { EncryptedFile } from '$lib/e2ee/files';
import { toNotice, type ModerationNotice } from './moderation';

/** A server with what the sidebar needs. */
export interface ServerState extends Server {
	channels: Channel[];
	roles: Role[];
}

/** A message in the pane: a server message, or my optimistic copy until the server answers. */
export interface ChatMessage extends Message {
	/** Sent, not yet confirmed by the server. */
	pending?: boolean;
	/** The send failed: why (shown with a retry). */
	failed?: string;
	/** Encrypted places: the envelope could not be decrypted on this device, and why. */
	undecryptable?: string;
	/** The technical detail behind `undecryptable` (library text), shown only on request. */
	undecryptableDetail?: string;
	/** Encrypted places: the files the decrypted body describes (name, type, key of each blob). */
	e2eeFiles?: EncryptedFile[];
}

/** The loaded history of one channel. */
export interface ChannelHistory {
	items: ChatMessage[];
	/** Older pages may exist. */
	hasMore: boolean;
	loading: boolean;
	error: string | null;
	/** Loaded once (live events are only appended to loaded channels). */
	loaded: boolean;
}

/** Presence as others see it. */
export type Presence = 'online' | 'idle' | 'dnd' | 'offline';

/** The whole chat model. */
export interface ChatState {
	ready: boolean;
	meId: string | null;
	servers: ServerState[];
	members: Record<string, Member[] | undefined>;
	history: Record<string, ChannelHistory | undefined>;
	presences: Record<string, Presence | undefined>;
	/** channel id → user id → expiry (Unix ms). */
	typing: Record<string, Record<string, number> | undefined>;
	/** Users seen anywhere (members, inviters), for names. */
	users: Record<string, UserSummary | undefined>;
	/** My own chosen status (what the user panel shows). */
	myStatus: 'online' | 'idle' | 'dnd' | 'invisible';
	/** Custom status texts by user id (from presence; at most 128 characters). */
	customStatus: Record<string, string | undefined>;
	/** My own custom status text. */
	myCustomStatus: string;
	/** Unread messages by others (and mentions of me) per channel, from read states and live messages. */
	unread: Record<string, { count: number; mentions: number } | undefined>;
	/** The last message I read per channel (from read states and my acks), for the "new" divider. */
	lastRead: Record<string, string | undefined>;
	/** Read states were fetched since the last `ready`. */
	readStatesLoaded: boolean;
	/** The channel on screen (its new messages are read, not unread). */
	viewing: string | null;
	/** Friends, requests and blocks, by the other user's id. */
	relationships: Record<string, Relationship | undefined>;
	/** Active threads per parent channel (loaded when the channel is opened). */
	threads: Record<string, Thread[] | undefined>;
	/** The thread shown in the side panel. */
	openThread: Thread | null;
	/** My DMs and group DMs (end-to-end encrypted), most recently active first. */
	dms: DmChannel[];
	/** What moderators did to me (kick, ban, timeout), by server id: kept across reconnects. */
	moderation: Record<string, ModerationNotice | undefined>;
}

/** A fresh, empty model. */
export function emptyChat(): ChatState {
	return {
		ready: false,
		meId: null,
		servers: [],
		members: {},
		history: {},
		presences: {},
		typing: {},
		users: {},
		myStatus: 'online',
		customStatus: {},
		myCustomStatus: '',
		unread: {},
		lastRead: {},
		readStatesLoaded: false,
		viewing: null,
		relationships: {},
		threads: {},
		openThread: null,
		dms: [],
		moderation: {}
	};
}

/** The app's reactive chat model. */
export const chat: ChatState = $state(emptyChat());

/** Clears everything (logout). */
export function resetChat(s: ChatState = chat): void {
	Object.assign(s, emptyChat());
}

/** Orders ids (decimal snowflake strings) numerically. */
export function compareIds(a: string, b: string): number {
	if (a.length !== b.length) return a.length - b.length;
	return a < b ? -1 : a > b ? 1 : 0;
}

function obj(v: unknown): Record<string, unknown> | null {
	return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function str(v: unknown): string | null {
	return typeof v === 'string' ? v : null;
}

function toChannel(v: unknown, serverId?: string): Channel | null {
	const c = obj(v);
	if (!c || !str(c.id) || !str(c.name)) return null;
	if (str(c.starter_message_id)) return null; // a thread, not a channel of the sidebar
	const kind = c.kind === 'voice' || c.kind === 'category' ? c.kind : 'text';
	return {
		id: c.id as string,
		server_id: str(c.server_id) ?? serverId ?? '',
		kind,
		name: c.name as string,
		parent_id: str(c.parent_id),
		position: typeof c.position === 'number' ? c.position : 0,
		topic: str(c.topic),
		slowmode_secs: typeof c.slowmode_secs === 'number' ? c.slowmode_secs : 0,
		encrypted: c.encrypted === true
	};
}

function toServer(v: unknown): ServerState | null {
	const s = obj(v);
	if (!s || !str(s.id) || !str(s.name)) return null;
	const id = s.id as string;
	const channels = Array.isArray(s.channels) ? s.channels.map((c) => toChannel(c, id)).filter((c): c is Channel => c !== null) : [];
	const roles = Array.isArray(s.roles) ? (s.roles.filter((r) => obj(r) && str(obj(r)?.id)) as Role[]) : [];
	return {
		id,
		name: s.name as string,
		owner_id: str(s.owner_id) ?? '',
		description: str(s.description),
		member_count: typeof s.member_count === 'number' ? s.member_count : undefined,
		channels,
		roles
	};
}

/** Reactions from an event (no `me`: events go to every reader) with `me` false until my own reaction events say otherwise. */
function neutral(list: Message['reactions'] | undefined): Message['reactions'] {
	return (Array.isArray(list) ? list : []).map((r) => ({ emoji: r.emoji, count: r.count, me: r.me === true }));
}

function toMessage(v: unknown): Message | null {
	const m = obj(v);
	if (!m || !str(m.id) || !str(m.channel_id)) return null;
	return m as unknown as Message;
}

/** Replaces the model with a `ready` payload (the first connection, or after `invalid_session`). */
export function applyReady(s: ChatState, d: Record<string, unknown>): void {
	const user = obj(d.user);
	s.meId = str(user?.id) ?? s.meId;
	if (user && str(user.id) && str(user.username)) {
		s.users[user.id as string] = { id: user.id as string, username: user.username as string, display_name: str(user.display_name) };
	}
	s.servers = Array.isArray(d.servers) ? d.servers.map(toServer).filter((x): x is ServerState => x !== null) : [];
	// Members and histories are refetched on demand: events may have been missed.
	s.members = {};
	s.history = {};
	s.typing = {};
	// Unread counts are refetched (`GET /users/@me/read-states`) after every ready.
	s.readStatesLoaded = false;
	s.relationships = {};
	s.dms = Array.isArray(d.dm_channels) ? (d.dm_channels as DmChannel[]).filter((c) => obj(c) && str(c.id) && Array.isArray(c.recipients)) : [];
	for (const dm of s.dms) for (const u of dm.recipients) if (obj(u) && str(u.id)) s.users[u.id] ??= u;
	if (Array.isArray(d.relationships)) for (const r of d.relationships) setRelationship(s, r);
	if (Array.isArray(d.presences)) {
		for (const p of d.presences) {
			const o = obj(p);
			if (o && str(o.user_id)) {
				s.presences[o.user_id as string] = presenceOf(o.status);
				const text = str(o.custom_status);
				if (text) s.customStatus[o.user_id as string] = text.slice(0, 128);
			}
		}
	}
	if (s.meId) s.presences[s.meId] = s.myStatus === 'invisible' ? 'offline' : s.myStatus;
	s.ready = true;
}

function setRelationship(s: ChatState, v: unknown): void {
	const r = obj(v);
	const user = obj(r?.user);
	if (!r || !user || !str(user.id) || !str(user.username)) return;
	const id = user.id as string;
	const kind = r.kind;
	if (kind !== 'friend' && kind !== 'outgoing' && kind !== 'incoming' && kind !== 'blocked') {
		delete s.relationships[id];
		return;
	}
	const summary: UserSummary = { id, username: user.username as string, display_name: str(user.display_name) };
	s.users[id] = summary;
	s.relationships[id] = { user: summary, kind, since: str(r.since) };
}

function presenceOf(v: unknown): Presence {
	return v === 'online' || v === 'idle' || v === 'dnd' ? v : 'offline';
}

function serverById(s: ChatState, id: string | null): ServerState | undefined {
	return id === null ? undefined : s.servers.find((x) => x.id === id);
}

/** Inserts or replaces a message in a loaded history, matching my pending copy by nonce. */
export function upsertMessage(s: ChatState, m: Message): void {
	const h = s.history[m.channel_id];
	// Live messages are kept for loaded histories, and for one being loaded (merged with its first page).
	if (!h || (!h.loaded && !h.loading)) return;
	const byId = h.items.findIndex((x) => x.id === m.id);
	if (byId >= 0) {
		h.items[byId] = withPlaintext(h.items[byId], m);
		return;
	}
	let mine: ChatMessage | null = null;
	if (m.nonce) {
		const byNonce = h.items.findIndex((x) => x.pending !== undefined && x.nonce === m.nonce && x.author_id === m.author_id);
		if (byNonce >= 0) {
			mine = h.items[byNonce];
			h.items.splice(byNonce, 1);
		}
	}
	if (mine && m.content === null && m.encrypted && mine.content !== null) {
		// My own encrypted message confirmed: keep the plaintext I typed.
		h.items.splice(insertAt(h, m), 0, { ...m, content: mine.content, e2eeFiles: mine.e2eeFiles });
		return;
	}
	h.items.splice(insertAt(h, m), 0, { ...m });
}

/** Where a server message goes: sorted by id, pending ones after them. */
function insertAt(h: ChannelHistory, m: Message): number {
	let i = h.items.length;
	while (i > 0 && (h.items[i - 1].pending || h.items[i - 1].failed !== undefined || compareIds(h.items[i - 1].id, m.id) > 0)) i--;
	return i;
}

/** A new copy of a message: an encrypted one whose envelope did not change keeps its decrypted text. */
function withPlaintext(old: ChatMessage, m: Message): ChatMessage {
	const same = (a: unknown, b: unknown) => (a as { ciphertext?: unknown } | null)?.ciphertext === (b as { ciphertext?: unknown } | null)?.ciphertext;
	if (m.content === null && m.encrypted && old.content !== null && same(old.encrypted, m.encrypted)) return { ...m, content: old.content, e2eeFiles: old.e2eeFiles };
	return { ...m };
}

/** Applies one dispatched gateway event. Unknown events are ignored. */
export function applyDispatch(s: ChatState, t: string, raw: unknown, now: number = Date.now()): void {
	const d = obj(raw);
	if (!d) return;
	switch (t) {
		case 'server_create':
		case 'server_update': {
			const srv = obj(d.server);
			const parsed = toServer(srv);
			if (!parsed) return;
			if (t === 'server_create' && s.moderation[parsed.id]?.action !== 'timeout') delete s.moderation[parsed.id]; // back in
			const existing = serverById(s, parsed.id);
			if (existing) {
				existing.name = parsed.name;
				existing.owner_id = parsed.owner_id || existing.owner_id;
				existing.description = parsed.description;
				if (Array.isArray(srv?.channels)) existing.channels = parsed.channels;
				if (Array.isArray(srv?.roles)) existing.roles = parsed.roles;
			} else {
				s.servers.push(parsed);
			}
			return;
		}
		case 'server_delete': {
			const id = str(d.server_id);
			s.servers = s.servers.filter((x) => x.id !== id);
			if (id) delete s.members[id];
			return;
		}
		case 'channel_create':
		case 'channel_update': {
			const raw = obj(d.channel);
			if (raw && (raw.kind === 'thread' || str(raw.starter_message_id)) && str(raw.parent_id) && str(raw.id)) {
				// A thread (announced as a channel of kind `thread`): listed under its parent, not in the sidebar.
				const t = raw as unknown as Thread;
				const list = (s.threads[t.parent_id] ??= []);
				const i = list.findIndex((x) => x.id === t.id);
				if (i >= 0) list[i] = t;
				else list.push(t);
				return;
			}
			if (raw && (raw.kind === 'dm' || raw.kind === 'group_dm') && str(raw.id) && Array.isArray(raw.recipients)) {
				// A DM or group DM changed (members added or removed): keep my list current.
				const dm = raw as unknown as DmChannel;
				for (const u of dm.recipients) if (obj(u) && str(u.id)) s.users[u.id] ??= u;
				const i = s.dms.findIndex((x) => x.id === dm.id);
				if (i >= 0) s.dms[i] = dm;
				else s.dms = [dm, ...s.dms];
				return;
			}
			const c = toChannel(d.channel);
			if (!c) return;
			const srv = serverById(s, c.server_id);
			if (!srv) return;
			const i = srv.channels.findIndex((x) => x.id === c.id);
			if (i >= 0) srv.channels[i] = c;
			else srv.channels.push(c);
			return;
		}
		case 'channel_delete': {
			const id = str(d.channel_id);
			for (const srv of s.servers) srv.channels = srv.channels.filter((c) => c.id !== id);
			for (const [k, list] of Object.entries(s.threads)) if (list?.some((t) => t.id === id)) s.threads[k] = list.filter((t) => t.id !== id);
			if (s.openThread?.id === id) s.openThread = null;
			s.dms = s.dms.filter((x) => x.id !== id); // I left or was removed from a group DM
			if (id) delete s.history[id];
			return;
		}
		case 'role_create':
		case 'role_update': {
			const srv = serverById(s, str(d.server_id));
			const role = obj(d.role);
			if (!srv || !role || !str(role.id)) return;
			const i = srv.roles.findIndex((r) => r.id === role.id);
			if (i >= 0) srv.roles[i] = role as unknown as Role;
			else srv.roles.push(role as unknown as Role);
			return;
		}
		case 'role_delete': {
			const srv = serverById(s, str(d.server_id));
			if (srv) srv.roles = srv.roles.filter((r) => r.id !== d.role_id);
			return;
		}
		case 'member_add':
		case 'member_update': {
			const sid = str(d.server_id);
			const m = obj(d.member) as unknown as Member | null;
			if (!sid || !m || !obj(m.user) || !str(m.user.id)) return;
			s.users[m.user.id] = m.user;
			const list = s.members[sid];
			if (!list) return; // Not loaded: fetched when opened.
			const i = list.findIndex((x) => x.user.id === m.user.id);
			if (i >= 0) list[i] = m;
			else list.push(m);
			return;
		}
		case 'moderation_notice': {
			const n = toNotice(d);
			if (n) s.moderation[n.server_id] = n;
			return;
		}
		case 'member_remove': {
			const sid = str(d.server_id);
			const list = sid ? s.members[sid] : undefined;
			if (list && sid) s.members[sid] = list.filter((x) => x.user.id !== d.user_id);
			return;
		}
		case 'message_create':
		case 'message_update': {
			const m = toMessage(d.message);
			if (!m) return;
			if (t === 'message_create' && m.author_id) {
				const typing = s.typing[m.channel_id];
				if (typing) delete typing[m.author_id];
				const known = s.history[m.channel_id]?.items.some((x) => x.id === m.id);
				if (m.author_id !== s.meId && s.viewing !== m.channel_id && !known) {
					const u = (s.unread[m.channel_id] ??= { count: 0, mentions: 0 });
					u.count += 1;
					if (m.mention_everyone || (s.meId !== null && m.mentions?.includes(s.meId))) u.mentions += 1;
				}
			}
			if (t === 'message_update') {
				const h = s.history[m.channel_id];
				const old = h?.items.find((x) => x.id === m.id);
				if (!old) return; // Not shown: nothing to update.
				// Message events are reader-neutral (reactions with counts, no `me`): keep the
				// reactions this client tracks through reaction events, which know my own.
				upsertMessage(s, { ...m, reactions: old.reactions ?? neutral(m.reactions) });
				return;
			}
			upsertMessage(s, { ...m, reactions: neutral(m.reactions) });
			return;
		}
		case 'relationship_update':
			setRelationship(s, d.relationship);
			return;
		case 'read_state_update': {
			// I read it in another tab or device.
			const cid = str(d.channel_id);
			if (cid) delete s.unread[cid];
			return;
		}
		case 'message_delete': {
			const h = s.history[str(d.channel_id) ?? ''];
			if (h) h.items = h.items.filter((x) => x.id !== d.message_id);
			return;
		}
		case 'reaction_add':
		case 'reaction_remove': {
			const h = s.history[str(d.channel_id) ?? ''];
			const m = h?.items.find((x) => x.id === d.message_id);
			const emoji = str(d.emoji);
			if (!m || !emoji) return;
			const mine = d.user_id === s.meId;
			const list = m.reactions ?? (m.reactions = []);
			const r = list.find((x) => x.emoji === emoji);
			// My own reactions are applied at once when I click: their echo must not count twice.
			if (mine && t === 'reaction_add' && r?.me) return;
			if (mine && t === 'reaction_remove' && (!r || !r.me)) return;
			if (t === 'reaction_add') {
				if (r) {
					r.count += 1;
					if (mine) r.me = true;
				} else list.push({ emoji, count: 1, me: mine });
			} else if (r) {
				r.count -= 1;
				if (mine) r.me = false;
				if (r.count <= 0) m.reactions = list.filter((x) => x !== r);
			}
			return;
		}
		case 'typing_start': {
			const cid = str(d.channel_id);
			const uid = str(d.user_id);
			if (!cid || !uid || uid === s.meId) return;
			const expires = typeof d.expires_at_ms === 'number' ? d.expires_at_ms : now + 10000;
			if (expires <= now) return;
			(s.typing[cid] ??= {})[uid] = expires;
			return;
		}
		case 'presence_update': {
			const uid = str(d.user_id);
			if (!uid) return;
			s.presences[uid] = presenceOf(d.status);
			const text = str(d.custom_status);
			if (text && presenceOf(d.status) !== 'offline') s.customStatus[uid] = text.slice(0, 128);
			else delete s.customStatus[uid];
			return;
		}
	}
}

/** Who is typing in a channel at `now` (user ids), expired entries excluded. */
export function typingIn(s: ChatState, channelId: string, now: number = Date.now()): string[] {
	const t = s.typing[channelId];
	if (!t) return [];
	return Object.entries(t)
		.filter(([uid, exp]) => exp > now && uid !== s.meId)
		.map(([uid]) => uid);
}

/** Channels grouped for the sidebar: uncategorized first, then each category with its children, by position. */
export function groupChannels(channels: Channel[]): { category: Channel | null; channels: Channel[] }[] {
	const byPos = (a: Channel, b: Channel) => a.position - b.position || compareIds(a.id, b.id);
	const cats = channels.filter((c) => c.kind === 'category').sort(byPos);
	const catIds = new Set(cats.map((c) => c.id));
	const loose = channels.filter((c) => c.kind !== 'category' && (!c.parent_id || !catIds.has(c.parent_id))).sort(byPos);
	const groups: { category: Channel | null; channels: Channel[] }[] = [];
	if (loose.length) groups.push({ category: null, channels: loose });
	for (const cat of cats) {
		groups.push({ category: cat, channels: channels.filter((c) => c.kind !== 'category' && c.parent_id === cat.id).sort(byPos) });
	}
	return groups;
}

/** The name to show for a user id in a server: nickname, display name, username, or a placeholder. */
export function nameOf(s: ChatState, userId: string | null, serverId?: string): string {
	if (!userId) return 'Deleted user';
	const member = serverId ? s.members[serverId]?.find((m) => m.user.id === userId) : undefined;
	if (member?.nickname) return member.nickname;
	const u = member?.user ?? s.users[userId];
	if (!u) return 'Unknown user';
	return u.display_name?.trim() || u.username;
}

/** A thread as a channel the message pane can show (threads are text channels under a parent). */
export function threadChannel(t: Thread): Channel {
	return { id: t.id, server_id: t.server_id, kind: 'text', name: t.name, parent_id: t.parent_id, position: 0, topic: null, slowmode_secs: 0, encrypted: false };
}

/** Adds or removes my reaction locally (the click's immediate effect; the gateway's echo is then ignored). */
export function applyMyReaction(s: ChatState, channelId: string, messageId: string, emoji: string, add: boolean): void {
	const m = s.history[channelId]?.items.find((x) => x.id === messageId);
	if (!m) return;
	const list = m.reactions ?? (m.reactions = []);
	const r = list.find((x) => x.emoji === emoji);
	if (add) {
		if (!r) list.push({ emoji, count: 1, me: true });
		else if (!r.me) {
			r.count += 1;
			r.me = true;
		}
	} else if (r?.me) {
		r.count -= 1;
		r.me = false;
		if (r.count <= 0) m.reactions = list.filter((x) => x !== r);
	}
}

/** The name of a DM: the other member's (or the group's name / members'). */
export function dmName(s: ChatState, dm: DmChannel): string {
	if (dm.name) return dm.name;
	const others = dm.recipients.filter((u) => u.id !== s.meId);
	return (others.length ? others : dm.recipients).map((u) => u.display_name?.trim() || u.username).join(', ');
}

/** A DM as the message pane's channel (always encrypted, no server). */
export function dmChannel(s: ChatState, dm: DmChannel): Channel {
	return { id: dm.id, server_id: '', name: dmName(s, dm), kind: 'text', topic: null, position: 0, parent_id: null, slowmode_secs: 0, encrypted: true };
}

/** Whether messages of this place are end-to-end encrypted (a DM, or an encrypted channel). */
export function isEncryptedPlace(s: ChatState, channelId: string): boolean {
	if (s.dms.some((d) => d.id === channelId)) return true;
	for (const srv of s.servers) {
		const c = srv.channels.find((x) => x.id === channelId);
		if (c) return c.encrypted;
	}
	return false;
}
