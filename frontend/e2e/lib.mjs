// Helpers shared by the e2e tests: assertions, unique users, and the common auth steps.
import { randomBytes } from 'node:crypto';

/** Thrown by a test to report itself skipped (e.g. a needed command is not configured). */
export class Skip extends Error {}

/** Fails the test with `message` unless `cond` holds. */
export function assert(cond, message) {
	if (!cond) throw new Error(`assertion failed: ${message}`);
}

/** Waits until `fn()` returns a truthy value (polling), or fails with `message`. */
export async function eventually(fn, message, timeoutMs = 10000) {
	const end = Date.now() + timeoutMs;
	let last;
	while (Date.now() < end) {
		try {
			last = await fn();
			if (last) return last;
		} catch (e) {
			last = e;
		}
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error(`timed out: ${message} (last: ${last})`);
}

/** A fresh user with a unique username and email. */
export function newUser() {
	const id = randomBytes(5).toString('hex');
	return { username: `e2e_${id}`, email: `e2e_${id}@example.test`, password: `correct horse ${id}` };
}

/** Waits for the app shell of a signed-in user. */
export async function expectShell(page, user) {
	await page.getByTestId('shell').waitFor({ state: 'visible' });
	const shown = (await page.getByTestId('user-name').textContent())?.trim();
	if (user) assert(shown === user.username || shown === user.displayName, `user panel shows ${shown}, expected ${user.username}`);
	assert(new URL(page.url()).pathname === '/', `shell at ${page.url()}`);
}

/** Registers `user` through the UI (submitting with Enter) and waits for the shell. */
export async function register(page, user) {
	await page.goto('/register');
	await page.getByLabel('Username').fill(user.username);
	await page.getByLabel('Email').fill(user.email);
	await page.getByLabel('Password').fill(user.password);
	await page.getByLabel('Password').press('Enter');
	await expectShell(page, user);
}

/** Logs in through the UI with a username or email. */
export async function login(page, loginName, password) {
	if (new URL(page.url()).pathname !== '/login') await page.goto('/login');
	await page.getByLabel('Username or email').fill(loginName);
	await page.getByLabel('Password').fill(password);
	await page.getByRole('button', { name: 'Log in' }).click();
}

/** Logs out with the user panel's button and waits for the login page. */
export async function logout(page) {
	await page.getByRole('button', { name: 'Log out' }).first().click();
	await page.waitForURL((u) => u.pathname === '/login');
	await page.getByLabel('Username or email').waitFor({ state: 'visible' });
}

/** Creates a server through the rail's dialog and waits for its first channel to open. */
export async function createServer(page, name) {
	await page.getByRole('button', { name: 'Create a server' }).click();
	await page.getByLabel('Server name').fill(name);
	await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
	await page.waitForURL(/\/servers\/\d+\/\d+$/);
	await page.getByTestId('composer').waitFor({ state: 'visible' });
}

/** Creates an invite through the server menu and returns its link. */
export async function createInvite(page) {
	await page.getByTestId('server-menu-button').click();
	await page.getByRole('button', { name: 'Invite people' }).click();
	const input = page.getByTestId('invite-link');
	const link = await eventually(async () => {
		const v = await input.inputValue();
		return v.includes('/invite/') ? v : null;
	}, 'an invite link is shown');
	await page.getByTestId('invite-dialog').getByRole('button', { name: 'Done' }).click();
	return link;
}

/** Sends a message with Enter in the composer. */
export async function send(page, text) {
	await page.getByTestId('composer').fill(text);
	await page.getByTestId('composer').press('Enter');
}

/** An API session for `user` (a plain login, no cookie): `call(method, path, body)` → {status, body}. */
export async function apiAs(baseURL, user) {
	const r = await fetch(`${baseURL}/api/v1/auth/login`, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json' },
		body: JSON.stringify({ login: user.username, password: user.password })
	});
	assert(r.ok, `API login for ${user.username}: ${r.status}`);
	const { access_token: token } = await r.json();
	const call = async (method, path, body) => {
		const res = await fetch(`${baseURL}/api/v1${path}`, {
			method,
			headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
			body: body === undefined ? undefined : JSON.stringify(body)
		});
		const text = await res.text();
		return { status: res.status, body: text ? JSON.parse(text) : null };
	};
	const me = (await call('GET', '/users/@me')).body;
	return { call, id: me.id };
}
