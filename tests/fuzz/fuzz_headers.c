/* fuzz_headers.c: the request headers a client controls before
 * authentication: Authorization (cv_auth_parse_bearer) and Idempotency-Key
 * (cv_token_idempotency_key_is_valid, in token.c: there is no separate
 * idempotency header module). Header values reach the service as C strings
 * (libmicrohttpd stops at NUL), so the bearer parser sees the input up to its
 * first NUL; the idempotency check sees the raw bytes and length. Both are
 * held to oracles of their documented rules: "Bearer" (any case), one or
 * more spaces, then exactly a pk_/sk_/dk_ key of 43 base62 characters; and
 * 1-255 printable ASCII characters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cardvault/auth.h"
#include "cardvault/token.h"
#include "ref_apikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_headers invariant broken: %s\n", why);
    abort();
}

static bool ref_bearer(const char *h, const char **key)
{
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *k = h + 7;
    while (*k == ' ')
        k++;
    if (!ref_api_key(k, strlen(k)))
        return false;
    *key = k;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *h = malloc(size + 1);
    memcpy(h, data, size);
    h[size] = '\0';
    const char *key = NULL, *want = NULL;
    size_t len = 0;
    bool ok = cv_auth_parse_bearer(h, &key, &len) == CV_OK;
    if (ok != ref_bearer(h, &want))
        fail("parse_bearer differs from the rule");
    if (ok && (key != want || (len != CV_APIKEY_LEN && len != CV_APIKEY_LEGACY_LEN) ||
               key[len] != '\0' || !cv_token_api_key_is_valid(key, len)))
        fail("parse_bearer returned the wrong span");
    if (!ok && key != NULL)
        fail("refused header still set the key");

    bool idem = cv_token_idempotency_key_is_valid((const char *)data, size);
    bool idem_ref = size >= 1 && size <= 255;
    for (size_t i = 0; idem_ref && i < size; i++)
        idem_ref = data[i] >= 0x20 && data[i] <= 0x7e;
    if (idem != idem_ref)
        fail("idempotency key check differs from the rule");
    free(h);
    return 0;
}
