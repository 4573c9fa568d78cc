/* api_tokens_manage.c: GET /v1/tokens and PATCH /v1/tokens/{token}. The
 * list opens each row through the keyring (so every row shown passed its
 * integrity check, row_check.c) only to show its expiry: the card number and
 * the name never leave this file. The update opens the token's card,
 * changes its expiry or name, and seals it again under the current data key
 * with the same token (the associated data binds the token and merchant, so
 * a re-seal keeps the ciphertext where it belongs); the row is written only
 * if no other update re-sealed it meanwhile, together with its audit event.
 * Metadata and lifetime travel beside the card, never inside it. */
#include "cardvault/api_tokens_manage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/buf.h"
#include "cardvault/card.h"
#include "cardvault/json_codec.h"
#include "cardvault/list_query.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"
#include "api_tokens_idem.h"

/* An update that lost the row to a concurrent update starts over this many times. */
#define UPDATE_ATTEMPTS 3
#define IDEM_STORED_OK  200

static void result_json(struct cv_result *res, char *body, size_t len)
{
    res->kind = CV_RESULT_OK;
    res->body = body;
    res->body_len = len;
    res->free_body = cv_json_free;
    res->body_type = CV_BODY_JSON;
}

static void finish(struct cv_completion *done, struct cv_result *res, cv_status st)
{
    res->status = st;
    if (st != CV_OK) {
        const char *param = res->error_param;
        cv_result_cleanup(res);
        res->status = st;
        res->error_param = param;
    }
    cv_completion_finish(done, res);
}

static void view_of(const struct cv_token_row *row, int exp_month, int exp_year,
                    struct cv_token_view *v)
{
    memset(v, 0, sizeof(*v));
    v->token = row->token;
    v->brand = row->brand;
    v->bin = row->bin;
    v->last4 = row->last4;
    v->exp_month = exp_month;
    v->exp_year = exp_year;
    v->fingerprint = row->fingerprint;
    v->created_at = row->created_at;
    v->metadata = row->metadata;
    v->expires_at = row->expires_at;
}

static void log_integrity(const struct cv_call *call, const struct cv_token_row *row)
{
    cv_log(CV_LOG_ERROR, "integrity_error", CV_LS("request_id", call->request_id),
           CV_LS("merchant_id", call->who->merchant_id), CV_LS("token", row->token),
           CV_LI("dek_id", row->dek_id));
}

static cv_status list(const struct cv_handler_deps *d, const struct cv_call *call,
                      struct cv_result *res)
{
    const struct cv_list_req *q = call->list;
    struct cv_token_list_query sq;
    struct cv_token_row *rows = NULL;
    struct cv_token_view *views = NULL;
    char cursor[CV_LIST_CURSOR_LEN + 1];
    size_t n = 0, shown = 0;
    cv_status st = CV_OK;

    if (q == NULL || d->store_ops->list_tokens == NULL)
        return CV_ERR_INTERNAL;
    memset(&sq, 0, sizeof(sq));
    sq.merchant_id = call->who->merchant_id; /* the only merchant a list ever reads */
    if (q->has_cursor) {
        sq.after_created_us = q->after_created_us;
        memcpy(sq.after_token, q->after_token, sizeof(sq.after_token));
    }
    memcpy(sq.fingerprint, q->fingerprint, sizeof(sq.fingerprint));
    sq.has_created_gte = q->has_created_gte;
    sq.created_gte = q->created_gte;
    sq.has_created_lt = q->has_created_lt;
    sq.created_lt = q->created_lt;
    memcpy(sq.meta_key, q->meta_key, sizeof(sq.meta_key));
    memcpy(sq.meta_value, q->meta_value, sizeof(sq.meta_value));

    /* One more than the page: whether there is a next page. */
    size_t want = (size_t)q->limit + 1;
    rows = cv_xcalloc(want, sizeof(*rows));
    views = cv_xcalloc(want, sizeof(*views));
    if ((st = d->store_ops->list_tokens(d->store, &sq, rows, want, &n)) != CV_OK)
        goto out;
    bool has_more = n > q->limit;
    size_t page = has_more ? q->limit : n;
    for (size_t i = 0; i < page; i++) {
        struct cv_card_plain card;
        memset(&card, 0, sizeof(card));
        cv_status o = d->keyring_ops->open_row(d->keyring, &rows[i], &card);
        int m = card.exp_month, y = card.exp_year;
        cv_wipe(&card, sizeof(card));
        if (o == CV_ERR_TOKEN_DESTROYED)
            continue; /* its data key is shredded: the card is gone, as on a read (410) */
        if (o != CV_OK) {
            if (o == CV_ERR_INTEGRITY)
                log_integrity(call, &rows[i]);
            st = o;
            goto out;
        }
        view_of(&rows[i], m, y, &views[shown++]);
    }
    /* The cursor names the last row of the page in the list order, shown
     * or skipped; the next page starts after it. */
    bool cursor_ok =
        has_more && cv_list_cursor_encode(rows[page - 1].created_us, rows[page - 1].token, cursor);
    if (has_more && !cursor_ok) {
        st = CV_ERR_INTERNAL;
        goto out;
    }
    size_t len = 0;
    char *body = cv_json_encode_token_list(views, shown, has_more, has_more ? cursor : NULL, &len);
    result_json(res, body, len);
out:
    for (size_t i = 0; i < n; i++)
        cv_token_row_cleanup(&rows[i]);
    free(rows);
    free(views);
    return st;
}

void cv_api_list(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    cv_status st = list(deps, call, &res);
    finish(done, &res, st);
}

static void current_month(const struct cv_clock *clock, int *month, int *year)
{
    time_t now = clock->now(clock->ctx);
    struct tm tm;
    gmtime_r(&now, &tm);
    *month = tm.tm_mon + 1;
    *year = tm.tm_year + 1900;
}

/* The card fields of an update, checked as tokenize checks them, before
 * anything is read or claimed: a bad request is answered the same way every
 * time and never occupies its Idempotency-Key. */
static cv_status validate(const struct cv_clock *clock, const struct cv_update_req *req,
                          const char **param)
{
    if (req->has_expiry) {
        int now_month = 0, now_year = 0;
        current_month(clock, &now_month, &now_year);
        *param = req->exp_month < 1 || req->exp_month > 12 ? "exp_month" : "exp_year";
        CV_TRY(cv_card_check_expiry(req->exp_month, req->exp_year, now_month, now_year));
    }
    if (req->has_name && req->name != NULL) {
        *param = "cardholder_name";
        CV_TRY(cv_card_check_name((const char *)req->name->data, req->name->len));
    }
    *param = NULL;
    return CV_OK;
}

/* The request's identity for its Idempotency-Key: the token and every field
 * as decoded, in one fixed layout, under a keyed MAC (the name is card data:
 * only its MAC is kept, as tokenize keeps the card's). */
static cv_status update_identity(const struct cv_handler_deps *d, const struct cv_call *call,
                                 unsigned char out[32])
{
    const struct cv_update_req *r = call->update;
    struct cv_buf b;
    cv_buf_init(&b, 64 * 1024);
    cv_status st = cv_buf_appendf(&b, "%s|%d:%lld:%lld|%d:%d:%lld|%d:", call->token, r->has_expiry,
                                  r->exp_month, r->exp_year, r->has_ttl, r->clear_ttl,
                                  r->ttl_seconds, r->has_name);
    if (st == CV_OK && r->name != NULL)
        st = cv_buf_append(&b, r->name->data, r->name->len);
    if (st == CV_OK)
        st = cv_buf_append_str(&b, r->name != NULL ? "|1:" : "|0:");
    if (st == CV_OK && r->metadata_patch != NULL)
        st = cv_buf_append_str(&b, r->metadata_patch);
    if (st == CV_OK)
        st = d->keyring_ops->mac(d->keyring, "request-update-v1", call->who->merchant_id, b.data,
                                 b.len, out);
    cv_buf_cleanup(&b); /* wipes */
    return st;
}

/* Which fields an update changed, for its audit event: names, never values. */
static void describe(const struct cv_update_req *r, char *out, size_t cap)
{
    snprintf(out, cap, "fields=%s%s%s%s", r->has_expiry ? "expiry," : "",
             r->has_name ? "cardholder_name," : "", r->metadata_patch != NULL ? "metadata," : "",
             r->has_ttl ? "expires_at," : "");
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == ',')
        out[n - 1] = '\0';
}

/* One attempt: read and open the live row, apply the update, seal, write.
 * CV_ERR_NOT_FOUND from the write means the row changed under us (or went
 * away); *lost tells the caller to start over. */
static cv_status update_once(const struct cv_handler_deps *d, const struct cv_call *call,
                             struct cv_token_row *row, struct cv_card_plain *card, bool *lost)
{
    const struct cv_update_req *r = call->update;
    unsigned char old_nonce[CV_GCM_NONCE_BYTES];
    char detail[96];
    *lost = false;
    cv_token_row_cleanup(row);
    cv_wipe(card, sizeof(*card));
    CV_TRY(d->store_ops->get_token(d->store, call->who->merchant_id, call->token, row));
    cv_status st = d->keyring_ops->open_row(d->keyring, row, card);
    if (st == CV_ERR_INTEGRITY)
        log_integrity(call, row);
    if (st != CV_OK)
        return st;
    if (r->has_expiry) {
        card->exp_month = (int)r->exp_month;
        card->exp_year = (int)r->exp_year;
    }
    if (r->has_name) {
        memset(card->name, 0, sizeof(card->name));
        card->has_name = 0;
        if (r->name != NULL) {
            memcpy(card->name, r->name->data, r->name->len);
            card->has_name = 1;
        }
    }
    if (r->metadata_patch != NULL) {
        char *merged = NULL;
        CV_TRY(cv_json_metadata_merge(row->metadata, r->metadata_patch, &merged));
        free(row->metadata);
        row->metadata = merged;
    }
    if (r->clear_ttl)
        row->expires_at[0] = '\0';
    else if (r->has_ttl)
        cv_api_expiry_rfc3339(&d->clock, r->ttl_seconds, row->expires_at);
    /* Same PAN, same token and merchant: the clear columns still match the
     * card, so the next open's row check passes. */
    memcpy(old_nonce, row->nonce, sizeof(old_nonce));
    free(row->ciphertext);
    row->ciphertext = NULL;
    row->ciphertext_len = 0;
    CV_TRY(d->keyring_ops->seal(d->keyring, card, row));
    describe(r, detail, sizeof(detail));
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = call->token,
        .request_id = call->request_id,
        .action = "token.update",
        .outcome = "success",
        .detail = detail,
    };
    st = d->store_ops->update_token(d->store, row, old_nonce, &ev);
    if (st == CV_ERR_NOT_FOUND)
        *lost = true;
    return st;
}

static cv_status update(const struct cv_handler_deps *d, const struct cv_call *call,
                        struct cv_result *res)
{
    struct cv_token_row row;
    struct cv_card_plain card;
    struct cv_token_view view;
    struct idem idem;
    char *body = NULL;
    size_t len = 0;
    cv_status st = CV_OK;

    memset(&row, 0, sizeof(row));
    memset(&card, 0, sizeof(card));
    memset(&idem, 0, sizeof(idem));
    if (call->update == NULL || d->store_ops->update_token == NULL)
        return CV_ERR_INTERNAL;
    if (call->token == NULL || !cv_token_is_valid(call->token, strlen(call->token)))
        return CV_ERR_NOT_FOUND;
    if ((st = validate(&d->clock, call->update, &res->error_param)) != CV_OK)
        return st;
    if (call->idempotency_key != NULL) {
        enum idem_begin next = IDEM_GO_ON;
        if ((st = update_identity(d, call, idem.request_hash)) != CV_OK)
            goto out;
        st = cv_api_idem_claim(d, call, &idem, res, &next);
        if (st != CV_OK || next == IDEM_ANSWERED)
            goto out;
    }
    bool lost = true;
    for (int attempt = 0; attempt < UPDATE_ATTEMPTS && lost; attempt++)
        st = update_once(d, call, &row, &card, &lost);
    if (lost) {
        /* Three updates in a row lost the race, or the data key was
         * destroyed between seal and write each time: retriable. */
        cv_log(CV_LOG_WARN, "token_update_contended", CV_LS("request_id", call->request_id));
        st = CV_ERR_DB_UNAVAILABLE;
    }
    if (st != CV_OK)
        goto out;
    view_of(&row, card.exp_month, card.exp_year, &view);
    body = cv_json_encode_token(&view, &len);
    if (idem.claimed && d->store_ops->idem_complete(d->store, call->who->merchant_id, idem.key_hash,
                                                    IDEM_STORED_OK, body) == CV_OK)
        idem.claimed = false;
    result_json(res, body, len);
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

void cv_api_update(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    cv_status st = update(deps, call, &res);
    finish(done, &res, st);
}
