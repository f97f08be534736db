/**
 * The message length limit, as the server counts it: Unicode scalar values (JS code points, not
 * UTF-16 units) of the text sent, i.e. after mentions are encoded as `<@id>`. The composer shows a
 * counter as the limit nears and refuses to send over it — nothing is ever cut silently.
 */

/** The server's limit (`MAX_CONTENT_CHARS` in api/src/messaging/mod.rs). */
export const MAX_MESSAGE_CHARS = 4000;

/** The counter appears once this few characters are left. */
export const COUNTER_FROM = 500;

/** Characters of `text` as the server counts them. */
export function messageLength(text: string): number {
	let n = 0;
	for (const _ of text) n++;
	return n;
}

/** What the composer shows for a message of `length` characters. */
export function counter(length: number, max = MAX_MESSAGE_CHARS): { show: boolean; left: number; over: boolean; label: string } {
	const left = max - length;
	const over = left < 0;
	const label = over ? `${(-left).toLocaleString('en')} over the limit` : `${left.toLocaleString('en')} left`;
	return { show: left <= COUNTER_FROM, left, over, label };
}

/** The sentence shown when a message over the limit is refused. */
export function tooLongMessage(length: number, max = MAX_MESSAGE_CHARS): string {
	return `Your message is ${length.toLocaleString('en')} characters long; the limit is ${max.toLocaleString('en')}. Shorten it by ${(length - max).toLocaleString('en')}, or send it as a text file.`;
}
