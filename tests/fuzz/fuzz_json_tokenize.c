/* fuzz_json_tokenize.c: a tokenize request body, from bytes to a validated
 * card, exactly as POST /v1/tokens treats it: strict JSON decoding
 * (json_codec.c), then the checks api_tokens.c applies in its validate()
 * (PAN normalisation, brand, expiry, CVC, cardholder name), then the copy of
 * the name into struct cv_card_plain. Bodies are capped at the HTTP layer's
 * 8 KiB like the service caps them. Beyond the sanitizers, it aborts when an
 * invariant breaks: a failed decode that leaves buffers behind or names a
 * field that does not exist, an accepted PAN that is not 12-19 Luhn-valid
 * digits, an accepted name that could not fit the sealed record. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"
#include "cardvault/envelope.h"
#include "cardvault/http_server.h"
#include "cardvault/json_codec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed clock keeps every run reproducible: June 2025. */
#define NOW_MONTH 6
#define NOW_YEAR  2025

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_json_tokenize invariant broken: %s\n", why);
    abort();
}

static bool param_is_known(const char *p)
{
    static const char *const fields[] = {"pan",      "exp_month",       "exp_year",
                                         "cvc",      "cardholder_name", "reuse_existing",
                                         "metadata", "ttl_seconds"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(p, fields[i]) == 0)
            return true;
    return false;
}

/* Independent Luhn, the oracle for what normalize_pan accepted. */
static bool ref_luhn(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (v < 0 || v > 9)
            return false;
        if (i % 2 == 1)
            v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

/* api_tokens.c validate(), step for step, with invariants between steps. */
static void validate(const struct cv_tokenize_req *req)
{
    struct cv_card_plain card;
    size_t pan_len = 0;
    memset(&card, 0, sizeof(card));

    if (req->pan == NULL || req->pan->data[req->pan->len] != '\0')
        fail("decoded pan missing or not NUL-terminated");
    if (cv_card_normalize_pan((const char *)req->pan->data, req->pan->len, card.pan, &pan_len) !=
        CV_OK) {
        for (size_t i = 0; i < sizeof(card.pan); i++)
            if (card.pan[i] != 0)
                fail("refused PAN left digits in the output buffer");
        return;
    }
    if (pan_len < CV_PAN_MIN_DIGITS || pan_len > CV_PAN_MAX_DIGITS || strlen(card.pan) != pan_len ||
        !ref_luhn(card.pan, pan_len))
        fail("accepted PAN is not 12-19 Luhn-valid digits");
    enum cv_card_brand brand = cv_card_brand_of(card.pan, pan_len);
    if (cv_card_brand_name(brand) == NULL)
        fail("brand without a name");

    if (cv_card_check_expiry(req->exp_month, req->exp_year, NOW_MONTH, NOW_YEAR) == CV_OK) {
        if (req->exp_month < 1 || req->exp_month > 12 || req->exp_year < NOW_YEAR ||
            req->exp_year > NOW_YEAR + 20)
            fail("accepted an impossible expiry");
        card.exp_month = (int)req->exp_month;
        card.exp_year = (int)req->exp_year;
    }
    if (req->cvc != NULL &&
        cv_card_check_cvc((const char *)req->cvc->data, req->cvc->len, brand) == CV_OK) {
        if (req->cvc->len != (brand == CV_BRAND_AMEX ? 4u : 3u))
            fail("accepted a CVC of the wrong length");
        for (size_t i = 0; i < req->cvc->len; i++)
            if (req->cvc->data[i] < '0' || req->cvc->data[i] > '9')
                fail("accepted a CVC with a non-digit");
    }
    if (req->name != NULL &&
        cv_card_check_name((const char *)req->name->data, req->name->len) == CV_OK) {
        /* api_tokens.c copies the name into card.name[129] on this answer alone. */
        if (req->name->len == 0 || req->name->len > CV_NAME_MAX_BYTES ||
            req->name->len >= sizeof(card.name))
            fail("accepted a name that does not fit the sealed record");
        if (memchr(req->name->data, '\0', req->name->len) != NULL)
            fail("accepted a name with a NUL byte");
        memcpy(card.name, req->name->data, req->name->len);
        card.name[req->name->len] = '\0';
        card.has_name = 1;
    }
    cv_wipe(&card, sizeof(card));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cv_json_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cv_tokenize_req req;
    struct cv_json_param out_param;
    memcpy(out_param.name, "sentinel", sizeof("sentinel"));
    if (size > CV_HTTP_BODY_MAX_BYTES)
        return 0; /* 413 before any decoding */
    cv_status st = cv_json_decode_tokenize((const char *)data, size, &req, &out_param);
    const char *param = out_param.name[0] != '\0' ? out_param.name : NULL;
    if (st != CV_OK) {
        if (req.pan != NULL || req.cvc != NULL || req.name != NULL || req.metadata != NULL)
            fail("failed decode left buffers behind");
        if (param != NULL && st != CV_ERR_UNKNOWN_FIELD && !param_is_known(param))
            fail("error param is not a field name");
        if ((st == CV_ERR_MISSING_FIELD || st == CV_ERR_INVALID_TYPE) && param == NULL)
            fail("missing_field/invalid_type without a param");
        /* An unknown field is named only when the (decoded) name cannot
         * carry card data, and a known field is never called unknown. */
        if (st == CV_ERR_UNKNOWN_FIELD && param != NULL &&
            (!cv_json_param_is_echoable(param, strlen(param)) || param_is_known(param)))
            fail("unknown_field names a field it must not");
        return 0;
    }
    if (param != NULL)
        fail("success with a param");
    validate(&req);
    cv_tokenize_req_cleanup(&req);
    return 0;
}
