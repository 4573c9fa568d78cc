/* relay_redact.c: what the relay does to a processor's answer before the
 * shop sees it (relay_redact.h). Two passes over the same bytes: the vault's
 * one scanner (pan_scan.c) for any card number or labelled security code,
 * then the exact values this relay sent, which the scanner's rules could miss
 * (a card number glued to other digits, unusual separators, a bare code).
 * It keeps no copy of the answer or of what it finds: only byte ranges,
 * which are no card data. */
#include "cardvault/relay_redact.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/pan_scan.h"
#include "cardvault/secbuf.h"

/* Separators a card number is written with; they survive redaction. */
static bool is_sep(char c)
{
    return c == ' ' || c == '-' || c == '.' || c == '/' || c == '+';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Masks buf[from, to): every byte but the separators, or every byte when
 * the range is encoded text (base64, UTF-16) whose "separators" are data. */
static void mask(char *buf, size_t from, size_t to, bool all)
{
    for (size_t i = from; i < to; i++)
        if (all || !is_sep(buf[i]))
            buf[i] = '*';
}

/* Matches the digits of want at buf[i..], allowing up to two separator bytes
 * between digits; *end is past the last digit. */
static bool match_digits(const char *buf, size_t len, size_t i, const char *want, size_t *end)
{
    size_t k = 0, n = strlen(want);
    while (k < n) {
        if (i >= len || buf[i] != want[k])
            return false;
        i++;
        k++;
        if (k == n)
            break;
        size_t seps = 0;
        while (i < len && seps < 2 && is_sep(buf[i])) {
            i++;
            seps++;
        }
    }
    *end = i;
    return true;
}

static size_t redact_exact_pan(char *buf, size_t len, const char *pan)
{
    size_t count = 0;
    if (pan == NULL || pan[0] == '\0')
        return 0;
    for (size_t i = 0; i < len; i++) {
        size_t end = 0;
        if (buf[i] == pan[0] && match_digits(buf, len, i, pan, &end)) {
            mask(buf, i, end, false);
            count++;
            i = end - 1;
        }
    }
    return count;
}

static size_t redact_exact_cvc(char *buf, size_t len, const char *cvc)
{
    size_t count = 0, n = cvc != NULL ? strlen(cvc) : 0;
    if (n == 0)
        return 0;
    size_t i = 0;
    while (i < len) {
        if (!is_digit(buf[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_digit(buf[j]))
            j++;
        if (j - i == n && cv_ct_equal(buf + i, cvc, n)) {
            mask(buf, i, j, false);
            count++;
        }
        i = j;
    }
    return count;
}

struct collect {
    uint64_t (*r)[3]; /* start, end, 1 when the whole range goes */
    size_t n, cap;
    size_t len;
};

static void keep_hit(void *ctx, const struct cv_pan_hit *hit)
{
    struct collect *c = ctx;
    if (hit->offset >= hit->end || hit->end > c->len)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap == 0 ? 16 : 2 * c->cap;
        uint64_t(*r)[3] = realloc(c->r, cap * sizeof(*r));
        if (r == NULL)
            abort();
        c->r = r;
        c->cap = cap;
    }
    c->r[c->n][0] = hit->offset;
    c->r[c->n][1] = hit->end;
    c->r[c->n][2] = hit->encoding != NULL && (strcmp(hit->encoding, "base64") == 0 ||
                                              strncmp(hit->encoding, "utf16", 5) == 0);
    c->n++;
}

size_t cv_relay_redact(char *buf, size_t len, const struct cv_relay_sent *sent)
{
    size_t count = 0;
    if (buf == NULL || len == 0)
        return 0;
    /* The scanner first, on the answer as it came: its ranges are masked
     * after the whole stream is read. */
    struct collect c = {NULL, 0, 0, len};
    struct cv_pan_scan *s = cv_pan_scan_new(
        CV_PAN_SCAN_BYTES | CV_PAN_SCAN_CVC_KEYS | CV_PAN_SCAN_BASE64, keep_hit, &c);
    cv_pan_scan_feed(s, buf, len);
    cv_pan_scan_finish(s);
    cv_pan_scan_free(s);
    for (size_t i = 0; i < c.n; i++)
        mask(buf, (size_t)c.r[i][0], (size_t)c.r[i][1], c.r[i][2] != 0);
    count += c.n;
    free(c.r);
    if (sent != NULL) {
        for (size_t i = 0; i < sent->n_pans && i < CV_RELAY_REDACT_MAX; i++)
            count += redact_exact_pan(buf, len, sent->pans[i]);
        for (size_t i = 0; i < sent->n_cvcs && i < CV_RELAY_REDACT_MAX; i++)
            count += redact_exact_cvc(buf, len, sent->cvcs[i]);
    }
    return count;
}
