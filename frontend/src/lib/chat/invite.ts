/** Invite links and codes. */

/** The code in an invite link (`…/invite/CODE`) or a bare code; null when it is neither. */
export function parseInviteCode(input: string): string | null {
	const text = input.trim();
	if (!text) return null;
	const m = /\/invite\/([A-Za-z0-9_-]{1,64})\/?(?:[?#].*)?$/.exec(text);
	if (m) return m[1];
	return /^[A-Za-z0-9_-]{1,64}$/.test(text) ? text : null;
}

/** The shareable link of an invite code on this site. */
export function inviteLink(origin: string, code: string): string {
	return `${origin}/invite/${encodeURIComponent(code)}`;
}

/** The `src` to show an invite's server icon with: same-origin paths and data: images only (the
 *  CSP allows no other origin), else null (initials are shown). */
export function inviteIconSrc(icon: string | null | undefined): string | null {
	if (!icon) return null;
	if (icon.startsWith('/') && !icon.startsWith('//') && !icon.startsWith('/\\')) return icon;
	if (/^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+$/.test(icon)) return icon;
	return null;
}

/** "N members" and, when the server knows, "N online", for an invite preview. */
export function inviteCounts(p: { member_count: number; online_count?: number | null }): { kind: 'members' | 'online'; text: string }[] {
	const n = (x: number) => x.toLocaleString('en');
	const out: { kind: 'members' | 'online'; text: string }[] = [];
	if (typeof p.online_count === 'number') out.push({ kind: 'online', text: `${n(p.online_count)} online` });
	out.push({ kind: 'members', text: `${n(p.member_count)} ${p.member_count === 1 ? 'member' : 'members'}` });
	return out;
}
