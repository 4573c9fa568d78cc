/* csv.c: the CSV reader behind `cardvault import` (RFC 4180). A small state
 * machine over bytes pulled through a callback, one record at a time into a
 * capped buffer. The records are a shop's stored cards: every buffer is
 * wiped before it is reused or freed, and no error message quotes input
 * (only line numbers and what is wrong). It never allocates past the record
 * limit the caller set, whatever the input. */
#include "cardvault/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/buf.h"
#include "cardvault/secbuf.h"

#define READ_CHUNK 65536
#define MAX_FIELDS 4096

enum state { FIELD_START, UNQUOTED, QUOTED, QUOTE_IN_QUOTED };

struct cv_csv {
    cv_csv_read_fn fn;
    void *ctx;
    size_t max_record;
    unsigned char in[READ_CHUNK];
    size_t in_len, in_pos;
    bool eof, failed, started, pending_cr;
    cv_status fail_st;
    uint64_t line; /* physical line of the next byte */
    /* the record being built: field bytes, each followed by a NUL */
    char *rec;
    size_t rec_len, rec_cap;
    size_t *starts; /* offset of each field in rec */
    size_t *lens;
    char **ptrs;
    size_t nfields, fields_cap;
};

struct cv_csv *cv_csv_new(cv_csv_read_fn fn, void *ctx, size_t max_record_bytes)
{
    struct cv_csv *r = cv_xcalloc(1, sizeof(*r));
    r->fn = fn;
    r->ctx = ctx;
    r->max_record = max_record_bytes;
    r->line = 1;
    return r;
}

void cv_csv_free(struct cv_csv *r)
{
    if (r == NULL)
        return;
    if (r->rec != NULL)
        cv_wipe(r->rec, r->rec_cap);
    free(r->rec);
    free(r->starts);
    free(r->lens);
    free(r->ptrs);
    cv_wipe(r, sizeof(*r));
    free(r);
}

static cv_status fail(struct cv_csv *r, cv_status st, char *why, size_t why_len, uint64_t line,
                      const char *msg)
{
    r->failed = true;
    r->fail_st = st;
    snprintf(why, why_len, "line %llu: %s", (unsigned long long)line, msg);
    return st;
}

/* Grows the record buffer to hold `more` bytes; false past the limit. */
static bool reserve(struct cv_csv *r, size_t more)
{
    if (r->rec_len + more > r->max_record + 1)
        return false;
    if (r->rec_len + more <= r->rec_cap)
        return true;
    size_t cap = r->rec_cap ? r->rec_cap : 256;
    while (cap < r->rec_len + more)
        cap *= 2;
    if (cap > r->max_record + 1)
        cap = r->max_record + 1;
    char *n = cv_xmalloc(cap);
    if (r->rec_len > 0)
        memcpy(n, r->rec, r->rec_len);
    if (r->rec != NULL)
        cv_wipe(r->rec, r->rec_cap); /* the old copy held the same card data */
    free(r->rec);
    r->rec = n;
    r->rec_cap = cap;
    return true;
}

static bool put(struct cv_csv *r, unsigned char c)
{
    if (!reserve(r, 1))
        return false;
    r->rec[r->rec_len++] = (char)c;
    return true;
}

static bool start_field(struct cv_csv *r)
{
    if (r->nfields == MAX_FIELDS)
        return false;
    if (r->nfields == r->fields_cap) {
        size_t cap = r->fields_cap ? 2 * r->fields_cap : 16;
        size_t *s = cv_xcalloc(cap, sizeof(*s));
        size_t *l = cv_xcalloc(cap, sizeof(*l));
        char **p = cv_xcalloc(cap, sizeof(*p));
        if (r->nfields > 0) {
            memcpy(s, r->starts, r->nfields * sizeof(*s));
            memcpy(l, r->lens, r->nfields * sizeof(*l));
        }
        free(r->starts);
        free(r->lens);
        free(r->ptrs);
        r->starts = s;
        r->lens = l;
        r->ptrs = p;
        r->fields_cap = cap;
    }
    r->starts[r->nfields++] = r->rec_len;
    return true;
}

static bool end_field(struct cv_csv *r)
{
    r->lens[r->nfields - 1] = r->rec_len - r->starts[r->nfields - 1];
    return put(r, '\0');
}

static void reset_record(struct cv_csv *r)
{
    if (r->rec != NULL)
        cv_wipe(r->rec, r->rec_len);
    r->rec_len = 0;
    r->nfields = 0;
}

/* The next input byte, or -1 at the end (-2 on a read error). */
static int next_byte(struct cv_csv *r)
{
    while (r->in_pos == r->in_len) {
        if (r->eof)
            return -1;
        cv_wipe(r->in, r->in_len);
        r->in_len = 0;
        r->in_pos = 0;
        /* The first read gathers at least 3 bytes: a byte order mark may
         * arrive a byte at a time. */
        do {
            long n = r->fn(r->ctx, r->in + r->in_len, sizeof(r->in) - r->in_len);
            if (n < 0)
                return -2;
            if (n == 0)
                r->eof = true;
            r->in_len += (size_t)n;
        } while (!r->started && !r->eof && r->in_len < 3);
        if (!r->started) {
            r->started = true;
            if (r->in_len >= 3 && memcmp(r->in, "\xEF\xBB\xBF", 3) == 0)
                r->in_pos = 3;
        }
        if (r->in_pos == r->in_len && r->eof)
            return -1;
    }
    return r->in[r->in_pos++];
}

static void fill(struct cv_csv *r, struct cv_csv_record *rec, uint64_t line)
{
    rec->nfields = r->nfields;
    rec->line = line;
    rec->utf8_invalid = false;
    for (size_t i = 0; i < r->nfields; i++) {
        r->ptrs[i] = r->rec + r->starts[i];
        if (!cv_utf8_valid(r->ptrs[i], r->lens[i]))
            rec->utf8_invalid = true;
    }
    rec->fields = r->ptrs;
    rec->len = r->lens;
}

cv_status cv_csv_next(struct cv_csv *r, struct cv_csv_record *rec, char *why, size_t why_len)
{
    memset(rec, 0, sizeof(*rec));
    if (r->failed) {
        snprintf(why, why_len, "the CSV input could not be read past an earlier error");
        return r->fail_st;
    }
    reset_record(r);
    enum state s = FIELD_START;
    uint64_t line = r->line, quote_line = 0;
    bool any = false;
    for (;;) {
        int c = next_byte(r);
        if (c == -2)
            return fail(r, CV_ERR_IO, why, why_len, r->line, "cannot read the CSV input");
        if (r->pending_cr) {
            r->pending_cr = false;
            if (c == '\n')
                continue; /* CRLF: the record already ended at the CR */
        }
        if (c == -1) {
            if (s == QUOTED)
                return fail(r, CV_ERR_BAD_REQUEST, why, why_len, quote_line,
                            "a quoted field is never closed (the input ends inside it)");
            if (!any)
                return CV_ERR_NOT_FOUND;
            if (s != FIELD_START || r->nfields > 0) {
                if (s == FIELD_START && !start_field(r))
                    goto too_many;
                if (!end_field(r))
                    goto too_long;
            }
            fill(r, rec, line);
            return CV_OK;
        }
        if (!any && (c == '\n' || c == '\r') && s == FIELD_START && r->nfields == 0) {
            /* a blank line is not a record */
            r->line++;
            line = r->line;
            r->pending_cr = c == '\r';
            continue;
        }
        any = true;
        switch (s) {
        case FIELD_START:
        case UNQUOTED:
            if (s == FIELD_START) {
                if (!start_field(r))
                    goto too_many;
                if (c == '"') {
                    s = QUOTED;
                    quote_line = r->line;
                    break;
                }
            }
            if (c == ',') {
                if (!end_field(r))
                    goto too_long;
                s = FIELD_START;
            } else if (c == '\n' || c == '\r') {
                if (!end_field(r))
                    goto too_long;
                r->line++;
                r->pending_cr = c == '\r';
                fill(r, rec, line);
                return CV_OK;
            } else if (c == '"') {
                return fail(r, CV_ERR_BAD_REQUEST, why, why_len, r->line,
                            "a double quote inside an unquoted field (RFC 4180: quote "
                            "the whole field and double the quote)");
            } else {
                s = UNQUOTED;
                if (!put(r, (unsigned char)c))
                    goto too_long;
            }
            break;
        case QUOTED:
            if (c == '"') {
                s = QUOTE_IN_QUOTED;
                break;
            }
            if (c == '\n')
                r->line++;
            if (!put(r, (unsigned char)c))
                goto too_long;
            break;
        case QUOTE_IN_QUOTED:
            if (c == '"') {
                s = QUOTED;
                if (!put(r, '"'))
                    goto too_long;
            } else if (c == ',') {
                if (!end_field(r))
                    goto too_long;
                s = FIELD_START;
            } else if (c == '\n' || c == '\r') {
                if (!end_field(r))
                    goto too_long;
                r->line++;
                r->pending_cr = c == '\r';
                fill(r, rec, line);
                return CV_OK;
            } else {
                return fail(r, CV_ERR_BAD_REQUEST, why, why_len, r->line,
                            "text after the closing quote of a field (RFC 4180: a "
                            "quoted field ends at a comma or the end of the line)");
            }
            break;
        }
    }
too_long:
    reset_record(r);
    return fail(r, CV_ERR_BAD_REQUEST, why, why_len, line,
                "the record is longer than the 1 MiB limit (a closing quote missing?)");
too_many:
    reset_record(r);
    return fail(r, CV_ERR_BAD_REQUEST, why, why_len, line, "more than 4096 fields");
}
