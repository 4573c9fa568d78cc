/* api_tokens.c: the token flows. Tokenize admits the request against the
 * tokenize quotas, validates the card, fingerprints it, shows it to the
 * card-testing detector (card_testing.c), seals it under the active DEK and
 * answers only after the row and its token.tokenize audit event are
 * durably committed (one transaction). Detokenize answers with the PAN only after its audit
 * event is committed (fail closed). The security code is validated, then
 * wiped: it is never stored, logged, or passed on. No card data ever goes
 * into a log line or an error message.
 *
 * Tokenize, read and detokenize queue their
 * store call and return unfinished; a continuation on the batch thread
 * (on_token_committed, on_read_loaded, on_detokenize_loaded/_audited)
 * finishes them once the batch committed, wiping the card state first.
 *
 * Handlers of the contract in handler.h: they take decoded structs and the
 * narrow cv_handler_deps (store and keyring tables, clock), and finish with a
 * result kind or a status. They never pick an HTTP code, read a header or
 * decode a request body; http_server.c does that. */
#include "cardvault/api_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/buf.h"
#include "cardvault/card.h"
#include "cardvault/card_testing.h"
#include "cardvault/json_codec.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"
#include "api_tokens_idem.h"

/* Token collisions are 2^-130 events; retrying at all is belt and braces. */
#define TOKEN_INSERT_ATTEMPTS 3
/* reuse_existing looks at this many tokens with the same fingerprint. */
#define REUSE_CANDIDATES 8

/* The idempotency record's status_code column keeps the first answer as the
 * HTTP code it was sent with (the schema's choice); a tokenize stores one of
 * these two, and a replay maps it back to its result kind. */
#define IDEM_STORED_OK      200
#define IDEM_STORED_CREATED 201

static void result_json(struct cv_result *res, enum cv_result_kind kind, char *body, size_t len)
{
    res->kind = kind;
    res->body = body;
    res->body_len = len;
    res->free_body = cv_json_free;
    res->body_type = CV_BODY_JSON;
}

/* Hands res over with status st: the one exit of every handler here. */
static void finish(struct cv_completion *done, struct cv_result *res, cv_status st)
{
    res->status = st;
    if (st != CV_OK) {
        /* A failed flow answers no body, whatever it had built. */
        const char *param = res->error_param;
        unsigned retry_after_s = res->retry_after_s;
        cv_result_cleanup(res);
        res->status = st;
        res->error_param = param;
        res->retry_after_s = retry_after_s;
    }
    cv_completion_finish(done, res);
}

static void view_of(const struct cv_token_row *row, const struct cv_card_plain *card,
                    struct cv_token_view *v)
{
    memset(v, 0, sizeof(*v));
    v->token = row->token;
    v->brand = row->brand;
    v->bin = row->bin;
    v->last4 = row->last4;
    v->exp_month = card->exp_month;
    v->exp_year = card->exp_year;
    v->fingerprint = row->fingerprint;
    v->created_at = row->created_at;
    v->metadata = row->metadata;
    v->expires_at = row->expires_at;
}

static void current_month(const struct cv_clock *clock, int *month, int *year)
{
    time_t now = clock->now(clock->ctx);
    struct tm tm;
    gmtime_r(&now, &tm);
    *month = tm.tm_mon + 1;
    *year = tm.tm_year + 1900;
}

/* Validates the decoded request into card; the CVC is checked and dropped here. */
static cv_status validate(const struct cv_clock *clock, const struct cv_tokenize_req *req,
                          struct cv_card_plain *card, enum cv_card_brand *brand, const char **param)
{
    size_t pan_len = 0;
    int now_month = 0, now_year = 0;
    memset(card, 0, sizeof(*card));
    *param = "pan";
    CV_TRY(cv_card_normalize_pan((const char *)req->pan->data, req->pan->len, card->pan, &pan_len));
    *brand = cv_card_brand_of(card->pan, pan_len);
    current_month(clock, &now_month, &now_year);
    *param = req->exp_month < 1 || req->exp_month > 12 ? "exp_month" : "exp_year";
    CV_TRY(cv_card_check_expiry(req->exp_month, req->exp_year, now_month, now_year));
    card->exp_month = (int)req->exp_month;
    card->exp_year = (int)req->exp_year;
    if (req->cvc != NULL) {
        *param = "cvc";
        CV_TRY(cv_card_check_cvc((const char *)req->cvc->data, req->cvc->len, *brand));
    }
    if (req->name != NULL) {
        *param = "cardholder_name";
        CV_TRY(cv_card_check_name((const char *)req->name->data, req->name->len));
        memcpy(card->name, req->name->data, req->name->len);
        card->name[req->name->len] = '\0';
        card->has_name = 1;
    }
    *param = NULL;
    return CV_OK;
}

/* reuse_existing: the newest token of this merchant for the same PAN and expiry. */
/* reuse_existing: *found tells whether *row (then owned by the caller) holds
 * such a token. */
static cv_status find_existing(const struct cv_handler_deps *d, const char *merchant_id,
                               const char *fp, const struct cv_card_plain *card,
                               struct cv_token_row *row, bool *found)
{
    struct cv_token_row rows[REUSE_CANDIDATES];
    size_t n = 0;
    *found = false;
    CV_TRY(
        d->store_ops->find_by_fingerprint(d->store, merchant_id, fp, rows, REUSE_CANDIDATES, &n));
    for (size_t i = 0; i < n; i++) {
        struct cv_card_plain old;
        memset(&old, 0, sizeof(old));
        if (!*found && d->keyring_ops->open_row(d->keyring, &rows[i], &old) == CV_OK &&
            old.exp_month == card->exp_month && old.exp_year == card->exp_year &&
            strcmp(old.pan, card->pan) == 0) {
            *row = rows[i];
            memset(&rows[i], 0, sizeof(rows[i])); /* ownership moved to row */
            *found = true;
        }
        cv_wipe(&old, sizeof(old));
        cv_token_row_cleanup(&rows[i]);
    }
    return CV_OK;
}

static void now_rfc3339(const struct cv_clock *clock, char out[32])
{
    time_t now = clock->now(clock->ctx);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void cv_api_expiry_rfc3339(const struct cv_clock *clock, long long ttl_s, char out[32])
{
    time_t at = clock->now(clock->ctx) + (time_t)ttl_s;
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

cv_status cv_api_token_lifecycle(const struct cv_clock *clock, const struct cv_tokenize_req *req,
                                 struct cv_token_row *row)
{
    free(row->metadata);
    row->metadata = req->metadata != NULL ? cv_xstrdup(req->metadata) : NULL;
    row->expires_at[0] = '\0';
    if (req->has_ttl)
        cv_api_expiry_rfc3339(clock, req->ttl_seconds, row->expires_at);
    return CV_OK;
}

/* A claimed key waits IDEM_WAIT_MS for its first request to finish (polling
 * every IDEM_POLL_MS), then answers "in use". A claim older than IDEM_STALE_S
 * belongs to a request that died and may be taken over. */
#define IDEM_WAIT_MS 5000
#define IDEM_POLL_MS 50
#define IDEM_STALE_S 60

/* The request's identity for idempotency: the validated card without its
 * security code. A keyed hash that covered the CVC would let whoever holds
 * the KEK and the database test the 1,000 possible codes against it (PCI DSS
 * 3.3.1.2: nothing derived from the CVC is kept), so a retry that differs
 * only in its CVC replays the original token, which never held a CVC. */
static cv_status request_identity(const struct cv_handler_deps *d, const char *merchant_id,
                                  const struct cv_card_plain *card, bool reuse_existing,
                                  unsigned char out[32])
{
    /* The card's one byte encoding (card.h), then the reuse flag: the same
     * bytes whatever JSON spelling the request used. */
    unsigned char canon[CV_CARD_ENCODED_MAX + 1];
    size_t n = 0;
    cv_status st = cv_card_encode(card, canon, sizeof(canon) - 1, &n);
    if (st == CV_OK) {
        canon[n++] = reuse_existing ? 1 : 0;
        st = d->keyring_ops->mac(d->keyring, "request-card-v1", merchant_id, canon, n, out);
    }
    cv_wipe(canon, sizeof(canon));
    return st;
}

/* A tokenize request with metadata or a lifetime: the card's identity
 * above, then the lifetime and the metadata's canonical text, under their
 * own label; a request without either keeps the identity it always had. */
static cv_status request_identity_full(const struct cv_handler_deps *d, const char *merchant_id,
                                       const struct cv_card_plain *card,
                                       const struct cv_tokenize_req *req, bool reuse_existing,
                                       unsigned char out[32])
{
    CV_TRY(request_identity(d, merchant_id, card, reuse_existing, out));
    if (req->metadata == NULL && !req->has_ttl)
        return CV_OK;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "|%lld|", req->has_ttl ? req->ttl_seconds : -1LL);
    struct cv_buf b;
    cv_buf_init(&b, 64 * 1024);
    cv_status st = cv_buf_append(&b, out, 32);
    if (st == CV_OK)
        st = cv_buf_append_str(&b, ttl);
    if (st == CV_OK && req->metadata != NULL)
        st = cv_buf_append_str(&b, req->metadata);
    if (st == CV_OK)
        st = d->keyring_ops->mac(d->keyring, "request-token-v2", merchant_id, b.data, b.len, out);
    cv_buf_cleanup(&b);
    return st;
}

/* Keys with read scope may see fingerprints and stored tokens anyway; keys
 * without it must learn nothing about cards tokenized before. */
static bool can_read(const struct cv_principal *who)
{
    return (who->scopes & CV_SCOPE_READ) != 0;
}

/* Claims the key (*next IDEM_GO_ON), or answers from its record: a replay
 * (*next IDEM_ANSWERED, res filled), CV_ERR_IDEMPOTENCY_REUSED for another
 * request under the same key, or CV_ERR_IDEMPOTENCY_IN_USE when the first
 * request did not finish within IDEM_WAIT_MS. */
static cv_status idem_begin(const struct cv_handler_deps *d, const struct cv_call *call,
                            const struct cv_card_plain *card, bool reuse_existing, struct idem *id,
                            struct cv_result *res, enum idem_begin *next)
{
    CV_TRY(request_identity_full(d, call->who->merchant_id, card, call->tokenize, reuse_existing,
                                 id->request_hash));
    return cv_api_idem_claim(d, call, id, res, next);
}

cv_status cv_api_idem_claim(const struct cv_handler_deps *d, const struct cv_call *call,
                            struct idem *id, struct cv_result *res, enum idem_begin *next)
{
    const char *m = call->who->merchant_id;
    size_t klen = strlen(call->idempotency_key);
    CV_TRY(d->keyring_ops->mac(d->keyring, "idempotency-key", m, call->idempotency_key, klen,
                               id->key_hash));
    for (int waited = 0; waited <= IDEM_WAIT_MS; waited += IDEM_POLL_MS) {
        struct cv_idem_record rec;
        enum cv_idem_claim outcome = CV_IDEM_VANISHED;
        memset(&rec, 0, sizeof(rec));
        /* A token write's effect is its own committed statement, which
         * makes the claim before it durable: the first claim need not wait
         * for the disk. Once the key was found held, the polls that follow
         * take the durable claim directly (a lazy one could not succeed). */
        cv_status st = d->store_ops->idem_claim(d->store, m, id->key_hash, id->request_hash,
                                                d->idempotency_ttl_s, IDEM_STALE_S, waited > 0,
                                                &outcome, &rec);
        if (st != CV_OK) {
            cv_idem_record_cleanup(&rec);
            return st;
        }
        if (outcome == CV_IDEM_CLAIMED) {
            id->claimed = true;
            *next = IDEM_GO_ON;
            return CV_OK;
        }
        if (outcome == CV_IDEM_TAKEN && !cv_ct_equal(rec.request_hash, id->request_hash, 32)) {
            cv_idem_record_cleanup(&rec);
            return CV_ERR_IDEMPOTENCY_REUSED;
        }
        /* A key without read scope (a publishable key in a checkout page)
         * gets no replay: a replay or a mismatch would tell it whether a
         * candidate card is the one first sent under this key. Once done,
         * the key answers "reused" whatever the card; the caller retries
         * with a new key. At most one token per key still holds. */
        if (outcome == CV_IDEM_TAKEN && rec.done && !can_read(call->who)) {
            cv_idem_record_cleanup(&rec);
            return CV_ERR_IDEMPOTENCY_REUSED;
        }
        if (outcome == CV_IDEM_TAKEN && rec.done) {
            result_json(res,
                        rec.status_code == IDEM_STORED_CREATED ? CV_RESULT_CREATED : CV_RESULT_OK,
                        rec.response_body, strlen(rec.response_body));
            res->free_body = free;
            res->replayed = true;
            rec.response_body = NULL;
            *next = IDEM_ANSWERED;
            return CV_OK;
        }
        /* In progress elsewhere, or released under us: wait and ask again. */
        cv_idem_record_cleanup(&rec);
        d->clock.sleep_ms(d->clock.ctx, IDEM_POLL_MS);
    }
    return CV_ERR_IDEMPOTENCY_IN_USE;
}

void cv_api_idem_abandon(const struct cv_handler_deps *d, const struct cv_call *call,
                         struct idem *id)
{
    if (id->claimed &&
        d->store_ops->idem_release(d->store, call->who->merchant_id, id->key_hash) != CV_OK)
        cv_log(CV_LOG_WARN, "idempotency_release_failed", CV_LS("request_id", call->request_id),
               CV_LS("effect", "retries with this key wait until the claim goes stale (60 s)"));
    id->claimed = false;
}

/* A tokenize waiting for its commit without holding a thread: the state
 * the continuation (on_token_committed, on a batch writer thread) needs.
 * It owns the card, the row and the answer until it ends. */
struct tokenize_op {
    const struct cv_handler_deps *d;
    const struct cv_call *call;
    struct cv_completion *done;
    struct cv_card_plain card;
    struct cv_token_row row;
    struct cv_audit_event ev;
    char *body;
    size_t len;
    int attempts;
    struct idem idem; /* claimed: completed by the row's own statement, else released */
};

/* Wipes what held card data, frees the op, then finishes the request. */
static void tokenize_op_end(struct tokenize_op *op, cv_status st)
{
    struct cv_completion *done = op->done;
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    if (st == CV_OK) {
        result_json(&res, CV_RESULT_CREATED, op->body, op->len);
        op->body = NULL;
    }
    if (st == CV_OK || st == CV_ERR_COMMIT_UNCONFIRMED)
        op->idem.claimed = false; /* completed (or not ours to release: see tokenize) */
    if (op->idem.claimed)
        cv_api_idem_abandon(op->d, op->call, &op->idem);
    if (op->body != NULL)
        cv_json_free(op->body);
    cv_token_row_cleanup(&op->row);
    cv_wipe(op, sizeof(*op));
    free(op);
    finish(done, &res, st);
}

static void on_token_committed(void *ctx, cv_status st);

/* One attempt: a fresh token, its seal and answer, queued for the batch.
 * CV_OK: on_token_committed will run (perhaps already has). */
static cv_status tokenize_attempt(struct tokenize_op *op)
{
    const struct cv_handler_deps *d = op->d;
    struct cv_token_view view;
    free(op->row.ciphertext);
    op->row.ciphertext = NULL;
    if (op->body != NULL)
        cv_json_free(op->body);
    op->body = NULL;
    op->attempts++;
    CV_TRY(cv_token_generate(op->row.token));
    /* The token is part of the associated data, so a new token means a new seal. */
    CV_TRY(d->keyring_ops->seal(d->keyring, &op->card, &op->row));
    view_of(&op->row, &op->card, &view);
    if (!can_read(op->call->who))
        view.fingerprint = NULL; /* an oracle for the card number otherwise */
    op->body = cv_json_encode_token(&view, &op->len);
    return d->store_ops->insert_token_async(d->store, &op->row,
                                            op->idem.claimed ? op->idem.key_hash : NULL, op->body,
                                            &op->ev, on_token_committed, op);
}

/* The continuation: called once the batch holding the row committed (CV_OK)
 * or failed. */
static void on_token_committed(void *ctx, cv_status st)
{
    struct tokenize_op *op = ctx;
    if (st == CV_ERR_DUPLICATE && op->attempts < TOKEN_INSERT_ATTEMPTS) {
        /* a token collision: draw another token */
        cv_log(CV_LOG_WARN, "token_collision_retry", CV_LS("request_id", op->call->request_id));
        st = tokenize_attempt(op);
        if (st == CV_OK)
            return;
    }
    if (st == CV_ERR_COMMIT_UNCONFIRMED)
        cv_log(CV_LOG_WARN, "tokenize_unconfirmed", CV_LS("request_id", op->call->request_id));
    tokenize_op_end(op, st);
    cv_wipe_stack(); /* the seal's frames held the card */
}

/* *pending: the request went on to the asynchronous path, which finishes it. */
static cv_status tokenize(const struct cv_handler_deps *d, const struct cv_call *call,
                          struct cv_completion *done, struct cv_result *res, bool *pending)
{
    const struct cv_tokenize_req *req = call->tokenize;
    struct cv_card_plain card;
    struct cv_token_row row;
    struct cv_token_view view;
    struct idem idem;
    enum cv_card_brand brand = CV_BRAND_UNKNOWN;
    char *body = NULL;
    size_t len = 0;
    cv_status st;

    memset(&card, 0, sizeof(card));
    memset(&row, 0, sizeof(row));
    memset(&idem, 0, sizeof(idem));
    /* Every tokenize request counts against the quotas, valid or not, and
     * before any work: a refusal costs a script a round trip and us nothing. */
    st = cv_card_testing_admit(d->card_testing, call->who, call->origin, &res->retry_after_s);
    if (st != CV_OK)
        goto out;
    /* Validate before touching the idempotency record: a bad request is
     * answered the same way every time and never occupies the key. */
    st = validate(&d->clock, req, &card, &brand, &res->error_param);
    if (st != CV_OK)
        goto out;
    /* reuse_existing is ignored without read scope: a 200 with an old token
     * against a 201 would tell whether the card was seen before. */
    bool reuse = req->reuse_existing && can_read(call->who);
    if (call->idempotency_key != NULL) {
        enum idem_begin next = IDEM_GO_ON;
        st = idem_begin(d, call, &card, reuse, &idem, res, &next);
        if (st != CV_OK || next == IDEM_ANSWERED)
            goto out;
    }
    snprintf(row.merchant_id, sizeof(row.merchant_id), "%s", call->who->merchant_id);
    snprintf(row.brand, sizeof(row.brand), "%s", cv_card_brand_name(brand));
    memcpy(row.bin, card.pan, 6);
    memcpy(row.last4, card.pan + strlen(card.pan) - 4, 4);
    st = d->keyring_ops->fingerprint(d->keyring, row.merchant_id, card.pan, row.fingerprint);
    if (st != CV_OK)
        goto out;
    /* The detector sees BIN, last 4, expiry and the keyed fingerprint only. */
    struct cv_card_testing_card seen = {call->who,       call->request_id, row.bin,      row.last4,
                                        row.fingerprint, card.exp_month,   card.exp_year};
    st = cv_card_testing_observe(d->card_testing, &seen, &res->retry_after_s);
    if (st != CV_OK)
        goto out;
    /* Every answered tokenize is in the audit trail: who, which token, when. */
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = row.token, /* the token of the attempt that commits */
        .request_id = call->request_id,
        .action = "token.tokenize",
        .outcome = "success",
    };

    if (reuse) {
        struct cv_token_row existing;
        bool found = false;
        memset(&existing, 0, sizeof(existing));
        st = find_existing(d, row.merchant_id, row.fingerprint, &card, &existing, &found);
        if (st != CV_OK)
            goto out;
        if (found) {
            ev.token = existing.token;
            ev.outcome = "reused";
            st = d->store_ops->audit_append(d->store, &ev);
            if (st != CV_OK) {
                /* No answer without its audit record. */
                cv_token_row_cleanup(&existing);
                cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
                       CV_LS("action", "token.tokenize"));
                st = CV_ERR_DB_UNAVAILABLE;
                goto out;
            }
            view_of(&existing, &card, &view);
            body = cv_json_encode_token(&view, &len);
            cv_token_row_cleanup(&existing);
            if (idem.claimed &&
                d->store_ops->idem_complete(d->store, row.merchant_id, idem.key_hash,
                                            IDEM_STORED_OK, body) == CV_OK)
                idem.claimed = false;
            result_json(res, CV_RESULT_OK, body, len);
            body = NULL;
            goto out;
        }
    }

    now_rfc3339(&d->clock, row.created_at);
    if ((st = cv_api_token_lifecycle(&d->clock, req, &row)) != CV_OK)
        goto out;
    /* The write waits for its batch without holding this thread. A claimed
     * Idempotency-Key goes with it: the row's own statement completes the
     * record, and the continuation releases it if the write fails. */
    if (d->store_ops->insert_token_async != NULL) {
        struct tokenize_op *op = cv_xcalloc(1, sizeof(*op));
        op->d = d;
        op->call = call;
        op->done = done;
        op->card = card;
        op->row = row; /* ownership moves to the op */
        memset(&row, 0, sizeof(row));
        op->ev = ev;
        op->ev.token = op->row.token;
        op->idem = idem;
        idem.claimed = false; /* the op's now */
        st = tokenize_attempt(op);
        if (st == CV_OK) {
            *pending = true;
            goto out;
        }
        idem = op->idem; /* not queued: released at out */
        if (op->body != NULL)
            cv_json_free(op->body);
        cv_token_row_cleanup(&op->row);
        cv_wipe(op, sizeof(*op));
        free(op);
        goto out;
    }
    for (int attempt = 0; attempt < TOKEN_INSERT_ATTEMPTS; attempt++) {
        free(row.ciphertext);
        row.ciphertext = NULL;
        if (body != NULL)
            cv_json_free(body);
        body = NULL;
        if ((st = cv_token_generate(row.token)) != CV_OK)
            goto out;
        /* The token is part of the associated data, so a new token means a new seal. */
        if ((st = d->keyring_ops->seal(d->keyring, &card, &row)) != CV_OK)
            goto out;
        view_of(&row, &card, &view);
        if (!can_read(call->who))
            view.fingerprint = NULL; /* an oracle for the card number otherwise */
        body = cv_json_encode_token(&view, &len);
        st = d->store_ops->insert_token(d->store, &row, idem.claimed ? idem.key_hash : NULL, body,
                                        &ev);
        if (st != CV_ERR_DUPLICATE) /* a token collision: draw another token */
            break;
        cv_log(CV_LOG_WARN, "token_collision_retry", CV_LS("request_id", call->request_id));
    }
    if (st == CV_ERR_COMMIT_UNCONFIRMED) {
        /* The row and its idempotency answer committed on the primary in
         * one statement, unconfirmed by the standby: the record is not ours
         * to release. A retry under the same key replays it where it exists
         * and starts afresh where a failover lost it. */
        idem.claimed = false;
        cv_log(CV_LOG_WARN, "tokenize_unconfirmed", CV_LS("request_id", call->request_id));
    }
    if (st != CV_OK)
        goto out;
    idem.claimed = false; /* completed in the token's own statement */
    result_json(res, CV_RESULT_CREATED, body, len);
    body = NULL;
out:
    if (idem.claimed)
        cv_api_idem_abandon(d, call, &idem);
    if (body != NULL)
        cv_json_free(body);
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    return st;
}

void cv_api_tokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done)
{
    struct cv_result res;
    bool pending = false;
    memset(&res, 0, sizeof(res));
    cv_status st = tokenize(deps, call, done, &res, &pending);
    if (!pending)
        finish(done, &res, st);
}

/* Opens a loaded row; an integrity failure is logged (never the card). */
static cv_status open_loaded(const struct cv_handler_deps *d, const struct cv_call *call,
                             const struct cv_token_row *row, struct cv_card_plain *card)
{
    cv_status st = d->keyring_ops->open_row(d->keyring, row, card);
    if (st == CV_ERR_INTEGRITY)
        cv_log(CV_LOG_ERROR, "integrity_error", CV_LS("request_id", call->request_id),
               CV_LS("merchant_id", call->who->merchant_id), CV_LS("token", row->token),
               CV_LI("dek_id", row->dek_id));
    return st;
}

static bool token_well_formed(const struct cv_call *call)
{
    return call->token != NULL && cv_token_is_valid(call->token, strlen(call->token));
}

/* Loads and opens a token of the caller's merchant. Missing, malformed and
 * other merchants' tokens are all CV_ERR_NOT_FOUND: indistinguishable. */
static cv_status load_card(const struct cv_handler_deps *d, const struct cv_call *call,
                           struct cv_token_row *row, struct cv_card_plain *card)
{
    memset(card, 0, sizeof(*card));
    if (!token_well_formed(call))
        return CV_ERR_NOT_FOUND;
    CV_TRY(d->store_ops->get_token(d->store, call->who->merchant_id, call->token, row));
    return open_loaded(d, call, row, card);
}

/* A read or detokenize waiting for its batched read (and a detokenize for
 * its audit event's commit) without holding a thread. */
struct read_op {
    const struct cv_handler_deps *d;
    const struct cv_call *call;
    struct cv_completion *done;
    struct cv_token_row row;
    struct cv_card_plain card;
    cv_status loaded;         /* detokenize: how the load and open went */
    struct cv_audit_event ev; /* detokenize: its event */
    struct cv_result res;
};

static struct read_op *read_op_new(const struct cv_handler_deps *d, const struct cv_call *call,
                                   struct cv_completion *done)
{
    struct read_op *op = cv_xcalloc(1, sizeof(*op));
    op->d = d;
    op->call = call;
    op->done = done;
    return op;
}

/* Wipes what held card data, frees the op, then finishes the request. */
static void read_op_end(struct read_op *op, cv_status st)
{
    struct cv_completion *done = op->done;
    struct cv_result res = op->res;
    cv_wipe(&op->card, sizeof(op->card));
    cv_token_row_cleanup(&op->row);
    cv_wipe(op, sizeof(*op));
    free(op);
    finish(done, &res, st);
    cv_wipe_stack(); /* the open's frames held the card */
}

/* The answer of GET /v1/tokens/{token} for a loaded row. */
static cv_status read_answer(const struct cv_handler_deps *d, const struct cv_call *call,
                             const struct cv_token_row *row, struct cv_card_plain *card,
                             struct cv_result *res)
{
    CV_TRY(open_loaded(d, call, row, card));
    struct cv_token_view view;
    view_of(row, card, &view);
    size_t len = 0;
    char *body = cv_json_encode_token(&view, &len);
    result_json(res, CV_RESULT_OK, body, len);
    return CV_OK;
}

static void on_read_loaded(void *ctx, cv_status st)
{
    struct read_op *op = ctx;
    if (st == CV_OK)
        st = read_answer(op->d, op->call, &op->row, &op->card, &op->res);
    read_op_end(op, st);
}

void cv_api_read(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done)
{
    struct cv_result res;
    struct cv_token_row row;
    struct cv_card_plain card;
    memset(&res, 0, sizeof(res));
    memset(&row, 0, sizeof(row));
    memset(&card, 0, sizeof(card));
    cv_status st = CV_ERR_NOT_FOUND;
    if (token_well_formed(call) && deps->store_ops->get_token_async != NULL) {
        struct read_op *op = read_op_new(deps, call, done);
        st = deps->store_ops->get_token_async(deps->store, call->who->merchant_id, call->token,
                                              &op->row, on_read_loaded, op);
        if (st == CV_OK)
            return; /* on_read_loaded finishes */
        cv_token_row_cleanup(&op->row);
        free(op);
    } else if (token_well_formed(call)) {
        st = deps->store_ops->get_token(deps->store, call->who->merchant_id, call->token, &row);
        if (st == CV_OK)
            st = read_answer(deps, call, &row, &card, &res);
    }
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    finish(done, &res, st);
}

static const char *outcome_of(cv_status st)
{
    switch (st) {
    case CV_OK:
        return "success";
    case CV_ERR_NOT_FOUND:
        return "not_found";
    case CV_ERR_TOKEN_DESTROYED:
        return "token_destroyed";
    case CV_ERR_INTEGRITY:
        return "integrity_error";
    case CV_ERR_FORBIDDEN:
        return "denied";
    default:
        return "error";
    }
}

static cv_status detokenize(const struct cv_handler_deps *d, const struct cv_call *call,
                            struct cv_result *res)
{
    struct cv_token_row row;
    struct cv_card_plain card;
    struct cv_token_view view;
    memset(&row, 0, sizeof(row));
    memset(&card, 0, sizeof(card));
    cv_status st = load_card(d, call, &row, &card);
    if (st == CV_ERR_DB_UNAVAILABLE || st == CV_ERR_DB)
        goto out; /* nothing was disclosed; the audit write would fail the same way */
    bool well_formed = call->token != NULL && cv_token_is_valid(call->token, strlen(call->token));
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = well_formed ? call->token : NULL,
        .request_id = call->request_id,
        .action = "token.detokenize",
        .outcome = outcome_of(st),
        .detail = well_formed ? NULL : "malformed token",
    };
    /* Fail closed: no audit record, no PAN. */
    if (d->store_ops->audit_append(d->store, &ev) != CV_OK) {
        cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
               CV_LS("action", "token.detokenize"));
        st = CV_ERR_DB_UNAVAILABLE;
        goto out;
    }
    if (st != CV_OK)
        goto out;
    view_of(&row, &card, &view);
    view.pan = card.pan;
    view.include_name = true;
    view.name = card.has_name ? card.name : NULL;
    size_t len = 0;
    char *body = cv_json_encode_token(&view, &len);
    result_json(res, CV_RESULT_OK, body, len);
out:
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    return st;
}

/* The answer of a detokenize whose event committed: the card. */
static void detokenize_answer(const struct cv_token_row *row, const struct cv_card_plain *card,
                              struct cv_result *res)
{
    struct cv_token_view view;
    view_of(row, card, &view);
    view.pan = card->pan;
    view.include_name = true;
    view.name = card->has_name ? card->name : NULL;
    size_t len = 0;
    char *body = cv_json_encode_token(&view, &len);
    result_json(res, CV_RESULT_OK, body, len);
}

/* The second continuation: the audit event's commit is known. Fail closed:
 * no audit record, no PAN. */
static void on_detokenize_audited(void *ctx, cv_status st)
{
    struct read_op *op = ctx;
    if (st != CV_OK) {
        cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", op->call->request_id),
               CV_LS("action", "token.detokenize"));
        read_op_end(op, CV_ERR_DB_UNAVAILABLE);
        return;
    }
    if (op->loaded == CV_OK)
        detokenize_answer(&op->row, &op->card, &op->res);
    read_op_end(op, op->loaded);
}

/* The first continuation: the row is loaded (or not); its event is queued
 * next, and nothing is disclosed before that event committed. */
static void on_detokenize_loaded(void *ctx, cv_status st)
{
    struct read_op *op = ctx;
    if (st == CV_ERR_DB_UNAVAILABLE || st == CV_ERR_DB) {
        read_op_end(op, st); /* nothing was disclosed; the audit write would fail the same way */
        return;
    }
    if (st == CV_OK)
        st = open_loaded(op->d, op->call, &op->row, &op->card);
    op->loaded = st;
    op->ev = (struct cv_audit_event){
        .actor = op->call->who->key_prefix,
        .merchant_id = op->call->who->merchant_id,
        .token = op->call->token,
        .request_id = op->call->request_id,
        .action = "token.detokenize",
        .outcome = outcome_of(st),
    };
    st = op->d->store_ops->audit_append_async(op->d->store, &op->ev, on_detokenize_audited, op);
    if (st != CV_OK)
        on_detokenize_audited(op, st);
}

void cv_api_detokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                       struct cv_completion *done)
{
    if (token_well_formed(call) && deps->store_ops->get_token_async != NULL &&
        deps->store_ops->audit_append_async != NULL) {
        struct read_op *op = read_op_new(deps, call, done);
        cv_status st = deps->store_ops->get_token_async(
            deps->store, call->who->merchant_id, call->token, &op->row, on_detokenize_loaded, op);
        if (st != CV_OK)
            read_op_end(op, st);
        return;
    }
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    cv_status st = detokenize(deps, call, &res);
    finish(done, &res, st);
}

void cv_api_delete(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    cv_status st = CV_ERR_NOT_FOUND;
    if (call->token != NULL && cv_token_is_valid(call->token, strlen(call->token))) {
        struct cv_audit_event ev = {
            .actor = call->who->key_prefix,
            .merchant_id = call->who->merchant_id,
            .token = call->token,
            .request_id = call->request_id,
            .action = "token.delete",
        };
        st = deps->store_ops->delete_token(deps->store, call->who->merchant_id, call->token, &ev);
    }
    res.kind = CV_RESULT_DELETED;
    finish(done, &res, st);
}

void cv_api_audit_denied(const struct cv_handler_deps *deps, const char *action,
                         const struct cv_call *call)
{
    bool well_formed = call->token != NULL && cv_token_is_valid(call->token, strlen(call->token));
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = well_formed ? call->token : NULL,
        .request_id = call->request_id,
        .action = action,
        .outcome = outcome_of(CV_ERR_FORBIDDEN),
        .detail = "key lacks the required scope",
    };
    if (deps->store_ops->audit_append(deps->store, &ev) != CV_OK)
        cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
               CV_LS("action", action));
}
