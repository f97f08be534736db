/** Small formatting helpers for the UI. */

/** A short, human description of a User-Agent string, e.g. "Chrome on Linux". */
export function describeUserAgent(ua: string | null | undefined): string {
	if (!ua) return 'Unknown device';
	const browser = /Edg\//.test(ua)
		? 'Edge'
		: /OPR\//.test(ua)
			? 'Opera'
			: /Firefox\//.test(ua)
				? 'Firefox'
				: /Chrom(e|ium)\//.test(ua)
					? 'Chrome'
					: /Safari\//.test(ua)
						? 'Safari'
						: null;
	const os = /Android/.test(ua)
		? 'Android'
		: /iPhone|iPad|iPod/.test(ua)
			? 'iOS'
			: /Windows/.test(ua)
				? 'Windows'
				: /Mac OS X|Macintosh/.test(ua)
					? 'macOS'
					: /CrOS/.test(ua)
						? 'ChromeOS'
						: /Linux/.test(ua)
							? 'Linux'
							: null;
	if (browser && os) return `${browser} on ${os}`;
	if (browser || os) return (browser ?? os) as string;
	return ua.length > 60 ? `${ua.slice(0, 57)}…` : ua;
}

/** A date and time in the user's locale, or "—" when missing or invalid. */
export function formatDateTime(value: string | null | undefined): string {
	if (!value) return '—';
	const d = new Date(value);
	if (Number.isNaN(d.getTime())) return '—';
	return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** One or two initials for an avatar. */
export function initials(name: string): string {
	const parts = name.trim().split(/[\s._-]+/).filter(Boolean);
	const letters = parts.length > 1 ? [...parts[0]][0] + [...parts[1]][0] : [...(parts[0] ?? '?')].slice(0, 2).join('');
	return letters.toUpperCase();
}

/** A stable avatar colour for an id (one of a few that read well with white text in both themes). */
export function avatarColor(id: string | null | undefined): string {
	const palette = ['#5865f2', '#3ba55d', '#c27c0e', '#ed4245', '#9b59b6', '#1f8b4c', '#e67e22', '#206694'];
	let h = 0;
	for (const c of id ?? '') h = (h * 31 + c.charCodeAt(0)) >>> 0;
	return palette[h % palette.length];
}

/** The day heading for a message time ("Today", "Yesterday", or a date), or "" when invalid. */
export function dayLabel(iso: string, now: Date = new Date()): string {
	const d = new Date(iso);
	if (Number.isNaN(d.getTime())) return '';
	const start = (x: Date) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
	const days = Math.round((start(now) - start(d)) / 86400000);
	if (days === 0) return 'Today';
	if (days === 1) return 'Yesterday';
	return d.toLocaleDateString(undefined, { dateStyle: 'long' });
}
