#ifndef CV_CSV_H
#define CV_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"

/* A reader of CSV as RFC 4180 describes it (fields separated by commas,
 * records by CRLF or LF, double quotes around a field that holds a comma, a
 * quote or a line break, "" for a quote inside one), pulling bytes through a
 * callback. A UTF-8 byte order mark at the start is skipped. Records may hold
 * card numbers: the reader's buffers are wiped before reuse and on free, and
 * its error messages name a line and what is wrong, never a field's text. */

/* Reads up to cap bytes into buf: the count, 0 at the end, -1 on an error. */
typedef long (*cv_csv_read_fn)(void *ctx, void *buf, size_t cap);

/* One record: fields[i] points into the reader's buffer (NUL-terminated,
 * len[i] bytes; a field may hold NUL bytes of its own) until the next call. */
struct cv_csv_record {
    size_t nfields;
    char **fields;
    size_t *len;
    uint64_t line;     /* the physical line the record starts on (1-based) */
    bool utf8_invalid; /* some field is not valid UTF-8 (the record is still well-formed) */
};

struct cv_csv;

/* A reader over fn; a record longer than max_record_bytes is an error.
 * Free with cv_csv_free. */
struct cv_csv *cv_csv_new(cv_csv_read_fn fn, void *ctx, size_t max_record_bytes);
/* The next record into *rec: CV_OK, CV_ERR_NOT_FOUND at the end of the
 * input, or CV_ERR_BAD_REQUEST for malformed input (a quote inside an
 * unquoted field, text after a closing quote, a quoted field never closed, a
 * record past the size limit) or CV_ERR_IO when fn fails, with a reason
 * naming the line in why. After an error every later call fails the same
 * way: where the next record would start is no longer known. */
CV_MUST_USE cv_status cv_csv_next(struct cv_csv *r, struct cv_csv_record *rec, char *why,
                                  size_t why_len);
/* Wipes every buffer and frees; accepts NULL. */
void cv_csv_free(struct cv_csv *r);

#endif
