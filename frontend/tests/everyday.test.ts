// Issue 19 UI logic: masked links, the message length counter, invite preview helpers, error sentences.
import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import { parseInline } from '../src/lib/chat/markdown';
import { counter, messageLength, MAX_MESSAGE_CHARS, tooLongMessage } from '../src/lib/chat/limit';
import { inviteCounts, inviteIconSrc } from '../src/lib/chat/invite';
import { describeAddress } from '../src/lib/chat/leaving.svelte';
import { ApiError, errorMessage } from '../src/lib/api';
import MessageItem from '../src/lib/components/chat/MessageItem.svelte';

describe('masked links', () => {
	it('makes [text](https://…) a link whose label is the text', () => {
		expect(parseInline('see [the docs](https://docs.test/a?b=1) now')).toEqual([
			{ kind: 'text', text: 'see ' },
			{ kind: 'link', href: 'https://docs.test/a?b=1', text: 'the docs', masked: true },
			{ kind: 'text', text: ' now' }
		]);
		expect(parseInline('[x](http://plain.test)')).toEqual([{ kind: 'link', href: 'http://plain.test/', text: 'x', masked: true }]);
	});

	it('keeps javascript:, data: and other schemes as the text typed', () => {
		for (const bad of ['[click](javascript:alert(1))', '[click](data:text/html,<script>alert(1)</script>)', '[click](vbscript:x)', '[click](JaVaScRiPt:alert(1))', '[ ](https://x.test)']) {
			const nodes = parseInline(bad);
			expect(nodes.every((n) => n.kind === 'text'), bad).toBe(true);
			expect(nodes.map((n) => (n.kind === 'text' ? n.text : '')).join('')).toBe(bad);
		}
	});

	it('renders a masked link with its real address in the title and no HTML from the label', () => {
		const content = '[<b>free</b> gift](https://evil.test/x)';
		const html = render(MessageItem, {
			props: { message: { id: '1', channel_id: 'c', author_id: 'u', content, edited_at: null, created_at: '2026-11-21T10:00:00Z' }, author: 'bob', mine: false }
		}).body;
		expect(html).toContain('href="https://evil.test/x"');
		expect(html).toContain('title="https://evil.test/x"');
		expect(html).toContain('&lt;b>free&lt;/b> gift');
		expect(html).not.toContain('<b>');
	});

	it('shows the host of an address apart', () => {
		expect(describeAddress('https://evil.test:8443/a')).toEqual({ host: 'evil.test:8443', full: 'https://evil.test:8443/a' });
	});
});

describe('message length', () => {
	it('counts code points as the server does', () => {
		expect(messageLength('abc')).toBe(3);
		expect(messageLength('😀😀')).toBe(2);
		expect('😀😀'.length).toBe(4);
	});

	it('shows a counter near the limit and flags a message over it', () => {
		expect(counter(10).show).toBe(false);
		expect(counter(MAX_MESSAGE_CHARS - 500)).toMatchObject({ show: true, left: 500, over: false, label: '500 left' });
		expect(counter(MAX_MESSAGE_CHARS)).toMatchObject({ show: true, left: 0, over: false });
		expect(counter(5000)).toMatchObject({ show: true, over: true, label: '1,000 over the limit' });
		expect(tooLongMessage(5000)).toBe('Your message is 5,000 characters long; the limit is 4,000. Shorten it by 1,000, or send it as a text file.');
	});
});

describe('invite preview', () => {
	it('lists online and member counts', () => {
		expect(inviteCounts({ member_count: 1 })).toEqual([{ kind: 'members', text: '1 member' }]);
		expect(inviteCounts({ member_count: 1200, online_count: 3 })).toEqual([
			{ kind: 'online', text: '3 online' },
			{ kind: 'members', text: '1,200 members' }
		]);
	});

	it('shows only icons the CSP allows', () => {
		expect(inviteIconSrc('/icons/a.png')).toBe('/icons/a.png');
		expect(inviteIconSrc('data:image/png;base64,AAAA')).toBe('data:image/png;base64,AAAA');
		expect(inviteIconSrc('https://elsewhere.test/a.png')).toBeNull();
		expect(inviteIconSrc('//elsewhere.test/a.png')).toBeNull();
		expect(inviteIconSrc('data:image/svg+xml;base64,AAAA')).toBeNull();
		expect(inviteIconSrc(null)).toBeNull();
	});
});

describe('DM refusals read as sentences', () => {
	it('maps the DM policy codes', () => {
		expect(errorMessage(new ApiError(403, 'dm_friends_only', 'this user accepts direct messages from friends only'))).toBe('This person accepts direct messages from friends only.');
		expect(errorMessage(new ApiError(403, 'dm_closed', 'x'))).toBe('This person does not accept direct messages.');
		expect(errorMessage(new ApiError(403, 'something_else', 'The server said so.'))).toBe('The server said so.');
	});
});
