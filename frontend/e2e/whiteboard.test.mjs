// The channel whiteboard (issue 8, seed 000) between two browsers against a real `copains serve`:
// strokes drawn with real pointer input (mouse for alice, touch for bob) appear for the other live
// through the gateway, again after a reload (read back from the server), the eraser erases, Clear
// empties the board for everyone. In an encrypted channel the same board works end to end:
// strokes are drawn and decrypted live and after a reload, a member who joins later asks the
// authors' devices for the keys and sees the board, while the stored rows hold only
// Megolm envelopes (read straight from PostgreSQL through COPAINS_E2E_DATABASE_URL with psql;
// without it that one assertion is skipped, loudly). Checks read the canvas pixels and its
// stroke count.
import { execFileSync } from 'node:child_process';
import { assert, createInvite, createServer, eventually, newUser, register } from './lib.mjs';

const DB = process.env.COPAINS_E2E_DATABASE_URL ?? '';

/** Runs one SQL query with psql; null when no database is configured or reachable. */
function sql(query) {
	if (!DB) return null;
	try {
		return execFileSync('psql', [DB, '-XtAc', query], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
	} catch (e) {
		console.log(`        !! psql failed (${String(e.message).split('\n')[0]})`);
		return null;
	}
}

/** Opens the channel's whiteboard and waits until its strokes are loaded. */
async function openBoard(page) {
	await page.getByTestId('whiteboard-toggle').click();
	const canvas = page.getByTestId('wb-canvas');
	await canvas.waitFor({ state: 'visible' });
	await eventually(async () => (await canvas.getAttribute('data-loading')) === 'false', 'the board is loaded');
	return canvas;
}

/** How many strokes the board shows. */
async function strokes(page) {
	return Number(await page.getByTestId('wb-canvas').getAttribute('data-strokes'));
}

/** The canvas pixel [r, g, b, a] at (fx, fy), fractions of its width and height. */
async function pixel(page, fx, fy) {
	return page.getByTestId('wb-canvas').evaluate(
		(c, [x, y]) => Array.from(c.getContext('2d').getImageData(Math.round(x * c.width), Math.round(y * c.height), 1, 1).data),
		[fx, fy]
	);
}

/** Whether the pixel at (fx, fy) is painted red (the "Red" swatch, #e03131). */
async function isRed(page, fx, fy) {
	const [r, g, b, a] = await pixel(page, fx, fy);
	return a > 200 && r > 180 && g < 90 && b < 90;
}

/** Whether nothing is painted at (fx, fy) (empty or erased). */
async function isBlank(page, fx, fy) {
	return (await pixel(page, fx, fy))[3] === 0;
}

/** Drags the mouse across the canvas from (fx0, fy0) to (fx1, fy1) (fractions), in steps. */
async function drag(page, canvas, [fx0, fy0], [fx1, fy1]) {
	const box = await canvas.boundingBox();
	await page.mouse.move(box.x + fx0 * box.width, box.y + fy0 * box.height);
	await page.mouse.down();
	await page.mouse.move(box.x + fx1 * box.width, box.y + fy1 * box.height, { steps: 25 });
	await page.mouse.up();
}

/** A one-finger touch drag on the canvas (CDP touch events: pointerType "touch"). */
async function touchDrag(page, canvas, [fx0, fy0], [fx1, fy1]) {
	const box = await canvas.boundingBox();
	const cdp = await page.context().newCDPSession(page);
	const at = (fx, fy) => [{ x: box.x + fx * box.width, y: box.y + fy * box.height, id: 1 }];
	await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: at(fx0, fy0) });
	for (let i = 1; i <= 20; i++) {
		const t = i / 20;
		await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: at(fx0 + (fx1 - fx0) * t, fy0 + (fy1 - fy0) * t) });
	}
	await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
	await cdp.detach();
}

export default [
	{
		name: 'two users draw on a channel whiteboard: live both ways (mouse and touch), eraser, persisted across reloads, clear',
		timeoutMs: 80000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Board ${alice.username.slice(4)}`);
			const link = await createInvite(page);

			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 }, hasTouch: true });
			context.setDefaultTimeout(10000);
			const b = await context.newPage();
			const bErrors = [];
			b.on('pageerror', (e) => bErrors.push(e));
			try {
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+\/\d+$/);
				await b.getByTestId('composer').waitFor({ state: 'visible' });
				assert(new URL(b.url()).pathname === new URL(page.url()).pathname, 'both are in the same channel');

				const aCanvas = await openBoard(page);
				const bCanvas = await openBoard(b);
				assert((await strokes(page)) === 0 && (await strokes(b)) === 0, 'a new board is empty');
				// Bob is a plain member: no Clear button for him; alice owns the server.
				assert((await b.getByTestId('wb-clear').count()) === 0, 'bob cannot clear');
				assert((await page.getByTestId('wb-clear').count()) === 1, 'alice can clear');

				// Alice draws a thick red line with the mouse (keyboard: P for the pen, ] for a bigger size).
				await page.getByRole('button', { name: 'Red' }).click();
				await page.getByRole('button', { name: 'Size 24' }).click();
				await drag(page, aCanvas, [0.1, 0.3], [0.6, 0.3]);
				assert(await isRed(page, 0.35, 0.3), 'alice sees her own line at once');
				await eventually(async () => (await strokes(b)) === 1, 'bob receives alice’s stroke live');
				await eventually(() => isRed(b, 0.35, 0.3), 'bob’s canvas shows the red line');
				assert(await isBlank(b, 0.35, 0.7), 'nothing elsewhere on bob’s board');

				// Bob answers with his finger (touch pointer events), in blue.
				await b.getByRole('button', { name: 'Blue' }).click();
				await touchDrag(b, bCanvas, [0.5, 0.7], [0.9, 0.7]);
				await eventually(async () => (await strokes(page)) === 2, 'alice receives bob’s touch stroke live');
				await eventually(async () => {
					const [r, g, bl, a] = await pixel(page, 0.7, 0.7);
					return a > 200 && bl > 150 && r < 80 && g < 160;
				}, 'alice’s canvas shows the blue line');

				// The eraser (chosen from the keyboard) cuts alice's line in the middle, for both.
				await page.getByTestId('wb-pen').focus();
				await page.keyboard.press('e');
				assert((await page.getByTestId('wb-eraser').getAttribute('aria-pressed')) === 'true', 'E picks the eraser');
				await page.keyboard.press(']');
				await drag(page, aCanvas, [0.35, 0.15], [0.35, 0.45]);
				await eventually(async () => (await strokes(b)) === 3, 'bob receives the eraser stroke');
				await eventually(() => isBlank(b, 0.35, 0.3), 'the middle of the line is erased on bob’s board');
				assert(await isRed(b, 0.15, 0.3), 'the rest of the line stays');
				await shot('live', b);

				// After a reload, the board comes back from the server.
				await b.reload();
				await b.getByTestId('composer').waitFor({ state: 'visible' });
				await openBoard(b);
				await eventually(async () => (await strokes(b)) === 3, 'bob’s reloaded board has the three strokes');
				await eventually(() => isRed(b, 0.15, 0.3), 'the red line is drawn after the reload');
				assert(await isBlank(b, 0.35, 0.3), 'and still erased in the middle');
				const [r, g, bl, a] = await pixel(b, 0.7, 0.7);
				assert(a > 200 && bl > 150 && r < 80 && g < 160, `bob’s own blue line is back (${[r, g, bl, a]})`);
				await shot('after-reload', b);

				// Clear: asks first, then empties the board for everyone.
				await page.getByTestId('wb-clear').click();
				await page.getByTestId('wb-clear-confirm').click();
				await eventually(async () => (await strokes(page)) === 0, 'alice’s board is empty');
				await eventually(async () => (await strokes(b)) === 0, 'bob’s board is cleared live');
				assert((await isBlank(b, 0.15, 0.3)) && (await isBlank(b, 0.7, 0.7)), 'bob’s canvas is blank');
				await page.reload();
				await page.getByTestId('composer').waitFor({ state: 'visible' });
				await openBoard(page);
				assert((await strokes(page)) === 0, 'the cleared board stays empty after a reload');
				await shot('cleared');

				if (bErrors.length) throw new Error(`error in bob’s page: ${bErrors[0].stack ?? bErrors[0]}`);
			} finally {
				await context.close().catch(() => {});
			}
		}
	}
,
	{
		name: 'an encrypted channel’s whiteboard: strokes drawn in each browser are decrypted live in the other and again after reloads, a late joiner gets the keys from the authors; the server stores only envelopes',
		timeoutMs: 80000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			await register(page, alice);
			await createServer(page, `Vault ${alice.username.slice(4)}`);
			const link = await createInvite(page);

			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(15000);
			const b = await context.newPage();
			const bErrors = [];
			b.on('pageerror', (e) => bErrors.push(e));
			try {
				await register(b, bob);
				await b.goto(link);
				await b.getByRole('button', { name: 'Accept invite' }).click();
				await b.waitForURL(/\/servers\/\d+\/\d+$/);
				await b.getByTestId('composer').waitFor({ state: 'visible' });
				// Both browsers' E2EE devices exist (their keys are on the server) before alice encrypts.
				for (const p of [page, b]) {
					await eventually(
						() => p.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('copains.e2ee.device.'))),
						'the E2EE device is created',
						20000
					);
				}

				// Alice creates an encrypted channel; bob opens it.
				await page.getByTestId('server-menu-button').click();
				await page.getByRole('button', { name: 'Create channel', exact: true }).click();
				await page.getByLabel('Channel name').fill('vault');
				await page.getByLabel('End-to-end encrypted').check();
				await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
				await page.getByTestId('composer-lock').waitFor();
				const vaultPath = new URL(page.url()).pathname;
				const vaultId = vaultPath.split('/').pop();
				assert(/^\d+$/.test(vaultId), `the channel id is numeric (${vaultId})`);
				await b.getByTestId('channel-list').getByText('vault').click();
				await b.waitForURL(`**${vaultPath}`);
				await b.getByTestId('composer-lock').waitFor();

				const aCanvas = await openBoard(page);
				await openBoard(b);
				for (const p of [page, b]) {
					assert((await p.getByTestId('wb-encrypted-notice').count()) === 0, 'no “not available” notice');
					assert((await p.getByTestId('wb-canvas').getAttribute('data-encrypted')) === 'true', 'the board knows it is encrypted');
					assert(!(await p.getByTestId('wb-pen').isDisabled()), 'the tools are enabled');
				}
				assert((await strokes(page)) === 0 && (await strokes(b)) === 0, 'a new encrypted board is empty');

				// Alice draws a thick red line with the mouse; bob decrypts it live.
				await page.getByRole('button', { name: 'Red' }).click();
				await page.getByRole('button', { name: 'Size 24' }).click();
				await drag(page, aCanvas, [0.1, 0.3], [0.6, 0.3]);
				assert(await isRed(page, 0.35, 0.3), 'alice sees her own line at once');
				const status = async (p) => ((await p.getByTestId('wb-status').textContent()) ?? '').trim();
				try {
					await eventually(async () => (await strokes(b)) === 1, 'bob decrypts alice’s stroke live', 20000);
				} catch (e) {
					throw new Error(`${e.message}; alice’s status: ${JSON.stringify(await status(page))}, bob’s: ${JSON.stringify(await status(b))}`);
				}
				await eventually(() => isRed(b, 0.35, 0.3), 'bob’s canvas shows the red line');
				assert(await isBlank(b, 0.35, 0.7), 'nothing elsewhere on bob’s board');
				assert((await status(page)) === '', `alice’s stroke was accepted (status: ${await status(page)})`);

				// Bob answers in blue (his own Megolm session, shared with alice's device); alice decrypts it live.
				const bCanvas = b.getByTestId('wb-canvas');
				await b.getByRole('button', { name: 'Blue' }).click();
				await b.getByRole('button', { name: 'Size 24' }).click();
				await drag(b, bCanvas, [0.5, 0.7], [0.9, 0.7]);
				const isBlue = async (p, fx, fy) => {
					const [r, g, bl, a] = await pixel(p, fx, fy);
					return a > 200 && bl > 150 && r < 80 && g < 160;
				};
				await eventually(async () => (await strokes(page)) === 2, 'alice decrypts bob’s stroke live', 20000);
				await eventually(() => isBlue(page, 0.7, 0.7), 'alice’s canvas shows the blue line');
				await shot('encrypted-live', b);

				// After a reload, bob's board comes back from the server and is decrypted again.
				await b.reload();
				await b.getByTestId('composer-lock').waitFor();
				await openBoard(b);
				await eventually(async () => (await strokes(b)) === 2, 'bob’s reloaded encrypted board has both strokes');
				await eventually(() => isRed(b, 0.35, 0.3), 'the red line is drawn after the reload');
				assert(await isBlue(b, 0.7, 0.7), 'and bob’s own blue line, decrypted from his own envelope');
				assert((await status(b)) === '', `no “could not be decrypted” status (${await status(b)})`);
				await shot('encrypted-after-reload', b);
				// Alice too: her own and bob's strokes come back from the server and decrypt.
				await page.reload();
				await page.getByTestId('composer-lock').waitFor();
				await openBoard(page);
				await eventually(async () => (await strokes(page)) === 2, 'alice’s reloaded encrypted board has both strokes');
				await eventually(async () => (await isRed(page, 0.35, 0.3)) && (await isBlue(page, 0.7, 0.7)), 'both lines are drawn on alice’s reloaded board');
				assert((await status(page)) === '', `no “could not be decrypted” status for alice (${await status(page)})`);

				// Carol joins after the strokes were drawn: her device never got their keys, so her board asks
				// the authors' devices (still open) for them and draws both lines once they arrive.
				const carol = newUser();
				const cContext = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
				cContext.setDefaultTimeout(15000);
				try {
					const c = await cContext.newPage();
					await register(c, carol);
					await c.goto(link);
					await c.getByRole('button', { name: 'Accept invite' }).click();
					await c.waitForURL(/\/servers\/\d+\/\d+$/);
					await c.getByTestId('channel-list').getByText('vault').click();
					await c.waitForURL(`**${vaultPath}`);
					await c.getByTestId('composer-lock').waitFor();
					await openBoard(c);
					try {
						await eventually(async () => (await strokes(c)) === 2, 'carol, a late joiner, gets the keys and sees both strokes', 25000);
					} catch (e) {
						throw new Error(`${e.message}; carol’s status: ${JSON.stringify(await status(c))}`);
					}
					await eventually(async () => (await isRed(c, 0.35, 0.3)) && (await isBlue(c, 0.7, 0.7)), 'both lines are drawn on carol’s board');
					await eventually(async () => (await status(c)) === '', 'no “could not be decrypted” status left for carol');
					await shot('encrypted-late-joiner', c);
				} finally {
					await cContext.close().catch(() => {});
				}

				// The stored rows hold envelopes only: no tool, colour, size or points.
				const rows = sql(`SELECT coalesce(string_agg(row_to_json(s)::text, E'\\n'), '') FROM whiteboard_strokes s WHERE channel_id = ${vaultId}`);
				if (rows === null) {
					console.log('        !! SKIPPED the database assertion: COPAINS_E2E_DATABASE_URL is unset or unreachable');
				} else {
					const list = rows ? rows.split('\n').map((r) => JSON.parse(r)) : [];
					assert(list.length === 2, `two stored strokes in the encrypted board (found ${list.length})`);
					for (const r of list) {
						assert(r.tool === null && r.color === null && r.size === null && r.points === null, `no plaintext field in the stored stroke: ${JSON.stringify(r).slice(0, 300)}`);
						assert(r.enc_algorithm === 'copains.megolm.v1' && typeof r.enc_ciphertext === 'string' && r.enc_ciphertext.length > 40 && r.enc_session_id && r.enc_sender_device, 'the stored stroke is a Megolm envelope');
						assert(!/e03131|1971c2|points/.test(r.enc_ciphertext), 'the ciphertext is not the plaintext');
					}
				}
				if (bErrors.length) throw new Error(`error in bob’s page: ${bErrors[0].stack ?? bErrors[0]}`);
			} finally {
				await context.close().catch(() => {});
			}
		}
	}
];
