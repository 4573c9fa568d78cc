#ifndef CV_BUF_H
#define CV_BUF_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* A growable byte buffer with a hard size cap, for every text the service
 * produces (log lines, metrics pages, SQL array literals, audit JSON).
 * Errors are sticky: once an append fails (the cap would be passed), every
 * later append fails too and cv_buf_take returns NULL, so a producer can
 * append a whole document and check once at the end. The content is always
 * NUL-terminated. cv_buf_cleanup wipes before it frees, so a buffer may
 * carry hashes or other sensitive, non-card material. */
struct cv_buf {
    char *data; /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t max_bytes; /* content never grows past this (the NUL excluded) */
    bool failed;
};

/* Prepares an empty buffer whose content may grow to max_bytes. */
void cv_buf_init(struct cv_buf *b, size_t max_bytes);
/* Wipes and frees the content; the buffer is empty again. Accepts NULL. */
void cv_buf_cleanup(struct cv_buf *b);
/* Empties the buffer but keeps its memory (and its cap). Clears a failure. */
void cv_buf_reset(struct cv_buf *b);

/* Appends n bytes. CV_ERR_BODY_TOO_LARGE when max_bytes would be passed. */
CV_MUST_USE cv_status cv_buf_append(struct cv_buf *b, const void *p, size_t n);
CV_MUST_USE cv_status cv_buf_append_str(struct cv_buf *b, const char *s);
CV_MUST_USE cv_status cv_buf_append_char(struct cv_buf *b, char c);
/* printf-style append. */
CV_MUST_USE cv_status cv_buf_appendf(struct cv_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes included). Control bytes are
 * escaped and bytes that are not valid UTF-8 become U+FFFD, so the output is
 * always valid UTF-8 JSON whatever a client sent. */
CV_MUST_USE cv_status cv_buf_append_json_string(struct cv_buf *b, const char *s, size_t n);

/* True when the n bytes at p are well-formed UTF-8 (RFC 3629: no overlongs,
 * surrogates or code points past U+10FFFF). */
bool cv_utf8_valid(const void *p, size_t n);

/* True when an append failed since the last init or reset. */
bool cv_buf_failed(const struct cv_buf *b);
/* Hands the content over (heap, NUL-terminated, caller frees with free());
 * *len (optional) gets its length. The buffer is left empty. NULL when an
 * append failed; the buffer is then cleaned up. An empty buffer gives "". */
char *cv_buf_take(struct cv_buf *b, size_t *len);

#endif
