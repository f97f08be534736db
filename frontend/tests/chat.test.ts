import { afterEach, describe, expect, it, vi } from 'vitest';
import { render } from 'svelte/server';
import {
	applyDispatch,
	applyReady,
	compareIds,
	emptyChat,
	groupChannels,
	nameOf,
	typingIn,
	upsertMessage,
	type ChatMessage,
	type ChatState
} from '../src/lib/chat/state.svelte';
import { inviteLink, parseInviteCode } from '../src/lib/chat/invite';
import MessageItem from '../src/lib/components/chat/MessageItem.svelte';
import type { Channel, Message } from '../src/lib/api';

const ME = '100000000000000001';
const BOB = '100000000000000002';
const SRV = '200000000000000001';
const GEN = '300000000000000001';

function channel(id: string, extra: Partial<Channel> = {}): Channel {
	return { id, server_id: SRV, kind: 'text', name: `c${id.slice(-2)}`, parent_id: null, position: 0, topic: null, slowmode_secs: 0, encrypted: false, ...extra };
}

function message(id: string, extra: Partial<Message> = {}): Message {
	return { id, channel_id: GEN, author_id: BOB, content: `m${id}`, edited_at: null, created_at: '2026-11-21T10:00:00Z', ...extra };
}

/** A model after a `ready` with one server and one loaded, empty channel. */
function readyState(): ChatState {
	const s = emptyChat();
	applyReady(s, {
		user: { id: ME, username: 'me', display_name: null },
		servers: [{ id: SRV, name: 'Copains', owner_id: ME, channels: [channel(GEN)], roles: [{ id: SRV, name: '@everyone', color: 0, position: 0, permissions: '1', hoist: false, mentionable: false }] }],
		presences: [{ user_id: BOB, status: 'idle' }]
	});
	s.history[GEN] = { items: [], hasMore: false, loading: false, error: null, loaded: true };
	return s;
}

describe('chat model', () => {
	it('takes servers, channels, roles and presences from ready', () => {
		const s = readyState();
		expect(s.ready).toBe(true);
		expect(s.meId).toBe(ME);
		expect(s.servers.map((x) => [x.name, x.channels.length, x.roles.length])).toEqual([['Copains', 1, 1]]);
		expect(s.presences[BOB]).toBe('idle');
		expect(s.presences[ME]).toBe('online');
	});

	it('ignores malformed ready entries instead of crashing', () => {
		const s = emptyChat();
		applyReady(s, { servers: [null, 3, { id: 5 }, { id: SRV, name: 'ok', channels: [null, { id: GEN, name: 'g' }] }], presences: 'x' });
		expect(s.servers).toHaveLength(1);
		expect(s.servers[0].channels.map((c) => c.id)).toEqual([GEN]);
		applyDispatch(s, 'message_create', null);
		applyDispatch(s, 'message_create', { message: 'nope' });
		applyDispatch(s, 'channel_create', { channel: { id: 1 } });
		expect(s.servers[0].channels).toHaveLength(1);
	});

	it('applies server and channel events', () => {
		const s = readyState();
		applyDispatch(s, 'server_create', { server: { id: '200000000000000002', name: 'Other', owner_id: BOB } });
		expect(s.servers.map((x) => x.name)).toEqual(['Copains', 'Other']);
		applyDispatch(s, 'channel_create', { channel: channel('300000000000000002', { name: 'random' }) });
		applyDispatch(s, 'channel_update', { channel: channel(GEN, { name: 'general' }) });
		expect(s.servers[0].channels.map((c) => c.name)).toEqual(['general', 'random']);
		applyDispatch(s, 'channel_delete', { server_id: SRV, channel_id: GEN });
		expect(s.servers[0].channels.map((c) => c.name)).toEqual(['random']);
		expect(s.history[GEN]).toBeUndefined();
		applyDispatch(s, 'server_delete', { server_id: '200000000000000002' });
		expect(s.servers.map((x) => x.name)).toEqual(['Copains']);
	});

	it('keeps group DMs current: members changed (channel_update), left or removed (channel_delete)', () => {
		const s = readyState();
		const u = (id: string) => ({ id, username: `u${id}`, display_name: null, avatar: null });
		const group = { id: '600', kind: 'group_dm', owner_id: '1', name: null, recipients: [u('1'), u('2'), u('3')], encrypted: true, last_message_id: null };
		applyDispatch(s, 'channel_update', { channel: group });
		expect(s.dms.map((d) => d.id)).toEqual(['600']);
		expect(s.users['3']?.username).toBe('u3');
		applyDispatch(s, 'channel_update', { channel: { ...group, recipients: [u('1'), u('2')] } });
		expect(s.dms).toHaveLength(1);
		expect(s.dms[0].recipients.map((r) => r.id)).toEqual(['1', '2']);
		expect(s.servers[0].channels.some((c) => c.id === '600')).toBe(false);
		applyDispatch(s, 'channel_delete', { server_id: null, channel_id: '600' });
		expect(s.dms).toEqual([]);
	});

	it('lists a new thread under its parent channel, not among the channels', () => {
		const s = readyState();
		const thread = { id: '500', kind: 'thread', parent_id: GEN, server_id: SRV, starter_message_id: '400', name: 'side', archived: false, auto_archive_secs: 86400, last_activity_at: '', created_at: '' };
		applyDispatch(s, 'channel_create', { channel: thread });
		expect(s.servers[0].channels.map((c) => c.id)).toEqual([GEN]);
		expect(s.threads[GEN]?.map((t) => t.name)).toEqual(['side']);
		applyDispatch(s, 'channel_delete', { server_id: SRV, channel_id: '500' });
		expect(s.threads[GEN]).toEqual([]);
	});

	it('adds live messages in id order, edits and deletes them', () => {
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000002') });
		applyDispatch(s, 'message_create', { message: message('400000000000000001') });
		applyDispatch(s, 'message_create', { message: message('400000000000000002') });
		expect(s.history[GEN]?.items.map((m) => m.id)).toEqual(['400000000000000001', '400000000000000002']);
		applyDispatch(s, 'message_update', { message: message('400000000000000001', { content: 'fixed', edited_at: '2026-11-21T10:01:00Z' }) });
		expect(s.history[GEN]?.items[0].content).toBe('fixed');
		applyDispatch(s, 'message_delete', { channel_id: GEN, message_id: '400000000000000002' });
		expect(s.history[GEN]?.items.map((m) => m.id)).toEqual(['400000000000000001']);
	});

	it('does not keep live messages of channels never opened (they are fetched when opened)', () => {
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000009', { channel_id: '399' }) });
		expect(s.history['399']).toBeUndefined();
	});

	it('replaces my pending copy with the server message by nonce, whichever comes first', () => {
		const s = readyState();
		const pending: ChatMessage = { ...message('pending-n1', { author_id: ME, nonce: 'n1', content: 'hi' }), pending: true };
		s.history[GEN]?.items.push(pending);
		applyDispatch(s, 'message_create', { message: message('400000000000000003', { author_id: ME, nonce: 'n1', content: 'hi' }) });
		expect(s.history[GEN]?.items.map((m) => [m.id, !!m.pending])).toEqual([['400000000000000003', false]]);
		// The HTTP answer arriving after the event changes nothing.
		upsertMessage(s, message('400000000000000003', { author_id: ME, nonce: 'n1', content: 'hi' }));
		expect(s.history[GEN]?.items).toHaveLength(1);
	});

	it('keeps the plaintext of my encrypted message, whatever the envelope key order of the event and the answer', () => {
		const s = readyState();
		const pending: ChatMessage = { ...message('pending-n2', { author_id: ME, nonce: 'n2', content: 'secret' }), pending: true };
		s.history[GEN]?.items.push(pending);
		const rest = { algorithm: 'copains.megolm.v1', sender_device_id: 'D', session_id: 'S', ciphertext: 'QUJD' };
		const event = { algorithm: 'copains.megolm.v1', ciphertext: 'QUJD', sender_device_id: 'D', session_id: 'S' };
		applyDispatch(s, 'message_create', { message: message('400000000000000005', { author_id: ME, nonce: 'n2', content: null, encrypted: event }) });
		upsertMessage(s, message('400000000000000005', { author_id: ME, nonce: 'n2', content: null, encrypted: rest }));
		expect(s.history[GEN]?.items.map((m) => m.content)).toEqual(['secret']);
		// An edit (another ciphertext) is decrypted again.
		upsertMessage(s, message('400000000000000005', { author_id: ME, content: null, encrypted: { ...rest, ciphertext: 'REVG' } }));
		expect(s.history[GEN]?.items.map((m) => m.content)).toEqual([null]);
	});

	it('keeps pending messages after confirmed ones', () => {
		const s = readyState();
		s.history[GEN]?.items.push({ ...message('pending-x', { author_id: ME, nonce: 'x' }), pending: true });
		applyDispatch(s, 'message_create', { message: message('400000000000000004') });
		expect(s.history[GEN]?.items.map((m) => m.id)).toEqual(['400000000000000004', 'pending-x']);
	});

	it('keeps my reaction flags when a reader-neutral update (reactions without `me`) arrives', () => {
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000001') });
		applyDispatch(s, 'reaction_add', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		applyDispatch(s, 'message_update', { message: message('400000000000000001', { content: 'edited', pinned: true, reactions: [{ emoji: '👍', count: 1 }] as Message['reactions'] }) });
		const m = s.history[GEN]?.items[0];
		expect([m?.content, m?.pinned, m?.reactions]).toEqual(['edited', true, [{ emoji: '👍', count: 1, me: true }]]);
	});

	it('reads reactions of a message event without `me` as not mine', () => {
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000002', { reactions: [{ emoji: '🎉', count: 2 }] as Message['reactions'] }) });
		expect(s.history[GEN]?.items[0].reactions).toEqual([{ emoji: '🎉', count: 2, me: false }]);
	});

	it('applies my reaction at once and ignores its echo, while another tab of mine still counts it', async () => {
		const { applyMyReaction } = await import('../src/lib/chat/state.svelte');
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000001') });
		applyMyReaction(s, GEN, '400000000000000001', '👍', true);
		applyDispatch(s, 'reaction_add', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		expect(s.history[GEN]?.items[0].reactions).toEqual([{ emoji: '👍', count: 1, me: true }]);
		applyMyReaction(s, GEN, '400000000000000001', '👍', false);
		applyDispatch(s, 'reaction_remove', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		expect(s.history[GEN]?.items[0].reactions).toEqual([]);
		// Another tab (no local click) counts my echo.
		const other = readyState();
		applyDispatch(other, 'message_create', { message: message('400000000000000001') });
		applyDispatch(other, 'reaction_add', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		expect(other.history[GEN]?.items[0].reactions).toEqual([{ emoji: '👍', count: 1, me: true }]);
	});

	it('counts reactions', () => {
		const s = readyState();
		applyDispatch(s, 'message_create', { message: message('400000000000000001') });
		applyDispatch(s, 'reaction_add', { channel_id: GEN, message_id: '400000000000000001', user_id: BOB, emoji: '👍' });
		applyDispatch(s, 'reaction_add', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		expect(s.history[GEN]?.items[0].reactions).toEqual([{ emoji: '👍', count: 2, me: true }]);
		applyDispatch(s, 'reaction_remove', { channel_id: GEN, message_id: '400000000000000001', user_id: ME, emoji: '👍' });
		applyDispatch(s, 'reaction_remove', { channel_id: GEN, message_id: '400000000000000001', user_id: BOB, emoji: '👍' });
		expect(s.history[GEN]?.items[0].reactions).toEqual([]);
	});

	it('tracks presence and typing, which expires and stops when the typist sends', () => {
		const s = readyState();
		applyDispatch(s, 'presence_update', { user_id: BOB, status: 'dnd' });
		expect(s.presences[BOB]).toBe('dnd');
		applyDispatch(s, 'presence_update', { user_id: BOB, status: 'idle', custom_status: 'Out to lunch' });
		expect(s.customStatus[BOB]).toBe('Out to lunch');
		applyDispatch(s, 'presence_update', { user_id: BOB, status: 'invisible', custom_status: 'hidden' });
		expect(s.presences[BOB]).toBe('offline');
		expect(s.customStatus[BOB]).toBeUndefined();
		applyDispatch(s, 'typing_start', { channel_id: GEN, user_id: BOB, timestamp_ms: 1000, expires_at_ms: 11000 }, 1000);
		applyDispatch(s, 'typing_start', { channel_id: GEN, user_id: ME, timestamp_ms: 1000, expires_at_ms: 11000 }, 1000);
		expect(typingIn(s, GEN, 5000)).toEqual([BOB]);
		expect(typingIn(s, GEN, 11000)).toEqual([]);
		applyDispatch(s, 'typing_start', { channel_id: GEN, user_id: BOB, timestamp_ms: 1000, expires_at_ms: 11000 }, 2000);
		applyDispatch(s, 'message_create', { message: message('400000000000000001') }, 3000);
		expect(typingIn(s, GEN, 3000)).toEqual([]);
	});

	it('counts unread messages by others in channels not on screen, mentions apart, cleared by a read elsewhere', () => {
		const s = readyState();
		const OTHER = '300000000000000002';
		s.viewing = GEN;
		applyDispatch(s, 'message_create', { message: message('400000000000000001') });
		applyDispatch(s, 'message_create', { message: message('400000000000000002', { channel_id: OTHER }) });
		applyDispatch(s, 'message_create', { message: message('400000000000000003', { channel_id: OTHER, mentions: [ME] }) });
		applyDispatch(s, 'message_create', { message: message('400000000000000004', { channel_id: OTHER, author_id: ME }) });
		expect(s.unread[GEN]).toBeUndefined();
		expect(s.unread[OTHER]).toEqual({ count: 2, mentions: 1 });
		applyDispatch(s, 'read_state_update', { channel_id: OTHER, last_read_id: '400000000000000003' });
		expect(s.unread[OTHER]).toBeUndefined();
	});

	it('tracks friends, requests and blocks from ready and relationship events', () => {
		const s = emptyChat();
		applyReady(s, {
			user: { id: ME, username: 'me' },
			servers: [],
			relationships: [{ user: { id: BOB, username: 'bob', display_name: null }, kind: 'incoming', since: null }, { user: { id: 5 }, kind: 'friend' }]
		});
		expect(Object.keys(s.relationships)).toEqual([BOB]);
		applyDispatch(s, 'relationship_update', { relationship: { user: { id: BOB, username: 'bob', display_name: 'Bob' }, kind: 'friend' } });
		expect(s.relationships[BOB]?.kind).toBe('friend');
		expect(nameOf(s, BOB)).toBe('Bob');
		applyDispatch(s, 'relationship_update', { relationship: { user: { id: BOB, username: 'bob' }, kind: 'none' } });
		expect(s.relationships[BOB]).toBeUndefined();
	});

	it('keeps a loaded member list current and names members', () => {
		const s = readyState();
		const member = (id: string, username: string, nickname: string | null = null) => ({
			server_id: SRV,
			user: { id, username, display_name: null },
			nickname,
			roles: [],
			joined_at: '2026-11-21T10:00:00Z'
		});
		applyDispatch(s, 'member_add', { server_id: SRV, member: member(BOB, 'bob') });
		expect(s.members[SRV]).toBeUndefined(); // not loaded: fetched when shown
		expect(nameOf(s, BOB)).toBe('bob');
		s.members[SRV] = [member(ME, 'me')];
		applyDispatch(s, 'member_add', { server_id: SRV, member: member(BOB, 'bob') });
		applyDispatch(s, 'member_update', { server_id: SRV, member: member(BOB, 'bob', 'Bobby') });
		expect(nameOf(s, BOB, SRV)).toBe('Bobby');
		applyDispatch(s, 'member_remove', { server_id: SRV, user_id: BOB });
		expect(s.members[SRV]?.map((m) => m.user.username)).toEqual(['me']);
		expect(nameOf(s, null)).toBe('Deleted user');
	});

	it('groups channels under their categories by position', () => {
		const cat = channel('310', { kind: 'category', name: 'Voice', position: 1 });
		const groups = groupChannels([
			channel('302', { name: 'b', position: 2 }),
			channel('303', { name: 'talk', kind: 'voice', parent_id: '310' }),
			cat,
			channel('301', { name: 'a', position: 1 }),
			channel('304', { name: 'orphan', parent_id: '999' })
		]);
		expect(groups.map((g) => [g.category?.name ?? null, g.channels.map((c) => c.name)])).toEqual([
			[null, ['orphan', 'a', 'b']],
			['Voice', ['talk']]
		]);
	});

	it('orders snowflake ids numerically, not as text', () => {
		expect(compareIds('99', '100')).toBeLessThan(0);
		expect(compareIds('117657079585439744', '117657079484776448')).toBeGreaterThan(0);
		expect(compareIds('5', '5')).toBe(0);
	});
});

describe('message rendering', () => {
	it('renders markup in a message as text, never as HTML', () => {
		const payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>';
		const { body } = render(MessageItem, { props: { message: message('1', { content: payload }), author: '<b>bob</b>', mine: false } });
		expect(body).not.toContain('<img');
		expect(body).not.toContain('<script');
		expect(body).not.toContain('<b>bob');
		expect(body).toContain('&lt;img src=x onerror="alert(1)">&lt;script>alert(2)&lt;/script>');
		expect(body).toContain('&lt;b>bob&lt;/b>');
	});

	it('offers edit and delete on my settled messages only', () => {
		const mine = render(MessageItem, { props: { message: message('1', { author_id: ME }), author: 'me', mine: true } }).body;
		expect(mine).toContain('aria-label="Edit message"');
		expect(mine).toContain('aria-label="Delete message"');
		const theirs = render(MessageItem, { props: { message: message('1'), author: 'bob', mine: false } }).body;
		expect(theirs).not.toContain('Edit message');
		const pending = render(MessageItem, { props: { message: { ...message('p', { author_id: ME }), pending: true }, author: 'me', mine: true } }).body;
		expect(pending).not.toContain('Edit message');
		const failed = render(MessageItem, { props: { message: { ...message('p', { author_id: ME }), failed: 'offline' }, author: 'me', mine: true } }).body;
		expect(failed).toContain('Not sent: offline');
		expect(failed).toContain('Retry');
	});

	it('quotes the message replied to, or says it is not loaded, and highlights mentions of me', () => {
		const quoted = render(MessageItem, {
			props: { message: message('2', { reply_to: '1' }), author: 'bob', mine: false, replied: { author: 'me', content: '<i>original</i>' }, mentioned: true }
		}).body;
		expect(quoted).toContain('data-testid="reply-quote"');
		expect(quoted).toContain('&lt;i>original&lt;/i>');
		expect(quoted).toMatch(/class="msg[^"]*mentioned/);
		const missing = render(MessageItem, { props: { message: message('2', { reply_to: '1' }), author: 'bob', mine: false, replied: null } }).body;
		expect(missing).toContain('Original message not loaded or deleted');
	});

	it('shows an encrypted message being decrypted, undecryptable with its reason and a retry, or decrypted with a lock', () => {
		const enc = { algorithm: 'copains.megolm.v1', sender_device_id: 'D', session_id: 'S', ciphertext: 'AAAA' };
		const body = render(MessageItem, { props: { message: message('1', { content: null, encrypted: enc }), author: 'bob', mine: false } }).body;
		expect(body).toContain('Decrypting');
		expect(body).not.toContain('AAAA');
		const utd = render(MessageItem, {
			props: { message: { ...message('1', { content: null, encrypted: enc }), undecryptable: 'no key here' }, author: 'bob', mine: false, onrequestkey: async () => {} }
		}).body;
		expect(utd).toContain('Unable to decrypt this message.');
		expect(utd).toContain('no key here');
		expect(utd).toContain('data-testid="request-key"');
		const ok = render(MessageItem, { props: { message: message('1', { content: 'secret text', encrypted: enc }), author: 'bob', mine: false } }).body;
		expect(ok).toContain('data-testid="e2ee-lock"');
		expect(ok).toContain('secret text');
	});
});

describe('invite codes', () => {
	it('accepts links and bare codes, refuses anything else', () => {
		expect(parseInviteCode('https://chat.example/invite/AbC_12-x')).toBe('AbC_12-x');
		expect(parseInviteCode('  http://127.0.0.1:8080/invite/QF37nRnciwLr/  ')).toBe('QF37nRnciwLr');
		expect(parseInviteCode('QF37nRnciwLr')).toBe('QF37nRnciwLr');
		expect(parseInviteCode('')).toBeNull();
		expect(parseInviteCode('../../admin')).toBeNull();
		expect(parseInviteCode('a b')).toBeNull();
		expect(inviteLink('https://chat.example', 'AbC')).toBe('https://chat.example/invite/AbC');
	});
});

describe('optimistic send', () => {
	afterEach(() => {
		vi.unstubAllGlobals();
		vi.resetModules();
	});

	it('shows the message at once, then the server copy; a failure keeps it with a retry that reuses the nonce', async () => {
		const posts: { nonce: string; content: string }[] = [];
		let answer: (r: Response) => void = () => {};
		vi.stubGlobal('fetch', async (input: string, init: RequestInit) => {
			const url = String(input);
			if (url.endsWith('/auth/refresh')) return new Response(JSON.stringify({ access_token: 't', refresh_token: null }), { status: 200 });
			if (url.endsWith(`/channels/${GEN}/messages`) && init.method === 'POST') {
				posts.push(JSON.parse(String(init.body)));
				return new Promise<Response>((r) => (answer = r));
			}
			return new Response('{}', { status: 404 });
		});
		vi.resetModules();
		const { chat } = await import('../src/lib/chat/state.svelte');
		const { sendMessage, retrySend } = await import('../src/lib/chat/actions');
		chat.meId = ME;
		chat.history[GEN] = { items: [], hasMore: false, loading: false, error: null, loaded: true };

		const sent = sendMessage(GEN, 'hello', 'nonce-1');
		await vi.waitFor(() => expect(posts).toHaveLength(1));
		expect(chat.history[GEN]?.items.map((m) => [m.content, m.pending])).toEqual([['hello', true]]);
		expect(posts[0]).toEqual({ content: 'hello', nonce: 'nonce-1' });
		answer(new Response(JSON.stringify(message('400000000000000001', { author_id: ME, nonce: 'nonce-1', content: 'hello' })), { status: 201 }));
		await sent;
		expect(chat.history[GEN]?.items.map((m) => [m.id, m.pending ?? false])).toEqual([['400000000000000001', false]]);

		const failing = sendMessage(GEN, 'second', 'nonce-2');
		await vi.waitFor(() => expect(posts).toHaveLength(2));
		answer(new Response(JSON.stringify({ code: 'slowmode', message: 'Slow down.' }), { status: 429 }));
		await failing;
		const failed = chat.history[GEN]?.items[1];
		expect(failed?.failed).toMatch(/Too many attempts/);
		const retried = retrySend(failed as ChatMessage);
		await vi.waitFor(() => expect(posts).toHaveLength(3));
		expect(posts[2].nonce).toBe('nonce-2');
		answer(new Response(JSON.stringify(message('400000000000000002', { author_id: ME, nonce: 'nonce-2', content: 'second' })), { status: 201 }));
		await retried;
		expect(chat.history[GEN]?.items.map((m) => m.id)).toEqual(['400000000000000001', '400000000000000002']);
	});
});

describe('mentions', () => {
	it('splits text and mentions, leaving unknown ids and markup as text', async () => {
		const { segments } = await import('../src/lib/chat/mentions');
		const users: Record<string, string> = { '12': 'bob' };
		const seg = segments('hi <@12> and <@!99>, <@&7> @everyone <b>x</b>', (id) => users[id] ?? null, (id) => (id === '7' ? 'mods' : null));
		expect(seg).toEqual([
			{ kind: 'text', text: 'hi ' },
			{ kind: 'user', id: '12', text: '@bob' },
			{ kind: 'text', text: ' and ' },
			{ kind: 'text', text: '<@!99>' },
			{ kind: 'text', text: ', ' },
			{ kind: 'role', id: '7', text: '@mods' },
			{ kind: 'text', text: ' ' },
			{ kind: 'everyone', text: '@everyone' },
			{ kind: 'text', text: ' <b>x</b>' }
		]);
	});

	it('encodes @username of known users only, and finds the name being typed', async () => {
		const { encodeMentions, mentionQuery } = await import('../src/lib/chat/mentions');
		const users = [{ id: '12', username: 'bob' }, { id: '13', username: 'al.ice' }];
		expect(encodeMentions('hey @bob, and @Al.ice! not mail@bob or @carol', users)).toBe('hey <@12>, and <@13>! not mail@bob or @carol');
		expect(mentionQuery('hello @bo', 9)).toEqual({ start: 6, query: 'bo' });
		expect(mentionQuery('@', 1)).toEqual({ start: 0, query: '' });
		expect(mentionQuery('mail@bo', 7)).toBeNull();
		expect(mentionQuery('hello @bob there', 16)).toBeNull();
	});

	it('renders a mention as a pill of text', () => {
		const body = render(MessageItem, {
			props: { message: message('1', { content: 'hi <@12> <img src=x>' }), author: 'bob', mine: false, mentionName: (kind: string, id: string) => (kind === 'user' && id === '12' ? 'alice' : null) }
		}).body;
		expect(body).toMatch(/<span class="mention[^"]*"[^>]*>@alice<\/span>/);
		expect(body).toContain('&lt;img src=x>');
	});
});

describe('mention notifications', () => {
	it('fire only for mentions of me by others', async () => {
		const { mentions } = await import('../src/lib/notify.svelte');
		expect(mentions({ author_id: BOB, mentions: [ME] }, ME)).toBe(true);
		expect(mentions({ author_id: BOB, mentions: [], mention_everyone: true }, ME)).toBe(true);
		expect(mentions({ author_id: ME, mentions: [ME] }, ME)).toBe(false);
		expect(mentions({ author_id: BOB, mentions: ['7'] }, ME)).toBe(false);
		expect(mentions({ author_id: BOB, mentions: [ME] }, null)).toBe(false);
	});

	it('notify for mentions and DMs that are not on screen', async () => {
		const { shouldNotify } = await import('../src/lib/notify.svelte');
		const mention = { author_id: BOB, mentions: [ME], channel_id: GEN, server_id: SRV };
		const plain = { ...mention, mentions: [] };
		const dm = { author_id: BOB, mentions: [], channel_id: '900', server_id: null };
		const at = (viewing: string | null, away: boolean) => ({ meId: ME, viewing, away });
		expect(shouldNotify(mention, at('other', false))).toBe(true);
		expect(shouldNotify(mention, at(GEN, false))).toBe(false);
		expect(shouldNotify(mention, at(GEN, true))).toBe(true);
		expect(shouldNotify(plain, at('other', true))).toBe(false);
		expect(shouldNotify(dm, at(null, false))).toBe(true);
		expect(shouldNotify(dm, at('900', false))).toBe(false);
		expect(shouldNotify(dm, at('900', true))).toBe(true);
		expect(shouldNotify({ ...dm, author_id: ME }, at(null, true))).toBe(false);
		expect(shouldNotify(dm, { meId: null, viewing: null, away: true })).toBe(false);
	});
});
