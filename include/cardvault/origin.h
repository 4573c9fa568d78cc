#ifndef CV_ORIGIN_H
#define CV_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* Web origins (RFC 6454): "scheme://host[:port]", the unit the card frames
 * are bound to. Pure: no allocation, no I/O, no log. An origin is kept in
 * one normalized form (lower-case scheme and host, default port dropped,
 * nothing after the authority), the form browsers serialize, so two origins
 * are the same when their strings are equal. */

#define CV_ORIGIN_MAX      200 /* characters of one normalized origin */
#define CV_ORIGINS_MAX     8   /* origins on one publishable key */
#define CV_ORIGIN_LIST_MAX (CV_ORIGINS_MAX * (CV_ORIGIN_MAX + 1))

/* Parses in[0..len) (need not be NUL-terminated) as an http or https origin
 * and writes its normalized form to out. The host is a DNS name (labels of
 * letters, digits and inner hyphens), an IPv4 address or a bracketed IPv6
 * address; the port, if any, 1-65535. CV_ERR_BAD_REQUEST for anything else:
 * another scheme, user info, a path (even "/"), a query, a fragment, spaces,
 * an empty port, a trailing dot, a result longer than CV_ORIGIN_MAX. */
CV_MUST_USE cv_status cv_origin_normalize(const char *in, size_t len, char out[CV_ORIGIN_MAX + 1]);
/* True when in[0..len) is an origin already in normalized form. */
bool cv_origin_is_canonical(const char *in, size_t len);
/* True when a normalized origin may be put on a publishable key: https for
 * any host, http only for loopback hosts (localhost, 127.0.0.0/8, [::1]). */
bool cv_origin_is_bindable(const char *origin);
/* Parses a comma-separated list of origins (blanks around items allowed; an
 * empty string is the empty list) into a comma-joined list of normalized,
 * bindable, distinct origins in out. CV_ERR_BAD_REQUEST on a bad or
 * non-bindable origin, an empty item or more than CV_ORIGINS_MAX. */
CV_MUST_USE cv_status cv_origin_list_parse(const char *csv, char out[CV_ORIGIN_LIST_MAX + 1]);
/* True when the normalized origin is an item of the comma-joined list. */
bool cv_origin_list_contains(const char *list, const char *origin);
/* The origin of a request made to "scheme://<host header>": the Host header
 * value (host[:port]) under https or http, normalized. CV_ERR_BAD_REQUEST
 * when host is NULL or not a valid host[:port]. */
CV_MUST_USE cv_status cv_origin_from_host(bool https, const char *host,
                                          char out[CV_ORIGIN_MAX + 1]);

#endif
