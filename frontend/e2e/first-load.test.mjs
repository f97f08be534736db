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
	let last = Date.now();
	const touch = () => (last = Date.now());
	cdp.on('Network.requestWillBeSent', (e) => touch() && Object.assign(get(e.requestId), { url: e.request.url, type: e.type }));
	cdp.on('Network.responseReceived', (e) => {
		const h = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
		const r = get(e.requestId);
		if (!r.done) r.bytes += e.response.encodedDataLength ?? 0;
		Object.assign(r, {
			status: e.response.status,
			cached: Boolean(e.response.fromDiskCache || e.response.fromPrefetchCache || e.response.fromServiceWorker),
			encoding: h['content-encoding'] ?? '',
			cacheControl: h['cache-control'] ?? ''
		});
	});
	// Bytes so far of a response whose loading has not finished (e.g. a body the page never reads).
	cdp.on('Network.dataReceived', (e) => {
		touch();
		const r = get(e.requestId);
		if (!r.done) r.bytes += e.encodedDataLength;
	});
	cdp.on('Network.requestServedFromCache', (e) => Object.assign(get(e.requestId), { cached: true }));
	cdp.on('Network.loadingFinished', (e) => touch() && Object.assign(get(e.requestId), { bytes: e.encodedDataLength, done: true }));
	cdp.on('Network.loadingFailed', (e) => touch() && Object.assign(get(e.requestId), { failed: e.errorText, done: true }));
	return {
		cdp,
		/** Waits until every request is answered and the network was quiet for 500 ms (at most 10 s). */
		async settle() {
			const end = Date.now() + 10000;
			while (Date.now() < end) {
				// Pending: no answer yet (a body still arriving keeps `last` fresh).
				const pending = [...reqs.values()].filter((r) => r.url && !r.url.startsWith('data:') && !r.done && r.status === undefined);
				if (pending.length === 0 && Date.now() - last >= 500) return;
				await new Promise((r) => setTimeout(r, 100));
			}
		},
		async stop() {
			const list = [...reqs.values()].filter((r) => r.url && !r.url.startsWith('data:'));
			reqs.clear();
			return list;
		}
	};
}

/** Opens the app signed out and waits for the login form and a quiet network. */
async function firstPage(page, rec) {
	await page.goto('/');
	await page.waitForURL((u) => u.pathname === '/login');
	await page.getByLabel('Username or email').waitFor({ state: 'visible' });
	await rec.settle();
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
			await firstPage(page, rec);
			const list = await rec.stop();
			const total = list.reduce((n, r) => n + r.bytes, 0);
			console.log(`        first load: ${(total / 1000).toFixed(1)} KB on the wire in ${list.length} requests (budget ${BUDGET / 1000} KB)\n${table(list)}`);
			// Chromium reports a fetch whose 204 answer had arrived as ERR_ABORTED (the signed-out
			// refresh): answered, so not a failure; anything without a 2xx/3xx answer is.
			const failed = list.filter((r) => r.failed && !(r.status >= 200 && r.status < 400));
			assert(failed.length === 0, `no request failed (${failed.map((r) => `${r.url}: ${r.failed}`).join(', ')})`);
			// A response still open is counted with the bytes received so far.
			const open = list.filter((r) => !r.done);
			if (open.length) console.log(`        still open: ${open.map((r) => `${new URL(r.url).pathname} (${r.bytes} B so far)`).join(', ')}`);
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
			await firstPage(page, rec);
			const first = await rec.stop();
			await firstPage(page, rec);
			const second = await rec.stop();
			const total = (l) => l.reduce((n, r) => n + r.bytes, 0);
			console.log(`        second visit: ${(total(second) / 1000).toFixed(1)} KB on the wire (first: ${(total(first) / 1000).toFixed(1)} KB)\n${table(second)}`);
			// Chromium reports a revalidated document as its cached 200; what crossed the wire
			// was a 304's headers, without the page again.
			const doc = second.find((r) => r.type === 'Document');
			const firstDoc = first.find((r) => r.type === 'Document');
			assert(doc && firstDoc && doc.bytes > 0 && doc.bytes < firstDoc.bytes, `the page is revalidated, not sent again (${doc?.bytes} B, first ${firstDoc?.bytes} B)`);
			const hashed = second.filter((r) => new URL(r.url).pathname.startsWith('/_app/immutable/'));
			assert(hashed.length > 0, 'the app loads hashed assets');
			const fetched = hashed.filter((r) => !r.cached && r.bytes > 0);
			assert(fetched.length === 0, `hashed assets come from the cache (fetched: ${fetched.map((r) => r.url).join(', ')})`);
			assert(total(second) * 5 < total(first), 'a second visit costs far less than the first');
		}
	}
];
