/* test_token.c: token.c's base62 codec (alphabet order, fixed width, round
 * trips, overflow), the exact shapes of tokens, fingerprints, API keys and
 * ids, the validators' refusal of near misses, and the randomness: 100000
 * tokens with no duplicate and a chi-square test on character frequencies. */
#include "cardvault/token.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"
#include "check.h"

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* 2^128 - 1 in base62, computed independently (Python: fixed-width divmod by 62). */
#define MAX_128_BASE62 "7n42DGM5Tflk9n8mt7Fhc7"
/* Bytes 00 01 02 ... 0f in base62. */
#define SEQ_128_BASE62 "000SYW7RiJxkEgOGusQGwp"

#define STAT_TOKENS      100000
#define CHI_SQUARE_LIMIT 120.0 /* df = 61; P(chi2 > 120) is about 5e-6 for a uniform source */

static bool all_base62(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strchr(alphabet, s[i]) == NULL || s[i] == '\0')
            return false;
    }
    return true;
}

static void base62_alphabet_is_digits_then_upper_then_lower(void)
{
    for (unsigned v = 0; v < 62; v++) {
        unsigned char in = (unsigned char)v;
        char out = '?';
        CHECK(cv_base62_encode(&in, 1, &out, 1));
        CHECK_EQ_INT(out, alphabet[v]);
    }
}

static void base62_encode_pads_to_fixed_width(void)
{
    static const unsigned char one[] = {0x01};
    static const unsigned char zeros[16] = {0};
    static const unsigned char n256[] = {0x01, 0x00}; /* 256 = 4 * 62 + 8 */
    char out[23] = {0};

    CHECK(cv_base62_encode(one, sizeof one, out, 22));
    CHECK(strcmp(out, "0000000000000000000001") == 0);
    CHECK(cv_base62_encode(zeros, sizeof zeros, out, 22));
    CHECK(strcmp(out, "0000000000000000000000") == 0);
    CHECK(cv_base62_encode(NULL, 0, out, 22));
    CHECK(strcmp(out, "0000000000000000000000") == 0);
    memset(out, 0, sizeof out);
    CHECK(cv_base62_encode(n256, sizeof n256, out, 2));
    CHECK(strcmp(out, "48") == 0);
}

static void base62_encode_matches_independent_vectors(void)
{
    unsigned char max[16], seq[16];
    char out[23] = {0};

    memset(max, 0xFF, sizeof max);
    for (int i = 0; i < 16; i++)
        seq[i] = (unsigned char)i;
    CHECK(cv_base62_encode(max, 16, out, 22));
    CHECK(strcmp(out, MAX_128_BASE62) == 0);
    CHECK(cv_base62_encode(seq, 16, out, 22));
    CHECK(strcmp(out, SEQ_128_BASE62) == 0);
}

static void base62_encode_refuses_a_value_wider_than_out(void)
{
    static const unsigned char v62[] = {62};
    unsigned char max[16];
    char out[32];

    CHECK(!cv_base62_encode(v62, 1, out, 1));
    CHECK(cv_base62_encode(v62, 1, out, 2));
    CHECK(memcmp(out, "10", 2) == 0);
    memset(max, 0xFF, sizeof max);
    /* 62^21 < 2^128 <= 62^22: 21 characters cannot hold 16 bytes. */
    memset(out, 'X', sizeof out);
    CHECK(!cv_base62_encode(max, 16, out, 21));
    for (int i = 0; i < 21; i++)
        CHECK_EQ_INT(out[i], 0); /* no truncated number left behind */
    CHECK_EQ_INT(out[21], 'X');  /* and nothing written past out_chars */
    CHECK(!cv_base62_encode(max, 16, out, 0));
    CHECK(!cv_base62_encode(NULL, 16, out, 22));
}

static void base62_round_trips_random_values(void)
{
    for (int i = 0; i < 2000; i++) {
        unsigned char in[16], back[16];
        char enc[22];
        CHECK_EQ_INT(cv_random_bytes(in, sizeof in), CV_OK);
        CHECK(cv_base62_encode(in, sizeof in, enc, sizeof enc));
        CHECK(all_base62(enc, sizeof enc));
        CHECK(cv_base62_decode(enc, sizeof enc, back, sizeof back));
        CHECK(memcmp(in, back, sizeof in) == 0);
    }
}

static void base62_round_trips_every_width_at_its_minimum(void)
{
    /* For 1..64 bytes of 0xFF, the narrowest width that fits must round-trip and
     * one character fewer must be refused; widths grow with byte count. */
    size_t prev_width = 0;
    for (size_t n = 1; n <= 64; n++) {
        unsigned char in[64], back[64];
        char enc[96];
        size_t w = 1;
        memset(in, 0xFF, n);
        while (!cv_base62_encode(in, n, enc, w))
            w++;
        CHECK(w >= prev_width);
        CHECK(w * 5954 >= n * 8 * 1000); /* log2(62) = 5.954 bits per character */
        CHECK(!cv_base62_encode(in, n, enc, w - 1));
        CHECK(cv_base62_encode(in, n, enc, w)); /* the refusal above zeroed enc */
        CHECK(cv_base62_decode(enc, w, back, n));
        CHECK(memcmp(in, back, n) == 0);
        /* One byte less to decode into: overflow, not truncation. */
        CHECK(!cv_base62_decode(enc, w, back, n - 1));
        prev_width = w;
    }
}

static void base62_decode_reads_leading_zeros_and_known_vectors(void)
{
    unsigned char out[16], want[16];

    memset(want, 0xFF, sizeof want);
    CHECK(cv_base62_decode(MAX_128_BASE62, 22, out, 16));
    CHECK(memcmp(out, want, 16) == 0);
    for (int i = 0; i < 16; i++)
        want[i] = (unsigned char)i;
    CHECK(cv_base62_decode(SEQ_128_BASE62, 22, out, 16));
    CHECK(memcmp(out, want, 16) == 0);
    CHECK(cv_base62_decode("48", 2, out, 2));
    CHECK_EQ_INT(out[0], 1);
    CHECK_EQ_INT(out[1], 0);
}

static void base62_decode_rejects_every_foreign_byte(void)
{
    int rejected = 0;
    for (int c = 0; c < 256; c++) {
        char in[22];
        unsigned char out[16];
        if (c != 0 && strchr(alphabet, c) != NULL)
            continue;
        memset(in, '0', sizeof in);
        in[11] = (char)c;
        memset(out, 0xAA, sizeof out);
        CHECK(!cv_base62_decode(in, sizeof in, out, sizeof out));
        for (size_t i = 0; i < sizeof out; i++)
            CHECK_EQ_INT(out[i], 0); /* a half-decoded value is wiped */
        rejected++;
    }
    CHECK_EQ_INT(rejected, 256 - 62);
}

static void base62_decode_rejects_values_past_the_output_width(void)
{
    unsigned char out[16];

    CHECK(!cv_base62_decode("zzzzzzzzzzzzzzzzzzzzzz", 22, out, 16));
    CHECK(!cv_base62_decode("7n42DGM5Tflk9n8mt7Fhc8", 22, out, 16)); /* 2^128 */
    CHECK(!cv_base62_decode("48", 2, out, 1));                       /* 256 */
    CHECK(cv_base62_decode("47", 2, out, 1));                        /* 255 */
    CHECK_EQ_INT(out[0], 255);
    CHECK(!cv_base62_decode(NULL, 22, out, 16));
}

static void base62_char_ok_accepts_exactly_the_62_ascii_alphanumerics(void)
{
    int ok = 0;
    for (int c = 0; c < 256; c++) {
        bool want = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        CHECK_EQ_INT(cv_base62_char_ok((char)c), want);
        ok += want;
    }
    CHECK_EQ_INT(ok, 62);
}

static void random_base62_fills_exactly_n_characters(void)
{
    char buf[1002];

    memset(buf, '#', sizeof buf);
    CHECK_EQ_INT(cv_token_random_base62(buf + 1, 1000), CV_OK);
    CHECK_EQ_INT(buf[0], '#');
    CHECK_EQ_INT(buf[1001], '#');
    CHECK(all_base62(buf + 1, 1000));
}

static void random_base62_of_zero_writes_nothing(void)
{
    char buf[2] = {'#', '#'};
    CHECK_EQ_INT(cv_token_random_base62(buf, 0), CV_OK);
    CHECK_EQ_INT(buf[0], '#');
    CHECK_EQ_INT(cv_token_random_base62(NULL, 0), CV_OK);
}

static void token_is_prefix_and_22_base62_chars(void)
{
    char tok[CV_TOKEN_LEN + 1];

    CHECK_EQ_INT(cv_token_generate(tok), CV_OK);
    CHECK_EQ_INT(strlen(tok), 26);
    CHECK(memcmp(tok, "tok_", 4) == 0);
    CHECK(all_base62(tok + 4, 22));
    CHECK(cv_token_is_valid(tok, strlen(tok)));
}

static void token_validity_rejects_near_misses(void)
{
    char tok[CV_TOKEN_LEN + 2], bad[CV_TOKEN_LEN + 2];

    CHECK_EQ_INT(cv_token_generate(tok), CV_OK);
    CHECK(cv_token_is_valid("tok_0000000000000000000000", 26));
    CHECK(cv_token_is_valid("tok_zzzzzzzzzzzzzzzzzzzzzz", 26));

    CHECK(!cv_token_is_valid(tok, 25));                           /* truncated */
    CHECK(!cv_token_is_valid("tok_00000000000000000000000", 27)); /* one extra */
    CHECK(!cv_token_is_valid("tok_", 4));
    CHECK(!cv_token_is_valid("", 0));
    CHECK(!cv_token_is_valid(NULL, 26));
    static const char *const prefixes[] = {"tak_", "TOK_", "tok-", "fp__", " tok"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        memcpy(bad, tok, sizeof tok);
        memcpy(bad, prefixes[i], 4);
        CHECK(!cv_token_is_valid(bad, 26));
    }
    static const char foreign[] = {'-', '_', ' ', '+', '/', '=', '.', '\0', '\n', '\x80', '\xff'};
    for (size_t i = 0; i < sizeof foreign; i++) {
        memcpy(bad, tok, sizeof tok);
        bad[15] = foreign[i];
        CHECK(!cv_token_is_valid(bad, 26));
        memcpy(bad, tok, sizeof tok);
        bad[25] = foreign[i]; /* last position too: loops that stop one short */
        CHECK(!cv_token_is_valid(bad, 26));
    }
}

static void fingerprint_is_prefix_and_base62_of_the_mac(void)
{
    unsigned char zeros[16] = {0}, max[16], back[16];
    char fp[CV_FINGERPRINT_LEN + 1];

    cv_token_format_fingerprint(zeros, fp);
    CHECK(strcmp(fp, "fp_0000000000000000000000") == 0);
    CHECK(cv_token_fingerprint_is_valid(fp, strlen(fp)));
    memset(max, 0xFF, sizeof max);
    cv_token_format_fingerprint(max, fp);
    CHECK(strcmp(fp, "fp_" MAX_128_BASE62) == 0);
    CHECK_EQ_INT(strlen(fp), CV_FINGERPRINT_LEN);
    CHECK(cv_token_fingerprint_is_valid(fp, strlen(fp)));
    CHECK(cv_base62_decode(fp + 3, 22, back, 16));
    CHECK(memcmp(back, max, 16) == 0);
}

static void fingerprint_validity_rejects_near_misses_and_impossible_values(void)
{
    CHECK(!cv_token_fingerprint_is_valid("fp_000000000000000000000", 24));   /* short */
    CHECK(!cv_token_fingerprint_is_valid("fp_00000000000000000000000", 26)); /* long */
    CHECK(!cv_token_fingerprint_is_valid("fq_0000000000000000000000", 25));
    CHECK(!cv_token_fingerprint_is_valid("FP_0000000000000000000000", 25));
    CHECK(!cv_token_fingerprint_is_valid("fp-0000000000000000000000", 25));
    CHECK(!cv_token_fingerprint_is_valid("fp_00000000000-0000000000", 25));
    CHECK(!cv_token_fingerprint_is_valid("fp_0000000000\0"
                                         "00000000000",
                                         25));
    CHECK(!cv_token_fingerprint_is_valid("tok_0000000000000000000000", 26));
    CHECK(!cv_token_fingerprint_is_valid(NULL, 25));
    /* Well-formed characters, but above 2^128 - 1: no MAC produces these. */
    CHECK(!cv_token_fingerprint_is_valid("fp_7n42DGM5Tflk9n8mt7Fhc8", 25));
    CHECK(!cv_token_fingerprint_is_valid("fp_zzzzzzzzzzzzzzzzzzzzzz", 25));
}

static void api_keys_come_in_pk_sk_dk_and_rk(void)
{
    static const char *const kinds[] = {"pk", "sk", "dk", "rk"};
    for (size_t i = 0; i < 4; i++) {
        char key[CV_APIKEY_LEN + 1];
        CHECK_EQ_INT(cv_token_api_key(kinds[i], key), CV_OK);
        CHECK_EQ_INT(strlen(key), 52);
        CHECK(memcmp(key, kinds[i], 2) == 0);
        CHECK_EQ_INT(key[2], '_');
        CHECK(all_base62(key + 3, 49));
        CHECK(cv_token_api_key_is_valid(key, strlen(key)));
    }
}

static void api_key_kind_is_spots_the_four_prefixes(void)
{
    CHECK(cv_token_api_key_kind_is("rk_x"));
    CHECK(cv_token_api_key_kind_is("pk_"));
    CHECK(cv_token_api_key_kind_is("dk_abc"));
    CHECK(!cv_token_api_key_kind_is("rk"));
    CHECK(!cv_token_api_key_kind_is("xk_abc"));
    CHECK(!cv_token_api_key_kind_is("RK_abc"));
    CHECK(!cv_token_api_key_kind_is(""));
    CHECK(!cv_token_api_key_kind_is(NULL));
}

/* The checksum docs/key-management.md gives secret scanners: CRC-32 (zlib)
 * of the first 46 characters, 6 base62 digits, big-endian. These vectors
 * come from Python's zlib.crc32, not from our own code. */
static void api_key_checksum_is_the_documented_crc32(void)
{
    static const char *const vectors[] = {
        "sk_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ26VjTt",
        "pk_00000000000000000000000000000000000000000001zqVSB",
    };
    for (size_t i = 0; i < 2; i++) {
        char sum[CV_APIKEY_CHECK_CHARS];
        cv_token_api_key_checksum(vectors[i], sum);
        CHECK(memcmp(sum, vectors[i] + 46, CV_APIKEY_CHECK_CHARS) == 0);
        CHECK(cv_token_api_key_is_valid(vectors[i], 52));
    }
}

/* One mistyped character anywhere after the kind, in the random part or in
 * the checksum, is refused: CRC-32 catches every single-character change. */
static void api_key_with_any_one_character_changed_is_refused(void)
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    char key[CV_APIKEY_LEN + 1], bad[CV_APIKEY_LEN + 1];
    CHECK_EQ_INT(cv_token_api_key("sk", key), CV_OK);
    int accepted = 0;
    for (size_t pos = 3; pos < CV_APIKEY_LEN; pos++) {
        for (size_t c = 0; c < 62; c++) {
            if (b62[c] == key[pos])
                continue;
            memcpy(bad, key, sizeof key);
            bad[pos] = b62[c];
            accepted += cv_token_api_key_is_valid(bad, CV_APIKEY_LEN);
        }
    }
    CHECK_EQ_INT(accepted, 0);
    /* Two neighbours swapped: a typist's other mistake. */
    memcpy(bad, key, sizeof key);
    for (size_t pos = 3; pos + 1 < CV_APIKEY_LEN; pos++) {
        memcpy(bad, key, sizeof key);
        if (bad[pos] == bad[pos + 1])
            continue;
        bad[pos] = key[pos + 1];
        bad[pos + 1] = key[pos];
        CHECK(!cv_token_api_key_is_valid(bad, CV_APIKEY_LEN));
    }
}

/* Keys made before the checksum (kind + 43 characters) keep working. */
static void api_key_of_the_old_format_is_still_valid(void)
{
    CHECK(cv_token_api_key_is_valid("sk_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", 46));
    char key[CV_APIKEY_LEN + 1];
    CHECK_EQ_INT(cv_token_api_key("dk", key), CV_OK);
    CHECK(cv_token_api_key_is_valid(key, CV_APIKEY_LEGACY_LEN)); /* its first 46 characters */
    for (size_t n = CV_APIKEY_LEGACY_LEN + 1; n < CV_APIKEY_LEN; n++)
        CHECK(!cv_token_api_key_is_valid(key, n)); /* a cut checksum is no key */
}

static void api_key_refuses_any_other_kind_and_leaves_nothing(void)
{
    static const char *const kinds[] = {"xk", "PK", "Sk", "p", "pkk", "", "pk_", "tok", "ak"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        char key[CV_APIKEY_LEN + 1];
        memset(key, 'X', sizeof key);
        CHECK_EQ_INT(cv_token_api_key(kinds[i], key), CV_ERR_INTERNAL);
        CHECK_EQ_INT(key[0], '\0');
    }
    char key[CV_APIKEY_LEN + 1];
    CHECK_EQ_INT(cv_token_api_key(NULL, key), CV_ERR_INTERNAL);
}

static void api_key_validity_rejects_near_misses(void)
{
    char key[CV_APIKEY_LEN + 2], bad[CV_APIKEY_LEN + 2];

    CHECK_EQ_INT(cv_token_api_key("sk", key), CV_OK);
    CHECK(!cv_token_api_key_is_valid(key, 45));
    memcpy(bad, key, sizeof key);
    bad[52] = 'a';
    CHECK(!cv_token_api_key_is_valid(bad, 53));
    static const char *const prefixes[] = {"xk_", "SK_", "sk-", "s_k", "pk ", "tk_", "\0k_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        memcpy(bad, key, sizeof key);
        memcpy(bad, prefixes[i], 3);
        CHECK(!cv_token_api_key_is_valid(bad, 46));
        CHECK(!cv_token_api_key_is_valid(bad, 52));
    }
    static const char foreign[] = {'-', '_', ' ', '\0', '\x80'};
    for (size_t i = 0; i < sizeof foreign; i++) {
        memcpy(bad, key, sizeof key);
        bad[20] = foreign[i];
        CHECK(!cv_token_api_key_is_valid(bad, 46));
        memcpy(bad, key, sizeof key);
        bad[45] = foreign[i];
        CHECK(!cv_token_api_key_is_valid(bad, 46));
        memcpy(bad, key, sizeof key);
        bad[51] = foreign[i];
        CHECK(!cv_token_api_key_is_valid(bad, 52));
    }
    CHECK(!cv_token_api_key_is_valid(NULL, 46));
    CHECK(!cv_token_api_key_is_valid(NULL, 52));
    CHECK(!cv_token_api_key_is_valid("sk_", 3));
}

static void request_and_merchant_ids_have_their_prefix_and_20_chars(void)
{
    char req[CV_REQUEST_ID_LEN + 1], mer[CV_MERCHANT_ID_LEN + 1];

    CHECK_EQ_INT(cv_token_request_id(req), CV_OK);
    CHECK_EQ_INT(strlen(req), 24);
    CHECK(memcmp(req, "req_", 4) == 0);
    CHECK(all_base62(req + 4, 20));
    CHECK_EQ_INT(cv_token_merchant_id(mer), CV_OK);
    CHECK_EQ_INT(strlen(mer), 24);
    CHECK(memcmp(mer, "mer_", 4) == 0);
    CHECK(all_base62(mer + 4, 20));
}

static void ids_and_keys_never_pass_as_tokens(void)
{
    char req[CV_REQUEST_ID_LEN + 1], key[CV_APIKEY_LEN + 1], tok[CV_TOKEN_LEN + 1];

    CHECK_EQ_INT(cv_token_request_id(req), CV_OK);
    CHECK_EQ_INT(cv_token_api_key("pk", key), CV_OK);
    CHECK_EQ_INT(cv_token_generate(tok), CV_OK);
    CHECK(!cv_token_is_valid(req, strlen(req)));
    CHECK(!cv_token_is_valid(key, strlen(key)));
    CHECK(!cv_token_api_key_is_valid(tok, strlen(tok)));
    CHECK(!cv_token_fingerprint_is_valid(tok, strlen(tok)));
    /* Two calls never return the same id. */
    char req2[CV_REQUEST_ID_LEN + 1];
    CHECK_EQ_INT(cv_token_request_id(req2), CV_OK);
    CHECK(strcmp(req, req2) != 0);
}

static int compare_tokens(const void *a, const void *b)
{
    return memcmp(a, b, CV_TOKEN_LEN);
}

static double chi_square(const unsigned long counts[62], unsigned long total)
{
    double expected = (double)total / 62.0, chi2 = 0.0;
    for (int i = 0; i < 62; i++) {
        double d = (double)counts[i] - expected;
        chi2 += d * d / expected;
    }
    return chi2;
}

static void tokens_100000_are_unique_and_uniform_over_62_chars(void)
{
    char(*toks)[CV_TOKEN_LEN + 1] = calloc(STAT_TOKENS, sizeof *toks);
    unsigned long counts[62] = {0};
    int dups = 0;

    CHECK(toks != NULL);
    if (toks == NULL)
        return;
    for (int i = 0; i < STAT_TOKENS; i++) {
        CHECK_EQ_INT(cv_token_generate(toks[i]), CV_OK);
        for (int j = 4; j < CV_TOKEN_LEN; j++) {
            const char *p = strchr(alphabet, toks[i][j]);
            CHECK(p != NULL);
            if (p != NULL)
                counts[p - alphabet]++;
        }
    }
    qsort(toks, STAT_TOKENS, sizeof *toks, compare_tokens);
    for (int i = 1; i < STAT_TOKENS; i++)
        dups += memcmp(toks[i - 1], toks[i], CV_TOKEN_LEN) == 0;
    CHECK_EQ_INT(dups, 0);

    double chi2 = chi_square(counts, (unsigned long)STAT_TOKENS * CV_TOKEN_RANDOM_CHARS);
    printf("  chi-square over 62 bins (df 61) for %d tokens: %.1f (limit %.0f)\n", STAT_TOKENS,
           chi2, CHI_SQUARE_LIMIT);
    CHECK(chi2 <= CHI_SQUARE_LIMIT);
    free(toks);
}

static void chi_square_bound_catches_plain_modulo_bias(void)
{
    /* The same test applied to byte % 62 without rejection, the bug the
     * rejection sampling prevents: '0'-'7' come up 5/256 instead of 4/256.
     * If the bound could not see this, the test above would prove nothing. */
    size_t n = (size_t)STAT_TOKENS * CV_TOKEN_RANDOM_CHARS;
    unsigned char *bytes = malloc(n);
    unsigned long counts[62] = {0};

    CHECK(bytes != NULL);
    if (bytes == NULL)
        return;
    CHECK_EQ_INT(cv_random_bytes(bytes, n), CV_OK);
    for (size_t i = 0; i < n; i++)
        counts[bytes[i] % 62]++;
    CHECK(chi_square(counts, (unsigned long)n) > CHI_SQUARE_LIMIT);
    free(bytes);
}

static void hex_value_reads_both_cases_and_rejects_the_rest(void)
{
    CHECK_EQ_INT(cv_hex_value('0'), 0);
    CHECK_EQ_INT(cv_hex_value('9'), 9);
    CHECK_EQ_INT(cv_hex_value('a'), 10);
    CHECK_EQ_INT(cv_hex_value('F'), 15);
    CHECK_EQ_INT(cv_hex_value('g'), -1);
    CHECK_EQ_INT(cv_hex_value('G'), -1);
    CHECK_EQ_INT(cv_hex_value('/'), -1);
    CHECK_EQ_INT(cv_hex_value(':'), -1);
    CHECK_EQ_INT(cv_hex_value('\0'), -1);
    CHECK_EQ_INT(cv_hex_value(0xff), -1);
}

int main(void)
{
    RUN(base62_alphabet_is_digits_then_upper_then_lower);
    RUN(base62_encode_pads_to_fixed_width);
    RUN(base62_encode_matches_independent_vectors);
    RUN(base62_encode_refuses_a_value_wider_than_out);
    RUN(base62_round_trips_random_values);
    RUN(base62_round_trips_every_width_at_its_minimum);
    RUN(base62_decode_reads_leading_zeros_and_known_vectors);
    RUN(base62_decode_rejects_every_foreign_byte);
    RUN(base62_decode_rejects_values_past_the_output_width);
    RUN(base62_char_ok_accepts_exactly_the_62_ascii_alphanumerics);
    RUN(random_base62_fills_exactly_n_characters);
    RUN(random_base62_of_zero_writes_nothing);
    RUN(token_is_prefix_and_22_base62_chars);
    RUN(token_validity_rejects_near_misses);
    RUN(fingerprint_is_prefix_and_base62_of_the_mac);
    RUN(fingerprint_validity_rejects_near_misses_and_impossible_values);
    RUN(api_keys_come_in_pk_sk_dk_and_rk);
    RUN(api_key_kind_is_spots_the_four_prefixes);
    RUN(api_key_refuses_any_other_kind_and_leaves_nothing);
    RUN(api_key_validity_rejects_near_misses);
    RUN(api_key_checksum_is_the_documented_crc32);
    RUN(api_key_with_any_one_character_changed_is_refused);
    RUN(api_key_of_the_old_format_is_still_valid);
    RUN(request_and_merchant_ids_have_their_prefix_and_20_chars);
    RUN(ids_and_keys_never_pass_as_tokens);
    RUN(tokens_100000_are_unique_and_uniform_over_62_chars);
    RUN(chi_square_bound_catches_plain_modulo_bias);
    RUN(hex_value_reads_both_cases_and_rejects_the_rest);
    return check_summary("token");
}
