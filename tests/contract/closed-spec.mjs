// A copy of openapi.yaml for the validating proxy, with every response object closed.
//
//   node tests/contract/closed-spec.mjs bundled.json out.json
//
// openapi.yaml's response schemas are open (clients must accept members added within v1), so a
// validator reading it cannot see the service send a member the document does not describe.
// The tests must see that: this copy sets `additionalProperties: false` on every object schema a
// response reaches that lists `properties` and says nothing about additional ones, and Prism
// (prism-proxy.sh, tests/integration/run.sh with CV_PRISM=1) validates against it. Schemas a
// request also reaches are copied first, so requests are checked against the document as is.
import { readFileSync, writeFileSync } from 'node:fs';

const [inPath, outPath] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(inPath, 'utf8'));
const components = doc.components?.schemas ?? {};

// Inline every $ref to #/components/schemas in a response, so closing a copy leaves the
// component (and any request using it) untouched.
function closeCopy(node, depth = 0) {
  if (depth > 64) throw new Error('closed-spec.mjs: schema nesting too deep (a recursive $ref?)');
  if (Array.isArray(node)) return node.map((v) => closeCopy(v, depth + 1));
  if (node === null || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string' && node.$ref.startsWith('#/components/schemas/')) {
    const target = components[node.$ref.slice('#/components/schemas/'.length)];
    const { $ref, ...siblings } = node;
    return closeCopy({ ...target, ...siblings }, depth + 1);
  }
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    out[k] = k === 'example' || k === 'examples' ? v : closeCopy(v, depth + 1);
  }
  if (out.properties && typeof out.properties === 'object' && !('additionalProperties' in out) &&
      !out.allOf && !out.anyOf && !out.oneOf) {
    out.additionalProperties = false;
  }
  return out;
}

let closed = 0;
function closeResponse(r) {
  for (const media of Object.values(r?.content ?? {})) {
    if (media.schema) {
      media.schema = closeCopy(media.schema);
      closed++;
    }
  }
}
for (const r of Object.values(doc.components?.responses ?? {})) closeResponse(r);
for (const item of Object.values(doc.paths ?? {})) {
  for (const op of Object.values(item)) {
    if (op === null || typeof op !== 'object' || !op.responses) continue;
    for (const r of Object.values(op.responses)) if (!r.$ref) closeResponse(r);
  }
}
writeFileSync(outPath, JSON.stringify(doc, null, 1));
console.log(`# ${closed} response schemas closed into ${outPath}`);
