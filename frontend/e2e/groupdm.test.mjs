// Group DMs in the web app: alice makes friends with bob and carol, creates a group DM with both
// from the DM list's "New group" (picking one friend is refused with a clear error), and all three
// read each other's end-to-end encrypted messages. The owner removes carol (keyboard only): carol's
// app drops the group; what alice and bob send next is encrypted under new Megolm sessions whose
// keys never reach carol's device. To prove that with carol's own device, alice adds her back:
// carol still reads the messages from before her removal, the ones sent while she was out stay
// "Unable to decrypt", and what is sent after she is back is readable again. Bob leaves at the end.
import { assert, eventually, newUser, register, send } from './lib.mjs';

/** Opens another, independent browser (its own cookies and IndexedDB). */
async function otherBrowser(browser, baseURL) {
	const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
	context.setDefaultTimeout(15000);
	const page = await context.newPage();
	return { context, page };
}

async function texts(page) {
	return (await page.getByTestId('message-content').allTextContents()).map((t) => t.trim());
}

/** Waits until `page` shows `text` decrypted. */
async function sees(page, text, what, timeoutMs = 25000) {
	try {
		await eventually(async () => (await texts(page)).includes(text), what, timeoutMs);
	} catch (e) {
		const reasons = await page.getByTestId('undecryptable-reason').allTextContents();
		throw new Error(`${e.message}; shown: ${JSON.stringify(await texts(page))}, undecryptable ${JSON.stringify(reasons)}, url ${page.url()}`);
	}
}

async function e2eeReady(page) {
	await eventually(
		() => page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('copains.e2ee.device.'))),
		'the E2EE device is created and its keys uploaded',
		20000
	);
}

/** `a` sends a friend request to `b`, which `b` accepts. */
async function befriend(pa, pb, a, b) {
	await pa.goto('/');
	await pa.getByLabel('Add a friend').fill(b.username);
	await pa.getByRole('button', { name: 'Send request' }).click();
	await pa.getByText(`Friend request sent to ${b.username}.`).waitFor();
	await pb.goto('/');
	await pb.getByRole('button', { name: /^Pending/ }).click();
	await pb.locator(`[data-testid=friend][data-username="${a.username}"][data-kind=incoming]`).getByRole('button', { name: 'Accept' }).click();
	await pa.getByRole('button', { name: 'All' }).click();
	await pa.locator(`[data-testid=friend][data-username="${b.username}"][data-kind=friend]`).waitFor();
}

/** Opens the group DM from the DM list (it appears there through the gateway). */
async function openGroup(page, id) {
	const link = page.locator(`[data-testid=dm-list] a[href="/dms/${id}"]`);
	await link.waitFor({ timeout: 20000 });
	await link.click();
	await page.waitForURL(`**/dms/${id}`);
	await page.getByTestId('composer-lock').waitFor();
}

async function memberNames(page) {
	return (await page.getByTestId('group-member').evaluateAll((els) => els.map((e) => e.getAttribute('data-username')))).sort();
}

/** Registers `user` through the API (setup only, from Node); returns its access token. */
async function apiRegister(baseURL, user) {
	const r = await fetch(`${baseURL}/api/v1/auth/register`, {
		method: 'POST',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify({ username: user.username, email: user.email, password: user.password })
	});
	assert(r.ok, `register ${user.username}: HTTP ${r.status}`);
	return (await r.json()).access_token;
}

/** Sends (or, when they asked first, accepts) a friend request through the API. */
async function apiFriend(baseURL, token, username) {
	const r = await fetch(`${baseURL}/api/v1/users/@me/relationships`, {
		method: 'POST',
		headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
		body: JSON.stringify({ username })
	});
	assert(r.ok, `friend request to ${username}: HTTP ${r.status}`);
}

export default [
	{
		name: 'a group DM: create, all read each other, the owner removes one who cannot read what follows, re-add, leave',
		timeoutMs: 90000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			const carol = newUser();
			const tag = alice.username.slice(4);
			const b = await otherBrowser(browser, baseURL);
			const c = await otherBrowser(browser, baseURL);
			try {
				await register(page, alice);
				await register(b.page, bob);
				await register(c.page, carol);
				await befriend(page, b.page, alice, bob);
				await befriend(page, c.page, alice, carol);
				await e2eeReady(page);
				await e2eeReady(b.page);
				await e2eeReady(c.page);

				// "New group" from the DM list, keyboard only; one friend is not a group.
				await page.getByTestId('new-group').focus();
				await page.keyboard.press('Enter');
				const dialog = page.getByTestId('new-group-dialog');
				await dialog.waitFor({ state: 'visible' });
				const pick = (u) => dialog.locator(`[data-testid=new-group-friend][data-username="${u.username}"] input`);
				await pick(bob).focus();
				await page.keyboard.press('Space');
				await dialog.getByRole('button', { name: 'Create group' }).click();
				const err = await dialog.getByTestId('new-group-error').textContent();
				assert(/at least 2/.test(err ?? ''), `one friend is refused with a clear error (got ${err})`);
				await pick(carol).check();
				await dialog.getByRole('button', { name: 'Create group' }).click();
				await page.waitForURL(/\/dms\/\d+$/);
				const groupId = new URL(page.url()).pathname.split('/').pop();
				await page.getByTestId('composer-lock').waitFor();
				const everyone = [alice.username, bob.username, carol.username].sort();
				await eventually(async () => JSON.stringify(await memberNames(page)) === JSON.stringify(everyone), 'the group shows its three members');
				assert((await page.getByTestId('group-owner').count()) === 1, 'one owner is shown');
				assert((await page.getByTestId('group-remove').count()) === 2, 'the owner can remove the two others');

				// All three read each other's encrypted messages.
				const g1 = `group hello from alice ${tag}`;
				const g2 = `group hello from bob ${tag}`;
				const g3 = `group hello from carol ${tag}`;
				await send(page, g1);
				await sees(page, g1, 'alice reads her own message');
				await openGroup(b.page, groupId);
				await openGroup(c.page, groupId);
				await sees(b.page, g1, 'bob decrypts alice’s group message');
				await sees(c.page, g1, 'carol decrypts alice’s group message');
				await send(b.page, g2);
				await sees(page, g2, 'alice decrypts bob’s group message');
				await sees(c.page, g2, 'carol decrypts bob’s group message');
				await send(c.page, g3);
				await sees(page, g3, 'alice decrypts carol’s group message');
				await sees(b.page, g3, 'bob decrypts carol’s group message');
				assert((await b.page.getByTestId('group-remove').count()) === 0, 'a member who is not the owner has no Remove buttons');
				await shot('group-three', page);

				// The owner removes carol with the keyboard; carol's app drops the group.
				const carolRow = page.locator(`[data-testid=group-member][data-username="${carol.username}"]`);
				await carolRow.getByTestId('group-remove').focus();
				await page.keyboard.press('Enter');
				await eventually(async () => (await memberNames(page)).length === 2, 'alice sees two members left');
				await eventually(async () => (await c.page.locator(`[data-testid=dm-list] a[href="/dms/${groupId}"]`).count()) === 0, 'the group leaves carol’s DM list');
				await c.page.getByTestId('dm-missing').waitFor();
				await eventually(async () => (await memberNames(b.page)).length === 2, 'bob sees carol removed');

				// Sent after the removal: alice and bob read it.
				const g4 = `after removal from alice ${tag}`;
				const g5 = `after removal from bob ${tag}`;
				await send(page, g4);
				await sees(b.page, g4, 'bob decrypts alice’s message after the removal');
				await send(b.page, g5);
				await sees(page, g5, 'alice decrypts bob’s message after the removal');
				await shot('group-removed', c.page);

				// Add carol back: her device has the keys of before, none of what was sent while she was out.
				await page.getByTestId('group-add-select').selectOption({ label: carol.username });
				await page.getByTestId('group-add').click();
				await eventually(async () => (await memberNames(page)).length === 3, 'alice sees carol added back');
				await openGroup(c.page, groupId);
				await sees(c.page, g3, 'carol still reads the history from before her removal');
				await sees(c.page, g1, 'carol still reads alice’s message from before her removal');
				await eventually(async () => (await c.page.getByTestId('undecryptable').count()) >= 2, 'the two messages sent while carol was out are undecryptable for her', 20000);
				let shown = await texts(c.page);
				assert(!shown.includes(g4) && !shown.includes(g5), `carol cannot read what was sent after her removal (shown ${JSON.stringify(shown)})`);

				// What is sent once she is back is readable; the messages of her absence stay unreadable.
				const g6 = `welcome back carol ${tag}`;
				await send(page, g6);
				await sees(c.page, g6, 'carol decrypts what is sent after she is added back');
				shown = await texts(c.page);
				assert(!shown.includes(g4) && !shown.includes(g5), `still unreadable for carol after new keys arrive (shown ${JSON.stringify(shown)})`);
				await shot('group-readded', c.page);

				// Bob leaves (with a confirmation step).
				await b.page.getByTestId('group-leave').click();
				await b.page.getByTestId('group-leave-confirm').click();
				await b.page.waitForURL((u) => u.pathname === '/');
				await eventually(async () => (await b.page.locator(`[data-testid=dm-list] a[href="/dms/${groupId}"]`).count()) === 0, 'the group leaves bob’s list');
				await eventually(async () => !(await memberNames(page)).includes(bob.username), 'alice sees bob gone');
			} finally {
				await b.context.close();
				await c.context.close();
			}
		}
	},
	{
		name: 'the 10-member cap: picking 10 friends is refused with a clear error; a full group cannot add more',
		timeoutMs: 60000,
		async run({ page, baseURL, shot }) {
			// Setup through the API: ten friends of alice (they ask, she accepts).
			const alice = newUser();
			const friends = Array.from({ length: 10 }, () => newUser());
			const aliceToken = await apiRegister(baseURL, alice);
			for (const f of friends) {
				await apiFriend(baseURL, await apiRegister(baseURL, f), alice.username);
				await apiFriend(baseURL, aliceToken, f.username);
			}
			await page.goto('/login');
			await page.getByLabel('Username or email').fill(alice.username);
			await page.getByLabel('Password').fill(alice.password);
			await page.getByRole('button', { name: 'Log in' }).click();
			await page.getByTestId('shell').waitFor({ state: 'visible' });

			await page.getByTestId('new-group').click();
			const dialog = page.getByTestId('new-group-dialog');
			const boxes = dialog.getByTestId('new-group-friend').locator('input');
			await eventually(async () => (await boxes.count()) === 10, 'the dialog lists the ten friends');
			for (let i = 0; i < 10; i++) await boxes.nth(i).check();
			await dialog.getByRole('button', { name: 'Create group' }).click();
			const err = (await dialog.getByTestId('new-group-error').textContent()) ?? '';
			assert(/at most 10 members/.test(err), `ten friends are refused with the cap (got ${err})`);
			await shot('cap-dialog', page);

			// Nine friends make a full group of ten; the tenth cannot be added.
			await boxes.nth(9).uncheck();
			await dialog.getByRole('button', { name: 'Create group' }).click();
			await page.waitForURL(/\/dms\/\d+$/);
			await eventually(async () => (await page.getByTestId('group-member').count()) === 10, 'the group shows ten members');
			await page.getByText('The group is full (10 members).').waitFor();
			await page.getByTestId('group-add-select').selectOption({ index: 1 });
			await page.getByTestId('group-add').click();
			const full = (await page.getByTestId('group-error').textContent()) ?? '';
			assert(/at most 10 members/.test(full), `a full group refuses another member with the cap (got ${full})`);
			assert((await page.getByTestId('group-member').count()) === 10, 'still ten members');
		}
	}
];
