// Encrypted attachments in the web app: in an encrypted channel alice attaches a picture and a
// text file; each is encrypted in her browser with a fresh AES-256-GCM key and only ciphertext is
// uploaded. Bob's browser downloads the blobs, checks their hashes, decrypts them, shows the
// picture inline (its size and pixels checked) and downloads the file under its real name. The
// server holds no plaintext: the raw blob fetched through the API is not the picture and holds
// no recognisable chunk of it, and no database row holds the real file names.
//
// The database check needs COPAINS_E2E_DATABASE_URL and `psql` (as e2ee.test.mjs); without them
// that one assertion is skipped, loudly.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { assert, eventually, newUser, register } from './lib.mjs';

const DB = process.env.COPAINS_E2E_DATABASE_URL ?? '';

function sql(query) {
	if (!DB) return null;
	try {
		return execFileSync('psql', [DB, '-XtAc', query], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
	} catch (e) {
		console.log(`        !! psql failed (${String(e.message).split('\n')[0]})`);
		return null;
	}
}

async function e2eeReady(page) {
	await eventually(
		() => page.evaluate(() => Object.keys(localStorage).some((k) => k.startsWith('copains.e2ee.device.'))),
		'the E2EE device is created and its keys uploaded',
		20000
	);
}

/** A 40×30 PNG drawn in the page: left half red, right half blue, with noise so it does not compress away. */
async function makePng(page) {
	const b64 = await page.evaluate(() => {
		const c = document.createElement('canvas');
		c.width = 40;
		c.height = 30;
		const g = c.getContext('2d');
		g.fillStyle = '#ff0000';
		g.fillRect(0, 0, 20, 30);
		g.fillStyle = '#0000ff';
		g.fillRect(20, 0, 20, 30);
		for (let i = 0; i < 120; i++) {
			g.fillStyle = `rgb(${(i * 37) % 256},${(i * 91) % 256},${(i * 53) % 256})`;
			g.fillRect(i % 40, 10 + (i % 10), 1, 1);
		}
		return c.toDataURL('image/png').split(',')[1];
	});
	return Buffer.from(b64, 'base64');
}

export default [
	{
		name: 'a picture and a file in an encrypted channel: encrypted in the sender’s browser, decrypted and shown in the reader’s; the server holds only ciphertext and no names',
		timeoutMs: 80000,
		async run({ page, browser, baseURL, shot }) {
			const alice = newUser();
			const bob = newUser();
			const tag = alice.username.slice(4);
			await register(page, alice);
			await page.getByRole('button', { name: 'Create a server' }).click();
			await page.getByLabel('Server name').fill(`Files ${tag}`);
			await page.getByTestId('create-server-dialog').getByRole('button', { name: 'Create' }).click();
			await page.waitForURL(/\/servers\/\d+\/\d+$/);
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByLabel('Channel name').fill('vault');
			await page.getByLabel('End-to-end encrypted').check();
			await page.getByTestId('create-channel-dialog').getByRole('button', { name: 'Create channel', exact: true }).click();
			await page.getByTestId('composer-lock').waitFor();
			const vaultUrl = page.url();
			const vaultId = vaultUrl.split('/').pop();
			await page.getByTestId('server-menu-button').click();
			await page.getByRole('button', { name: 'Invite people' }).click();
			const link = await eventually(async () => {
				const v = await page.getByTestId('invite-link').inputValue();
				return v.includes('/invite/') ? v : null;
			}, 'an invite link is shown');
			await page.getByTestId('invite-dialog').getByRole('button', { name: 'Done' }).click();

			const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
			context.setDefaultTimeout(15000);
			const bp = await context.newPage();
			const bobErrors = [];
			bp.on('pageerror', (e) => bobErrors.push(e));
			try {
				const registered = bp.waitForResponse((r) => r.url().endsWith('/api/v1/auth/register'));
				registered.catch(() => {});
				await register(bp, bob);
				const bobToken = (await (await registered).json()).access_token;
				await bp.goto(link);
				await bp.getByRole('button', { name: 'Accept invite' }).click();
				await bp.waitForURL(/\/servers\/\d+\/\d+$/);
				await e2eeReady(page);
				await e2eeReady(bp);
				await bp.goto(vaultUrl);
				await bp.getByTestId('composer-lock').waitFor();

				// Alice attaches a picture and a text file; the uploads are captured to fetch them raw later.
				const png = await makePng(page);
				assert(png.length > 200, `a real picture (${png.length} bytes)`);
				const photoName = `secret-photo-${tag}.png`;
				const notesName = `secret-notes-${tag}.txt`;
				const notes = `the launch code is ${tag} `.repeat(8);
				const uploads = [];
				const onResponse = async (r) => {
					if (r.request().method() === 'POST' && /\/attachments\?/.test(r.url())) uploads.push({ url: r.url(), body: await r.json() });
				};
				page.on('response', onResponse);
				await page.getByTestId('file-input').setInputFiles([
					{ name: photoName, mimeType: 'image/png', buffer: png },
					{ name: notesName, mimeType: 'text/plain', buffer: Buffer.from(notes) }
				]);
				await eventually(async () => ((await page.getByTestId('uploads').textContent()) ?? '').split('ready').length === 3, 'both files encrypted and uploaded', 15000);
				await eventually(() => uploads.length === 2, 'both upload answers seen');
				page.off('response', onResponse);
				for (const u of uploads) {
					assert(!u.url.includes('secret'), `the real name is not sent to the server: ${u.url}`);
					assert(u.body.encrypted === true && u.body.filename === 'encrypted' && u.body.content_type === 'application/octet-stream', `stored as an opaque blob: ${JSON.stringify(u.body)}`);
				}
				const caption = `photo for you ${tag}`;
				await page.getByTestId('composer').fill(caption);
				await page.getByTestId('composer').press('Enter');

				// Bob sees the caption, the decrypted picture (40×30, red on the left, blue on the right) and the file.
				const msg = bp.getByTestId('message').filter({ hasText: caption });
				await eventually(async () => (await msg.count()) === 1, 'bob decrypts the message', 25000);
				const img = msg.getByTestId('attachment-image');
				await eventually(
					async () => (await img.count()) === 1 && (await img.evaluate((el) => el.complete && el.naturalWidth === 40 && el.naturalHeight === 30 && el.src.startsWith('blob:'))),
					'the decrypted picture is shown inline at its natural size',
					15000
				);
				const pixels = await img.evaluate((el) => {
					const c = document.createElement('canvas');
					c.width = 40;
					c.height = 30;
					const g = c.getContext('2d');
					g.drawImage(el, 0, 0);
					return [Array.from(g.getImageData(2, 2, 1, 1).data), Array.from(g.getImageData(37, 2, 1, 1).data)];
				});
				assert(pixels[0].join() === '255,0,0,255' && pixels[1].join() === '0,0,255,255', `the pixels are the picture's: ${JSON.stringify(pixels)}`);
				assert((await img.getAttribute('alt')) === photoName, 'shown under its real name');
				const fileButton = msg.getByTestId('attachment-file');
				assert(((await fileButton.textContent()) ?? '').includes(notesName), 'the file shows its real name');
				const download = bp.waitForEvent('download');
				await fileButton.click();
				const file = await download;
				assert(file.suggestedFilename() === notesName, `downloaded as ${file.suggestedFilename()}`);
				assert((await readFile(await file.path(), 'utf8')) === notes, 'the decrypted file content arrives intact');
				await shot('encrypted-attachments', bp);

				// An edit of the caption keeps the files (the new body describes them again), and a
				// reload decrypts them from history.
				const edited = `photo for you, edited ${tag}`;
				const mine = page.getByTestId('message').filter({ hasText: caption });
				await mine.hover();
				await mine.getByRole('button', { name: 'Edit message' }).click();
				await page.getByLabel('Edited message text').fill(edited);
				await page.getByLabel('Edited message text').press('Enter');
				const after = bp.getByTestId('message').filter({ hasText: edited });
				await eventually(async () => (await after.count()) === 1, 'bob decrypts the edit', 15000);
				const picture = (m) => eventually(async () => (await m.getByTestId('attachment-image').count()) === 1 && (await m.getByTestId('attachment-image').evaluate((el) => el.complete && el.naturalWidth === 40)), 'the picture is still shown', 15000);
				await picture(after);
				await bp.reload();
				await eventually(async () => (await after.count()) === 1, 'after a reload bob decrypts the history', 25000);
				await picture(after);
				assert(((await after.getByTestId('attachment-file').textContent()) ?? '').includes(notesName), 'and the file keeps its real name');

				// The server's copy: fetched raw through the API, it is ciphertext.
				const raw = [];
				for (const u of uploads) {
					const res = await fetch(new URL(u.body.url, baseURL), { headers: { Authorization: `Bearer ${bobToken}` } });
					assert(res.status === 200, `bob may fetch the raw blob (${res.status})`);
					raw.push(Buffer.from(await res.arrayBuffer()));
				}
				const blobOf = (len) => raw.find((r) => r.length === len + 16);
				const photoBlob = blobOf(png.length);
				const notesBlob = blobOf(Buffer.byteLength(notes));
				assert(photoBlob && notesBlob, `each blob is its file plus the 16-byte GCM tag (${raw.map((r) => r.length)} vs ${png.length}, ${Buffer.byteLength(notes)})`);
				assert(!photoBlob.equals(png) && !photoBlob.subarray(0, png.length).equals(png), 'the stored picture is not the original bytes');
				for (const needle of [png.subarray(0, 8), Buffer.from('IHDR'), Buffer.from('IDAT')]) assert(!photoBlob.includes(needle), `the blob has no PNG structure (${needle.toString('hex')})`);
				for (let i = 0; i + 12 <= png.length; i += 4) assert(!photoBlob.includes(png.subarray(i, i + 12)), `no 12-byte chunk of the picture (offset ${i}) is in the blob`);
				assert(!notesBlob.includes(Buffer.from('launch code')) && !notesBlob.includes(Buffer.from(tag)), 'the stored text file holds no plaintext');

				// The rows: no real name, no media type, no caption anywhere for this channel.
				const rows = sql(`SELECT coalesce(string_agg(row_to_json(a)::text, E'\\n'), '') FROM attachments a WHERE channel_id = ${vaultId}`);
				if (rows === null) {
					console.log('        !! SKIPPED the database assertion: COPAINS_E2E_DATABASE_URL is unset or unreachable');
				} else {
					assert(rows.split('\n').length === 2 && rows.includes('"filename":"encrypted"'), `two attachment rows, named "encrypted": ${rows}`);
					assert(!rows.includes('secret') && !rows.includes('image/png') && !rows.includes('text/plain'), `no real name or type in the rows: ${rows}`);
					const leaks = sql(`SELECT count(*) FROM messages m WHERE channel_id = ${vaultId} AND (row_to_json(m)::text LIKE '%secret%' OR row_to_json(m)::text LIKE '%${tag}%')`);
					assert(leaks === '0', `no message row holds the names or the caption (found ${leaks})`);
				}
				assert(bobErrors.length === 0, `no page error in bob's browser: ${bobErrors[0]}`);
			} finally {
				await context.close();
			}
		}
	}
];
