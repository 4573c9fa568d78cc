/* metadata.c: the rules a token's metadata keys and values must meet. The
 * metadata is kept in the clear, beside the ciphertext, so the one thing it
 * must never hold is card data (PCI DSS 3.5.1: the PAN is unreadable
 * wherever it is stored): every key and value is run through the vault's
 * one card-data scanner (pan_scan.c) before it is accepted. The refusal is
 * a status; the text is never logged, copied or returned. */
#include "cardvault/metadata.h"

#include <string.h>

#include "cardvault/pan_scan.h"

static bool key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* A card number anywhere in the text, or a security code after a key named
 * like one ("cvv: 123" inside a value). No issuer check: any 12-19 digit run
 * that passes Luhn is refused, whatever its prefix. */
static bool holds_card_data(const char *text, size_t len)
{
    struct cv_pan_scan_summary sum;
    memset(&sum, 0, sizeof(sum));
    cv_pan_scan_value(text, len, CV_PAN_SCAN_TEXT | CV_PAN_SCAN_CVC_KEYS, &sum);
    bool found = sum.matches > 0 || sum.cvc_matches > 0;
    memset(&sum, 0, sizeof(sum)); /* the masked sample is card data too */
    return found;
}

cv_status cv_metadata_check_key(const char *key, size_t len)
{
    if (len == 0 || len > CV_META_KEY_MAX)
        return CV_ERR_INVALID_METADATA;
    for (size_t i = 0; i < len; i++)
        if (!key_char_ok(key[i]))
            return CV_ERR_INVALID_METADATA;
    if (cv_pan_scan_is_cvc_name(key, len) || holds_card_data(key, len))
        return CV_ERR_METADATA_CARD_DATA;
    return CV_OK;
}

cv_status cv_metadata_check_value(const char *value, size_t len)
{
    if (len > CV_META_VALUE_MAX || memchr(value, '\0', len) != NULL)
        return CV_ERR_INVALID_METADATA;
    if (holds_card_data(value, len))
        return CV_ERR_METADATA_CARD_DATA;
    return CV_OK;
}
