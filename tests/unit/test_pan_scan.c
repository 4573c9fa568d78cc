/* test_pan_scan.c: the PAN scanner on every encoding it claims (plain,
 * spaced, hyphenated, JSON escapes, full-width, UTF-16 at both alignments),
 * on decoys it must ignore (order numbers, phone numbers, timestamps, hash
 * digests, tokens), on megabytes of random bytes where it must find nothing,
 * and as a stream: the same hits with the same offsets however the input is
 * cut into chunks, and never a full card number in what it reports. */
#include "cardvault/pan_scan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static struct cv_pan_scan_summary scan(const void *buf, size_t len, enum cv_pan_scan_mode k)
{
    struct cv_pan_scan_summary r;
    memset(&r, 0, sizeof(r));
    cv_pan_scan_value(buf, len, k, &r);
    return r;
}

static struct cv_pan_scan_summary scan_text(const char *s)
{
    return scan(s, strlen(s), CV_PAN_SCAN_TEXT);
}

static void scan_finds_plain_spaced_and_hyphenated_pans(void)
{
    const char *hits[] = {
        "4111111111111111",
        "card 4111 1111 1111 1111 exp 12/30",
        "card:4111-1111-1111-1111;",
        "4111 1111-1111 1111", /* mixed separators: cardvault's own parser accepts them */
        "378282246310005",     /* amex, 15 */
        "3782 822463 10005",   /* amex 4-6-5 */
        "x6011000990139424x",  /* letters around it */
        "{\"pan\":4111111111111111}",
        "{4111111111111111,5555555555554444}",
        "4000056655665556.00",
        "2024-01-15 4111111111111111", /* a date glued on by a single space */
        NULL};
    for (size_t i = 0; hits[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_text(hits[i]);
        if (r.matches == 0)
            fprintf(stderr, "  missed: case %zu\n", i);
        CHECK(r.matches >= 1);
    }
    struct cv_pan_scan_summary r = scan_text("{4111111111111111,5555555555554444}");
    CHECK_EQ_INT(r.matches, 2);
    CHECK(strcmp(r.sample, "411111******1111") == 0);
    CHECK(strcmp(r.sample_encoding, "utf8") == 0);
}

static void scan_ignores_near_misses(void)
{
    const char *clean[] = {"4111111111111112",              /* Luhn fails */
                           "41111111111111111111",          /* 20 digits: no PAN is that long */
                           "141111111111111111112",         /* a PAN inside a 21-digit number */
                           "41111111111",                   /* 11 digits */
                           "4111--1111--1111--1111",        /* doubled separators */
                           "4111_1111_1111_1111",           /* underscore is not a separator */
                           "tok_0aB3xY9zQ1w2E3r4T5y6U7",    /* a token */
                           "fp_12345678901aBcDeFgHiJk",     /* 11 digits then letters */
                           "2024-01-15 12:30:45.123456+00", /* a timestamp as text */
                           "bin 411111 last4 1111",
                           NULL};
    for (size_t i = 0; clean[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_text(clean[i]);
        if (r.matches != 0)
            fprintf(stderr, "  false positive: case %zu\n", i);
        CHECK_EQ_INT(r.matches, 0);
    }
}

static void scan_folds_json_escapes_and_fullwidth_digits(void)
{
    struct cv_pan_scan_summary r =
        scan_text("{\"pan\":\"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031"
                  "\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\"}");
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample_encoding, "json-escape") == 0);
    /* "４１１１　１１１１－１１１１ １１１１" as a Japanese IME types it */
    r = scan_text("\xef\xbc\x94\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xe3\x80\x80"
                  "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x8d"
                  "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91 "
                  "\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91\xef\xbc\x91");
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample_encoding, "fullwidth") == 0);
}

static void scan_reads_bytes_as_ascii_and_utf16(void)
{
    const char pan[] = "5555555555554444";
    unsigned char le[64], be[64];
    memset(le, 0xAB, sizeof(le));
    memset(be, 0xAB, sizeof(be));
    for (size_t i = 0; i < 16; i++) {
        le[1 + 2 * i] = (unsigned char)pan[i]; /* odd alignment */
        le[2 + 2 * i] = 0;
        be[2 * i] = 0;
        be[2 * i + 1] = (unsigned char)pan[i];
    }
    struct cv_pan_scan_summary r = scan(le, sizeof(le), CV_PAN_SCAN_BYTES);
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample_encoding, "utf16le") == 0 || strcmp(r.sample_encoding, "utf16be") == 0);
    r = scan(be, sizeof(be), CV_PAN_SCAN_BYTES);
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample, "555555******4444") == 0);
    unsigned char ascii[40] = {0x00, 0xff, 0x10};
    memcpy(ascii + 3, pan, 16);
    r = scan(ascii, sizeof(ascii), CV_PAN_SCAN_BYTES);
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample_encoding, "utf8") == 0);
    /* text values are not read as UTF-16 */
    r = scan(le, sizeof(le), CV_PAN_SCAN_TEXT);
    CHECK_EQ_INT(r.matches, 0);
}

/* xorshift64*: deterministic, so a failure reproduces */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static void scan_finds_nothing_in_random_bytes(void)
{
    /* The ciphertext, nonce, hash and wrapped-key columns are random bytes:
     * read raw, they must never look like a PAN. 4 MiB here is more than
     * the ciphertexts of 30000 tokens. */
    size_t n = 4u << 20;
    unsigned char *buf = malloc(n);
    uint64_t s = UINT64_C(0x9E3779B97F4A7C15);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = next_rand(&s);
        memcpy(buf + i, &v, 8);
    }
    struct cv_pan_scan_summary r = scan(buf, n, CV_PAN_SCAN_BYTES);
    CHECK_EQ_INT(r.matches, 0);
    free(buf);
}

static void scan_on_hex_text_would_false_positive(void)
{
    /* Why bytea is decoded before scanning: the same random bytes rendered
     * as hex text (what a naive scan of pg_dump or bytea::text would read)
     * hold Luhn-valid 12-19 digit runs by chance. */
    size_t n = 256u << 10;
    unsigned char *buf = malloc(n);
    char *hex = malloc(2 * n + 1);
    uint64_t s = UINT64_C(42);
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = next_rand(&s);
        memcpy(buf + i, &v, 8);
    }
    to_hex(buf, n, hex);
    struct cv_pan_scan_summary r = scan_text(hex);
    CHECK(r.matches > 0);
    r = scan(buf, n, CV_PAN_SCAN_BYTES);
    CHECK_EQ_INT(r.matches, 0);
    free(buf);
    free(hex);
}

static void mask_hides_at_least_six_digits(void)
{
    char out[CV_PAN_SCAN_SAMPLE_LEN];
    cv_pan_scan_mask("4111111111111111", 16, out);
    CHECK(strcmp(out, "411111******1111") == 0);
    cv_pan_scan_mask("4222222222222", 13, out);
    CHECK(strcmp(out, "422******2222") == 0);
    cv_pan_scan_mask("123456789012", 12, out);
    CHECK(strcmp(out, "12******9012") == 0);
    cv_pan_scan_mask("6011000990139424123", 19, out);
    CHECK(strcmp(out, "601100*********4123") == 0);
}

static void scan_ignores_order_numbers_and_other_decoys(void)
{
    const char *decoys[] = {
        "order ORD-2024-0115-000123 shipped",         /* Luhn fails */
        "invoice #20240115000123",                    /* 14 digits, Luhn fails */
        "call +1 (555) 010-4477 or +44 20 7946 0958", /* phone numbers */
        "tracking 1Z999AA10123456784",                /* a UPS number: letters inside */
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "amount 1234567.89 EUR, ref 000000000000000000000000", /* a long zero run */
        "2026-12-04T18:24:25.201Z",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        NULL};
    for (size_t i = 0; decoys[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_text(decoys[i]);
        if (r.matches != 0)
            fprintf(stderr, "  false positive: decoy %zu (%s)\n", i, r.sample);
        CHECK_EQ_INT(r.matches, 0);
    }
}

struct hits {
    struct cv_pan_hit v[16];
    size_t n;
};

static void keep(void *ctx, const struct cv_pan_hit *hit)
{
    struct hits *h = ctx;
    if (h->n < 16)
        h->v[h->n] = *hit;
    h->n++;
}

static void stream_reports_offsets_and_masked_samples(void)
{
    const char text[] = "a: 4111 1111 1111 1111; b: \\u0035555555555554444 end";
    struct hits h;
    memset(&h, 0, sizeof(h));
    struct cv_pan_scan *s = cv_pan_scan_new(CV_PAN_SCAN_TEXT, keep, &h);
    cv_pan_scan_feed(s, text, strlen(text));
    cv_pan_scan_finish(s);
    CHECK_EQ_INT(h.n, 2);
    CHECK_EQ_INT(h.v[0].offset, 3);
    CHECK_EQ_INT(h.v[0].end, 3 + 19);
    CHECK_EQ_INT(h.v[0].digits, 16);
    CHECK(strcmp(h.v[0].masked, "411111******1111") == 0);
    CHECK(strcmp(h.v[0].encoding, "utf8") == 0);
    size_t b = (size_t)(strstr(text, "\\u0035") - text);
    CHECK_EQ_INT(h.v[1].offset, b);
    CHECK_EQ_INT(h.v[1].end, b + 6 + 15);
    CHECK(strcmp(h.v[1].masked, "555555******4444") == 0);
    CHECK(strcmp(h.v[1].encoding, "json-escape") == 0);
    /* the scanner is ready for a second stream, offsets from 0 again */
    memset(&h, 0, sizeof(h));
    cv_pan_scan_feed(s, "5555555555554444", 16);
    cv_pan_scan_finish(s);
    CHECK_EQ_INT(h.n, 1);
    CHECK_EQ_INT(h.v[0].offset, 0);
    cv_pan_scan_free(s);
}

/* Feeds buf in chunks of `step` bytes (1 = byte by byte). */
static struct hits scan_chunked(const unsigned char *buf, size_t len, size_t step, unsigned mode)
{
    struct hits h;
    memset(&h, 0, sizeof(h));
    struct cv_pan_scan *s = cv_pan_scan_new(mode, keep, &h);
    for (size_t i = 0; i < len; i += step)
        cv_pan_scan_feed(s, buf + i, len - i < step ? len - i : step);
    cv_pan_scan_finish(s);
    cv_pan_scan_free(s);
    return h;
}

static void stream_gives_the_same_hits_whatever_the_chunking(void)
{
    /* plain, spaced, a JSON escape, full-width digits, and UTF-16LE */
    unsigned char buf[400];
    size_t n = 0;
    const char *parts[] = {
        "x 4111 1111 1111 1111 y ", "\\u0033\\u0037\\u0038282246310005 ",
        "\xef\xbc\x94\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92"
        "\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92\xef\xbc\x92"
        "\xef\xbc\x92 ",
        "\\u00zz \xef\xbc \xe3\x80 ", /* forms that start and break */
        NULL};
    for (size_t i = 0; parts[i] != NULL; i++) {
        memcpy(buf + n, parts[i], strlen(parts[i]));
        n += strlen(parts[i]);
    }
    const char pan[] = "5555555555554444";
    buf[n++] = 0xAB;
    for (size_t i = 0; i < 16; i++) {
        buf[n++] = (unsigned char)pan[i];
        buf[n++] = 0;
    }
    buf[n++] = 0xAB;
    for (int mode = 0; mode < 2; mode++) {
        enum cv_pan_scan_mode m = mode == 0 ? CV_PAN_SCAN_TEXT : CV_PAN_SCAN_BYTES;
        struct hits whole = scan_chunked(buf, n, n, m);
        CHECK_EQ_INT(whole.n, mode == 0 ? 3 : 4);
        for (size_t step = 1; step < 12; step++) {
            struct hits cut = scan_chunked(buf, n, step, m);
            CHECK_EQ_INT(cut.n, whole.n);
            for (size_t k = 0; k < whole.n && k < cut.n && k < 16; k++) {
                CHECK_EQ_INT(cut.v[k].offset, whole.v[k].offset);
                CHECK_EQ_INT(cut.v[k].end, whole.v[k].end);
                CHECK(strcmp(cut.v[k].masked, whole.v[k].masked) == 0);
                CHECK(strcmp(cut.v[k].encoding, whole.v[k].encoding) == 0);
            }
        }
    }
}

static void reports_never_hold_the_full_number(void)
{
    const char *pans[] = {"4111111111111111", "378282246310005", "6011000990139424",
                          "4222222222222", NULL};
    for (size_t i = 0; pans[i] != NULL; i++) {
        struct hits h =
            scan_chunked((const unsigned char *)pans[i], strlen(pans[i]), 3, CV_PAN_SCAN_BYTES);
        CHECK_EQ_INT(h.n, 1);
        CHECK(strstr(h.v[0].masked, pans[i]) == NULL);
        CHECK(strchr(h.v[0].masked, '*') != NULL);
    }
}

static struct cv_pan_scan_summary scan_opts(const char *s, unsigned mode)
{
    return scan(s, strlen(s), mode);
}

#define SCAN_ALL (CV_PAN_SCAN_TEXT | CV_PAN_SCAN_ISSUER | CV_PAN_SCAN_BASE64 | CV_PAN_SCAN_CVC_KEYS)

static void scan_reads_dots_plus_and_url_escapes(void)
{
    const char *hits[] = {"4111.1111.1111.1111",          "pan=4111+1111+1111+1111&x=1",
                          "pan=%34%31%31%31111111111111", "q=4111%201111%201111%201111",
                          "q=4111%2D1111%2D1111%2D1111",  NULL};
    for (size_t i = 0; hits[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_opts(hits[i], SCAN_ALL);
        if (r.matches != 1)
            fprintf(stderr, "  case %zu: %llu matches\n", i, (unsigned long long)r.matches);
        CHECK_EQ_INT(r.matches, 1);
    }
    struct cv_pan_scan_summary r = scan_opts("pan=%34%31%31%31111111111111", SCAN_ALL);
    CHECK(strcmp(r.sample_encoding, "url-escape") == 0);
    /* broken escapes are read byte by byte */
    r = scan_opts("%3x4111111111111111 %", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 1);
    r = scan_opts("4111..1111..1111..1111", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 0);
}

static void issuer_check_drops_luhn_valid_numbers_no_brand_issues(void)
{
    /* each passes Luhn: without the issuer check all are hits */
    const char *decoys[] = {"ref 1000000000000008",       /* 16 digits, prefix 1: no brand */
                            "isbn 9780306406156",         /* an ISBN-13 (Luhn-valid by chance) */
                            "track 9400111111111110",     /* USPS-like, prefix 94 */
                            "acct 0000000000000000",      /* zeros */
                            "visa-length 41111111111114", /* prefix 4 but 14 digits */
                            "mc-length 555555555555442",  /* prefix 55 but 15 digits */
                            NULL};
    for (size_t i = 0; decoys[i] != NULL; i++) {
        const char *d = decoys[i];
        struct cv_pan_scan_summary r = scan_opts(d, CV_PAN_SCAN_TEXT | CV_PAN_SCAN_ISSUER);
        if (r.matches != 0)
            fprintf(stderr, "  issuer decoy %zu flagged\n", i);
        CHECK_EQ_INT(r.matches, 0);
    }
    CHECK(cv_pan_scan_issuer_ok("4111111111111111", 16));
    CHECK(cv_pan_scan_issuer_ok("378282246310005", 15));
    CHECK(cv_pan_scan_issuer_ok("6011000990139424", 16));
    CHECK(cv_pan_scan_issuer_ok("4222222222222", 13));
    CHECK(!cv_pan_scan_issuer_ok("37828224631000", 14));
    CHECK(!cv_pan_scan_issuer_ok("1000000000000008", 16));
    CHECK_EQ_INT(scan_opts("x 1000000000000008 y", CV_PAN_SCAN_TEXT).matches, 1);
    /* a grouped tracking number whose tail is a Luhn-valid Diners-shaped
     * window: only the Luhn-only scan takes it */
    const char *track = "usps 9400 1112 3600 1006 0000 00";
    CHECK_EQ_INT(scan_opts(track, CV_PAN_SCAN_TEXT).matches, 1);
    CHECK_EQ_INT(scan_opts(track, CV_PAN_SCAN_TEXT | CV_PAN_SCAN_ISSUER).matches, 0);
    /* still found: a PAN after a date, and two PANs back to back */
    CHECK_EQ_INT(
        scan_opts("2024-01-15 4111111111111111", CV_PAN_SCAN_TEXT | CV_PAN_SCAN_ISSUER).matches, 1);
    CHECK_EQ_INT(
        scan_opts("4111 1111 1111 1111 5555 5555 5555 4444", CV_PAN_SCAN_TEXT | CV_PAN_SCAN_ISSUER)
            .matches,
        2);
}

static void base64_runs_are_decoded_and_scanned(void)
{
    /* "4111111111111111" and {"pan":"5555555555554444"} in base64 */
    struct cv_pan_scan_summary r = scan_opts("note NDExMTExMTExMTExMTExMQ== end", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 1);
    CHECK(strcmp(r.sample_encoding, "base64") == 0);
    CHECK(strcmp(r.sample, "411111******1111") == 0);
    r = scan_opts("b=eyJwYW4iOiI1NTU1NTU1NTU1NTU0NDQ0In0", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 1);
    /* URL-safe alphabet, no padding */
    r = scan_opts("x NDExMTExMTExMTExMTExMQ x", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 1);
    /* a run that ends inside its last quantum: the hit ends with the run */
    const char *cut = "x NDExMTExMTExMTExMTExMQ";
    struct hits h = scan_chunked((const unsigned char *)cut, strlen(cut), 5, SCAN_ALL);
    CHECK_EQ_INT(h.n, 1);
    CHECK_EQ_INT(h.v[0].offset, 2);
    CHECK_EQ_INT(h.v[0].end, strlen(cut));
    /* not decoded without the option */
    r = scan_opts("note NDExMTExMTExMTExMTExMQ== end", CV_PAN_SCAN_TEXT);
    CHECK_EQ_INT(r.matches, 0);
    /* a truncated run, a run of one character, and a long token decode to nothing */
    r = scan_opts("NDExMTExMTExMT a tok_0aB3xY9zQ1w2E3r4T5y6U7 Z", SCAN_ALL);
    CHECK_EQ_INT(r.matches, 0);
}

static void security_codes_after_a_cvc_key_are_reported_masked(void)
{
    const char *hits[] = {"{\"cvv\":\"123\"}",
                          "{\"CVC\": 1234}",
                          "cvv2=123&x",
                          "card_cvv: '987'",
                          "security_code = 456",
                          "{\"securityCode\":\"321\"}",
                          NULL};
    for (size_t i = 0; hits[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_opts(hits[i], SCAN_ALL);
        if (r.cvc_matches != 1)
            fprintf(stderr, "  cvc case %zu missed\n", i);
        CHECK_EQ_INT(r.cvc_matches, 1);
        CHECK_EQ_INT(r.matches, 0);
    }
    const char *clean[] = {"{\"cvv\":\"12\"}", "{\"cvv\":\"12345\"}",
                           "cvv=123abc",       "{\"order\":\"123\"}",
                           "cvv is 123",       "cvvx=123",
                           "{\"cvv\":null}",   NULL};
    for (size_t i = 0; clean[i] != NULL; i++) {
        struct cv_pan_scan_summary r = scan_opts(clean[i], SCAN_ALL);
        if (r.cvc_matches != 0)
            fprintf(stderr, "  cvc clean case %zu flagged\n", i);
        CHECK_EQ_INT(r.cvc_matches, 0);
    }
    /* the hit never holds the code */
    struct hits h;
    memset(&h, 0, sizeof(h));
    struct cv_pan_scan *s = cv_pan_scan_new(SCAN_ALL, keep, &h);
    cv_pan_scan_feed(s, "{\"cvc\":\"1", 9);
    cv_pan_scan_feed(s, "23\"}", 4);
    cv_pan_scan_finish(s);
    cv_pan_scan_free(s);
    CHECK_EQ_INT(h.n, 1);
    CHECK_EQ_INT(h.v[0].kind, CV_PAN_HIT_CVC);
    CHECK(strcmp(h.v[0].masked, "***") == 0);
    CHECK_EQ_INT(h.v[0].offset, 8);
}

static void cvc_names_and_values(void)
{
    const char *names[] = {"cvc",          "CVV",      "cvv2",
                           "cid",          "csc",      "security_code",
                           "SecurityCode", "card_cvv", "card-security-code",
                           "cvc2",         NULL};
    for (size_t i = 0; names[i] != NULL; i++)
        CHECK(cv_pan_scan_is_cvc_name(names[i], strlen(names[i])));
    const char *not_names[] = {"card_number", "city", "acid", "order_id", "cvcx", "", NULL};
    for (size_t i = 0; not_names[i] != NULL; i++)
        CHECK(!cv_pan_scan_is_cvc_name(not_names[i], strlen(not_names[i])));
    CHECK(cv_pan_scan_is_cvc_value("123", 3));
    CHECK(cv_pan_scan_is_cvc_value(" 1234\n", 6));
    CHECK(cv_pan_scan_is_cvc_value("\"123\"", 5));
    CHECK(!cv_pan_scan_is_cvc_value("12", 2));
    CHECK(!cv_pan_scan_is_cvc_value("12345", 5));
    CHECK(!cv_pan_scan_is_cvc_value("12a", 3));
    CHECK(!cv_pan_scan_is_cvc_value("\"123", 4));
}

static void new_readers_give_the_same_hits_whatever_the_chunking(void)
{
    const char *text = "a NDExMTExMTExMTExMTExMQ== b %34111111111111111 c {\"cvv\":\"123\"} "
                       "d 5555.5555.5555.4444 e";
    size_t n = strlen(text);
    struct hits whole = scan_chunked((const unsigned char *)text, n, n, SCAN_ALL);
    CHECK_EQ_INT(whole.n, 4);
    for (size_t step = 1; step < 9; step++) {
        struct hits cut = scan_chunked((const unsigned char *)text, n, step, SCAN_ALL);
        CHECK_EQ_INT(cut.n, whole.n);
        for (size_t k = 0; k < whole.n && k < cut.n && k < 16; k++) {
            CHECK_EQ_INT(cut.v[k].offset, whole.v[k].offset);
            CHECK(strcmp(cut.v[k].encoding, whole.v[k].encoding) == 0);
        }
    }
}

int main(void)
{
    RUN(scan_finds_plain_spaced_and_hyphenated_pans);
    RUN(scan_ignores_near_misses);
    RUN(scan_folds_json_escapes_and_fullwidth_digits);
    RUN(scan_reads_bytes_as_ascii_and_utf16);
    RUN(scan_finds_nothing_in_random_bytes);
    RUN(scan_on_hex_text_would_false_positive);
    RUN(mask_hides_at_least_six_digits);
    RUN(scan_ignores_order_numbers_and_other_decoys);
    RUN(stream_reports_offsets_and_masked_samples);
    RUN(stream_gives_the_same_hits_whatever_the_chunking);
    RUN(reports_never_hold_the_full_number);
    RUN(scan_reads_dots_plus_and_url_escapes);
    RUN(issuer_check_drops_luhn_valid_numbers_no_brand_issues);
    RUN(base64_runs_are_decoded_and_scanned);
    RUN(security_codes_after_a_cvc_key_are_reported_masked);
    RUN(cvc_names_and_values);
    RUN(new_readers_give_the_same_hits_whatever_the_chunking);
    return check_summary("test_pan_scan");
}
