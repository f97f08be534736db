// What a first visit costs on the wire (issue 14 item 6): `copains serve` sends precompressed
// assets (brotli or gzip, per Accept-Encoding), hashed files as immutable and the rest with
// `no-cache` + ETag. Counted with the DevTools protocol: the sum of `Network.loadingFinished`
// encodedDataLength (bytes received, headers included) of every request of the page.
import { assert } from './lib.mjs';

const BUDGET = 120 * 1000;

/** Records every request of `page` through CDP; `stop()` returns them. */
async function record(context, page) {
	const cdp = await context.newCDPSession(page);
	await cdp.send('Network.enable');
	// Nothing from an earlier visit may be reused unless the test means it.
	const reqs = new Map();
	const get = (id) => {
		if (!reqs.has(id)) reqs.set(id, { bytes: 0 });
		return reqs.get(id);
	};
	cdp.on('Network.requestWillBeSent', (e) => Object.assign(get(e.requestId), { url: e.request.url, type: e.type }));
	cdp.on('Network.responseReceived', (e) => {
		const h = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
		Object.assign(get(e.requestId), {
			status: e.response.status,
			cached: Boolean(e.response.fromDiskCache || e.response.fromPrefetchCache || e.response.fromServiceWorker),
			encoding: h['content-encoding'] ?? '',
			cacheControl: h['cache-control'] ?? ''
		});
	});
	cdp.on('Network.requestServedFromCache', (e) => Object.assign(get(e.requestId), { cached: true }));
	cdp.on('Network.loadingFinished', (e) => Object.assign(get(e.requestId), { bytes: e.encodedDataLength, done: true }));
	cdp.on('Network.loadingFailed', (e) => Object.assign(get(e.requestId), { failed: e.errorText, done: true }));
	return {
		cdp,
		async stop() {
			const list = [...reqs.values()].filter((r) => r.url && !r.url.startsWith('data:'));
			reqs.clear();
			return list;
		}
	};
}

/** Opens the app signed out and waits for the login form and a quiet network. */
async function firstPage(page) {
	await page.goto('/', { waitUntil: 'networkidle' });
	await page.waitForURL((u) => u.pathname === '/login');
	await page.getByLabel('Username or email').waitFor({ state: 'visible' });
	await page.waitForLoadState('networkidle');
}

function table(list) {
	const path = (u) => new URL(u).pathname;
	return list
		.sort((a, b) => b.bytes - a.bytes)
		.map((r) => `    ${String(r.bytes).padStart(7)} B  ${String(r.status ?? '-').padEnd(3)} ${(r.encoding || (r.cached ? 'cache' : '-')).padEnd(5)} ${path(r.url)}`)
		.join('\n');
}

export default [
	{
		name: 'a first load before sign-in transfers at most 120 KB, compressed',
		async run({ page, context }) {
			const rec = await record(context, page);
			await rec.cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
			await firstPage(page);
			const list = await rec.stop();
			const total = list.reduce((n, r) => n + r.bytes, 0);
			console.log(`        first load: ${(total / 1000).toFixed(1)} KB on the wire in ${list.length} requests (budget ${BUDGET / 1000} KB)\n${table(list)}`);
			const failed = list.filter((r) => r.failed);
			assert(failed.length === 0, `no request failed (${failed.map((r) => `${r.url}: ${r.failed}`).join(', ')})`);
			assert(list.every((r) => r.done), 'every request finished');
			// Every script, style and wasm of any size came compressed.
			const big = list.filter((r) => /\.(js|css|wasm|html)$/.test(new URL(r.url).pathname) && r.bytes > 1500);
			const plain = big.filter((r) => !['br', 'gzip', 'zstd'].includes(r.encoding));
			assert(plain.length === 0, `compressed: ${plain.map((r) => new URL(r.url).pathname).join(', ')}`);
			const doc = list.find((r) => r.type === 'Document');
			assert(doc && doc.cacheControl === 'no-cache', `the page is no-cache (${doc?.cacheControl})`);
			const hashed = list.filter((r) => new URL(r.url).pathname.startsWith('/_app/immutable/'));
			assert(hashed.length > 0, 'the app loads hashed assets');
			assert(
				hashed.every((r) => r.cacheControl === 'public, max-age=31536000, immutable'),
				'hashed assets are immutable'
			);
			assert(total <= BUDGET, `first load ${total} B ≤ ${BUDGET} B`);
		}
	},
	{
		name: 'a second visit revalidates the page (304) and takes hashed assets from the cache',
		async run({ page, context }) {
			const rec = await record(context, page);
			await firstPage(page);
			const first = await rec.stop();
			await firstPage(page);
			const second = await rec.stop();
			const total = (l) => l.reduce((n, r) => n + r.bytes, 0);
			console.log(`        second visit: ${(total(second) / 1000).toFixed(1)} KB on the wire (first: ${(total(first) / 1000).toFixed(1)} KB)\n${table(second)}`);
			const doc = second.find((r) => r.type === 'Document');
			assert(doc?.status === 304, `the page is revalidated with a 304 (got ${doc?.status})`);
			const hashed = second.filter((r) => new URL(r.url).pathname.startsWith('/_app/immutable/'));
			assert(hashed.length > 0, 'the app loads hashed assets');
			const fetched = hashed.filter((r) => !r.cached && r.bytes > 0);
			assert(fetched.length === 0, `hashed assets come from the cache (fetched: ${fetched.map((r) => r.url).join(', ')})`);
			assert(total(second) * 5 < total(first), 'a second visit costs far less than the first');
		}
	}
];
