/* fuzz_pan_scan.c: the scanner (pan_scan.c) with every reader on (UTF-8,
 * JSON and URL escapes, full-width digits, UTF-16, base64, security-code
 * keys, the issuer check) on raw bytes. The input is scanned whole and in
 * chunks of the size the first byte picks, and both must report the same
 * hits (kind, offsets, masked sample, encoding); every hit lies inside the
 * stream, and no masked sample shows more than 10 digits (BIN and last 4 at
 * most) or a security code. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/pan_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_pan_scan invariant broken: %s\n", why);
    abort();
}

#define MAX_HITS 64

struct hits {
    struct cv_pan_hit v[MAX_HITS];
    size_t n;
    uint64_t len;
};

static void keep(void *ctx, const struct cv_pan_hit *hit)
{
    struct hits *h = ctx;
    if (hit->end <= hit->offset || hit->end > h->len)
        fail("hit outside the stream");
    size_t shown = 0;
    for (const char *p = hit->masked; *p; p++)
        if (*p != '*')
            shown++;
    if (shown > 10 || (hit->kind == CV_PAN_HIT_CVC && shown > 0))
        fail("a sample shows too much");
    if (h->n < MAX_HITS)
        h->v[h->n] = *hit;
    h->n++;
}

static void scan(const uint8_t *d, size_t len, size_t step, unsigned mode, struct hits *h)
{
    memset(h, 0, sizeof(*h));
    h->len = len;
    struct cv_pan_scan *s = cv_pan_scan_new(mode, keep, h);
    for (size_t i = 0; i < len; i += step)
        cv_pan_scan_feed(s, d + i, len - i < step ? len - i : step);
    cv_pan_scan_finish(s);
    cv_pan_scan_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = (data[0] & 1 ? CV_PAN_SCAN_BYTES : CV_PAN_SCAN_TEXT) | CV_PAN_SCAN_BASE64 |
                    CV_PAN_SCAN_CVC_KEYS | (data[0] & 2 ? CV_PAN_SCAN_ISSUER : 0);
    size_t step = 1 + (data[0] >> 2);
    static struct hits whole, cut;
    scan(data + 1, size - 1, size, mode, &whole);
    scan(data + 1, size - 1, step, mode, &cut);
    if (whole.n != cut.n)
        fail("chunking changed the number of hits");
    for (size_t i = 0; i < whole.n && i < MAX_HITS; i++)
        if (whole.v[i].kind != cut.v[i].kind || whole.v[i].offset != cut.v[i].offset ||
            whole.v[i].end != cut.v[i].end || strcmp(whole.v[i].masked, cut.v[i].masked) != 0 ||
            strcmp(whole.v[i].encoding, cut.v[i].encoding) != 0)
            fail("chunking changed a hit");
    return 0;
}
