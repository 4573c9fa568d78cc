#ifndef CV_API_CVC_HOLD_H
#define CV_API_CVC_HOLD_H

#include "cardvault/handler.h"

/* POST /v1/tokens/{token}/cvc-hold (docs/relay.md, "Security-code holds"):
 * the buyer's security code for a saved card, held in memory for the relay
 * (cvc_hold.h), never stored. The token must be the merchant's own (else
 * CV_ERR_NOT_FOUND, like a missing one); the code is checked against the
 * card's brand (4 digits for American Express, 3 otherwise). Answers
 * CV_RESULT_CREATED with the hold's id, expiry and uses after its audit
 * event (token.cvc_hold, without the code or the hold id) committed. The
 * tokenize scope suffices, so the hosted security-code field can call it
 * with a publishable key. */
void cv_api_cvc_hold(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done);

#endif
