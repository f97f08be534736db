/**
 * What a kicked, banned or timed-out member is told (the gateway's `moderation_notice`, sent to
 * them alone), and the choices a moderator has when banning.
 */

/** What a moderator did. */
export type ModerationAction = 'kick' | 'ban' | 'timeout';

/** A `moderation_notice` as the app keeps it. */
export interface ModerationNotice {
	server_id: string;
	server_name: string;
	action: ModerationAction;
	/** The moderator's reason, if they gave one. */
	reason: string | null;
	/** A timeout's end (ISO 8601). */
	timeout_until: string | null;
	/** Closed by the user (the banner is gone; the server page still explains). */
	dismissed?: boolean;
}

/** "Delete messages" choices of the ban form (seconds), as Discord offers them. */
export const DELETE_WINDOWS: readonly { secs: number; label: string }[] = [
	{ secs: 0, label: 'Don’t delete any' },
	{ secs: 3600, label: 'Previous hour' },
	{ secs: 86400, label: 'Previous 24 hours' },
	{ secs: 604800, label: 'Previous 7 days' }
];

const MAX_REASON = 512;

/** Reads a `moderation_notice` payload; null when it is not one. */
export function toNotice(raw: unknown): ModerationNotice | null {
	if (!raw || typeof raw !== 'object') return null;
	const d = raw as Record<string, unknown>;
	if (typeof d.server_id !== 'string' || typeof d.server_name !== 'string') return null;
	if (d.action !== 'kick' && d.action !== 'ban' && d.action !== 'timeout') return null;
	return {
		server_id: d.server_id,
		server_name: d.server_name,
		action: d.action,
		reason: typeof d.reason === 'string' && d.reason.trim() ? d.reason.trim().slice(0, MAX_REASON) : null,
		timeout_until: typeof d.timeout_until === 'string' ? d.timeout_until : null
	};
}

/** "14:05" today, "12 Dec, 14:05" another day (the viewer's locale). */
export function formatUntil(iso: string, now: Date = new Date(), locale?: string): string {
	const t = new Date(iso);
	if (Number.isNaN(t.getTime())) return 'later';
	const time = t.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
	if (t.toDateString() === now.toDateString()) return time;
	return `${t.toLocaleDateString(locale, { day: 'numeric', month: 'short' })}, ${time}`;
}

/** "You were banned from Club" (kicked from / timed out in … until …). */
export function noticeTitle(n: ModerationNotice, now: Date = new Date(), locale?: string): string {
	if (n.action === 'ban') return `You were banned from ${n.server_name}`;
	if (n.action === 'kick') return `You were kicked from ${n.server_name}`;
	return `You were timed out in ${n.server_name} until ${n.timeout_until ? formatUntil(n.timeout_until, now, locale) : 'later'}`;
}

/** The whole sentence: the title, then the reason when there is one ("…: spam links"). */
export function noticeText(n: ModerationNotice, now: Date = new Date(), locale?: string): string {
	const title = noticeTitle(n, now, locale);
	return n.reason ? `${title}: ${n.reason}` : `${title}.`;
}
