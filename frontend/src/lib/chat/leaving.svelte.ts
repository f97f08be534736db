/** The "you are leaving Copains" confirmation of masked links: the address a click asked to open. */
export const leaving = $state<{ href: string | null }>({ href: null });

/** A click on a masked link: ask first (the dialog shows the real address). */
export function confirmLeave(event: MouseEvent, href: string): void {
	event.preventDefault();
	leaving.href = href;
}

/** What the dialog shows of an address: the whole URL, with the host apart so it stands out. */
export function describeAddress(href: string): { host: string; full: string } {
	try {
		const u = new URL(href);
		return { host: u.host, full: u.href };
	} catch {
		return { host: '', full: href };
	}
}
