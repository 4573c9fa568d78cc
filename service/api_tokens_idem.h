#ifndef CV_API_TOKENS_IDEM_H
#define CV_API_TOKENS_IDEM_H

/* Private to the token handlers (api_tokens.c, api_tokens_manage.c): the
 * Idempotency-Key flow every token write shares, and the token's own
 * lifecycle fields. */

#include <stdbool.h>

#include "cardvault/handler.h"

/* The Idempotency-Key state of one write request. */
struct idem {
    bool claimed; /* we own the record and must complete or release it */
    unsigned char key_hash[32];
    unsigned char request_hash[32]; /* set by the caller before the claim */
};

/* How a claim left the request. */
enum idem_begin {
    IDEM_GO_ON,    /* the key is claimed: run the request */
    IDEM_ANSWERED, /* the result holds the first request's answer (a replay) */
};

/* Claims call->idempotency_key for the request id->request_hash names
 * (*next IDEM_GO_ON), or answers from its record: a replay (*next
 * IDEM_ANSWERED, res filled), CV_ERR_IDEMPOTENCY_REUSED for another request
 * under the same key, CV_ERR_IDEMPOTENCY_IN_USE when the first request did
 * not finish in time. */
CV_MUST_USE cv_status cv_api_idem_claim(const struct cv_handler_deps *d, const struct cv_call *call,
                                        struct idem *id, struct cv_result *res,
                                        enum idem_begin *next);
/* Releases a claim whose request failed (best effort, logged). */
void cv_api_idem_abandon(const struct cv_handler_deps *d, const struct cv_call *call,
                         struct idem *id);

/* The RFC 3339 time ttl_s seconds from the clock's now. */
void cv_api_expiry_rfc3339(const struct cv_clock *clock, long long ttl_s, char out[32]);
/* Copies a tokenize request's metadata and lifetime into the new row. */
CV_MUST_USE cv_status cv_api_token_lifecycle(const struct cv_clock *clock,
                                             const struct cv_tokenize_req *req,
                                             struct cv_token_row *row);

#endif
