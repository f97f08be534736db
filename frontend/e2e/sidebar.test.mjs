// The channel sidebar right after accepting an invite, against a real `copains serve`.
//
// The race it pins down: the invite page is a fresh page load, so the gateway identifies while
// the user reads the invite. Its `ready` is computed before the join and may reach the page after
// the join already put the server (with its channels, over REST) into the model: `ready` then
// replaces the server list without the new server, and the gateway's `server_create` (held until
// `ready`, carrying the REST server object without channels) brings it back with no channel — the
// sidebar said "No channels you can see yet" until a reload. Here the page's gateway socket is
// proxied (playwright `routeWebSocket`) and the server's frames are held until the join is done,
// which makes that order certain instead of occasional.
import { assert, createInvite, createServer, eventually, newUser, register } from './lib.mjs';

export default [
	{
		name: 'accepting an invite while the gateway’s ready is still in flight: the sidebar lists the new server’s channels without a reload',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Race ${alice.username.slice(4)}`);
			// A second channel, so the check is not only about the first one.
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByLabel('Channel name').fill('second');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('channel-list').getByText('second').waitFor();
			const link = await createInvite(page);

			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(10000);
			try {
				const b = await context.newPage();
				const errors = [];
				b.on('pageerror', (e) => errors.push(e));
				await register(b, bob);

				// From now on the gateway's `ready` and every frame after it wait until `release()`
				// (`hello` goes through, so the page identifies at once; its frames go straight through).
				let held = false;
				let released = false;
				const queue = [];
				const sockets = [];
				let readiesHeld = 0;
				await b.routeWebSocket(/\/gateway$/, (ws) => {
					const server = ws.connectToServer();
					sockets.push(ws);
					server.onMessage((m) => {
						if (!released && typeof m === 'string' && /"op"\s*:\s*"ready"/.test(m)) {
							readiesHeld++;
							held = true;
						}
						if (held) queue.push([ws, m]);
						else ws.send(m);
					});
				});
				const release = () => {
					held = false;
					released = true;
					for (const [ws, m] of queue.splice(0)) ws.send(m);
				};

				await b.goto(link);
				await b.getByTestId('invite-server-name').waitFor();
				// The new page's gateway identified and its ready (computed now, before the join) is held.
				await eventually(() => readiesHeld === 1, 'the gateway answered identify with a ready (held)');
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+\/\d+$/);
				await b.getByTestId('channel-list').getByText('general', { exact: true }).waitFor();
				// Now the stale ready, then the server_create of the join, reach the page.
				release();
				assert(sockets.length === 1, `one gateway connection (${sockets.length})`);
				const list = b.getByTestId('channel-list');
				// Give the events time to land, then the channels must be (still, or again) listed.
				await eventually(async () => (await b.getByTestId('rail-server').count()) === 1, 'the server is in bob’s rail');
				await eventually(
					async () => (await list.getByText('general', { exact: true }).count()) === 1 && (await list.getByText('second').count()) === 1,
					'bob’s sidebar lists general and second'
				);
				await b.waitForTimeout(1000);
				assert((await list.getByText('No channels you can see yet').count()) === 0, 'no "No channels" placeholder');
				assert((await list.getByText('second').count()) === 1, 'the channels stay listed');
				await shot('bob-sidebar-after-join', b);
				assert(errors.length === 0, `no page errors: ${errors.join('; ')}`);
			} finally {
				await context.close();
			}
		}
	},
	{
		name: 'joining a server while both are online: each sees the other online in the member list at once (no reload, no presence change)',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Presence ${alice.username.slice(4)}`);
			const link = await createInvite(page);
			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(10000);
			try {
				const b = await context.newPage();
				await register(b, bob);
				// Bob is online (connected) before he joins: his presence was published to nobody.
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+\/\d+$/);
				const row = (p, u) => p.locator(`[data-testid=member][data-username="${u.username}"]`);
				await eventually(async () => (await row(page, bob).getAttribute('data-presence')) === 'online', 'alice sees bob online');
				await eventually(async () => (await row(b, alice).getAttribute('data-presence')) === 'online', 'bob sees alice online');
				await shot('alice-sees-bob-online');
				await shot('bob-sees-alice-online', b);
			} finally {
				await context.close();
			}
		}
	}
];
