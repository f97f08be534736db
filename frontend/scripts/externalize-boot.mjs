#!/usr/bin/env node
// Moves SvelteKit's inline bootstrap <script> out of build/index.html into a hashed file.
// `copains serve` (src/web.rs) sends `Content-Security-Policy: script-src 'self' 'wasm-unsafe-eval'`,
// which allows no inline script at all (a header and a <meta> policy must both pass), so the
// inline bootstrap would be blocked and the page stay blank. A same-origin classic script keeps
// `document.currentScript` working; the <meta> policy's hash of the inline script is dropped.
// Usage: node scripts/externalize-boot.mjs [buildDir]   (run after `vite build`)
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const buildDir = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'build'));
const indexPath = join(buildDir, 'index.html');
let html = readFileSync(indexPath, 'utf8');
const inline = /<script>([\s\S]*?)<\/script>/g;
const found = [...html.matchAll(inline)];
if (found.length === 0) {
	console.log('externalize-boot: no inline script in index.html (already done)');
	process.exit(0);
}
for (const m of found) {
	const code = m[1].trim() + '\n';
	const hash = createHash('sha256').update(code).digest('hex').slice(0, 10);
	const name = `_app/immutable/boot.${hash}.js`;
	writeFileSync(join(buildDir, name), code);
	html = html.replace(m[0], `<script src="/${name}"></script>`);
	console.log(`externalize-boot: inline bootstrap -> /${name}`);
}
// The <meta> CSP no longer needs (nor should allow) any inline-script hash.
html = html.replace(/ 'sha256-[A-Za-z0-9+/=]+'/g, '');
if (/<script>/.test(html) || /'sha256-/.test(html)) {
	console.error('externalize-boot: an inline script or hash is left in index.html');
	process.exit(1);
}
writeFileSync(indexPath, html);
