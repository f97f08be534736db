// Member presence in a large server, against a real `copains serve` started with
// `COPAINS_LARGE_SERVER_MEMBERS=2` (so a server of two members is large; scripts/test.sh runs this
// file against such a server, step web-e2e-large). In a large server presence travels only to
// sessions that subscribed to its member list: the app subscribes to the server on screen and the
// gateway answers with a `presence_snapshot` (docs/gateway.md, "Member lists").
//
// Without the subscription (or without the snapshot), a member who was online before the viewer's
// page loaded shows as offline: nothing else tells the viewer's new session about them.
import { Skip, createInvite, createServer, eventually, newUser, register } from './lib.mjs';

export default [
	{
		name: 'large server: a member online before my page loaded shows online in the member list, then goes offline live',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			if (process.env.COPAINS_E2E_LARGE_SERVER_MEMBERS !== '2') {
				throw new Skip('needs a server started with COPAINS_LARGE_SERVER_MEMBERS=2 and COPAINS_E2E_LARGE_SERVER_MEMBERS=2 here');
			}
			const alice = newUser();
			const bob = newUser();
			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(10000);
			let aliceOpen = true;
			try {
				const a = await context.newPage();
				await register(a, alice);
				await createServer(a, `Large ${alice.username.slice(4)}`);
				const link = await createInvite(a);
				await register(page, bob);
				await page.goto(link);
				await page.getByRole('button', { name: 'Accept invite' }).click();
				await page.waitForURL(/\/servers\/\d+\/\d+$/);
				const serverUrl = page.url();
				// A fresh page load: a new gateway session whose `ready` knows the server is large, so
				// it carries no presence of its members; Alice has been online all along.
				await page.goto(serverUrl);
				const row = page.locator(`[data-testid=member][data-username="${alice.username}"]`);
				await row.waitFor({ state: 'visible' });
				await eventually(async () => (await row.getAttribute('data-presence')) === 'online', 'bob sees alice online after subscribing');
				await shot('large-server-alice-online');
				// Live: Alice leaves, Bob's subscription tells him.
				await context.close();
				aliceOpen = false;
				await eventually(async () => (await row.getAttribute('data-presence')) === 'offline', 'bob sees alice go offline', 15000);
				await shot('large-server-alice-offline');
			} finally {
				if (aliceOpen) await context.close();
			}
		}
	}
];
