/* fuzz_json_relay.c: a relay request body (POST /v1/relay/{destination})
 * through the strict decoder (json_codec.c), capped at the HTTP layer's
 * 8 KiB, then through the flow's checks that need no token: placeholders
 * outside the body and the template against the decoded aliases and content
 * type (relay_template.c). Invariants: a refusal leaves nothing behind and
 * names only a known field (or an echoable unknown one); an accepted request
 * has an allowed method, a path that starts with '/' and has no control
 * byte or blank, 1-4 aliases of the alias syntax, at most 16 headers with no
 * CR or LF, none the vault sets. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cardvault/http_server.h"
#include "cardvault/json_codec.h"
#include "cardvault/relay_template.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_json_relay invariant broken: %s\n", why);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cv_json_init();
    return 0;
}

static bool param_is_known(const char *p)
{
    static const char *const fields[] = {"method", "path", "headers", "body", "tokens"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (strcmp(p, fields[i]) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > CV_HTTP_BODY_MAX_BYTES)
        return 0;
    char *body = malloc(size > 0 ? size : 1);
    if (body == NULL)
        return 0;
    if (size > 0)
        memcpy(body, data, size);
    struct cv_relay_req q;
    struct cv_json_param param;
    cv_status st = cv_json_decode_relay(body, size, &q, &param);
    if (st != CV_OK) {
        if (q.path != NULL || q.body != NULL || q.n_headers != 0 || q.n_tokens != 0)
            fail("a refusal left decoded parts behind");
        if (param.name[0] != '\0' && !param_is_known(param.name) &&
            !(st == CV_ERR_UNKNOWN_FIELD &&
              cv_json_param_is_echoable(param.name, strlen(param.name))))
            fail("a refusal names a field that is neither known nor echoable");
        free(body);
        return 0;
    }
    if (q.path == NULL || q.path[0] != '/' || strlen(q.path) > CV_RELAY_PATH_MAX)
        fail("accepted path");
    for (const char *p = q.path; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            fail("accepted path with a blank or control byte");
    if (q.n_tokens < 1 || q.n_tokens > CV_RELAY_TOKENS_MAX || q.n_headers > CV_RELAY_HEADERS_MAX)
        fail("accepted token or header count");
    const char *ct = NULL;
    for (size_t i = 0; i < q.n_headers; i++) {
        if (strpbrk(q.headers[i].value, "\r\n") != NULL ||
            strcasecmp(q.headers[i].name, "host") == 0)
            fail("accepted header");
        if (strcasecmp(q.headers[i].name, "content-type") == 0)
            ct = q.headers[i].value;
    }
    const char *aliases[CV_RELAY_TOKENS_MAX];
    for (size_t i = 0; i < q.n_tokens; i++) {
        aliases[i] = q.aliases[i];
        if (q.aliases[i][0] < 'a' || q.aliases[i][0] > 'z')
            fail("accepted alias");
    }
    if (q.body != NULL) {
        struct cv_relay_template_use use;
        char tparam[CV_RELAY_PARAM_MAX];
        (void)cv_relay_template_check(q.body, q.body_len, cv_relay_content_of(ct), aliases,
                                      q.n_tokens, &use, tparam);
        if (tparam[0] != '\0' && !cv_relay_placeholder_echoable(tparam, strlen(tparam)))
            fail("template error names an unechoable placeholder");
    }
    (void)cv_relay_has_placeholder(q.path, strlen(q.path));
    cv_relay_req_cleanup(&q);
    free(body);
    return 0;
}
