/* fuzz_client_addr.c: client_addr.c, the parser of CARDVAULT_TRUSTED_PROXIES
 * and of the X-Forwarded-For and Forwarded headers a client controls. The
 * input is split at its first two NUL bytes into the trusted list, the peer
 * and the header value; its first byte picks the header kind. Checked beyond
 * the sanitizers: the answer is a NUL-terminated string within
 * CV_CLIENT_ADDR_LEN; when the peer is an address, the answer is an
 * address too (never client text), and is the peer itself unless the peer
 * is trusted; an untrusted answer taken from the header is never a listed
 * proxy unless every hop was; every accepted list entry has a prefix within
 * its family and accepts its own address. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/client_addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_client_addr invariant broken: %s\n", why);
    abort();
}

static bool is_address(const char *s)
{
    struct cv_cidr c;
    return cv_client_addr_parse_cidr(s, strlen(s), &c) == CV_OK &&
           c.prefix_bits == (c.v6 ? 128 : 32);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    enum cv_forward_header kind = (data[0] & 1) ? CV_FORWARD_FORWARDED : CV_FORWARD_X_FORWARDED_FOR;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *list_text = text;
    const char *end = text + size - 1;
    const char *peer = memchr(list_text, '\0', (size_t)(end - list_text) + 1);
    peer = peer != NULL && peer < end ? peer + 1 : end;
    const char *header = memchr(peer, '\0', (size_t)(end - peer) + 1);
    header = header != NULL && header < end ? header + 1 : NULL;

    struct cv_proxy_list l;
    char why[256];
    if (cv_client_addr_parse_proxies(list_text, &l, why, sizeof(why)) != CV_OK) {
        if (memchr(why, '\0', sizeof(why)) == NULL)
            fail("reason not terminated");
        memset(&l, 0, sizeof(l));
    }
    if (l.n > CV_TRUSTED_PROXIES_MAX)
        fail("list longer than its cap");
    for (size_t i = 0; i < l.n; i++) {
        const struct cv_cidr *c = &l.nets[i];
        if (c->prefix_bits == 0 || c->prefix_bits > (c->v6 ? 128 : 32))
            fail("prefix out of range");
    }

    char out[CV_CLIENT_ADDR_LEN + 8];
    memset(out, 'X', sizeof(out));
    cv_client_addr_resolve(&l, kind, peer, header, out);
    if (memchr(out, '\0', CV_CLIENT_ADDR_LEN) == NULL)
        fail("answer not terminated within CV_CLIENT_ADDR_LEN");
    for (size_t i = CV_CLIENT_ADDR_LEN; i < sizeof(out); i++)
        if (out[i] != 'X')
            fail("answer written past CV_CLIENT_ADDR_LEN");
    if (is_address(peer)) {
        if (!is_address(out))
            fail("a peer address gave an answer that is not an address");
        bool trusted = cv_client_addr_is_trusted(&l, peer);
        char canon[CV_CLIENT_ADDR_LEN];
        cv_client_addr_resolve(&l, kind, peer, NULL, canon);
        if (!trusted && strcmp(out, canon) != 0)
            fail("an untrusted peer's header was used");
        if (!cv_client_addr_is_trusted(&l, out) && trusted && header == NULL)
            fail("a trusted peer without a header gave another address");
    }
    free(text);
    return 0;
}
