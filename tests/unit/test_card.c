/* test_card.c: card.c against published test PANs (tests/vectors/test-pans.txt,
 * read from the repository root, plus a few inline) and against the inputs a
 * hostile or careless client sends: stray separators, wrong lengths, swapped
 * digits, boundary IINs, expired or far-future dates, and names that are
 * really card numbers. */
#include "cardvault/card.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "test_helpers.h"

#define VECTORS_PATH "tests/vectors/test-pans.txt"
#define VECTORS_MIN  25 /* a truncated or missing file must not pass quietly */

/* A Luhn implementation independent of the one under test: the oracle. */
static bool ref_luhn(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1)
            v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

/* prefix, padded with '0' to total - 1 digits, plus the check digit that
 * makes it Luhn-valid. out needs total + 1 bytes. */
static void make_luhn(const char *prefix, size_t total, char *out)
{
    size_t plen = strlen(prefix);
    memcpy(out, prefix, plen);
    memset(out + plen, '0', total - plen);
    out[total] = '\0';
    for (char c = '0'; c <= '9'; c++) {
        out[total - 1] = c;
        if (ref_luhn(out, total))
            return;
    }
}

static cv_status normalize(const char *s, char out[CV_PAN_MAX_DIGITS + 1], size_t *len)
{
    return cv_card_normalize_pan(s, strlen(s), out, len);
}

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0)
            return false;
    }
    return true;
}

/* Calls fn(pan, brand) for every vector in the file; returns how many. */
static int for_each_vector(void (*fn)(const char *pan, const char *brand))
{
    char line[256], pan[64], brand[32];
    int count = 0;
    FILE *f = fopen(VECTORS_PATH, "r");

    CHECK(f != NULL);
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\0')
            continue;
        CHECK_EQ_INT(sscanf(p, "%63s %31s", pan, brand), 2);
        fn(pan, brand);
        count++;
    }
    fclose(f);
    return count;
}

static void check_vector_accepted(const char *pan, const char *brand)
{
    char out[CV_PAN_MAX_DIGITS + 1];
    size_t len = 99;

    CHECK_EQ_INT(normalize(pan, out, &len), CV_OK);
    CHECK_EQ_INT(len, strlen(pan));
    CHECK(strcmp(out, pan) == 0);
    CHECK(cv_card_luhn_ok(pan, strlen(pan)));
    if (strcmp(cv_card_brand_name(cv_card_brand_of(pan, strlen(pan))), brand) != 0) {
        fprintf(stderr, "  brand mismatch for vector ending %s: got %s, want %s\n",
                pan + strlen(pan) - 4, cv_card_brand_name(cv_card_brand_of(pan, strlen(pan))),
                brand);
        CHECK(0);
    }
}

static void check_vector_rejected_with_wrong_check_digit(const char *pan, const char *brand)
{
    char copy[64], out[CV_PAN_MAX_DIGITS + 1];
    size_t n = strlen(pan), len;
    (void)brand;

    memcpy(copy, pan, n + 1);
    for (char c = '0'; c <= '9'; c++) {
        if (c == pan[n - 1])
            continue;
        copy[n - 1] = c;
        CHECK_EQ_INT(normalize(copy, out, &len), CV_ERR_INVALID_PAN);
        CHECK(!cv_card_luhn_ok(copy, n));
    }
}

static void vectors_file_pans_are_accepted_with_their_brand(void)
{
    CHECK(for_each_vector(check_vector_accepted) >= VECTORS_MIN);
}

static void vectors_file_pans_are_rejected_with_any_other_check_digit(void)
{
    CHECK(for_each_vector(check_vector_rejected_with_wrong_check_digit) >= VECTORS_MIN);
}

static void inline_published_pans_get_their_brand(void)
{
    static const struct {
        const char *pan;
        enum cv_card_brand brand;
    } cases[] = {
        {"4242424242424242", CV_BRAND_VISA},       {"5555555555554444", CV_BRAND_MASTERCARD},
        {"2223003122003222", CV_BRAND_MASTERCARD}, {"378282246310005", CV_BRAND_AMEX},
        {"6011111111111117", CV_BRAND_DISCOVER},   {"3056930009020004", CV_BRAND_DINERS},
        {"36227206271667", CV_BRAND_DINERS},       {"3566002020360505", CV_BRAND_JCB},
        {"6200000000000005", CV_BRAND_UNIONPAY},   {"6205500000000000004", CV_BRAND_UNIONPAY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[CV_PAN_MAX_DIGITS + 1];
        size_t len;
        CHECK_EQ_INT(normalize(cases[i].pan, out, &len), CV_OK);
        CHECK_EQ_INT(cv_card_brand_of(out, len), cases[i].brand);
    }
}

static void inline_published_pans_off_by_one_digit_are_rejected(void)
{
    /* Each is a published PAN with one digit changed. */
    static const char *const bad[] = {"4242424242424241", "5555555555554445", "378282246310006",
                                      "6011111111111118", "3566002020360506", "6200000000000006"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[CV_PAN_MAX_DIGITS + 1];
        size_t len;
        CHECK_EQ_INT(normalize(bad[i], out, &len), CV_ERR_INVALID_PAN);
    }
}

static void normalize_drops_single_spaces_and_hyphens_between_digits(void)
{
    static const char *const ok[] = {"4242 4242 4242 4242", "4242-4242-4242-4242",
                                     "3782 822463 10005", "4242-4242 4242-4242",
                                     "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2"};
    static const char *const want[] = {"4242424242424242", "4242424242424242", "378282246310005",
                                       "4242424242424242", "4242424242424242"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char out[CV_PAN_MAX_DIGITS + 1];
        size_t len = 0;
        CHECK_EQ_INT(normalize(ok[i], out, &len), CV_OK);
        CHECK(strcmp(out, want[i]) == 0);
        CHECK_EQ_INT(len, strlen(want[i]));
    }
}

static void normalize_rejects_misplaced_separators_and_foreign_chars(void)
{
    static const char *const bad[] = {
        " 4242424242424242",
        "4242424242424242 ",
        "-4242424242424242",
        "4242424242424242-",
        "4242  4242 4242 4242",
        "4242--4242-4242-4242",
        "4242 -4242 4242 4242",
        "4242\t4242424242424242",
        "4242.4242.4242.4242",
        "4242/4242/4242/4242",
        "+4242424242424242",
        "4242424242424242\n",
        "424242424242424a",
        "\357\274\224242424242424242", /* U+FF14 FULLWIDTH DIGIT FOUR, then 15 digits */
        "",
        " ",
        "-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[CV_PAN_MAX_DIGITS + 1];
        size_t len = 99;
        CHECK_EQ_INT(normalize(bad[i], out, &len), CV_ERR_INVALID_PAN);
        CHECK_EQ_INT(len, 0);
    }
}

static void normalize_rejects_embedded_nul_and_null_input(void)
{
    /* The length says 17 bytes; a C-string view would see a valid 8-digit prefix only. */
    static const char with_nul[] = "4242424242424242\0";
    static const char nul_inside[] = "42424242\0"
                                     "42424242";
    char out[CV_PAN_MAX_DIGITS + 1];
    size_t len;

    CHECK_EQ_INT(cv_card_normalize_pan(with_nul, sizeof with_nul - 1, out, &len),
                 CV_ERR_INVALID_PAN);
    CHECK_EQ_INT(cv_card_normalize_pan(nul_inside, sizeof nul_inside - 1, out, &len),
                 CV_ERR_INVALID_PAN);
    CHECK_EQ_INT(cv_card_normalize_pan(NULL, 16, out, &len), CV_ERR_INVALID_PAN);
    /* The same bytes up to the NUL, with an honest length, are fine. */
    CHECK_EQ_INT(cv_card_normalize_pan(with_nul, 16, out, &len), CV_OK);
}

static void normalize_judges_a_trailing_separator_by_in_len_not_later_bytes(void)
{
    /* Within in_len the input ends in a space; the digit after it is not ours to read. */
    static const char s[] = "4242424242424242 4";
    char out[CV_PAN_MAX_DIGITS + 1];
    size_t len;

    CHECK_EQ_INT(cv_card_normalize_pan(s, 17, out, &len), CV_ERR_INVALID_PAN);
}

static void normalize_accepts_12_to_19_digits(void)
{
    for (size_t n = CV_PAN_MIN_DIGITS; n <= CV_PAN_MAX_DIGITS; n++) {
        char pan[32], out[CV_PAN_MAX_DIGITS + 1];
        size_t len = 0;
        make_luhn("4", n, pan);
        CHECK_EQ_INT(normalize(pan, out, &len), CV_OK);
        CHECK_EQ_INT(len, n);
        CHECK_EQ_INT(out[len], '\0');
    }
}

static void normalize_rejects_11_and_20_digits_even_when_luhn_valid(void)
{
    char pan[32], out[CV_PAN_MAX_DIGITS + 1];
    size_t len;

    make_luhn("4", 11, pan);
    CHECK(ref_luhn(pan, 11));
    CHECK_EQ_INT(normalize(pan, out, &len), CV_ERR_INVALID_PAN);
    make_luhn("4", 20, pan);
    CHECK(ref_luhn(pan, 20));
    CHECK_EQ_INT(normalize(pan, out, &len), CV_ERR_INVALID_PAN);
}

static void normalize_rejects_huge_input_without_overrunning(void)
{
    static char big[4096];
    char out[CV_PAN_MAX_DIGITS + 1];
    size_t len;

    memset(big, '0', sizeof big); /* all zeros is Luhn-valid: only the length can reject it */
    CHECK_EQ_INT(cv_card_normalize_pan(big, sizeof big, out, &len), CV_ERR_INVALID_PAN);
}

static void normalize_wipes_output_on_every_failure(void)
{
    /* Luhn failure (all 16 digits written first), too long, bad char late. */
    static const char *const bad[] = {"4242424242424241", "42424242424242424242",
                                      "424242424242424x", "4242 4242 4242 4242 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[CV_PAN_MAX_DIGITS + 1];
        size_t len = 99;
        memset(out, 'X', sizeof out);
        CHECK_EQ_INT(normalize(bad[i], out, &len), CV_ERR_INVALID_PAN);
        CHECK(all_zero(out, sizeof out));
        CHECK_EQ_INT(len, 0);
    }
}

static void luhn_rejects_swapped_digits(void)
{
    /* Luhn catches every adjacent transposition except 09 <-> 90. */
    static const char *const pans[] = {"4242424242424242", "5555555555554444", "378282246310005",
                                       "3566002020360505", "6011000990139424"};
    int swaps = 0;
    for (size_t p = 0; p < sizeof pans / sizeof pans[0]; p++) {
        char d[32];
        size_t n = strlen(pans[p]);
        for (size_t i = 0; i + 1 < n; i++) {
            char a = pans[p][i], b = pans[p][i + 1];
            if (a == b || (a == '0' && b == '9') || (a == '9' && b == '0'))
                continue;
            memcpy(d, pans[p], n + 1);
            d[i] = b;
            d[i + 1] = a;
            CHECK(!cv_card_luhn_ok(d, n));
            swaps++;
        }
    }
    CHECK(swaps > 30);
}

static void luhn_accepts_a_09_swap_its_known_blind_spot(void)
{
    /* The documented blind spot of mod 10: both orders pass. Recorded so nobody
     * mistakes Luhn for an integrity check. */
    char pan[32];
    make_luhn("4090", 16, pan);
    CHECK(cv_card_luhn_ok(pan, 16));
    pan[1] = '9';
    pan[2] = '0';
    CHECK(cv_card_luhn_ok(pan, 16));
}

static void luhn_rejects_every_single_digit_error(void)
{
    char d[] = "4242424242424242";
    for (size_t i = 0; i < sizeof d - 1; i++) {
        char orig = d[i];
        for (char c = '0'; c <= '9'; c++) {
            if (c == orig)
                continue;
            d[i] = c;
            CHECK(!cv_card_luhn_ok(d, sizeof d - 1));
        }
        d[i] = orig;
    }
    CHECK(cv_card_luhn_ok(d, sizeof d - 1));
}

static void luhn_rejects_empty_null_and_non_digits(void)
{
    CHECK(!cv_card_luhn_ok("", 0));
    CHECK(!cv_card_luhn_ok(NULL, 16));
    /* ':' is '9' + 1: a sloppy "c - '0'" would read it as 10 and might pass. */
    CHECK(!cv_card_luhn_ok("424242424242424:", 16));
    CHECK(!cv_card_luhn_ok("4242 42424242424", 16));
    CHECK(!cv_card_luhn_ok("0000000000000000\0", 17));
    CHECK(cv_card_luhn_ok("0000000000000000", 16));
}

static void brand_follows_iin_range_boundaries(void)
{
    static const struct {
        const char *prefix;
        enum cv_card_brand brand;
    } cases[] = {
        {"4", CV_BRAND_VISA},        {"49", CV_BRAND_VISA},         {"50", CV_BRAND_UNKNOWN},
        {"51", CV_BRAND_MASTERCARD}, {"55", CV_BRAND_MASTERCARD},   {"56", CV_BRAND_UNKNOWN},
        {"2220", CV_BRAND_UNKNOWN},  {"2221", CV_BRAND_MASTERCARD}, {"2720", CV_BRAND_MASTERCARD},
        {"2721", CV_BRAND_UNKNOWN},  {"33", CV_BRAND_UNKNOWN},      {"34", CV_BRAND_AMEX},
        {"37", CV_BRAND_AMEX},       {"3527", CV_BRAND_UNKNOWN},    {"3528", CV_BRAND_JCB},
        {"3589", CV_BRAND_JCB},      {"3590", CV_BRAND_UNKNOWN},    {"6010", CV_BRAND_UNKNOWN},
        {"6011", CV_BRAND_DISCOVER}, {"6012", CV_BRAND_UNKNOWN},    {"643", CV_BRAND_UNKNOWN},
        {"644", CV_BRAND_DISCOVER},  {"649", CV_BRAND_DISCOVER},    {"65", CV_BRAND_DISCOVER},
        {"62", CV_BRAND_UNIONPAY},   {"622126", CV_BRAND_UNIONPAY}, {"622925", CV_BRAND_UNIONPAY},
        {"63", CV_BRAND_UNKNOWN},    {"300", CV_BRAND_DINERS},      {"305", CV_BRAND_DINERS},
        {"306", CV_BRAND_UNKNOWN},   {"3094", CV_BRAND_UNKNOWN},    {"3095", CV_BRAND_DINERS},
        {"3096", CV_BRAND_UNKNOWN},  {"36", CV_BRAND_DINERS},       {"38", CV_BRAND_DINERS},
        {"39", CV_BRAND_DINERS},     {"35", CV_BRAND_UNKNOWN},      {"81", CV_BRAND_UNKNOWN},
        {"1", CV_BRAND_UNKNOWN},     {"0", CV_BRAND_UNKNOWN},       {"9", CV_BRAND_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pan[32];
        make_luhn(cases[i].prefix, 16, pan);
        if (cv_card_brand_of(pan, 16) != cases[i].brand) {
            fprintf(stderr, "  prefix %s: got %s\n", cases[i].prefix,
                    cv_card_brand_name(cv_card_brand_of(pan, 16)));
            CHECK(0);
        }
    }
}

static void brand_is_unknown_for_short_null_or_non_digit_input(void)
{
    CHECK_EQ_INT(cv_card_brand_of(NULL, 16), CV_BRAND_UNKNOWN);
    CHECK_EQ_INT(cv_card_brand_of("", 0), CV_BRAND_UNKNOWN);
    /* Too short to reach the 4-digit ranges: must not read past len. */
    CHECK_EQ_INT(cv_card_brand_of("222", 3), CV_BRAND_UNKNOWN);
    CHECK_EQ_INT(cv_card_brand_of("2221", 3), CV_BRAND_UNKNOWN);
    CHECK_EQ_INT(cv_card_brand_of("2221", 4), CV_BRAND_MASTERCARD);
    CHECK_EQ_INT(cv_card_brand_of("3x", 2), CV_BRAND_UNKNOWN);
    CHECK_EQ_INT(cv_card_brand_of("5:", 2), CV_BRAND_UNKNOWN);
}

static void brand_names_are_the_api_strings(void)
{
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_VISA), "visa") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_MASTERCARD), "mastercard") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_AMEX), "amex") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_DISCOVER), "discover") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_JCB), "jcb") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_DINERS), "diners") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_UNIONPAY), "unionpay") == 0);
    CHECK(strcmp(cv_card_brand_name(CV_BRAND_UNKNOWN), "unknown") == 0);
}

static void brand_name_of_out_of_range_value_is_unknown(void)
{
    CHECK(strcmp(cv_card_brand_name((enum cv_card_brand)99), "unknown") == 0);
    CHECK(strcmp(cv_card_brand_name((enum cv_card_brand) - 1), "unknown") == 0);
}

static void expiry_accepts_current_month_through_20_years_ahead(void)
{
    CHECK_EQ_INT(cv_card_check_expiry(6, 2025, 6, 2025), CV_OK);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2025, 6, 2025), CV_OK);
    CHECK_EQ_INT(cv_card_check_expiry(1, 2026, 6, 2025), CV_OK);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2044, 6, 2025), CV_OK);
    CHECK_EQ_INT(cv_card_check_expiry(6, 2045, 6, 2025), CV_OK);  /* exactly 240 months */
    CHECK_EQ_INT(cv_card_check_expiry(1, 2026, 12, 2025), CV_OK); /* across New Year */
    CHECK_EQ_INT(cv_card_check_expiry(12, 2045, 12, 2025), CV_OK);
}

static void expiry_rejects_past_far_future_and_malformed(void)
{
    CHECK_EQ_INT(cv_card_check_expiry(5, 2025, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2024, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(11, 2025, 12, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(7, 2045, 6, 2025), CV_ERR_INVALID_EXPIRY); /* 241 months */
    CHECK_EQ_INT(cv_card_check_expiry(1, 2046, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(0, 2030, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(13, 2030, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(-1, 2030, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 30, 6, 2025), CV_ERR_INVALID_EXPIRY); /* two digits */
    CHECK_EQ_INT(cv_card_check_expiry(12, 999, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 10000, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(LLONG_MAX, 2030, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, LLONG_MAX, 6, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(LLONG_MIN, LLONG_MIN, 6, 2025), CV_ERR_INVALID_EXPIRY);
    /* month 12 + 4294967296 would look like 12 if truncated to 32 bits */
    CHECK_EQ_INT(cv_card_check_expiry(12LL + 4294967296LL, 2030, 6, 2025), CV_ERR_INVALID_EXPIRY);
}

static void expiry_fails_closed_on_a_broken_clock(void)
{
    CHECK_EQ_INT(cv_card_check_expiry(12, 2030, 0, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2030, 13, 2025), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2030, 6, 0), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_check_expiry(12, 2030, 6, INT_MIN), CV_ERR_INVALID_EXPIRY);
}

static void cvc_accepts_three_digits_or_four_for_amex(void)
{
    CHECK_EQ_INT(cv_card_check_cvc("123", 3, CV_BRAND_VISA), CV_OK);
    CHECK_EQ_INT(cv_card_check_cvc("000", 3, CV_BRAND_MASTERCARD), CV_OK);
    CHECK_EQ_INT(cv_card_check_cvc("999", 3, CV_BRAND_UNKNOWN), CV_OK);
    CHECK_EQ_INT(cv_card_check_cvc("1234", 4, CV_BRAND_AMEX), CV_OK);
}

static void cvc_rejects_wrong_length_for_brand_and_non_digits(void)
{
    static const char nul_cvc[] = "12\0";
    CHECK_EQ_INT(cv_card_check_cvc("1234", 4, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("123", 3, CV_BRAND_AMEX), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("12", 2, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("", 0, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc(NULL, 3, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("12a", 3, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc(" 123", 4, CV_BRAND_AMEX), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("-12", 3, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc(nul_cvc, 3, CV_BRAND_VISA), CV_ERR_INVALID_CVC);
    CHECK_EQ_INT(cv_card_check_cvc("12345", 5, CV_BRAND_AMEX), CV_ERR_INVALID_CVC);
}

static cv_status name(const char *s)
{
    return cv_card_check_name(s, strlen(s));
}

static void name_accepts_ordinary_and_international_names(void)
{
    char longest[CV_NAME_MAX_BYTES + 1];

    CHECK_EQ_INT(name("Jane Doe"), CV_OK);
    CHECK_EQ_INT(name("J"), CV_OK);
    CHECK_EQ_INT(name("Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m"), CV_OK);    /* Zoë Ångström */
    CHECK_EQ_INT(name("\xe6\x9d\x8e\xe5\xb0\x8f\xe9\xbe\x8d"), CV_OK); /* 李小龍 */
    CHECK_EQ_INT(name("\xf0\x9f\x98\x80 Smile"), CV_OK);               /* 4-byte UTF-8 */
    CHECK_EQ_INT(name("Mary-Jane O'Neil, Jr."), CV_OK);
    CHECK_EQ_INT(name("Louis 14"), CV_OK);
    CHECK_EQ_INT(name("Agent 12345678901"), CV_OK);  /* 11 digits */
    CHECK_EQ_INT(name("123 456 789 01 - 2"), CV_OK); /* " - " breaks the run */
    memset(longest, 'a', CV_NAME_MAX_BYTES);
    longest[CV_NAME_MAX_BYTES] = '\0';
    CHECK_EQ_INT(name(longest), CV_OK);
}

static void name_rejects_empty_blank_and_oversized(void)
{
    char too_long[CV_NAME_MAX_BYTES + 2];

    CHECK_EQ_INT(name(""), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(cv_card_check_name(NULL, 4), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name(" "), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("     "), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("\xc2\xa0\xc2\xa0"), CV_ERR_INVALID_NAME);         /* NBSP */
    CHECK_EQ_INT(name("\xe3\x80\x80"), CV_ERR_INVALID_NAME);             /* ideographic space */
    CHECK_EQ_INT(name("\xe2\x80\x8b\xef\xbb\xbf"), CV_ERR_INVALID_NAME); /* ZWSP, BOM */
    memset(too_long, 'a', CV_NAME_MAX_BYTES + 1);
    too_long[CV_NAME_MAX_BYTES + 1] = '\0';
    CHECK_EQ_INT(name(too_long), CV_ERR_INVALID_NAME);
    /* 127 ASCII bytes + a 2-byte character = 129 bytes, though 128 characters. */
    memset(too_long, 'a', CV_NAME_MAX_BYTES - 1);
    memcpy(too_long + CV_NAME_MAX_BYTES - 1, "\xc3\xa9", 3);
    CHECK_EQ_INT(name(too_long), CV_ERR_INVALID_NAME);
}

static void name_rejects_control_characters(void)
{
    static const char with_nul[] = "Jane\0Doe";
    CHECK_EQ_INT(name("Jane\nDoe"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane\rDoe"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane\tDoe"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane\x1b[31mDoe"), CV_ERR_INVALID_NAME); /* terminal escape */
    CHECK_EQ_INT(name("Jane\x7f"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane\xc2\x85"), CV_ERR_INVALID_NAME); /* U+0085 NEL, a C1 control */
    CHECK_EQ_INT(cv_card_check_name(with_nul, sizeof with_nul - 1), CV_ERR_INVALID_NAME);
}

static void name_rejects_malformed_utf8(void)
{
    CHECK_EQ_INT(name("Jane \xff"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane \xc3"), CV_ERR_INVALID_NAME);        /* truncated */
    CHECK_EQ_INT(name("Jane \xe6\x9d"), CV_ERR_INVALID_NAME);    /* truncated */
    CHECK_EQ_INT(name("\x80 Jane"), CV_ERR_INVALID_NAME);        /* stray continuation */
    CHECK_EQ_INT(name("\xc0\xaf"), CV_ERR_INVALID_NAME);         /* overlong '/' */
    CHECK_EQ_INT(name("\xc1\x81"), CV_ERR_INVALID_NAME);         /* overlong 'A' */
    CHECK_EQ_INT(name("\xe0\x80\xaf"), CV_ERR_INVALID_NAME);     /* overlong, 3 bytes */
    CHECK_EQ_INT(name("\xf0\x80\x80\xaf"), CV_ERR_INVALID_NAME); /* overlong, 4 bytes */
    CHECK_EQ_INT(name("\xed\xa0\x80"), CV_ERR_INVALID_NAME);     /* surrogate U+D800 */
    CHECK_EQ_INT(name("\xf4\x90\x80\x80"), CV_ERR_INVALID_NAME); /* U+110000 */
    CHECK_EQ_INT(name("\xf5\x80\x80\x80"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("\xe6\x41\x8d"), CV_ERR_INVALID_NAME); /* ASCII inside a sequence */
    /* Boundaries that are valid: U+D7FF, U+E000, U+10FFFF. */
    CHECK_EQ_INT(name("\xed\x9f\xbf"), CV_OK);
    CHECK_EQ_INT(name("\xee\x80\x80"), CV_OK);
    CHECK_EQ_INT(name("\xf4\x8f\xbf\xbf"), CV_OK);
}

static void name_rejects_a_pan_typed_into_it(void)
{
    CHECK_EQ_INT(name("4242424242424242"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane 424242424242"), CV_ERR_INVALID_NAME); /* exactly 12 */
    CHECK_EQ_INT(name("4242 4242 4242 4242"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("Jane Doe 4242-4242-4242-4242"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("3782 822463 10005 Jane"), CV_ERR_INVALID_NAME);
    CHECK_EQ_INT(name("1234 5678 901 2"), CV_ERR_INVALID_NAME); /* 12 digits, any grouping */
}

static struct cv_card_plain plain_card(const char *pan, int month, int year, const char *name)
{
    return test_card(pan, month, year, name);
}

static void encode_follows_the_documented_layout(void)
{
    struct cv_card_plain c = plain_card("4242424242424242", 12, 2030, "AL");
    unsigned char out[CV_CARD_ENCODED_MAX];
    size_t len = 0;
    CHECK_EQ_INT(cv_card_encode(&c, out, sizeof(out), &len), CV_OK);
    const unsigned char want[] = {16,  '4', '2', '4', '2', '4', '2',  '4',  '2', '4', '2', '4',
                                  '2', '4', '2', '4', '2', 12,  0x07, 0xEE, 2,   'A', 'L'};
    CHECK_EQ_INT(len, sizeof(want));
    CHECK(len == sizeof(want) && memcmp(out, want, len) == 0);
    c = plain_card("378282246310005", 1, 2031, NULL);
    CHECK_EQ_INT(cv_card_encode(&c, out, sizeof(out), &len), CV_OK);
    CHECK_EQ_INT(len, 1 + 15 + 4);
    CHECK_EQ_INT(out[len - 1], CV_CARD_NO_NAME);
}

static void encode_decode_round_trip_at_the_limits(void)
{
    char name[CV_NAME_MAX_BYTES + 1];
    memset(name, 'N', CV_NAME_MAX_BYTES);
    name[CV_NAME_MAX_BYTES] = '\0';
    const struct cv_card_plain cards[] = {
        plain_card("6011000990139424123", 12, 9999, name), /* 19 digits, longest name */
        plain_card("123456789012", 1, 2026, ""),           /* 12 digits, has_name but empty */
        plain_card("4111111111111111", 6, 2030, NULL),
    };
    for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) {
        unsigned char out[CV_CARD_ENCODED_MAX];
        size_t len = 0;
        struct cv_card_plain back;
        CHECK_EQ_INT(cv_card_encode(&cards[i], out, sizeof(out), &len), CV_OK);
        CHECK(len <= CV_CARD_ENCODED_MAX);
        CHECK_EQ_INT(cv_card_decode(out, len, &back), CV_OK);
        CHECK(strcmp(back.pan, cards[i].pan) == 0);
        CHECK_EQ_INT(back.exp_month, cards[i].exp_month);
        CHECK_EQ_INT(back.exp_year, cards[i].exp_year);
        CHECK_EQ_INT(back.has_name, cards[i].has_name);
        CHECK(strcmp(back.name, cards[i].name) == 0);
    }
}

static void encode_refuses_a_small_buffer_and_unencodable_fields(void)
{
    struct cv_card_plain c = plain_card("4242424242424242", 12, 2030, "AL");
    unsigned char out[CV_CARD_ENCODED_MAX];
    size_t len = 0;
    CHECK_EQ_INT(cv_card_encode(&c, out, 22, &len), CV_ERR_INTERNAL); /* needs 23 */
    CHECK_EQ_INT(cv_card_encode(&c, out, 23, &len), CV_OK);
    struct cv_card_plain bad = plain_card("42424242424", 12, 2030, NULL); /* 11 digits */
    CHECK_EQ_INT(cv_card_encode(&bad, out, sizeof(out), &len), CV_ERR_INTERNAL);
    bad = plain_card("4242424242424242", 256, 2030, NULL);
    CHECK_EQ_INT(cv_card_encode(&bad, out, sizeof(out), &len), CV_ERR_INTERNAL);
    bad = plain_card("4242424242424242", 12, 65536, NULL);
    CHECK_EQ_INT(cv_card_encode(&bad, out, sizeof(out), &len), CV_ERR_INTERNAL);
}

static void decode_rejects_bytes_off_the_layout(void)
{
    struct cv_card_plain c = plain_card("4242424242424242", 12, 2030, "AL"), back;
    unsigned char out[CV_CARD_ENCODED_MAX + 1];
    size_t len = 0;
    CHECK_EQ_INT(cv_card_encode(&c, out, sizeof(out), &len), CV_OK);
    for (size_t cut = 0; cut < len; cut++) /* every truncation */
        CHECK_EQ_INT(cv_card_decode(out, cut, &back), CV_ERR_INTEGRITY);
    out[len] = 'X'; /* a trailing byte */
    CHECK_EQ_INT(cv_card_decode(out, len + 1, &back), CV_ERR_INTEGRITY);
    CHECK(back.pan[0] == '\0'); /* wiped on failure */
    unsigned char pan11[] = {11,  '1', '2', '3', '4', '5', '6',  '7',
                             '8', '9', '0', '1', 1,   7,   0xEE, 0xff};
    CHECK_EQ_INT(cv_card_decode(pan11, sizeof(pan11), &back), CV_ERR_INTEGRITY);
    out[0] = 20;
    CHECK_EQ_INT(cv_card_decode(out, len, &back), CV_ERR_INTEGRITY);
    CHECK_EQ_INT(cv_card_encode(&c, out, sizeof(out), &len), CV_OK);
    out[1 + 16 + 3] = 129; /* name_len past the limit */
    CHECK_EQ_INT(cv_card_decode(out, len, &back), CV_ERR_INTEGRITY);
}

/* What tokenize stores in the clear and every open checks: first six, last
 * four, brand name; zero-padded. */
static void display_of_gives_bin_last4_and_brand(void)
{
    struct cv_card_display d;
    CHECK_EQ_INT(cv_card_display_of("378282246310005", &d), CV_OK);
    CHECK(strcmp(d.bin, "378282") == 0 && strcmp(d.last4, "0005") == 0 &&
          strcmp(d.brand, "amex") == 0);
    CHECK_EQ_INT(cv_card_display_of("4000000000000000006", &d), CV_OK);
    CHECK(strcmp(d.bin, "400000") == 0 && strcmp(d.last4, "0006") == 0 &&
          strcmp(d.brand, "visa") == 0);
    CHECK_EQ_INT(cv_card_display_of("999999999999", &d), CV_OK);
    CHECK(strcmp(d.bin, "999999") == 0 && strcmp(d.last4, "9999") == 0 &&
          strcmp(d.brand, "unknown") == 0);
    for (size_t i = strlen(d.brand); i < sizeof(d.brand); i++)
        CHECK(d.brand[i] == '\0');
}

static void display_of_refuses_what_is_not_a_normalized_pan(void)
{
    static const char *const bad[] = {"",
                                      "42424242424",
                                      "4242 4242 4242 4242",
                                      "4242-424242424242",
                                      "42424242424242x",
                                      "\t4242424242424242"};
    struct cv_card_display d;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&d, 0x55, sizeof(d));
        CHECK_EQ_INT(cv_card_display_of(bad[i], &d), CV_ERR_INVALID_PAN);
        CHECK(d.bin[0] == '\0' && d.last4[0] == '\0' && d.brand[0] == '\0');
    }
    /* Twenty digits, no NUL within the PAN's buffer. */
    char twenty[CV_PAN_MAX_DIGITS + 1];
    memset(twenty, '4', sizeof(twenty));
    CHECK_EQ_INT(cv_card_display_of(twenty, &d), CV_ERR_INVALID_PAN);
}

static void parse_expiry_reads_legacy_shapes(void)
{
    struct {
        const char *in;
        int month, year;
    } ok[] = {{"12/30", 12, 2030},  {"1/30", 1, 2030},   {"01/2031", 1, 2031}, {"2032-07", 7, 2032},
              {" 09/29 ", 9, 2029}, {"11-28", 11, 2028}, {"2032-7", 7, 2032}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int m = 0, y = 0;
        CHECK_EQ_INT(cv_card_parse_expiry(ok[i].in, strlen(ok[i].in), &m, &y), CV_OK);
        CHECK_EQ_INT(m, ok[i].month);
        CHECK_EQ_INT(y, ok[i].year);
    }
    const char *bad[] = {"",       "13/30",   "00/30",   "12/3",    "12/303", "2032/07", "2032-13",
                         "12.30",  "1230",    "12/30x",  "/30",     "12/",    "123/30",  "-1/30",
                         "12//30", "0012/30", "12/0030", "1899-01", "2/330",  NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        int m = 0, y = 0;
        if (cv_card_parse_expiry(bad[i], strlen(bad[i]), &m, &y) != CV_ERR_INVALID_EXPIRY)
            fprintf(stderr, "  accepted [%s]\n", bad[i]);
        m = 7;
        y = 7;
        CHECK_EQ_INT(cv_card_parse_expiry(bad[i], strlen(bad[i]), &m, &y), CV_ERR_INVALID_EXPIRY);
        CHECK(m == 0 && y == 0); /* a refusal leaves nothing half set */
    }
    int m = 0, y = 0;
    CHECK_EQ_INT(cv_card_parse_month("7", 1, &m), CV_OK);
    CHECK_EQ_INT(m, 7);
    CHECK_EQ_INT(cv_card_parse_month("13", 2, &m), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_parse_month("007", 3, &m), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_parse_year("31", 2, &y), CV_OK);
    CHECK_EQ_INT(y, 2031);
    CHECK_EQ_INT(cv_card_parse_year("2031", 4, &y), CV_OK);
    CHECK_EQ_INT(cv_card_parse_year("203", 3, &y), CV_ERR_INVALID_EXPIRY);
    CHECK_EQ_INT(cv_card_parse_year("20311", 5, &y), CV_ERR_INVALID_EXPIRY);
}

int main(void)
{
    RUN(display_of_gives_bin_last4_and_brand);
    RUN(display_of_refuses_what_is_not_a_normalized_pan);
    RUN(vectors_file_pans_are_accepted_with_their_brand);
    RUN(parse_expiry_reads_legacy_shapes);
    RUN(vectors_file_pans_are_rejected_with_any_other_check_digit);
    RUN(inline_published_pans_get_their_brand);
    RUN(inline_published_pans_off_by_one_digit_are_rejected);
    RUN(normalize_drops_single_spaces_and_hyphens_between_digits);
    RUN(normalize_rejects_misplaced_separators_and_foreign_chars);
    RUN(normalize_rejects_embedded_nul_and_null_input);
    RUN(normalize_judges_a_trailing_separator_by_in_len_not_later_bytes);
    RUN(normalize_accepts_12_to_19_digits);
    RUN(normalize_rejects_11_and_20_digits_even_when_luhn_valid);
    RUN(normalize_rejects_huge_input_without_overrunning);
    RUN(normalize_wipes_output_on_every_failure);
    RUN(luhn_rejects_swapped_digits);
    RUN(luhn_accepts_a_09_swap_its_known_blind_spot);
    RUN(luhn_rejects_every_single_digit_error);
    RUN(luhn_rejects_empty_null_and_non_digits);
    RUN(brand_follows_iin_range_boundaries);
    RUN(brand_is_unknown_for_short_null_or_non_digit_input);
    RUN(brand_names_are_the_api_strings);
    RUN(brand_name_of_out_of_range_value_is_unknown);
    RUN(expiry_accepts_current_month_through_20_years_ahead);
    RUN(expiry_rejects_past_far_future_and_malformed);
    RUN(expiry_fails_closed_on_a_broken_clock);
    RUN(cvc_accepts_three_digits_or_four_for_amex);
    RUN(cvc_rejects_wrong_length_for_brand_and_non_digits);
    RUN(name_accepts_ordinary_and_international_names);
    RUN(name_rejects_empty_blank_and_oversized);
    RUN(name_rejects_control_characters);
    RUN(name_rejects_malformed_utf8);
    RUN(name_rejects_a_pan_typed_into_it);
    RUN(encode_follows_the_documented_layout);
    RUN(encode_decode_round_trip_at_the_limits);
    RUN(encode_refuses_a_small_buffer_and_unencodable_fields);
    RUN(decode_rejects_bytes_off_the_layout);
    return check_summary("card");
}
