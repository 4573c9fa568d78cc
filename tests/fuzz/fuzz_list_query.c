/* fuzz_list_query.c: the query string of GET /v1/tokens as a client or an
 * attacker can send it, through cv_list_query_add/_finish, and the cursor
 * decoder on its own. Input: one byte choosing the mode (even: a query
 * "name=value&name=value..." where a part without '=' has no value, as MHD
 * reports it, and a NUL ends a string early, as in C; odd: the rest is one
 * cursor). Invariants: an accepted query has a limit of 1..100, a cursor
 * that encodes back to a valid cursor, a valid fingerprint or none, a
 * metadata key the metadata rules accept; an accepted cursor encodes back to
 * exactly the input; only the two documented statuses are ever returned. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/list_query.h"
#include "cardvault/metadata.h"
#include "cardvault/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_list_query invariant broken: %s\n", why);
    abort();
}

static void cursor_only(const uint8_t *data, size_t size)
{
    int64_t us = 0;
    char tok[CV_TOKEN_LEN + 1];
    char back[CV_LIST_CURSOR_LEN + 1];
    cv_status st = cv_list_cursor_decode((const char *)data, size, &us, tok);
    if (st == CV_OK) {
        if (!cv_list_cursor_encode(us, tok, back))
            fail("an accepted cursor does not encode");
        if (size != CV_LIST_CURSOR_LEN || memcmp(back, data, size) != 0)
            fail("an accepted cursor is not the one spelling we write");
    } else if (st != CV_ERR_INVALID_CURSOR) {
        fail("cursor: an undocumented status");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) != 0) {
        cursor_only(data + 1, size - 1);
        return 0;
    }
    struct cv_list_req req;
    cv_list_query_init(&req);
    char *q = malloc(size);
    memcpy(q, data + 1, size - 1);
    q[size - 1] = '\0';
    for (char *part = q; part != NULL;) {
        char *amp = strchr(part, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(part, '=');
        if (eq != NULL)
            *eq = '\0';
        (void)cv_list_query_add(&req, part, eq != NULL ? eq + 1 : NULL);
        part = amp != NULL ? amp + 1 : NULL;
    }
    cv_status st = cv_list_query_finish(&req);
    if (st == CV_OK) {
        char back[CV_LIST_CURSOR_LEN + 1];
        if (req.limit < 1 || req.limit > CV_LIST_LIMIT_MAX)
            fail("limit out of range");
        if (req.has_cursor && !cv_list_cursor_encode(req.after_created_us, req.after_token, back))
            fail("accepted cursor does not encode back");
        if (req.fingerprint[0] != '\0' &&
            !cv_token_fingerprint_is_valid(req.fingerprint, strlen(req.fingerprint)))
            fail("accepted fingerprint is malformed");
        if (req.meta_key[0] != '\0' &&
            cv_metadata_check_key(req.meta_key, strlen(req.meta_key)) != CV_OK)
            fail("accepted metadata key breaks the rules");
        if (strlen(req.meta_value) > CV_META_VALUE_MAX)
            fail("metadata value too long");
        if ((req.has_created_gte && req.created_gte < 0) ||
            (req.has_created_lt && req.created_lt < 0))
            fail("negative created bound");
    } else if (st != CV_ERR_INVALID_LIST_QUERY && st != CV_ERR_INVALID_CURSOR) {
        fail("an undocumented status");
    }
    free(q);
    return 0;
}
