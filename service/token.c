/* token.c: the shapes of the identifiers cardvault hands out (tokens,
 * fingerprints, API keys, request and merchant ids) and the base62 codec
 * under them. Random characters come from the OpenSSL CSPRNG through
 * cv_random_bytes, with rejection sampling so each character is uniform.
 * It must never see card data, allocate, log or do I/O, and it must never
 * fall back to a weaker random source: when the CSPRNG fails, we fail. */
#include "cardvault/token.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "cardvault/secbuf.h"

/* The order is part of the format: fixed-width encodings sort like the
 * numbers they encode, and stored fingerprints depend on it. */
static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
#define BASE62 62u
_Static_assert(sizeof alphabet == BASE62 + 1, "alphabet must hold exactly 62 characters");

/* 248 = 4 * 62 is the largest multiple of 62 a byte can hold. Bytes 248-255
 * are discarded: mapping them too would give '0'-'7' five chances in 256
 * instead of four, a bias in every token and key that costs entropy and
 * shows up in any uniformity test. */
#define BYTE_REJECT_FROM (256u - 256u % BASE62)

/* One CSPRNG call usually covers an API key (43 chars need ~44.4 bytes). */
#define RANDOM_POOL_BYTES 64

#define API_KEY_KIND_LEN 2

#define REQUEST_ID_PREFIX  "req_"
#define MERCHANT_ID_PREFIX "mer_"

/* The digit value of c, or -1. Explicit ASCII ranges, not isalnum(): the
 * format must not depend on the locale. */
static int base62_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 36;
    return -1;
}

bool cv_base62_char_ok(char c)
{
    return base62_value(c) >= 0;
}

cv_status cv_token_random_base62(char *out, size_t n)
{
    unsigned char pool[RANDOM_POOL_BYTES];
    size_t made = 0;
    cv_status st = CV_OK;

    assert(out != NULL || n == 0);
    while (made < n) {
        st = cv_random_bytes(pool, sizeof pool);
        if (st != CV_OK)
            goto out;
        for (size_t i = 0; i < sizeof pool && made < n; i++) {
            if (pool[i] >= BYTE_REJECT_FROM)
                continue;
            out[made++] = alphabet[pool[i] % BASE62];
        }
    }
out:
    /* The pool holds the bytes behind an API key's characters: not left on the stack. */
    cv_wipe(pool, sizeof pool);
    if (st != CV_OK && n > 0)
        cv_wipe(out, n);
    return st;
}

/* Schoolbook base conversion done in the output buffer itself, so no copy of
 * the input (and no heap) is needed: out holds digit values 0-61, most
 * significant first, and each input byte does out = out * 256 + byte. On
 * false, out is left zeroed rather than holding a truncated number. */
bool cv_base62_encode(const unsigned char *in, size_t in_len, char *out, size_t out_chars)
{
    if ((in == NULL && in_len > 0) || (out == NULL && out_chars > 0))
        return false;
    if (out_chars > 0)
        memset(out, 0, out_chars);
    for (size_t i = 0; i < in_len; i++) {
        unsigned carry = in[i];
        for (size_t j = out_chars; j-- > 0;) {
            /* At most 61 * 256 + 255, so carry stays below 256. */
            unsigned v = (unsigned)(unsigned char)out[j] * 256u + carry;
            out[j] = (char)(v % BASE62);
            carry = v / BASE62;
        }
        if (carry != 0) {
            cv_wipe(out, out_chars);
            return false;
        }
    }
    for (size_t j = 0; j < out_chars; j++)
        out[j] = alphabet[(unsigned char)out[j]];
    return true;
}

/* The same conversion the other way: out = out * 62 + digit per character.
 * Overflow means the string names a number wider than out_len bytes, which
 * no encoder of ours produced, so it is rejected, not truncated. */
bool cv_base62_decode(const char *in, size_t in_len, unsigned char *out, size_t out_len)
{
    if ((in == NULL && in_len > 0) || (out == NULL && out_len > 0))
        return false;
    if (out_len > 0)
        memset(out, 0, out_len);
    for (size_t i = 0; i < in_len; i++) {
        int d = base62_value(in[i]);
        if (d < 0)
            goto fail;
        unsigned carry = (unsigned)d;
        for (size_t j = out_len; j-- > 0;) {
            unsigned v = out[j] * BASE62 + carry;
            out[j] = (unsigned char)(v & 0xFFu);
            carry = v >> 8;
        }
        if (carry != 0)
            goto fail;
    }
    return true;
fail:
    if (out_len > 0)
        cv_wipe(out, out_len);
    return false;
}

/* True when s is exactly prefix followed by base62 characters up to total bytes. */
static bool has_format(const char *s, size_t len, const char *prefix, size_t total)
{
    size_t prefix_len = strlen(prefix);

    if (s == NULL || len != total || memcmp(s, prefix, prefix_len) != 0)
        return false;
    for (size_t i = prefix_len; i < len; i++) {
        if (!cv_base62_char_ok(s[i]))
            return false;
    }
    return true;
}

/* Writes prefix + random_chars random characters + NUL; on failure out is
 * wiped to an empty string so a caller that ignores the status sends nothing. */
static cv_status make_prefixed(const char *prefix, size_t random_chars, char *out)
{
    size_t prefix_len = strlen(prefix);

    memcpy(out, prefix, prefix_len);
    cv_status st = cv_token_random_base62(out + prefix_len, random_chars);
    if (st != CV_OK) {
        cv_wipe(out, prefix_len + random_chars + 1);
        return st;
    }
    out[prefix_len + random_chars] = '\0';
    return CV_OK;
}

cv_status cv_token_generate(char out[CV_TOKEN_LEN + 1])
{
    return make_prefixed(CV_TOKEN_PREFIX, CV_TOKEN_RANDOM_CHARS, out);
}

bool cv_token_is_valid(const char *s, size_t len)
{
    return has_format(s, len, CV_TOKEN_PREFIX, CV_TOKEN_LEN);
}

void cv_token_format_fingerprint(const unsigned char mac[16], char out[CV_FINGERPRINT_LEN + 1])
{
    size_t prefix_len = sizeof CV_FINGERPRINT_PREFIX - 1;

    memcpy(out, CV_FINGERPRINT_PREFIX, prefix_len);
    /* 62^22 > 2^128, so 16 bytes always fit in 22 characters. */
    bool fits = cv_base62_encode(mac, 16, out + prefix_len, CV_FINGERPRINT_CHARS);
    assert(fits);
    (void)fits;
    out[CV_FINGERPRINT_LEN] = '\0';
}

bool cv_token_fingerprint_is_valid(const char *s, size_t len)
{
    unsigned char mac[16];

    if (!has_format(s, len, CV_FINGERPRINT_PREFIX, CV_FINGERPRINT_LEN))
        return false;
    /* 22 characters can name numbers up to 62^22 (about 2^131); only those
     * below 2^128 can have come from cv_token_format_fingerprint. */
    return cv_base62_decode(s + sizeof CV_FINGERPRINT_PREFIX - 1, CV_FINGERPRINT_CHARS, mac,
                            sizeof mac);
}

cv_status cv_token_request_id(char out[CV_REQUEST_ID_LEN + 1])
{
    return make_prefixed(REQUEST_ID_PREFIX, CV_REQUEST_ID_LEN - (sizeof REQUEST_ID_PREFIX - 1),
                         out);
}

cv_status cv_token_merchant_id(char out[CV_MERCHANT_ID_LEN + 1])
{
    return make_prefixed(MERCHANT_ID_PREFIX, CV_MERCHANT_ID_LEN - (sizeof MERCHANT_ID_PREFIX - 1),
                         out);
}

/* The prefix is how a leaked key is recognised (by us and by secret
 * scanners) and what decides its scopes, so only these four exist. */
static bool api_key_kind_ok(const char *kind, size_t len)
{
    static const char *const kinds[] = {"pk", "sk", "dk", "rk"};
    bool ok = false;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        ok = ok || (len == API_KEY_KIND_LEN && memcmp(kind, kinds[i], len) == 0);
    return ok;
}

/* CRC-32, IEEE 802.3 polynomial, reflected (zlib's crc32, Python's
 * zlib.crc32, Go's crc32.ChecksumIEEE): what a secret scanner has at hand. */
static uint32_t crc32_ieee(const char *s, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned char)s[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xffffffffu;
}

void cv_token_api_key_checksum(const char *key, char out[CV_APIKEY_CHECK_CHARS])
{
    uint32_t crc = crc32_ieee(key, CV_APIKEY_LEGACY_LEN);
    const unsigned char be[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                                 (unsigned char)(crc >> 8), (unsigned char)crc};
    bool fits = cv_base62_encode(be, sizeof be, out, CV_APIKEY_CHECK_CHARS);
    assert(fits); /* 62^6 > 2^32 */
    (void)fits;
}

/* The kind is chosen by our own code from a key's scopes, never taken from
 * a client, so an unknown kind is a bug here: CV_ERR_INTERNAL. */
cv_status cv_token_api_key(const char *kind, char out[CV_APIKEY_LEN + 1])
{
    char prefix[API_KEY_KIND_LEN + 2];

    if (kind == NULL || !api_key_kind_ok(kind, strlen(kind))) {
        cv_wipe(out, CV_APIKEY_LEN + 1);
        return CV_ERR_INTERNAL;
    }
    memcpy(prefix, kind, API_KEY_KIND_LEN);
    prefix[API_KEY_KIND_LEN] = '_';
    prefix[API_KEY_KIND_LEN + 1] = '\0';
    CV_TRY(make_prefixed(prefix, CV_APIKEY_RANDOM_CHARS, out));
    cv_token_api_key_checksum(out, out + CV_APIKEY_LEGACY_LEN);
    out[CV_APIKEY_LEN] = '\0';
    return CV_OK;
}

bool cv_token_api_key_kind_is(const char *s)
{
    return s != NULL && strnlen(s, API_KEY_KIND_LEN + 1) == API_KEY_KIND_LEN + 1 &&
           api_key_kind_ok(s, API_KEY_KIND_LEN) && s[API_KEY_KIND_LEN] == '_';
}

bool cv_token_api_key_is_valid(const char *s, size_t len)
{
    if (s == NULL || (len != CV_APIKEY_LEN && len != CV_APIKEY_LEGACY_LEN) ||
        !api_key_kind_ok(s, API_KEY_KIND_LEN) || s[API_KEY_KIND_LEN] != '_')
        return false;
    for (size_t i = API_KEY_KIND_LEN + 1; i < len; i++) {
        if (!cv_base62_char_ok(s[i]))
            return false;
    }
    if (len == CV_APIKEY_LEGACY_LEN)
        return true; /* made before checksums: the format is all there is to check */
    /* The checksum is no secret (anyone holding the key can compute it),
     * but the comparison is constant-time all the same: it reads a key. */
    char want[CV_APIKEY_CHECK_CHARS];
    unsigned char diff = 0;
    cv_token_api_key_checksum(s, want);
    for (size_t i = 0; i < CV_APIKEY_CHECK_CHARS; i++)
        diff |= (unsigned char)(want[i] ^ s[CV_APIKEY_LEGACY_LEN + i]);
    return diff == 0;
}

bool cv_token_idempotency_key_is_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

int cv_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
