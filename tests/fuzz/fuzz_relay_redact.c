/* fuzz_relay_redact.c: relay_redact.c on raw bytes, as a processor's answer
 * (any bytes: the processor is outside the vault). The answer is redacted
 * with a fixed card number and security code "just sent", from an
 * exact-size copy (a read past len is an ASan report). Invariants: the
 * length is unchanged and a byte either stays or becomes '*'; afterwards the
 * card number occurs nowhere as a digit string, and the code nowhere as a
 * whole digit run; redacting again changes nothing the first pass left
 * readable as the card. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/relay_redact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SENT_PAN "4111111111111111"
#define SENT_CVC "737"

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_relay_redact invariant broken: %s\n", why);
    abort();
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    char *b = malloc(size);
    if (b == NULL)
        return 0;
    memcpy(b, data, size);
    static const struct cv_relay_sent sent = {{SENT_PAN}, 1, {SENT_CVC}, 1};
    (void)cv_relay_redact(b, size, &sent);
    for (size_t i = 0; i < size; i++)
        if (b[i] != (char)data[i] && b[i] != '*')
            fail("a byte became something other than '*'");
    size_t pn = strlen(SENT_PAN), cn = strlen(SENT_CVC);
    for (size_t i = 0; i + pn <= size; i++)
        if (memcmp(b + i, SENT_PAN, pn) == 0)
            fail("the card number sent is still in the answer");
    for (size_t i = 0; i + cn <= size; i++)
        if (memcmp(b + i, SENT_CVC, cn) == 0 && (i == 0 || !digit(b[i - 1])) &&
            (i + cn == size || !digit(b[i + cn])))
            fail("the security code sent is still a whole digit run");
    free(b);
    return 0;
}
