// A tiny static server for the browser test: serves crypto/pkg under /pkg/ and this
// folder's page.html at /. Bound to 127.0.0.1 on an ephemeral port.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize, extname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..', 'pkg');
const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

export function startServer() {
  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://localhost');
      let file;
      if (url.pathname === '/favicon.ico') { res.writeHead(204); res.end(); return; }
      if (url.pathname === '/' || url.pathname === '/page.html') file = join(here, 'page.html');
      else if (url.pathname.startsWith('/pkg/')) {
        const rel = normalize(url.pathname.slice('/pkg/'.length));
        if (rel.startsWith('..')) throw new Error('path escapes pkg');
        file = join(pkg, rel);
      } else throw new Error('not found');
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port }));
  });
}
