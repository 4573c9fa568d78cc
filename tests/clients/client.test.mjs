// The packaged TypeScript client (build/clients/typescript, built by tests/clients/build-ts.sh)
// against a running vault: what an integrator's server does with it, start to finish.
//   CV_BASE_URL, CV_SECRET_KEY, CV_DETOKENIZE_KEY: one merchant of the running service.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = path.resolve(process.env.CV_CLIENT_DIST ?? 'build/clients/typescript/dist/index.js');
const { createClient, CardVaultListError } = await import(pathToFileURL(dist).href);

const baseUrl = process.env.CV_BASE_URL;
const sk = createClient({ baseUrl, apiKey: process.env.CV_SECRET_KEY });
const dk = createClient({ baseUrl, apiKey: process.env.CV_DETOKENIZE_KEY });
const YEAR = new Date().getUTCFullYear() + 2;
// Luhn-valid test numbers (the vault refuses others), one per card of the run.
function luhn(prefix, n) {
    const body = prefix + String(n).padStart(15 - prefix.length, '0');
    let sum = 0;
    for (let i = 0; i < body.length; i++) {
        let d = Number(body[body.length - 1 - i]);
        if (i % 2 === 0) { d *= 2; if (d > 9) d -= 9; }
        sum += d;
    }
    return body + String((10 - (sum % 10)) % 10);
}
const PAN = luhn('411111', 4242);

test('tokenize, read, update, list, detokenize, delete: a saved card with metadata and an expiry', async () => {
    const key = randomUUID();
    const made = await sk.tokenize(
        { pan: PAN, exp_month: 12, exp_year: YEAR, metadata: { order: 'A-1' }, ttl_seconds: 3600 },
        { idempotencyKey: key });
    assert.equal(made.ok, true, JSON.stringify(made));
    assert.equal(made.status, 201);
    assert.match(made.data.token, /^tok_[0-9A-Za-z]{22}$/);
    assert.equal(made.data.last4, PAN.slice(-4));
    assert.ok(!JSON.stringify(made.data).includes(PAN), 'no card number in a tokenize answer');
    assert.match(made.requestId, /^req_/);
    const replay = await sk.tokenize(
        { pan: PAN, exp_month: 12, exp_year: YEAR, metadata: { order: 'A-1' }, ttl_seconds: 3600 },
        { idempotencyKey: key });
    assert.equal(replay.ok && replay.data.token, made.data.token, 'the same Idempotency-Key replays');

    const got = await sk.getToken(made.data.token);
    assert.equal(got.ok && got.data.metadata?.order, 'A-1');
    assert.ok(got.ok && typeof got.data.expires_at === 'string', 'the lifetime shows as expires_at');

    const upd = await sk.updateToken(made.data.token, { exp_month: 1, exp_year: YEAR + 1, metadata: { order: 'A-2' } });
    assert.equal(upd.ok, true, JSON.stringify(upd));
    assert.equal(upd.ok && upd.data.exp_month, 1);

    for (let i = 0; i < 3; i++) {
        const r = await sk.tokenize({ pan: luhn('555555', 100 + i), exp_month: 5, exp_year: YEAR, metadata: { batch: 'ts' } });
        assert.equal(r.ok, true, JSON.stringify(r));
    }
    const seen = [];
    for await (const t of sk.allTokens({ limit: 2 })) seen.push(t.token);
    assert.ok(seen.length >= 4, `every token over pages of 2 (${seen.length})`);
    assert.ok(seen.includes(made.data.token));
    assert.equal(new Set(seen).size, seen.length, 'no token twice across pages');

    const det = await dk.detokenize(made.data.token);
    assert.equal(det.ok && det.data.pan, PAN);
    const denied = await sk.detokenize(made.data.token);
    assert.equal(denied.ok, false);
    assert.equal(!denied.ok && denied.status, 403);

    const del = await sk.deleteToken(made.data.token);
    assert.equal(del.ok && del.status, 204);
    const gone = await sk.getToken(made.data.token);
    assert.equal(gone.ok, false);
    assert.equal(!gone.ok && gone.status, 404);
    assert.equal(!gone.ok && gone.error.code, 'token_not_found');
});

test('errors are typed values with the documented code', async () => {
    const bad = await sk.tokenize({ pan: '4111111111111112', exp_month: 12, exp_year: YEAR });
    assert.equal(bad.ok, false);
    assert.equal(bad.status, 400);
    assert.equal(bad.error.type, 'invalid_request_error');
    assert.equal(bad.error.code, 'invalid_pan');
    assert.ok(!JSON.stringify(bad).includes('4111111111111112'), 'the refused number is not echoed');
    const nokey = createClient({ baseUrl, apiKey: 'sk_not_a_key' });
    const r = await nokey.getToken('tok_1111111111111111111111');
    assert.equal(!r.ok && r.status, 401);
    const down = createClient({ baseUrl: 'http://127.0.0.1:1', apiKey: 'sk_x' });
    const d = await down.getToken('tok_1111111111111111111111');
    assert.equal(!d.ok && d.error.code, 'network_error');
    const listFail = createClient({ baseUrl, apiKey: process.env.CV_DETOKENIZE_KEY });
    await assert.rejects(async () => { for await (const _ of listFail.allTokens()) { /* none */ } },
        (e) => e instanceof CardVaultListError && e.result.status === 403);
});
