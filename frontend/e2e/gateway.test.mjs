// The gateway client against a real `copains serve`, with the browser's WebSocket routed through
// Playwright so the test can cut the link: the banner shows "Reconnecting", the client resumes
// its session (no second identify) and gets what it missed; a refused token is refreshed.
import { assert, eventually, newUser, register, send } from './lib.mjs';

/** Routes `page`'s gateway socket through Playwright: records client frames, can refuse connections. */
async function routeGateway(page) {
	const state = { frames: [], urls: [], routes: [], refuse: null, onIdentify: null };
	await page.routeWebSocket(/\/gateway$/, (ws) => {
		state.urls.push(ws.url());
		if (state.refuse !== null) {
			// The server is "down": the connection closes at once with this code.
			void ws.close({ code: state.refuse, reason: 'test: refused' });
			return;
		}
		const server = ws.connectToServer();
		ws.onMessage((m) => {
			const frame = JSON.parse(String(m));
			state.frames.push(frame);
			if (frame.op === 'identify' && state.onIdentify) {
				const handler = state.onIdentify;
				state.onIdentify = null;
				if (handler(ws, server) === 'drop') return;
			}
			server.send(m);
		});
		state.routes.push({ ws, server });
	});
	return state;
}

async function createServerAndInvite(page, name) {
	await page.getByRole('button', { name: 'Create a server' }).click();
	await page.getByLabel('Server name').fill(name);
	await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
	await page.waitForURL(/\/servers\/\d+\/\d+$/);
	await page.getByTestId('server-menu-button').click();
	await page.getByRole('button', { name: 'Invite people' }).click();
	const link = await eventually(async () => {
		const v = await page.getByTestId('invite-link').inputValue();
		return v.includes('/invite/') ? v : null;
	}, 'an invite link');
	await page.getByTestId('invite-dialog').getByRole('button', { name: 'Done' }).click();
	return link;
}

const texts = async (page) => (await page.getByTestId('message-content').allTextContents()).map((t) => t.trim());

export default [
	{
		name: 'a dropped gateway link shows the reconnecting banner, then resumes and delivers what was missed',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			const gw = await routeGateway(page);
			await register(page, newUser());
			const link = await createServerAndInvite(page, 'Resume');
			const bctx = await browser.newContext({ baseURL });
			try {
				const bob = await bctx.newPage();
				await register(bob, newUser());
				await bob.goto(link);
				await bob.getByRole('button', { name: 'Accept invite' }).click();
				await bob.getByTestId('composer').waitFor();
				await send(bob, 'before the drop');
				await eventually(async () => (await texts(page)).includes('before the drop'), 'live before the drop');

				// Cut alice's link with a resumable code, and keep refusing reconnections for a while.
				gw.refuse = 4009;
				const connectionsBefore = gw.urls.length;
				await gw.routes.at(-1).ws.close({ code: 4011, reason: 'test: slow consumer' });
				const banner = page.getByTestId('connection-banner');
				await banner.waitFor({ state: 'visible' });
				assert(/Reconnecting/.test((await banner.textContent()) ?? ''), 'the banner says reconnecting');
				await send(bob, 'sent while alice was away');
				await eventually(async () => gw.urls.length >= connectionsBefore + 1, 'alice tried to reconnect', 8000);
				await eventually(async () => /attempt 2/.test((await banner.textContent()) ?? ''), 'the banner counts attempts', 8000);
				await shot('reconnecting');
				gw.refuse = null;

				// The next attempt resumes the same session and gets the missed message through the replay.
				await eventually(async () => (await texts(page)).includes('sent while alice was away'), 'the missed message arrives', 15000);
				await banner.waitFor({ state: 'detached' });
				const ops = gw.frames.map((f) => f.op);
				assert(ops.filter((o) => o === 'identify').length === 1, `identified once, then resumed (ops: ${ops.join(',')})`);
				const resume = gw.frames.find((f) => f.op === 'resume');
				assert(resume && typeof resume.session_id === 'string' && resume.seq > 0, `resume carries the session and last seq: ${JSON.stringify({ ...resume, token: '…' })}`);
				assert(gw.urls.every((u) => new URL(u).pathname === '/gateway' && !new URL(u).search), `no token in the gateway URL: ${gw.urls}`);
				// And it is live again.
				await send(bob, 'after the resume');
				await eventually(async () => (await texts(page)).includes('after the resume'), 'live after the resume');
			} finally {
				await bctx.close().catch(() => {});
			}
		}
	},
	{
		name: 'a token refused by the gateway (4004) is refreshed and the client identifies again',
		async run({ page }) {
			const gw = await routeGateway(page);
			let refusedToken = null;
			let refusedAt = 0;
			gw.onIdentify = (ws) => {
				refusedToken = gw.frames.at(-1).token;
				refusedAt = Date.now();
				void ws.close({ code: 4004, reason: 'test: authentication failed' });
				return 'drop';
			};
			const refreshes = [];
			page.on('request', (r) => {
				if (r.url().endsWith('/api/v1/auth/refresh')) refreshes.push(Date.now());
			});
			await register(page, newUser());
			await eventually(() => refusedToken !== null, 'the first identify was refused');
			await eventually(() => gw.frames.filter((f) => f.op === 'identify').length === 2, 'a second identify follows');
			const second = gw.frames.filter((f) => f.op === 'identify')[1];
			// (Within the same second the server may mint a byte-identical JWT, so compare the timing, not the text.)
			assert(refreshes.some((t) => t >= refusedAt), 'the token was refreshed after the 4004');
			assert(typeof second.token === 'string' && second.token.length > 20, 'the second identify carries a token');
			// The session works: creating a server shows it in the rail through the live model.
			await page.getByRole('button', { name: 'Create a server' }).click();
			await page.getByLabel('Server name').fill('After 4004');
			await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
			await page.getByTestId('composer').waitFor();
			assert((await page.getByTestId('connection-banner').count()) === 0, 'no reconnecting banner once connected');
		}
	}
];
