#ifndef CV_CLIENT_ADDR_H
#define CV_CLIENT_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* The client address of a request: the TCP peer, or, when the peer is a
 * trusted proxy (CARDVAULT_TRUSTED_PROXIES), the address that proxy reports
 * in X-Forwarded-For or Forwarded (RFC 7239). Pure: no allocation, no I/O,
 * no log. Addresses come out in one canonical text form (inet_ntop; an
 * IPv4-mapped IPv6 address as plain IPv4), so one client has one bucket. */

#define CV_CLIENT_ADDR_LEN      46 /* INET6_ADDRSTRLEN: text form, NUL included */
#define CV_TRUSTED_PROXIES_MAX  32
#define CV_TRUSTED_PROXIES_TEXT 2048 /* longest CARDVAULT_TRUSTED_PROXIES accepted */

/* Which header a trusted proxy reports the client in. */
enum cv_forward_header {
    CV_FORWARD_X_FORWARDED_FOR = 0, /* X-Forwarded-For: a, b, c */
    CV_FORWARD_FORWARDED = 1,       /* Forwarded: for=a, for="[b]:port" */
};

struct cv_cidr {
    unsigned char addr[16]; /* IPv4 in the first 4 bytes */
    unsigned char prefix_bits;
    bool v6;
};

struct cv_proxy_list {
    struct cv_cidr nets[CV_TRUSTED_PROXIES_MAX];
    size_t n;
};

/* Parses a comma-separated list of IPv4/IPv6 addresses and CIDR blocks
 * ("10.0.0.1, 192.168.0.0/16, fd00::/8"); spaces around an entry are
 * allowed. Strict: an empty entry, a prefix longer than the family allows, a
 * block with host bits set, a /0, more than CV_TRUSTED_PROXIES_MAX entries
 * or text longer than CV_TRUSTED_PROXIES_TEXT is CV_ERR_CONFIG with a
 * one-line reason in why. NULL or "" gives an empty list. */
CV_MUST_USE cv_status cv_client_addr_parse_proxies(const char *text, struct cv_proxy_list *out,
                                                   char *why, size_t why_len);
/* Parses "ip" or "ip/bits" (one entry of the list above). */
CV_MUST_USE cv_status cv_client_addr_parse_cidr(const char *s, size_t len, struct cv_cidr *out);
/* True when addr (text, IPv4 or IPv6) lies in one of the list's blocks. */
bool cv_client_addr_is_trusted(const struct cv_proxy_list *trusted, const char *addr);

/* The client address of a request whose TCP peer is peer (text). When the
 * peer is trusted and header (the configured forwarding header's value, or
 * NULL) names addresses, the answer is the right-most one that is not a
 * trusted proxy (the left-most, when all are); a malformed, obfuscated or
 * "unknown" entry reached on that walk ends it, and the answer is then the
 * last trusted hop (never text the client made up). Otherwise the peer,
 * canonicalized when it parses, else copied as is. out has room for
 * CV_CLIENT_ADDR_LEN bytes. */
void cv_client_addr_resolve(const struct cv_proxy_list *trusted, enum cv_forward_header kind,
                            const char *peer, const char *header, char out[CV_CLIENT_ADDR_LEN]);

#endif
