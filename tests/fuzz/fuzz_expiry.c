/* fuzz_expiry.c: card.c's expiry parsers (cv_card_parse_expiry, _month,
 * _year) on raw bytes. An accepted value is a month 1-12 and a four-digit
 * year; printing it back as MM/YYYY, MM/YY (for 20YY) and YYYY-MM parses
 * to the same value; a rejected value leaves the outputs zeroed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_expiry invariant broken: %s\n", why);
    abort();
}

static void same(const char *text, int month, int year)
{
    int m = 0, y = 0;
    if (cv_card_parse_expiry(text, strlen(text), &m, &y) != CV_OK || m != month || y != year)
        fail("a printed expiry does not parse back");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int m = -1, y = -1;
    cv_status st = cv_card_parse_expiry(s, size, &m, &y);
    if (st == CV_OK) {
        if (m < 1 || m > 12 || y < 1900 || y > 9999)
            fail("accepted an out-of-range expiry");
        char buf[32];
        snprintf(buf, sizeof(buf), "%02d/%04d", m, y);
        same(buf, m, y);
        snprintf(buf, sizeof(buf), "%04d-%02d", y, m);
        same(buf, m, y);
        if (y >= 2000 && y <= 2099) {
            snprintf(buf, sizeof(buf), "%d/%02d", m, y - 2000);
            same(buf, m, y);
        }
    } else if (st != CV_ERR_INVALID_EXPIRY || m != 0 || y != 0) {
        fail("a refusal with another status or half-set outputs");
    }
    int v = -1;
    st = cv_card_parse_month(s, size, &v);
    if ((st == CV_OK && (v < 1 || v > 12)) || (st != CV_OK && v != 0))
        fail("month");
    st = cv_card_parse_year(s, size, &v);
    if ((st == CV_OK && (v < 1900 || v > 9999) && !(v >= 2000 && v <= 2099)) ||
        (st != CV_OK && v != 0))
        fail("year");
    return 0;
}
