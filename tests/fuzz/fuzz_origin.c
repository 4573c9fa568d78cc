/* fuzz_origin.c: origin.c on raw bytes: cv_origin_normalize on an
 * exact-size copy (not NUL-terminated: a read past len is an ASan report),
 * cv_origin_list_parse and cv_origin_from_host on a NUL-terminated copy.
 * Invariants: a normalized origin is canonical (normalizing it again gives
 * the same bytes), at most CV_ORIGIN_MAX characters, http or https, made of
 * lower-case host characters only, with nothing after the authority; a
 * parsed list holds at most CV_ORIGINS_MAX distinct, canonical, bindable
 * origins, each found by cv_origin_list_contains; a Host-derived origin is
 * canonical. The first byte chooses https for cv_origin_from_host. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/origin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_origin invariant broken: %s\n", why);
    abort();
}

static void check_origin(const char *o)
{
    size_t n = strlen(o);
    if (n > CV_ORIGIN_MAX)
        fail("longer than CV_ORIGIN_MAX");
    if (!cv_origin_is_canonical(o, n))
        fail("normalized origin is not canonical");
    if (strncmp(o, "https://", 8) != 0 && strncmp(o, "http://", 7) != 0)
        fail("scheme");
    const char *auth = strstr(o, "://") + 3;
    if (*auth == '\0')
        fail("empty host");
    for (const char *p = auth; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                  c == ':' || c == '[' || c == ']';
        if (!ok)
            fail("a character an origin cannot hold");
    }
    if (strncmp(o, "https://", 8) == 0 && n > 4 && strcmp(o + n - 4, ":443") == 0)
        fail("default https port kept");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool https = (data[0] & 1) != 0;
    size_t n = size - 1;
    char *exact = malloc(n == 0 ? 1 : n);
    memcpy(exact, data + 1, n);
    char *str = malloc(n + 1);
    memcpy(str, data + 1, n);
    str[n] = '\0';

    char out[CV_ORIGIN_MAX + 1];
    if (cv_origin_normalize(exact, n, out) == CV_OK) {
        check_origin(out);
        char again[CV_ORIGIN_MAX + 1];
        if (cv_origin_normalize(out, strlen(out), again) != CV_OK || strcmp(again, out) != 0)
            fail("normalize is not idempotent");
        if (memchr(exact, '/', n) != NULL && strchr(strstr(out, "://") + 3, '/') != NULL)
            fail("a path survived");
    }
    (void)cv_origin_is_canonical(exact, n);

    char list[CV_ORIGIN_LIST_MAX + 1];
    if (cv_origin_list_parse(str, list) == CV_OK) {
        size_t count = 0;
        for (const char *p = list; *p != '\0';) {
            size_t k = strcspn(p, ",");
            char item[CV_ORIGIN_MAX + 1];
            if (k == 0 || k > CV_ORIGIN_MAX)
                fail("list item length");
            memcpy(item, p, k);
            item[k] = '\0';
            check_origin(item);
            if (!cv_origin_is_bindable(item))
                fail("a list item that is not bindable");
            if (!cv_origin_list_contains(list, item))
                fail("list_contains misses an item");
            count++;
            p += k;
            if (*p == ',')
                p++;
        }
        if (count > CV_ORIGINS_MAX)
            fail("too many origins");
    } else if (list[0] != '\0') {
        fail("a refused list left output behind");
    }

    if (cv_origin_from_host(https, str, out) == CV_OK) {
        check_origin(out);
        if (strncmp(out, https ? "https://" : "http://", https ? 8 : 7) != 0)
            fail("from_host scheme");
    }
    free(exact);
    free(str);
    return 0;
}
