/**
 * The slice of a channel's loaded history that is rendered: at most `size` messages, so the DOM
 * stays small however many messages are in memory (10,000 after a long scroll back). `end` is the
 * exclusive end index of the slice, or null when the slice follows the newest message.
 */

/** Rendered messages at most. */
export const WINDOW = 200;
/** Messages the slice moves by when the reader reaches one of its edges. */
export const STEP = 50;

/** The rendered range `[start, end)` for `len` loaded messages. */
export function windowRange(len: number, end: number | null, size: number = WINDOW): { start: number; end: number } {
	const e = end === null ? len : Math.max(0, Math.min(len, end));
	return { start: Math.max(0, e - size), end: e };
}

/** The new `end` after reaching the top edge: older messages come in, the newest rendered ones leave. */
export function shiftUp(len: number, end: number | null, size: number = WINDOW, step: number = STEP): number | null {
	const { start, end: e } = windowRange(len, end, size);
	if (start === 0) return end;
	return Math.max(Math.min(size, len), e - step);
}

/** The new `end` after reaching the bottom edge; null again once the newest message is rendered. */
export function shiftDown(len: number, end: number | null, step: number = STEP): number | null {
	if (end === null) return null;
	const e = end + step;
	return e >= len ? null : e;
}

/** The new `end` after `added` older messages were put in front of the history while its top was shown. */
export function afterPrepend(len: number, added: number, size: number = WINDOW): number | null {
	if (added <= 0) return null;
	return len <= size ? null : Math.min(len, size);
}

/**
 * The index of message `id` in a loaded history (sorted by id, with pending or failed sends at the
 * end), or -1: a binary search, so looking up a replied-to message stays cheap with 10,000 loaded.
 */
export function indexById(items: readonly { id: string; pending?: boolean; failed?: unknown }[], id: string): number {
	let hi = items.length;
	while (hi > 0 && (items[hi - 1].pending || items[hi - 1].failed !== undefined)) hi--;
	let lo = 0;
	while (lo < hi) {
		const mid = (lo + hi) >> 1;
		const m = items[mid].id;
		const c = m.length !== id.length ? m.length - id.length : m < id ? -1 : m > id ? 1 : 0;
		if (c === 0) return mid;
		if (c < 0) lo = mid + 1;
		else hi = mid;
	}
	return -1;
}
