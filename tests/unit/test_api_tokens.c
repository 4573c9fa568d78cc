/* test_api_tokens.c: the token flows through the handler contract, against
 * an in-memory fake store, a fake keyring and a fake clock: no PostgreSQL,
 * no sockets. Covers tokenize (created, validation errors, the CVC never
 * stored), Idempotency-Key (first, replay, different body, a claim in use
 * that finishes or times out, a released claim that is retried),
 * reuse_existing, read, delete, fail-closed detokenize, token collisions,
 * merchant isolation and destroyed data keys. Races are scripted through the
 * fake store's hooks and the fake clock's sleep. */
#include "cardvault/api_tokens.h"
#include "cardvault/api_tokens_manage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/api_health.h"
#include "cardvault/card_testing.h"
#include "cardvault/json_codec.h"
#include "cardvault/metrics.h"
#include "cardvault/token.h"
#include "check.h"

#define MERCHANT_A "mer_aaaaaaaaaaaaaaaaaaaa"
#define MERCHANT_B "mer_bbbbbbbbbbbbbbbbbbbb"
#define PAN        "4242424242424242"
#define CVC        "987"
#define NOW_S      1781524800 /* 2026-06-15T12:00:00Z */

#define FAKE_TOKENS 32
#define FAKE_IDEM   8
#define FAKE_AUDIT  32

/* ---- the fake store ---------------------------------------------------- */

struct fake_idem {
    bool used;
    char merchant_id[CV_MERCHANT_ID_LEN + 1];
    unsigned char key_hash[32];
    unsigned char request_hash[32];
    bool done;
    int status_code;
    char *body;
};

struct fake_store {
    struct cv_token_row tokens[FAKE_TOKENS]; /* deep copies; [0, n_tokens) */
    size_t n_tokens;
    struct fake_idem idem[FAKE_IDEM];
    char audit_action[FAKE_AUDIT][32];
    char audit_outcome[FAKE_AUDIT][32];
    char audit_token[FAKE_AUDIT][CV_TOKEN_LEN + 1]; /* events that came with a token insert */
    char audit_actor[FAKE_AUDIT][32];
    size_t n_audit;
    /* Scripted behaviour. */
    bool audit_fails;          /* every audit append answers CV_ERR_DB_UNAVAILABLE */
    int collisions;            /* the next inserts that meet a unique violation */
    cv_status insert_fails;    /* the next insert answers this (then CV_OK again) */
    int vanish_claims;         /* the next claims find their record released under them */
    int claims;                /* claim calls seen */
    int durable_claims;        /* of which asked to be flushed before returning */
    int finish_after_sleeps;   /* > 0: the in-progress record completes at that sleep */
    const char *finished_body; /* with this answer (201) */
    int sleeps;                /* the fake clock's sleep calls */
    unsigned slept_ms;         /* and their total */
    bool cvc_reached_seal;     /* the security code reached the sealed card */
    int update_lose;           /* the next updates find the row changed under them */
    int updates;               /* update calls seen */
};

static struct fake_store *fs(struct cv_store *st)
{
    return (struct fake_store *)(void *)st;
}

static void row_copy(struct cv_token_row *dst, const struct cv_token_row *src)
{
    *dst = *src;
    dst->ciphertext = malloc(src->ciphertext_len);
    memcpy(dst->ciphertext, src->ciphertext, src->ciphertext_len);
    dst->metadata = src->metadata != NULL ? strdup(src->metadata) : NULL;
}

static void fake_free(struct fake_store *f)
{
    for (size_t i = 0; i < f->n_tokens; i++)
        cv_token_row_cleanup(&f->tokens[i]);
    for (size_t i = 0; i < FAKE_IDEM; i++)
        free(f->idem[i].body);
    memset(f, 0, sizeof(*f));
}

static struct cv_token_row *find_row(struct fake_store *f, const char *merchant_id,
                                     const char *token)
{
    for (size_t i = 0; i < f->n_tokens; i++)
        if (strcmp(f->tokens[i].merchant_id, merchant_id) == 0 &&
            strcmp(f->tokens[i].token, token) == 0)
            return &f->tokens[i];
    return NULL;
}

static struct fake_idem *find_idem(struct fake_store *f, const char *merchant_id,
                                   const unsigned char key_hash[32])
{
    for (size_t i = 0; i < FAKE_IDEM; i++)
        if (f->idem[i].used && strcmp(f->idem[i].merchant_id, merchant_id) == 0 &&
            memcmp(f->idem[i].key_hash, key_hash, 32) == 0)
            return &f->idem[i];
    return NULL;
}

static cv_status fake_get_token(struct cv_store *st, const char *merchant_id, const char *token,
                                struct cv_token_row *out)
{
    struct cv_token_row *r = find_row(fs(st), merchant_id, token);
    if (r == NULL)
        return CV_ERR_NOT_FOUND;
    row_copy(out, r);
    return CV_OK;
}

static cv_status fake_find_by_fingerprint(struct cv_store *st, const char *merchant_id,
                                          const char *fingerprint, struct cv_token_row *rows,
                                          size_t max, size_t *count)
{
    struct fake_store *f = fs(st);
    *count = 0;
    for (size_t i = f->n_tokens; i-- > 0 && *count < max;) /* newest first */
        if (strcmp(f->tokens[i].merchant_id, merchant_id) == 0 &&
            strcmp(f->tokens[i].fingerprint, fingerprint) == 0)
            row_copy(&rows[(*count)++], &f->tokens[i]);
    return CV_OK;
}

static cv_status fake_audit_append(struct cv_store *st, const struct cv_audit_event *ev);

/* A token and its audit event commit together: both or neither. */
static cv_status fake_insert_token(struct cv_store *st, const struct cv_token_row *row,
                                   const unsigned char *idem_key_hash, const char *response_body,
                                   const struct cv_audit_event *ev)
{
    struct fake_store *f = fs(st);
    if (f->collisions > 0) {
        f->collisions--;
        return CV_ERR_DUPLICATE;
    }
    if (f->insert_fails != CV_OK) {
        cv_status s = f->insert_fails;
        f->insert_fails = CV_OK;
        return s;
    }
    if (f->n_tokens == FAKE_TOKENS)
        return CV_ERR_DB;
    if (ev != NULL) {
        CV_TRY(fake_audit_append(st, ev));
        snprintf(f->audit_token[f->n_audit - 1], sizeof(f->audit_token[0]), "%s",
                 ev->token != NULL ? ev->token : "");
    }
    row_copy(&f->tokens[f->n_tokens++], row);
    if (idem_key_hash != NULL) {
        struct fake_idem *r = find_idem(f, row->merchant_id, idem_key_hash);
        if (r != NULL) {
            r->done = true;
            r->status_code = 201;
            r->body = strdup(response_body);
        }
    }
    return CV_OK;
}

static cv_status fake_audit_append(struct cv_store *st, const struct cv_audit_event *ev)
{
    struct fake_store *f = fs(st);
    if (f->audit_fails)
        return CV_ERR_DB_UNAVAILABLE;
    if (f->n_audit < FAKE_AUDIT) {
        snprintf(f->audit_action[f->n_audit], 32, "%s", ev->action);
        snprintf(f->audit_outcome[f->n_audit], 32, "%s", ev->outcome ? ev->outcome : "success");
        snprintf(f->audit_actor[f->n_audit], 32, "%s", ev->actor != NULL ? ev->actor : "");
        f->n_audit++;
    }
    return CV_OK;
}

static cv_status fake_delete_token(struct cv_store *st, const char *merchant_id, const char *token,
                                   const struct cv_audit_event *ev)
{
    struct fake_store *f = fs(st);
    struct cv_token_row *r = find_row(f, merchant_id, token);
    struct cv_audit_event e = *ev;
    e.outcome = r != NULL ? "success" : "not_found";
    CV_TRY(fake_audit_append(st, &e));
    if (r == NULL)
        return CV_ERR_NOT_FOUND;
    cv_token_row_cleanup(r);
    *r = f->tokens[--f->n_tokens];
    memset(&f->tokens[f->n_tokens], 0, sizeof(f->tokens[0]));
    return CV_OK;
}

/* An update writes the row and its audit event together; update_lose
 * scripts a concurrent update that re-sealed the row first. */
static cv_status fake_update_token(struct cv_store *st, const struct cv_token_row *row,
                                   const unsigned char old_nonce[CV_GCM_NONCE_BYTES],
                                   const struct cv_audit_event *ev)
{
    struct fake_store *f = fs(st);
    (void)old_nonce;
    f->updates++;
    struct cv_token_row *r = find_row(f, row->merchant_id, row->token);
    if (r == NULL)
        return CV_ERR_NOT_FOUND;
    if (f->update_lose > 0) {
        f->update_lose--;
        return CV_ERR_NOT_FOUND;
    }
    CV_TRY(fake_audit_append(st, ev));
    cv_token_row_cleanup(r);
    row_copy(r, row);
    return CV_OK;
}

/* Newest first; the cursor and filters are the SQL's (store_tokens.c) and
 * the scenario's business: here only the merchant and the page size. */
static cv_status fake_list_tokens(struct cv_store *st, const struct cv_token_list_query *q,
                                  struct cv_token_row *rows, size_t max, size_t *count)
{
    struct fake_store *f = fs(st);
    *count = 0;
    for (size_t i = f->n_tokens; i-- > 0 && *count < max;)
        if (strcmp(f->tokens[i].merchant_id, q->merchant_id) == 0) {
            row_copy(&rows[*count], &f->tokens[i]);
            rows[(*count)++].created_us = (int64_t)i * 1000000;
        }
    return CV_OK;
}

static cv_status fake_idem_claim(struct cv_store *st, const char *merchant_id,
                                 const unsigned char key_hash[32],
                                 const unsigned char request_hash[32], int64_t ttl_s,
                                 int64_t stale_s, bool durable, enum cv_idem_claim *outcome,
                                 struct cv_idem_record *existing)
{
    struct fake_store *f = fs(st);
    (void)ttl_s;
    (void)stale_s;
    memset(existing, 0, sizeof(*existing));
    f->claims++;
    f->durable_claims += durable ? 1 : 0;
    if (f->vanish_claims > 0) {
        f->vanish_claims--;
        *outcome = CV_IDEM_VANISHED;
        return CV_OK;
    }
    struct fake_idem *r = find_idem(f, merchant_id, key_hash);
    if (r != NULL) {
        *outcome = CV_IDEM_TAKEN;
        existing->done = r->done;
        memcpy(existing->request_hash, r->request_hash, 32);
        if (r->done) {
            existing->status_code = r->status_code;
            existing->response_body = strdup(r->body);
        }
        return CV_OK;
    }
    for (size_t i = 0; i < FAKE_IDEM; i++) {
        if (f->idem[i].used)
            continue;
        r = &f->idem[i];
        memset(r, 0, sizeof(*r));
        r->used = true;
        snprintf(r->merchant_id, sizeof(r->merchant_id), "%s", merchant_id);
        memcpy(r->key_hash, key_hash, 32);
        memcpy(r->request_hash, request_hash, 32);
        *outcome = CV_IDEM_CLAIMED;
        return CV_OK;
    }
    return CV_ERR_DB;
}

static cv_status fake_idem_complete(struct cv_store *st, const char *merchant_id,
                                    const unsigned char key_hash[32], int status_code,
                                    const char *response_body)
{
    struct fake_idem *r = find_idem(fs(st), merchant_id, key_hash);
    if (r == NULL)
        return CV_ERR_NOT_FOUND;
    r->done = true;
    r->status_code = status_code;
    r->body = strdup(response_body);
    return CV_OK;
}

static cv_status fake_idem_release(struct cv_store *st, const char *merchant_id,
                                   const unsigned char key_hash[32])
{
    struct fake_idem *r = find_idem(fs(st), merchant_id, key_hash);
    if (r != NULL && !r->done) {
        free(r->body);
        memset(r, 0, sizeof(*r));
    }
    return CV_OK;
}

static cv_status fake_ping(struct cv_store *st)
{
    (void)st;
    return CV_OK;
}

static void fake_pool_usage(struct cv_store *st, unsigned *in_use, unsigned *size)
{
    (void)st;
    *in_use = 1;
    *size = 4;
}

static const struct cv_store_ops fake_store_ops = {
    .get_token = fake_get_token,
    .find_by_fingerprint = fake_find_by_fingerprint,
    .insert_token = fake_insert_token,
    .delete_token = fake_delete_token,
    .audit_append = fake_audit_append,
    .idem_claim = fake_idem_claim,
    .idem_complete = fake_idem_complete,
    .idem_release = fake_idem_release,
    .ping = fake_ping,
    .pool_usage = fake_pool_usage,
    .list_tokens = fake_list_tokens,
    .update_token = fake_update_token,
};

/* ---- the fake keyring: reversible, keyed by nothing; enough for flows --- */

static unsigned long long fnv(unsigned long long h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static bool contains(const void *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp((const char *)hay + i, needle, k) == 0)
            return true;
    return false;
}

static cv_status fake_seal(struct cv_keyring *kr, const struct cv_card_plain *card,
                           struct cv_token_row *row)
{
    struct fake_store *f = (struct fake_store *)(void *)kr;
    if (contains(card, sizeof(*card), CVC))
        f->cvc_reached_seal = true;
    row->dek_id = 1;
    row->format_version = 1;
    row->ciphertext_len = sizeof(*card);
    row->ciphertext = malloc(sizeof(*card));
    memcpy(row->ciphertext, card, sizeof(*card));
    for (size_t i = 0; i < sizeof(*card); i++)
        row->ciphertext[i] ^= 0x5a;
    return CV_OK;
}

static cv_status fake_open_row(struct cv_keyring *kr, const struct cv_token_row *row,
                               struct cv_card_plain *card)
{
    (void)kr;
    if (row->dek_destroyed)
        return CV_ERR_TOKEN_DESTROYED;
    if (row->ciphertext_len != sizeof(*card))
        return CV_ERR_INTEGRITY;
    memcpy(card, row->ciphertext, sizeof(*card));
    for (size_t i = 0; i < sizeof(*card); i++)
        ((unsigned char *)card)[i] ^= 0x5a;
    return CV_OK;
}

static cv_status fake_fingerprint(struct cv_keyring *kr, const char *merchant_id, const char *pan,
                                  char out[CV_FINGERPRINT_LEN + 1])
{
    (void)kr;
    unsigned long long h =
        fnv(fnv(14695981039346656037ULL, merchant_id, strlen(merchant_id)), pan, strlen(pan));
    snprintf(out, CV_FINGERPRINT_LEN + 1, "fp_%022llu", h % 10000000000000000000ULL);
    return CV_OK;
}

static cv_status fake_mac(struct cv_keyring *kr, const char *label, const char *merchant_id,
                          const void *data, size_t len, unsigned char out[32])
{
    (void)kr;
    unsigned long long h = fnv(14695981039346656037ULL, label, strlen(label) + 1);
    h = fnv(h, merchant_id, strlen(merchant_id) + 1);
    h = fnv(h, data, len);
    for (size_t i = 0; i < 32; i++) {
        h = fnv(h, &i, sizeof(i));
        out[i] = (unsigned char)h;
    }
    return CV_OK;
}

static bool fake_kek_ok(struct cv_keyring *kr)
{
    (void)kr;
    return true;
}

static uint64_t fake_rotations(struct cv_keyring *kr)
{
    (void)kr;
    return 0;
}

static const struct cv_keyring_ops fake_keyring_ops = {
    .seal = fake_seal,
    .open_row = fake_open_row,
    .fingerprint = fake_fingerprint,
    .mac = fake_mac,
    .kek_ok = fake_kek_ok,
    .rotations = fake_rotations,
};

/* ---- the fake clock: sleeping advances nothing but the race script ------ */

static time_t fake_now(void *ctx)
{
    (void)ctx;
    return (time_t)NOW_S;
}

static void fake_sleep_ms(void *ctx, unsigned ms)
{
    struct fake_store *f = ctx;
    f->sleeps++;
    f->slept_ms += ms;
    if (f->finish_after_sleeps > 0 && f->sleeps == f->finish_after_sleeps) {
        /* The first request commits while we wait. */
        for (size_t i = 0; i < FAKE_IDEM; i++)
            if (f->idem[i].used && !f->idem[i].done) {
                f->idem[i].done = true;
                f->idem[i].status_code = 201;
                f->idem[i].body = strdup(f->finished_body);
            }
    }
}

/* ---- driving a handler ------------------------------------------------- */

static struct fake_store store;
static atomic_bool draining;
/* What run() hands the handler besides its arguments: the Origin header
 * and the tokenize quotas and detector (NULL: none). */
static const char *call_origin;
static struct cv_card_testing *card_testing;

static struct cv_handler_deps deps_of(struct fake_store *f)
{
    struct cv_handler_deps d;
    memset(&d, 0, sizeof(d));
    d.store = (struct cv_store *)(void *)f;
    d.store_ops = &fake_store_ops;
    d.keyring = (struct cv_keyring *)(void *)f;
    d.keyring_ops = &fake_keyring_ops;
    d.clock = (struct cv_clock){fake_now, fake_sleep_ms, f};
    d.draining = &draining;
    d.idempotency_ttl_s = 86400;
    d.card_testing = card_testing;
    return d;
}

struct captured {
    struct cv_completion done; /* first: the completion is the capture */
    struct cv_result res;
    int calls;
};

static void capture(struct cv_completion *self, struct cv_result *result)
{
    struct captured *c = (struct captured *)(void *)self;
    c->res = *result;
    memset(result, 0, sizeof(*result));
    c->calls++;
}

static const struct cv_principal who_a = {MERCHANT_A, "sk_aaaaaaaaa", CV_SCOPES_ALL, ""};
/* A publishable key: tokenize only, as a checkout page holds it. */
static const struct cv_principal who_pk = {MERCHANT_A, "pk_aaaaaaaaa", CV_SCOPE_TOKENIZE, ""};
static const struct cv_principal who_b = {MERCHANT_B, "sk_bbbbbbbbb", CV_SCOPES_ALL, ""};

/* Runs handler with (who, token, idempotency key, body) and returns its one result. */
static struct cv_result run(cv_handler handler, const struct cv_principal *who, const char *token,
                            const char *idem_key, const char *body)
{
    struct cv_handler_deps d = deps_of(&store);
    struct cv_tokenize_req req;
    struct cv_json_param param;
    memset(&req, 0, sizeof(req));
    if (body != NULL && cv_json_decode_tokenize(body, strlen(body), &req, &param) != CV_OK) {
        fprintf(stderr, "  test body does not decode\n");
        abort();
    }
    struct cv_call call = {.request_id = "req_testtesttesttesttest",
                           .who = who,
                           .token = token,
                           .idempotency_key = idem_key,
                           .tokenize = body != NULL ? &req : NULL,
                           .origin = call_origin};
    struct captured c;
    memset(&c, 0, sizeof(c));
    c.done.finish = capture;
    handler(&d, &call, &c.done);
    CHECK_EQ_INT(c.calls, 1); /* exactly once, before returning */
    cv_tokenize_req_cleanup(&req);
    return c.res;
}

static struct cv_result tokenize(const struct cv_principal *who, const char *idem_key,
                                 const char *body)
{
    return run(cv_api_tokenize, who, NULL, idem_key, body);
}

static bool body_has(const struct cv_result *r, const char *s)
{
    return r->body != NULL && strstr(r->body, s) != NULL;
}

/* The "token" member of a result body. */
static void token_of(const struct cv_result *r, char out[CV_TOKEN_LEN + 1])
{
    const char *p = r->body != NULL ? strstr(r->body, "\"token\":\"") : NULL;
    out[0] = '\0';
    if (p != NULL)
        snprintf(out, CV_TOKEN_LEN + 1, "%s", p + strlen("\"token\":\""));
}

#define CARD       "{\"pan\":\"" PAN "\",\"exp_month\":12,\"exp_year\":2030"
#define CARD_BODY  CARD "}"
#define CARD_CVC   CARD ",\"cvc\":\"" CVC "\"}"
#define CARD_REUSE CARD ",\"reuse_existing\":true}"

static void setup(void)
{
    fake_free(&store);
    atomic_store(&draining, false);
}

/* ---- tokenize ---------------------------------------------------------- */

static void tokenize_creates_a_token(void)
{
    setup();
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_CREATED);
    CHECK(!r.replayed);
    CHECK_EQ_INT(r.body_type, CV_BODY_JSON);
    CHECK(body_has(&r, "\"token\":\"tok_"));
    CHECK(body_has(&r, "\"last4\":\"4242\""));
    CHECK(!body_has(&r, PAN));
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void tokenize_rejects_bad_cards_with_the_field(void)
{
    setup();
    struct {
        const char *body;
        cv_status st;
        const char *param;
    } cases[] = {
        {"{\"pan\":\"4242424242424241\",\"exp_month\":12,\"exp_year\":2030}", CV_ERR_INVALID_PAN,
         "pan"},
        {"{\"pan\":\"" PAN "\",\"exp_month\":13,\"exp_year\":2030}", CV_ERR_INVALID_EXPIRY,
         "exp_month"},
        {"{\"pan\":\"" PAN "\",\"exp_month\":1,\"exp_year\":2025}", CV_ERR_INVALID_EXPIRY,
         "exp_year"},
        {CARD ",\"cvc\":\"12\"}", CV_ERR_INVALID_CVC, "cvc"},
        {CARD ",\"cardholder_name\":\"" PAN "\"}", CV_ERR_INVALID_NAME, "cardholder_name"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_result r = tokenize(&who_a, "key-1", cases[i].body);
        CHECK_EQ_INT(r.status, cases[i].st);
        CHECK(r.error_param != NULL && strcmp(r.error_param, cases[i].param) == 0);
        CHECK(r.body == NULL);
        cv_result_cleanup(&r);
    }
    /* A bad request never occupies its key, nor writes anything. */
    CHECK_EQ_INT(store.claims, 0);
    CHECK_EQ_INT(store.n_tokens, 0);
    fake_free(&store);
}

static void tokenize_never_stores_the_cvc(void)
{
    setup();
    struct cv_result r = tokenize(&who_a, "key-cvc", CARD_CVC);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_CREATED);
    CHECK(!store.cvc_reached_seal);
    CHECK(!body_has(&r, CVC) && !body_has(&r, "cvc"));
    CHECK(store.idem[0].done && strstr(store.idem[0].body, CVC) == NULL);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void tokenize_retries_a_token_collision(void)
{
    setup();
    store.collisions = 2;
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_CREATED);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&r);

    store.collisions = 3; /* every attempt collides: give up, as a unique violation */
    r = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(r.status, CV_ERR_DUPLICATE);
    CHECK(r.body == NULL);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&r);
    fake_free(&store);
}

/* ---- Idempotency-Key --------------------------------------------------- */

static void idempotent_retry_replays_the_first_answer(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(first.status, CV_OK);
    CHECK_EQ_INT(first.kind, CV_RESULT_CREATED);
    CHECK(!first.replayed);
    struct cv_result again = tokenize(&who_a, "key-1", CARD_CVC); /* only the CVC differs */
    CHECK_EQ_INT(again.status, CV_OK);
    CHECK_EQ_INT(again.kind, CV_RESULT_CREATED);
    CHECK(again.replayed);
    CHECK(first.body != NULL && again.body != NULL && strcmp(first.body, again.body) == 0);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&first);
    cv_result_cleanup(&again);
    fake_free(&store);
}

static void idempotency_key_with_another_body_is_reused(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, "key-1", CARD_BODY);
    struct cv_result other =
        tokenize(&who_a, "key-1", "{\"pan\":\"" PAN "\",\"exp_month\":11,\"exp_year\":2030}");
    CHECK_EQ_INT(other.status, CV_ERR_IDEMPOTENCY_REUSED);
    CHECK(other.body == NULL);
    CHECK_EQ_INT(store.n_tokens, 1);
    /* Keys are per merchant: another merchant's same key is a new request. */
    struct cv_result b = tokenize(&who_b, "key-1", CARD_BODY);
    CHECK_EQ_INT(b.status, CV_OK);
    CHECK(!b.replayed);
    cv_result_cleanup(&first);
    cv_result_cleanup(&other);
    cv_result_cleanup(&b);
    fake_free(&store);
}

/* A claimed key whose request is still running: wait, then answer theirs. */
static void claim_in_use_waits_for_the_first_request(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, "key-1", CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&first, tok);
    /* Re-open the record as in progress: the first request has not committed. */
    store.idem[0].done = false;
    free(store.idem[0].body);
    store.idem[0].body = NULL;
    store.finish_after_sleeps = 3;
    store.finished_body = first.body;
    struct cv_result second = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(second.status, CV_OK);
    CHECK(second.replayed);
    CHECK_EQ_INT(second.kind, CV_RESULT_CREATED);
    CHECK(body_has(&second, tok));
    CHECK_EQ_INT(store.sleeps, 3);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&first);
    cv_result_cleanup(&second);
    fake_free(&store);
}

static void claim_in_use_times_out(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, "key-1", CARD_BODY);
    store.idem[0].done = false; /* stuck in progress */
    free(store.idem[0].body);
    store.idem[0].body = NULL;
    CHECK_EQ_INT(store.durable_claims, 0); /* a new key's claim need not wait for the disk */
    int claims_before = store.claims;
    struct cv_result second = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(second.status, CV_ERR_IDEMPOTENCY_IN_USE);
    CHECK(second.body == NULL);
    /* 5 s in 50 ms polls: 101 looks, a pause after each; every look after
     * the first is a durable claim (the key is known to be held). */
    CHECK_EQ_INT(store.claims - claims_before, 101);
    CHECK_EQ_INT(store.durable_claims, 100);
    CHECK_EQ_INT(store.slept_ms, 5050);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&first);
    cv_result_cleanup(&second);
    fake_free(&store);
}

/* A request that fails releases its claim; the retry then runs for real. */
static void released_claim_is_retried(void)
{
    setup();
    store.insert_fails = CV_ERR_DB_UNAVAILABLE;
    struct cv_result failed = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(failed.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(failed.body == NULL);
    CHECK(!store.idem[0].used); /* released */
    struct cv_result retry = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(retry.status, CV_OK);
    CHECK_EQ_INT(retry.kind, CV_RESULT_CREATED);
    CHECK(!retry.replayed);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&failed);
    cv_result_cleanup(&retry);
    fake_free(&store);
}

/* The record vanished between the store's claim and its read: ask again. */
static void claim_that_vanished_is_asked_again(void)
{
    setup();
    store.vanish_claims = 2;
    struct cv_result r = tokenize(&who_a, "key-1", CARD_BODY);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_CREATED);
    CHECK_EQ_INT(store.claims, 3);
    CHECK_EQ_INT(store.sleeps, 2);
    cv_result_cleanup(&r);
    fake_free(&store);
}

/* ---- a tokenize-only key learns nothing about cards seen before --------- */

static void tokenize_only_key_gets_no_fingerprint(void)
{
    setup();
    struct cv_result pk = tokenize(&who_pk, NULL, CARD_BODY);
    CHECK_EQ_INT(pk.status, CV_OK);
    CHECK(!body_has(&pk, "fingerprint"));
    struct cv_result sk = tokenize(&who_a, NULL, CARD_BODY); /* read scope: it stays */
    CHECK(body_has(&sk, "\"fingerprint\""));
    cv_result_cleanup(&pk);
    cv_result_cleanup(&sk);
    fake_free(&store);
}

static void tokenize_only_key_reuse_existing_is_ignored(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, NULL, CARD_BODY);
    struct cv_result pk = tokenize(&who_pk, NULL, CARD_REUSE);
    CHECK_EQ_INT(pk.status, CV_OK);
    CHECK_EQ_INT(pk.kind, CV_RESULT_CREATED); /* a new token, seen or not */
    CHECK_EQ_INT(store.n_tokens, 2);
    cv_result_cleanup(&first);
    cv_result_cleanup(&pk);
    fake_free(&store);
}

static void tokenize_only_key_completed_idempotency_key_answers_alike(void)
{
    setup();
    struct cv_result first = tokenize(&who_pk, "key-p", CARD_BODY);
    CHECK_EQ_INT(first.status, CV_OK);
    struct cv_result same = tokenize(&who_pk, "key-p", CARD_BODY);
    struct cv_result other =
        tokenize(&who_pk, "key-p", "{\"pan\":\"" PAN "\",\"exp_month\":11,\"exp_year\":2030}");
    CHECK_EQ_INT(same.status, CV_ERR_IDEMPOTENCY_REUSED);
    CHECK_EQ_INT(other.status, CV_ERR_IDEMPOTENCY_REUSED);
    CHECK(same.body == NULL && other.body == NULL);
    CHECK_EQ_INT(store.n_tokens, 1);
    cv_result_cleanup(&first);
    cv_result_cleanup(&same);
    cv_result_cleanup(&other);
    fake_free(&store);
}

/* ---- oversize card fields ---------------------------------------------- */

static void oversize_pan_is_invalid_pan_before_allocation(void)
{
    size_t n = 4000;
    char *body = malloc(n + 64);
    CHECK(body != NULL);
    if (body == NULL)
        return;
    memcpy(body, "{\"pan\":\"", 8);
    memset(body + 8, '4', n);
    snprintf(body + 8 + n, 56, "\",\"exp_month\":12,\"exp_year\":2030}");
    struct cv_tokenize_req req;
    struct cv_json_param param;
    memset(&req, 0, sizeof(req));
    CHECK_EQ_INT(cv_json_decode_tokenize(body, strlen(body), &req, &param), CV_ERR_INVALID_PAN);
    CHECK(strcmp(param.name, "pan") == 0);
    CHECK(req.pan == NULL);
    cv_tokenize_req_cleanup(&req);
    free(body);
}

/* ---- reuse_existing ---------------------------------------------------- */

static void reuse_existing_answers_the_old_token(void)
{
    setup();
    struct cv_result first = tokenize(&who_a, NULL, CARD_REUSE); /* nothing to reuse yet */
    CHECK_EQ_INT(first.status, CV_OK);
    CHECK_EQ_INT(first.kind, CV_RESULT_CREATED);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&first, tok);
    struct cv_result again = tokenize(&who_a, "key-r", CARD_REUSE);
    CHECK_EQ_INT(again.status, CV_OK);
    CHECK_EQ_INT(again.kind, CV_RESULT_OK);
    CHECK(body_has(&again, tok));
    CHECK_EQ_INT(store.n_tokens, 1);
    /* Completed in the idempotency record as a 200 answer: a replay keeps it. */
    struct cv_result replay = tokenize(&who_a, "key-r", CARD_REUSE);
    CHECK(replay.replayed);
    CHECK_EQ_INT(replay.kind, CV_RESULT_OK);
    CHECK(body_has(&replay, tok));
    /* Another expiry is another card: a new token. */
    struct cv_result other = tokenize(
        &who_a, NULL,
        "{\"pan\":\"" PAN "\",\"exp_month\":11,\"exp_year\":2030,\"reuse_existing\":true}");
    CHECK_EQ_INT(other.kind, CV_RESULT_CREATED);
    CHECK(!body_has(&other, tok));
    /* And another merchant never reuses ours. */
    struct cv_result b = tokenize(&who_b, NULL, CARD_REUSE);
    CHECK_EQ_INT(b.kind, CV_RESULT_CREATED);
    CHECK(!body_has(&b, tok));
    cv_result_cleanup(&first);
    cv_result_cleanup(&again);
    cv_result_cleanup(&replay);
    cv_result_cleanup(&other);
    cv_result_cleanup(&b);
    fake_free(&store);
}

/* ---- read, delete, detokenize ------------------------------------------ */

static void read_shows_the_token_without_the_card(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    struct cv_result r = run(cv_api_read, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_OK);
    CHECK(body_has(&r, tok));
    CHECK(!body_has(&r, PAN));
    cv_result_cleanup(&t);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void another_merchants_token_looks_missing(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    const char *missing = "tok_0000000000000000000000";
    cv_handler handlers[] = {cv_api_read, cv_api_detokenize, cv_api_delete};
    for (size_t i = 0; i < 3; i++) {
        struct cv_result theirs = run(handlers[i], &who_b, tok, NULL, NULL);
        struct cv_result none = run(handlers[i], &who_b, missing, NULL, NULL);
        struct cv_result bad = run(handlers[i], &who_b, "tok_short", NULL, NULL);
        CHECK_EQ_INT(theirs.status, CV_ERR_NOT_FOUND);
        CHECK_EQ_INT(none.status, CV_ERR_NOT_FOUND);
        CHECK_EQ_INT(bad.status, CV_ERR_NOT_FOUND);
        CHECK(theirs.body == NULL && none.body == NULL && bad.body == NULL);
        CHECK(theirs.error_param == NULL && none.error_param == NULL);
        cv_result_cleanup(&theirs);
        cv_result_cleanup(&none);
        cv_result_cleanup(&bad);
    }
    CHECK_EQ_INT(store.n_tokens, 1); /* B's delete removed nothing of A's */
    cv_result_cleanup(&t);
    fake_free(&store);
}

static void delete_removes_and_audits(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    struct cv_result d = run(cv_api_delete, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(d.status, CV_OK);
    CHECK_EQ_INT(d.kind, CV_RESULT_DELETED);
    CHECK(d.body == NULL);
    CHECK_EQ_INT(store.n_tokens, 0);
    CHECK_EQ_INT(store.n_audit, 2); /* token.tokenize, then the delete */
    CHECK(strcmp(store.audit_action[1], "token.delete") == 0);
    struct cv_result again = run(cv_api_delete, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(again.status, CV_ERR_NOT_FOUND);
    struct cv_result r = run(cv_api_read, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    cv_result_cleanup(&t);
    cv_result_cleanup(&d);
    cv_result_cleanup(&again);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void detokenize_answers_the_card_after_its_audit(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD ",\"cardholder_name\":\"Ada Lovelace\"}");
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    struct cv_result r = run(cv_api_detokenize, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_OK);
    CHECK(body_has(&r, "\"pan\":\"" PAN "\""));
    CHECK(body_has(&r, "Ada Lovelace"));
    CHECK_EQ_INT(store.n_audit, 2); /* token.tokenize, then the detokenize */
    CHECK(strcmp(store.audit_action[1], "token.detokenize") == 0);
    CHECK(strcmp(store.audit_outcome[1], "success") == 0);
    cv_result_cleanup(&t);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void detokenize_fails_closed_without_its_audit(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    store.audit_fails = true;
    struct cv_result r = run(cv_api_detokenize, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(r.body == NULL);
    CHECK(r.body_len == 0);
    CHECK(r.error_param == NULL);
    cv_result_cleanup(&t);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void destroyed_data_key_means_destroyed(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD_BODY);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    store.tokens[0].dek_destroyed = true;
    struct cv_result r = run(cv_api_read, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_ERR_TOKEN_DESTROYED);
    CHECK(r.body == NULL);
    struct cv_result d = run(cv_api_detokenize, &who_a, tok, NULL, NULL);
    CHECK_EQ_INT(d.status, CV_ERR_TOKEN_DESTROYED);
    CHECK(d.body == NULL);
    CHECK_EQ_INT(store.n_audit, 2); /* token.tokenize, then the detokenize */
    CHECK(strcmp(store.audit_outcome[1], "token_destroyed") == 0);
    cv_result_cleanup(&t);
    cv_result_cleanup(&r);
    cv_result_cleanup(&d);
    fake_free(&store);
}

/* ---- audit of every tokenize ------------------------------------------- */

static void tokenize_is_audited_with_its_token(void)
{
    setup();
    struct cv_result r = tokenize(&who_pk, NULL, CARD_BODY);
    CHECK_EQ_INT(r.status, CV_OK);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&r, tok);
    /* One event, handed over with the insert itself (same transaction). */
    CHECK_EQ_INT(store.n_audit, 1);
    CHECK(strcmp(store.audit_action[0], "token.tokenize") == 0);
    CHECK(strcmp(store.audit_outcome[0], "success") == 0);
    CHECK(strcmp(store.audit_token[0], tok) == 0);
    CHECK(strcmp(store.audit_actor[0], "pk_aaaaaaaaa") == 0);
    /* A collision retried: still one event, naming the token that committed. */
    store.collisions = 1;
    struct cv_result c = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(c.status, CV_OK);
    token_of(&c, tok);
    CHECK_EQ_INT(store.n_audit, 2);
    CHECK(strcmp(store.audit_token[1], tok) == 0);
    cv_result_cleanup(&r);
    cv_result_cleanup(&c);
    fake_free(&store);
}

static void tokenize_without_its_audit_event_is_not_acknowledged(void)
{
    setup();
    store.audit_fails = true;
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(r.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(r.body == NULL);
    CHECK_EQ_INT(store.n_tokens, 0);
    /* reuse_existing answering an old token is audited too, or not answered. */
    store.audit_fails = false;
    struct cv_result first = tokenize(&who_a, NULL, CARD_REUSE);
    CHECK_EQ_INT(first.kind, CV_RESULT_CREATED);
    struct cv_result again = tokenize(&who_a, NULL, CARD_REUSE);
    CHECK_EQ_INT(again.kind, CV_RESULT_OK);
    CHECK_EQ_INT(store.n_audit, 2);
    CHECK(strcmp(store.audit_outcome[1], "reused") == 0);
    store.audit_fails = true;
    struct cv_result refused = tokenize(&who_a, NULL, CARD_REUSE);
    CHECK_EQ_INT(refused.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(refused.body == NULL);
    cv_result_cleanup(&r);
    cv_result_cleanup(&first);
    cv_result_cleanup(&again);
    cv_result_cleanup(&refused);
    fake_free(&store);
}

/* ---- tokenize quotas and card testing ---------------------------------- */

static void with_card_testing(unsigned key, unsigned publishable, unsigned origin,
                              unsigned threshold, struct cv_metrics *m)
{
    struct cv_card_testing_limits l = {key, publishable, origin, threshold, 3600, true};
    card_testing = cv_card_testing_new(&l, m, NULL);
}

static void without_card_testing(void)
{
    cv_card_testing_free(card_testing);
    card_testing = NULL;
    call_origin = NULL;
}

/* A 16-digit PAN 424242 + middle + 4242, Luhn-valid: the middle's last digit
 * is chosen to fit (it is not doubled, so exactly one digit does). */
static void pan_with_middle(unsigned i, char out[32])
{
    for (unsigned x = 0; x < 10; x++) {
        snprintf(out, 32, "424242%05u%u4242", i % 100000u, x);
        int sum = 0;
        for (int k = 0; k < 16; k++) {
            int d = out[15 - k] - '0';
            if (k % 2 == 1)
                d = d * 2 > 9 ? d * 2 - 9 : d * 2;
            sum += d;
        }
        if (sum % 10 == 0)
            return;
    }
}

static struct cv_result tokenize_pan(const struct cv_principal *who, const char *pan)
{
    char body[128];
    snprintf(body, sizeof(body), "{\"pan\":\"%s\",\"exp_month\":12,\"exp_year\":2030}", pan);
    return tokenize(who, NULL, body);
}

static void publishable_key_quota_refuses_while_secret_key_goes_on(void)
{
    setup();
    with_card_testing(100, 3, 0, 0, NULL);
    for (int i = 0; i < 3; i++) {
        struct cv_result r = tokenize(&who_pk, NULL, CARD_BODY);
        CHECK_EQ_INT(r.status, CV_OK);
        cv_result_cleanup(&r);
    }
    struct cv_result over = tokenize(&who_pk, NULL, CARD_BODY);
    CHECK_EQ_INT(over.status, CV_ERR_QUOTA_EXCEEDED);
    CHECK(over.body == NULL);
    /* 3 an hour: the next unit in about 20 minutes. */
    CHECK(over.retry_after_s >= 1100 && over.retry_after_s <= 1201);
    CHECK_EQ_INT(store.n_tokens, 3);
    CHECK_EQ_INT(store.n_audit, 3); /* the refusal wrote nothing */
    /* Invalid requests count too: the quota is spent before validation. */
    struct cv_result bad =
        tokenize(&who_pk, NULL, "{\"pan\":\"1\",\"exp_month\":1,\"exp_year\":2030}");
    CHECK_EQ_INT(bad.status, CV_ERR_QUOTA_EXCEEDED);
    /* The merchant's secret key has its own, larger budget. */
    struct cv_result sk = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(sk.status, CV_OK);
    CHECK_EQ_INT(sk.kind, CV_RESULT_CREATED);
    cv_result_cleanup(&over);
    cv_result_cleanup(&bad);
    cv_result_cleanup(&sk);
    without_card_testing();
    fake_free(&store);
}

static void origin_quota_spans_keys_and_merchants(void)
{
    setup();
    with_card_testing(100, 100, 2, 0, NULL);
    call_origin = "https://shop.example";
    struct cv_result a = tokenize(&who_pk, NULL, CARD_BODY);
    struct cv_result b = tokenize(&who_b, NULL, CARD_BODY);
    call_origin = "HTTPS://SHOP.EXAMPLE"; /* the same origin */
    struct cv_result c = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(a.status, CV_OK);
    CHECK_EQ_INT(b.status, CV_OK);
    CHECK_EQ_INT(c.status, CV_ERR_QUOTA_EXCEEDED);
    CHECK(c.retry_after_s >= 1);
    call_origin = "https://other.example";
    struct cv_result d = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(d.status, CV_OK);
    call_origin = NULL; /* no Origin (a server): only the key's quota */
    struct cv_result e = tokenize(&who_a, NULL, CARD_BODY);
    CHECK_EQ_INT(e.status, CV_OK);
    cv_result_cleanup(&a);
    cv_result_cleanup(&b);
    cv_result_cleanup(&c);
    cv_result_cleanup(&d);
    cv_result_cleanup(&e);
    without_card_testing();
    fake_free(&store);
}

static bool metrics_show(struct cv_metrics *m, const char *line)
{
    struct cv_metrics_gauges g;
    size_t len = 0;
    memset(&g, 0, sizeof(g));
    char *page = cv_metrics_render(m, &g, &len);
    bool found = strstr(page, line) != NULL;
    free(page);
    return found;
}

static void walking_middle_digits_is_flagged_and_blocked_for_publishable_keys(void)
{
    setup();
    struct cv_metrics *m = cv_metrics_new();
    with_card_testing(1000, 1000, 0, 5, m);
    char pan[32];
    int created = 0, refused = 0;
    unsigned retry = 0;
    for (int i = 0; i < 8; i++) {
        pan_with_middle((unsigned)i, pan);
        struct cv_result r = tokenize_pan(&who_pk, pan);
        created += r.status == CV_OK;
        if (r.status == CV_ERR_QUOTA_EXCEEDED) {
            refused++;
            retry = r.retry_after_s;
        }
        cv_result_cleanup(&r);
        fake_free(&store); /* the fake holds 32 tokens */
    }
    CHECK_EQ_INT(created, 5); /* the fifth raises the signal, the rest wait */
    CHECK_EQ_INT(refused, 3);
    CHECK(retry >= 3500 && retry <= 3600);
    CHECK(metrics_show(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 1"));
    CHECK(metrics_show(m, "cardvault_card_testing_suspected_total{signal=\"bin_expiry\"} 1"));
    CHECK(metrics_show(m, "cardvault_tokenize_refused_total{reason=\"card_testing\"} 3"));
    /* Other cards of the same key are not blocked. */
    struct cv_result other = tokenize_pan(&who_pk, "4000056655665556");
    CHECK_EQ_INT(other.status, CV_OK);
    cv_result_cleanup(&other);
    fake_free(&store);
    /* A key with the read scope raises the signal but is not blocked. */
    created = 0;
    for (int i = 0; i < 8; i++) {
        pan_with_middle((unsigned)(100 + i), pan);
        struct cv_result r = tokenize_pan(&who_a, pan);
        created += r.status == CV_OK;
        cv_result_cleanup(&r);
        fake_free(&store);
    }
    CHECK_EQ_INT(created, 8);
    CHECK(metrics_show(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 2"));
    without_card_testing();
    cv_metrics_free(m);
}

static void the_same_card_again_is_not_card_testing(void)
{
    setup();
    struct cv_metrics *m = cv_metrics_new();
    with_card_testing(1000, 1000, 0, 3, m);
    for (int i = 0; i < 10; i++) {
        struct cv_result r = tokenize(&who_pk, NULL, CARD_BODY);
        CHECK_EQ_INT(r.status, CV_OK);
        cv_result_cleanup(&r);
    }
    CHECK(metrics_show(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 0"));
    without_card_testing();
    cv_metrics_free(m);
    fake_free(&store);
}

/* ---- health ------------------------------------------------------------ */

static void readiness_is_not_ready_while_draining(void)
{
    setup();
    struct cv_result r = run(cv_api_readyz, NULL, NULL, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_OK);
    CHECK(body_has(&r, "\"ready\""));
    cv_result_cleanup(&r);
    atomic_store(&draining, true);
    r = run(cv_api_readyz, NULL, NULL, NULL, NULL);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_NOT_READY);
    CHECK(body_has(&r, "\"unavailable\""));
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void metrics_answer_prometheus_text(void)
{
    setup();
    struct cv_handler_deps d = deps_of(&store);
    struct cv_call call = {.request_id = "req_testtesttesttesttest"};
    struct captured c;
    memset(&c, 0, sizeof(c));
    c.done.finish = capture;
    d.metrics = cv_metrics_new();
    cv_api_metrics(&d, &call, &c.done);
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK_EQ_INT(c.res.kind, CV_RESULT_OK);
    CHECK_EQ_INT(c.res.body_type, CV_BODY_METRICS);
    CHECK(c.res.body != NULL && c.res.body_len > 0);
    cv_result_cleanup(&c.res);
    cv_metrics_free(d.metrics);
    fake_free(&store);
}

/* ---- update and list (api_tokens_manage.c) -------------------------------------- */

/* PATCH body through the real decoder, then the update handler. */
static struct cv_result update(const struct cv_principal *who, const char *token,
                               const char *idem_key, const char *body)
{
    struct cv_handler_deps d = deps_of(&store);
    struct cv_update_req req;
    struct cv_json_param param;
    if (cv_json_decode_update(body, strlen(body), &req, &param) != CV_OK) {
        fprintf(stderr, "  test update body does not decode\n");
        abort();
    }
    struct cv_call call = {.request_id = "req_testtesttesttesttest",
                           .who = who,
                           .token = token,
                           .idempotency_key = idem_key,
                           .update = &req};
    struct captured c;
    memset(&c, 0, sizeof(c));
    c.done.finish = capture;
    cv_api_update(&d, &call, &c.done);
    CHECK_EQ_INT(c.calls, 1);
    cv_update_req_cleanup(&req);
    return c.res;
}

static struct cv_result list(const struct cv_principal *who, unsigned limit)
{
    struct cv_handler_deps d = deps_of(&store);
    struct cv_list_req q;
    memset(&q, 0, sizeof(q));
    q.limit = limit;
    struct cv_call call = {.request_id = "req_testtesttesttesttest", .who = who, .list = &q};
    struct captured c;
    memset(&c, 0, sizeof(c));
    c.done.finish = capture;
    cv_api_list(&d, &call, &c.done);
    CHECK_EQ_INT(c.calls, 1);
    return c.res;
}

/* Opens merchant A's stored row of tok with the fake keyring. */
static bool open_stored(const char *tok, struct cv_card_plain *card)
{
    struct cv_token_row *row = find_row(&store, MERCHANT_A, tok);
    return row != NULL && fake_open_row(NULL, row, card) == CV_OK;
}

static void update_reseals_the_card_in_place(void)
{
    setup();
    char tok[CV_TOKEN_LEN + 1];
    struct cv_result r = tokenize(&who_a, NULL, CARD ",\"cardholder_name\":\"OLD NAME\"}");
    token_of(&r, tok);
    cv_result_cleanup(&r);
    r = update(&who_a, tok, NULL,
               "{\"exp_month\":3,\"exp_year\":2032,\"cardholder_name\":\"NEW NAME\","
               "\"metadata\":{\"k\":\"v\"},\"ttl_seconds\":60}");
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(r.kind, CV_RESULT_OK);
    CHECK(body_has(&r, tok) && body_has(&r, "\"exp_month\":3") &&
          body_has(&r, "\"exp_year\":2032"));
    CHECK(body_has(&r, "\"metadata\":{\"k\":\"v\"}"));
    CHECK(body_has(&r, "\"expires_at\":\"2026-06-15T12:01:00Z\"")); /* the clock + 60 s */
    CHECK(!body_has(&r, PAN) && !body_has(&r, "NEW NAME"));
    cv_result_cleanup(&r);
    struct cv_card_plain card;
    CHECK(open_stored(tok, &card));
    CHECK(strcmp(card.pan, PAN) == 0 && card.exp_month == 3 && card.exp_year == 2032);
    CHECK(card.has_name && strcmp(card.name, "NEW NAME") == 0);
    CHECK_EQ_INT(store.n_tokens, 1);
    CHECK(strcmp(store.audit_action[store.n_audit - 1], "token.update") == 0);
    /* null removes the name and the lifetime; a metadata key set to null goes */
    r = update(&who_a, tok, NULL,
               "{\"cardholder_name\":null,\"ttl_seconds\":null,\"metadata\":{\"k\":null}}");
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK(body_has(&r, "\"metadata\":{}") && body_has(&r, "\"expires_at\":null"));
    cv_result_cleanup(&r);
    CHECK(open_stored(tok, &card));
    CHECK(!card.has_name && card.exp_month == 3);
    cv_wipe(&card, sizeof(card));
    fake_free(&store);
}

static void update_refusals_change_nothing(void)
{
    setup();
    char tok[CV_TOKEN_LEN + 1];
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    token_of(&r, tok);
    cv_result_cleanup(&r);
    size_t audits = store.n_audit;
    r = update(&who_a, tok, NULL, "{\"exp_month\":3,\"exp_year\":2001}");
    CHECK_EQ_INT(r.status, CV_ERR_INVALID_EXPIRY);
    CHECK(r.error_param != NULL && strcmp(r.error_param, "exp_year") == 0);
    cv_result_cleanup(&r);
    r = update(&who_a, tok, NULL, "{\"cardholder_name\":\"4242 4242 4242 4242\"}");
    CHECK_EQ_INT(r.status, CV_ERR_INVALID_NAME);
    cv_result_cleanup(&r);
    /* another merchant's token, a malformed and a missing one: not found */
    r = update(&who_b, tok, NULL, "{\"metadata\":{\"a\":\"b\"}}");
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    cv_result_cleanup(&r);
    r = update(&who_a, "tok_short", NULL, "{}");
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    cv_result_cleanup(&r);
    r = update(&who_a, "tok_0000000000000000000000", NULL, "{}");
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    cv_result_cleanup(&r);
    CHECK_EQ_INT(store.updates, 0);
    CHECK_EQ_INT(store.n_audit, audits);
    struct cv_card_plain card;
    CHECK(open_stored(tok, &card) && card.exp_month == 12 && card.exp_year == 2030);
    cv_wipe(&card, sizeof(card));
    fake_free(&store);
}

static void update_starts_over_when_it_loses_a_race(void)
{
    setup();
    char tok[CV_TOKEN_LEN + 1];
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    token_of(&r, tok);
    cv_result_cleanup(&r);
    store.update_lose = 2;
    r = update(&who_a, tok, NULL, "{\"metadata\":{\"a\":\"b\"}}");
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(store.updates, 3);
    cv_result_cleanup(&r);
    store.update_lose = 3;
    store.updates = 0;
    r = update(&who_a, tok, NULL, "{\"metadata\":{\"a\":\"c\"}}");
    CHECK_EQ_INT(r.status, CV_ERR_DB_UNAVAILABLE); /* retriable */
    CHECK_EQ_INT(store.updates, 3);
    CHECK(r.body == NULL);
    cv_result_cleanup(&r);
    fake_free(&store);
}

static void update_with_idempotency_key_replays(void)
{
    setup();
    char tok[CV_TOKEN_LEN + 1];
    struct cv_result r = tokenize(&who_a, NULL, CARD_BODY);
    token_of(&r, tok);
    cv_result_cleanup(&r);
    struct cv_result first = update(&who_a, tok, "upd-1", "{\"metadata\":{\"a\":\"b\"}}");
    CHECK_EQ_INT(first.status, CV_OK);
    CHECK(!first.replayed);
    r = update(&who_a, tok, "upd-1", "{\"metadata\":{\"a\":\"b\"}}");
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK(r.replayed);
    CHECK(r.body != NULL && first.body != NULL && strcmp(r.body, first.body) == 0);
    CHECK_EQ_INT(store.updates, 1);
    cv_result_cleanup(&r);
    r = update(&who_a, tok, "upd-1", "{\"metadata\":{\"a\":\"c\"}}");
    CHECK_EQ_INT(r.status, CV_ERR_IDEMPOTENCY_REUSED);
    CHECK_EQ_INT(store.updates, 1);
    cv_result_cleanup(&r);
    cv_result_cleanup(&first);
    fake_free(&store);
}

static void list_pages_the_merchants_tokens_without_card_numbers(void)
{
    setup();
    const char *pans[] = {"4242424242424242", "5555555555554444", "4000056655665556"};
    for (size_t i = 0; i < 3; i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"pan\":\"%s\",\"exp_month\":12,\"exp_year\":2030}",
                 pans[i]);
        struct cv_result r = tokenize(i == 2 ? &who_b : &who_a, NULL, body);
        cv_result_cleanup(&r);
    }
    struct cv_result r = list(&who_a, 1);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK(body_has(&r, "\"object\":\"list\"") && body_has(&r, "\"has_more\":true"));
    CHECK(body_has(&r, "\"next_cursor\":\"cur_") && body_has(&r, "\"last4\":\"4444\""));
    CHECK(!body_has(&r, "5555555555554444") && !body_has(&r, "\"pan\""));
    cv_result_cleanup(&r);
    r = list(&who_a, 10);
    CHECK(body_has(&r, "\"has_more\":false") && body_has(&r, "\"next_cursor\":null"));
    CHECK(body_has(&r, "\"last4\":\"4242\"") && body_has(&r, "\"last4\":\"4444\""));
    CHECK(!body_has(&r, "\"last4\":\"5556\"")); /* merchant B's */
    cv_result_cleanup(&r);
    fake_free(&store);
}

/* ---- the asynchronous store calls ------------------------------------ */

/* A store whose _async calls queue the job, as the batch writer does; the
 * test "commits" it with commit_pending, which runs the waiting call and
 * then the callback, as the writer thread would after COMMIT. */
enum pending_kind { PENDING_NONE, PENDING_INSERT, PENDING_GET, PENDING_AUDIT };
static struct {
    enum pending_kind kind;
    const struct cv_token_row *row;
    const char *merchant_id;
    const char *token;
    struct cv_token_row *out;
    const struct cv_audit_event *ev;
    const unsigned char *idem;
    const char *body;
    cv_store_done_fn done;
    void *ctx;
    int queued;
} pending;

static cv_status queue_pending(enum pending_kind kind, cv_store_done_fn done, void *ctx)
{
    CHECK_EQ_INT(pending.kind, PENDING_NONE); /* one at a time */
    pending.kind = kind;
    pending.done = done;
    pending.ctx = ctx;
    pending.queued++;
    return CV_OK;
}

static cv_status async_insert(struct cv_store *st, const struct cv_token_row *row,
                              const unsigned char *idem_key_hash, const char *response_body,
                              const struct cv_audit_event *ev, cv_store_done_fn done, void *ctx)
{
    (void)st;
    CHECK(response_body != NULL);
    pending.idem = idem_key_hash;
    pending.body = response_body;
    pending.row = row;
    pending.ev = ev;
    return queue_pending(PENDING_INSERT, done, ctx);
}

static cv_status async_get(struct cv_store *st, const char *merchant_id, const char *token,
                           struct cv_token_row *out, cv_store_done_fn done, void *ctx)
{
    (void)st;
    pending.merchant_id = merchant_id;
    pending.token = token;
    pending.out = out;
    return queue_pending(PENDING_GET, done, ctx);
}

static cv_status async_audit(struct cv_store *st, const struct cv_audit_event *ev,
                             cv_store_done_fn done, void *ctx)
{
    (void)st;
    pending.ev = ev;
    return queue_pending(PENDING_AUDIT, done, ctx);
}

/* Runs the queued job against the fake store and calls its callback. */
static void commit_pending(void)
{
    struct cv_store *st = (struct cv_store *)(void *)&store;
    cv_status r = CV_ERR_INTERNAL;
    enum pending_kind kind = pending.kind;
    pending.kind = PENDING_NONE;
    if (kind == PENDING_INSERT)
        r = fake_insert_token(st, pending.row, pending.idem, pending.body, pending.ev);
    else if (kind == PENDING_GET)
        r = fake_get_token(st, pending.merchant_id, pending.token, pending.out);
    else if (kind == PENDING_AUDIT)
        r = fake_audit_append(st, pending.ev);
    CHECK(kind != PENDING_NONE);
    pending.done(pending.ctx, r);
}

static struct cv_store_ops async_ops;

/* Starts handler on the asynchronous table; the caller commits and checks c. */
static void start_async(cv_handler handler, const char *token, const char *idem_key,
                        const char *body, struct cv_tokenize_req *req, struct cv_call *call,
                        struct captured *c)
{
    async_ops = fake_store_ops;
    async_ops.insert_token_async = async_insert;
    async_ops.get_token_async = async_get;
    async_ops.audit_append_async = async_audit;
    memset(&pending, 0, sizeof(pending));
    static struct cv_handler_deps d;
    d = deps_of(&store);
    d.store_ops = &async_ops;
    struct cv_json_param param;
    memset(req, 0, sizeof(*req));
    if (body != NULL)
        CHECK_EQ_INT(cv_json_decode_tokenize(body, strlen(body), req, &param), CV_OK);
    *call = (struct cv_call){.request_id = "req_testtesttesttesttest",
                             .who = &who_a,
                             .token = token,
                             .idempotency_key = idem_key,
                             .tokenize = body != NULL ? req : NULL};
    memset(c, 0, sizeof(*c));
    c->done.finish = capture;
    handler(&d, call, &c->done);
}

static void async_tokenize_answers_only_after_its_commit(void)
{
    setup();
    struct cv_tokenize_req req;
    struct cv_call call;
    struct captured c;
    start_async(cv_api_tokenize, NULL, NULL, CARD_CVC, &req, &call, &c);
    /* Returned unfinished: nothing is acknowledged before the commit. */
    CHECK_EQ_INT(c.calls, 0);
    CHECK_EQ_INT(pending.kind, PENDING_INSERT);
    CHECK_EQ_INT((int)store.n_tokens, 0);
    CHECK(!contains(pending.row->ciphertext, pending.row->ciphertext_len, CVC));
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK_EQ_INT(c.res.kind, CV_RESULT_CREATED);
    char tok[CV_TOKEN_LEN + 1];
    token_of(&c.res, tok);
    CHECK_EQ_INT((int)store.n_tokens, 1);
    CHECK(strcmp(store.tokens[0].token, tok) == 0);
    CHECK_EQ_INT((int)store.n_audit, 1);
    CHECK(strcmp(store.audit_token[0], tok) == 0); /* its event names the token committed */
    CHECK(!body_has(&c.res, PAN));
    cv_result_cleanup(&c.res);
    cv_tokenize_req_cleanup(&req);
    fake_free(&store);
}

static void async_tokenize_retries_a_collision_from_the_callback(void)
{
    setup();
    store.collisions = 1;
    struct cv_tokenize_req req;
    struct cv_call call;
    struct captured c;
    start_async(cv_api_tokenize, NULL, NULL, CARD_BODY, &req, &call, &c);
    commit_pending(); /* CV_ERR_DUPLICATE: a new token is queued */
    CHECK_EQ_INT(c.calls, 0);
    CHECK_EQ_INT(pending.queued, 2);
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK_EQ_INT((int)store.n_tokens, 1);
    cv_result_cleanup(&c.res);
    cv_tokenize_req_cleanup(&req);
    fake_free(&store);
}

static void async_tokenize_failed_commit_answers_no_token(void)
{
    setup();
    store.insert_fails = CV_ERR_DB_UNAVAILABLE;
    struct cv_tokenize_req req;
    struct cv_call call;
    struct captured c;
    start_async(cv_api_tokenize, NULL, NULL, CARD_BODY, &req, &call, &c);
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(c.res.body == NULL);
    CHECK_EQ_INT((int)store.n_tokens, 0);
    cv_result_cleanup(&c.res);
    cv_tokenize_req_cleanup(&req);
    fake_free(&store);
}

static void async_read_and_detokenize_audit_before_disclosing(void)
{
    setup();
    struct cv_result t = tokenize(&who_a, NULL, CARD ",\"cardholder_name\":\"Ada Lovelace\"}");
    char tok[CV_TOKEN_LEN + 1];
    token_of(&t, tok);
    struct cv_tokenize_req req;
    struct cv_call call;
    struct captured c;

    start_async(cv_api_read, tok, NULL, NULL, &req, &call, &c);
    CHECK_EQ_INT(c.calls, 0);
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK(body_has(&c.res, tok));
    CHECK(!body_has(&c.res, PAN));
    cv_result_cleanup(&c.res);

    start_async(cv_api_detokenize, tok, NULL, NULL, &req, &call, &c);
    commit_pending(); /* the read */
    CHECK_EQ_INT(c.calls, 0);
    CHECK_EQ_INT(pending.kind, PENDING_AUDIT); /* no PAN before its event commits */
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK(body_has(&c.res, "\"pan\":\"" PAN "\""));
    CHECK(strcmp(store.audit_action[store.n_audit - 1], "token.detokenize") == 0);
    CHECK(strcmp(store.audit_outcome[store.n_audit - 1], "success") == 0);
    cv_result_cleanup(&c.res);

    store.audit_fails = true; /* fail closed */
    start_async(cv_api_detokenize, tok, NULL, NULL, &req, &call, &c);
    commit_pending();
    commit_pending();
    CHECK_EQ_INT(c.calls, 1);
    CHECK_EQ_INT(c.res.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(c.res.body == NULL);
    cv_result_cleanup(&c.res);
    cv_result_cleanup(&t);
    fake_free(&store);
}

static void async_tokenize_with_idempotency_key_completes_or_releases(void)
{
    setup();
    store.insert_fails = CV_ERR_DB_UNAVAILABLE;
    struct cv_tokenize_req req;
    struct cv_call call;
    struct captured c;
    start_async(cv_api_tokenize, NULL, "async-key-1", CARD_BODY, &req, &call, &c);
    CHECK(pending.idem != NULL); /* the claim travels with the row */
    commit_pending();
    CHECK_EQ_INT(c.res.status, CV_ERR_DB_UNAVAILABLE);
    CHECK(!store.idem[0].used); /* released: a retry may claim it */
    cv_result_cleanup(&c.res);
    cv_tokenize_req_cleanup(&req);

    start_async(cv_api_tokenize, NULL, "async-key-1", CARD_BODY, &req, &call, &c);
    commit_pending();
    CHECK_EQ_INT(c.res.status, CV_OK);
    CHECK_EQ_INT(c.res.kind, CV_RESULT_CREATED);
    char first[CV_TOKEN_LEN + 1], again[CV_TOKEN_LEN + 1];
    token_of(&c.res, first);
    struct cv_result r = tokenize(&who_a, "async-key-1", CARD_BODY); /* a retry replays */
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK(r.replayed);
    token_of(&r, again);
    CHECK(strcmp(first, again) == 0);
    CHECK_EQ_INT((int)store.n_tokens, 1);
    cv_result_cleanup(&r);
    cv_result_cleanup(&c.res);
    cv_tokenize_req_cleanup(&req);
    fake_free(&store);
}

int main(void)
{
    cv_json_init();
    RUN(tokenize_creates_a_token);
    RUN(async_tokenize_answers_only_after_its_commit);
    RUN(async_tokenize_retries_a_collision_from_the_callback);
    RUN(async_tokenize_failed_commit_answers_no_token);
    RUN(async_tokenize_with_idempotency_key_completes_or_releases);
    RUN(async_read_and_detokenize_audit_before_disclosing);
    RUN(update_reseals_the_card_in_place);
    RUN(update_refusals_change_nothing);
    RUN(update_starts_over_when_it_loses_a_race);
    RUN(update_with_idempotency_key_replays);
    RUN(list_pages_the_merchants_tokens_without_card_numbers);
    RUN(tokenize_rejects_bad_cards_with_the_field);
    RUN(tokenize_never_stores_the_cvc);
    RUN(tokenize_retries_a_token_collision);
    RUN(idempotent_retry_replays_the_first_answer);
    RUN(idempotency_key_with_another_body_is_reused);
    RUN(claim_in_use_waits_for_the_first_request);
    RUN(claim_in_use_times_out);
    RUN(released_claim_is_retried);
    RUN(claim_that_vanished_is_asked_again);
    RUN(reuse_existing_answers_the_old_token);
    RUN(oversize_pan_is_invalid_pan_before_allocation);
    RUN(tokenize_only_key_gets_no_fingerprint);
    RUN(tokenize_only_key_reuse_existing_is_ignored);
    RUN(tokenize_only_key_completed_idempotency_key_answers_alike);
    RUN(read_shows_the_token_without_the_card);
    RUN(another_merchants_token_looks_missing);
    RUN(delete_removes_and_audits);
    RUN(detokenize_answers_the_card_after_its_audit);
    RUN(detokenize_fails_closed_without_its_audit);
    RUN(destroyed_data_key_means_destroyed);
    RUN(tokenize_is_audited_with_its_token);
    RUN(tokenize_without_its_audit_event_is_not_acknowledged);
    RUN(publishable_key_quota_refuses_while_secret_key_goes_on);
    RUN(origin_quota_spans_keys_and_merchants);
    RUN(walking_middle_digits_is_flagged_and_blocked_for_publishable_keys);
    RUN(the_same_card_again_is_not_card_testing);
    RUN(readiness_is_not_ready_while_draining);
    RUN(metrics_answer_prometheus_text);
    return check_summary("api_tokens");
}
