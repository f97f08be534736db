#!/usr/bin/env node
// Bundle budget check (issue 8): gzips the JS and CSS that the entry HTML loads up front —
// the files it references (modulepreload, scripts, inline `import()`, stylesheets) plus every
// JS module they import statically — and fails when the initial JS exceeds 250 KB gzip.
// Also checks every .wasm in the build against 150 KB gzip. Prints the figures.
// Usage: node scripts/budget.mjs [buildDir]   (run `npm run build` first)
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const KB = 1000;
const JS_BUDGET = 250 * KB;
const WASM_BUDGET = 150 * KB;

const buildDir = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'build'));
const entry = join(buildDir, 'index.html');
if (!existsSync(entry)) {
	console.error(`budget: ${entry} not found — run \`npm run build\` first.`);
	process.exit(2);
}
const html = readFileSync(entry, 'utf8');

/** Maps a URL found in the HTML (absolute from the site root, or relative) to a file in the build. */
function fileOf(url, fromFile) {
	const clean = url.split(/[?#]/)[0];
	const path = clean.startsWith('/') ? join(buildDir, clean) : join(dirname(fromFile), clean);
	if (!existsSync(path)) {
		console.error(`budget: ${url} is referenced by ${relative(buildDir, fromFile)} but ${path} does not exist.`);
		process.exit(2);
	}
	return path;
}

const attr = (tag, name) => tag.match(new RegExp(`\\b${name}\\s*=\\s*["']([^"']+)["']`, 'i'))?.[1] ?? null;
const js = new Set();
const css = new Set();
for (const [tag] of html.matchAll(/<link\b[^>]*>/gi)) {
	const rel = attr(tag, 'rel')?.toLowerCase();
	const href = attr(tag, 'href');
	if (!href) continue;
	if (rel === 'modulepreload') js.add(fileOf(href, entry));
	else if (rel === 'stylesheet') css.add(fileOf(href, entry));
}
for (const [tag] of html.matchAll(/<script\b[^>]*>/gi)) {
	const src = attr(tag, 'src');
	if (src) js.add(fileOf(src, entry));
}
for (const [, body] of html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/gi)) {
	for (const [, spec] of body.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)) js.add(fileOf(spec, entry));
}
if (js.size === 0) {
	console.error('budget: found no JavaScript in the entry HTML; is this a SvelteKit build?');
	process.exit(2);
}

// Follow static imports (`import … from "./x.js"`, `import "./x.js"`, `export … from "./x.js"`); not `import()`.
const staticImport = /(?:^|[;\s}])(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"']+\.m?js)["']/g;
const queue = [...js];
while (queue.length) {
	const file = queue.pop();
	const code = readFileSync(file, 'utf8');
	for (const [, spec] of code.matchAll(staticImport)) {
		if (!spec.startsWith('.') && !spec.startsWith('/')) continue;
		const dep = fileOf(spec, file);
		if (!js.has(dep)) {
			js.add(dep);
			queue.push(dep);
		}
	}
}

const gz = (file) => gzipSync(readFileSync(file), { level: 9 }).length;
const fmt = (n) => `${(n / KB).toFixed(1).padStart(7)} KB`;
function table(title, files) {
	let raw = 0;
	let zipped = 0;
	const rows = [...files].map((f) => ({ f, raw: statSync(f).size, gz: gz(f) })).sort((a, b) => b.gz - a.gz);
	console.log(`\n${title} (${rows.length} files)          raw       gzip`);
	for (const r of rows) {
		raw += r.raw;
		zipped += r.gz;
		console.log(`  ${relative(buildDir, r.f).padEnd(44)} ${fmt(r.raw)} ${fmt(r.gz)}`);
	}
	console.log(`  ${'total'.padEnd(44)} ${fmt(raw)} ${fmt(zipped)}`);
	return zipped;
}

const jsGz = table('Initial JS', js);
const cssGz = table('Initial CSS', css);

const wasm = [];
(function walk(dir) {
	for (const name of readdirSync(dir)) {
		const p = join(dir, name);
		if (statSync(p).isDirectory()) walk(p);
		else if (name.endsWith('.wasm')) wasm.push(p);
	}
})(buildDir);
let failed = false;
for (const w of wasm) {
	const size = gz(w);
	const ok = size <= WASM_BUDGET;
	failed ||= !ok;
	console.log(`\nWASM ${relative(buildDir, w)}: ${fmt(size)} gzip (budget ${fmt(WASM_BUDGET)}) ${ok ? 'OK' : 'OVER BUDGET'}`);
}

const jsOk = jsGz <= JS_BUDGET;
failed ||= !jsOk;
console.log(`\nInitial JS ${fmt(jsGz)} gzip of ${fmt(JS_BUDGET)} budget: ${jsOk ? 'OK' : 'OVER BUDGET'}`);
console.log(`Initial CSS ${fmt(cssGz)} gzip (reported, no budget)`);
process.exit(failed ? 1 : 0);
