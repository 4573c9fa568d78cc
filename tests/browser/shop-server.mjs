// A tiny static web server for the browser tests: the test shop (and a "foreign" site on a third
// origin) that embeds cardvault's card fields. It serves the files of one directory, replacing
// {{NAME}} in .html and .js files with the values it was given (vault URL, publishable key, SRI
// hash), answers POST /checkout (the shop's own back end receiving the token) and keeps a log of
// every request it got (method, URL, headers, body) so the tests can prove that no card number
// ever reached the shop.
//
//   import { startShop } from './shop-server.mjs';
//   const shop = await startShop({ root, port, vars, name });  // shop.origin, shop.log, shop.close()
//
// Standalone (prints the origin, logs requests as JSON lines to stdout):
//   node shop-server.mjs ROOT PORT NAME=value...
import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

function fill(text, vars) {
  return text.replace(/\{\{([A-Z_]+)\}\}/g, (m, name) =>
    Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : m);
}

export function startShop({ root, port, vars = {}, name = 'shop', host = '127.0.0.1', onRequest }) {
  const log = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const entry = {
        at: new Date().toISOString(),
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      log.push(entry);
      if (onRequest) onRequest(entry);
      const url = new URL(req.url, `http://${host}:${port}`);
      if (req.method === 'POST' && url.pathname === '/checkout') {
        // The shop's back end: it would now charge the token through the vault's secret-key API.
        let token = null;
        try { token = JSON.parse(entry.body).token; } catch { /* answered below */ }
        const ok = typeof token === 'string' && /^tok_[A-Za-z0-9]+$/.test(token);
        res.writeHead(ok ? 200 : 400, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(ok ? { received: token } : { error: 'token missing' }));
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET, HEAD' });
        res.end();
        return;
      }
      const rel = url.pathname === '/' ? '/index.html' : url.pathname;
      const file = path.join(root, path.normalize(rel));
      if (!file.startsWith(root + path.sep)) {
        res.writeHead(404);
        res.end();
        return;
      }
      try {
        const ext = path.extname(file);
        let body = await fs.readFile(file);
        if (ext === '.html' || ext === '.js') body = Buffer.from(fill(body.toString('utf8'), vars));
        res.writeHead(200, {
          'Content-Type': TYPES[ext] || 'application/octet-stream',
          'Cache-Control': 'no-store',
          'X-Content-Type-Options': 'nosniff',
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('not found\n');
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      resolve({
        name,
        origin: `http://${host}:${port}`,
        log,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [root, port, ...assignments] = process.argv.slice(2);
  if (!root || !port) {
    console.error('usage: node shop-server.mjs ROOT PORT NAME=value...');
    process.exit(2);
  }
  const vars = Object.fromEntries(assignments.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
  const shop = await startShop({
    root: path.resolve(root), port: Number(port), vars,
    onRequest: (e) => console.log(JSON.stringify({ at: e.at, method: e.method, url: e.url })),
  });
  console.log(`shop: ${shop.origin}/`);
}
