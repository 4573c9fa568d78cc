#ifndef CV_API_TOKENS_MANAGE_H
#define CV_API_TOKENS_MANAGE_H

#include "cardvault/handler.h"

/* The token management flows an integrator's back end uses: listing a
 * merchant's tokens and updating one (card expiry, cardholder name,
 * metadata, lifetime) without sending the card number again. Handlers of the
 * contract in handler.h; a list answer never carries a card number, and
 * every buffer that held a card is wiped before return. */

/* GET /v1/tokens: CV_RESULT_OK with one page (call->list); live tokens of
 * the caller's merchant only, newest first. */
void cv_api_list(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done);
/* PATCH /v1/tokens/{token}: CV_RESULT_OK with the updated token object;
 * CV_ERR_NOT_FOUND for a missing, malformed, expired or other merchant's
 * token; CV_ERR_TOKEN_DESTROYED when its data key was destroyed; the card
 * validation errors for a bad expiry or name. Audited (token.update) in the
 * update's own transaction; Idempotency-Key as for tokenize. */
void cv_api_update(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done);

#endif
