/**
 * Desktop notifications for mentions of me and for direct messages, when the message is not on
 * screen (another channel, or the tab is hidden or its window unfocused). Off until the user turns them on in settings (which asks the browser's
 * permission); the choice is remembered locally — it is not a secret.
 */
import type { Message } from '$lib/api';

const KEY = 'copains.notifications';

/** Reactive notification settings. */
export const notifications = $state<{ enabled: boolean; permission: NotificationPermission | 'unsupported' }>({
	enabled: false,
	permission: 'default'
});

function supported(): boolean {
	return typeof window !== 'undefined' && 'Notification' in window;
}

/** Reads the saved choice and the browser's permission (on app start). */
export function initNotifications(): void {
	if (!supported()) {
		notifications.permission = 'unsupported';
		return;
	}
	notifications.permission = Notification.permission;
	notifications.enabled = localStorage.getItem(KEY) === 'on' && Notification.permission === 'granted';
}

/** Asks the browser's permission and turns notifications on when granted; returns the permission. */
export async function enableNotifications(): Promise<NotificationPermission | 'unsupported'> {
	if (!supported()) return 'unsupported';
	const p = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission();
	notifications.permission = p;
	notifications.enabled = p === 'granted';
	if (notifications.enabled) localStorage.setItem(KEY, 'on');
	return p;
}

/** Turns notifications off. */
export function disableNotifications(): void {
	notifications.enabled = false;
	localStorage.removeItem(KEY);
}

/** Whether `m` mentions `meId` (directly or through @everyone) and is by someone else. */
export function mentions(m: Pick<Message, 'author_id' | 'mentions' | 'mention_everyone'>, meId: string | null): boolean {
	return !!meId && m.author_id !== meId && (m.mention_everyone === true || (m.mentions?.includes(meId) ?? false));
}

/**
 * Whether a new message deserves a desktop notification: a mention of me in a server, or any
 * message in a DM (no server), by someone else, and not on screen — the channel is not open, or
 * the tab is hidden, or its window is not focused (`away`).
 */
export function shouldNotify(
	m: Pick<Message, 'author_id' | 'mentions' | 'mention_everyone' | 'channel_id' | 'server_id'>,
	ctx: { meId: string | null; viewing: string | null; away: boolean }
): boolean {
	if (!ctx.meId || !m.author_id || m.author_id === ctx.meId) return false;
	const dm = !m.server_id;
	if (!dm && !mentions(m, ctx.meId)) return false;
	return ctx.away || ctx.viewing !== m.channel_id;
}

/** The tab is out of sight: hidden, or its window does not have the focus. */
function away(): boolean {
	return document.hidden || !document.hasFocus();
}

/** Shows a notification for a new message that mentions me (or is a DM) and is not on screen. */
export function notifyMessage(
	m: Message,
	ctx: { meId: string | null; viewing: string | null; title: string; body: string; href: string; open?: (href: string) => void }
): boolean {
	if (!notifications.enabled || !supported() || Notification.permission !== 'granted') return false;
	if (!shouldNotify(m, { meId: ctx.meId, viewing: ctx.viewing, away: away() })) return false;
	const n = new Notification(ctx.title, { body: ctx.body.slice(0, 300), tag: m.id });
	// A click brings the tab forward and opens the channel (in-app navigation when given: no reload).
	n.onclick = () => {
		window.focus();
		n.close();
		if (ctx.open) ctx.open(ctx.href);
		else window.location.assign(ctx.href);
	};
	return true;
}
