// Headless-Chromium test of the wasm build. Run crypto/scripts/build-wasm.sh first.
//   cd crypto/browser-test && npm install && node run.mjs
// Prints one line per check, then PASS/FAIL; exits non-zero on any failure.
// With BENCH_OUT=path, merges the wasm timings into that JSON file under "wasm".
import { chromium } from 'playwright-core';
import { readFile, writeFile } from 'node:fs/promises';
import { startServer } from './server.mjs';

const args = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];

const { server, port } = await startServer();
let browser;
let failed = 0;
try {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 30000 });
  const { results, bench } = await page.evaluate(() => window.runTests());
  for (const r of results) {
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.ok ? '' : ` — ${r.detail}`}`);
    if (!r.ok) failed++;
  }
  if (results.length < 20) { console.log(`FAIL only ${results.length} checks ran`); failed++; }
  for (const e of errors) { console.log(`FAIL page error: ${e}`); failed++; }
  console.log(`wasm bench (µs): ${JSON.stringify(bench)}`);
  if (process.env.BENCH_OUT) {
    let doc = {};
    try { doc = JSON.parse(await readFile(process.env.BENCH_OUT, 'utf8')); } catch {}
    doc.wasm = { ...bench, browser: await browser.version(), note: 'frame timings include the JS<->wasm copy of the frame' };
    await writeFile(process.env.BENCH_OUT, JSON.stringify(doc, null, 2) + '\n');
  }
} catch (e) {
  console.log(`FAIL ${e.stack ?? e}`);
  failed++;
} finally {
  await browser?.close();
  server.close();
}
console.log(failed === 0 ? 'PASS crypto browser test' : `FAIL crypto browser test (${failed} failures)`);
process.exit(failed === 0 ? 0 : 1);
