// @cardvault/client: a small typed surface over cardvault's HTTP API.
//
// The types come from openapi.yaml (openapi-typescript writes src/generated/cardvault.ts at
// build time), and every call goes through openapi-fetch with those types, so a change to the
// API that this code does not follow fails the build instead of a shop's checkout.
//
// Each method resolves to a Result: { ok: true, data } or { ok: false, status, error }, where
// error is the API's error object ({ type, code, message, param? }) and code is the union of
// the codes openapi.yaml documents. Nothing here logs, retries on its own, or keeps a card
// number after the request that carried it.
import createFetchClient from 'openapi-fetch';

import type { components, paths } from './generated/cardvault.js';

export type Token = components['schemas']['Token'];
export type DetokenizedToken = components['schemas']['DetokenizedToken'];
export type TokenList = components['schemas']['TokenList'];
export type TokenizeRequest = components['schemas']['TokenizeRequest'];
export type UpdateTokenRequest = components['schemas']['UpdateTokenRequest'];
export type CvcHoldRequest = components['schemas']['CvcHoldRequest'];
export type CvcHold = components['schemas']['CvcHold'];
export type RelayRequest = components['schemas']['RelayRequest'];
export type RelayAnswer = components['schemas']['RelayAnswer'];
export type ErrorCode = components['schemas']['ErrorCode'];
export type ErrorType = components['schemas']['ErrorType'];

/** The API's error object, as every 4xx and 5xx answer carries it. */
export interface ApiError {
    type: ErrorType;
    code: ErrorCode;
    message: string;
    param?: string;
}

/** What the client itself reports when no answer came (network, timeout). */
export interface TransportError {
    type: 'transport_error';
    code: 'network_error';
    message: string;
}

export type Result<T> =
    | { ok: true; status: number; data: T; requestId: string | null }
    | { ok: false; status: number; error: ApiError | TransportError; requestId: string | null; retryAfter: number | null };

export interface ClientOptions {
    /** The vault's API origin, e.g. https://vault.example.com */
    baseUrl: string;
    /**
     * The API key: sk_ (server side: tokenize, read, list, update, delete), dk_ (detokenize),
     * rk_ (relay). Never put a secret key in a browser; the hosted fields use pk_ keys.
     */
    apiKey: string;
    /** A fetch implementation (tests, proxies); the global fetch by default. */
    fetch?: typeof globalThis.fetch;
}

/** Options of a write that may be retried safely. */
export interface IdempotentOptions {
    /** Sent as Idempotency-Key: a retry with the same key and body replays the first answer. */
    idempotencyKey?: string;
}

export interface ListOptions {
    /** Tokens a page, 1 to 100 (default 10). */
    limit?: number;
    fingerprint?: string;
    /** Unix seconds */
    createdGte?: number;
    /** Unix seconds */
    createdLt?: number;
}

interface RawAnswer<T> {
    data?: T;
    error?: unknown;
    response: Response;
}

function isApiError(x: unknown): x is { error: ApiError } {
    if (typeof x !== 'object' || x === null || !('error' in x)) return false;
    const e = (x as { error: unknown }).error;
    return typeof e === 'object' && e !== null && 'code' in e && 'type' in e && 'message' in e;
}

function toResult<T>(raw: RawAnswer<T>): Result<T> {
    const requestId = raw.response.headers.get('X-Request-Id');
    const status = raw.response.status;
    if (raw.response.ok) {
        return { ok: true, status, data: raw.data as T, requestId };
    }
    const retry = raw.response.headers.get('Retry-After');
    const retryAfter = retry !== null && /^[0-9]+$/.test(retry) ? Number(retry) : null;
    const error: ApiError = isApiError(raw.error)
        ? raw.error.error
        : { type: 'api_error', code: 'internal_error', message: `HTTP ${status} without an error object` };
    return { ok: false, status, error, requestId, retryAfter };
}

async function call<T>(send: () => Promise<RawAnswer<T>>): Promise<Result<T>> {
    try {
        return toResult(await send());
    } catch (err) {
        // No answer: the request may or may not have reached the vault. Retry a write only
        // with the same Idempotency-Key.
        const message = err instanceof Error ? err.message : String(err);
        return {
            ok: false,
            status: 0,
            error: { type: 'transport_error', code: 'network_error', message },
            requestId: null,
            retryAfter: null,
        };
    }
}

export interface CardVaultClient {
    tokenize(card: TokenizeRequest, options?: IdempotentOptions): Promise<Result<Token>>;
    getToken(token: string): Promise<Result<Token>>;
    updateToken(token: string, changes: UpdateTokenRequest): Promise<Result<Token>>;
    deleteToken(token: string): Promise<Result<null>>;
    detokenize(token: string): Promise<Result<DetokenizedToken>>;
    listTokens(options?: ListOptions & { cursor?: string }): Promise<Result<TokenList>>;
    /** Every token of the list, page after page; throws the failed page's Result as an Error. */
    allTokens(options?: ListOptions): AsyncGenerator<Token, void, undefined>;
    holdCvc(token: string, hold: CvcHoldRequest): Promise<Result<CvcHold>>;
    relay(
        destination: string,
        request: RelayRequest,
        options?: IdempotentOptions & { cvcHold?: string },
    ): Promise<Result<RelayAnswer>>;
}

/** A page that failed while iterating allTokens. */
export class CardVaultListError extends Error {
    readonly result: Result<TokenList>;
    constructor(result: Result<TokenList>) {
        super(result.ok ? 'unexpected' : `${result.error.code}: ${result.error.message}`);
        this.name = 'CardVaultListError';
        this.result = result;
    }
}

export function createClient(options: ClientOptions): CardVaultClient {
    const api = createFetchClient<paths>({
        baseUrl: options.baseUrl.replace(/\/+$/, ''),
        headers: { Authorization: `Bearer ${options.apiKey}` },
        ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
    });
    const idem = (o?: IdempotentOptions) =>
        o?.idempotencyKey !== undefined ? { 'Idempotency-Key': o.idempotencyKey } : {};
    const tokenPath = (token: string) => ({ path: { token } });
    const query = (o?: ListOptions & { cursor?: string }) => ({
        ...(o?.limit !== undefined ? { limit: o.limit } : {}),
        ...(o?.cursor !== undefined ? { cursor: o.cursor } : {}),
        ...(o?.fingerprint !== undefined ? { fingerprint: o.fingerprint } : {}),
        ...(o?.createdGte !== undefined ? { 'created[gte]': o.createdGte } : {}),
        ...(o?.createdLt !== undefined ? { 'created[lt]': o.createdLt } : {}),
    });

    const client: CardVaultClient = {
        tokenize: (card, o) =>
            call(() => api.POST('/v1/tokens', { body: card, params: { header: idem(o) } })),
        getToken: (token) => call(() => api.GET('/v1/tokens/{token}', { params: tokenPath(token) })),
        updateToken: (token, changes) =>
            call(() => api.PATCH('/v1/tokens/{token}', { params: tokenPath(token), body: changes })),
        deleteToken: async (token) => {
            const r = await call(() => api.DELETE('/v1/tokens/{token}', { params: tokenPath(token) }));
            return r.ok ? { ...r, data: null } : r;
        },
        detokenize: (token) =>
            call(() => api.POST('/v1/tokens/{token}/detokenize', { params: tokenPath(token), body: {} })),
        listTokens: (o) => call(() => api.GET('/v1/tokens', { params: { query: query(o) } })),
        async *allTokens(o) {
            let cursor: string | undefined;
            for (;;) {
                const page = await client.listTokens({ ...o, ...(cursor !== undefined ? { cursor } : {}) });
                if (!page.ok) throw new CardVaultListError(page);
                yield* page.data.data;
                if (!page.data.has_more || page.data.next_cursor === null) return;
                cursor = page.data.next_cursor;
            }
        },
        holdCvc: (token, hold) =>
            call(() => api.POST('/v1/tokens/{token}/cvc-hold', { params: tokenPath(token), body: hold })),
        relay: (destination, request, o) =>
            call(() =>
                api.POST('/v1/relay/{destination}', {
                    params: {
                        path: { destination },
                        header: {
                            ...idem(o),
                            ...(o?.cvcHold !== undefined ? { 'CardVault-Hold': o.cvcHold } : {}),
                        },
                    },
                    body: request,
                }),
            ),
    };
    return client;
}
