#ifndef CV_TOKEN_H
#define CV_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* Token, fingerprint, API-key and request-id formats. Random strings are
 * drawn from the OpenSSL CSPRNG with rejection sampling so every base62
 * character is uniform. Nothing here touches card data. */

#define CV_TOKEN_PREFIX       "tok_"
#define CV_TOKEN_RANDOM_CHARS 22 /* 22 * log2(62) = 130.9 bits */
#define CV_TOKEN_LEN          (4 + CV_TOKEN_RANDOM_CHARS)

#define CV_FINGERPRINT_PREFIX "fp_"
#define CV_FINGERPRINT_CHARS  22 /* base62 of 16 bytes of HMAC output */
#define CV_FINGERPRINT_LEN    (3 + CV_FINGERPRINT_CHARS)

/* An API key: kind "_" random checksum, e.g. "sk_" + 43 + 6 characters (kinds pk, sk, dk, rk). The
 * checksum is the CRC-32 (IEEE, as zlib's crc32) of the 46 characters before
 * it, as a big-endian number in 6 base62 characters, so a secret scanner can
 * tell a real key from look-alike text and a mistyped key fails before any
 * lookup (docs/key-management.md). Keys made before the checksum existed
 * (CV_APIKEY_LEGACY_LEN, no checksum) are still accepted. */
#define CV_APIKEY_RANDOM_CHARS 43 /* 43 * log2(62) = 256.03 bits */
#define CV_APIKEY_CHECK_CHARS  6  /* 62^6 > 2^32 */
#define CV_APIKEY_LEGACY_LEN   (3 + CV_APIKEY_RANDOM_CHARS)
#define CV_APIKEY_LEN          (CV_APIKEY_LEGACY_LEN + CV_APIKEY_CHECK_CHARS)
#define CV_APIKEY_PREFIX_LEN   12 /* kept readable for display and revocation */

#define CV_REQUEST_ID_LEN  (4 + 20) /* "req_" + 20 chars */
#define CV_MERCHANT_ID_LEN (4 + 20) /* "mer_" + 20 chars */

/* Writes n uniform base62 characters of CSPRNG output to out (no NUL). */
CV_MUST_USE cv_status cv_token_random_base62(char *out, size_t n);
/* Encodes `in` as a fixed-width big-endian base62 number of exactly out_chars
 * characters (leading '0's); false if it does not fit. Writes no NUL. */
bool cv_base62_encode(const unsigned char *in, size_t in_len, char *out, size_t out_chars);
/* Decodes a fixed-width base62 string into out_len bytes; false on a bad char or overflow. */
bool cv_base62_decode(const char *in, size_t in_len, unsigned char *out, size_t out_len);
/* The value of a hexadecimal digit (either case), or -1. */
int cv_hex_value(int c);
/* True for a character of [0-9A-Za-z]. */
bool cv_base62_char_ok(char c);

/* New token "tok_" + 22 random chars, NUL-terminated in out[CV_TOKEN_LEN + 1]. */
CV_MUST_USE cv_status cv_token_generate(char out[CV_TOKEN_LEN + 1]);
/* True when s (len bytes, need not be NUL-terminated) has exactly the token format. */
bool cv_token_is_valid(const char *s, size_t len);
/* "fp_" + base62 of the first 16 bytes of mac; out[CV_FINGERPRINT_LEN + 1]. */
void cv_token_format_fingerprint(const unsigned char mac[16], char out[CV_FINGERPRINT_LEN + 1]);
/* True when s has exactly the fingerprint format. */
bool cv_token_fingerprint_is_valid(const char *s, size_t len);
/* "req_" + 20 random chars. */
CV_MUST_USE cv_status cv_token_request_id(char out[CV_REQUEST_ID_LEN + 1]);
/* "mer_" + 20 random chars. */
CV_MUST_USE cv_status cv_token_merchant_id(char out[CV_MERCHANT_ID_LEN + 1]);
/* kind "pk", "sk", "dk" or "rk" + "_" + 43 random chars + 6 checksum chars. */
CV_MUST_USE cv_status cv_token_api_key(const char *kind, char out[CV_APIKEY_LEN + 1]);
/* Idempotency-Key header: 1-255 printable ASCII characters (0x20-0x7e). */
bool cv_token_idempotency_key_is_valid(const char *s, size_t len);
/* True when s (NUL-terminated) starts with an API key's kind and '_' ("pk_",
 * "sk_", "dk_", "rk_"): how a key pasted where it does not belong is spotted. */
bool cv_token_api_key_kind_is(const char *s);
/* True when s is an API key: a known kind prefix, 43 base62 chars, and
 * either the 6-character checksum matching them or (a key made before
 * checksums) nothing more. */
bool cv_token_api_key_is_valid(const char *s, size_t len);
/* The checksum characters of the first CV_APIKEY_LEGACY_LEN chars of key
 * into out[CV_APIKEY_CHECK_CHARS] (no NUL). */
void cv_token_api_key_checksum(const char *key, char out[CV_APIKEY_CHECK_CHARS]);

#endif
