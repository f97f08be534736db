// Errors a person reads (issue 19 item 9): a normal signed-out visit logs no red console error,
// and a refusal reads as a sentence written for people, not the server's text.
import { apiAs, assert, newUser } from './lib.mjs';

/** Registers `user` through the API (no browser) and returns its API session. */
async function registered(baseURL, user) {
	const r = await fetch(`${baseURL}/api/v1/auth/register`, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json' },
		body: JSON.stringify(user)
	});
	assert(r.status === 201 || r.status === 200, `API register: ${r.status}`);
	return apiAs(baseURL, user);
}

export default [
	{
		name: 'a signed-out visit to home, login, register and an invite logs no console error',
		async run({ page, baseURL }) {
			const owner = newUser();
			const api = await registered(baseURL, owner);
			const server = await api.call('POST', '/servers', { name: 'Open house' });
			assert(server.status === 201, `server: ${JSON.stringify(server)}`);
			const invite = await api.call('POST', `/servers/${server.body.id}/invites`, {});
			assert(invite.status === 201, `invite: ${JSON.stringify(invite)}`);

			const errors = [];
			page.on('console', (m) => {
				if (m.type() === 'error') errors.push(`${m.text()} (${m.location()?.url ?? ''})`);
			});
			page.on('pageerror', (e) => errors.push(String(e)));
			await page.goto('/');
			await page.waitForURL((u) => u.pathname === '/login');
			await page.getByLabel('Username or email').waitFor();
			await page.goto('/register');
			await page.getByLabel('Username').waitFor();
			await page.goto(`/invite/${invite.body.code}`);
			await page.getByRole('heading', { name: 'Open house' }).waitFor();
			await page.getByRole('link', { name: 'Log in to join' }).waitFor();
			await page.waitForLoadState('networkidle');
			assert(errors.length === 0, `no console error on a signed-out visit, got:\n${errors.join('\n')}`);
		}
	},
	{
		name: 'a refusal reads as a sentence: a taken username',
		async run({ page }) {
			const first = newUser();
			await page.goto('/register');
			await page.getByLabel('Username').fill(first.username);
			await page.getByLabel('Email').fill(first.email);
			await page.getByLabel('Password').fill(first.password);
			await page.getByLabel('Password').press('Enter');
			await page.getByTestId('shell').waitFor();
			await page.getByRole('button', { name: 'Log out' }).first().click();
			await page.waitForURL((u) => u.pathname === '/login');
			await page.goto('/register');
			await page.getByLabel('Username').fill(first.username);
			await page.getByLabel('Email').fill(`other.${first.email}`);
			await page.getByLabel('Password').fill(first.password);
			await page.getByLabel('Password').press('Enter');
			const alert = page.getByTestId('form-error');
			await alert.waitFor();
			const shown = ((await alert.textContent()) ?? '').trim();
			assert(shown === 'That username is taken. Try another one.', `shown "${shown}"`);
		}
	}
];
