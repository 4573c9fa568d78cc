/* client_addr.c: which address a request comes from. Behind a proxy every
 * TCP connection comes from the proxy, so a per-address limit would lump
 * all clients together; the proxy reports the client in X-Forwarded-For or
 * Forwarded (RFC 7239). Those headers are client text: a client can put any
 * address in them, and a proxy appends what it saw to the right. So they are
 * read only when the TCP peer is a configured proxy, and only from the
 * right: the right-most address that is not itself a trusted proxy is the
 * client. Everything to its left is what the client claimed, and is never
 * used. This module parses the trusted list and those headers; it is pure
 * (no allocation, no I/O, no log) and never returns text a client made up:
 * only addresses that parsed, in canonical form. */
#include "cardvault/client_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define NODE_TEXT_MAX 64 /* "[v6 address]:port" fits easily */

struct ip {
    unsigned char b[16];
    bool v6;
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, const char **e)
{
    while (*s < *e && is_ows(**s))
        (*s)++;
    while (*e > *s && is_ows((*e)[-1]))
        (*e)--;
}

/* A bare IPv4 or IPv6 address; an IPv4-mapped IPv6 address is IPv4. */
static bool parse_ip(const char *s, size_t len, struct ip *out)
{
    char buf[CV_CLIENT_ADDR_LEN];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (memchr(buf, ':', len) == NULL)
        return inet_pton(AF_INET, buf, out->b) == 1;
    if (inet_pton(AF_INET6, buf, out->b) != 1)
        return false;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out->b, mapped, sizeof(mapped)) == 0) {
        memmove(out->b, out->b + 12, 4);
        memset(out->b + 4, 0, 12);
        return true;
    }
    out->v6 = true;
    return true;
}

static void format_ip(const struct ip *ip, char out[CV_CLIENT_ADDR_LEN])
{
    if (inet_ntop(ip->v6 ? AF_INET6 : AF_INET, ip->b, out, CV_CLIENT_ADDR_LEN) == NULL)
        snprintf(out, CV_CLIENT_ADDR_LEN, "unknown");
}

static bool in_block(const struct cv_cidr *c, const struct ip *ip)
{
    if (c->v6 != ip->v6)
        return false;
    unsigned full = c->prefix_bits / 8u, rest = c->prefix_bits % 8u;
    if (memcmp(c->addr, ip->b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xffu << (8u - rest));
    return (c->addr[full] & mask) == (ip->b[full] & mask);
}

static bool trusted_ip(const struct cv_proxy_list *l, const struct ip *ip)
{
    for (size_t i = 0; l != NULL && i < l->n; i++)
        if (in_block(&l->nets[i], ip))
            return true;
    return false;
}

cv_status cv_client_addr_parse_cidr(const char *s, size_t len, struct cv_cidr *out)
{
    const char *slash = memchr(s, '/', len);
    size_t iplen = slash != NULL ? (size_t)(slash - s) : len;
    struct ip ip;
    if (!parse_ip(s, iplen, &ip))
        return CV_ERR_CONFIG;
    unsigned max = ip.v6 ? 128u : 32u, bits = max;
    if (slash != NULL) {
        const char *d = slash + 1, *e = s + len;
        size_t nd = (size_t)(e - d);
        if (nd == 0 || nd > 3 || (nd > 1 && d[0] == '0'))
            return CV_ERR_CONFIG;
        bits = 0;
        for (; d < e; d++) {
            if (*d < '0' || *d > '9')
                return CV_ERR_CONFIG;
            bits = bits * 10u + (unsigned)(*d - '0');
        }
        /* "::ffff:10.0.0.0/104" is the IPv4 block 10.0.0.0/8 */
        bool mapped = !ip.v6 && memchr(s, ':', iplen) != NULL;
        if (mapped) {
            if (bits < 96 || bits > 128)
                return CV_ERR_CONFIG;
            bits -= 96;
        }
        if (bits == 0 || bits > max)
            return CV_ERR_CONFIG;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out->addr, ip.b, sizeof(out->addr));
    out->prefix_bits = (unsigned char)bits;
    out->v6 = ip.v6;
    /* Host bits set ("10.0.0.1/8") is a typo more often than a block. */
    struct ip zero_host = ip;
    for (unsigned i = bits; i < max; i++)
        zero_host.b[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    if (memcmp(zero_host.b, ip.b, sizeof(ip.b)) != 0)
        return CV_ERR_CONFIG;
    return CV_OK;
}

cv_status cv_client_addr_parse_proxies(const char *text, struct cv_proxy_list *out, char *why,
                                       size_t why_len)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || text[0] == '\0')
        return CV_OK;
    size_t total = strnlen(text, CV_TRUSTED_PROXIES_TEXT + 1);
    if (total > CV_TRUSTED_PROXIES_TEXT) {
        snprintf(why, why_len, "CARDVAULT_TRUSTED_PROXIES is longer than %d characters",
                 CV_TRUSTED_PROXIES_TEXT);
        return CV_ERR_CONFIG;
    }
    const char *p = text, *end = text + total;
    for (size_t i = 1;; i++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *s = p, *e = comma != NULL ? comma : end;
        trim(&s, &e);
        if (s == e) {
            snprintf(why, why_len, "CARDVAULT_TRUSTED_PROXIES entry %zu is empty", i);
            return CV_ERR_CONFIG;
        }
        if (out->n == CV_TRUSTED_PROXIES_MAX) {
            snprintf(why, why_len, "CARDVAULT_TRUSTED_PROXIES has more than %d entries",
                     CV_TRUSTED_PROXIES_MAX);
            return CV_ERR_CONFIG;
        }
        if (cv_client_addr_parse_cidr(s, (size_t)(e - s), &out->nets[out->n]) != CV_OK) {
            snprintf(why, why_len,
                     "CARDVAULT_TRUSTED_PROXIES entry %zu must be an IPv4 or IPv6 address or "
                     "a CIDR block (prefix 1-32 or 1-128, host bits zero), e.g. 10.0.0.0/8",
                     i);
            return CV_ERR_CONFIG;
        }
        out->n++;
        if (comma == NULL)
            return CV_OK;
        p = comma + 1;
    }
}

bool cv_client_addr_is_trusted(const struct cv_proxy_list *trusted, const char *addr)
{
    struct ip ip;
    return addr != NULL && parse_ip(addr, strlen(addr), &ip) && trusted_ip(trusted, &ip);
}

/* A node as proxies write it: "1.2.3.4", "1.2.3.4:80", "2001:db8::1",
 * "[2001:db8::1]" or "[2001:db8::1]:80" (RFC 7239 section 6; the same forms
 * are common in X-Forwarded-For). "unknown" and "_hidden" do not parse. */
static bool parse_node(const char *s, const char *e, struct ip *out)
{
    size_t n = (size_t)(e - s);
    if (n == 0 || n > NODE_TEXT_MAX)
        return false;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return false;
        const char *after = close + 1;
        if (after != e) {
            if (*after != ':' || after + 1 == e || e - after > 6)
                return false;
            for (const char *d = after + 1; d < e; d++)
                if (*d < '0' || *d > '9')
                    return false;
        }
        return parse_ip(s + 1, (size_t)(close - s - 1), out) && out->v6;
    }
    const char *colon = memchr(s, ':', n);
    if (colon != NULL && memchr(colon + 1, ':', (size_t)(e - colon - 1)) == NULL) {
        /* exactly one colon: IPv4 with a port */
        if (colon + 1 == e || e - colon > 6)
            return false;
        for (const char *d = colon + 1; d < e; d++)
            if (*d < '0' || *d > '9')
                return false;
        return parse_ip(s, (size_t)(colon - s), out) && !out->v6;
    }
    return parse_ip(s, n, out);
}

/* The last comma-separated element of [s, e), commas inside a quoted
 * string excepted. Sets *es (its start) and returns the comma before it or
 * NULL when it is the first. */
static const char *last_element(const char *s, const char *e, const char **es)
{
    bool quoted = false;
    for (const char *p = e; p > s; p--) {
        char c = p[-1];
        if (c == '"')
            quoted = !quoted;
        else if (c == ',' && !quoted) {
            *es = p;
            return p - 1;
        }
    }
    *es = s;
    return NULL;
}

/* The for= node of one Forwarded element ("for=1.2.3.4;proto=https").
 * Pairs are separated by ';'; a quoted value loses its quotes; a value with
 * a backslash escape cannot be an address and is refused. */
static bool forwarded_for(const char *s, const char *e, const char **ns, const char **ne)
{
    while (s < e) {
        const char *semi = memchr(s, ';', (size_t)(e - s));
        const char *ps = s, *pe = semi != NULL ? semi : e;
        trim(&ps, &pe);
        if (pe - ps > 4 && strncasecmp(ps, "for=", 4) == 0) {
            const char *vs = ps + 4, *ve = pe;
            if (*vs == '"') {
                if (ve - vs < 2 || ve[-1] != '"')
                    return false;
                vs++;
                ve--;
            }
            if (memchr(vs, '\\', (size_t)(ve - vs)) != NULL ||
                memchr(vs, '"', (size_t)(ve - vs)) != NULL)
                return false;
            *ns = vs;
            *ne = ve;
            return true;
        }
        if (semi == NULL)
            break;
        s = semi + 1;
    }
    return false;
}

void cv_client_addr_resolve(const struct cv_proxy_list *trusted, enum cv_forward_header kind,
                            const char *peer, const char *header, char out[CV_CLIENT_ADDR_LEN])
{
    struct ip hop;
    if (peer == NULL || !parse_ip(peer, strlen(peer), &hop)) {
        snprintf(out, CV_CLIENT_ADDR_LEN, "%s", peer != NULL ? peer : "unknown");
        return;
    }
    /* From here on, hop is always an address that parsed: the nearest
     * trusted proxy until a client address is found. */
    if (header != NULL && trusted_ip(trusted, &hop)) {
        const char *s = header, *e = header + strlen(header);
        while (e > s) {
            const char *es = NULL;
            const char *comma = last_element(s, e, &es);
            const char *ns = es, *ne = e;
            trim(&ns, &ne);
            struct ip ip;
            bool ok = ns < ne;
            if (ok && kind == CV_FORWARD_FORWARDED)
                ok = forwarded_for(ns, ne, &ns, &ne);
            if (!ok || !parse_node(ns, ne, &ip))
                break; /* malformed, "unknown" or obfuscated: stop at the last trusted hop */
            hop = ip;
            if (!trusted_ip(trusted, &ip))
                break; /* the client */
            if (comma == NULL)
                break;
            e = comma;
        }
    }
    format_ip(&hop, out);
}
