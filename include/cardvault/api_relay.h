#ifndef CV_API_RELAY_H
#define CV_API_RELAY_H

#include "cardvault/handler.h"

/* POST /v1/relay/{destination} (docs/relay.md): the shop's request to its
 * payment processor, with the card filled in from its tokens (and the
 * security code from a CVC hold), sent over verified TLS to an
 * operator-listed destination; the processor's answer comes back with every
 * card number and security code redacted. A handler of the contract in
 * handler.h; needs deps->relay_ops. */
void cv_api_relay(const struct cv_handler_deps *deps, const struct cv_call *call,
                  struct cv_completion *done);

/* The bytes of an answer's headers the shop gets back (lower-case names):
 * true for content-type, date, retry-after, request-id, x-request-id. */
bool cv_api_relay_header_passes(const char *name);

#endif
