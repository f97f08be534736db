// Who is in a voice channel, in the channel sidebar, for a browser that loads the app after they
// joined: filled from the gateway's `ready.voice_states`, then kept live by `voice_state_update`
// (the user hangs up: they disappear; a later load does not list them).
import { assert, createInvite, createServer, eventually, newUser, register } from './lib.mjs';

export default [
	{
		name: 'a browser loading the app after someone joined voice lists them under the channel until they hang up',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Sidebar ${alice.username.slice(4)}`);
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel' }).click();
			await page.getByRole('radio', { name: 'Voice' }).check();
			await page.getByLabel('Channel name').fill('Lounge');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel' }).click();
			await page.getByTestId('channel-list').getByText('Lounge').waitFor();
			const link = await createInvite(page);

			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(10000);
			const b = await context.newPage();
			try {
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+\/\d+$/);

				// Alice joins the voice channel and mutes herself.
				await page.getByTestId('channel-list').getByText('Lounge').click();
				await page.getByRole('button', { name: 'Join voice' }).click();
				await page.getByTestId('voice-room').waitFor();
				await page.getByTestId('self-mute').click();
				await page.locator('[data-testid=voice-occupants] [title=Muted]').waitFor();

				// Bob loads the app afresh: alice is listed under the channel, muted, from `ready`.
				await b.reload();
				await b.getByTestId('channel-list').getByText('Lounge').waitFor();
				const occupants = b.getByTestId('voice-occupants');
				await occupants.getByText(alice.username).waitFor();
				await occupants.locator('[title=Muted]').waitFor();
				await shot('occupants after load', b);

				// Alice hangs up: she disappears from bob's sidebar at once.
				await page.getByTestId('voice-leave').click();
				await eventually(async () => (await b.getByTestId('voice-occupants').count()) === 0, 'alice left bob’s sidebar');

				// A later load does not list her either.
				await b.reload();
				await b.getByTestId('channel-list').getByText('Lounge').waitFor();
				await new Promise((r) => setTimeout(r, 1000));
				assert((await b.getByTestId('voice-occupants').count()) === 0, 'nobody listed after alice hung up');
			} finally {
				await context.close();
			}
		}
	}
];
