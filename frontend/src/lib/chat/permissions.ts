/** Server-level permissions as docs/permissions.md defines them (channel overwrites are not applied here). */
import type { Role } from '$lib/api';

/** Permission bits used by the web app. */
export const Perm = {
	MANAGE_MESSAGES: 8,
	MANAGE_CHANNELS: 16,
	MANAGE_ROLES: 32,
	MANAGE_SERVER: 64,
	CREATE_INVITE: 128,
	KICK_MEMBERS: 256,
	BAN_MEMBERS: 512,
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

/** Whether `bits` include `perm`. */
export function has(bits: number, perm: number): boolean {
	return (bits & perm) === perm;
}
