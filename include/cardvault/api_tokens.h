#ifndef CV_API_TOKENS_H
#define CV_API_TOKENS_H

#include "cardvault/router.h"
#include "cardvault/status.h"

/* The token flows: tokenize, read, detokenize, delete, and the health
 * endpoints. Each takes an authenticated call and fills a reply; none of them
 * speaks HTTP or SQL directly. Card data lives only in secure buffers and on
 * the stack, wiped before return; it is never logged and never placed in an
 * error message. */

CV_MUST_USE cv_status cv_api_tokenize(struct cv_app *app, const struct cv_call *call,
                                      struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_read(struct cv_app *app, const struct cv_call *call,
                                  struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_detokenize(struct cv_app *app, const struct cv_call *call,
                                        struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_delete(struct cv_app *app, const struct cv_call *call,
                                    struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_healthz(struct cv_app *app, const struct cv_call *call,
                                     struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_readyz(struct cv_app *app, const struct cv_call *call,
                                    struct cv_reply *reply);
CV_MUST_USE cv_status cv_api_metrics(struct cv_app *app, const struct cv_call *call,
                                     struct cv_reply *reply);
/* Records a refused attempt (403) on an audited route; best effort. */
void cv_api_audit_denied(struct cv_app *app, const char *action, const struct cv_call *call);

#endif
