/* pan_scan.c: finds card numbers and security codes in data that should hold
 * none (database values for `cardvault audit storage`; a shop's databases,
 * files and dumps for `cardvault scan`; the same scanner for both).
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
 * result does not depend on how the stream is cut.
 *
 * Two more readers run beside the UTF-8 one when asked: a base64 reader
 * decodes each run of the base64 alphabet (standard or URL-safe) four
 * characters at a time into a nested text scanner, and a key reader spots a
 * 3-4 digit value after a key named like a security code. */
#include "cardvault/pan_scan.h"

#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

enum sym { SYM_OTHER, SYM_DIGIT, SYM_SEP };

enum enc_bit { ENC_PLAIN = 0, ENC_JSON = 1, ENC_FULLWIDTH = 2, ENC_URL = 4 };

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
    bool issuer;      /* CV_PAN_SCAN_ISSUER */
    bool mid_run;     /* g[0] is not where its run of groups began */
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

/* A security code after a key named like one: `"cvv": "123"`, cvc=1234. */
enum key_state { KEY_IDLE, KEY_SEEN, KEY_SEP, KEY_DIGITS };
#define KEY_WORD_MAX 32
struct key_reader {
    char word[KEY_WORD_MAX];
    unsigned wn;
    bool wover; /* the word is longer than any key */
    enum key_state state;
    unsigned nd;
    uint64_t dstart;
    cv_pan_hit_fn fn;
    void *ctx;
};

/* Base64 runs, decoded a quantum (4 characters) at a time into their own
 * UTF-8 and key readers (one level: decoded text is not decoded again),
 * whose hits are reported at the run's place in the stream. */
struct b64_reader {
    unsigned char q[4];
    unsigned nq;
    bool on, active, keys;
    uint64_t start;   /* stream offset of the run's first character */
    uint64_t decoded; /* bytes decoded in this run */
    uint64_t chars;   /* base64 characters in this run so far */
    struct utf8_reader u8;
    struct key_reader key;
    cv_pan_hit_fn fn;
    void *ctx;
};

struct cv_pan_scan {
    unsigned mode;
    cv_pan_hit_fn fn;
    void *ctx;
    uint64_t pos; /* bytes fed since the stream started */
    struct utf8_reader u8;
    struct utf16_reader u16[4];
    struct b64_reader b64;
    struct key_reader key;
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
    hit.kind = CV_PAN_HIT_PAN;
    hit.offset = start;
    hit.end = end;
    hit.digits = (unsigned)n;
    cv_pan_scan_mask(digits, n, hit.masked);
    hit.encoding = (enc & ENC_JSON)        ? "json-escape"
                   : (enc & ENC_URL)       ? "url-escape"
                   : (enc & ENC_FULLWIDTH) ? "fullwidth"
                                           : ru->name;
    ru->fn(ru->ctx, &hit);
}

bool cv_pan_scan_issuer_ok(const char *digits, size_t n)
{
    /* Lengths each brand issues (ISO/IEC 7812 registrations as the networks
     * publish them); anything else is an order, phone or tracking number
     * that happens to pass Luhn, as one run in ten does. */
    switch (cv_card_brand_of(digits, n)) {
    case CV_BRAND_VISA:
        return n == 13 || n == 16 || n == 19;
    case CV_BRAND_MASTERCARD:
        return n == 16;
    case CV_BRAND_AMEX:
        return n == 15;
    case CV_BRAND_DINERS:
        return n >= 14 && n <= 19;
    case CV_BRAND_DISCOVER:
    case CV_BRAND_JCB:
    case CV_BRAND_UNIONPAY:
        return n >= 16 && n <= 19;
    case CV_BRAND_UNKNOWN:
        break;
    }
    return false;
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
        /* With the issuer check, a candidate that starts inside a longer run
         * of digit groups must be one unbroken group ("2024-01-15
         * 4111111111111111" is still found): the tail windows of a grouped
         * tracking or account number ("9400 1112 3612 3456 0000 00") are
         * not card numbers, though one in ten passes Luhn. */
        if (ru->issuer && ru->mid_run && end > 1)
            continue;
        if (cv_card_luhn_ok(cand, n) && (!ru->issuer || cv_pan_scan_issuer_ok(cand, n))) {
            record(ru, cand, n, enc, ru->g[0].start, ru->g[end - 1].end);
            cv_wipe(cand, sizeof(cand));
            drop_front(ru, end);
            ru->mid_run = false; /* back-to-back card numbers are each found */
            return;
        }
    }
    cv_wipe(cand, sizeof(cand));
    drop_front(ru, 1);
    ru->mid_run = true;
}

static void flush_all(struct runner *ru)
{
    while (ru->count > 0)
        evaluate_front(ru);
    ru->mid_run = false; /* the next group starts a new run */
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

static void runner_start(struct runner *ru, const char *name, bool issuer, cv_pan_hit_fn fn,
                         void *ctx)
{
    memset(ru, 0, sizeof(*ru));
    ru->name = name;
    ru->issuer = issuer;
    ru->fn = fn;
    ru->ctx = ctx;
}

/* Ends the stream for this runner and leaves it ready for the next one. */
static void runner_end(struct runner *ru)
{
    feed(ru, SYM_OTHER, 0, 0, 0, 0);
    runner_start(ru, ru->name, ru->issuer, ru->fn, ru->ctx); /* wipes the groups */
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
    /* '+' is a space in a URL-encoded form (application/x-www-form-urlencoded). */
    if (cp == ' ' || cp == '-' || cp == '.' || cp == '+' || cp == 0xFF0D || cp == 0x3000)
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
 * escape, a URL %XX escape, U+FF00-FF3F or U+3000 in UTF-8), a beginning of
 * one, or neither? */
static enum form match_form(const unsigned char *p, size_t n, unsigned *cp, unsigned *enc,
                            unsigned *width)
{
    if (p[0] == '%') {
        for (size_t k = 1; k < n && k < 3; k++)
            if (cv_hex_value(p[k]) < 0)
                return FORM_NONE;
        if (n < 3)
            return FORM_PREFIX;
        *cp = (unsigned)(cv_hex_value(p[1]) << 4 | cv_hex_value(p[2]));
        *enc = ENC_URL;
        *width = 3;
        return FORM_COMPLETE;
    }
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
    if (r->n == 0 && b != '\\' && b != '%' && b != 0xEF && b != 0xE3) {
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

/* --------------------------------------------------- security-code keys */

/* Key names, lower case without '_' and '-'. The first group must match the
 * whole key; the second may sit inside a longer one (card_cvv2, billingCvc). */
static const char *const cvc_exact[] = {"cvc", "cvv", "cvv2", "cvc2", "cid", "csc",
                                        "cvn", "cvd", "cav2", "cvn2", "cve", NULL};
static const char *const cvc_inside[] = {"securitycode",     "cardcode",          "cvv",     "cvc",
                                         "verificationcode", "verificationvalue", "seccode", NULL};

static bool cvc_word(const char *w, size_t n)
{
    for (size_t i = 0; cvc_exact[i] != NULL; i++)
        if (strlen(cvc_exact[i]) == n && memcmp(cvc_exact[i], w, n) == 0)
            return true;
    for (size_t i = 0; cvc_inside[i] != NULL; i++) {
        size_t k = strlen(cvc_inside[i]);
        /* "cvv"/"cvc" inside a longer word only at its end: cardcvv, not cvcxyz */
        bool tail_only = k == 3;
        for (size_t at = 0; k <= n && at + k <= n; at++) {
            if (tail_only && at + k != n)
                continue;
            if (memcmp(w + at, cvc_inside[i], k) == 0)
                return true;
        }
    }
    return false;
}

bool cv_pan_scan_is_cvc_name(const char *name, size_t len)
{
    char w[KEY_WORD_MAX];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '_' || c == '-' || c == ' ')
            continue;
        if (n == sizeof(w))
            return false;
        w[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    return n > 0 && cvc_word(w, n);
}

bool cv_pan_scan_is_cvc_value(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t a = 0, b = len;
    while (a < b && (p[a] == ' ' || p[a] == '\t'))
        a++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t' || p[b - 1] == '\n' || p[b - 1] == '\r'))
        b--;
    if (b - a >= 2 && (p[a] == '"' || p[a] == '\'') && p[b - 1] == p[a]) {
        a++;
        b--;
    }
    if (b - a < 3 || b - a > 4)
        return false;
    for (size_t i = a; i < b; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

static bool is_word_byte(unsigned char b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_' ||
           b == '-';
}

static void key_report(struct key_reader *r, uint64_t end)
{
    struct cv_pan_hit hit;
    memset(&hit, 0, sizeof(hit));
    hit.kind = CV_PAN_HIT_CVC;
    hit.offset = r->dstart;
    hit.end = end;
    hit.digits = r->nd;
    memset(hit.masked, '*', r->nd);
    hit.encoding = "key";
    r->fn(r->ctx, &hit);
}

static void key_byte(struct key_reader *r, unsigned char b, uint64_t off)
{
    for (;;) {
        switch (r->state) {
        case KEY_IDLE:
            if (is_word_byte(b)) {
                if (b == '_' || b == '-')
                    return; /* ignored inside a key name */
                if (r->wn < sizeof(r->word))
                    r->word[r->wn++] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
                else
                    r->wover = true;
                return;
            }
            if (r->wn > 0 && !r->wover && cvc_word(r->word, r->wn))
                r->state = KEY_SEEN;
            r->wn = 0;
            r->wover = false;
            if (r->state == KEY_IDLE)
                return;
            continue; /* this byte may already be the ':' */
        case KEY_SEEN:
            if (b == '"' || b == '\'' || b == ' ' || b == '\t')
                return;
            if (b == ':' || b == '=') {
                r->state = KEY_SEP;
                return;
            }
            r->state = KEY_IDLE;
            continue;
        case KEY_SEP:
            if (b == '"' || b == '\'' || b == ' ' || b == '\t')
                return;
            if (b >= '0' && b <= '9') {
                r->state = KEY_DIGITS;
                r->nd = 1;
                r->dstart = off;
                return;
            }
            r->state = KEY_IDLE;
            continue;
        case KEY_DIGITS:
            if (b >= '0' && b <= '9') {
                if (r->nd < 5)
                    r->nd++;
                return;
            }
            if (r->nd >= 3 && r->nd <= 4 && !is_word_byte(b))
                key_report(r, off);
            r->state = KEY_IDLE;
            r->nd = 0;
            continue;
        }
    }
}

static void key_end(struct key_reader *r, uint64_t off)
{
    if (r->state == KEY_DIGITS && r->nd >= 3 && r->nd <= 4)
        key_report(r, off);
    cv_pan_hit_fn fn = r->fn;
    void *ctx = r->ctx;
    memset(r, 0, sizeof(*r));
    r->fn = fn;
    r->ctx = ctx;
}

/* ------------------------------------------------------ base64 reader */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-') /* standard and URL-safe (RFC 4648 section 5) */
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* A hit of the nested scanner, placed at its run in the outer stream: the
 * decoded byte k comes from characters 4(k/3) .. 4(k/3)+3 of the run. */
static void b64_hit(void *ctx, const struct cv_pan_hit *inner)
{
    struct b64_reader *r = ctx;
    struct cv_pan_hit hit = *inner;
    hit.offset = r->start + inner->offset / 3 * 4;
    hit.end = r->start + (inner->end + 2) / 3 * 4;
    if (hit.end > r->start + r->chars) /* a run that ends inside its last quantum */
        hit.end = r->start + r->chars;
    hit.encoding = "base64";
    r->fn(r->ctx, &hit);
}

static void b64_flush_quantum(struct b64_reader *r)
{
    unsigned char out[3];
    unsigned v = 0;
    for (unsigned k = 0; k < 4; k++)
        v = v << 6 | (k < r->nq ? r->q[k] : 0);
    out[0] = (unsigned char)(v >> 16);
    out[1] = (unsigned char)(v >> 8);
    out[2] = (unsigned char)v;
    /* 2 characters carry 1 byte, 3 carry 2, 4 carry 3; 1 carries none */
    size_t n = r->nq == 4 ? 3 : r->nq >= 2 ? r->nq - 1 : 0;
    for (size_t i = 0; i < n; i++) {
        utf8_byte(&r->u8, out[i], r->decoded + i);
        if (r->keys)
            key_byte(&r->key, out[i], r->decoded + i);
    }
    r->decoded += n;
    cv_wipe(out, sizeof(out));
    cv_wipe(r->q, sizeof(r->q));
    r->nq = 0;
}

static void b64_end_run(struct b64_reader *r)
{
    if (!r->active)
        return;
    b64_flush_quantum(r);
    utf8_end(&r->u8);
    if (r->keys)
        key_end(&r->key, r->decoded);
    r->active = false;
    r->decoded = 0;
}

static void b64_byte(struct b64_reader *r, unsigned char b, uint64_t off)
{
    int v = b64_value(b);
    if (v < 0) { /* '=' padding, or anything else, ends the run */
        b64_end_run(r);
        return;
    }
    if (!r->active) {
        r->active = true;
        r->start = off;
        r->nq = 0;
        r->chars = 0;
    }
    r->chars++;
    r->q[r->nq++] = (unsigned char)v;
    if (r->nq == 4)
        b64_flush_quantum(r);
}

/* ------------------------------------------------------------- scanner */

static void scan_init(struct cv_pan_scan *s, unsigned mode, cv_pan_hit_fn fn, void *ctx)
{
    bool issuer = (mode & CV_PAN_SCAN_ISSUER) != 0;
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->fn = fn;
    s->ctx = ctx;
    runner_start(&s->u8.ru, "utf8", issuer, fn, ctx);
    for (unsigned k = 0; k < 4; k++) {
        struct utf16_reader *r = &s->u16[k];
        r->offset = k & 1;
        r->skip = r->offset;
        r->big_endian = k >= 2;
        runner_start(&r->ru, r->big_endian ? "utf16be" : "utf16le", issuer, keep_hit, &r->hits);
    }
    s->b64.fn = fn;
    s->b64.ctx = ctx;
    s->b64.on = (mode & CV_PAN_SCAN_BASE64) != 0;
    s->b64.keys = (mode & CV_PAN_SCAN_CVC_KEYS) != 0;
    runner_start(&s->b64.u8.ru, "base64", issuer, b64_hit, &s->b64);
    s->b64.key.fn = b64_hit;
    s->b64.key.ctx = &s->b64;
    s->key.fn = fn;
    s->key.ctx = ctx;
}

static void scan_cleanup(struct cv_pan_scan *s)
{
    for (unsigned k = 0; k < 4; k++)
        free(s->u16[k].hits.v);
    cv_wipe(s, sizeof(*s));
}

struct cv_pan_scan *cv_pan_scan_new(unsigned mode, cv_pan_hit_fn fn, void *ctx)
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
    bool bytes = (s->mode & CV_PAN_SCAN_BYTES) != 0;
    bool b64 = s->b64.on;
    bool keys = (s->mode & CV_PAN_SCAN_CVC_KEYS) != 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t off = s->pos + i;
        utf8_byte(&s->u8, b[i], off);
        if (b64)
            b64_byte(&s->b64, b[i], off);
        if (keys)
            key_byte(&s->key, b[i], off);
        if (bytes)
            for (unsigned k = 0; k < 4; k++)
                utf16_byte(&s->u16[k], b[i], off);
    }
    s->pos += len;
}

void cv_pan_scan_finish(struct cv_pan_scan *s)
{
    utf8_end(&s->u8);
    if (s->b64.on)
        b64_end_run(&s->b64);
    if (s->mode & CV_PAN_SCAN_CVC_KEYS)
        key_end(&s->key, s->pos);
    if (s->mode & CV_PAN_SCAN_BYTES) {
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
    if (hit->kind == CV_PAN_HIT_CVC) {
        sum->cvc_matches++;
        return;
    }
    sum->matches++;
    if (sum->sample[0] == '\0') {
        memcpy(sum->sample, hit->masked, sizeof(sum->sample));
        sum->sample_encoding = hit->encoding;
    }
}

void cv_pan_scan_value(const void *buf, size_t len, unsigned mode, struct cv_pan_scan_summary *sum)
{
    struct cv_pan_scan s;
    scan_init(&s, mode, cv_pan_scan_summarize, sum);
    cv_pan_scan_feed(&s, buf, len);
    cv_pan_scan_finish(&s);
    scan_cleanup(&s);
}

uint64_t cv_pan_scan_column_add(struct cv_pan_scan_column *col, const void *buf, size_t len,
                                unsigned mode)
{
    struct cv_pan_scan_summary one;
    memset(&one, 0, sizeof(one));
    cv_pan_scan_value(buf, len, mode, &one);
    col->values++;
    col->bytes += len;
    if (one.matches + one.cvc_matches > 0) {
        col->values_with_hits++;
        col->hits.matches += one.matches;
        col->hits.cvc_matches += one.cvc_matches;
        if (col->hits.sample[0] == '\0' && one.sample[0] != '\0') {
            memcpy(col->hits.sample, one.sample, sizeof(one.sample));
            col->hits.sample_encoding = one.sample_encoding;
        }
    }
    return one.matches + one.cvc_matches;
}
