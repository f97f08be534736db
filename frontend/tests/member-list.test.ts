import { describe, expect, it } from 'vitest';
import { MemberListSubscription } from '../src/lib/gateway/members';
import { applyDispatch, applyReady, emptyChat } from '../src/lib/chat/state.svelte';
import type { Member } from '../src/lib/api';

const ME = '100000000000000001';
const BOB = '100000000000000002';
const CAROL = '100000000000000003';
const DAN = '100000000000000004';
const BIG = '200000000000000001';
const OTHER = '200000000000000002';

/** Records the ops sent; `connected` says whether the gateway session is ready. */
function recorder() {
	const sent: [string, unknown][] = [];
	const state = { connected: true };
	const send = (op: string, fields: Record<string, unknown>) => {
		if (!state.connected) return false;
		sent.push([op, fields.server_id]);
		return true;
	};
	return { sent, state, sub: new MemberListSubscription(send) };
}

function member(id: string): Member {
	return { server_id: BIG, user: { id, username: `u${id.slice(-1)}`, display_name: null }, nickname: null, roles: [], joined_at: '2026-11-21T10:00:00Z' };
}

describe('member list subscription', () => {
	it('subscribes to the server on screen, moves with it and unsubscribes when leaving', () => {
		const { sent, sub } = recorder();
		sub.view(BIG);
		sub.view(BIG); // same server: nothing more
		sub.view(OTHER);
		sub.view(null);
		expect(sent).toEqual([
			['subscribe_members', BIG],
			['unsubscribe_members', BIG],
			['subscribe_members', OTHER],
			['unsubscribe_members', OTHER]
		]);
		expect(sub.subscribed).toBeNull();
	});

	it('subscribes again on a new session, not after a resume, and catches up on what it could not send', () => {
		const { sent, state, sub } = recorder();
		state.connected = false;
		sub.view(BIG); // not connected yet
		expect(sent).toEqual([]);
		state.connected = true;
		sub.onReady();
		expect(sent).toEqual([['subscribe_members', BIG]]);
		sub.onResumed(); // the session kept its subscription
		expect(sent.length).toBe(1);
		state.connected = false;
		sub.view(OTHER); // while reconnecting
		state.connected = true;
		sub.onResumed();
		expect(sent.slice(1)).toEqual([
			['unsubscribe_members', BIG],
			['subscribe_members', OTHER]
		]);
		sub.onReady(); // a new session has no subscription
		expect(sent.slice(3)).toEqual([['subscribe_members', OTHER]]);
		sub.reset();
		expect(sub.subscribed).toBeNull();
	});
});

describe('presence snapshot', () => {
	it('shows listed members online and, unless truncated, the other loaded members offline', () => {
		const s = emptyChat();
		applyReady(s, { user: { id: ME, username: 'me' }, servers: [{ id: BIG, name: 'big' }], presences: [{ user_id: DAN, status: 'online' }] });
		s.members[BIG] = [member(ME), member(BOB), member(CAROL), member(DAN)];
		expect(s.presences[BOB]).toBeUndefined();
		applyDispatch(s, 'presence_snapshot', {
			server_id: BIG,
			presences: [
				{ user_id: BOB, status: 'online', custom_status: null },
				{ user_id: CAROL, status: 'dnd', custom_status: 'focus' },
				null,
				{ status: 'online' }
			],
			truncated: false
		});
		expect(s.presences[BOB]).toBe('online');
		expect(s.presences[CAROL]).toBe('dnd');
		expect(s.customStatus[CAROL]).toBe('focus');
		expect(s.presences[DAN]).toBe('offline'); // stale: not in a complete snapshot
		expect(s.presences[ME]).toBe('online'); // my own is mine to know
		// Live updates after the snapshot.
		applyDispatch(s, 'presence_update', { user_id: BOB, status: 'idle' });
		expect(s.presences[BOB]).toBe('idle');
		// A truncated snapshot says nothing about who is missing.
		applyDispatch(s, 'presence_snapshot', { server_id: BIG, presences: [{ user_id: DAN, status: 'online' }], truncated: true });
		expect(s.presences[DAN]).toBe('online');
		expect(s.presences[BOB]).toBe('idle');
		// Garbage is ignored.
		applyDispatch(s, 'presence_snapshot', { server_id: BIG, presences: 'x' });
		applyDispatch(s, 'presence_snapshot', { presences: [] });
		expect(s.presences[DAN]).toBe('online');
	});
});
