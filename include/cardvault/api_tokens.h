#ifndef CV_API_TOKENS_H
#define CV_API_TOKENS_H

#include "cardvault/handler.h"

/* The token flows: tokenize, read, detokenize and delete, as handlers of the contract in handler.h:
 * each takes decoded structs and the narrow cv_handler_deps, and finishes with a result kind or a
 * status; none of them speaks HTTP, JSON decoding or SQL. Card data lives only in secure buffers
 * and on the stack, wiped before return; it is never logged and never placed in an error message.
 * Every handler here finishes before it returns. */

/* CV_RESULT_CREATED (a new token), or CV_RESULT_OK with an existing token
 * (reuse_existing) or an Idempotency-Key replay (replayed set). */
void cv_api_tokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done);
/* CV_RESULT_OK; CV_ERR_NOT_FOUND for a missing, malformed or other merchant's
 * token; CV_ERR_TOKEN_DESTROYED when its data key was destroyed. */
void cv_api_read(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done);
/* As read, with the card; only after the audit event committed (else
 * CV_ERR_DB_UNAVAILABLE and no card data in the result). */
void cv_api_detokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                       struct cv_completion *done);
/* CV_RESULT_DELETED or CV_ERR_NOT_FOUND; audited either way. */
void cv_api_delete(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done);
/* Records a refused attempt (403) on an audited route; best effort. */
void cv_api_audit_denied(const struct cv_handler_deps *deps, const char *action,
                         const struct cv_call *call);

#endif
