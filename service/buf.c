/* buf.c: the one growable buffer. It grows by doubling up to its cap and
 * never past it; it owns no other memory and knows nothing of what it holds.
 * It must never reallocate without wiping the old block: callers put keyed
 * hashes and response bodies in it. */
#include "cardvault/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"

void cv_buf_init(struct cv_buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
    b->failed = false;
}

void cv_buf_cleanup(struct cv_buf *b)
{
    if (b == NULL)
        return;
    if (b->data != NULL) {
        cv_wipe(b->data, b->cap);
        free(b->data);
    }
    cv_buf_init(b, b->max_bytes);
}

void cv_buf_reset(struct cv_buf *b)
{
    if (b->data != NULL) {
        cv_wipe(b->data, b->len);
        b->data[0] = '\0';
    }
    b->len = 0;
    b->failed = false;
}

bool cv_buf_failed(const struct cv_buf *b)
{
    return b->failed;
}

/* Makes room for `extra` more bytes plus the NUL, or fails for good. */
static cv_status reserve(struct cv_buf *b, size_t extra)
{
    if (b->failed)
        return CV_ERR_BODY_TOO_LARGE;
    if (extra > b->max_bytes - b->len) {
        b->failed = true;
        return CV_ERR_BODY_TOO_LARGE;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return CV_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max_bytes + 1)
        cap = b->max_bytes + 1;
    char *p = cv_xmalloc(cap);
    if (b->data != NULL) {
        memcpy(p, b->data, b->len);
        cv_wipe(b->data, b->cap);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    return CV_OK;
}

cv_status cv_buf_append(struct cv_buf *b, const void *p, size_t n)
{
    CV_TRY(reserve(b, n));
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return CV_OK;
}

cv_status cv_buf_append_str(struct cv_buf *b, const char *s)
{
    return cv_buf_append(b, s, strlen(s));
}

cv_status cv_buf_append_char(struct cv_buf *b, char c)
{
    return cv_buf_append(b, &c, 1);
}

cv_status cv_buf_appendf(struct cv_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return CV_ERR_INTERNAL;
    }
    CV_TRY(reserve(b, (size_t)n));
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CV_OK;
}

/* Length of the well-formed UTF-8 sequence at s (1-4), or 0 when the bytes
 * there are not one (overlongs and surrogates included, per RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

cv_status cv_buf_append_json_string(struct cv_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    CV_TRY(cv_buf_append_char(b, '"'));
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one append: log
         * lines are on every request's path. */
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x7F && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            CV_TRY(cv_buf_append(b, u + i, run - i));
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            CV_TRY(cv_buf_append(b, esc, 2));
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            CV_TRY(cv_buf_append(b, esc, 6));
            i++;
        } else {
            size_t len = utf8_seq_len(u + i, n - i);
            if (len == 0) {
                CV_TRY(cv_buf_append(b, "\xEF\xBF\xBD", 3)); /* U+FFFD */
                i++;
            } else {
                CV_TRY(cv_buf_append(b, u + i, len));
                i += len;
            }
        }
    }
    return cv_buf_append_char(b, '"');
}

char *cv_buf_take(struct cv_buf *b, size_t *len)
{
    if (b->failed) {
        cv_buf_cleanup(b);
        if (len != NULL)
            *len = 0;
        return NULL;
    }
    char *out = b->data != NULL ? b->data : cv_xstrdup("");
    if (len != NULL)
        *len = b->len;
    cv_buf_init(b, b->max_bytes);
    return out;
}

bool cv_utf8_valid(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}
