#!/usr/bin/env node
// Precompresses the web build (issue 14 item 6): writes `FILE.br` (brotli, quality 11) and
// `FILE.gz` (gzip -9) beside every compressible file of build/, so that `copains serve`
// (src/web.rs) and Caddy (`file_server { precompressed br gzip }`) send the smallest encoding
// the browser accepts without compressing on every request. A variant that would not be
// smaller than the file itself is not written (the server then sends the file as it is).
// Stale variants (from an earlier build, or of a file that is gone) are removed.
// Usage: node scripts/compress.mjs [buildDir]   (run after `vite build` and externalize-boot)
import { readFileSync, readdirSync, statSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { extname, join, relative, resolve } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const buildDir = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'build'));
if (!existsSync(join(buildDir, 'index.html'))) {
	console.error(`compress: ${buildDir}/index.html not found — run \`vite build\` first.`);
	process.exit(2);
}

/** Extensions worth compressing (text and wasm); images and fonts are compressed already. */
const TEXT = new Set(['.html', '.js', '.mjs', '.css', '.json', '.svg', '.txt', '.map', '.wasm', '.webmanifest', '.xml', '.ico']);
/** Below this size the headers outweigh any saving. */
const MIN_BYTES = 256;

const files = [];
(function walk(dir) {
	for (const name of readdirSync(dir)) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) walk(p);
		else files.push(p);
	}
})(buildDir);

let raw = 0;
let br = 0;
let gz = 0;
let count = 0;
for (const f of files) {
	if (f.endsWith('.br') || f.endsWith('.gz')) {
		// A variant whose original is gone would be served for nothing: drop it.
		if (!existsSync(f.slice(0, -3))) unlinkSync(f);
		continue;
	}
	const variants = [`${f}.br`, `${f}.gz`];
	const data = readFileSync(f);
	if (!TEXT.has(extname(f).toLowerCase()) || data.length < MIN_BYTES) {
		for (const v of variants) if (existsSync(v)) unlinkSync(v);
		continue;
	}
	const b = brotliCompressSync(data, {
		params: {
			[constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
			[constants.BROTLI_PARAM_MODE]: f.endsWith('.wasm') ? constants.BROTLI_MODE_GENERIC : constants.BROTLI_MODE_TEXT,
			[constants.BROTLI_PARAM_SIZE_HINT]: data.length
		}
	});
	const g = gzipSync(data, { level: 9 });
	count++;
	raw += data.length;
	for (const [path, out] of [[variants[0], b], [variants[1], g]]) {
		if (out.length < data.length) writeFileSync(path, out);
		else if (existsSync(path)) unlinkSync(path);
	}
	br += Math.min(b.length, data.length);
	gz += Math.min(g.length, data.length);
}
const kb = (n) => `${(n / 1000).toFixed(1)} KB`;
console.log(`compress: ${count} files in ${relative(process.cwd(), buildDir) || '.'}: ${kb(raw)} raw, ${kb(gz)} gzip, ${kb(br)} brotli`);
