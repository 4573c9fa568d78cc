/* fuzz_relay_dest.c: the relay destinations file parser (relay_dest.c) on
 * raw bytes. Invariants: a refusal leaves nothing parsed and gives a reason;
 * an accepted file's destinations hold only https URLs on DNS names (no IP
 * literal in any spelling: the last label starts with a letter; no userinfo,
 * query), at least one method and path, both halves of a
 * client certificate or neither; and every listed path is allowed by its own
 * rule while a ".." continuation of it never is. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/relay_dest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_relay_dest invariant broken: %s\n", why);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cv_relay_destinations d;
    char why[256] = "";
    cv_status st = cv_relay_destinations_parse((const char *)data, size, &d, why, sizeof(why));
    if (st != CV_OK) {
        if (d.n != 0 || d.v != NULL)
            fail("a refusal left destinations behind");
        if (why[0] == '\0')
            fail("a refusal without a reason");
        return 0;
    }
    for (size_t i = 0; i < d.n; i++) {
        const struct cv_relay_destination *x = &d.v[i];
        if (strncmp(x->url, "https://", 8) != 0 || strchr(x->url + 8, '@') != NULL ||
            strchr(x->url, '?') != NULL || strchr(x->url, '#') != NULL)
            fail("an accepted URL that is not plain https");
        if (strspn(x->host, "0123456789.") == strlen(x->host))
            fail("an IPv4 literal host accepted");
        const char *last = strrchr(x->host, '.');
        last = last != NULL ? last + 1 : x->host;
        if (!((*last >= 'a' && *last <= 'z') || (*last >= 'A' && *last <= 'Z')))
            fail("a host whose last label could be read as a number (0x7f.1, 0x7f000001)");
        if (x->methods == 0 || x->n_paths == 0)
            fail("a destination without methods or paths");
        if ((x->client_cert == NULL) != (x->client_key == NULL))
            fail("half a client certificate");
        if (cv_relay_destinations_find(&d, x->name) != x)
            fail("a name that does not find its own destination");
        const char *method = (x->methods & CV_RELAY_METHOD_POST)    ? "POST"
                             : (x->methods & CV_RELAY_METHOD_GET)   ? "GET"
                             : (x->methods & CV_RELAY_METHOD_PUT)   ? "PUT"
                             : (x->methods & CV_RELAY_METHOD_PATCH) ? "PATCH"
                                                                    : "DELETE";
        for (size_t p = 0; p < x->n_paths; p++) {
            if (cv_relay_destination_allows(x, method, x->paths[p]) != CV_OK)
                fail("a listed path refused by its own rule");
            char climb[CV_RELAY_URL_MAX + 8];
            snprintf(climb, sizeof(climb), "%s/../x", x->paths[p]);
            if (cv_relay_destination_allows(x, method, climb) == CV_OK)
                fail("a path climbing out with .. allowed");
        }
    }
    cv_relay_destinations_free(&d);
    return 0;
}
