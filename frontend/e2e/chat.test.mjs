// Servers, invites, channels and live chat between two browsers against a real `copains serve`
// (issue 8, second part). Everything goes through the UI; live updates come through the gateway.
import { assert, createInvite, createServer, eventually, newUser, register, send } from './lib.mjs';

const XSS = '<img src=x onerror="window.__xss=1">';

/** Opens a second, independent browser (its own cookies) whose page errors fail the test. */
async function secondBrowser(browser, baseURL) {
	const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
	context.setDefaultTimeout(10000);
	const page = await context.newPage();
	const errors = [];
	page.on('pageerror', (e) => errors.push(e));
	return { context, page, errors };
}

/** The texts of the messages shown, in order. */
async function texts(page) {
	return (await page.getByTestId('message-content').allTextContents()).map((t) => t.trim());
}

export default [
	{
		name: 'two users: create a server, invite, join by link, chat live, typing, markdown, attachments, edit, reactions, pins, replies, threads, unread, search, roles, presence, delete, XSS as text, leave',
		timeoutMs: 90000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Copains ${alice.username.slice(4)}`);
			assert((await page.getByTestId('rail-server').count()) === 1, 'the new server is in the rail');
			const link = await createInvite(page);
			assert(link.startsWith(baseURL), `the invite link is on this site: ${link}`);

			const b = await secondBrowser(browser, baseURL);
			try {
				await register(b.page, bob);
				// The invite link works for a signed-in user: preview, then join.
				await b.page.goto(link);
				await b.page.getByTestId('invite-server-name').waitFor();
				await shot('invite-preview', b.page);
				await b.page.getByRole('button', { name: 'Accept invite' }).click();
				await b.page.waitForURL(/\/servers\/\d+\/\d+$/);
				await b.page.getByTestId('composer').waitFor({ state: 'visible' });

				// Alice sees Bob join in the member list (member_add through the gateway).
				await eventually(async () => (await page.getByTestId('member').count()) === 2, 'alice sees two members');
				await eventually(async () => (await b.page.getByTestId('member').count()) === 2, 'bob sees two members');

				// Live chat both ways.
				await send(page, 'hello bob');
				await eventually(async () => (await texts(b.page)).includes('hello bob'), 'bob sees alice’s message live');
				// Typing: bob types, alice sees the indicator (typing_start through the gateway).
				await b.page.getByTestId('composer').fill('hi al');
				await eventually(async () => /is typing/.test((await page.getByTestId('typing').textContent()) ?? ''), 'alice sees bob typing');
				await b.page.getByTestId('composer').fill('');
				await send(b.page, 'hi alice');
				await eventually(async () => (await texts(page)).includes('hi alice'), 'alice sees bob’s message live');
				const author = await page.getByTestId('message').filter({ hasText: 'hi alice' }).getByTestId('message-author').textContent();
				assert(author?.trim() === bob.username, `bob's message is signed ${author}`);

				// Mentions: bob types @ and part of alice's name, picks her with Tab; alice sees a highlighted mention.
				await b.page.getByTestId('composer').pressSequentially(`@${alice.username.slice(0, 6)}`);
				await b.page.getByTestId('mention-suggestions').waitFor();
				await b.page.getByTestId('composer').press('Tab');
				assert((await b.page.getByTestId('composer').inputValue()) === `@${alice.username} `, 'the name is completed');
				await b.page.getByTestId('composer').pressSequentially('look at this');
				await b.page.getByTestId('composer').press('Enter');
				const mention = page.getByTestId('message').filter({ hasText: 'look at this' });
				await eventually(async () => (await mention.count()) === 1, 'alice gets the mention');
				assert((await mention.locator('.mention').textContent())?.trim() === `@${alice.username}`, 'shown as a mention of alice');
				assert(/\bmentioned\b/.test((await mention.getAttribute('class')) ?? ''), 'a message mentioning me is highlighted');

				// Shift+Enter makes a new line instead of sending.
				await b.page.getByTestId('composer').fill('line one');
				await b.page.getByTestId('composer').press('Shift+Enter');
				await b.page.getByTestId('composer').pressSequentially('line two');
				await b.page.getByTestId('composer').press('Enter');
				await eventually(async () => (await texts(page)).includes('line one\nline two'), 'a two-line message arrives');

				// An XSS payload is shown as text on both sides, never as markup.
				await send(page, XSS);
				await eventually(async () => (await texts(b.page)).includes(XSS), 'bob sees the payload as text');
				const imgs = await b.page.getByTestId('message-list').locator('img').count();
				assert(imgs === 0, 'no <img> element was created from a message');
				assert(!(await b.page.evaluate(() => window.__xss)) && !(await page.evaluate(() => window.__xss)), 'the onerror handler never ran');

				// Safe markdown: formatting becomes elements, links only for http(s), with rel=noopener.
				await send(page, '**bold** and `code` see https://example.test/x and javascript:alert(1)');
				const md = b.page.getByTestId('message').filter({ hasText: 'see https://example.test/x' });
				await eventually(async () => (await md.count()) === 1, 'bob gets the formatted message');
				assert((await md.locator('strong').textContent()) === 'bold', 'bold');
				assert((await md.locator('code').textContent()) === 'code', 'code');
				const links = md.locator('.content a');
				assert((await links.count()) === 1, 'one link (javascript: is not a link)');
				assert((await links.getAttribute('href')) === 'https://example.test/x' && /noopener/.test((await links.getAttribute('rel')) ?? ''), 'a safe link');

				// Attachments: alice sends a picture and a text file; bob sees the picture inline and downloads the file.
				const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAFklEQVR42mNk+M9Qz0AEYBxVSF+FAP5FDvcfRYWgAAAAAElFTkSuQmCC', 'base64');
				await page.getByTestId('file-input').setInputFiles([
					{ name: 'dot.png', mimeType: 'image/png', buffer: png },
					{ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello file') }
				]);
				await eventually(async () => ((await page.getByTestId('uploads').textContent()) ?? '').split('ready').length === 3, 'both files uploaded');
				await send(page, 'files!');
				const withFiles = b.page.getByTestId('message').filter({ hasText: 'files!' });
				await eventually(async () => (await withFiles.count()) === 1, 'bob gets the message with files');
				const img = withFiles.getByTestId('attachment-image');
				await eventually(async () => (await img.count()) === 1 && (await img.evaluate((el) => el.complete && el.naturalWidth === 2 && el.src.startsWith('blob:'))), 'the picture is shown inline');
				const download = b.page.waitForEvent('download');
				await withFiles.getByTestId('attachment-file').click();
				const file = await download;
				assert(file.suggestedFilename() === 'notes.txt', `downloaded as ${file.suggestedFilename()}`);
				const { readFile } = await import('node:fs/promises');
				assert((await readFile(await file.path(), 'utf8')) === 'hello file', 'the file content arrives intact');

				// Edit propagates.
				const mine = page.getByTestId('message').filter({ hasText: 'hello bob' });
				await mine.hover();
				await mine.getByRole('button', { name: 'Edit message' }).click();
				const box = page.getByLabel('Edited message text');
				await box.fill('hello bob (fixed)');
				await box.press('Enter');
				await eventually(async () => (await texts(b.page)).some((t) => t.startsWith('hello bob (fixed)')), 'bob sees the edit');
				assert(/\(edited\)/.test((await b.page.getByTestId('message').filter({ hasText: 'hello bob (fixed)' }).textContent()) ?? ''), 'marked as edited');

				// Presence: bob sets do-not-disturb, alice's member list shows it.
				await b.page.getByTestId('status-select').selectOption('dnd');
				await eventually(
					async () => (await page.locator(`[data-testid=member][data-username="${bob.username}"]`).getAttribute('data-presence')) === 'dnd',
					'alice sees bob as do not disturb'
				);
				// A custom status travels with presence.
				await b.page.getByTestId('custom-status').fill('Out to lunch');
				await b.page.getByTestId('custom-status').press('Tab');
				await eventually(
					async () => /Out to lunch/.test((await page.locator(`[data-testid=member][data-username="${bob.username}"]`).textContent()) ?? ''),
					'alice sees bob’s custom status'
				);
				await b.page.getByTestId('custom-status').fill('');
				await b.page.getByTestId('custom-status').press('Tab');

				// Reactions: bob reacts to alice's message, alice sees it live and adds hers.
				const fixed = (p) => p.getByTestId('message').filter({ hasText: 'hello bob (fixed)' });
				await fixed(b.page).hover();
				await fixed(b.page).getByRole('button', { name: 'Add reaction' }).click();
				await fixed(b.page).getByRole('button', { name: 'React with 👍' }).click();
				await eventually(async () => ((await fixed(page).getByTestId('reaction').textContent()) ?? '').trim() === '👍 1', 'alice sees bob’s reaction');
				await fixed(page).getByTestId('reaction').click();
				await eventually(async () => ((await fixed(b.page).getByTestId('reaction').textContent()) ?? '').trim() === '👍 2', 'bob sees two reactions');
				await eventually(async () => (await fixed(page).getByTestId('reaction').getAttribute('aria-pressed')) === 'true', 'alice’s reaction is marked as hers');

				// Pins: alice (owner) pins her message, bob sees the mark live and finds it in the pinned panel;
				// bob (no MANAGE_MESSAGES) has no pin button.
				await fixed(page).hover();
				await fixed(page).getByRole('button', { name: 'Pin message' }).click();
				await fixed(b.page).getByTestId('pinned-mark').waitFor();
				await fixed(b.page).hover();
				assert((await fixed(b.page).getByRole('button', { name: 'Pin message' }).count()) === 0, 'bob cannot pin');
				await b.page.getByRole('button', { name: 'Pinned messages' }).click();
				await eventually(async () => /hello bob \(fixed\)/.test((await b.page.getByTestId('pinned-message').first().textContent()) ?? ''), 'bob sees the pin in the panel');
				await b.page.getByTestId('pins-panel').getByRole('button', { name: 'Close' }).click();

				// Replies: bob replies to alice's message; alice sees the quote.
				await fixed(b.page).hover();
				await fixed(b.page).getByRole('button', { name: 'Reply' }).click();
				await b.page.getByTestId('replying').waitFor();
				await send(b.page, 'replying here');
				const reply = page.getByTestId('message').filter({ hasText: 'replying here' });
				await eventually(async () => (await reply.count()) === 1, 'alice sees the reply');
				const quote = (await reply.getByTestId('reply-quote').textContent()) ?? '';
				assert(quote.includes('hello bob (fixed)') && quote.includes(alice.username), `the reply quotes alice's message: ${quote}`);

				// Threads: alice starts one from bob's reply and writes in it; bob finds it in the threads panel,
				// reads it and answers; alice sees the answer live in her thread pane.
				await reply.hover();
				await reply.getByRole('button', { name: 'Start a thread' }).click();
				await page.getByLabel('Thread name').fill('side talk');
				await page.getByTestId('thread-dialog').getByRole('button', { name: 'Start thread' }).click();
				await page.getByTestId('thread-pane').waitFor();
				await page.getByTestId('thread-composer').fill('in the thread');
				await page.getByTestId('thread-composer').press('Enter');
				await page.getByTestId('thread-pane').getByText('in the thread').waitFor();
				await b.page.getByRole('button', { name: 'Threads' }).click();
				await b.page.getByTestId('thread-item').filter({ hasText: 'side talk' }).click();
				await b.page.getByTestId('thread-pane').getByText('in the thread').waitFor();
				await b.page.getByTestId('thread-composer').fill('thread reply');
				await b.page.getByTestId('thread-composer').press('Enter');
				await page.getByTestId('thread-pane').getByText('thread reply').waitFor();
				await shot('alice-thread');
				assert((await page.getByTestId('thread-link').filter({ hasText: 'side talk' }).count()) === 1, 'the starter message links to its thread');
				await eventually(async () => (await b.page.getByTestId('thread-link').filter({ hasText: 'side talk' }).count()) === 1, 'bob sees the thread link too');
				assert((await page.getByTestId('channel-link').filter({ hasText: 'side talk' }).count()) === 0, 'a thread is not listed as a channel');
				await page.getByRole('button', { name: 'Close thread' }).click();
				await b.page.getByRole('button', { name: 'Close thread' }).click();
				await page.getByTestId('member-list').waitFor();

				// Unread badge backed by read states: bob writes in another channel while alice reads #general.
				const general = page.url();
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Create channel', exact: true }).click();
				await page.getByLabel('Channel name').fill('random');
				await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
				await page.waitForURL((u) => u.href !== general);
				await page.goto(general);
				await page.getByTestId('composer').waitFor();
				const bobRandom = b.page.getByTestId('channel-link').filter({ hasText: 'random' });
				await bobRandom.waitFor();
				await bobRandom.click();
				await b.page.getByRole('textbox', { name: 'Message #random' }).waitFor();
				await send(b.page, 'psst, over here');
				const badge = page.getByTestId('channel-link').filter({ hasText: 'random' }).getByTestId('unread-badge');
				await eventually(async () => ((await badge.textContent()) ?? '').replace('unread:', '').trim() === '1', 'alice sees one unread in #random');
				await shot('alice-unread');
				const acked = page.waitForResponse((r) => /\/messages\/\d+\/ack$/.test(r.url()) && r.ok());
				await page.getByTestId('channel-link').filter({ hasText: 'random' }).click();
				await eventually(async () => (await texts(page)).includes('psst, over here'), 'alice reads #random');
				// The "new" divider sits right above the first unread message.
				const next = page.getByTestId('unread-divider').locator('xpath=following-sibling::*[1]');
				assert(((await next.getByTestId('message-content').textContent()) ?? '').includes('psst, over here'), 'the divider is above the unread message');
				await acked; // the read is acknowledged to the server
				await eventually(async () => (await badge.count()) === 0, 'the badge goes once read');
				// The read is stored on the server: after a reload, no badge comes back.
				await page.goto(general);
				await page.getByTestId('composer').waitFor();
				await page.waitForTimeout(500);
				assert((await badge.count()) === 0, 'no unread badge after a reload');
				await b.page.getByTestId('channel-link').filter({ hasText: 'general' }).click();
				await b.page.getByRole('textbox', { name: 'Message #general' }).waitFor();

				// Search: alice finds bob's message in #random from #general and jumps there.
				await page.getByRole('searchbox', { name: /Search messages/ }).fill('psst');
				await page.getByRole('searchbox', { name: /Search messages/ }).press('Enter');
				const hit = page.getByTestId('search-result');
				await eventually(async () => (await hit.count()) === 1, 'one search result');
				assert(/#random/.test((await hit.textContent()) ?? '') && /psst, over here/.test((await hit.textContent()) ?? ''), 'the result names the channel and shows the text');
				await shot('alice-search');
				await hit.click();
				await page.getByRole('textbox', { name: 'Message #random' }).waitFor();
				await page.getByTestId('search-results').getByRole('button', { name: 'Close' }).click();
				await page.getByTestId('member-list').waitFor();
				await page.goto(general);
				await page.getByTestId('composer').waitFor();

				await shot('alice-chat');
				await shot('bob-chat', b.page);
				await page.emulateMedia({ colorScheme: 'dark' });
				await b.page.emulateMedia({ colorScheme: 'dark' });
				await shot('alice-chat-dark');

				// Roles and nicknames: alice gives bob a hoisted, coloured role and a nickname; both lists follow live.
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Create role' }).click();
				await page.getByLabel('Role name').fill('Moderators');
				await page.getByTestId('create-role-dialog').getByRole('button', { name: 'Create role' }).click();
				await page.getByTestId('create-role-dialog').waitFor({ state: 'hidden' });
				await page.locator(`[data-testid=member][data-username="${bob.username}"] button.row`).click();
				await page.getByTestId('member-card').getByLabel('Moderators').check();
				await eventually(async () => (await page.getByTestId('member-card').getByLabel('Moderators').isChecked()), 'the role is assigned');
				// Bob has no MANAGE_ROLES: his card shows the roles but cannot change them, and his menu has no "Create role".
				await b.page.locator(`[data-testid=member][data-username="${bob.username}"] button.row`).click();
				assert(await b.page.getByTestId('member-card').getByLabel('Moderators').isDisabled(), 'bob cannot assign roles');
				await b.page.locator(`[data-testid=member][data-username="${bob.username}"] button.row`).click();
				await b.page.getByTestId('server-menu-button').click();
				assert((await b.page.getByRole('button', { name: 'Create role' }).count()) === 0, 'no Create role for bob');
				await b.page.getByTestId('server-menu-button').click();
				// Alice lets Moderators manage messages: bob's pin button appears live (role_update).
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Roles and permissions' }).click();
				await page.getByTestId('roles-panel').getByLabel('Role', { exact: true }).selectOption({ label: 'Moderators' });
				await page.getByTestId('roles-panel').getByLabel("Delete and pin others' messages").check();
				await page.getByRole('button', { name: 'Save permissions' }).click();
				await page.getByTestId('roles-panel').getByText('Saved.').waitFor();
				await page.getByTestId('roles-dialog').getByRole('button', { name: 'Close' }).click();
				const aliceMsg = b.page.getByTestId('message').filter({ hasText: 'hello bob (fixed)' }).first();
				await eventually(async () => {
					await aliceMsg.hover();
					return (await aliceMsg.getByRole('button', { name: /Pin message|Unpin message/ }).count()) === 1;
				}, 'bob may now pin');
				// Bob sets his own nickname from his member card.
				await b.page.locator(`[data-testid=member][data-username="${bob.username}"] button.row`).click();
				await b.page.getByTestId('member-card').getByLabel('Nickname').fill('Bobby');
				await b.page.getByTestId('member-card').getByRole('button', { name: 'Save' }).click();
				await b.page.locator(`[data-testid=member][data-username="${bob.username}"] button.row`).click();
				for (const p of [page, b.page]) {
					const entry = p.getByTestId('member').filter({ hasText: 'Bobby' });
					await eventually(async () => (await entry.count()) === 1, 'bob is shown by his nickname');
					await eventually(async () => /Moderators/.test((await entry.textContent()) ?? ''), 'with his role');
				}
				// Online members are grouped under their hoisted role.
				await eventually(async () => (await b.page.getByTestId('member-list').textContent())?.includes('Moderators — 1'), 'a Moderators group');
				await eventually(
					async () => (await page.getByTestId('message-author').allTextContents()).some((t) => t.trim() === 'Bobby'),
					'messages are signed with the nickname'
				);
				await shot('alice-roles');

				// Delete propagates.
				const own = b.page.getByTestId('message').filter({ hasText: 'hi alice' });
				await own.hover();
				await own.getByRole('button', { name: 'Delete message' }).click({ modifiers: ['Shift'] }); // Shift: no "are you sure?"
				await eventually(async () => !(await texts(page)).includes('hi alice'), 'alice no longer sees the deleted message');
				assert(!(await texts(b.page)).includes('hi alice'), 'bob no longer sees it either');

				// Leaving the server removes it from bob's rail and bob from alice's member list.
				await b.page.getByTestId('server-menu-button').click();
				await b.page.getByRole('button', { name: 'Leave server' }).click();
				await b.page.getByTestId('leave-dialog').getByRole('button', { name: 'Leave server' }).click();
				await b.page.waitForURL((u) => u.pathname === '/');
				await eventually(async () => (await b.page.getByTestId('rail-server').count()) === 0, 'the server left bob’s rail');
				await eventually(async () => (await page.getByTestId('member').count()) === 1, 'bob left alice’s member list');
				if (b.errors.length) throw new Error(`error in bob's page: ${b.errors[0].stack ?? b.errors[0]}`);
			} finally {
				await b.context.close().catch(() => {});
			}
		}
	},
	{
		name: 'history loads older pages on scroll, renders a bounded window, jumps to a search result and back to the present',
		timeoutMs: 60000,
		async run({ page, shot }) {
			const user = newUser();
			await register(page, user);
			await createServer(page, 'History');
			const channelId = page.url().split('/').pop();
			// Seed 260 messages through the API with the page's own session (same cookie, fresh token).
			const N = 260;
			await page.evaluate(
				async ({ id, n }) => {
					const r = await fetch('/api/v1/auth/refresh', { method: 'POST', headers: { 'X-Copains-Client': 'web', 'Content-Type': 'application/json' }, body: '{}' });
					const { access_token } = await r.json();
					for (let i = 1; i <= n; i++) {
						await fetch(`/api/v1/channels/${id}/messages`, {
							method: 'POST',
							headers: { Authorization: `Bearer ${access_token}`, 'Content-Type': 'application/json', 'X-Copains-Client': 'web' },
							body: JSON.stringify({ content: `seed ${i}`, nonce: `seed-${i}` })
						});
					}
				},
				{ id: channelId, n: N }
			);
			await page.reload();
			await page.getByTestId('composer').waitFor({ state: 'visible' });
			await eventually(async () => (await texts(page)).at(-1) === `seed ${N}`, 'the newest message is shown at the bottom');
			const first = (await texts(page)).length;
			assert(first === 50, `the first page holds 50 messages, got ${first}`);
			// A search result far back in the history opens the channel at that message.
			await page.getByRole('searchbox', { name: /Search messages/ }).fill('seed 7');
			await page.getByRole('searchbox', { name: /Search messages/ }).press('Enter');
			const result = page.getByTestId('search-result').filter({ hasText: /seed 7$/ });
			await result.waitFor();
			await result.click();
			const target = page.getByTestId('message').filter({ has: page.getByTestId('message-content').getByText('seed 7', { exact: true }) });
			await eventually(async () => (await target.count()) === 1 && (await target.evaluate((el) => {
				const r = el.getBoundingClientRect();
				return r.top >= 0 && r.bottom <= window.innerHeight;
			})), 'the found message is loaded and in view', 20000);
			await shot('jump-to-result');
			await page.getByTestId('search-results').getByRole('button', { name: 'Close' }).click();
			await page.getByRole('button', { name: 'Jump to present' }).click();
			await eventually(async () => (await texts(page)).at(-1) === `seed ${N}`, 'back at the newest message');
			// Scroll to the top until the first message is there; the DOM never holds more than 200.
			let most = 0;
			const seen = new Set(await texts(page));
			await eventually(
				async () => {
					await page.getByTestId('message-list').evaluate((el) => {
						el.scrollTop = 0;
						el.dispatchEvent(new Event('scroll'));
					});
					const now = await texts(page);
					now.forEach((t) => seen.add(t));
					most = Math.max(most, now.length);
					return now[0] === 'seed 1';
				},
				'older pages load on scroll up to the first message',
				30000
			);
			assert(most <= 200, `at most 200 messages rendered, saw ${most}`);
			assert(seen.size === N, `every message was shown once on the way up (${seen.size})`);
			const top = await texts(page);
			for (let i = 1; i < top.length; i++) assert(top[i] === `seed ${i + 1}`, `in order without gaps: ${top[i]} at ${i}`);
			await page.getByText('This is the start of the #general channel.').waitFor();
			await page.getByTestId('older-view').waitFor();
			await shot('history-top');
			// Back to the present in one click.
			await page.getByRole('button', { name: 'Jump to present' }).click();
			await eventually(async () => (await texts(page)).at(-1) === `seed ${N}`, 'back at the newest message');
			await page.getByTestId('older-view').waitFor({ state: 'detached' });
			// Scrolling down from the top also walks back to the present.
			await eventually(
				async () => {
					await page.getByTestId('message-list').evaluate((el) => {
						el.scrollTop = 0;
						el.dispatchEvent(new Event('scroll'));
					});
					return (await texts(page))[0] === 'seed 1';
				},
				'back at the top'
			);
			await eventually(
				async () => {
					await page.getByTestId('message-list').evaluate((el) => {
						el.scrollTop = el.scrollHeight;
						el.dispatchEvent(new Event('scroll'));
					});
					return (await page.getByTestId('older-view').count()) === 0 && (await texts(page)).at(-1) === `seed ${N}`;
				},
				'scrolling down reaches the present'
			);
		}
	},
	{
		name: 'an encrypted channel shows a lock and an encrypted composer; channel and server settings',
		async run({ page, shot }) {
			await register(page, newUser());
			await createServer(page, 'Secret');
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByLabel('Channel name').fill('vault');
			await page.getByLabel('End-to-end encrypted').check();
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			// (Sending and reading there is e2ee.test.mjs's.)
			await page.getByTestId('e2ee-start').waitFor();
			await page.getByTestId('composer-lock').waitFor();
			assert((await page.getByTestId('channel-link').filter({ hasText: 'vault' }).getByLabel('encrypted').count()) === 1, 'the sidebar shows a lock');
			// A voice channel and a category appear too.
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByRole('radio', { name: 'Category' }).check();
			await page.getByLabel('Category name').fill('Lounge');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('channel-list').getByText('Lounge').waitFor();
			await page.getByRole('button', { name: 'Create channel in Lounge' }).click();
			await page.getByRole('radio', { name: 'Voice' }).check();
			await page.getByLabel('Channel name').fill('Hangout');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('channel-list').getByText('Hangout').waitFor();
			await shot('encrypted-channel');
			// Ctrl+K jumps to a channel by name.
			await page.getByTestId('channel-list').getByText('general', { exact: true }).click();
			await page.getByTestId('composer').waitFor();
			await page.keyboard.press('Control+k');
			await page.getByLabel('Channel or server name').fill('vau');
			await page.getByLabel('Channel or server name').press('Enter');
			await page.getByTestId('composer-lock').waitFor();
			// A voice channel offers to join (calls themselves: e2e/voice.test.mjs).
			await page.getByTestId('channel-list').getByText('Hangout').click();
			await page.getByTestId('voice-join').getByRole('button', { name: 'Join voice' }).waitFor();
			await page.getByTestId('channel-list').getByText('vault').click();
			await page.getByTestId('composer-lock').waitFor();
			// Channel settings: rename and give a topic (the header shows it), then delete.
			await page.getByRole('button', { name: 'Edit channel Hangout' }).click();
			await page.getByLabel('Channel name').fill('Lounge talk');
			await page.getByTestId('edit-channel-dialog').getByRole('button', { name: 'Save', exact: true }).click();
			await page.getByTestId('channel-list').getByText('Lounge talk').waitFor();
			await page.getByRole('button', { name: 'Edit channel vault' }).click();
			await page.getByLabel('Topic').fill('keys and secrets');
			await page.getByTestId('edit-channel-dialog').getByRole('button', { name: 'Save', exact: true }).click();
			await eventually(async () => (await page.getByTestId('channel-topic').textContent())?.trim() === 'keys and secrets', 'the topic shows in the header');
			await page.getByRole('button', { name: 'Edit channel Lounge talk' }).click();
			await page.getByRole('button', { name: 'Delete channel' }).click();
			await page.getByRole('button', { name: 'Really delete?' }).click();
			await eventually(async () => (await page.getByTestId('channel-list').getByText('Lounge talk').count()) === 0, 'the channel is gone');
			// Server settings: rename the server; the rail and header follow.
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Server settings' }).click();
			await page.getByLabel('Server name').fill('Secret Society');
			await page.getByTestId('server-settings-dialog').getByRole('button', { name: 'Save' }).click();
			await eventually(async () => (await page.getByTestId('server-menu-button').textContent())?.includes('Secret Society'), 'renamed');
			assert((await page.getByTestId('rail-server').getAttribute('aria-label')) === 'Secret Society', 'the rail follows');
		}
	},
	{
		name: 'an invite link opened while signed out shows the server and its counts, and registration joins it; timeout and retry, kick, ban, unban, audit log; phone layout',
		timeoutMs: 60000,
		async run({ page, browser, baseURL, shot }) {
			await register(page, newUser());
			await createServer(page, 'Newcomers');
			const link = await createInvite(page);
			const b = await secondBrowser(browser, baseURL);
			try {
				const guest = newUser();
				await b.page.goto(link);
				// Signed out, the invite sells itself: the server's name, its member and online
				// counts, and a way in either way; nothing asks to log in first.
				await b.page.getByTestId('invite-server-name').waitFor();
				assert((await b.page.getByTestId('invite-server-name').textContent())?.trim() === 'Newcomers', 'the invite shows the server name');
				const counts = (await b.page.getByTestId('invite-counts').textContent()) ?? '';
				assert(/1 member/.test(counts) && /online/.test(counts), `member and online counts: ${counts}`);
				assert((await b.page.getByRole('link', { name: 'Log in to join' }).count()) === 1, 'Log in to join');
				assert((await b.page.getByRole('button', { name: 'Accept invite' }).count()) === 0, 'no Accept while signed out');
				await b.page.getByRole('link', { name: 'Create an account to join' }).click();
				await b.page.waitForURL((u) => u.pathname === '/register' && u.searchParams.get('next')?.startsWith('/invite/'));
				await b.page.getByLabel('Username').fill(guest.username);
				await b.page.getByLabel('Email').fill(guest.email);
				await b.page.getByLabel('Password').fill(guest.password);
				await b.page.getByLabel('Password').press('Enter');
				// Back from registration the invite joins at once and lands in the server.
				await b.page.waitForURL((u) => u.pathname.startsWith('/servers/'));
				await b.page.getByTestId('composer').waitFor();
				// A timeout: the newcomer's message is refused and kept with Retry; once the timeout ends,
				// Retry sends it (same nonce: exactly one message).
				await eventually(async () => (await page.getByTestId('member').count()) === 2, 'two members');
				const guestRow = page.locator(`[data-testid=member][data-username="${guest.username}"] button.row`);
				await guestRow.click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Time out 10 min' }).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'End timeout' }).waitFor();
				await send(b.page, 'am I muted?');
				const refused = b.page.getByTestId('message').filter({ hasText: 'am I muted?' });
				await refused.getByText('Not sent:').waitFor();
				await page.getByTestId('member-card').getByRole('button', { name: 'End timeout' }).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Time out 10 min' }).waitFor();
				await guestRow.click();
				await refused.getByRole('button', { name: 'Retry' }).click();
				await eventually(async () => (await texts(page)).filter((t) => t === 'am I muted?').length === 1, 'the owner gets it once');
				await eventually(async () => (await refused.getByText('Not sent:').count()) === 0, 'no longer marked as failed');
				// The owner kicks the newcomer: the server leaves the newcomer's rail, live.
				await eventually(async () => (await page.getByTestId('member').count()) === 2, 'two members');
				await page.locator(`[data-testid=member][data-username="${guest.username}"] button.row`).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Kick' }).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Confirm kick' }).click();
				await eventually(async () => (await page.getByTestId('member').count()) === 1, 'the newcomer left the member list');
				await eventually(async () => (await b.page.getByTestId('rail-server').count()) === 0, 'the server left the newcomer’s rail');
				await b.page.getByTestId('server-missing').waitFor();
				// Bans and audit log: the kick is in the log; the owner bans then unbans someone else.
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Bans and audit log' }).click();
				await page.getByRole('button', { name: 'Audit log' }).click();
				await eventually(async () => /member_kick/.test((await page.getByTestId('moderation').textContent()) ?? ''), 'the kick is in the audit log');
				await page.getByRole('button', { name: 'Bans', exact: true }).click();
				await page.getByText('Nobody is banned.').waitFor();
				await page.getByTestId('moderation-dialog').getByRole('button', { name: 'Close' }).click();
				// The newcomer comes back with the same link; the owner bans them; a ban keeps them out until lifted.
				await b.page.goto(link);
				await b.page.getByRole('button', { name: 'Accept invite' }).click();
				await b.page.getByTestId('composer').waitFor();
				await eventually(async () => (await page.getByTestId('member').count()) === 2, 'back in the member list');
				await page.locator(`[data-testid=member][data-username="${guest.username}"] button.row`).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Ban' }).click();
				await page.getByTestId('member-card').getByRole('button', { name: 'Confirm ban' }).click();
				await eventually(async () => (await b.page.getByTestId('rail-server').count()) === 0, 'banned: the server left the rail');
				await b.page.goto(link);
				await b.page.getByRole('alert').waitFor();
				assert(await b.page.getByRole('button', { name: 'Accept invite' }).isDisabled(), 'a banned guest’s invite cannot be accepted');
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Bans and audit log' }).click();
				const ban = page.getByTestId('ban').filter({ hasText: guest.username });
				await ban.waitFor();
				await ban.getByRole('button', { name: 'Unban' }).click();
				await page.getByText('Nobody is banned.').waitFor();
				await page.getByTestId('moderation-dialog').getByRole('button', { name: 'Close' }).click();
				// A bad code explains itself.
				await b.page.goto('/invite/NoSuchCode123');
				await b.page.getByText('This invite does not work').waitFor();
				if (b.errors.length) throw new Error(`error in the guest's page: ${b.errors[0].stack ?? b.errors[0]}`);
			} finally {
				await b.context.close().catch(() => {});
			}
			// Phone width: the message pane fills the screen, the channel list is a drawer.
			await page.setViewportSize({ width: 390, height: 844 });
			await send(page, 'hello from a phone');
			const phoneMsg = page.getByTestId('message').filter({ hasText: 'hello from a phone' });
			await eventually(async () => !((await phoneMsg.getAttribute('data-message-id')) ?? 'pending-').startsWith('pending-'), 'sent and confirmed at phone width');
			// Up in the empty composer edits my last message.
			await page.getByTestId('composer').press('ArrowUp');
			const box = page.getByLabel('Edited message text');
			await box.waitFor();
			await box.fill('hello from a small phone');
			await box.press('Enter');
			await eventually(async () => (await texts(page)).some((t) => t.startsWith('hello from a small phone')), 'edited with the keyboard');
			const nav = page.locator('#nav-drawer');
			await eventually(async () => {
				const box = await nav.boundingBox();
				return box && box.x + box.width <= 0;
			}, 'the channel drawer is off screen');
			await shot('phone-server');
			await page.getByRole('button', { name: 'Open channel list' }).click();
			await eventually(async () => (await nav.boundingBox())?.x === 0, 'the channel drawer slides in');
			await page.getByTestId('channel-link').first().waitFor({ state: 'visible' });
			await shot('phone-server-drawer');
			await page.keyboard.press('Escape');
			await eventually(async () => {
				const box = await nav.boundingBox();
				return box && box.x + box.width <= 0;
			}, 'Escape closes the drawer');
		}
	},
	{
		name: 'a mention in another channel shows a desktop notification and a mention badge; channel permission overwrites',
		timeoutMs: 60000,
		async run({ page, context, browser, baseURL, shot }) {
			// Record notifications while still creating real ones (headless Chromium shows nothing).
			await context.grantPermissions(['notifications']);
			await context.addInitScript(() => {
				const Real = window.Notification;
				window.__notes = [];
				window.Notification = class extends Real {
					constructor(title, options) {
						super(title, options);
						window.__notes.push({ title, body: options?.body });
					}
				};
			});
			const alice = newUser();
			await register(page, alice);
			await page.goto('/settings');
			await page.getByRole('button', { name: 'Turn on desktop notifications' }).click();
			await page.getByText('Desktop notifications are on').waitFor();
			await page.goto('/');
			await createServer(page, 'Pings');
			const general = page.url();
			const link = await createInvite(page);
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByLabel('Channel name').fill('elsewhere');
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.waitForURL((u) => u.href !== general);
			const b = await secondBrowser(browser, baseURL);
			try {
				await register(b.page, newUser());
				await b.page.goto(link);
				await b.page.getByRole('button', { name: 'Accept invite' }).click();
				// The newcomer lands in the first channel (alice's uncategorized #elsewhere); #general is a click away.
				await b.page.getByTestId('composer').waitFor();
				await b.page.getByTestId('channel-list').getByText('general', { exact: true }).click();
				await b.page.getByRole('textbox', { name: 'Message #general' }).waitFor();
				await b.page.getByTestId('member').nth(1).waitFor();
				await send(b.page, `@${alice.username} ping!`);
				const notes = await eventually(async () => {
					const n = await page.evaluate(() => window.__notes);
					return n.length ? n : null;
				}, 'a notification for the mention');
				assert(notes.length === 1 && /in #general/.test(notes[0].title) && notes[0].body === `@${alice.username} ping!`, `notification: ${JSON.stringify(notes)}`);
				const badge = page.getByTestId('channel-link').filter({ hasText: /^#?\s*general/ }).getByTestId('unread-badge');
				await eventually(async () => /@1/.test((await badge.textContent()) ?? ''), 'a mention badge on #general');
				await shot('mention-badge');
				// A message without a mention does not notify.
				await send(b.page, 'no ping');
				await eventually(async () => ((await badge.textContent()) ?? '').includes('@1'), 'still one mention');
				await page.waitForTimeout(500);
				assert((await page.evaluate(() => window.__notes.length)) === 1, 'no notification without a mention');
				// Channel permission overwrites: alice denies "Send messages" to @everyone in #general; bob's
				// message is refused; back to "Inherit", bob's Retry goes through.
				const setSend = async (value) => {
					await page.getByRole('button', { name: 'Edit channel general', exact: true }).click();
					const editor = page.getByTestId('overwrites');
					await editor.getByLabel('Send messages').waitFor();
					await editor.getByLabel('Send messages').selectOption(value);
					await editor.getByRole('button', { name: 'Save channel permissions' }).click();
					await editor.getByText('Saved.').waitFor();
					await page.getByTestId('edit-channel-dialog').getByRole('button', { name: 'Cancel' }).click();
				};
				await setSend('deny');
				await send(b.page, 'can I still talk?');
				const muted = b.page.getByTestId('message').filter({ hasText: 'can I still talk?' });
				await muted.getByText('Not sent:').waitFor();
				await setSend('inherit');
				await muted.getByRole('button', { name: 'Retry' }).click();
				await eventually(async () => (await muted.getByText('Not sent:').count()) === 0, 'sent after the overwrite is gone');
			} finally {
				await b.context.close().catch(() => {});
			}
		}
	}
];
