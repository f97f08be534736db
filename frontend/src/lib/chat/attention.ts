// What needs me, across every server and DM, for the tab title and the favicon badge (as Discord):
// mentions of me in servers and every unread DM message count; other unread messages only mark.

/** Unread counters of one channel (as kept in the chat model). */
export type Unread = { count: number; mentions: number } | undefined;

/** The badge number (mentions + unread DM messages) and whether anything at all is unread. */
export interface Attention {
	badge: number;
	unread: boolean;
}

/** Sums the unread counters; `dmIds` are the DM and group-DM channel ids (all their messages count). */
export function attention(unread: Record<string, Unread>, dmIds: Iterable<string>): Attention {
	const dms = new Set(dmIds);
	let badge = 0;
	let any = false;
	for (const [id, u] of Object.entries(unread)) {
		if (!u || u.count <= 0) continue;
		any = true;
		badge += dms.has(id) ? u.count : u.mentions;
	}
	return { badge, unread: any };
}

/** The tab title: "(3) #general · Copains" with a badge, "• #general · Copains" when only unread. */
export function tabTitle(base: string, a: Attention): string {
	if (a.badge > 0) return `(${a.badge > 99 ? '99+' : a.badge}) ${base}`;
	return a.unread ? `• ${base}` : base;
}

/** The favicon with a red badge (a number, or a dot when only unread); the plain icon otherwise. */
export function faviconHref(plain: string, a: Attention): string {
	if (a.badge === 0 && !a.unread) return plain;
	const mark =
		a.badge > 0
			? `<circle cx="23" cy="9" r="9" fill="#e5484d"/><text x="23" y="13" font-family="sans-serif" font-size="${a.badge > 9 ? 9 : 12}" font-weight="700" text-anchor="middle" fill="#fff">${a.badge > 99 ? '99+' : a.badge}</text>`
			: `<circle cx="26" cy="6" r="5" fill="#fff"/><circle cx="26" cy="6" r="3.5" fill="#5b5bd6"/>`;
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="9" fill="#5b5bd6"/><path d="M9 12a4 4 0 0 1 4-4h6a4 4 0 0 1 4 4v5a4 4 0 0 1-4 4h-5l-4 3v-3.3A4 4 0 0 1 9 17z" fill="#fff"/>${mark}</svg>`;
	return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

let plain: string | null = null;
/** The page's own favicon address, read once (the shell is mounted again on each route). */
export function plainFavicon(link: HTMLLinkElement): string {
	plain ??= link.getAttribute('href') ?? '/favicon.svg';
	return plain;
}
