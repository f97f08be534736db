/** Server-level permissions as docs/permissions.md defines them (channel overwrites are not applied here). */
import type { Overwrite, Role } from '$lib/api';

/** Permission bits used by the web app. */
export const Perm = {
	VIEW_CHANNEL: 1,
	READ_HISTORY: 4,
	MANAGE_MESSAGES: 8,
	MANAGE_CHANNELS: 16,
	MANAGE_ROLES: 32,
	MANAGE_SERVER: 64,
	CREATE_INVITE: 128,
	KICK_MEMBERS: 256,
	BAN_MEMBERS: 512,
	MODERATE_MEMBERS: 1024,
	CHANGE_NICKNAME: 1048576,
	MANAGE_NICKNAMES: 2097152,
	VIEW_AUDIT_LOG: 524288,
	ADMINISTRATOR: 4194304
} as const;

/** Every bit (what the owner and administrators have). */
const ALL = 2 ** 23 - 1;

/**
 * My server-level permissions: everything for the owner or an administrator, else the union of
 * `@everyone` (the role whose id is the server id) and my roles. Only used to show or hide
 * controls: the server decides, and its refusal is shown when it says no.
 */
export function serverPermissions(server: { id: string; owner_id: string; roles: Role[] }, meId: string | null, myRoles: string[]): number {
	if (meId !== null && meId === server.owner_id) return ALL;
	let bits = 0;
	for (const r of server.roles) {
		if (r.id === server.id || myRoles.includes(r.id)) bits |= Number(r.permissions) || 0;
	}
	return bits & Perm.ADMINISTRATOR ? ALL : bits;
}

/**
 * A member's permissions in a channel (docs/permissions.md's resolution order, timeouts aside):
 * base, then the `@everyone` overwrite, the member's roles' overwrites (denies then allows), the
 * member's own overwrite; without VIEW_CHANNEL nothing. The E2EE engine uses it to choose who gets
 * an encrypted channel's keys.
 */
export function channelPermissions(
	server: { id: string; owner_id: string; roles: Role[] },
	userId: string,
	roles: string[],
	overwrites: Overwrite[]
): number {
	const base = serverPermissions(server, userId, roles);
	if (base === ALL) return ALL;
	let p = base;
	const apply = (deny: number, allow: number) => (p = (p & ~deny) | allow);
	const everyone = overwrites.find((o) => o.kind === 'role' && o.target_id === server.id);
	if (everyone) apply(Number(everyone.deny) || 0, Number(everyone.allow) || 0);
	let deny = 0;
	let allow = 0;
	for (const o of overwrites) {
		if (o.kind === 'role' && o.target_id !== server.id && roles.includes(o.target_id)) {
			deny |= Number(o.deny) || 0;
			allow |= Number(o.allow) || 0;
		}
	}
	apply(deny, allow);
	const own = overwrites.find((o) => o.kind === 'member' && o.target_id === userId);
	if (own) apply(Number(own.deny) || 0, Number(own.allow) || 0);
	return p & 1 ? p : 0;
}

/** Whether `bits` include `perm`. */
export function has(bits: number, perm: number): boolean {
	return (bits & perm) === perm;
}

/** Every permission with its name and what it allows (docs/permissions.md), for the roles editor. */
export const PERMISSIONS: { bit: number; name: string; label: string }[] = [
	{ bit: 1, name: 'VIEW_CHANNEL', label: 'See channels' },
	{ bit: 2, name: 'SEND_MESSAGES', label: 'Send messages' },
	{ bit: 4, name: 'READ_HISTORY', label: 'Read message history' },
	{ bit: 8, name: 'MANAGE_MESSAGES', label: "Delete and pin others' messages" },
	{ bit: 16, name: 'MANAGE_CHANNELS', label: 'Manage channels' },
	{ bit: 32, name: 'MANAGE_ROLES', label: 'Manage and assign roles' },
	{ bit: 64, name: 'MANAGE_SERVER', label: 'Manage the server' },
	{ bit: 128, name: 'CREATE_INVITE', label: 'Create invites' },
	{ bit: 256, name: 'KICK_MEMBERS', label: 'Kick members' },
	{ bit: 512, name: 'BAN_MEMBERS', label: 'Ban members' },
	{ bit: 1024, name: 'MODERATE_MEMBERS', label: 'Time members out' },
	{ bit: 2048, name: 'MENTION_EVERYONE', label: 'Mention @everyone' },
	{ bit: 4096, name: 'ADD_REACTIONS', label: 'Add reactions' },
	{ bit: 8192, name: 'ATTACH_FILES', label: 'Attach files' },
	{ bit: 16384, name: 'CONNECT', label: 'Join voice channels' },
	{ bit: 32768, name: 'SPEAK', label: 'Speak in voice' },
	{ bit: 65536, name: 'VIDEO', label: 'Camera and screen share' },
	{ bit: 131072, name: 'MUTE_MEMBERS', label: 'Mute others in voice' },
	{ bit: 262144, name: 'MOVE_MEMBERS', label: 'Move others between voice channels' },
	{ bit: 524288, name: 'VIEW_AUDIT_LOG', label: 'Read the audit log' },
	{ bit: 1048576, name: 'CHANGE_NICKNAME', label: 'Change own nickname' },
	{ bit: 2097152, name: 'MANAGE_NICKNAMES', label: "Change others' nicknames" },
	{ bit: 4194304, name: 'ADMINISTRATOR', label: 'Administrator (everything)' }
];

/** The permissions a channel overwrite may set (the ✓ column of docs/permissions.md). */
export const CHANNEL_PERMISSIONS = PERMISSIONS.filter((p) =>
	[1, 2, 4, 8, 16, 128, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144].includes(p.bit)
);
