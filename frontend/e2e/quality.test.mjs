// Issue 8's quality items for the web app, each shown against a real `copains serve`: usable at
// phone width, keyboard accessible, dark and light themes that persist, desktop notifications for
// mentions and DMs (only when the message is not on screen), a visible offline/reconnecting state
// with recovery, and the server's own error messages shown to the user.
import { apiAs, assert, createInvite, createServer, eventually, newUser, register, send } from './lib.mjs';

/** The texts of the messages shown, in order. */
async function texts(page) {
	return (await page.getByTestId('message-content').allTextContents()).map((t) => t.trim());
}

/** Describes the focused element and whether a focus indicator is drawn around it. */
function focusInfo(page) {
	return page.evaluate(() => {
		const el = document.activeElement;
		if (!el || el === document.body) return { tag: 'body', label: '', visible: false };
		const s = getComputedStyle(el);
		const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
		const ring = s.boxShadow && s.boxShadow !== 'none';
		return {
			tag: el.tagName.toLowerCase(),
			label: (el.getAttribute('aria-label') || el.textContent || el.getAttribute('placeholder') || '').trim().replace(/\s+/g, ' ').slice(0, 60),
			testid: el.getAttribute('data-testid'),
			href: el.getAttribute('href'),
			visible: outline || !!ring
		};
	});
}

/** Presses Tab until `want(focus)` holds (at most `max` times); every stop must show a focus indicator. */
async function tabTo(page, want, what, max = 60) {
	const stops = [];
	for (let i = 0; i < max; i++) {
		await page.keyboard.press('Tab');
		const f = await focusInfo(page);
		stops.push(f);
		assert(f.tag === 'body' || f.visible, `a visible focus indicator on ${f.tag} "${f.label}"`);
		if (want(f)) return stops;
	}
	throw new Error(`Tab never reached ${what}; stops: ${stops.map((s) => `${s.tag}:${s.label}`).join(' | ')}`);
}

export default [
	{
		name: 'phone width 390×844: servers → channels → chat → members and back, send a message, nothing overflows',
		timeoutMs: 60000,
		async run({ page, shot }) {
			await page.setViewportSize({ width: 390, height: 844 });
			const W = 390;
			const H = 844;
			const fits = async (where) => {
				const width = await page.evaluate(() => document.documentElement.scrollWidth);
				assert(width <= W, `${where}: the page is ${width} px wide at a ${W} px viewport`);
			};
			const inView = async (locator, what) => {
				const b = await locator.boundingBox();
				assert(b && b.x >= 0 && b.y >= 0 && b.x + b.width <= W + 0.5 && b.y + b.height <= H + 0.5, `${what} is inside the screen: ${JSON.stringify(b)}`);
			};
			const nav = page.locator('#nav-drawer');
			const members = page.locator('#members-drawer');
			const navShut = async () => {
				const b = await nav.boundingBox();
				return b && b.x + b.width <= 0;
			};
			const openNav = async () => {
				await page.getByRole('button', { name: 'Open channel list' }).click();
				await eventually(async () => (await nav.boundingBox())?.x === 0, 'the channel drawer slides in');
			};
			const user = newUser();
			await register(page, user);
			await fits('home');
			// Servers: the rail is in the drawer; create a server from it.
			await openNav();
			await createServer(page, 'Pocket');
			await eventually(navShut, 'the drawer closes once the channel opens');
			await fits('a channel');
			await inView(page.getByTestId('composer'), 'the composer');
			const title = await page.locator('.main-header h1').evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth, text: el.textContent }));
			assert(title.scroll <= title.client + 1, `the channel name fits in the header: ${JSON.stringify(title)}`);
			// Chat: a message typed on the phone is sent and shown within the screen width.
			await send(page, 'hello from a phone');
			const mine = page.getByTestId('message').filter({ hasText: 'hello from a phone' });
			await mine.waitFor();
			await eventually(async () => (await mine.getAttribute('class'))?.includes('pending') === false, 'the message is confirmed');
			await inView(mine, 'the sent message');
			// An unbroken long word and a long link wrap instead of widening the page.
			const long = `${'x'.repeat(180)} https://example.org/${'very-long-path-segment/'.repeat(8)}`;
			await send(page, long);
			const wrapped = page.getByTestId('message').filter({ hasText: 'x'.repeat(180) });
			await wrapped.waitFor();
			await fits('a long unbroken message');
			const list = await page.getByTestId('message-list').evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
			assert(list.scroll <= list.client, `the message list does not scroll sideways: ${JSON.stringify(list)}`);
			await shot('phone-chat');
			// Channels: make a second one from the server menu in the drawer, then switch back.
			await openNav();
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByLabel('Channel name').fill('second');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByRole('textbox', { name: 'Message #second' }).waitFor();
			await eventually(navShut, 'the drawer closes on the new channel');
			await fits('the new channel');
			await openNav();
			await shot('phone-channels');
			await page.getByTestId('channel-link').filter({ hasText: 'general' }).click();
			await page.getByRole('textbox', { name: 'Message #general' }).waitFor();
			await eventually(navShut, 'picking a channel closes the drawer');
			await mine.waitFor();
			// Members: the member drawer lists me and closes again.
			await page.getByRole('button', { name: 'Show member list' }).click();
			await eventually(async () => {
				const b = await members.boundingBox();
				return b && Math.round(b.x + b.width) === W && b.x >= 0;
			}, 'the member drawer slides in, within the screen');
			await members.getByTestId('member').filter({ hasText: user.username }).waitFor();
			await fits('the member drawer');
			await shot('phone-members');
			await page.getByRole('button', { name: 'Close member list' }).click();
			await eventually(async () => (await members.boundingBox())?.x >= W, 'the member drawer closes');
			// And back: home through the rail, then the server again, still able to send.
			await openNav();
			await page.getByRole('link', { name: 'Home' }).click();
			await page.waitForURL((u) => u.pathname === '/');
			await fits('home again');
			await openNav();
			await page.getByTestId('rail-server').first().click();
			await page.getByTestId('composer').waitFor({ state: 'visible' });
			await eventually(navShut, 'the drawer closes on the server');
			await send(page, 'and back again');
			await page.getByTestId('message').filter({ hasText: 'and back again' }).waitFor();
			await fits('back in the server');
		}
	},
	{
		name: 'keyboard only: tab order reaches rail, dialogs, channels and composer with a visible focus; Esc closes dialogs; channel switch by keyboard (Tab+Enter, Ctrl+K, Alt+arrows)',
		timeoutMs: 60000,
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await page.goto('/');
			await page.getByTestId('shell').waitFor();
			// The first stop is the skip link.
			const first = await tabTo(page, (f) => f.label === 'Skip to main content', 'the skip link', 3);
			assert(first.length <= 3, 'the skip link comes first');
			// The rail: "Create a server" opens its dialog with the focus inside; Escape closes it and
			// gives the focus back.
			await tabTo(page, (f) => f.label === 'Create a server', 'Create a server');
			await page.keyboard.press('Enter');
			const dialog = page.getByTestId('create-server-dialog');
			await dialog.waitFor({ state: 'visible' });
			await eventually(async () => (await focusInfo(page)).tag === 'input', 'the focus moves into the dialog');
			await page.keyboard.press('Escape');
			await dialog.waitFor({ state: 'hidden' });
			assert((await focusInfo(page)).label === 'Create a server', 'Escape returns the focus to the button that opened the dialog');
			// Create the server with the keyboard only.
			await page.keyboard.press('Enter');
			await dialog.waitFor({ state: 'visible' });
			await page.keyboard.type('Keys');
			await page.keyboard.press('Enter');
			await page.waitForURL(/\/servers\/\d+\/\d+$/);
			const general = page.url();
			await page.getByTestId('composer').waitFor();
			// A second channel through the server menu, by keyboard.
			await page.locator('body').focus();
			await tabTo(page, (f) => f.testid === 'server-menu-button', 'the server menu');
			await page.keyboard.press('Enter');
			await tabTo(page, (f) => f.label === 'Create channel', 'Create channel in the menu', 15);
			await page.keyboard.press('Enter');
			await page.getByTestId('create-channel-dialog').waitFor({ state: 'visible' });
			await eventually(async () => (await focusInfo(page)).tag === 'input', 'the focus is in the channel dialog');
			await page.keyboard.type('second');
			await page.keyboard.press('Enter');
			await page.getByRole('textbox', { name: 'Message #second' }).waitFor();
			// From the top of the page, Tab passes the channel links before reaching the composer.
			await page.locator('body').focus();
			const stops = await tabTo(page, (f) => f.testid === 'composer', 'the composer', 80);
			const links = stops.filter((s) => s.testid === 'channel-link').map((s) => s.label);
			assert(links.some((l) => l.includes('general')) && links.some((l) => l.includes('second')), `the channel links are in the tab order: ${links}`);
			await page.keyboard.type('typed without a mouse');
			await page.keyboard.press('Enter');
			await page.getByTestId('message').filter({ hasText: 'typed without a mouse' }).waitFor();
			await shot('composer-focus');
			// Channel switch with Tab + Enter on a channel link.
			await page.locator('body').focus();
			await tabTo(page, (f) => f.testid === 'channel-link' && f.label.includes('general'), 'the #general link');
			await shot('channel-link-focus');
			await page.keyboard.press('Enter');
			await page.waitForURL(general);
			await page.getByRole('textbox', { name: 'Message #general' }).waitFor();
			// And with the quick switcher: Ctrl+K, type, Enter; Escape closes it without moving.
			await page.keyboard.press('Control+k');
			const switcher = page.getByTestId('quick-switcher');
			await switcher.waitFor({ state: 'visible' });
			await page.keyboard.press('Escape');
			await switcher.waitFor({ state: 'hidden' });
			assert(page.url() === general, 'Escape leaves the channel as it was');
			await page.keyboard.press('Control+k');
			await switcher.waitFor({ state: 'visible' });
			await page.keyboard.type('second');
			await page.keyboard.press('Enter');
			await page.getByRole('textbox', { name: 'Message #second' }).waitFor();
			await page.getByTestId('message').filter({ hasText: 'typed without a mouse' }).waitFor();
			// Alt+↑ / Alt+↓ step through the text channels in sidebar order (and stop at the ends):
			// #second, made from the server menu, has no category and comes first, above
			// "Text channels" › #general.
			const second = page.url();
			await page.keyboard.press('Alt+ArrowDown');
			await page.waitForURL(general);
			await page.getByRole('textbox', { name: 'Message #general' }).waitFor();
			await page.keyboard.press('Alt+ArrowDown');
			await page.waitForTimeout(300);
			assert(page.url() === general, 'Alt+↓ on the last channel stays there');
			await page.keyboard.press('Alt+ArrowUp');
			await page.waitForURL(second);
			await page.getByRole('textbox', { name: 'Message #second' }).waitFor();
		}
	},
	{
		name: 'dark and light themes: the toggle overrides the system and persists across reloads and sign-out',
		async run({ page, shot }) {
			const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
			const mainBg = () => page.evaluate(() => getComputedStyle(document.querySelector('main')).backgroundColor);
			const theme = () => page.evaluate(() => document.documentElement.dataset.theme ?? 'system');
			await page.emulateMedia({ colorScheme: 'light' });
			await register(page, newUser());
			const lightBg = await mainBg();
			// system → light → dark with the toggle.
			await page.getByRole('button', { name: /^Theme: system/ }).click();
			await page.getByRole('button', { name: /^Theme: light/ }).click();
			await page.getByRole('button', { name: /^Theme: dark/ }).waitFor();
			assert((await theme()) === 'dark', 'dark chosen');
			const darkBg = await mainBg();
			assert(darkBg !== lightBg, `the dark theme changes the background (${darkBg})`);
			// Reloaded: still dark, although the system says light — already when the document is parsed,
			// before the app's code runs (no light flash).
			await page.addInitScript(() => {
				document.addEventListener('readystatechange', () => {
					if (document.readyState === 'interactive') window.__themeAtParse = document.documentElement.dataset.theme ?? 'system';
				});
			});
			await page.reload();
			await page.getByRole('button', { name: /^Theme: dark/ }).waitFor();
			assert((await theme()) === 'dark' && (await mainBg()) === darkBg, 'dark after a reload');
			assert((await page.evaluate(() => window.__themeAtParse)) === 'dark', 'dark from the first paint (set before the app starts)');
			await shot('dark-after-reload');
			// Signed out: the login page keeps it too.
			await page.getByRole('button', { name: 'Log out' }).first().click();
			await page.waitForURL((u) => u.pathname === '/login');
			assert((await theme()) === 'dark', 'dark on the login page');
			const loginDark = await bg();
			// Light chosen while the system is dark: persists as light.
			await page.emulateMedia({ colorScheme: 'dark' });
			await page.goto('/login');
			assert((await bg()) === loginDark, 'still the dark choice');
			await page.evaluate(() => localStorage.setItem('copains.theme', 'light'));
			await page.reload();
			await eventually(async () => (await theme()) === 'light', 'light applied from storage');
			assert((await bg()) !== loginDark, 'the light theme is shown although the system is dark');
			await shot('light-over-dark-system');
		}
	},
	{
		name: 'desktop notifications for mentions and DMs, only when the message is not on screen',
		timeoutMs: 60000,
		async run({ page, context, browser, baseURL, shot }) {
			await context.grantPermissions(['notifications']);
			// Record each notification the app constructs (real ones are still created).
			await context.addInitScript(() => {
				const Real = window.Notification;
				window.__notes = [];
				window.__noteObjects = [];
				window.Notification = class extends Real {
					constructor(title, options) {
						super(title, options);
						window.__notes.push({ title, body: options?.body ?? '' });
						window.__noteObjects.push(this);
					}
				};
			});
			const notes = () => page.evaluate(() => window.__notes);
			const alice = newUser();
			await register(page, alice);
			await page.goto('/settings');
			await page.getByRole('button', { name: 'Turn on desktop notifications' }).click();
			await page.getByText('Desktop notifications are on').waitFor();
			await page.goto('/');
			await createServer(page, 'Bells');
			const link = await createInvite(page);
			const bob = newUser();
			const bctx = await browser.newContext({ baseURL });
			try {
				const b = await bctx.newPage();
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.getByRole('textbox', { name: 'Message #general' }).waitFor();
				await b.getByTestId('member').nth(1).waitFor();
				const bobApi = await apiAs(baseURL, bob);
				const aliceApi = await apiAs(baseURL, alice);

				// A mention in the channel alice has open, tab visible and focused: no notification.
				await send(b, `@${alice.username} are you there?`);
				await eventually(async () => (await texts(page)).some((t) => t.includes('are you there?')), 'alice sees the mention');
				await page.waitForTimeout(500);
				assert((await notes()).length === 0, `no notification for a message on screen: ${JSON.stringify(await notes())}`);

				// A DM (end-to-end encrypted: the server relays an envelope) notifies even on a server page.
				const dm = await bobApi.call('POST', '/users/@me/channels', { recipients: [aliceApi.id] });
				assert(dm.status === 200 || dm.status === 201, `DM opened: ${dm.status} ${JSON.stringify(dm.body)}`);
				const env = { algorithm: 'm.olm.v1.curve25519-aes-sha2', sender_device_id: 'TESTDEVICE', session_id: 'test-session', ciphertext: Buffer.from('opaque to the server').toString('base64') };
				const sent = await bobApi.call('POST', `/channels/${dm.body.id}/messages`, { encrypted: env, nonce: 'dm-1' });
				assert(sent.status === 201, `DM sent: ${sent.status} ${JSON.stringify(sent.body)}`);
				const afterDm = await eventually(async () => ((await notes()).length === 1 ? await notes() : null), 'a notification for the DM');
				assert(afterDm[0].title === `${bob.username} (direct message)` && afterDm[0].body === 'New encrypted message', `DM notification: ${JSON.stringify(afterDm)}`);
				// Clicking it navigates inside the app (no reload); Back returns to the channel.
				const channelUrl = page.url();
				await page.evaluate(() => {
					window.__sameDocument = true;
					window.__noteObjects[0].onclick();
				});
				await page.waitForURL((u) => u.pathname === `/dms/${dm.body.id}`);
				assert(await page.evaluate(() => window.__sameDocument === true), 'the click navigated without reloading the app');
				await page.goBack();
				await page.waitForURL(channelUrl);
				await page.getByRole('textbox', { name: 'Message #general' }).waitFor();

				// Alice's window loses the focus to another tab (Playwright's focus emulation is turned off
				// for her page so that the browser's real focus counts): a mention in the very channel she
				// has open now notifies.
				const cdp = await context.newCDPSession(page);
				await cdp.send('Emulation.setFocusEmulationEnabled', { enabled: false });
				const other = await context.newPage();
				await other.goto('about:blank');
				await other.bringToFront();
				await eventually(async () => !(await page.evaluate(() => document.hasFocus())), 'alice’s tab is in the background');
				await send(b, `@${alice.username} wake up`);
				const n = await eventually(async () => ((await notes()).length === 2 ? await notes() : null), 'a notification while the tab is in the background');
				assert(/in #general/.test(n[1].title) && n[1].body === `@${alice.username} wake up`, `background notification: ${JSON.stringify(n[1])}`);
				// Back in front: a mention on screen is quiet again.
				await other.close();
				await page.bringToFront();
				await eventually(async () => page.evaluate(() => document.hasFocus()), 'alice’s tab has the focus again');
				await send(b, `@${alice.username} welcome back`);
				await eventually(async () => (await texts(page)).some((t) => t.includes('welcome back')), 'alice sees it');
				await page.waitForTimeout(500);
				assert((await notes()).length === 2, `no notification once the tab is in front: ${JSON.stringify(await notes())}`);
				await cdp.send('Emulation.setFocusEmulationEnabled', { enabled: true });
				// A plain message (no mention) in a server never notifies.
				const before = (await notes()).length;
				await send(b, 'nothing for anyone');
				await eventually(async () => (await texts(page)).includes('nothing for anyone'), 'alice sees the plain message');
				await page.waitForTimeout(500);
				assert((await notes()).length === before, 'no notification without a mention');
				await shot('after-notifications');
			} finally {
				await bctx.close().catch(() => {});
			}
		}
	},
	{
		name: 'offline: the banner shows, a message sent meanwhile fails visibly; back online the banner goes, Retry sends, live again',
		timeoutMs: 60000,
		async run({ page, context, baseURL, shot }) {
			const user = newUser();
			await register(page, user);
			await createServer(page, 'Flaky');
			const channel = page.url().split('/').pop();
			const banner = page.getByTestId('connection-banner');
			await context.setOffline(true);
			await banner.waitFor({ state: 'visible' });
			assert(/offline/i.test((await banner.textContent()) ?? ''), 'the banner says offline');
			assert((await banner.getAttribute('role')) === null && (await page.locator('[role="status"]').filter({ has: banner }).count()) === 1, 'the banner is announced (role=status)');
			await send(page, 'sent while offline');
			const failed = page.getByTestId('message').filter({ hasText: 'sent while offline' });
			await failed.getByText('Not sent:').waitFor({ timeout: 15000 });
			await failed.getByRole('button', { name: 'Retry' }).waitFor();
			await shot('offline-failed-send');
			await context.setOffline(false);
			await banner.waitFor({ state: 'detached', timeout: 20000 });
			await failed.getByRole('button', { name: 'Retry' }).click();
			await eventually(async () => (await failed.getByText('Not sent:').count()) === 0 && !(await failed.getAttribute('class'))?.includes('pending'), 'the retried message is confirmed');
			// Live again: a message posted elsewhere arrives through the gateway.
			const api = await apiAs(baseURL, user);
			const r = await api.call('POST', `/channels/${channel}/messages`, { content: 'from another device' });
			assert(r.status === 201, `posted: ${r.status}`);
			await eventually(async () => (await texts(page)).includes('from another device'), 'the gateway delivers again after the reconnect', 15000);
			const all = await texts(page);
			assert(all.filter((t) => t === 'sent while offline').length === 1, 'the retried message is shown once');
		}
	},
	{
		name: 'failing requests show a sentence a person reads, never the server’s own text',
		async run({ page, baseURL }) {
			const user = newUser();
			await register(page, user);
			const api = await apiAs(baseURL, user);
			// An unknown invite: the invite page says so in sentences, not with the server's text.
			const code = 'nosuchcode1';
			const direct = await api.call('GET', `/invites/${code}`);
			assert(direct.status === 404 && direct.body?.message, `the server refuses with a message: ${JSON.stringify(direct)}`);
			await page.getByRole('button', { name: 'Join a server' }).click();
			await page.getByLabel('Invite link or code').fill(code);
			await page.getByLabel('Invite link or code').press('Enter');
			await page.getByText('This invite does not work').waitFor();
			const error = page.getByTestId('invite-card').getByRole('alert');
			await error.waitFor({ state: 'visible' });
			const shown = ((await error.textContent()) ?? '').trim();
			assert(shown === 'That was not found. It may have been deleted.', `shown "${shown}"`);
			assert(!shown.includes(direct.body.message), `the server's text "${direct.body.message}" is not shown`);
			// A wrong current password in settings: a sentence again.
			const wrong = await api.call('POST', '/users/@me/password', { current_password: 'not my password at all', new_password: 'another long password' });
			assert(wrong.status >= 400 && wrong.status < 500 && wrong.body?.code, `the server refuses the password change: ${JSON.stringify(wrong)}`);
			await page.goto('/settings');
			await page.getByLabel('Current password').fill('not my password at all');
			await page.getByLabel('New password', { exact: true }).fill('another long password');
			await page.getByLabel('Confirm new password').fill('another long password');
			await page.getByRole('button', { name: 'Change password' }).click();
			const pwError = page.locator('section[aria-labelledby="password-h"]').getByRole('alert');
			await pwError.waitFor({ state: 'visible' });
			const pw = ((await pwError.textContent()) ?? '').trim();
			assert(/^[A-Z].*[.!?]$/.test(pw) && pw !== wrong.body.message, `shown "${pw}" (a sentence), the server said "${wrong.body.message}"`);
		}
	}
];
