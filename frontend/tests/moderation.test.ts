import { describe, expect, it } from 'vitest';
import { DELETE_WINDOWS, formatUntil, noticeText, noticeTitle, toNotice } from '../src/lib/chat/moderation';
import { applyDispatch, applyReady, emptyChat } from '../src/lib/chat/state.svelte';

const base = { server_id: '7', server_name: 'Club', reason: null, timeout_until: null };

describe('moderation notices', () => {
	it('say what happened, where and why', () => {
		expect(noticeText({ ...base, action: 'ban', reason: 'raiding' })).toBe('You were banned from Club: raiding');
		expect(noticeText({ ...base, action: 'kick' })).toBe('You were kicked from Club.');
		const now = new Date(2026, 11, 7, 13, 0);
		const until = new Date(2026, 11, 7, 14, 5).toISOString();
		expect(noticeTitle({ ...base, action: 'timeout', timeout_until: until }, now, 'en-GB')).toBe('You were timed out in Club until 14:05');
		expect(noticeText({ ...base, action: 'timeout', timeout_until: until, reason: 'cool off' }, now, 'en-GB')).toBe(
			'You were timed out in Club until 14:05: cool off'
		);
	});

	it('name the day when a timeout ends another day, and survive a bad date', () => {
		const now = new Date(2026, 11, 7, 13, 0);
		expect(formatUntil(new Date(2026, 11, 9, 9, 30).toISOString(), now, 'en-GB')).toBe('9 Dec, 09:30');
		expect(formatUntil('not a date', now)).toBe('later');
	});

	it('read only well-formed payloads', () => {
		expect(toNotice({ ...base, action: 'ban', reason: '  spam  ' })?.reason).toBe('spam');
		expect(toNotice({ ...base, action: 'ban', reason: '   ' })?.reason).toBeNull();
		expect(toNotice({ ...base, action: 'explode' })).toBeNull();
		expect(toNotice({ server_id: 7, server_name: 'Club', action: 'kick' })).toBeNull();
		expect(toNotice(null)).toBeNull();
	});

	it('are kept by server, across a ready, and cleared when I am back in', () => {
		const s = emptyChat();
		applyDispatch(s, 'moderation_notice', { ...base, action: 'kick', reason: 'spam' });
		expect(s.moderation['7']?.reason).toBe('spam');
		applyReady(s, { user: { id: '1', username: 'me' }, servers: [] });
		expect(s.moderation['7']?.action).toBe('kick');
		applyDispatch(s, 'server_create', { server: { id: '7', name: 'Club', owner_id: '1' } });
		expect(s.moderation['7']).toBeUndefined();
		applyDispatch(s, 'moderation_notice', { ...base, action: 'bogus' });
		expect(s.moderation['7']).toBeUndefined();
	});

	it('offer the delete windows Discord offers', () => {
		expect(DELETE_WINDOWS.map((w) => w.secs)).toEqual([0, 3600, 86400, 604800]);
	});
});
