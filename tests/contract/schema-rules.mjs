// openapi.yaml's schemas are kind to generated clients and true to the service.
//
//   node tests/contract/schema-rules.mjs bundled.json
//
// bundled.json is openapi.yaml as JSON (`redocly bundle --ext json`). Checks:
//   1. no `const` anywhere: some generators narrow it, others drop it; a one-value `enum` is
//      understood by all;
//   2. response schemas are open (no `additionalProperties: false` in any schema a response
//      reaches): within v1 responses may gain members, and a validating client must not break;
//   3. request body schemas are closed (`additionalProperties: false`): the service refuses
//      unknown fields (`unknown_field`);
//   4. a request string without an ASCII-only `pattern` whose length the service limits in bytes
//      states that limit in `x-max-bytes`, and its `maxLength` (characters) is one the service
//      always accepts: maxLength * 4 <= x-max-bytes (UTF-8 has at most 4 bytes per character).
// Prints one "not ok" line per finding and a summary; exits 1 on any.
import { readFileSync } from 'node:fs';

const doc = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let bad = 0;
const fail = (msg) => {
  console.log(`not ok - ${msg}`);
  bad++;
};

function resolve(node) {
  while (node && typeof node.$ref === 'string' && node.$ref.startsWith('#/')) {
    node = node.$ref.slice(2).split('/').reduce((n, k) => n?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
  }
  return node;
}

// 1. no const (examples are data, not schemas: skipped)
function noConst(node, path) {
  if (Array.isArray(node)) return node.forEach((v, i) => noConst(v, `${path}/${i}`));
  if (node === null || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node)) {
    if (k === 'example' || k === 'examples') continue;
    if (k === 'const') fail(`${path}: const ${JSON.stringify(v)}; use a one-value enum`);
    noConst(v, `${path}/${k}`);
  }
}
noConst(doc, '#');

// Visits every schema reachable from schema (following $refs once each).
function eachSchema(schema, path, visit, seen = new Set()) {
  if (schema === null || typeof schema !== 'object') return;
  const ref = schema.$ref;
  const s = resolve(schema);
  if (s === null || typeof s !== 'object' || seen.has(s)) return;
  seen.add(s);
  const where = ref ?? path;
  visit(s, where);
  for (const k of ['properties', 'patternProperties', '$defs']) {
    for (const [name, sub] of Object.entries(s[k] ?? {})) eachSchema(sub, `${where}/${k}/${name}`, visit, seen);
  }
  for (const k of ['allOf', 'anyOf', 'oneOf', 'prefixItems']) {
    (s[k] ?? []).forEach((sub, i) => eachSchema(sub, `${where}/${k}/${i}`, visit, seen));
  }
  for (const k of ['items', 'additionalProperties', 'not', 'if', 'then', 'else']) {
    if (s[k] && typeof s[k] === 'object') eachSchema(s[k], `${where}/${k}`, visit, seen);
  }
}

let responses = 0;
let requests = 0;
for (const [p, item] of Object.entries(doc.paths ?? {})) {
  for (const [method, op] of Object.entries(item)) {
    if (op === null || typeof op !== 'object' || !op.responses) continue;
    const at = `${method.toUpperCase()} ${p}`;
    // 2. responses open
    for (const [status, r] of Object.entries(op.responses)) {
      for (const [mt, media] of Object.entries(resolve(r)?.content ?? {})) {
        responses++;
        eachSchema(media.schema, `${at} ${status} ${mt}`, (s, where) => {
          if (s.additionalProperties === false) {
            fail(`${at} ${status}: ${where} is closed (additionalProperties: false); responses may gain members within v1`);
          }
        });
      }
    }
    // 3. and 4. requests closed, byte limits stated
    for (const [mt, media] of Object.entries(resolve(op.requestBody)?.content ?? {})) {
      requests++;
      const body = resolve(media.schema);
      if (body?.type === 'object' && body.additionalProperties !== false) {
        fail(`${at} request ${mt}: the body schema must be closed (additionalProperties: false)`);
      }
      eachSchema(media.schema, `${at} request`, (s, where) => {
        const isString = s.type === 'string' || (Array.isArray(s.type) && s.type.includes('string'));
        if (!isString || s.maxLength === undefined) return;
        if (typeof s.pattern === 'string' && /^\^[^\\u]*\$$/.test(s.pattern) && !/[^\x20-\x7e]/.test(s.pattern) &&
            !s.pattern.includes('.') && !s.pattern.includes('[^')) {
          return; // an ASCII-only pattern: characters are bytes
        }
        const bytes = s['x-max-bytes'];
        if (typeof bytes !== 'number') {
          fail(`${where}: maxLength ${s.maxLength} counts characters; state the byte limit in x-max-bytes`);
        } else if (s.maxLength * 4 > bytes) {
          fail(`${where}: maxLength ${s.maxLength} characters can be ${s.maxLength * 4} bytes, over x-max-bytes ${bytes}`);
        }
      });
    }
  }
}
console.log(`# ${responses} response and ${requests} request schemas checked, ${bad} findings`);
process.exit(bad === 0 ? 0 : 1);
