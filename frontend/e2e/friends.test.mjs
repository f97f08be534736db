// Friends on the home screen between two browsers against a real `copains serve`: request,
// live incoming request, accept, presence of a friend, block.
import { assert, eventually, newUser, register } from './lib.mjs';

export default [
	{
		name: 'friend request, accept, presence of a friend, block',
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			const ctx = await browser.newContext({ baseURL });
			try {
				const b = await ctx.newPage();
				await register(b, bob);
				// Alice asks; bob sees the request live and accepts.
				await page.getByLabel('Add a friend').fill(bob.username);
				await page.getByRole('button', { name: 'Send request' }).click();
				await page.getByText(`Friend request sent to ${bob.username}.`).waitFor();
				await page.getByRole('button', { name: 'Pending' }).click();
				await page.locator(`[data-testid=friend][data-username="${bob.username}"][data-kind=outgoing]`).waitFor();
				await b.getByRole('button', { name: /^Pending/ }).click();
				const incoming = b.locator(`[data-testid=friend][data-username="${alice.username}"][data-kind=incoming]`);
				await incoming.waitFor();
				await incoming.getByRole('button', { name: 'Accept' }).click();
				await page.getByRole('button', { name: 'All' }).click();
				const bobRow = page.locator(`[data-testid=friend][data-username="${bob.username}"]`);
				await eventually(async () => (await bobRow.getAttribute('data-kind')) === 'friend', 'alice sees bob as a friend');
				// Presence of a friend: the new friendship refreshes both gateway sessions, which tell each
				// other's current presence (no reload, no presence change needed); then bob goes idle, live.
				await eventually(async () => (await bobRow.getAttribute('data-presence')) === 'online', 'alice sees her new friend bob online');
				const aliceRow = b.locator(`[data-testid=friend][data-username="${alice.username}"]`);
				await b.getByRole('button', { name: 'All', exact: true }).click();
				await eventually(async () => (await aliceRow.getAttribute('data-presence')) === 'online', 'bob sees his new friend alice online');
				await b.getByTestId('status-select').selectOption('idle');
				await eventually(async () => (await bobRow.getAttribute('data-presence')) === 'idle', 'alice sees bob idle');
				// After a reload, friends' presence comes with the ready payload.
				await page.reload();
				await eventually(async () => (await bobRow.getAttribute('data-presence')) === 'idle', 'still idle after a reload (ready presences)');
				await shot('friends');
				// Alice blocks bob: he leaves her friends and she leaves his.
				await bobRow.getByRole('button', { name: 'Block' }).click();
				await page.getByRole('button', { name: 'Blocked' }).click();
				await page.locator(`[data-testid=friend][data-username="${bob.username}"][data-kind=blocked]`).waitFor();
				await b.getByRole('button', { name: 'All' }).click();
				await eventually(async () => (await b.locator(`[data-testid=friend][data-username="${alice.username}"]`).count()) === 0, 'bob no longer lists alice');
				// Bob cannot ask again.
				await b.getByLabel('Add a friend').fill(alice.username);
				await b.getByRole('button', { name: 'Send request' }).click();
				await b.getByRole('alert').waitFor();
				assert(((await b.getByRole('alert').textContent()) ?? '').length > 0, 'a refused request shows the server error');
			} finally {
				await ctx.close().catch(() => {});
			}
		}
	}
];
