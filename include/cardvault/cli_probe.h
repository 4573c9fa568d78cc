#ifndef CV_CLI_PROBE_H
#define CV_CLI_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"

/* `cardvault probe`'s two parsers, pure so they can be tested and fuzzed
 * without a socket: the ops listener's URL and the status line it answers. */

/* An IPv6 literal at most, NUL-terminated. */
#define CV_PROBE_HOST_MAX 45

struct cv_probe_target {
    char host[CV_PROBE_HOST_MAX + 1]; /* an IPv4 or IPv6 literal, no brackets */
    uint16_t port;
    int family; /* AF_INET or AF_INET6 */
};

/* Parses "http://HOST[:PORT][/]" (len bytes, need not end in NUL): HOST an
 * IPv4 literal, a bracketed IPv6 literal or "localhost" (127.0.0.1); PORT
 * 1-65535, 80 when absent. No user info, path, query or https: the ops
 * listener speaks plain HTTP and the probe chooses the path.
 * CV_ERR_CONFIG with why set otherwise. */
CV_MUST_USE cv_status cv_probe_parse_url(const char *url, size_t len, struct cv_probe_target *out,
                                         char *why, size_t why_len);

/* The listener address CARDVAULT_OPS_LISTEN names, as a probe target: a
 * wildcard address (0.0.0.0, ::) is probed on its loopback (127.0.0.1,
 * ::1), "localhost" as 127.0.0.1. CV_ERR_CONFIG when host is no literal. */
CV_MUST_USE cv_status cv_probe_target_from_listen(const char *host, uint16_t port,
                                                  struct cv_probe_target *out);

/* The status code of an HTTP/1.x status line at the start of buf ("HTTP/1.1
 * 200 OK\r\n..."; len bytes, need not end in NUL). CV_ERR_IO when buf does
 * not start with one. */
CV_MUST_USE cv_status cv_probe_parse_status(const char *buf, size_t len, int *code);

#endif
