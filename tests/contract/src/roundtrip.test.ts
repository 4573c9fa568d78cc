// Typed-client round trip: proof that a shop developer can integrate from openapi.yaml alone.
//
// The client is generated from the spec (openapi-typescript -> generated/cardvault.ts) and driven
// with openapi-fetch, so any drift between the spec and this code is a compile error, and any
// drift between the spec and the running service is a test failure. Run it through the Prism
// validating proxy (prism-proxy.sh) so every request and response is also checked against the
// spec; the middleware below fails on anything Prism flags or answers itself.
//
// Environment:
//   CV_BASE_URL         base URL to talk to, normally the Prism proxy (http://127.0.0.1:4010)
//   CV_PUBLISHABLE_KEY  pk_... of a merchant (scope tokenize)
//   CV_SECRET_KEY       sk_... of the same merchant (tokenize, read, delete)
//   CV_DETOKENIZE_KEY   dk_... of the same merchant (detokenize)
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';

import createClient, { type Middleware } from 'openapi-fetch';

import type { components, paths } from '../generated/cardvault.js';

type Token = components['schemas']['Token'];
type ErrorCode = components['schemas']['ErrorCode'];
type ErrorType = components['schemas']['ErrorType'];
type TokenizeRequest = components['schemas']['TokenizeRequest'];

const REQUEST_ID = /^req_[0-9A-Za-z]{20}$/;
const TOKEN_ID = /^tok_[0-9A-Za-z]{22}$/;
const FINGERPRINT = /^fp_[0-9A-Za-z]{22}$/;

function required(name: string): string {
    const value = process.env[name];
    if (value === undefined || value === '') {
        throw new Error(`${name} is not set (see the header of src/roundtrip.test.ts)`);
    }
    return value;
}

const baseUrl = required('CV_BASE_URL').replace(/\/+$/, '');
const keys = {
    publishable: required('CV_PUBLISHABLE_KEY'),
    secret: required('CV_SECRET_KEY'),
    detokenize: required('CV_DETOKENIZE_KEY'),
};
const auth = (key: string) => ({ Authorization: `Bearer ${key}` });

// Checks every response against what the contract promises for all of them, and turns anything
// the Prism proxy produced or flagged into a failure (see prism-proxy.sh for the reasons).
const contractChecks: Middleware = {
    async onResponse({ request, response }) {
        const where = `${request.method} ${new URL(request.url).pathname} -> ${response.status}`;
        const violations = response.headers.get('sl-violations');
        if (violations !== null) {
            throw new Error(`${where}: Prism reports contract violations: ${violations}`);
        }
        const type = response.headers.get('content-type') ?? '';
        if (type.toLowerCase().startsWith('application/problem+json')) {
            const body = await response.clone().text();
            throw new Error(`${where}: answered by Prism, not cardvault: ${body}`);
        }
        const requestId = response.headers.get('x-request-id');
        if (requestId === null || !REQUEST_ID.test(requestId)) {
            throw new Error(`${where}: X-Request-Id missing or malformed: ${String(requestId)}`);
        }
        if (response.headers.get('cache-control') !== 'no-store') {
            throw new Error(`${where}: Cache-Control is not no-store`);
        }
        return undefined;
    },
};

const client = createClient<paths>({ baseUrl });
client.use(contractChecks);

// A card that is valid for years to come: expiry three years ahead, separators in the PAN.
const expYear = new Date().getUTCFullYear() + 3;
const card = {
    pan: '4242 4242 4242 4242',
    exp_month: 12,
    exp_year: expYear,
    cvc: '123',
    cardholder_name: 'HANAKO YAMADA',
} satisfies TokenizeRequest;

// The common shape of an error body; the compiler checks it against every error response type.
function assertError(
    result: {
        error?: { error: { type: ErrorType; code: ErrorCode; message: string; param?: string }; request_id: string };
        response: Response;
    },
    status: number,
    type: ErrorType,
    code: ErrorCode,
): void {
    const { error, response } = result;
    assert.equal(response.status, status, `expected ${status} ${code}, got ${response.status}`);
    assert.ok(error, `expected an error body with ${status}`);
    assert.equal(error.error.type, type);
    assert.equal(error.error.code, code);
    assert.equal(typeof error.error.message, 'string');
    assert.match(error.request_id, REQUEST_ID);
    assert.equal(error.request_id, response.headers.get('x-request-id'), 'request_id equals X-Request-Id');
}

async function deleteQuietly(token: string): Promise<void> {
    await client.DELETE('/v1/tokens/{token}', { params: { path: { token } }, headers: auth(keys.secret) });
}

test('tokenize -> read -> detokenize -> delete -> read is 404', async () => {
    const created = await client.POST('/v1/tokens', {
        params: { header: { 'Idempotency-Key': `roundtrip-${randomUUID()}` } },
        headers: auth(keys.publishable),
        body: card,
    });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));
    assert.ok(created.data);
    const token: Token = created.data;
    let deleted = false;
    try {
        assert.match(token.token, TOKEN_ID);
        // The publishable key has no read scope: no fingerprint to test card numbers with.
        assert.equal(token.fingerprint, undefined, 'no fingerprint for a key without read scope');
        assert.ok(!Number.isNaN(Date.parse(token.created_at)), 'created_at is a date-time');
        assert.deepEqual(
            { brand: token.brand, bin: token.bin, last4: token.last4, exp_month: token.exp_month, exp_year: token.exp_year },
            { brand: 'visa', bin: '424242', last4: '4242', exp_month: 12, exp_year: expYear },
        );
        assert.equal(created.response.headers.get('idempotent-replayed'), null, 'a first answer is not a replay');

        const read = await client.GET('/v1/tokens/{token}', {
            params: { path: { token: token.token } },
            headers: auth(keys.secret),
        });
        assert.equal(read.response.status, 200, JSON.stringify(read.error));
        assert.ok(read.data);
        assert.match(read.data.fingerprint ?? '', FINGERPRINT);
        assert.deepEqual(read.data, { ...token, fingerprint: read.data.fingerprint });

        const detokenized = await client.POST('/v1/tokens/{token}/detokenize', {
            params: { path: { token: token.token } },
            headers: auth(keys.detokenize),
        });
        assert.equal(detokenized.response.status, 200, JSON.stringify(detokenized.error));
        assert.ok(detokenized.data);
        const { pan, cardholder_name, ...masked } = detokenized.data;
        assert.equal(pan, '4242424242424242', 'separators are removed');
        assert.equal(cardholder_name, card.cardholder_name);
        assert.deepEqual(masked, read.data);

        const removed = await client.DELETE('/v1/tokens/{token}', {
            params: { path: { token: token.token } },
            headers: auth(keys.secret),
        });
        assert.equal(removed.response.status, 204, JSON.stringify(removed.error));
        deleted = true;

        const gone = await client.GET('/v1/tokens/{token}', {
            params: { path: { token: token.token } },
            headers: auth(keys.secret),
        });
        assertError(gone, 404, 'invalid_request_error', 'token_not_found');
        // The typed error body: a compile error here means the spec and the client disagree.
        if (gone.error) {
            const code: ErrorCode = gone.error.error.code;
            assert.equal(code, 'token_not_found');
        }

        // Deleted, never issued and malformed tokens are indistinguishable.
        const goneDetokenize = await client.POST('/v1/tokens/{token}/detokenize', {
            params: { path: { token: token.token } },
            headers: auth(keys.detokenize),
        });
        assertError(goneDetokenize, 404, 'invalid_request_error', 'token_not_found');
        for (const other of ['tok_0000000000000000000000', 'not-a-token']) {
            const missing = await client.GET('/v1/tokens/{token}', {
                params: { path: { token: other } },
                headers: auth(keys.secret),
            });
            assertError(missing, 404, 'invalid_request_error', 'token_not_found');
            assert.deepEqual(missing.error?.error, gone.error?.error, `same 404 body for ${other}`);
        }
    } finally {
        if (!deleted) await deleteQuietly(token.token);
    }
});

test('keys only reach their scopes', async () => {
    const created = await client.POST('/v1/tokens', { headers: auth(keys.secret), body: card });
    assert.equal(created.response.status, 201, JSON.stringify(created.error));
    assert.ok(created.data);
    const token = created.data.token;
    try {
        const readWithPublishable = await client.GET('/v1/tokens/{token}', {
            params: { path: { token } },
            headers: auth(keys.publishable),
        });
        assertError(readWithPublishable, 403, 'permission_error', 'insufficient_scope');

        const detokenizeWithSecret = await client.POST('/v1/tokens/{token}/detokenize', {
            params: { path: { token } },
            headers: auth(keys.secret),
        });
        assertError(detokenizeWithSecret, 403, 'permission_error', 'insufficient_scope');

        const unknownKey = await client.GET('/v1/tokens/{token}', {
            params: { path: { token } },
            headers: auth(`sk_${'0'.repeat(43)}`),
        });
        assertError(unknownKey, 401, 'authentication_error', 'invalid_api_key');
    } finally {
        await deleteQuietly(token);
    }
});

test('Idempotency-Key replays the first answer and refuses a different body', async () => {
    const key = `replay-${randomUUID()}`;
    const first = await client.POST('/v1/tokens', {
        params: { header: { 'Idempotency-Key': key } },
        headers: auth(keys.secret),
        body: card,
    });
    assert.equal(first.response.status, 201, JSON.stringify(first.error));
    assert.ok(first.data);
    try {
        const replay = await client.POST('/v1/tokens', {
            params: { header: { 'Idempotency-Key': key } },
            headers: auth(keys.secret),
            body: card,
        });
        assert.equal(replay.response.status, 201, JSON.stringify(replay.error));
        assert.equal(replay.response.headers.get('idempotent-replayed'), 'true');
        assert.deepEqual(replay.data, first.data);
        assert.notEqual(
            replay.response.headers.get('x-request-id'),
            first.response.headers.get('x-request-id'),
            'a replay has its own request id',
        );

        const reused = await client.POST('/v1/tokens', {
            params: { header: { 'Idempotency-Key': key } },
            headers: auth(keys.secret),
            body: { ...card, exp_month: 11 },
        });
        assertError(reused, 409, 'idempotency_error', 'idempotency_key_reused');
    } finally {
        await deleteQuietly(first.data.token);
    }
});

test('reuse_existing returns the existing token with 200', async () => {
    const first = await client.POST('/v1/tokens', { headers: auth(keys.secret), body: card });
    assert.equal(first.response.status, 201, JSON.stringify(first.error));
    assert.ok(first.data);
    try {
        const again = await client.POST('/v1/tokens', {
            headers: auth(keys.secret),
            body: { ...card, reuse_existing: true },
        });
        assert.equal(again.response.status, 200, JSON.stringify(again.error));
        assert.ok(again.data);
        assert.equal(again.data.fingerprint, first.data.fingerprint);
        assert.equal(again.data.exp_month, card.exp_month);
        assert.equal(again.data.exp_year, card.exp_year);
    } finally {
        await deleteQuietly(first.data.token);
    }
});
