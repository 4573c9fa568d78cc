/* relay_dest.c: the operator's relay destinations file (relay_dest.h).
 * Strict on purpose: this file decides where card numbers may be sent, so
 * anything it does not understand is an error at start-up, never a guess. */
#include "cardvault/relay_dest.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cardvault/secbuf.h"

#define DEFAULT_MAX_REQUEST (64u * 1024)
#define DEFAULT_MAX_ANSWER  (1024u * 1024)
#define LIMIT_MAX_ANSWER    (8u * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS  15000u
#define DEFAULT_CONNECT_MS  5000u

static const struct {
    const char *name;
    unsigned bit;
} METHODS[] = {
    {"GET", CV_RELAY_METHOD_GET},       {"POST", CV_RELAY_METHOD_POST},
    {"PUT", CV_RELAY_METHOD_PUT},       {"PATCH", CV_RELAY_METHOD_PATCH},
    {"DELETE", CV_RELAY_METHOD_DELETE},
};

unsigned cv_relay_method_bit(const char *method)
{
    for (size_t i = 0; i < sizeof(METHODS) / sizeof(METHODS[0]); i++)
        if (strcmp(method, METHODS[i].name) == 0)
            return METHODS[i].bit;
    return 0;
}

static void dest_free(struct cv_relay_destination *d)
{
    free(d->url);
    free(d->host);
    for (size_t i = 0; i < d->n_paths; i++)
        free(d->paths[i]);
    free(d->ca_file);
    free(d->pin);
    free(d->client_cert);
    free(d->client_key);
    free(d->resolve);
    memset(d, 0, sizeof(*d));
}

void cv_relay_destinations_free(struct cv_relay_destinations *ds)
{
    if (ds == NULL)
        return;
    for (size_t i = 0; i < ds->n; i++)
        dest_free(&ds->v[i]);
    free(ds->v);
    ds->v = NULL;
    ds->n = 0;
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CV_RELAY_DEST_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* A DNS host name: labels of letters, digits and '-', the last one starting
 * with a letter. URL parsers (curl's, browsers') read a host whose labels are
 * all numbers as an IPv4 address, in decimal, octal or hex ("10.0.0.1",
 * "4294967295", "0x7f000001", "0x7f.0.0.1"); a last label that starts with a
 * letter is never such a number, and real top-level domains all do. */
static bool host_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    const char *last = h;
    for (size_t i = 0; i < n; i++)
        if (h[i] == '.')
            last = h + i + 1;
    if (last == h + n || !isalpha((unsigned char)*last))
        return false;
    bool letter = false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-') || ++label > 63)
            return false;
        if (isalpha(c))
            letter = true;
    }
    return label > 0 && letter;
}

/* Bytes a path may never hold anywhere: they could climb out of the listed
 * prefix once a server decodes or normalises them. */
static bool path_chars_ok(const char *p)
{
    if (p[0] != '/' || strstr(p, "..") != NULL || strstr(p, "//") != NULL)
        return false;
    for (const char *c = p; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;
        if (u <= 0x20 || u >= 0x7f || u == '\\' || u == '#')
            return false;
        if (u == '%') {
            /* %2f %5c %2e: an encoded slash, backslash or dot */
            if (c[1] == '\0' || c[2] == '\0')
                return false;
            char hex[3] = {c[1], c[2], '\0'};
            if (strcasecmp(hex, "2f") == 0 || strcasecmp(hex, "5c") == 0 ||
                strcasecmp(hex, "2e") == 0 || !isxdigit((unsigned char)c[1]) ||
                !isxdigit((unsigned char)c[2]))
                return false;
        }
    }
    return true;
}

/* https://host[:port][/base] -> url (no trailing slash), host, port. */
static bool url_ok(const char *url, struct cv_relay_destination *d)
{
    static const char scheme[] = "https://";
    size_t n = strlen(url);
    /* '@' nowhere: a reader that takes the URL for user@host must not find
     * another host in it than this parser did. */
    if (n > CV_RELAY_URL_MAX || strncmp(url, scheme, sizeof(scheme) - 1) != 0 ||
        strchr(url, '@') != NULL)
        return false;
    const char *h = url + sizeof(scheme) - 1;
    size_t hl = strcspn(h, ":/?#@[");
    if (!host_ok(h, hl))
        return false;
    const char *rest = h + hl;
    unsigned port = 443;
    if (*rest == ':') {
        char *end = NULL;
        errno = 0;
        unsigned long p = strtoul(rest + 1, &end, 10);
        if (errno != 0 || end == rest + 1 || p == 0 || p > 65535 ||
            !isdigit((unsigned char)rest[1]))
            return false;
        port = (unsigned)p;
        rest = end;
    }
    if (*rest != '\0' && *rest != '/')
        return false; /* userinfo, query, fragment, IPv6 literal */
    if (*rest == '/' && !path_chars_ok(rest))
        return false;
    if (strchr(rest, '?') != NULL)
        return false;
    d->host = cv_xmalloc(hl + 1);
    memcpy(d->host, h, hl);
    d->host[hl] = '\0';
    for (char *c = d->host; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    d->port = port;
    d->url = cv_xstrdup(url);
    size_t ul = strlen(d->url);
    while (ul > 0 && d->url[ul - 1] == '/')
        d->url[--ul] = '\0';
    return true;
}

/* An IPv4 or IPv6 address literal (for "resolve"). */
static bool address_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > 45)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isxdigit((unsigned char)a[i]) || a[i] == '.' || a[i] == ':'))
            return false;
    return true;
}

static bool pin_ok(const char *p)
{
    /* one or more sha256//BASE64 (44 characters), separated by ';' */
    while (*p != '\0') {
        if (strncmp(p, "sha256//", 8) != 0)
            return false;
        p += 8;
        size_t b = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
        if (b != 44)
            return false;
        p += b;
        if (*p == ';')
            p++;
        else if (*p != '\0')
            return false;
    }
    return true;
}

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, why_len, __VA_ARGS__);                                                       \
        return CV_ERR_CONFIG;                                                                      \
    } while (0)

static cv_status get_string(json_t *v, const char *dest, const char *field, char **out, char *why,
                            size_t why_len)
{
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        FAIL("relay destination %s: \"%s\" must be a non-empty string", dest, field);
    *out = cv_xstrdup(json_string_value(v));
    return CV_OK;
}

static cv_status get_uint(json_t *v, const char *dest, const char *field, unsigned long long lo,
                          unsigned long long hi, unsigned long long *out, char *why, size_t why_len)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (unsigned long long)json_integer_value(v) < lo ||
        (unsigned long long)json_integer_value(v) > hi)
        FAIL("relay destination %s: \"%s\" must be an integer from %llu to %llu", dest, field, lo,
             hi);
    *out = (unsigned long long)json_integer_value(v);
    return CV_OK;
}

static cv_status parse_one(json_t *o, size_t idx, struct cv_relay_destination *d, char *why,
                           size_t why_len)
{
    if (!json_is_object(o))
        FAIL("relay destination #%zu: must be an object", idx + 1);
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || !name_ok(json_string_value(name)))
        FAIL("relay destination #%zu: \"name\" must be 1 to %d of a-z 0-9 _ -", idx + 1,
             CV_RELAY_DEST_NAME_MAX);
    snprintf(d->name, sizeof(d->name), "%s", json_string_value(name));
    const char *n = d->name;
    d->max_request_bytes = DEFAULT_MAX_REQUEST;
    d->max_answer_bytes = DEFAULT_MAX_ANSWER;
    d->timeout_ms = DEFAULT_TIMEOUT_MS;
    d->connect_timeout_ms = DEFAULT_CONNECT_MS;
    bool have_url = false, have_methods = false, have_paths = false;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        unsigned long long u = 0;
        if (strcmp(key, "name") == 0)
            continue;
        if (strcmp(key, "url") == 0) {
            if (!json_is_string(v) || !url_ok(json_string_value(v), d))
                FAIL("relay destination %s: \"url\" must be https://HOST[:PORT][/PATH] with a DNS "
                     "host name (no IP literal, user, query or fragment)",
                     n);
            have_url = true;
        } else if (strcmp(key, "methods") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0)
                FAIL("relay destination %s: \"methods\" must be a non-empty array", n);
            size_t i;
            json_t *m;
            json_array_foreach(v, i, m)
            {
                unsigned bit = json_is_string(m) ? cv_relay_method_bit(json_string_value(m)) : 0;
                if (bit == 0)
                    FAIL("relay destination %s: \"methods\" holds one of GET, POST, PUT, PATCH, "
                         "DELETE",
                         n);
                d->methods |= bit;
            }
            have_methods = true;
        } else if (strcmp(key, "paths") == 0) {
            if (!json_is_array(v) || json_array_size(v) == 0 ||
                json_array_size(v) > CV_RELAY_PATHS_MAX)
                FAIL("relay destination %s: \"paths\" must be an array of 1 to %d path prefixes", n,
                     CV_RELAY_PATHS_MAX);
            size_t i;
            json_t *p;
            json_array_foreach(v, i, p)
            {
                if (!json_is_string(p) || !path_chars_ok(json_string_value(p)) ||
                    strchr(json_string_value(p), '?') != NULL ||
                    strlen(json_string_value(p)) > CV_RELAY_URL_MAX)
                    FAIL("relay destination %s: \"paths\"[%zu] must start with '/' and hold no "
                         "'..', '//', '?', '#', backslash, encoded slash or dot, or space",
                         n, i);
                d->paths[d->n_paths++] = cv_xstrdup(json_string_value(p));
            }
            have_paths = true;
        } else if (strcmp(key, "ca_file") == 0) {
            CV_TRY(get_string(v, n, key, &d->ca_file, why, why_len));
        } else if (strcmp(key, "pin") == 0) {
            CV_TRY(get_string(v, n, key, &d->pin, why, why_len));
            if (!pin_ok(d->pin))
                FAIL("relay destination %s: \"pin\" must be sha256//BASE64 of a public key "
                     "(several separated by ';')",
                     n);
        } else if (strcmp(key, "client_cert") == 0) {
            CV_TRY(get_string(v, n, key, &d->client_cert, why, why_len));
        } else if (strcmp(key, "client_key") == 0) {
            CV_TRY(get_string(v, n, key, &d->client_key, why, why_len));
        } else if (strcmp(key, "resolve") == 0) {
            CV_TRY(get_string(v, n, key, &d->resolve, why, why_len));
            if (!address_ok(d->resolve))
                FAIL("relay destination %s: \"resolve\" must be an IPv4 or IPv6 address", n);
        } else if (strcmp(key, "max_request_bytes") == 0) {
            CV_TRY(get_uint(v, n, key, 1, 1024 * 1024, &u, why, why_len));
            d->max_request_bytes = (size_t)u;
        } else if (strcmp(key, "max_answer_bytes") == 0) {
            CV_TRY(get_uint(v, n, key, 1, LIMIT_MAX_ANSWER, &u, why, why_len));
            d->max_answer_bytes = (size_t)u;
        } else if (strcmp(key, "timeout_ms") == 0) {
            CV_TRY(get_uint(v, n, key, 100, 120000, &u, why, why_len));
            d->timeout_ms = (unsigned)u;
        } else if (strcmp(key, "connect_timeout_ms") == 0) {
            CV_TRY(get_uint(v, n, key, 100, 60000, &u, why, why_len));
            d->connect_timeout_ms = (unsigned)u;
        } else {
            FAIL("relay destination %s: unknown field \"%.40s\"", n, key);
        }
    }
    if (!have_url || !have_methods || !have_paths)
        FAIL("relay destination %s: \"url\", \"methods\" and \"paths\" are required", n);
    if ((d->client_cert == NULL) != (d->client_key == NULL))
        FAIL("relay destination %s: \"client_cert\" and \"client_key\" go together", n);
    if (d->connect_timeout_ms > d->timeout_ms)
        d->connect_timeout_ms = d->timeout_ms;
    return CV_OK;
}

cv_status cv_relay_destinations_parse(const char *json, size_t len,
                                      struct cv_relay_destinations *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(why, why_len, "relay destinations: not valid JSON (line %d, column %d)", jerr.line,
                 jerr.column);
        return CV_ERR_CONFIG;
    }
    cv_status st = CV_OK;
    json_t *list = json_object_get(root, "destinations");
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(list) ||
        json_array_size(list) > CV_RELAY_DESTS_MAX) {
        snprintf(why, why_len,
                 "relay destinations: the file must be {\"destinations\": [...]} with at most %d",
                 CV_RELAY_DESTS_MAX);
        st = CV_ERR_CONFIG;
        goto done;
    }
    out->v = calloc(json_array_size(list) + 1, sizeof(*out->v));
    if (out->v == NULL) {
        st = CV_ERR_INTERNAL;
        goto done;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        struct cv_relay_destination *d = &out->v[out->n++];
        st = parse_one(json_array_get(list, i), i, d, why, why_len);
        if (st != CV_OK)
            goto done;
        for (size_t j = 0; j + 1 < out->n; j++)
            if (strcmp(out->v[j].name, d->name) == 0) {
                snprintf(why, why_len, "relay destination %s: listed twice", d->name);
                st = CV_ERR_CONFIG;
                goto done;
            }
    }
done:
    json_decref(root);
    if (st != CV_OK)
        cv_relay_destinations_free(out);
    return st;
}

cv_status cv_relay_destinations_load(const char *path, struct cv_relay_destinations *out, char *why,
                                     size_t why_len)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        char err[128];
        if (strerror_r(errno, err, sizeof(err)) != 0)
            snprintf(err, sizeof(err), "error %d", errno);
        snprintf(why, why_len, "relay destinations file %s: %s", path, err);
        return CV_ERR_CONFIG;
    }
    char *buf = cv_xmalloc(CV_RELAY_FILE_MAX + 1);
    size_t n = fread(buf, 1, CV_RELAY_FILE_MAX + 1, f);
    bool err = ferror(f) != 0;
    fclose(f);
    cv_status st;
    if (err) {
        snprintf(why, why_len, "relay destinations file %s: read error", path);
        st = CV_ERR_CONFIG;
    } else if (n > CV_RELAY_FILE_MAX) {
        snprintf(why, why_len, "relay destinations file %s: larger than %d bytes", path,
                 CV_RELAY_FILE_MAX);
        st = CV_ERR_CONFIG;
    } else {
        st = cv_relay_destinations_parse(buf, n, out, why, why_len);
    }
    free(buf);
    return st;
}

const struct cv_relay_destination *cv_relay_destinations_find(const struct cv_relay_destinations *d,
                                                              const char *name)
{
    if (d == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->v[i].name, name) == 0)
            return &d->v[i];
    return NULL;
}

cv_status cv_relay_destination_allows(const struct cv_relay_destination *d, const char *method,
                                      const char *path)
{
    unsigned bit = cv_relay_method_bit(method);
    if (bit == 0 || (d->methods & bit) == 0 || !path_chars_ok(path))
        return CV_ERR_RELAY_NOT_ALLOWED;
    size_t plen = strcspn(path, "?");
    for (size_t i = 0; i < d->n_paths; i++) {
        const char *pre = d->paths[i];
        size_t n = strlen(pre);
        if (plen < n || memcmp(path, pre, n) != 0)
            continue;
        if (plen == n || pre[n - 1] == '/' || path[n] == '/')
            return CV_OK;
    }
    return CV_ERR_RELAY_NOT_ALLOWED;
}
