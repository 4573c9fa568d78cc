/* fuzz_card.c: card.c's validators on raw bytes, each held to an
 * independent oracle written here: PAN normalisation (single separators
 * between digits only, 12-19 digits, Luhn), Luhn itself, brand lookup on
 * anything (including non-digits and short strings), expiry on hostile
 * 64-bit month/year values and clocks, CVC digits and length by brand, and
 * the cardholder name (valid UTF-8, no controls, not blank, no 12-digit
 * run). The first byte picks the clock and brand; the rest is the value. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_card invariant broken: %s\n", why);
    abort();
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool ref_luhn(const uint8_t *d, size_t n)
{
    unsigned sum = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(d[n - 1 - i]))
            return false;
        unsigned v = (unsigned)(d[n - 1 - i] - '0');
        if (i % 2 == 1)
            v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

/* The PAN rule: digits, and single ' ' or '-' only between two digits. */
static bool ref_pan(const uint8_t *in, size_t n, char *digits, size_t *nd)
{
    *nd = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_digit(in[i])) {
            if (*nd == CV_PAN_MAX_DIGITS)
                return false;
            digits[(*nd)++] = (char)in[i];
        } else if (in[i] == ' ' || in[i] == '-') {
            if (i == 0 || i + 1 == n || !is_digit(in[i - 1]) || !is_digit(in[i + 1]))
                return false;
        } else {
            return false;
        }
    }
    return *nd >= CV_PAN_MIN_DIGITS && ref_luhn((const uint8_t *)digits, *nd);
}

static int64_t read_i64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

static void check_pan(const uint8_t *in, size_t n)
{
    /* The output buffer is heap-allocated at its exact documented size, so a
     * write of a 21st byte is an ASan report. */
    char *out = malloc(CV_PAN_MAX_DIGITS + 1);
    char want[CV_PAN_MAX_DIGITS + 1];
    size_t len = 99, want_len = 0;
    bool ok = cv_card_normalize_pan((const char *)in, n, out, &len) == CV_OK;
    bool ref = ref_pan(in, n, want, &want_len);
    if (ok != ref)
        fail(ok ? "normalize_pan accepted what the rule refuses"
                : "normalize_pan refused a valid PAN");
    if (ok) {
        if (len != want_len || memcmp(out, want, len) != 0 || out[len] != '\0')
            fail("normalize_pan output differs from the digits of the input");
        enum cv_card_brand b = cv_card_brand_of(out, len);
        if (cv_card_brand_name(b) == NULL)
            fail("brand without a name");
    } else {
        if (len != 0)
            fail("refused PAN with a nonzero length");
        for (size_t i = 0; i <= CV_PAN_MAX_DIGITS; i++)
            if (out[i] != 0)
                fail("refused PAN not wiped");
    }
    free(out);
    if (cv_card_luhn_ok((const char *)in, n) != ref_luhn(in, n))
        fail("luhn_ok differs from the oracle");
    (void)cv_card_brand_of((const char *)in, n);
    (void)cv_card_brand_of(NULL, n);
}

static void check_expiry(const uint8_t *in, size_t n, uint8_t sel)
{
    if (n < 16)
        return;
    long long month = read_i64(in), year = read_i64(in + 8);
    int now_month = 1 + sel % 12, now_year = 2000 + sel;
    if (sel & 0x80) { /* hostile clocks too: must fail closed, never crash */
        now_month = (int)(int8_t)sel;
        now_year = (int)(int16_t)(sel * 300);
    }
    bool ok = cv_card_check_expiry(month, year, now_month, now_year) == CV_OK;
    bool clock_ok = now_month >= 1 && now_month <= 12 && now_year >= 1000 && now_year <= 9999;
    long long e =
        (year >= 1000 && year <= 9999 && month >= 1 && month <= 12) ? year * 12 + month - 1 : -1;
    long long now = (long long)now_year * 12 + now_month - 1;
    bool ref = clock_ok && e >= 0 && e >= now && e - now <= 240;
    if (ok != ref)
        fail("check_expiry differs from the oracle");
}

static void check_cvc(const uint8_t *in, size_t n)
{
    for (int b = CV_BRAND_UNKNOWN; b <= CV_BRAND_UNIONPAY; b++) {
        bool ok = cv_card_check_cvc((const char *)in, n, (enum cv_card_brand)b) == CV_OK;
        bool ref = n == (b == CV_BRAND_AMEX ? 4u : 3u);
        for (size_t i = 0; ref && i < n; i++)
            ref = is_digit(in[i]);
        if (ok != ref)
            fail("check_cvc differs from the oracle");
    }
}

static void check_name(const uint8_t *in, size_t n)
{
    if (cv_card_check_name((const char *)in, n) != CV_OK)
        return;
    if (n == 0 || n > CV_NAME_MAX_BYTES)
        fail("accepted a name of the wrong size");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] < 0x20 || in[i] == 0x7f)
            fail("accepted a name with a control byte");
        run = is_digit(in[i]) ? run + 1 : 0;
        if (run >= CV_PAN_MIN_DIGITS)
            fail("accepted a name holding 12 consecutive digits");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    /* Exact-size copy of the value: any read past it is an ASan report. */
    size_t n = size - 1;
    uint8_t *v = malloc(n == 0 ? 1 : n);
    memcpy(v, data + 1, n);
    check_pan(v, n);
    check_expiry(v, n, sel);
    check_cvc(v, n);
    check_name(v, n);
    free(v);
    return 0;
}
