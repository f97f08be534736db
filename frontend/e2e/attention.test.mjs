// Issue 19 item 7: what needs me shows in the tab even when I look elsewhere — a "•" for unread
// messages, "(n)" and a favicon badge for mentions — and clears when I open the channel.
import { apiAs, assert, createInvite, createServer, eventually, newUser, register } from './lib.mjs';

async function registerByApi(baseURL, user) {
	const r = await fetch(`${baseURL}/api/v1/auth/register`, {
		method: 'POST',
		headers: { 'Content-Type': 'application/json' },
		body: JSON.stringify(user)
	});
	assert(r.status === 201, `register ${user.username}: ${r.status}`);
	return apiAs(baseURL, user);
}

const favicon = (page) => page.evaluate(() => document.querySelector('link[rel="icon"]')?.getAttribute('href') ?? '');

export default [
	{
		name: 'unread messages and mentions elsewhere show in the tab title and the favicon, and clear when read',
		async run({ page, baseURL, shot }) {
			const alice = newUser();
			await register(page, alice);
			await createServer(page, 'Attention');
			const [, , serverId, channelId] = new URL(page.url()).pathname.split('/');
			const code = (await createInvite(page)).split('/invite/')[1];
			const bob = await registerByApi(baseURL, newUser());
			assert((await bob.call('POST', `/invites/${code}`)).status < 300, 'bob joins');
			const me = await apiAs(baseURL, alice);
			const plainIcon = await favicon(page);

			// Alice looks at Home: nothing is unread yet.
			await page.getByRole('link', { name: 'Home' }).click();
			await eventually(async () => (await page.title()) === 'Home · Copains', `a plain title (${await page.title()})`);

			// A message without a mention marks the tab, with no number.
			assert((await bob.call('POST', `/channels/${channelId}/messages`, { content: 'just chatting' })).status === 201, 'bob posts');
			await eventually(async () => (await page.title()) === '• Home · Copains', `an unread mark (${await page.title()})`);
			assert((await favicon(page)) !== plainIcon, 'the favicon carries a dot');

			// Two mentions: "(2)" and a numbered badge.
			for (const text of [`<@${me.id}> are you there?`, `<@${me.id}> hello?`]) {
				assert((await bob.call('POST', `/channels/${channelId}/messages`, { content: text })).status === 201, 'bob mentions alice');
			}
			await eventually(async () => (await page.title()) === '(2) Home · Copains', `a mention count (${await page.title()})`);
			const badged = decodeURIComponent(await favicon(page));
			assert(badged.startsWith('data:image/svg+xml,') && badged.includes('>2</text>'), `the favicon shows 2: ${badged.slice(0, 60)}…`);
			await shot('tab-attention');

			// Opening the channel reads it: the title and the icon are plain again.
			await page.getByRole('link', { name: 'Attention' }).click();
			await page.waitForURL(`**/servers/${serverId}/**`);
			await eventually(async () => !/^(\(\d+\)|•) /.test(await page.title()), `the title clears (${await page.title()})`);
			await eventually(async () => (await favicon(page)) === plainIcon, 'the favicon is plain again');
		}
	}
];
