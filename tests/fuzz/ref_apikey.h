#ifndef CV_FUZZ_REF_APIKEY_H
#define CV_FUZZ_REF_APIKEY_H

/* The API key rule written out again, independently of token.c, as
 * docs/key-management.md states it for secret scanners: kind "pk", "sk",
 * "dk" or "rk", "_", 43 base62 characters, then either nothing (a key made before
 * checksums) or 6 base62 characters holding the CRC-32 (table-driven here,
 * bitwise in token.c) of the 46 before them as a big-endian base62 number. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static bool ref_b62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static uint32_t ref_crc32(const char *s, size_t n)
{
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        crc = table[(crc ^ (unsigned char)s[i]) & 0xffu] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static bool ref_api_key(const char *s, size_t n)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if ((n != 46 && n != 52) || s[2] != '_')
        return false;
    if (memcmp(s, "pk", 2) != 0 && memcmp(s, "sk", 2) != 0 && memcmp(s, "dk", 2) != 0 &&
        memcmp(s, "rk", 2) != 0)
        return false;
    for (size_t i = 3; i < n; i++)
        if (!ref_b62(s[i]))
            return false;
    if (n == 46)
        return true;
    uint64_t v = ref_crc32(s, 46);
    for (size_t i = 6; i-- > 0;) {
        if (s[46 + i] != digits[v % 62])
            return false;
        v /= 62;
    }
    return true;
}

#endif
