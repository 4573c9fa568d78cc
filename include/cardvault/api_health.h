#ifndef CV_API_HEALTH_H
#define CV_API_HEALTH_H

#include "cardvault/handler.h"

/* GET /healthz, /readyz and /metrics: handlers of the contract in handler.h
 * that need no API key, served on the ops listener (/healthz on the API
 * listener too). Each finishes before it returns. */

/* CV_RESULT_OK: the process answers. */
void cv_api_healthz(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done);
/* CV_RESULT_OK or CV_RESULT_NOT_READY, with the checks as the body; the
 * checks run at most once per deps->readiness period (readiness.h). */
void cv_api_readyz(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done);
/* CV_RESULT_OK with a CV_BODY_METRICS body. */
void cv_api_metrics(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done);

#endif
