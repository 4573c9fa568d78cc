#ifndef CV_METADATA_H
#define CV_METADATA_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"

/* The rules of token metadata: a few small string pairs an integrator keeps
 * with a token, stored in the clear (jsonb), so they may never hold card
 * data. Keys are 1 to CV_META_KEY_MAX bytes of [A-Za-z0-9_.-]; values at
 * most CV_META_VALUE_MAX bytes; at most CV_META_KEYS_MAX keys. A key named
 * like a security code (cvc, cvv, security_code, ...), and a key or value in
 * which pan_scan.c finds a card number (12-19 digits, single separators
 * allowed, passing Luhn) or a security code after a key named like one, is
 * card data. Nothing here keeps, logs or returns the text it checked. */

/* CV_OK; CV_ERR_INVALID_METADATA for a key outside the rules;
 * CV_ERR_METADATA_CARD_DATA for a key that names or holds card data. */
CV_MUST_USE cv_status cv_metadata_check_key(const char *key, size_t len);
/* CV_OK; CV_ERR_INVALID_METADATA when longer than CV_META_VALUE_MAX bytes
 * or holding a NUL; CV_ERR_METADATA_CARD_DATA when it reads as card data. */
CV_MUST_USE cv_status cv_metadata_check_value(const char *value, size_t len);

#endif
