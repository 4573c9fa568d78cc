// openapi.yaml's error examples say exactly what the service sends.
//
//   node tests/contract/error-examples.mjs bundled.json openapi.yaml catalogue.json
//
// bundled.json is openapi.yaml as JSON (`redocly bundle --ext json`: the
// pinned Redocly parses the YAML, so this script needs no YAML parser).
// catalogue.json is `cardvault errors`: every code the API can answer with
// its status, type and message, printed by the binary from the table the
// service answers from (service/api_errors.c). Every example in the document
// whose value holds an `error` object must match the catalogue's entry for
// its code (type and message, word for word), and every code of the
// catalogue must be named somewhere in the document. Prints one "ok"/"not
// ok" line per finding and exits 1 on any mismatch.
import { readFileSync } from 'node:fs';

const [bundlePath, docPath, cataloguePath] = process.argv.slice(2);
const doc = JSON.parse(readFileSync(bundlePath, 'utf8'));
const catalogue = new Map(JSON.parse(readFileSync(cataloguePath, 'utf8')).map((e) => [e.code, e]));

const examples = [];
function walk(node, path) {
  if (Array.isArray(node)) {
    node.forEach((v, i) => walk(v, `${path}/${i}`));
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const err = node.error;
  if (err && typeof err === 'object' && typeof err.code === 'string' && typeof err.message === 'string') {
    examples.push({ path, ...err });
  }
  for (const [k, v] of Object.entries(node)) walk(v, `${path}/${k}`);
}
walk(doc, '#');

let bad = 0;
for (const ex of examples) {
  const want = catalogue.get(ex.code);
  if (!want) {
    console.log(`not ok - ${ex.path}: code ${ex.code} is not one the service sends`);
    bad++;
  } else if (want.message !== ex.message || want.type !== ex.type) {
    console.log(`not ok - ${ex.path}: ${ex.code} example says ${JSON.stringify([ex.type, ex.message])}, ` +
      `the service sends ${JSON.stringify([want.type, want.message])}`);
    bad++;
  }
}
const text = readFileSync(docPath, 'utf8');
for (const code of catalogue.keys()) {
  if (!new RegExp(`\\b${code}\\b`).test(text)) {
    console.log(`not ok - code ${code} (sent by the service) is not documented in ${docPath}`);
    bad++;
  }
}
console.log(`# ${examples.length} error examples checked against ${catalogue.size} codes, ${bad} mismatches`);
process.exit(bad === 0 ? 0 : 1);
