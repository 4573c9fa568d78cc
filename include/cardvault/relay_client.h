#ifndef CV_RELAY_CLIENT_H
#define CV_RELAY_CLIENT_H

#include <stdbool.h>

#include "cardvault/handler.h"
#include "cardvault/relay_dest.h"
#include "cardvault/status.h"

/* The relay's outbound HTTPS client (libcurl): one request to one listed
 * destination, with the checks that destination demands and nothing the
 * environment could loosen:
 *   - https only, HTTP/1.1, TLS 1.2 (ECDHE and AEAD suites) or 1.3, the peer's certificate checked
 * against the destination's CA file (or the system store) and its host name, the public-key pin and
 * the client certificate when listed;
 *   - no redirect followed (a 3xx answer is CV_ERR_RELAY_REDIRECT), no
 *     proxy taken from the environment, no cookies, no decompression;
 *   - the answer cut off at the destination's max_answer_bytes while it
 *     arrives, the exchange cut off at its timeout_ms.
 * Every buffer that held the request or answer body is wiped before it is
 * freed. Errors never carry the body or a header value. */

/* Once at start-up, before any thread sends (curl_global_init). */
CV_MUST_USE cv_status cv_relay_client_init(void);
void cv_relay_client_shutdown(void);

/* Sends req to d (req->path is appended to d->url; the caller has checked it
 * with cv_relay_destination_allows). On CV_OK *ans holds the status, the
 * headers and the body (free with cv_relay_answer_cleanup). On failure
 * *maybe_sent says whether any byte of the request may have reached the
 * processor (false for a refused connection or a failed TLS handshake), so
 * the caller knows whether a retry could act twice. */
CV_MUST_USE cv_status cv_relay_client_send(const struct cv_relay_destination *d,
                                           const struct cv_relay_outbound *req,
                                           struct cv_relay_answer *ans, bool *maybe_sent);

#endif
