// The demo shop `make run` serves beside the vault (docker/local-run.sh), on
// another origin: a checkout page that mounts the vault's card frame exactly as
// README.md shows, and an /orders endpoint that shows what the shop's server
// receives: a token, never card data. Node.js only, no packages.
//   SHOP_LISTEN=127.0.0.1:8081 VAULT_ORIGIN=http://127.0.0.1:8080 SHOP_PK=pk_... \
//   SHOP_SRI=sha384-... node docker/demo-shop/serve.js
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const [host, port] = (process.env.SHOP_LISTEN || '127.0.0.1:8081').split(':');
const vault = process.env.VAULT_ORIGIN || 'http://127.0.0.1:8080';
const key = process.env.SHOP_PK || '';
const sri = process.env.SHOP_SRI || '';
if (!/^pk_[0-9A-Za-z]{43}([0-9A-Za-z]{6})?$/.test(key) || !/^sha384-[A-Za-z0-9+/]{64}$/.test(sri) ||
    !/^https?:\/\/[0-9A-Za-z.:[\]-]+$/.test(vault)) {
  console.error('demo-shop: set SHOP_PK (a pk_ key), SHOP_SRI (cardvault elements-sri) and VAULT_ORIGIN');
  process.exit(2);
}

const dir = __dirname;
const files = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/shop.js': ['shop.js', 'text/javascript; charset=utf-8'],
  '/shop.css': ['shop.css', 'text/css; charset=utf-8'],
};
// The shop's own page policy: its scripts, the vault's loader and frame, nothing else.
const csp = `default-src 'none'; script-src 'self' ${vault}; style-src 'self'; ` +
  `frame-src ${vault}; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; ` +
  "frame-ancestors 'none'";

function send(res, status, type, body, extra) {
  res.writeHead(status, Object.assign({
    'Content-Type': type, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer', 'Content-Security-Policy': csp,
  }, extra || {}));
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://shop');
  if (req.method === 'GET' && url.pathname === '/config.js') {
    const config = JSON.stringify({ key });
    return send(res, 200, 'text/javascript; charset=utf-8', `window.SHOP_CONFIG = ${config};\n`);
  }
  if (req.method === 'GET' && files[url.pathname]) {
    const [name, type] = files[url.pathname];
    let body = fs.readFileSync(path.join(dir, name), 'utf8');
    if (name === 'index.html') body = body.replace(/\{\{VAULT\}\}/g, vault).replace(/\{\{SRI\}\}/g, sri);
    return send(res, 200, type, body);
  }
  if (req.method === 'POST' && url.pathname === '/orders') {
    let raw = '';
    req.on('data', (c) => { raw += c; if (raw.length > 4096) req.destroy(); });
    req.on('end', () => {
      let order;
      try { order = JSON.parse(raw); } catch (e) { order = null; }
      if (!order || typeof order.token !== 'string' || !/^tok_[0-9A-Za-z]{22}$/.test(order.token) ||
          Object.keys(order).some((k) => !['token', 'brand', 'last4', 'exp_month', 'exp_year'].includes(k))) {
        return send(res, 400, 'application/json', JSON.stringify({ error: 'an order carries a token only' }));
      }
      const id = 'ord_' + crypto.randomBytes(8).toString('hex');
      // What the shop's server sees: this line is the whole of it.
      console.log(`demo-shop: order ${id} received ${JSON.stringify(order)}`);
      return send(res, 201, 'application/json', JSON.stringify({ order: id, token: order.token }));
    });
    return;
  }
  send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
});
server.listen(Number(port), host, () => {
  console.log(`demo-shop: http://${host}:${port}/ (vault ${vault})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
