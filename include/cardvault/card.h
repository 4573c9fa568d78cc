#ifndef CV_CARD_H
#define CV_CARD_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* Pure card-data validation: PAN syntax, Luhn, brand from IIN ranges,
 * expiry, CVC and cardholder name. No heap, no I/O, no logging. */

#define CV_PAN_MIN_DIGITS 12
#define CV_PAN_MAX_DIGITS 19
#define CV_NAME_MAX_BYTES 128

enum cv_card_brand {
    CV_BRAND_UNKNOWN = 0,
    CV_BRAND_VISA,
    CV_BRAND_MASTERCARD,
    CV_BRAND_AMEX,
    CV_BRAND_DISCOVER,
    CV_BRAND_JCB,
    CV_BRAND_DINERS,
    CV_BRAND_UNIONPAY,
};

/* Copies the digits of `in` to `out` (NUL-terminated), dropping single spaces
 * or hyphens between digits; the result must be 12-19 digits and Luhn-valid.
 * Returns CV_ERR_INVALID_PAN otherwise, with `out` wiped. */
CV_MUST_USE cv_status cv_card_normalize_pan(const char *in, size_t in_len,
                                            char out[CV_PAN_MAX_DIGITS + 1], size_t *out_len);
/* True when the digit string passes the Luhn (mod 10) check. */
bool cv_card_luhn_ok(const char *digits, size_t len);
/* Brand from the IIN prefix of a normalized PAN; CV_BRAND_UNKNOWN when no range matches. */
enum cv_card_brand cv_card_brand_of(const char *digits, size_t len);
/* "visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay" or "unknown". */
const char *cv_card_brand_name(enum cv_card_brand brand);
/* Month 1-12, four-digit year, not before (now_year, now_month), at most 20 years ahead.
 * CV_ERR_INVALID_EXPIRY otherwise. */
CV_MUST_USE cv_status cv_card_check_expiry(long long month, long long year, int now_month,
                                           int now_year);
/* Digits only: 4 for American Express, 3 for every other brand. CV_ERR_INVALID_CVC otherwise. */
CV_MUST_USE cv_status cv_card_check_cvc(const char *cvc, size_t len, enum cv_card_brand brand);
/* 1..CV_NAME_MAX_BYTES bytes of valid UTF-8, no control characters, not blank,
 * and no run of 12 or more digits (a PAN typed in the wrong field). CV_ERR_INVALID_NAME otherwise.
 */
CV_MUST_USE cv_status cv_card_check_name(const char *name, size_t len);

#endif
