/** Names for people in voice: server nickname, known users, friends, then DM recipients. */
import { chat, nameOf } from '$lib/chat/state.svelte';

/** DM recipients' names from `ready` (a DM call may ring from someone in no shared server). */
const dmNames: Record<string, string> = {};

/** Remembers the recipients of DM channels (from `ready`'s `dm_channels`). */
export function rememberDmNames(dms: unknown): void {
	if (!Array.isArray(dms)) return;
	for (const dm of dms) {
		for (const u of (dm as { recipients?: { id?: unknown; username?: unknown; display_name?: unknown }[] })?.recipients ?? []) {
			if (typeof u?.id === 'string' && typeof u.username === 'string') dmNames[u.id] = (typeof u.display_name === 'string' && u.display_name.trim()) || u.username;
		}
	}
}

/** The name to show for a user in voice. */
export function voiceName(userId: string | null, serverId?: string | null): string {
	if (!userId) return 'Someone';
	const n = nameOf(chat, userId, serverId ?? undefined);
	if (n !== 'Unknown user') return n;
	const r = chat.relationships[userId]?.user;
	if (r) return r.display_name?.trim() || r.username;
	return dmNames[userId] ?? 'Someone';
}
