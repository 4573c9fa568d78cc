#ifndef CV_HTTP_SERVER_H
#define CV_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/app.h"
#include "cardvault/status.h"

/* The HTTP layer (libmicrohttpd): per-request context, request id, body cap,
 * content-type and query-string checks, authentication and scope checks,
 * dispatch through the router, and the one place where a cv_status becomes
 * an HTTP status and a JSON error. Every connection must deliver each whole
 * request within CARDVAULT_REQUEST_DEADLINE_MS (conn_deadline.h). Writes the access log line and
 * the request metrics when each request completes. */

#define CV_HTTP_BODY_MAX_BYTES 8192

struct cv_http_server;

/* Starts the API listener per app->config (CARDVAULT_LISTEN, TLS).
 * CV_ERR_CONFIG with why set when the address cannot be bound or TLS
 * material cannot be loaded; CV_ERR_INTERNAL when a thread cannot start. */
CV_MUST_USE cv_status cv_http_server_start(struct cv_app *app, struct cv_http_server **out,
                                           char *why, size_t why_len);
/* Starts the ops listener (CARDVAULT_OPS_LISTEN, plain HTTP, loopback unless
 * CARDVAULT_ALLOW_PLAINTEXT=1): /healthz, /readyz and /metrics. The same
 * statuses as cv_http_server_start; stop it with cv_http_server_stop. */
CV_MUST_USE cv_status cv_http_server_start_ops(struct cv_app *app, struct cv_http_server **out,
                                               char *why, size_t why_len);
/* Stops accepting new connections and waits up to drain_ms for requests in
 * flight; false when some are still running. */
bool cv_http_server_drain(struct cv_http_server *srv, unsigned drain_ms);
/* Stops the daemon (joins its threads) and frees. Accepts NULL. */
void cv_http_server_stop(struct cv_http_server *srv);
/* Reads CARDVAULT_TLS_CERT and CARDVAULT_TLS_KEY again and, when the pair
 * passes cv_tls_pair_check, serves new connections with it; connections
 * already open finish on the old one. On any failure (CV_ERR_CONFIG, the
 * reason in why) nothing changes. *pair describes the new certificate. */
struct cv_tls_pair_info;
CV_MUST_USE cv_status cv_http_server_reload_tls(struct cv_http_server *srv,
                                                struct cv_tls_pair_info *pair, char *why,
                                                size_t why_len);
/* The version of the libmicrohttpd library the process runs with, e.g.
 * "0.9.75". Static storage; never NULL. */
const char *cv_http_server_library_version(void);

#endif
