import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import ReconnectingBanner from '../src/lib/components/ReconnectingBanner.svelte';
import { connection, setOnline, setReconnecting } from '../src/lib/connection.svelte';
import { describeUserAgent, initials } from '../src/lib/format';
import { safeNext } from '../src/lib/session.svelte';
import { emailProblem, passwordProblem } from '../src/lib/validate';

const text = (html: string) => html.replace(/<!--[^]*?-->/g, '').replace(/<[^>]+>/g, '').replace(/&nbsp;/g, ' ').replace(/\s+/g, ' ').trim();

describe('reconnecting banner', () => {
	it('is empty while online', () => {
		setOnline();
		expect(text(render(ReconnectingBanner).body)).toBe('');
	});

	it('says it is reconnecting, with the attempt and the next try', () => {
		setReconnecting(3, 5);
		expect(text(render(ReconnectingBanner).body)).toBe('Reconnecting… (attempt 3) — next try in 5 s');
		setOnline();
	});

	it('says when the browser is offline', () => {
		connection.status = 'offline';
		expect(text(render(ReconnectingBanner).body)).toMatch(/You are offline/);
		setOnline();
	});
});

describe('after-login redirect', () => {
	it('keeps local paths and refuses anything that leaves the site', () => {
		expect(safeNext('/settings')).toBe('/settings');
		expect(safeNext('/settings?tab=1')).toBe('/settings?tab=1');
		expect(safeNext(null)).toBe('/');
		expect(safeNext('https://evil.example/')).toBe('/');
		expect(safeNext('//evil.example/')).toBe('/');
		expect(safeNext('/\\evil.example/')).toBe('/');
		expect(safeNext('javascript:alert(1)')).toBe('/');
	});
});

describe('form checks', () => {
	it('mirrors the server password length rule (8 to 128 characters)', () => {
		expect(passwordProblem('1234567')).not.toBeNull();
		expect(passwordProblem('12345678')).toBeNull();
		expect(passwordProblem('x'.repeat(128))).toBeNull();
		expect(passwordProblem('x'.repeat(129))).not.toBeNull();
		// Characters, not UTF-16 units: 8 emoji are 8 characters.
		expect(passwordProblem('🔒'.repeat(8))).toBeNull();
	});

	it('asks for a plausible email', () => {
		expect(emailProblem('')).not.toBeNull();
		expect(emailProblem('alice')).not.toBeNull();
		expect(emailProblem('alice@example.com')).toBeNull();
	});
});

describe('formatting', () => {
	it('describes common user agents', () => {
		expect(describeUserAgent('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36')).toBe('Chrome on Linux');
		expect(describeUserAgent('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0')).toBe('Firefox on Windows');
		expect(describeUserAgent('Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1')).toBe('Safari on iOS');
		expect(describeUserAgent('copains-cli/0.1')).toBe('copains-cli/0.1');
		expect(describeUserAgent(null)).toBe('Unknown device');
	});

	it('makes avatar initials', () => {
		expect(initials('Alice Martin')).toBe('AM');
		expect(initials('bob')).toBe('BO');
		expect(initials('')).toBe('?');
	});
});

describe('avatars and day headings', () => {
	it('gives a stable colour per id and names days', async () => {
		const { avatarColor, dayLabel } = await import('../src/lib/format');
		expect(avatarColor('123')).toBe(avatarColor('123'));
		expect(avatarColor(null)).toMatch(/^#[0-9a-f]{6}$/);
		const now = new Date(2026, 10, 21, 15, 0);
		expect(dayLabel(new Date(2026, 10, 21, 0, 5).toISOString(), now)).toBe('Today');
		expect(dayLabel(new Date(2026, 10, 20, 23, 59).toISOString(), now)).toBe('Yesterday');
		expect(dayLabel(new Date(2026, 9, 1).toISOString(), now)).not.toMatch(/Today|Yesterday/);
		expect(dayLabel('nope', now)).toBe('');
	});
});
