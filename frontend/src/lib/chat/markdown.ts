/**
 * A small, safe subset of Markdown for messages: **bold**, *italic* / _italic_, ~~strike~~,
 * `code`, ``` code blocks ```, http(s) links and masked links `[text](https://…)`. It produces a tree of typed nodes that the
 * components render as elements with text children — never an HTML string — so no markup in a
 * message can become HTML. Only `http:` and `https:` URLs become links; a masked link to
 * anything else (`javascript:`, `data:`…) stays as the text it was typed as. A masked link's
 * label can say anything, so the app asks before following it and shows the real address.
 */

/** An inline piece of text. */
export type Inline =
	| { kind: 'text'; text: string }
	| { kind: 'code'; text: string }
	| { kind: 'link'; href: string; text: string; masked?: boolean }
	| { kind: 'bold' | 'italic' | 'strike'; children: Inline[] };

/** A block: a fenced code block, or a run of text with inline formatting. */
export type Block = { kind: 'codeblock'; text: string } | { kind: 'text'; inlines: Inline[] };

const MAX_DEPTH = 4;

/** Parses a message into blocks (fenced code blocks apart, everything else inline). */
export function parseMarkdown(content: string): Block[] {
	const blocks: Block[] = [];
	const fence = /```(?:[a-zA-Z0-9_+-]{0,20}\n)?([\s\S]*?)```/g;
	let last = 0;
	for (const m of content.matchAll(fence)) {
		const at = m.index ?? 0;
		if (at > last) blocks.push({ kind: 'text', inlines: parseInline(content.slice(last, at)) });
		blocks.push({ kind: 'codeblock', text: m[1].replace(/\n$/, '') });
		last = at + m[0].length;
	}
	if (last < content.length || blocks.length === 0) blocks.push({ kind: 'text', inlines: parseInline(content.slice(last)) });
	return blocks;
}

// Order matters: code spans and links first (their insides are not formatted).
const INLINE =
	/`([^`\n]+)`|\[([^[\]\n]{1,256})\]\((https?:\/\/[^\s<>()"'`]{1,2048})\)|(https?:\/\/[^\s<>()"'`]+[^\s<>()"'`.,;:!?])|\*\*([^\n]+?)\*\*|~~([^\n]+?)~~|\*([^\s*](?:[^\n*]*[^\s*])?)\*|(?<![A-Za-z0-9])_([^\s_](?:[^\n_]*[^\s_])?)_(?![A-Za-z0-9])/g;

/** Parses inline formatting. */
export function parseInline(text: string, depth = 0): Inline[] {
	if (depth > MAX_DEPTH) return text ? [{ kind: 'text', text }] : [];
	const out: Inline[] = [];
	let last = 0;
	for (const m of text.matchAll(INLINE)) {
		const at = m.index ?? 0;
		if (at > last) out.push({ kind: 'text', text: text.slice(last, at) });
		if (m[1] !== undefined) out.push({ kind: 'code', text: m[1] });
		else if (m[2] !== undefined) {
			const href = safeHref(m[3]);
			const label = m[2].trim();
			if (href && label) out.push({ kind: 'link', href, text: label, masked: true });
			else out.push({ kind: 'text', text: m[0] });
		} else if (m[4] !== undefined) out.push({ kind: 'link', href: safeHref(m[4]) ?? '', text: m[4] });
		else if (m[5] !== undefined) out.push({ kind: 'bold', children: parseInline(m[5], depth + 1) });
		else if (m[6] !== undefined) out.push({ kind: 'strike', children: parseInline(m[6], depth + 1) });
		else out.push({ kind: 'italic', children: parseInline(m[7] ?? m[8] ?? '', depth + 1) });
		last = at + m[0].length;
	}
	if (last < text.length) out.push({ kind: 'text', text: text.slice(last) });
	// A link whose URL did not survive parsing is shown as text.
	return out.map((n) => (n.kind === 'link' && !n.href ? { kind: 'text', text: n.text } : n));
}

/** The URL if it is an http(s) URL, normalised by the URL parser; null otherwise. */
export function safeHref(raw: string): string | null {
	try {
		const u = new URL(raw);
		return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
	} catch {
		return null;
	}
}
