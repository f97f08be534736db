// Auth and shell flows against a real `copains serve` (issue 8, first part).
import { execSync } from 'node:child_process';
import { assert, eventually, expectShell, login, logout, newUser, register, Skip } from './lib.mjs';

export default [
	{
		name: 'register lands in the shell',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			for (const id of ['dms-empty', 'messages-empty', 'members-empty']) {
				await page.getByTestId(id).waitFor({ state: 'visible' });
			}
			// Direct messages are end-to-end encrypted: the empty DM list says so.
			const text = await page.getByTestId('dms-empty').textContent();
			assert(/end-to-end encrypted/i.test(text ?? ''), 'the home sidebar says DMs are end-to-end encrypted');
			await shot('desktop');
			// Dark theme: follows prefers-color-scheme, and the toggle overrides it.
			await page.emulateMedia({ colorScheme: 'dark' });
			const bg = () => page.evaluate(() => getComputedStyle(document.querySelector('main')).backgroundColor);
			const light = 'rgb(255, 255, 255)';
			await eventually(async () => (await bg()) !== light, 'dark background under prefers-color-scheme: dark');
			await shot('desktop-dark');
			await page.getByRole('button', { name: /^Theme: system/ }).click();
			await eventually(async () => (await bg()) === light, 'the toggle forces the light theme');
			assert((await page.evaluate(() => document.documentElement.dataset.theme)) === 'light', 'data-theme=light');
			await page.getByRole('button', { name: /^Theme: light/ }).click();
			await eventually(async () => (await bg()) !== light, 'then the dark theme');
			await page.emulateMedia({ colorScheme: 'light' });
			await page.getByRole('button', { name: /^Theme: dark/ }).click();
			await eventually(async () => (await bg()) === light, 'back to the system (light)');
			// Phone width: the side panels collapse into drawers opened from the header.
			await page.setViewportSize({ width: 390, height: 844 });
			const nav = page.locator('#nav-drawer');
			const members = page.locator('#members-drawer');
			const navHidden = async () => {
				const b = await nav.boundingBox();
				return b && b.x + b.width <= 0;
			};
			await eventually(navHidden, 'channel drawer off screen at phone width');
			await eventually(async () => (await members.boundingBox())?.x >= 390, 'member drawer off screen at phone width');
			assert(await page.getByTestId('messages-empty').isVisible(), 'the message pane fills the phone screen');
			await shot('phone');
			await page.getByRole('button', { name: 'Open channel list' }).click();
			await eventually(async () => (await nav.boundingBox())?.x === 0, 'channel drawer opens');
			await page.getByTestId('user-panel').waitFor({ state: 'visible' });
			await shot('phone-drawer');
			await page.keyboard.press('Escape');
			await eventually(navHidden, 'Escape closes the drawer');
			await page.getByRole('button', { name: 'Show member list' }).click();
			await eventually(async () => Math.round((await members.boundingBox())?.x + (await members.boundingBox())?.width) === 390, 'member drawer opens');
			await page.getByRole('button', { name: 'Close member list' }).click();
			await eventually(async () => (await members.boundingBox())?.x >= 390, 'member drawer closes');
		}
	},
	{
		name: 'the access token is not in web storage and the refresh cookie is HttpOnly; a reload keeps the session',
		async run({ page, context }) {
			const user = newUser();
			const registered = page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/register'));
			registered.catch(() => {}); // awaited below; if register() fails first, do not leave it unhandled
			await register(page, user);
			const res = await registered;
			assert(res.status() === 201, `register answered ${res.status()}`);
			const body = await res.json();
			assert(typeof body.access_token === 'string' && body.access_token.length > 0, 'register returns an access token');
			assert(body.refresh_token === null, 'web clients get refresh_token: null in JSON');
			const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie]));
			assert(!stored.includes(body.access_token), 'access token absent from localStorage, sessionStorage and document.cookie');
			const cookies = await context.cookies();
			const refresh = cookies.filter((c) => c.path === '/api/v1/auth');
			assert(refresh.length === 1, `one cookie scoped to /api/v1/auth (got ${JSON.stringify(cookies.map((c) => [c.name, c.path]))})`);
			assert(refresh[0].httpOnly, 'refresh cookie is HttpOnly');
			assert(refresh[0].sameSite === 'Strict', `refresh cookie is SameSite=Strict (got ${refresh[0].sameSite})`);
			assert(refresh[0].secure, 'refresh cookie is Secure');
			await page.reload();
			await expectShell(page, user);
		}
	},
	{
		name: 'logout, then log in again by username and by email',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await logout(page);
			await shot('login-page');
			// Signed out: the shell is no longer reachable.
			await page.goto('/');
			await page.waitForURL((u) => u.pathname === '/login');
			await login(page, user.username, user.password);
			await expectShell(page, user);
			await logout(page);
			await login(page, user.email, user.password);
			await expectShell(page, user);
		}
	},
	{
		name: 'a wrong password shows the error',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await logout(page);
			await login(page, user.username, 'not the password');
			const alert = page.getByTestId('form-error');
			await alert.waitFor({ state: 'visible' });
			const message = (await alert.textContent())?.trim() ?? '';
			assert(message.length > 0, 'an error message is shown');
			assert(!/unexpected|went wrong/i.test(message), `the message is the server's, not a generic one: ${message}`);
			assert(new URL(page.url()).pathname === '/login', 'still on the login page');
			const focused = await page.evaluate(() => document.activeElement?.id);
			assert(focused === 'password', `focus returns to the password field (was ${focused})`);
			await shot('error');
		}
	},
	{
		name: 'forgot password shows the same neutral message for known and unknown emails',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await logout(page);
			const messages = [];
			for (const email of [user.email, `nobody_${user.username}@example.test`]) {
				await page.goto('/forgot-password');
				await page.getByLabel('Email').fill(email);
				await page.getByLabel('Email').press('Enter');
				const sent = page.getByTestId('forgot-sent');
				await sent.waitFor({ state: 'visible' });
				messages.push(((await sent.textContent()) ?? '').replace(email, '<email>').trim());
			}
			assert(/if an account/i.test(messages[0]), `neutral wording: ${messages[0]}`);
			assert(messages[0] === messages[1], 'the same message whether or not the account exists');
			await shot('sent');
		}
	},
	{
		name: 'settings: display name, sessions list, password change',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await page.getByRole('link', { name: 'Settings', exact: true }).click();
			await page.waitForURL((u) => u.pathname === '/settings');
			const sessions = page.getByTestId('sessions');
			await sessions.waitFor({ state: 'visible' });
			assert((await sessions.locator('li').count()) === 1, 'one session listed');
			assert(/This device/.test((await sessions.textContent()) ?? ''), 'the current session is marked');
			await page.getByLabel('Display name').fill('Alice E2E');
			await page.getByLabel('Display name').press('Enter');
			await page.getByTestId('profile-saved').waitFor({ state: 'visible' });
			const newPassword = `${user.password} changed`;
			await page.getByLabel('Current password', { exact: true }).fill(user.password);
			await page.getByLabel('New password', { exact: true }).fill(newPassword);
			await page.getByLabel('Confirm new password', { exact: true }).fill(newPassword);
			await page.getByRole('button', { name: 'Change password' }).click();
			await page.getByTestId('password-saved').waitFor({ state: 'visible' });
			await shot('settings');
			await page.getByRole('link', { name: 'Back to Copains' }).click();
			await expectShell(page, { ...user, displayName: 'Alice E2E' });
			await logout(page);
			await login(page, user.username, newPassword);
			await expectShell(page, { ...user, displayName: 'Alice E2E' });
		}
	},
	{
		name: 'revoking another session signs that browser out',
		async run({ page, browser, baseURL }) {
			const user = newUser();
			await register(page, user);
			const other = await browser.newContext({ baseURL });
			try {
				const page2 = await other.newPage();
				await page2.goto('/login');
				await login(page2, user.username, user.password);
				await expectShell(page2, user);
				await page.goto('/settings');
				const sessions = page.getByTestId('sessions');
				await eventually(async () => (await sessions.locator('li').count()) === 2, 'two sessions listed');
				await sessions.getByRole('button', { name: /^Revoke/ }).click();
				await eventually(async () => (await sessions.locator('li').count()) === 1, 'revoked session removed from the list');
				// The other browser's refresh cookie is dead: a reload lands on the login page.
				await page2.reload();
				await page2.waitForURL((u) => u.pathname === '/login');
			} finally {
				await other.close();
			}
		}
	},
	{
		name: 'keyboard only: tab through the login form, focus is visible, Enter submits',
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await logout(page);
			await page.goto('/login');
			await page.getByLabel('Username or email').waitFor({ state: 'visible' });
			const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent?.trim());
			assert((await focused()) === 'login', 'the first field has focus on arrival');
			await page.keyboard.type(user.email);
			await page.keyboard.press('Tab');
			assert((await focused()) === 'password', 'Tab moves to the password');
			const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
			assert(outline !== 'none', `a focus ring is drawn (outline-style ${outline})`);
			await page.keyboard.type(user.password);
			await page.keyboard.press('Tab');
			assert((await focused()) === 'Forgot your password?', 'then the forgot-password link');
			await page.keyboard.press('Tab');
			assert((await focused()) === 'Log in', 'then the submit button');
			await shot('focus-on-submit');
			await page.keyboard.press('Shift+Tab');
			await page.keyboard.press('Shift+Tab');
			await page.keyboard.press('Enter');
			await expectShell(page, user);
		}
	},
	{
		name: 'signed-out visitors are sent to login and back after it',
		async run({ page }) {
			const user = newUser();
			await register(page, user);
			await logout(page);
			await page.goto('/settings');
			await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === '/settings');
			await login(page, user.username, user.password);
			await page.waitForURL((u) => u.pathname === '/settings');
		}
	},
	{
		name: 'going offline shows the reconnecting banner without covering the shell',
		async run({ page, context, shot }) {
			await register(page, newUser());
			await context.setOffline(true);
			const banner = page.getByTestId('connection-banner');
			await banner.waitFor({ state: 'visible' });
			const header = page.locator('.main-header');
			await eventually(async () => {
				const b = await banner.boundingBox();
				const h = await header.boundingBox();
				return b && h && b.y + b.height <= h.y + 0.5;
			}, 'the banner sits above the header, not over it');
			await shot('offline');
			await context.setOffline(false);
			await banner.waitFor({ state: 'hidden' });
			await eventually(async () => (await header.boundingBox())?.y === 0, 'the shell takes the space back');
		}
	},
	{
		name: 'a reset link without a token explains itself; a bad token shows the server error',
		async run({ page }) {
			await page.goto('/reset-password');
			await page.getByRole('alert').waitFor({ state: 'visible' });
			await page.goto('/reset-password?token=not-a-real-token');
			await page.getByLabel('New password', { exact: true }).fill('a brand new password');
			await page.getByLabel('Confirm new password', { exact: true }).fill('a brand new password');
			await page.getByRole('button', { name: 'Set new password' }).click();
			const alert = page.getByTestId('form-error');
			await alert.waitFor({ state: 'visible' });
			assert(((await alert.textContent()) ?? '').trim().length > 0, 'an error message is shown');
		}
	},
	{
		name: 'password reset end to end with the admin-issued link',
		async run({ page, shot }) {
			const admin = process.env.COPAINS_ADMIN_CMD;
			if (!admin) throw new Skip('set COPAINS_ADMIN_CMD (e.g. "target/debug/copains admin") to run it');
			const user = newUser();
			await register(page, user);
			await logout(page);
			const out = execSync(`${admin} reset-link ${user.username}`, { encoding: 'utf8' });
			const token = out.match(/\/reset-password\?token=([^\s"'<>]+)/)?.[1];
			assert(token, `a reset link in the admin output: ${out}`);
			await page.goto(`/reset-password?token=${token}`);
			const newPassword = `${user.password} reset`;
			await page.getByLabel('New password', { exact: true }).fill(newPassword);
			await page.getByLabel('Confirm new password', { exact: true }).fill(newPassword);
			await page.getByLabel('Confirm new password', { exact: true }).press('Enter');
			await page.waitForURL((u) => u.pathname === '/login');
			await shot('after-reset');
			await login(page, user.username, user.password);
			await page.getByTestId('form-error').waitFor({ state: 'visible' });
			await login(page, user.username, newPassword);
			await expectShell(page, user);
			// The link works once.
			await logout(page);
			await page.goto(`/reset-password?token=${token}`);
			await page.getByLabel('New password', { exact: true }).fill(`${newPassword} again`);
			await page.getByLabel('Confirm new password', { exact: true }).fill(`${newPassword} again`);
			await page.getByRole('button', { name: 'Set new password' }).click();
			await page.getByTestId('form-error').waitFor({ state: 'visible' });
		}
	}
];
