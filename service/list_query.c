/* list_query.c: the query string of GET /v1/tokens, read strictly (an
 * unknown, repeated or malformed parameter is an error: a typo such as
 * "fingerprnt" must not silently list every token), and the opaque cursor
 * that continues a list. Pure: it allocates nothing, logs nothing, and never
 * copies a value it refused. */
#include "cardvault/list_query.h"

#include <stdio.h>
#include <string.h>

#include "cardvault/metadata.h"
#include "cardvault/token.h"

#define SEEN_LIMIT       (1u << 0)
#define SEEN_CURSOR      (1u << 1)
#define SEEN_FINGERPRINT (1u << 2)
#define SEEN_CREATED_GTE (1u << 3)
#define SEEN_CREATED_LT  (1u << 4)
#define SEEN_METADATA    (1u << 5)

/* 9999-12-31T23:59:59Z: PostgreSQL's to_timestamp goes further, nothing we store does. */
#define CREATED_MAX   253402300799LL
#define CURSOR_PREFIX "cur_"

void cv_list_query_init(struct cv_list_req *q)
{
    memset(q, 0, sizeof(*q));
    q->limit = CV_LIST_LIMIT_DEFAULT;
}

/* A decimal of 1 to max_digits digits, no sign, no leading zero (except "0"). */
static bool parse_decimal(const char *s, size_t max_digits, long long *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > max_digits || (n > 1 && s[0] == '0'))
        return false;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static cv_status fail(struct cv_list_req *q, cv_status st)
{
    q->error = st;
    return st;
}

/* metadata[KEY]: the key between the brackets, nothing after them. */
static cv_status add_metadata(struct cv_list_req *q, const char *name, const char *value)
{
    size_t n = strlen(name);
    const char *key = name + strlen("metadata[");
    if (n < strlen("metadata[]") || name[n - 1] != ']')
        return fail(q, CV_ERR_INVALID_LIST_QUERY);
    size_t klen = n - strlen("metadata[]");
    size_t vlen = strlen(value);
    if (klen > CV_META_KEY_MAX || cv_metadata_check_key(key, klen) != CV_OK ||
        vlen > CV_META_VALUE_MAX)
        return fail(q, CV_ERR_INVALID_LIST_QUERY);
    memcpy(q->meta_key, key, klen);
    q->meta_key[klen] = '\0';
    memcpy(q->meta_value, value, vlen);
    q->meta_value[vlen] = '\0';
    return CV_OK;
}

cv_status cv_list_query_add(struct cv_list_req *q, const char *name, const char *value)
{
    unsigned bit = 0;
    if (q->error != CV_OK)
        return q->error;
    if (name == NULL)
        return fail(q, CV_ERR_INVALID_LIST_QUERY);
    if (strcmp(name, "limit") == 0)
        bit = SEEN_LIMIT;
    else if (strcmp(name, "cursor") == 0)
        bit = SEEN_CURSOR;
    else if (strcmp(name, "fingerprint") == 0)
        bit = SEEN_FINGERPRINT;
    else if (strcmp(name, "created[gte]") == 0)
        bit = SEEN_CREATED_GTE;
    else if (strcmp(name, "created[lt]") == 0)
        bit = SEEN_CREATED_LT;
    else if (strncmp(name, "metadata[", strlen("metadata[")) == 0)
        bit = SEEN_METADATA; /* one metadata filter, whatever its key */
    if (bit == 0 || (q->seen & bit) != 0 || value == NULL)
        return fail(q, CV_ERR_INVALID_LIST_QUERY);
    q->seen |= bit;
    long long v = 0;
    switch (bit) {
    case SEEN_LIMIT:
        if (!parse_decimal(value, 3, &v) || v < 1 || v > CV_LIST_LIMIT_MAX)
            return fail(q, CV_ERR_INVALID_LIST_QUERY);
        q->limit = (unsigned)v;
        return CV_OK;
    case SEEN_CURSOR:
        if (cv_list_cursor_decode(value, strlen(value), &q->after_created_us, q->after_token) !=
            CV_OK)
            return fail(q, CV_ERR_INVALID_CURSOR);
        q->has_cursor = true;
        return CV_OK;
    case SEEN_FINGERPRINT:
        if (!cv_token_fingerprint_is_valid(value, strlen(value)))
            return fail(q, CV_ERR_INVALID_LIST_QUERY);
        memcpy(q->fingerprint, value, CV_FINGERPRINT_LEN + 1);
        return CV_OK;
    case SEEN_CREATED_GTE:
    case SEEN_CREATED_LT:
        if (!parse_decimal(value, 12, &v) || v > CREATED_MAX)
            return fail(q, CV_ERR_INVALID_LIST_QUERY);
        if (bit == SEEN_CREATED_GTE) {
            q->has_created_gte = true;
            q->created_gte = v;
        } else {
            q->has_created_lt = true;
            q->created_lt = v;
        }
        return CV_OK;
    default:
        return add_metadata(q, name, value);
    }
}

cv_status cv_list_query_finish(const struct cv_list_req *q)
{
    return q->error;
}

bool cv_list_cursor_encode(int64_t created_us, const char *token, char out[CV_LIST_CURSOR_LEN + 1])
{
    out[0] = '\0';
    if (created_us < 0 || token == NULL || !cv_token_is_valid(token, strlen(token)))
        return false;
    snprintf(out, CV_LIST_CURSOR_LEN + 1, CURSOR_PREFIX "%016llx%s", (unsigned long long)created_us,
             token + strlen(CV_TOKEN_PREFIX));
    return true;
}

cv_status cv_list_cursor_decode(const char *s, size_t len, int64_t *created_us,
                                char token[CV_TOKEN_LEN + 1])
{
    const size_t pre = strlen(CURSOR_PREFIX);
    if (len != CV_LIST_CURSOR_LEN || memcmp(s, CURSOR_PREFIX, pre) != 0)
        return CV_ERR_INVALID_CURSOR;
    unsigned long long v = 0;
    for (size_t i = pre; i < pre + 16; i++) {
        int h = cv_hex_value((unsigned char)s[i]);
        if (h < 0 || (s[i] >= 'A' && s[i] <= 'F')) /* lowercase only: one spelling per cursor */
            return CV_ERR_INVALID_CURSOR;
        v = v * 16 + (unsigned)h;
    }
    if (v > (unsigned long long)CREATED_MAX * 1000000ULL + 999999ULL)
        return CV_ERR_INVALID_CURSOR;
    char t[CV_TOKEN_LEN + 1];
    memcpy(t, CV_TOKEN_PREFIX, strlen(CV_TOKEN_PREFIX));
    memcpy(t + strlen(CV_TOKEN_PREFIX), s + pre + 16, CV_TOKEN_RANDOM_CHARS);
    t[CV_TOKEN_LEN] = '\0';
    if (!cv_token_is_valid(t, CV_TOKEN_LEN))
        return CV_ERR_INVALID_CURSOR;
    *created_us = (int64_t)v;
    memcpy(token, t, sizeof(t));
    return CV_OK;
}
