#ifndef CV_HTTP_SERVER_H
#define CV_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/app.h"
#include "cardvault/status.h"

/* The HTTP layer (libmicrohttpd): per-request context, request id, body cap,
 * content-type and query-string checks, authentication and scope checks,
 * dispatch through the router, and the one place where a cv_status becomes
 * an HTTP status and a JSON error. Writes the access log line and the
 * request metrics when each request completes. */

#define CV_HTTP_BODY_MAX_BYTES 8192

struct cv_http_server;

/* Starts listening per app->config. CV_ERR_CONFIG with why set when the
 * address cannot be bound or TLS material cannot be loaded. */
CV_MUST_USE cv_status cv_http_server_start(struct cv_app *app, struct cv_http_server **out,
                                           char *why, size_t why_len);
/* Stops accepting new connections and waits up to drain_ms for requests in
 * flight; false when some are still running. */
bool cv_http_server_drain(struct cv_http_server *srv, unsigned drain_ms);
/* Stops the daemon (joins its threads) and frees. Accepts NULL. */
void cv_http_server_stop(struct cv_http_server *srv);

#endif
