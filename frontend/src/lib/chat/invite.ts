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
