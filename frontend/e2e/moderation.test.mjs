// Moderation that speaks (issue 19 item 6), between two browsers against a real `copains serve`:
// a kick and a ban carry a reason the member reads ("You were banned from Club"), a ban deletes
// the last hour of their messages, the invite of a banned user says so with Accept disabled,
// and deleting a message asks first (Shift+click skips the question).
import { assert, createInvite, createServer, eventually, newUser, register, send } from './lib.mjs';

/** The texts of the messages shown, in order. */
async function texts(page) {
	return (await page.getByTestId('message-content').allTextContents()).map((t) => t.trim());
}

/** Opens the member card of `username` in the member list. */
async function memberCard(page, username) {
	await page.locator(`[data-testid=member][data-username="${username}"] button.row`).click();
	const card = page.getByTestId('member-card');
	await card.waitFor();
	return card;
}

export default [
	{
		name: 'kick and ban with a reason: the member reads why, a ban deletes their last hour, a banned invite cannot be accepted',
		timeoutMs: 90000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			const club = `Club ${alice.username.slice(4)}`;
			await register(page, alice);
			await createServer(page, club);
			const link = await createInvite(page);
			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(10000);
			const errors = [];
			try {
				const b = await context.newPage();
				b.on('pageerror', (e) => errors.push(e));
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.getByTestId('composer').waitFor();
				await send(page, 'hello bob');
				await eventually(async () => (await texts(b)).includes('hello bob'), 'bob is connected (he sees alice live)');

				// A kick with a reason while bob is on his home screen: a banner tells him where and why.
				await b.getByRole('link', { name: 'Home' }).click();
				await b.waitForURL((u) => u.pathname === '/');
				let card = await memberCard(page, bob.username);
				await card.getByRole('button', { name: 'Kick' }).click();
				await card.getByLabel('Reason (optional)').fill('too loud');
				await card.getByRole('button', { name: 'Confirm kick' }).click();
				const banner = b.getByTestId('moderation-notice');
				await banner.waitFor();
				assert((await banner.textContent())?.trim() === `You were kicked from ${club}: too loud`, `the kick banner reads: ${await banner.textContent()}`);
				await banner.getByRole('button', { name: 'Dismiss' }).click();
				await eventually(async () => (await banner.count()) === 0, 'the banner is dismissed');

				// Back in through the same link; bob posts spam, alice bans him with a reason and
				// "Previous hour": the spam disappears for alice, and bob reads why he is out.
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.getByTestId('composer').waitFor();
				await send(b, 'buy cheap pills');
				await eventually(async () => (await texts(page)).includes('buy cheap pills'), 'alice sees the spam');
				await send(page, 'no spam here');
				await eventually(async () => (await texts(b)).includes('no spam here'), 'bob is connected again');
				card = await memberCard(page, bob.username);
				await card.getByRole('button', { name: 'Ban' }).click();
				await card.getByLabel('Reason (optional)').fill('spam links');
				await card.getByLabel('Delete their messages').selectOption({ label: 'Previous hour' });
				await shot('ban-form');
				await card.getByRole('button', { name: 'Confirm ban' }).click();
				await eventually(async () => !(await texts(page)).includes('buy cheap pills'), 'the spam is deleted for alice');
				const gone = b.getByTestId('server-missing');
				await gone.getByRole('heading', { name: `You were banned from ${club}` }).waitFor();
				await gone.getByText('Reason: spam links').waitFor();
				assert((await b.getByText('Server not found').count()) === 0, 'no "Server not found" for a ban');
				await shot('banned-member', b);

				// The invite knows: it says bob is banned, and Accept is disabled.
				await b.goto(link);
				await b.getByText(`You are banned from ${club}, so you cannot join it.`).waitFor();
				assert(await b.getByRole('button', { name: 'Accept invite' }).isDisabled(), 'Accept invite is disabled for a banned user');
				await shot('banned-invite', b);

				// The ban list shows the reason.
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Bans and audit log' }).click();
				await page.getByTestId('ban').filter({ hasText: bob.username }).filter({ hasText: 'spam links' }).waitFor();
				await page.getByTestId('moderation-dialog').getByRole('button', { name: 'Close' }).click();
				if (errors.length) throw new Error(`error in bob's page: ${errors[0].stack ?? errors[0]}`);
			} finally {
				await context.close().catch(() => {});
			}
		}
	},
	{
		name: 'deleting a message asks first; Cancel keeps it, Delete removes it, Shift+click skips the question',
		async run({ page, shot }) {
			const alice = newUser();
			await register(page, alice);
			await createServer(page, `Tidy ${alice.username.slice(4)}`);
			for (const t of ['first words', 'second words']) {
				await send(page, t);
				const m = page.getByTestId('message').filter({ hasText: t });
				await eventually(async () => !((await m.getAttribute('data-message-id')) ?? 'pending-').startsWith('pending-'), `"${t}" is sent`);
			}
			const first = page.getByTestId('message').filter({ hasText: 'first words' });
			await first.hover();
			await first.getByRole('button', { name: 'Delete message' }).click();
			const dialog = page.getByRole('dialog', { name: 'Delete message' });
			await dialog.getByText('Are you sure you want to delete this message?').waitFor();
			assert(((await dialog.textContent()) ?? '').includes('first words'), 'the dialog shows which message');
			await shot('delete-confirm');
			await dialog.getByRole('button', { name: 'Cancel' }).click();
			await eventually(async () => (await dialog.count()) === 0, 'the dialog closes');
			assert((await texts(page)).includes('first words'), 'Cancel keeps the message');
			await first.hover();
			await first.getByRole('button', { name: 'Delete message' }).click();
			await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
			await eventually(async () => !(await texts(page)).includes('first words'), 'Delete removes it');

			const second = page.getByTestId('message').filter({ hasText: 'second words' });
			await second.hover();
			await second.getByRole('button', { name: 'Delete message' }).click({ modifiers: ['Shift'] });
			await eventually(async () => !(await texts(page)).includes('second words'), 'Shift+click deletes at once');
			assert((await page.getByRole('dialog', { name: 'Delete message' }).count()) === 0, 'no question with Shift');
		}
	}
];
