/* card.c: the rules a card must satisfy before anything else sees it: PAN
 * syntax and length, the Luhn check digit, brand from IIN ranges, expiry,
 * CVC and cardholder name. It is pure: it must never allocate, log, do I/O
 * or keep a copy of card data. It writes the normalized PAN straight into the
 * caller's buffer, so no stack copy of a PAN exists, and it wipes that buffer
 * on every failure so a half-parsed PAN never outlives the call. */
#include "cardvault/card.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "cardvault/secbuf.h"

/* ISO/IEC 7812 lets the issuer identification number grow to 8 digits, but
 * every range the brands below publish is decided by its first 4. */
#define IIN_MAX_DIGITS 4

/* Expiry is capped at 20 years (240 months) ahead; see cv_card_check_expiry. */
#define EXPIRY_MAX_MONTHS_AHEAD (20LL * 12)

/* Twelve digits is CV_PAN_MIN_DIGITS: the shortest digit run that could be a PAN. */
#define NAME_DIGIT_RUN_MAX (CV_PAN_MIN_DIGITS - 1)

/* Explicit ASCII ranges rather than isdigit(), whose answer depends on the locale. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_pan_separator(char c)
{
    return c == ' ' || c == '-';
}

cv_status cv_card_normalize_pan(const char *in, size_t in_len, char out[CV_PAN_MAX_DIGITS + 1],
                                size_t *out_len)
{
    cv_status st = CV_ERR_INVALID_PAN;
    size_t n = 0;

    assert(out != NULL && out_len != NULL);
    *out_len = 0;
    if (in == NULL)
        goto out;
    for (size_t i = 0; i < in_len; i++) {
        if (is_digit(in[i])) {
            /* Stop at the 20th digit: it can never be a PAN, and out has no room for it. */
            if (n == CV_PAN_MAX_DIGITS)
                goto out;
            out[n++] = in[i];
        } else if (is_pan_separator(in[i])) {
            /* A separator must sit between two digits: this single test rejects leading,
             * trailing and doubled separators alike. */
            if (i == 0 || i + 1 == in_len || !is_digit(in[i - 1]) || !is_digit(in[i + 1]))
                goto out;
        } else {
            /* Anything else, an embedded NUL included, means the client sent something other
             * than a card number; guessing what they meant is how PANs end up in logs. */
            goto out;
        }
    }
    if (n < CV_PAN_MIN_DIGITS || !cv_card_luhn_ok(out, n))
        goto out;
    out[n] = '\0';
    *out_len = n;
    st = CV_OK;
out:
    if (st != CV_OK)
        cv_wipe(out, CV_PAN_MAX_DIGITS + 1);
    return st;
}

/* ISO/IEC 7812-1 Annex B: from the rightmost digit, double every second one,
 * subtract 9 from any two-digit product, and the total must end in 0. */
bool cv_card_luhn_ok(const char *digits, size_t len)
{
    unsigned sum = 0;
    bool twice = false;

    if (digits == NULL || len == 0)
        return false;
    for (size_t i = len; i-- > 0;) {
        if (!is_digit(digits[i]))
            return false;
        unsigned d = (unsigned)(digits[i] - '0');
        if (twice) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        /* Keep the running sum small so no length can overflow it. */
        sum = (sum + d) % 10;
        twice = !twice;
    }
    return sum == 0;
}

/* The first k digits as a number, or -1 when the PAN is shorter than k or one
 * of them is not a digit; -1 lies inside no range, so it matches nothing. */
static long iin_prefix(const char *digits, size_t len, size_t k)
{
    long v = 0;

    if (len < k)
        return -1;
    for (size_t i = 0; i < k; i++) {
        if (!is_digit(digits[i]))
            return -1;
        v = v * 10 + (digits[i] - '0');
    }
    return v;
}

static bool in_range(long v, long lo, long hi)
{
    return v >= lo && v <= hi;
}

/* Part of the stored format: every open recomputes a row's brand with this
 * table and refuses the row when it differs from the stored column
 * (row_check.c). A change that gives an existing card another brand must
 * come with a rewrite of those rows' brand (docs/storage-policy.md). */
enum cv_card_brand cv_card_brand_of(const char *digits, size_t len)
{
    long p[IIN_MAX_DIGITS + 1];

    if (digits == NULL)
        return CV_BRAND_UNKNOWN;
    for (size_t k = 1; k <= IIN_MAX_DIGITS; k++)
        p[k] = iin_prefix(digits, len, k);

    if (p[1] == 4)
        return CV_BRAND_VISA;
    /* Mastercard added the 2-series (2221-2720) in 2017 next to the original 51-55. */
    if (in_range(p[2], 51, 55) || in_range(p[4], 2221, 2720))
        return CV_BRAND_MASTERCARD;
    if (p[2] == 34 || p[2] == 37)
        return CV_BRAND_AMEX;
    if (in_range(p[4], 3528, 3589))
        return CV_BRAND_JCB;
    /* Discover also accepts UnionPay's 622126-622925 under their network alliance, but
     * those cards are issued by UnionPay, so all of 62 is reported as UnionPay below.
     * No Discover range checked here starts with 62, so the order cannot mislabel one. */
    if (p[4] == 6011 || in_range(p[3], 644, 649) || p[2] == 65)
        return CV_BRAND_DISCOVER;
    if (in_range(p[3], 300, 305) || p[4] == 3095 || p[2] == 36 || p[2] == 38 || p[2] == 39)
        return CV_BRAND_DINERS;
    if (p[2] == 62)
        return CV_BRAND_UNIONPAY;
    return CV_BRAND_UNKNOWN;
}

const char *cv_card_brand_name(enum cv_card_brand brand)
{
    /* These strings are the API's "brand" values (docs/api-conventions.md): never rename. */
    switch (brand) {
    case CV_BRAND_VISA:
        return "visa";
    case CV_BRAND_MASTERCARD:
        return "mastercard";
    case CV_BRAND_AMEX:
        return "amex";
    case CV_BRAND_DISCOVER:
        return "discover";
    case CV_BRAND_JCB:
        return "jcb";
    case CV_BRAND_DINERS:
        return "diners";
    case CV_BRAND_UNIONPAY:
        return "unionpay";
    case CV_BRAND_UNKNOWN:
        break;
    }
    return "unknown";
}

cv_status cv_card_display_of(const char *pan, struct cv_card_display *d)
{
    memset(d, 0, sizeof(*d));
    size_t len = strnlen(pan, CV_PAN_MAX_DIGITS + 1);
    if (len < CV_PAN_MIN_DIGITS || len > CV_PAN_MAX_DIGITS)
        return CV_ERR_INVALID_PAN;
    for (size_t i = 0; i < len; i++)
        if (!is_digit(pan[i]))
            return CV_ERR_INVALID_PAN;
    memcpy(d->bin, pan, CV_CARD_BIN_DIGITS);
    memcpy(d->last4, pan + len - CV_CARD_LAST4_DIGITS, CV_CARD_LAST4_DIGITS);
    const char *brand = cv_card_brand_name(cv_card_brand_of(pan, len));
    size_t brand_len = strlen(brand);
    assert(brand_len < sizeof(d->brand)); /* our own table of names */
    memcpy(d->brand, brand, brand_len);
    return CV_OK;
}

/* A card is good through the last day of its expiry month, so the current
 * month is accepted. "At most 20 years ahead" is counted in months: with the
 * clock at 06/2025, 06/2045 is accepted and 07/2045 is not. The bounds are
 * checked before any arithmetic so that hostile values such as LLONG_MAX
 * cannot overflow. A clock outside 1000-9999 or months 1-12 is a bug in the
 * caller; we fail closed rather than accept every card. */
cv_status cv_card_check_expiry(long long month, long long year, int now_month, int now_year)
{
    if (now_month < 1 || now_month > 12 || now_year < 1000 || now_year > 9999)
        return CV_ERR_INVALID_EXPIRY;
    /* Four-digit years only: a two-digit 25 is a client bug, not the year 25. */
    if (month < 1 || month > 12 || year < 1000 || year > 9999)
        return CV_ERR_INVALID_EXPIRY;

    long long expiry = year * 12 + (month - 1);
    long long now = (long long)now_year * 12 + (now_month - 1);
    if (expiry < now || expiry - now > EXPIRY_MAX_MONTHS_AHEAD)
        return CV_ERR_INVALID_EXPIRY;
    return CV_OK;
}

cv_status cv_card_check_cvc(const char *cvc, size_t len, enum cv_card_brand brand)
{
    /* American Express prints a 4-digit CID; every other brand a 3-digit CVV2/CVC2. */
    size_t want = brand == CV_BRAND_AMEX ? 4 : 3;

    if (cvc == NULL || len != want)
        return CV_ERR_INVALID_CVC;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(cvc[i]))
            return CV_ERR_INVALID_CVC;
    }
    return CV_OK;
}

/* Decodes one UTF-8 scalar value at p (avail bytes) into *cp and returns its
 * length, or 0 when the bytes are not well-formed UTF-8 as RFC 3629 and
 * Unicode table 3-7 define it: no overlong forms, no surrogates, nothing
 * above U+10FFFF, no truncated sequences. */
static size_t utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp)
{
    unsigned char b0 = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        n = 2;
        *cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        n = 3;
        *cp = b0 & 0x0Fu;
        if (b0 == 0xE0)
            lo = 0xA0; /* below is overlong */
        else if (b0 == 0xED)
            hi = 0x9F; /* above is a UTF-16 surrogate */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        n = 4;
        *cp = b0 & 0x07u;
        if (b0 == 0xF0)
            lo = 0x90; /* below is overlong */
        else if (b0 == 0xF4)
            hi = 0x8F; /* above is beyond U+10FFFF */
    } else {
        return 0; /* a stray continuation byte, C0/C1 (always overlong) or F5-FF */
    }
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0u) != 0x80u)
            return 0;
        *cp = (*cp << 6) | (p[i] & 0x3Fu);
    }
    return n;
}

/* Unicode general category Cc: C0, DEL and C1. Tabs and newlines included:
 * a name with a line break can forge lines in whatever later prints it. */
static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* Characters that print as nothing: space separators (category Zs) and the
 * zero-width ones, so that a name of only these counts as blank. */
static bool is_blank(uint32_t cp)
{
    return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200D) ||
           cp == 0x202F || cp == 0x205F || cp == 0x2060 || cp == 0x3000 || cp == 0xFEFF;
}

cv_status cv_card_check_name(const char *name, size_t len)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t digit_run = 0;
    bool visible = false;

    if (name == NULL || len == 0 || len > CV_NAME_MAX_BYTES)
        return CV_ERR_INVALID_NAME;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0 || is_control(cp))
            return CV_ERR_INVALID_NAME;
        if (cp >= '0' && cp <= '9') {
            /* PCI DSS 3.5.1 (3.4 before v4.0): a PAN is never stored readable, and a name field
             * holding "4242 4242 4242 4242" is exactly that. */
            if (++digit_run > NAME_DIGIT_RUN_MAX)
                return CV_ERR_INVALID_NAME;
        } else if (!(digit_run > 0 && (cp == ' ' || cp == '-') && i + 1 < len &&
                     is_digit(name[i + 1]))) {
            /* A single space or hyphen between digits does not end the run, for the same
             * reason cv_card_normalize_pan drops it: "4242 4242 4242 4242" is a PAN. */
            digit_run = 0;
        }
        if (!is_blank(cp))
            visible = true;
        i += n;
    }
    return visible ? CV_OK : CV_ERR_INVALID_NAME;
}

/* The layout is documented beside CV_CARD_ENCODED_MAX in card.h. */
cv_status cv_card_encode(const struct cv_card_plain *c, unsigned char *out, size_t cap, size_t *len)
{
    size_t pan_len = strnlen(c->pan, sizeof(c->pan) - 1);
    size_t name_len = c->has_name ? strnlen(c->name, sizeof(c->name) - 1) : 0;
    size_t need = 1 + pan_len + 1 + 2 + 1 + name_len;
    if (need > cap || pan_len < CV_PAN_MIN_DIGITS || pan_len > CV_PAN_MAX_DIGITS ||
        c->exp_month < 0 || c->exp_month > 0xff || c->exp_year < 0 || c->exp_year > 0xffff)
        return CV_ERR_INTERNAL;
    size_t n = 0;
    out[n++] = (unsigned char)pan_len;
    memcpy(out + n, c->pan, pan_len);
    n += pan_len;
    out[n++] = (unsigned char)c->exp_month;
    out[n++] = (unsigned char)((unsigned)c->exp_year >> 8);
    out[n++] = (unsigned char)((unsigned)c->exp_year & 0xff);
    out[n++] = c->has_name ? (unsigned char)name_len : CV_CARD_NO_NAME;
    memcpy(out + n, c->name, name_len);
    *len = n + name_len;
    return CV_OK;
}

cv_status cv_card_decode(const unsigned char *in, size_t len, struct cv_card_plain *c)
{
    cv_status st = CV_ERR_INTEGRITY;
    size_t n = 0;
    memset(c, 0, sizeof(*c));
    if (len < 1 || in[0] < CV_PAN_MIN_DIGITS || in[0] > CV_PAN_MAX_DIGITS ||
        len < (size_t)1 + in[0] + 4)
        goto out;
    size_t pan_len = in[n++];
    memcpy(c->pan, in + n, pan_len);
    n += pan_len;
    c->exp_month = in[n++];
    c->exp_year = (in[n] << 8) | in[n + 1];
    n += 2;
    unsigned name_len = in[n++];
    if (name_len == CV_CARD_NO_NAME) {
        c->has_name = 0;
        if (n == len)
            st = CV_OK;
        goto out;
    }
    if (name_len > CV_NAME_MAX_BYTES || n + name_len != len)
        goto out;
    memcpy(c->name, in + n, name_len);
    c->has_name = 1;
    st = CV_OK;
out:
    if (st != CV_OK)
        cv_wipe(c, sizeof(*c));
    return st;
}

/* ------------------------------------------------------ expiry parsing */

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t' || (*s)[*len - 1] == '\r' ||
                        (*s)[*len - 1] == '\n'))
        (*len)--;
}

/* A run of 1..max digits at s; its length (0 when none or too long). */
static size_t digits_at(const char *s, size_t len, size_t max, int *value)
{
    size_t n = 0;
    int v = 0;
    while (n < len && s[n] >= '0' && s[n] <= '9') {
        if (n == max)
            return 0;
        v = v * 10 + (s[n] - '0');
        n++;
    }
    *value = v;
    return n;
}

static cv_status year_of(int v, size_t digits, int *year)
{
    if (digits == 2) {
        *year = 2000 + v;
        return CV_OK;
    }
    if (digits == 4 && v >= 1900) {
        *year = v;
        return CV_OK;
    }
    return CV_ERR_INVALID_EXPIRY;
}

/* The shape of an expiry (see card.h) into *month, *year; both untouched
 * on a refusal (the caller zeroed them). */
static cv_status parse_expiry_shape(const char *s, size_t len, int *month, int *year)
{
    int a = 0, b = 0;
    size_t na = digits_at(s, len, 4, &a);
    if (na == 0 || na == len || (s[na] != '/' && s[na] != '-'))
        return CV_ERR_INVALID_EXPIRY;
    char sep = s[na];
    const char *t = s + na + 1;
    size_t tl = len - na - 1;
    size_t nb = digits_at(t, tl, 4, &b);
    if (nb == 0 || nb != tl)
        return CV_ERR_INVALID_EXPIRY;
    if (na == 4) { /* YYYY-MM */
        if (sep != '-' || nb > 2 || b < 1 || b > 12)
            return CV_ERR_INVALID_EXPIRY;
        CV_TRY(year_of(a, 4, year));
        *month = b;
        return CV_OK;
    }
    if (na > 2 || a < 1 || a > 12) /* MM/YY, MM/YYYY, MM-YY */
        return CV_ERR_INVALID_EXPIRY;
    CV_TRY(year_of(b, nb, year));
    *month = a;
    return CV_OK;
}

cv_status cv_card_parse_expiry(const char *s, size_t len, int *month, int *year)
{
    int m = 0, y = 0;
    *month = 0;
    *year = 0;
    trim(&s, &len);
    CV_TRY(parse_expiry_shape(s, len, &m, &y));
    *month = m;
    *year = y;
    return CV_OK;
}

cv_status cv_card_parse_month(const char *s, size_t len, int *month)
{
    int v = 0;
    *month = 0;
    trim(&s, &len);
    size_t n = digits_at(s, len, 2, &v);
    if (n == 0 || n != len || v < 1 || v > 12)
        return CV_ERR_INVALID_EXPIRY;
    *month = v;
    return CV_OK;
}

cv_status cv_card_parse_year(const char *s, size_t len, int *year)
{
    int v = 0;
    *year = 0;
    trim(&s, &len);
    size_t n = digits_at(s, len, 4, &v);
    if (n == 0 || n != len)
        return CV_ERR_INVALID_EXPIRY;
    return year_of(v, n, year);
}
