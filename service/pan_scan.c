/* pan_scan.c: finds card numbers in data that should hold none (database
 * values for `cardvault audit storage`; any byte stream for later callers).
 * It does no I/O and keeps no state beyond the stream it is fed. It must
 * never return, print or keep a card number it finds: only masked digits
 * (PCI DSS 3.4.1) leave this file, and its own copies of candidate digits
 * are wiped as soon as they are decided.
 *
 * How it works: decoders turn bytes into symbols (digit, separator, other);
 * a runner groups digits split by single separators and tests every run of
 * whole groups of 12-19 digits with the Luhn check, leftmost and longest
 * first. A single unbroken run of 20 or more digits is not a PAN (no brand
 * issues one that long) and bounds any candidate around it: this keeps long
 * numbers such as hash digests from producing a "hit" in one of their many
 * 12-19 digit windows, at the cost of missing a PAN glued to more digits.
 * Every decoder keeps the few bytes it needs across chunk boundaries, so the
 * result does not depend on how the stream is cut. */
#include "cardvault/pan_scan.h"

#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

enum sym { SYM_OTHER, SYM_DIGIT, SYM_SEP };

enum enc_bit { ENC_PLAIN = 0, ENC_JSON = 1, ENC_FULLWIDTH = 2 };

#define MAX_GROUPS (CV_PAN_MAX_DIGITS + 1)
/* The longest multi-byte form the UTF-8 reader folds: a JSON \uXXXX escape. */
#define FORM_MAX_BYTES 6

struct group {
    char d[CV_PAN_MAX_DIGITS];
    unsigned char n;
    unsigned char enc;   /* enc_bit mask of the digits in it */
    uint64_t start, end; /* stream offsets of its first digit and past its last */
};

/* Groups digits into candidates and reports the Luhn-valid ones to fn. */
struct runner {
    struct group g[MAX_GROUPS];
    size_t count;
    struct group cur;
    bool in_digits, cur_long, pending_sep;
    const char *name; /* decoder name for the report */
    cv_pan_hit_fn fn;
    void *ctx;
};

/* Hits of one UTF-16 reading, held until the stream ends (masked only). */
struct hit_list {
    struct cv_pan_hit *v;
    size_t n, cap;
};

struct utf8_reader {
    unsigned char p[FORM_MAX_BYTES]; /* bytes of a form not yet complete */
    size_t n;
    uint64_t start; /* stream offset of p[0] */
    struct runner ru;
};

struct utf16_reader {
    struct runner ru;
    struct hit_list hits;
    unsigned offset; /* 0 or 1: the byte alignment of this reading */
    unsigned skip;   /* bytes still to skip at the start of the stream */
    bool big_endian;
    bool have_half;
    unsigned char half;
    uint64_t half_off;
};

struct cv_pan_scan {
    enum cv_pan_scan_mode mode;
    cv_pan_hit_fn fn;
    void *ctx;
    uint64_t pos; /* bytes fed since the stream started */
    struct utf8_reader u8;
    struct utf16_reader u16[4];
};

/* ------------------------------------------------------------ masking */

void cv_pan_scan_mask(const char *digits, size_t n, char out[CV_PAN_SCAN_SAMPLE_LEN])
{
    if (n >= CV_PAN_SCAN_SAMPLE_LEN)
        n = CV_PAN_SCAN_SAMPLE_LEN - 1;
    /* Show the last 4 and up to the first 6, but always hide at least 6:
     * a 16-digit PAN shows 6 + 4, a 12-digit one only 2 + 4. */
    size_t tail = n >= 10 ? 4 : 0;
    size_t head = n > 10 ? n - 10 : 0;
    if (head > 6)
        head = 6;
    for (size_t i = 0; i < n; i++)
        out[i] = (i < head || i >= n - tail) ? digits[i] : '*';
    out[n] = '\0';
}

/* ------------------------------------------------------------- runner */

static void record(struct runner *ru, const char *digits, size_t n, unsigned enc, uint64_t start,
                   uint64_t end)
{
    struct cv_pan_hit hit;
    memset(&hit, 0, sizeof(hit));
    hit.offset = start;
    hit.end = end;
    hit.digits = (unsigned)n;
    cv_pan_scan_mask(digits, n, hit.masked);
    hit.encoding = (enc & ENC_JSON)        ? "json-escape"
                   : (enc & ENC_FULLWIDTH) ? "fullwidth"
                                           : ru->name;
    ru->fn(ru->ctx, &hit);
}

static void drop_front(struct runner *ru, size_t k)
{
    memmove(ru->g, ru->g + k, (ru->count - k) * sizeof(ru->g[0]));
    ru->count -= k;
    cv_wipe(ru->g + ru->count, k * sizeof(ru->g[0]));
}

/* Decides everything that starts at group 0: called once no later group can
 * extend a candidate from it (more than 19 digits pending, or the run ended). */
static void evaluate_front(struct runner *ru)
{
    size_t total = 0, j = 0;
    for (size_t k = 0; k < ru->count && total + ru->g[k].n <= CV_PAN_MAX_DIGITS; k++) {
        total += ru->g[k].n;
        j = k + 1;
    }
    char cand[CV_PAN_MAX_DIGITS + 1];
    for (size_t end = j; end > 0; end--) {
        size_t n = 0;
        unsigned enc = 0;
        for (size_t k = 0; k < end; k++) {
            memcpy(cand + n, ru->g[k].d, ru->g[k].n);
            n += ru->g[k].n;
            enc |= ru->g[k].enc;
        }
        if (n < CV_PAN_MIN_DIGITS)
            break;
        if (cv_card_luhn_ok(cand, n)) {
            record(ru, cand, n, enc, ru->g[0].start, ru->g[end - 1].end);
            cv_wipe(cand, sizeof(cand));
            drop_front(ru, end);
            return;
        }
    }
    cv_wipe(cand, sizeof(cand));
    drop_front(ru, 1);
}

static void flush_all(struct runner *ru)
{
    while (ru->count > 0)
        evaluate_front(ru);
}

static size_t pending_digits(const struct runner *ru)
{
    size_t t = 0;
    for (size_t k = 0; k < ru->count; k++)
        t += ru->g[k].n;
    return t;
}

static void close_group(struct runner *ru)
{
    if (ru->cur_long) {
        flush_all(ru);
    } else {
        ru->g[ru->count++] = ru->cur;
        while (pending_digits(ru) > CV_PAN_MAX_DIGITS)
            evaluate_front(ru);
    }
    cv_wipe(&ru->cur, sizeof(ru->cur));
    ru->cur_long = false;
    ru->in_digits = false;
}

/* One symbol of `width` bytes at stream offset off. */
static void feed(struct runner *ru, enum sym s, char digit, unsigned enc, uint64_t off,
                 unsigned width)
{
    switch (s) {
    case SYM_DIGIT:
        if (!ru->in_digits) {
            ru->in_digits = true;
            ru->pending_sep = false;
            ru->cur.n = 0;
            ru->cur.enc = 0;
            ru->cur.start = off;
        }
        if (ru->cur.n < CV_PAN_MAX_DIGITS) {
            ru->cur.d[ru->cur.n++] = digit;
            ru->cur.enc |= (unsigned char)enc;
            ru->cur.end = off + width;
        } else {
            ru->cur_long = true;
        }
        break;
    case SYM_SEP:
        if (ru->in_digits) {
            close_group(ru);
            ru->pending_sep = true;
        } else if (ru->pending_sep) { /* two separators in a row end the run */
            ru->pending_sep = false;
            flush_all(ru);
        }
        break;
    case SYM_OTHER:
        if (ru->in_digits)
            close_group(ru);
        ru->pending_sep = false;
        flush_all(ru);
        break;
    }
}

static void runner_start(struct runner *ru, const char *name, cv_pan_hit_fn fn, void *ctx)
{
    memset(ru, 0, sizeof(*ru));
    ru->name = name;
    ru->fn = fn;
    ru->ctx = ctx;
}

/* Ends the stream for this runner and leaves it ready for the next one. */
static void runner_end(struct runner *ru)
{
    feed(ru, SYM_OTHER, 0, 0, 0, 0);
    runner_start(ru, ru->name, ru->fn, ru->ctx); /* wipes the groups */
}

/* Maps a UTF-16 code unit or a code point to a symbol. Full-width digits
 * (U+FF10-FF19), the full-width hyphen (U+FF0D) and the ideographic space
 * (U+3000) are what a Japanese input method produces for a typed card number. */
static enum sym classify(unsigned cp, char *digit, unsigned *enc)
{
    if (cp >= '0' && cp <= '9') {
        *digit = (char)cp;
        return SYM_DIGIT;
    }
    if (cp >= 0xFF10 && cp <= 0xFF19) {
        *digit = (char)('0' + (cp - 0xFF10));
        *enc |= ENC_FULLWIDTH;
        return SYM_DIGIT;
    }
    if (cp == ' ' || cp == '-' || cp == 0xFF0D || cp == 0x3000)
        return SYM_SEP;
    return SYM_OTHER;
}

static void feed_cp(struct runner *ru, unsigned cp, unsigned enc, uint64_t off, unsigned width)
{
    char digit = 0;
    enum sym s = classify(cp, &digit, &enc);
    feed(ru, s, digit, enc, off, width);
}

/* ------------------------------------------------------- UTF-8 reader */

enum form { FORM_NONE, FORM_PREFIX, FORM_COMPLETE };

/* Is p[0..n) one of the multi-byte forms the reader folds (a JSON \uXXXX
 * escape, U+FF00-FF3F or U+3000 in UTF-8), a beginning of one, or neither? */
static enum form match_form(const unsigned char *p, size_t n, unsigned *cp, unsigned *enc,
                            unsigned *width)
{
    if (p[0] == '\\') {
        for (size_t k = 1; k < n && k < 6; k++)
            if (k == 1 ? p[k] != 'u' : cv_hex_value(p[k]) < 0)
                return FORM_NONE;
        if (n < 6)
            return FORM_PREFIX;
        *cp = (unsigned)(cv_hex_value(p[2]) << 12 | cv_hex_value(p[3]) << 8 |
                         cv_hex_value(p[4]) << 4 | cv_hex_value(p[5]));
        *enc = ENC_JSON;
        *width = 6;
        return FORM_COMPLETE;
    }
    if (p[0] == 0xEF) {
        if ((n > 1 && p[1] != 0xBC) || (n > 2 && (p[2] < 0x80 || p[2] > 0xBF)))
            return FORM_NONE;
        if (n < 3)
            return FORM_PREFIX;
        *cp = 0xFF00 + (p[2] - 0x80u); /* U+FF00..FF3F */
        *width = 3;
        return FORM_COMPLETE;
    }
    if (p[0] == 0xE3) {
        if ((n > 1 && p[1] != 0x80) || (n > 2 && p[2] != 0x80))
            return FORM_NONE;
        if (n < 3)
            return FORM_PREFIX;
        *cp = 0x3000;
        *width = 3;
        return FORM_COMPLETE;
    }
    return FORM_NONE;
}

/* Turns the pending bytes into symbols as far as they are decided; at the
 * end of the stream (final) an unfinished form is read byte by byte. */
static void utf8_drain(struct utf8_reader *r, bool final)
{
    while (r->n > 0) {
        unsigned cp = r->p[0], enc = ENC_PLAIN, width = 1;
        enum form f = match_form(r->p, r->n, &cp, &enc, &width);
        if (f == FORM_PREFIX && !final)
            return;
        if (f != FORM_COMPLETE) {
            cp = r->p[0];
            enc = ENC_PLAIN;
            width = 1;
        }
        feed_cp(&r->ru, cp, enc, r->start, width);
        memmove(r->p, r->p + width, r->n - width);
        r->n -= width;
        r->start += width;
    }
}

static void utf8_byte(struct utf8_reader *r, unsigned char b, uint64_t off)
{
    if (r->n == 0 && b != '\\' && b != 0xEF && b != 0xE3) {
        feed_cp(&r->ru, b, ENC_PLAIN, off, 1); /* the common case: one byte, one symbol */
        return;
    }
    if (r->n == 0)
        r->start = off;
    r->p[r->n++] = b;
    utf8_drain(r, false);
}

static void utf8_end(struct utf8_reader *r)
{
    utf8_drain(r, true);
    cv_wipe(r->p, sizeof(r->p));
    r->n = 0;
    r->start = 0;
    runner_end(&r->ru);
}

/* ------------------------------------------------------ UTF-16 readers */

static void keep_hit(void *ctx, const struct cv_pan_hit *hit)
{
    struct hit_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct cv_pan_hit *v = cv_xmalloc(cap * sizeof(*v));
        if (l->n > 0)
            memcpy(v, l->v, l->n * sizeof(*v));
        free(l->v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *hit;
}

static void utf16_byte(struct utf16_reader *r, unsigned char b, uint64_t off)
{
    if (r->skip > 0) {
        r->skip--;
        return;
    }
    if (!r->have_half) {
        r->half = b;
        r->half_off = off;
        r->have_half = true;
        return;
    }
    unsigned u = r->big_endian ? (unsigned)(r->half << 8 | b) : (unsigned)(b << 8 | r->half);
    r->have_half = false;
    feed_cp(&r->ru, u, ENC_PLAIN, r->half_off, 2);
}

static void utf16_end(struct utf16_reader *r)
{
    runner_end(&r->ru); /* an odd byte left over is not a code unit */
    r->skip = r->offset;
    r->have_half = false;
    r->half = 0;
}

/* ------------------------------------------------------------- scanner */

static void scan_init(struct cv_pan_scan *s, enum cv_pan_scan_mode mode, cv_pan_hit_fn fn,
                      void *ctx)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->fn = fn;
    s->ctx = ctx;
    runner_start(&s->u8.ru, "utf8", fn, ctx);
    for (unsigned k = 0; k < 4; k++) {
        struct utf16_reader *r = &s->u16[k];
        r->offset = k & 1;
        r->skip = r->offset;
        r->big_endian = k >= 2;
        runner_start(&r->ru, r->big_endian ? "utf16be" : "utf16le", keep_hit, &r->hits);
    }
}

static void scan_cleanup(struct cv_pan_scan *s)
{
    for (unsigned k = 0; k < 4; k++)
        free(s->u16[k].hits.v);
    cv_wipe(s, sizeof(*s));
}

struct cv_pan_scan *cv_pan_scan_new(enum cv_pan_scan_mode mode, cv_pan_hit_fn fn, void *ctx)
{
    struct cv_pan_scan *s = cv_xmalloc(sizeof(*s));
    scan_init(s, mode, fn, ctx);
    return s;
}

void cv_pan_scan_free(struct cv_pan_scan *s)
{
    if (s == NULL)
        return;
    scan_cleanup(s);
    free(s);
}

void cv_pan_scan_feed(struct cv_pan_scan *s, const void *buf, size_t len)
{
    const unsigned char *b = buf;
    bool bytes = s->mode == CV_PAN_SCAN_BYTES;
    for (size_t i = 0; i < len; i++) {
        uint64_t off = s->pos + i;
        utf8_byte(&s->u8, b[i], off);
        if (bytes)
            for (unsigned k = 0; k < 4; k++)
                utf16_byte(&s->u16[k], b[i], off);
    }
    s->pos += len;
}

void cv_pan_scan_finish(struct cv_pan_scan *s)
{
    utf8_end(&s->u8);
    if (s->mode == CV_PAN_SCAN_BYTES) {
        /* A random byte string meets "digit, then 0x00" twelve times in a row
         * with probability about (10/65536)^12: no false positives. */
        struct hit_list *best = NULL;
        for (unsigned k = 0; k < 4; k++) {
            utf16_end(&s->u16[k]);
            if (best == NULL || s->u16[k].hits.n > best->n)
                best = &s->u16[k].hits;
        }
        for (size_t i = 0; i < best->n; i++)
            s->fn(s->ctx, &best->v[i]);
        for (unsigned k = 0; k < 4; k++)
            s->u16[k].hits.n = 0;
    }
    s->pos = 0;
}

void cv_pan_scan_summarize(void *ctx, const struct cv_pan_hit *hit)
{
    struct cv_pan_scan_summary *sum = ctx;
    sum->matches++;
    if (sum->sample[0] == '\0') {
        memcpy(sum->sample, hit->masked, sizeof(sum->sample));
        sum->sample_encoding = hit->encoding;
    }
}

void cv_pan_scan_value(const void *buf, size_t len, enum cv_pan_scan_mode mode,
                       struct cv_pan_scan_summary *sum)
{
    struct cv_pan_scan s;
    scan_init(&s, mode, cv_pan_scan_summarize, sum);
    cv_pan_scan_feed(&s, buf, len);
    cv_pan_scan_finish(&s);
    scan_cleanup(&s);
}
