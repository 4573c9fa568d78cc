/* Hex test vectors to bytes, for the unit tests. Digits are decoded by the
 * service's own cv_hex_value so the tests do not carry a second decoder. */
#ifndef CV_TEST_UNHEX_H
#define CV_TEST_UNHEX_H

#include <stddef.h>
#include <string.h>

#include "cardvault/token.h"

/* Decodes hex into out (cap bytes); returns the byte count or -1. */
static inline long unhex(const char *s, unsigned char *out, size_t cap)
{
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > cap)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = cv_hex_value((unsigned char)s[2 * i]);
        int lo = cv_hex_value((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

#endif
