/**
 * Mentions in plaintext messages. The server parses `<@user_id>` (`<@!id>`), `<@&role_id>`,
 * `@everyone` and `@here`; the composer lets people type `@username` and turns the names of
 * members into `<@id>` when sending. Rendering splits the text into plain parts and mention parts,
 * each shown as text (never HTML).
 */

/** One piece of a message's text. */
export type Segment =
	| { kind: 'text'; text: string }
	| { kind: 'user'; id: string; text: string }
	| { kind: 'role'; id: string; text: string }
	| { kind: 'everyone'; text: string };

const TOKEN = /<@!?(\d{1,20})>|<@&(\d{1,20})>|@everyone\b|@here\b/g;

/** Splits `content` into text and mentions; `userName`/`roleName` give the names to show. */
export function segments(content: string, userName: (id: string) => string | null, roleName: (id: string) => string | null): Segment[] {
	const out: Segment[] = [];
	let last = 0;
	for (const m of content.matchAll(TOKEN)) {
		const at = m.index ?? 0;
		if (at > last) out.push({ kind: 'text', text: content.slice(last, at) });
		if (m[1]) {
			const name = userName(m[1]);
			out.push(name === null ? { kind: 'text', text: m[0] } : { kind: 'user', id: m[1], text: `@${name}` });
		} else if (m[2]) {
			const name = roleName(m[2]);
			out.push(name === null ? { kind: 'text', text: m[0] } : { kind: 'role', id: m[2], text: `@${name}` });
		} else {
			out.push({ kind: 'everyone', text: m[0] });
		}
		last = at + m[0].length;
	}
	if (last < content.length) out.push({ kind: 'text', text: content.slice(last) });
	return out;
}

/** Turns `@username` of known users into `<@id>` (usernames are matched exactly, case-insensitively). */
export function encodeMentions(text: string, users: { id: string; username: string }[]): string {
	if (!text.includes('@') || users.length === 0) return text;
	const byName = new Map(users.map((u) => [u.username.toLowerCase(), u.id]));
	return text.replace(/(^|[\s(])@([A-Za-z0-9_.-]{1,32})(?=$|[\s,.!?;:)])/g, (all, pre: string, name: string) => {
		const id = byName.get(name.toLowerCase());
		return id ? `${pre}<@${id}>` : all;
	});
}

/** The partial `@name` being typed just before the caret, if any. */
export function mentionQuery(text: string, caret: number): { start: number; query: string } | null {
	const before = text.slice(0, caret);
	const m = /(^|\s)@([A-Za-z0-9_.-]{0,32})$/.exec(before);
	if (!m) return null;
	return { start: caret - m[2].length - 1, query: m[2] };
}
