import { describe, expect, it } from 'vitest';
import { has, Perm, serverPermissions } from '../src/lib/chat/permissions';
import type { Role } from '../src/lib/api';

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
