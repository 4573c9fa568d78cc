/* fuzz_csv.c: the CSV reader (csv.c) on raw bytes. The first byte picks the
 * read chunk size and the record limit; the input is read twice, once a few
 * bytes at a time and once whole, and both readings must agree: the same
 * records (fields and lengths), the same line numbers, the same final status
 * and the same error text. Every field lies inside the record limit, and a
 * reader that failed keeps failing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_csv invariant broken: %s\n", why);
    abort();
}

struct src {
    const uint8_t *d;
    size_t len, pos, step;
};

static long read_src(void *ctx, void *buf, size_t cap)
{
    struct src *s = ctx;
    size_t n = s->len - s->pos;
    if (n > cap)
        n = cap;
    if (n > s->step)
        n = s->step;
    memcpy(buf, s->d + s->pos, n);
    s->pos += n;
    return (long)n;
}

/* A digest of everything the reader returned (FNV-1a over fields, lengths,
 * lines, statuses and error text). */
static uint64_t read_all(const uint8_t *d, size_t len, size_t step, size_t max, cv_status *last)
{
    struct src s = {d, len, 0, step};
    struct cv_csv *r = cv_csv_new(read_src, &s, max);
    struct cv_csv_record rec;
    char why[200];
    uint64_t h = 1469598103934665603u;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211u)
    for (int guard = 0; guard < 100000; guard++) {
        why[0] = '\0';
        cv_status st = cv_csv_next(r, &rec, why, sizeof(why));
        MIX(st);
        *last = st;
        if (st != CV_OK) {
            for (const char *p = why; *p; p++)
                MIX((unsigned char)*p);
            cv_status again = cv_csv_next(r, &rec, why, sizeof(why));
            if (again != st)
                fail("a finished reader changed its answer");
            break;
        }
        size_t total = 0;
        MIX(rec.nfields);
        MIX(rec.line);
        MIX(rec.utf8_invalid);
        for (size_t i = 0; i < rec.nfields; i++) {
            total += rec.len[i] + 1;
            if (rec.fields[i][rec.len[i]] != '\0')
                fail("field not NUL-terminated");
            MIX(rec.len[i]);
            for (size_t k = 0; k < rec.len[i]; k++)
                MIX((unsigned char)rec.fields[i][k]);
        }
        if (total > max + 1)
            fail("record past the limit");
    }
    cv_csv_free(r);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + (data[0] & 7);
    size_t max = (data[0] & 0x80) ? 64 : 4096;
    cv_status a = CV_OK, b = CV_OK;
    uint64_t x = read_all(data + 1, size - 1, step, max, &a);
    uint64_t y = read_all(data + 1, size - 1, 1u << 20, max, &b);
    if (x != y || a != b)
        fail("chunked and whole readings differ");
    return 0;
}
