/* origin.c: web origins, parsed strictly and kept in the one form browsers
 * serialize (RFC 6454 section 6.1), so that binding a publishable key to a
 * shop and checking a frame's parent are plain string comparisons. It must
 * stay pure: no allocation, no I/O, no log; every input is outside input. */
#include "cardvault/origin.h"

#include <stdio.h>
#include <string.h>

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* True when s starts with the lower-case literal lit (n bytes), ignoring case. */
static bool starts_with_ci(const char *s, size_t len, const char *lit, size_t n)
{
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s[i]) != lit[i])
            return false;
    return true;
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A DNS name: dot-separated labels of 1-63 letters, digits and inner
 * hyphens; no empty label, so no trailing dot. */
static bool dns_name_ok(const char *h, size_t n)
{
    size_t label = 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!is_alpha(c) && !is_digit(c) && c != '-')
            return false;
        if (c == '-' && label == 0)
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && h[n - 1] != '-';
}

/* A bracketed IPv6 literal: hex digits, colons and dots (an embedded IPv4
 * tail), at least two colons. Not a full RFC 4291 grammar: the browser's own
 * serialization is what the list is compared with, and nothing here can
 * carry a path, a user or a quote. */
static bool ipv6_literal_ok(const char *h, size_t n)
{
    size_t colons = 0;
    if (n < 4 || n > 47 || h[0] != '[' || h[n - 1] != ']')
        return false;
    for (size_t i = 1; i + 1 < n; i++) {
        if (h[i] == ':')
            colons++;
        else if (!is_hex(h[i]) && h[i] != '.')
            return false;
    }
    return colons >= 2;
}

cv_status cv_origin_normalize(const char *in, size_t len, char out[CV_ORIGIN_MAX + 1])
{
    if (in == NULL)
        return CV_ERR_BAD_REQUEST;
    bool https = starts_with_ci(in, len, "https://", 8);
    if (!https && !starts_with_ci(in, len, "http://", 7))
        return CV_ERR_BAD_REQUEST;
    size_t scheme_len = https ? 8 : 7;
    const char *auth = in + scheme_len;
    size_t n = len - scheme_len;
    /* host ends at the last ':' outside brackets, or the end */
    size_t host_len = n;
    const char *port = NULL;
    size_t port_len = 0;
    if (n > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', n);
        if (close == NULL)
            return CV_ERR_BAD_REQUEST;
        host_len = (size_t)(close - auth) + 1;
    } else {
        const char *colon = memchr(auth, ':', n);
        if (colon != NULL)
            host_len = (size_t)(colon - auth);
    }
    if (host_len < n) {
        if (auth[host_len] != ':')
            return CV_ERR_BAD_REQUEST;
        port = auth + host_len + 1;
        port_len = n - host_len - 1;
    }
    bool v6 = host_len > 0 && auth[0] == '[';
    if (v6 ? !ipv6_literal_ok(auth, host_len) : !dns_name_ok(auth, host_len))
        return CV_ERR_BAD_REQUEST;
    unsigned long port_num = 0;
    if (port != NULL) {
        if (port_len == 0 || port_len > 5)
            return CV_ERR_BAD_REQUEST;
        for (size_t i = 0; i < port_len; i++) {
            if (!is_digit(port[i]))
                return CV_ERR_BAD_REQUEST;
            port_num = port_num * 10 + (unsigned long)(port[i] - '0');
        }
        if (port_num == 0 || port_num > 65535)
            return CV_ERR_BAD_REQUEST;
        if (port_num == (https ? 443u : 80u))
            port_num = 0; /* the default port is not part of the serialization */
    }
    char host[256];
    for (size_t i = 0; i < host_len; i++)
        host[i] = lower(auth[i]);
    host[host_len] = '\0';
    int w = port_num != 0
                ? snprintf(out, CV_ORIGIN_MAX + 1, "%s://%s:%lu", https ? "https" : "http", host,
                           port_num)
                : snprintf(out, CV_ORIGIN_MAX + 1, "%s://%s", https ? "https" : "http", host);
    if (w < 0 || w > CV_ORIGIN_MAX) {
        out[0] = '\0';
        return CV_ERR_BAD_REQUEST;
    }
    return CV_OK;
}

bool cv_origin_is_canonical(const char *in, size_t len)
{
    char norm[CV_ORIGIN_MAX + 1];
    if (cv_origin_normalize(in, len, norm) != CV_OK)
        return false;
    return strlen(norm) == len && memcmp(norm, in, len) == 0;
}

/* The host part of a normalized origin: after "://", before a port. */
static void host_of(const char *origin, const char **host, size_t *len)
{
    const char *h = strstr(origin, "://");
    h = h != NULL ? h + 3 : origin;
    size_t n = strlen(h);
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        n = close != NULL ? (size_t)(close - h) + 1 : n;
    } else {
        n = strcspn(h, ":");
    }
    *host = h;
    *len = n;
}

bool cv_origin_is_bindable(const char *origin)
{
    if (strncmp(origin, "https://", 8) == 0)
        return true;
    if (strncmp(origin, "http://", 7) != 0)
        return false;
    const char *h;
    size_t n;
    host_of(origin, &h, &n);
    if ((n == 9 && memcmp(h, "localhost", 9) == 0) || (n == 5 && memcmp(h, "[::1]", 5) == 0))
        return true;
    /* 127.0.0.0/8, written as a dotted quad */
    if (n < 9 || memcmp(h, "127.", 4) != 0)
        return false;
    unsigned parts = 2, digits = 0, value = 0; /* "127" and the part being read */
    for (size_t i = 4; i < n; i++) {
        if (h[i] == '.') {
            if (digits == 0)
                return false;
            parts++;
            digits = 0;
            value = 0;
            continue;
        }
        if (!is_digit(h[i]) || ++digits > 3)
            return false;
        value = value * 10 + (unsigned)(h[i] - '0');
        if (value > 255)
            return false;
    }
    return parts == 4 && digits > 0;
}

cv_status cv_origin_list_parse(const char *csv, char out[CV_ORIGIN_LIST_MAX + 1])
{
    size_t w = 0, count = 0;
    out[0] = '\0';
    if (csv == NULL)
        return CV_ERR_BAD_REQUEST;
    const char *p = csv;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return CV_OK; /* the empty list */
    for (;;) {
        size_t n = strcspn(p, ",");
        size_t a = 0, b = n;
        while (a < b && (p[a] == ' ' || p[a] == '\t'))
            a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
            b--;
        char one[CV_ORIGIN_MAX + 1];
        if (b == a || cv_origin_normalize(p + a, b - a, one) != CV_OK ||
            !cv_origin_is_bindable(one) || count == CV_ORIGINS_MAX)
            goto bad;
        if (!cv_origin_list_contains(out, one)) {
            size_t m = strlen(one);
            if (w + (w > 0 ? 1 : 0) + m > CV_ORIGIN_LIST_MAX)
                goto bad;
            if (w > 0)
                out[w++] = ',';
            memcpy(out + w, one, m);
            w += m;
            out[w] = '\0';
            count++;
        }
        if (p[n] == '\0')
            return CV_OK;
        p += n + 1;
    }
bad:
    out[0] = '\0';
    return CV_ERR_BAD_REQUEST;
}

bool cv_origin_list_contains(const char *list, const char *origin)
{
    size_t m = strlen(origin);
    if (m == 0)
        return false;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == m && memcmp(p, origin, m) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

cv_status cv_origin_from_host(bool https, const char *host, char out[CV_ORIGIN_MAX + 1])
{
    char buf[CV_ORIGIN_MAX + 16];
    out[0] = '\0';
    if (host == NULL || host[0] == '\0' || strlen(host) > CV_ORIGIN_MAX)
        return CV_ERR_BAD_REQUEST;
    int w = snprintf(buf, sizeof(buf), "%s://%s", https ? "https" : "http", host);
    if (w < 0 || (size_t)w >= sizeof(buf))
        return CV_ERR_BAD_REQUEST;
    return cv_origin_normalize(buf, (size_t)w, out);
}
