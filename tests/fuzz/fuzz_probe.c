/* fuzz_probe.c: `cardvault probe`'s parsers on raw bytes, each on an
 * exact-size heap copy (not NUL-terminated: a read past len is an ASan
 * report): cv_probe_parse_url and cv_probe_parse_status. Invariants: an
 * accepted URL gives a NUL-terminated literal of its family that inet_pton
 * takes, and a port from 1 to 65535; a refused one leaves a reason naming
 * --ops-url; a status code is 100-999. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cardvault/cli_probe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_probe invariant broken: %s\n", why);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    struct cv_probe_target t;
    char why[256] = "";
    if (cv_probe_parse_url(copy, size, &t, why, sizeof(why)) == CV_OK) {
        unsigned char addr[sizeof(struct in6_addr)];
        if (memchr(t.host, '\0', sizeof(t.host)) == NULL)
            fail("host not terminated");
        if ((t.family != AF_INET && t.family != AF_INET6) || inet_pton(t.family, t.host, addr) != 1)
            fail("host is no literal of its family");
        if (t.port == 0)
            fail("port 0");
    } else if (strstr(why, "--ops-url") == NULL) {
        fail("refusal without a reason");
    }
    int code = 0;
    if (cv_probe_parse_status(copy, size, &code) == CV_OK && (code < 100 || code > 999))
        fail("status code out of range");
    free(copy);
    return 0;
}
