// Issue 19 item 7: the unread count in the tab title and the favicon badge.
import { describe, expect, it } from 'vitest';
import { attention, faviconHref, tabTitle } from '../src/lib/chat/attention';

describe('attention', () => {
	it('counts mentions in servers and every unread DM message', () => {
		const a = attention({ general: { count: 5, mentions: 1 }, random: { count: 2, mentions: 0 }, dm1: { count: 3, mentions: 0 } }, ['dm1']);
		expect(a).toEqual({ badge: 4, unread: true });
	});
	it('marks unread without a number when nothing mentions me', () => {
		expect(attention({ general: { count: 2, mentions: 0 }, other: undefined }, [])).toEqual({ badge: 0, unread: true });
		expect(attention({ general: { count: 0, mentions: 0 } }, [])).toEqual({ badge: 0, unread: false });
	});
	it('titles the tab as Discord does', () => {
		expect(tabTitle('#general · Copains', { badge: 3, unread: true })).toBe('(3) #general · Copains');
		expect(tabTitle('#general · Copains', { badge: 250, unread: true })).toBe('(99+) #general · Copains');
		expect(tabTitle('#general · Copains', { badge: 0, unread: true })).toBe('• #general · Copains');
		expect(tabTitle('Home · Copains', { badge: 0, unread: false })).toBe('Home · Copains');
	});
	it('draws a badge on the favicon only when something is unread', () => {
		expect(faviconHref('/favicon.svg', { badge: 0, unread: false })).toBe('/favicon.svg');
		const badged = decodeURIComponent(faviconHref('/favicon.svg', { badge: 7, unread: true }));
		expect(badged).toMatch(/^data:image\/svg\+xml,<svg/);
		expect(badged).toContain('>7</text>');
		expect(decodeURIComponent(faviconHref('/favicon.svg', { badge: 0, unread: true }))).not.toContain('<text');
	});
});
