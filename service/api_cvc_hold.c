/* api_cvc_hold.c: POST /v1/tokens/{token}/cvc-hold (api_cvc_hold.h). */
#include "cardvault/api_cvc_hold.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cardvault/audit.h"
#include "cardvault/card.h"
#include "cardvault/cvc_hold.h"
#include "cardvault/json_codec.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

/* The brand of the saved card, read through the keyring: the row opens (its
 * key is not destroyed, its ciphertext and clear columns agree) or the hold
 * is refused. The card is wiped before return. */
static cv_status brand_of_token(const struct cv_handler_deps *d, const struct cv_call *call,
                                enum cv_card_brand *brand)
{
    if (call->token == NULL || !cv_token_is_valid(call->token, strlen(call->token)))
        return CV_ERR_NOT_FOUND;
    struct cv_token_row row;
    struct cv_card_plain card;
    memset(&row, 0, sizeof(row));
    memset(&card, 0, sizeof(card));
    cv_status st = d->store_ops->get_token(d->store, call->who->merchant_id, call->token, &row);
    if (st == CV_OK)
        st = d->keyring_ops->open_row(d->keyring, &row, &card);
    if (st == CV_OK)
        *brand = cv_card_brand_of(card.pan, strlen(card.pan));
    cv_wipe(&card, sizeof(card));
    cv_token_row_cleanup(&row);
    return st;
}

void cv_api_cvc_hold(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    const struct cv_cvc_hold_req *q = call->cvc_hold;
    char id[CV_HOLD_ID_MAX + 1] = "";
    enum cv_card_brand brand = CV_BRAND_UNKNOWN;
    cv_status st = deps->holds == NULL || deps->keyring == NULL || q == NULL || q->cvc == NULL
                       ? CV_ERR_INTERNAL
                       : brand_of_token(deps, call, &brand);
    if (st == CV_OK && cv_card_check_cvc((const char *)q->cvc->data, q->cvc->len, brand) != CV_OK) {
        st = CV_ERR_INVALID_CVC;
        res.error_param = "cvc";
    }
    time_t expires_at = 0;
    unsigned uses = 0;
    if (st == CV_OK) {
        const char *param = NULL;
        st = cv_holds_put(deps->holds, call->who->merchant_id, call->token,
                          (const char *)q->cvc->data, q->uses, q->ttl_s, id, &expires_at, &uses,
                          &param);
        res.error_param = param;
    }
    if (st == CV_OK) {
        /* No answer without its audit record; without one the hold goes. */
        struct cv_audit_event ev = {
            .actor = call->who->key_prefix,
            .merchant_id = call->who->merchant_id,
            .token = call->token,
            .request_id = call->request_id,
            .action = "token.cvc_hold",
            .outcome = "success",
        };
        if (deps->store_ops->audit_append(deps->store, &ev) != CV_OK) {
            cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
                   CV_LS("action", "token.cvc_hold"));
            cv_holds_drop(deps->holds, id);
            st = CV_ERR_DB_UNAVAILABLE;
        }
    }
    if (st == CV_OK) {
        char when[32];
        struct tm tm;
        gmtime_r(&expires_at, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        size_t len = 0;
        res.body = cv_json_encode_cvc_hold(id, call->token, when, uses, &len);
        res.body_len = len;
        res.free_body = cv_json_free;
        res.body_type = CV_BODY_JSON;
        res.kind = CV_RESULT_CREATED;
    }
    cv_wipe(id, sizeof(id));
    res.status = st;
    if (st != CV_OK) {
        const char *param = res.error_param;
        cv_result_cleanup(&res);
        res.status = st;
        res.error_param = param;
    }
    cv_completion_finish(done, &res);
}
