import { describe, expect, it } from 'vitest';
import { channelPermissions, has, Perm, serverPermissions } from '../src/lib/chat/permissions';
import type { Overwrite, Role } from '../src/lib/api';

const role = (id: string, permissions: number | string): Role => ({ id, name: id, color: 0, position: 1, permissions, hoist: false, mentionable: false });

describe('server permissions', () => {
	const server = { id: 's', owner_id: 'owner', roles: [role('s', '1175687'), role('mods', Perm.KICK_MEMBERS | Perm.MANAGE_ROLES), role('admins', Perm.ADMINISTRATOR)] };

	it('gives the owner everything', () => {
		const p = serverPermissions(server, 'owner', []);
		expect(has(p, Perm.BAN_MEMBERS) && has(p, Perm.MANAGE_ROLES) && has(p, Perm.ADMINISTRATOR)).toBe(true);
	});

	it('unions @everyone (a string in the gateway payload) with my roles', () => {
		const plain = serverPermissions(server, 'u', []);
		expect(has(plain, Perm.CREATE_INVITE)).toBe(true);
		expect(has(plain, Perm.KICK_MEMBERS)).toBe(false);
		const mod = serverPermissions(server, 'u', ['mods']);
		expect(has(mod, Perm.KICK_MEMBERS) && has(mod, Perm.MANAGE_ROLES)).toBe(true);
		expect(has(mod, Perm.BAN_MEMBERS)).toBe(false);
	});

	it('treats ADMINISTRATOR as every permission and ignores roles I do not have', () => {
		expect(has(serverPermissions(server, 'u', ['admins']), Perm.BAN_MEMBERS)).toBe(true);
		expect(has(serverPermissions(server, 'u', ['nope']), Perm.KICK_MEMBERS)).toBe(false);
		expect(serverPermissions({ id: 's', owner_id: 'o', roles: [role('s', 'garbage')] }, 'u', [])).toBe(0);
	});
});

describe('channel permissions (who gets an encrypted channel’s keys)', () => {
	const server = { id: 's', owner_id: 'owner', roles: [role('s', '1175687'), role('vip', 0), role('muted', 0), role('admins', Perm.ADMINISTRATOR)] };
	const privateChannel: Overwrite[] = [
		{ target_id: 's', kind: 'role' as const, allow: 0, deny: Perm.VIEW_CHANNEL },
		{ target_id: 'vip', kind: 'role' as const, allow: Perm.VIEW_CHANNEL, deny: 0 }
	];

	it('follows @everyone, role and member overwrites in order; the owner and administrators see everything', () => {
		const view = (u: string, roles: string[], o: Overwrite[] = privateChannel) => has(channelPermissions(server, u, roles, o), Perm.VIEW_CHANNEL);
		expect(view('u', [], [])).toBe(true);
		expect(view('u', [])).toBe(false);
		expect(view('u', ['vip'])).toBe(true);
		expect(view('owner', [])).toBe(true);
		expect(view('u', ['admins'])).toBe(true);
		// One role's allow beats another role's deny; the member's own overwrite has the last word.
		const mixed: Overwrite[] = [...privateChannel, { target_id: 'muted', kind: 'role' as const, allow: 0, deny: Perm.VIEW_CHANNEL }];
		expect(view('u', ['vip', 'muted'], mixed)).toBe(true);
		expect(view('u', ['vip'], [...mixed, { target_id: 'u', kind: 'member' as const, allow: 0, deny: Perm.VIEW_CHANNEL }])).toBe(false);
		expect(view('u', [], [...privateChannel, { target_id: 'u', kind: 'member' as const, allow: Perm.VIEW_CHANNEL, deny: 0 }])).toBe(true);
		// Without VIEW_CHANNEL nothing is left.
		expect(channelPermissions(server, 'u', [], privateChannel)).toBe(0);
	});
});
