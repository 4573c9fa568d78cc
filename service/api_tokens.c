/* api_tokens.c: the token flows. Tokenize validates the card, fingerprints
 * it, seals it under the active DEK and answers only after the row is
 * durably committed. Detokenize answers with the PAN only after its audit
 * event is committed (fail closed). The security code is validated, then
 * wiped: it is never stored, logged, or passed on. No card data ever goes
 * into a log line or an error message. */
#include "cardvault/api_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/app.h"
#include "cardvault/card.h"
#include "cardvault/json_codec.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

/* Token collisions are 2^-130 events; retrying at all is belt and braces. */
#define TOKEN_INSERT_ATTEMPTS 3
/* reuse_existing looks at this many tokens with the same fingerprint. */
#define REUSE_CANDIDATES 8

static void reply_json(struct cv_reply *reply, int http_status, char *body, size_t len)
{
    reply->http_status = http_status;
    reply->body = body;
    reply->body_len = len;
    reply->free_body = cv_json_free;
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
}

static void current_month(int *month, int *year)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    *month = tm.tm_mon + 1;
    *year = tm.tm_year + 1900;
}

/* Validates the decoded request into card; the CVC is checked and dropped here. */
static cv_status validate(const struct cv_tokenize_req *req, struct cv_card_plain *card,
                          enum cv_card_brand *brand, const char **param)
{
    size_t pan_len = 0;
    int now_month = 0, now_year = 0;
    memset(card, 0, sizeof(*card));
    *param = "pan";
    CV_TRY(cv_card_normalize_pan((const char *)req->pan->data, req->pan->len, card->pan, &pan_len));
    *brand = cv_card_brand_of(card->pan, pan_len);
    current_month(&now_month, &now_year);
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
static cv_status find_existing(struct cv_app *app, const char *merchant_id, const char *fp,
                               const struct cv_card_plain *card, struct cv_token_row *found)
{
    struct cv_token_row rows[REUSE_CANDIDATES];
    size_t n = 0;
    cv_status st =
        cv_store_find_by_fingerprint(app->store, merchant_id, fp, rows, REUSE_CANDIDATES, &n);
    if (st != CV_OK)
        return st;
    st = CV_ERR_NOT_FOUND;
    for (size_t i = 0; i < n; i++) {
        struct cv_card_plain old;
        if (st == CV_ERR_NOT_FOUND && cv_keyring_open_row(app->keyring, &rows[i], &old) == CV_OK &&
            old.exp_month == card->exp_month && old.exp_year == card->exp_year &&
            strcmp(old.pan, card->pan) == 0) {
            *found = rows[i];
            memset(&rows[i], 0, sizeof(rows[i])); /* ownership moved to found */
            st = CV_OK;
        }
        cv_wipe(&old, sizeof(old));
        cv_token_row_cleanup(&rows[i]);
    }
    return st;
}

static void now_rfc3339(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The Idempotency-Key state of one tokenize request. */
struct idem {
    bool active;  /* a key was sent */
    bool claimed; /* we own the record and must complete or release it */
    unsigned char key_hash[32];
    unsigned char request_hash[32];
};

/* Claims the key, or answers from the record: a replay (CV_OK with
 * reply->replayed), 409 reused, or 409 in use after waiting IDEM_WAIT_MS for
 * the first request to finish. Returns CV_ERR_DUPLICATE to mean "claimed, go on". */
#define IDEM_WAIT_MS 5000
#define IDEM_POLL_MS 50
#define IDEM_STALE_S 60

/* The request's identity for idempotency: the validated card without its
 * security code. A keyed hash that covered the CVC would let whoever holds
 * the KEK and the database test the 1,000 possible codes against it (PCI DSS
 * 3.3.1.2: nothing derived from the CVC is kept), so a retry that differs
 * only in its CVC replays the original token, which never held a CVC. */
static cv_status request_identity(struct cv_app *app, const char *merchant_id,
                                  const struct cv_card_plain *card, bool reuse_existing,
                                  unsigned char out[32])
{
    unsigned char canon[CV_CARD_PLAIN_MAX + 64];
    size_t pan_len = strlen(card->pan), name_len = card->has_name ? strlen(card->name) : 0;
    size_t n = 0;
    canon[n++] = (unsigned char)pan_len;
    memcpy(canon + n, card->pan, pan_len);
    n += pan_len;
    canon[n++] = (unsigned char)card->exp_month;
    canon[n++] = (unsigned char)((unsigned)card->exp_year >> 8);
    canon[n++] = (unsigned char)((unsigned)card->exp_year & 0xff);
    canon[n++] = card->has_name ? (unsigned char)name_len : 0xff;
    memcpy(canon + n, card->name, name_len);
    n += name_len;
    canon[n++] = reuse_existing ? 1 : 0;
    cv_status st = cv_keyring_mac(app->keyring, "request-card-v1", merchant_id, canon, n, out);
    cv_wipe(canon, sizeof(canon));
    return st;
}

static cv_status idem_begin(struct cv_app *app, const struct cv_call *call,
                            const struct cv_card_plain *card, bool reuse_existing, struct idem *id,
                            struct cv_reply *reply)
{
    const char *m = call->who->merchant_id;
    size_t klen = strlen(call->idempotency_key);
    CV_TRY(cv_keyring_mac(app->keyring, "idempotency-key", m, call->idempotency_key, klen,
                          id->key_hash));
    CV_TRY(request_identity(app, m, card, reuse_existing, id->request_hash));
    id->active = true;
    for (int waited = 0; waited <= IDEM_WAIT_MS; waited += IDEM_POLL_MS) {
        struct cv_idem_record rec;
        bool claimed = false;
        cv_status st =
            cv_store_idem_claim(app->store, m, id->key_hash, id->request_hash,
                                app->config->idempotency_ttl_s, IDEM_STALE_S, &claimed, &rec);
        if (st == CV_OK && claimed) {
            id->claimed = true;
            return CV_ERR_DUPLICATE;
        }
        if (st == CV_OK && !cv_ct_equal(rec.request_hash, id->request_hash, 32))
            st = CV_ERR_IDEMPOTENCY_REUSED;
        else if (st == CV_OK && rec.done) {
            reply->http_status = rec.status_code;
            reply->body = rec.response_body;
            reply->body_len = strlen(rec.response_body);
            reply->free_body = free;
            reply->replayed = true;
            rec.response_body = NULL;
        } else if (st == CV_OK || st == CV_ERR_DUPLICATE) {
            cv_idem_record_cleanup(&rec);
            struct timespec pause = {0, IDEM_POLL_MS * 1000000L};
            nanosleep(&pause, NULL);
            continue;
        }
        cv_idem_record_cleanup(&rec);
        return st;
    }
    return CV_ERR_IDEMPOTENCY_IN_USE;
}

static void idem_abandon(struct cv_app *app, const struct cv_call *call, struct idem *id)
{
    if (id->claimed &&
        cv_store_idem_release(app->store, call->who->merchant_id, id->key_hash) != CV_OK)
        cv_log(CV_LOG_WARN, "idempotency_release_failed", CV_LS("request_id", call->request_id),
               CV_LS("effect", "retries with this key wait until the claim goes stale (60 s)"));
    id->claimed = false;
}

cv_status cv_api_tokenize(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    struct cv_tokenize_req req;
    struct cv_card_plain card;
    struct cv_token_row row;
    struct cv_token_view view;
    struct idem idem;
    enum cv_card_brand brand = CV_BRAND_UNKNOWN;
    const char *param = NULL;
    char *body = NULL;
    size_t len = 0;
    cv_status st;

    memset(&card, 0, sizeof(card));
    memset(&row, 0, sizeof(row));
    memset(&idem, 0, sizeof(idem));
    if (call->idempotency_key != NULL &&
        !cv_token_idempotency_key_is_valid(call->idempotency_key, strlen(call->idempotency_key)))
        return CV_ERR_INVALID_IDEMPOTENCY_KEY;
    st = cv_json_decode_tokenize(call->body, call->body_len, &req, &param);
    if (st != CV_OK) {
        reply->error_param = param;
        return st;
    }
    /* Validate before touching the idempotency record: a bad request is
     * answered the same way every time and never occupies the key. */
    st = validate(&req, &card, &brand, &param);
    if (st != CV_OK) {
        reply->error_param = param;
        goto out;
    }
    if (call->idempotency_key != NULL) {
        st = idem_begin(app, call, &card, req.reuse_existing, &idem, reply);
        if (st != CV_ERR_DUPLICATE)
            goto out; /* a replay, or a 409 */
    }
    snprintf(row.merchant_id, sizeof(row.merchant_id), "%s", call->who->merchant_id);
    snprintf(row.brand, sizeof(row.brand), "%s", cv_card_brand_name(brand));
    memcpy(row.bin, card.pan, 6);
    memcpy(row.last4, card.pan + strlen(card.pan) - 4, 4);
    st = cv_keyring_fingerprint(app->keyring, row.merchant_id, card.pan, row.fingerprint);
    if (st != CV_OK)
        goto out;

    if (req.reuse_existing) {
        struct cv_token_row existing;
        st = find_existing(app, row.merchant_id, row.fingerprint, &card, &existing);
        if (st == CV_OK) {
            view_of(&existing, &card, &view);
            body = cv_json_encode_token(&view, &len);
            cv_token_row_cleanup(&existing);
            if (idem.claimed) {
                if (cv_store_idem_complete(app->store, row.merchant_id, idem.key_hash, 200, body) ==
                    CV_OK)
                    idem.claimed = false;
            }
            reply_json(reply, 200, body, len);
            body = NULL;
            goto out;
        }
        if (st != CV_ERR_NOT_FOUND)
            goto out;
    }

    now_rfc3339(row.created_at);
    for (int attempt = 0; attempt < TOKEN_INSERT_ATTEMPTS; attempt++) {
        free(row.ciphertext);
        row.ciphertext = NULL;
        if (body != NULL)
            cv_json_free(body);
        body = NULL;
        if ((st = cv_token_generate(row.token)) != CV_OK)
            goto out;
        /* The token is part of the associated data, so a new token means a new seal. */
        if ((st = cv_keyring_seal(app->keyring, &card, &row)) != CV_OK)
            goto out;
        view_of(&row, &card, &view);
        body = cv_json_encode_token(&view, &len);
        st = cv_store_insert_token(app->store, &row, idem.claimed ? idem.key_hash : NULL, body);
        if (st != CV_ERR_DUPLICATE)
            break;
        cv_log(CV_LOG_WARN, "token_collision_retry", CV_LS("request_id", call->request_id));
    }
    if (st != CV_OK)
        goto out;
    idem.claimed = false; /* completed in the token's own statement */
    reply_json(reply, 201, body, len);
    body = NULL;
out:
    if (idem.claimed)
        idem_abandon(app, call, &idem);
    if (body != NULL)
        cv_json_free(body);
    cv_wipe(&card, sizeof(card));
    cv_tokenize_req_cleanup(&req); /* wipes PAN, CVC and name buffers */
    cv_token_row_cleanup(&row);
    return st;
}

/* Loads and opens a token of the caller's merchant. Missing, malformed and
 * other merchants' tokens are all CV_ERR_NOT_FOUND: indistinguishable. */
static cv_status load_card(struct cv_app *app, const struct cv_call *call, struct cv_token_row *row,
                           struct cv_card_plain *card)
{
    memset(card, 0, sizeof(*card));
    if (call->token == NULL || !cv_token_is_valid(call->token, strlen(call->token)))
        return CV_ERR_NOT_FOUND;
    CV_TRY(cv_store_get_token(app->store, call->who->merchant_id, call->token, row));
    cv_status st = cv_keyring_open_row(app->keyring, row, card);
    if (st == CV_ERR_INTEGRITY)
        cv_log(CV_LOG_ERROR, "integrity_error", CV_LS("request_id", call->request_id),
               CV_LS("merchant_id", call->who->merchant_id), CV_LS("token", row->token),
               CV_LI("dek_id", row->dek_id));
    return st;
}

cv_status cv_api_read(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    struct cv_token_row row;
    struct cv_card_plain card;
    struct cv_token_view view;
    memset(&row, 0, sizeof(row));
    cv_status st = load_card(app, call, &row, &card);
    if (st == CV_OK) {
        view_of(&row, &card, &view);
        size_t len = 0;
        char *body = cv_json_encode_token(&view, &len);
        reply_json(reply, 200, body, len);
    }
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    return st;
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

cv_status cv_api_detokenize(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    struct cv_token_row row;
    struct cv_card_plain card;
    struct cv_token_view view;
    const char *param = NULL;
    memset(&row, 0, sizeof(row));
    memset(&card, 0, sizeof(card));
    cv_status st = cv_json_decode_empty(call->body, call->body_len, &param);
    if (st != CV_OK) {
        reply->error_param = param;
        return st;
    }
    st = load_card(app, call, &row, &card);
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
    cv_status ast = cv_store_audit_append(app->store, &ev);
    if (ast != CV_OK) {
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
    reply_json(reply, 200, body, len);
out:
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    return st;
}

cv_status cv_api_delete(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    if (call->token == NULL || !cv_token_is_valid(call->token, strlen(call->token)))
        return CV_ERR_NOT_FOUND;
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = call->token,
        .request_id = call->request_id,
        .action = "token.delete",
    };
    CV_TRY(cv_store_delete_token(app->store, call->who->merchant_id, call->token, &ev));
    reply->http_status = 204;
    return CV_OK;
}

void cv_api_audit_denied(struct cv_app *app, const char *action, const struct cv_call *call)
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
    if (cv_store_audit_append(app->store, &ev) != CV_OK)
        cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
               CV_LS("action", action));
}

cv_status cv_api_healthz(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    (void)app;
    (void)call;
    size_t len = 0;
    char *body = cv_json_encode_health("ok", NULL, 0, &len);
    reply_json(reply, 200, body, len);
    return CV_OK;
}

cv_status cv_api_readyz(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    (void)call;
    bool draining = atomic_load(&app->draining);
    bool db_ok = !draining && cv_store_ping(app->store) == CV_OK;
    bool kek_ok = !draining && app->keyring != NULL && cv_keyring_kek_ok(app->keyring);
    /* While draining the database is not asked: the instance is leaving. */
    const char *const pairs[] = {"database", db_ok ? "ok" : "unavailable", "kek",
                                 kek_ok ? "ok" : "unavailable"};
    bool ready = db_ok && kek_ok && !draining;
    size_t len = 0;
    char *body = cv_json_encode_health(ready ? "ready" : "unavailable", pairs, 2, &len);
    reply_json(reply, ready ? 200 : 503, body, len);
    return CV_OK;
}

cv_status cv_api_metrics(struct cv_app *app, const struct cv_call *call, struct cv_reply *reply)
{
    (void)call;
    struct cv_metrics_gauges g = {0};
    cv_store_pool_usage(app->store, &g.db_pool_in_use, &g.db_pool_size);
    g.dek_rotations = cv_keyring_rotations(app->keyring);
    g.ready = !atomic_load(&app->draining);
    size_t len = 0;
    reply->body = cv_metrics_render(app->metrics, &g, &len);
    reply->body_len = len;
    reply->free_body = free;
    reply->http_status = 200;
    reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return CV_OK;
}
