#!/usr/bin/env node
// A tiny end-to-end runner: playwright-core drives Debian's chromium against a running Copains
// server (COPAINS_URL, default http://127.0.0.1:8080). Runs every `e2e/*.test.mjs` (or the files
// given as arguments), one fresh browser context per test, saves screenshots in e2e/artifacts/,
// prints `N passed, N failed` and exits non-zero when any test failed.
// Env: COPAINS_URL, CHROMIUM_PATH (default /usr/bin/chromium), E2E_GREP (run matching tests only),
//      E2E_TIMEOUT_MS (per test, default 30000; a test may set a longer `timeoutMs`), E2E_HEADFUL=1 (show the browser).
import { mkdirSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { Skip } from './lib.mjs';

const here = import.meta.dirname;
const baseURL = (process.env.COPAINS_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const artifacts = join(here, 'artifacts');
const timeoutMs = Number(process.env.E2E_TIMEOUT_MS ?? 30000);
const grep = process.env.E2E_GREP ? new RegExp(process.env.E2E_GREP, 'i') : null;
mkdirSync(artifacts, { recursive: true });

const files = process.argv.length > 2
	? process.argv.slice(2).map((f) => resolve(f))
	: readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort().map((f) => join(here, f));

const browser = await chromium.launch({
	executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
	headless: process.env.E2E_HEADFUL !== '1',
	args: [
		'--headless=new',
		'--no-sandbox',
		'--disable-gpu',
		'--disable-quic',
		'--no-first-run',
		'--disable-background-networking',
		'--disable-component-update',
		'--disable-sync',
		'--use-fake-device-for-media-stream',
		'--use-fake-ui-for-media-stream'
	]
});

// A promise a failed test left behind must not kill the whole run.
process.on('unhandledRejection', (e) => console.log(`        (late rejection from a finished test: ${String(e).split('\n')[0]})`));

console.log(`e2e against ${baseURL}`);
let passed = 0;
let failed = 0;
let skipped = 0;
const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

for (const file of files) {
	const mod = await import(pathToFileURL(file).href);
	const tests = mod.default ?? [];
	for (const t of tests) {
		const name = `${basename(file, '.test.mjs')} › ${t.name}`;
		if (grep && !grep.test(name)) continue;
		const context = await browser.newContext({ baseURL, viewport: { width: 1280, height: 800 } });
		context.setDefaultTimeout(Math.min(10000, timeoutMs));
		const page = await context.newPage();
		const pageErrors = [];
		page.on('pageerror', (e) => pageErrors.push(e));
		// A Content-Security-Policy violation means something the app needs is blocked: fail on it.
		page.on('console', (m) => {
			if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) pageErrors.push(new Error(m.text()));
		});
		const shot = async (label, p = page) => {
			const path = join(artifacts, `${slug(t.name)}--${slug(label)}.png`);
			await p.screenshot({ path, fullPage: true });
			return path;
		};
		const started = Date.now();
		let timer;
		try {
			await Promise.race([
				t.run({ page, context, browser, baseURL, shot }),
				new Promise((_, reject) => {
					// A long scenario may ask for more time (`timeoutMs` on the test), scaled like the default.
					const limit = Math.max(timeoutMs, Math.round((t.timeoutMs ?? 0) * (timeoutMs / 30000)));
					timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms`)), limit);
				})
			]);
			if (pageErrors.length) throw new Error(`error in the page: ${pageErrors[0].stack ?? pageErrors[0]}`);
			passed++;
			console.log(`  ok    ${name} (${Date.now() - started} ms)`);
		} catch (e) {
			if (e instanceof Skip) {
				skipped++;
				console.log(`  skip  ${name}: ${e.message}`);
			} else {
				failed++;
				console.log(`  FAIL  ${name} (${Date.now() - started} ms)\n        ${String(e?.stack ?? e).split('\n').slice(0, 6).join('\n        ')}`);
				try {
					console.log(`        screenshot: ${await shot('failure')}`);
				} catch {
					// The page may be gone.
				}
			}
		} finally {
			clearTimeout(timer);
			await context.close().catch(() => {});
		}
	}
}

await browser.close();
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
if (passed + failed === 0) {
	console.log('no test ran');
	process.exit(1);
}
process.exit(failed ? 1 : 0);
