import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import { parseInline, parseMarkdown, safeHref } from '../src/lib/chat/markdown';
import MessageItem from '../src/lib/components/chat/MessageItem.svelte';

describe('safe markdown', () => {
	it('parses bold, italic, strike, code and links', () => {
		expect(parseInline('a **b *c* d** ~~d~~ `e *f*` _g_ https://x.test/p?q=1.')).toEqual([
			{ kind: 'text', text: 'a ' },
			{ kind: 'bold', children: [{ kind: 'text', text: 'b ' }, { kind: 'italic', children: [{ kind: 'text', text: 'c' }] }, { kind: 'text', text: ' d' }] },
			{ kind: 'text', text: ' ' },
			{ kind: 'strike', children: [{ kind: 'text', text: 'd' }] },
			{ kind: 'text', text: ' ' },
			{ kind: 'code', text: 'e *f*' },
			{ kind: 'text', text: ' ' },
			{ kind: 'italic', children: [{ kind: 'text', text: 'g' }] },
			{ kind: 'text', text: ' ' },
			{ kind: 'link', href: 'https://x.test/p?q=1', text: 'https://x.test/p?q=1' },
			{ kind: 'text', text: '.' }
		]);
	});

	it('keeps snake_case and lone stars as text, and fenced code apart', () => {
		expect(parseInline('snake_case_name 2 * 3')).toEqual([{ kind: 'text', text: 'snake_case_name 2 * 3' }]);
		expect(parseMarkdown('before\n```js\nlet x = "<b>";\n```\nafter')).toEqual([
			{ kind: 'text', inlines: [{ kind: 'text', text: 'before\n' }] },
			{ kind: 'codeblock', text: 'let x = "<b>";' },
			{ kind: 'text', inlines: [{ kind: 'text', text: '\nafter' }] }
		]);
	});

	it('only makes links of http(s) URLs', () => {
		expect(safeHref('javascript:alert(1)')).toBeNull();
		expect(safeHref('data:text/html,<script>')).toBeNull();
		expect(parseInline('javascript:alert(1) [x](javascript:alert(1))').every((n) => n.kind === 'text')).toBe(true);
		expect(safeHref('https://ok.test/a')).toBe('https://ok.test/a');
	});

	it('renders formatting as elements and markup as text', () => {
		const content = '**bold** <img src=x onerror=alert(1)> `<script>alert(2)</script>` https://example.test/"onmouseover="x\n```\n<svg onload=alert(3)>\n```';
		const html = render(MessageItem, {
			props: { message: { id: '1', channel_id: 'c', author_id: 'u', content, edited_at: null, created_at: '2026-11-21T10:00:00Z' }, author: 'bob', mine: false }
		}).body;
		// Without Svelte's hydration comments and scoping classes.
		const body = html.replace(/<!--[^]*?-->/g, '').replace(/ class="svelte-[a-z0-9]+"/g, '');
		expect(body).toContain('<strong>bold</strong>');
		expect(body).not.toMatch(/<img|<script|<svg onload/); // (the tool icons are the only <svg>)
		expect(body).toContain('&lt;img src=x onerror=alert(1)>');
		expect(body).toMatch(/<code[^>]*>&lt;script>alert\(2\)&lt;\/script><\/code>/);
		expect(body).toMatch(/<pre[^>]*><code[^>]*>&lt;svg onload=alert\(3\)><\/code><\/pre>/);
		expect(body).toMatch(/<a href="https:\/\/example.test\/" [^>]*rel="noopener noreferrer nofollow"/);
	});
});
