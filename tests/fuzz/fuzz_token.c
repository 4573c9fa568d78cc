/* fuzz_token.c: the identifier formats of token.c on raw bytes: token,
 * fingerprint and API-key validators and the fixed-width base62 decoder.
 * Each validator is held to the format it documents; the decoder to a round
 * trip (whatever decodes must encode back to the same characters at the
 * same width) and to a fingerprint rule (a valid fingerprint is exactly one
 * that cv_token_format_fingerprint can produce). The first byte picks the
 * decoder's output width (0-63 bytes); the rest is the string. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/token.h"
#include "ref_apikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_token invariant broken: %s\n", why);
    abort();
}

static bool b62(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool ref_format(const uint8_t *s, size_t n, const char *prefix, size_t total)
{
    size_t pl = strlen(prefix);
    if (n != total || memcmp(s, prefix, pl) != 0)
        return false;
    for (size_t i = pl; i < n; i++)
        if (!b62(s[i]))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t out_len = data[0] % 64;
    size_t n = size - 1;
    /* Exact-size copies: reads past the string or writes past out are ASan reports. */
    char *s = malloc(n == 0 ? 1 : n);
    memcpy(s, data + 1, n);
    unsigned char *out = malloc(out_len == 0 ? 1 : out_len);

    if (cv_token_is_valid(s, n) != ref_format((const uint8_t *)s, n, "tok_", CV_TOKEN_LEN))
        fail("token validator differs from the format");
    if (cv_token_api_key_is_valid(s, n) != ref_api_key(s, n))
        fail("API key validator differs from the format");

    bool fp = cv_token_fingerprint_is_valid(s, n);
    if (fp) {
        unsigned char mac[16];
        char again[CV_FINGERPRINT_LEN + 1];
        if (!ref_format((const uint8_t *)s, n, "fp_", CV_FINGERPRINT_LEN) ||
            !cv_base62_decode(s + 3, CV_FINGERPRINT_CHARS, mac, sizeof(mac)))
            fail("fingerprint valid but not decodable");
        cv_token_format_fingerprint(mac, again);
        if (memcmp(again, s, CV_FINGERPRINT_LEN) != 0)
            fail("valid fingerprint does not round-trip");
    } else if (ref_format((const uint8_t *)s, n, "fp_", CV_FINGERPRINT_LEN)) {
        /* Right shape but refused: only because it names a number >= 2^128. */
        unsigned char wide[17];
        if (!cv_base62_decode(s + 3, CV_FINGERPRINT_CHARS, wide, sizeof(wide)) || wide[0] == 0)
            fail("well-formed fingerprint below 2^128 refused");
    }

    if (cv_base62_decode(s, n, out, out_len)) {
        for (size_t i = 0; i < n; i++)
            if (!b62((uint8_t)s[i]))
                fail("decoded a non-base62 character");
        char *back = malloc(n == 0 ? 1 : n);
        if (!cv_base62_encode(out, out_len, back, n) || memcmp(back, s, n) != 0)
            fail("base62 decode/encode does not round-trip");
        free(back);
    } else {
        for (size_t i = 0; i < out_len; i++)
            if (out[i] != 0)
                fail("failed decode left bytes behind");
    }
    for (size_t i = 0; i < n; i++)
        if (cv_base62_char_ok(s[i]) != b62((uint8_t)s[i]))
            fail("base62_char_ok differs");
    free(out);
    free(s);
    return 0;
}
