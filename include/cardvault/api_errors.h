#ifndef CV_API_ERRORS_H
#define CV_API_ERRORS_H

/* The one catalogue of the HTTP API's errors: for each status the HTTP
 * status, the error type, the public code and the message the client reads.
 * http_server.c answers from it; `cardvault errors` prints it, and the
 * contract test checks openapi.yaml's examples against that print, so the
 * documented messages cannot drift from the ones sent. */

#include "cardvault/status.h"

struct cv_api_error {
    int http;            /* 400 ... 503 */
    const char *type;    /* invalid_request_error, authentication_error, ... */
    const char *message; /* fixed text: never anything the client sent */
    const char *code;    /* the public code: the status's name, except that
                            every 500 is internal_error and every 503
                            service_unavailable (the cause is only logged) */
};

/* The answer for st (CV_OK and statuses that are not client-facing map to
 * 500 internal_error). */
struct cv_api_error cv_api_error_of(cv_status st);

#endif
