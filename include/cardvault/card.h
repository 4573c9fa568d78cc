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

/* Card fields as one unit: what a token seals and what a tokenize request
 * is identified by. pan and name are NUL-terminated; name is meaningful only
 * when has_name is 1. Holds a PAN: callers wipe it (cv_wipe) after use. */
struct cv_card_plain {
    char pan[CV_PAN_MAX_DIGITS + 1];
    int exp_month;
    int exp_year;
    char name[CV_NAME_MAX_BYTES + 1];
    int has_name;
};

/* The byte encoding of a card, version 1 (the plaintext sealed under a DEK
 * and the input of the tokenize request identity; changing it breaks every
 * stored ciphertext):
 *   u8 pan_len | pan digits | u8 month | u16be year | u8 name_len | name bytes
 * name_len 0xff means "no name" (validation never lets an empty name in). */
#define CV_CARD_ENCODED_MAX (1 + CV_PAN_MAX_DIGITS + 1 + 2 + 1 + CV_NAME_MAX_BYTES)
#define CV_CARD_NO_NAME     0xff

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
/* The display data kept in the clear beside a sealed card (PCI DSS 3.4.1
 * allows first six and last four digits): what tokenize stores and what
 * every open checks the stored columns against. Each field NUL-terminated
 * and zero-padded to its size. */
#define CV_CARD_BIN_DIGITS   6
#define CV_CARD_LAST4_DIGITS 4
#define CV_CARD_BRAND_MAX    16
struct cv_card_display {
    char bin[CV_CARD_BIN_DIGITS + 1];
    char last4[CV_CARD_LAST4_DIGITS + 1];
    char brand[CV_CARD_BRAND_MAX];
};
/* Fills d from a normalized PAN (12-19 ASCII digits, NUL-terminated within
 * CV_PAN_MAX_DIGITS + 1 bytes). CV_ERR_INVALID_PAN, with d zeroed, otherwise. */
CV_MUST_USE cv_status cv_card_display_of(const char *pan, struct cv_card_display *d);
/* Month 1-12, four-digit year, not before (now_year, now_month), at most 20 years ahead.
 * CV_ERR_INVALID_EXPIRY otherwise. */
CV_MUST_USE cv_status cv_card_check_expiry(long long month, long long year, int now_month,
                                           int now_year);
/* Parses an expiry as legacy systems store it: MM/YY, MM/YYYY, YYYY-MM (also
 * M/YY, MM-YY, MM/YY with blanks around). Two-digit years are 20YY. Only the
 * shape and month range are checked here; cv_card_check_expiry decides
 * whether the card is still valid. CV_ERR_INVALID_EXPIRY otherwise. */
CV_MUST_USE cv_status cv_card_parse_expiry(const char *s, size_t len, int *month, int *year);
/* One number of 1-2 digits (month 1-12) or 2 or 4 digits (year; 20YY for two),
 * blanks around allowed. CV_ERR_INVALID_EXPIRY otherwise. */
CV_MUST_USE cv_status cv_card_parse_month(const char *s, size_t len, int *month);
CV_MUST_USE cv_status cv_card_parse_year(const char *s, size_t len, int *year);
/* Digits only: 4 for American Express, 3 for every other brand. CV_ERR_INVALID_CVC otherwise. */
CV_MUST_USE cv_status cv_card_check_cvc(const char *cvc, size_t len, enum cv_card_brand brand);
/* 1..CV_NAME_MAX_BYTES bytes of valid UTF-8, no control characters, not blank,
 * and no run of 12 or more digits (a PAN typed in the wrong field). CV_ERR_INVALID_NAME otherwise.
 */
CV_MUST_USE cv_status cv_card_check_name(const char *name, size_t len);

/* Writes the encoding of c into out[0..cap) and its length into *len.
 * CV_ERR_INTERNAL, with out untouched, when cap is too small or a field
 * cannot be encoded (PAN not 12-19 bytes, month past 255, year past 65535):
 * such a card never passed validation. The caller wipes out after use. */
CV_MUST_USE cv_status cv_card_encode(const struct cv_card_plain *c, unsigned char *out, size_t cap,
                                     size_t *len);
/* Reads an encoding back into c. CV_ERR_INTEGRITY when the bytes do not
 * follow the layout exactly (lengths out of range, trailing bytes); c is
 * then wiped. */
CV_MUST_USE cv_status cv_card_decode(const unsigned char *in, size_t len, struct cv_card_plain *c);

#endif
