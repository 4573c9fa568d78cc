#ifndef CV_STORE_MERCHANTS_H
#define CV_STORE_MERCHANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"
#include "cardvault/token.h"

/* Merchants and their API keys (store_merchants.c). */

/* Merchants and API keys. scopes is a comma list ("tokenize,read");
 * origins a comma list of normalized origins (origin.h), "" or NULL for none. */
CV_MUST_USE cv_status cv_store_insert_merchant(struct cv_store *st, const char *merchant_id,
                                               const char *name);
CV_MUST_USE cv_status cv_store_insert_api_key(struct cv_store *st, const char *merchant_id,
                                              const char *prefix, const unsigned char hash[32],
                                              const char *scopes, const char *origins);
CV_MUST_USE cv_status cv_store_revoke_api_key(struct cv_store *st, const char *prefix,
                                              char merchant_id[CV_MERCHANT_ID_LEN + 1]);
/* Calls fn for every key changed at or after since_us (microseconds since the
 * epoch); *max_changed_us gets the newest change seen. */
CV_MUST_USE cv_status cv_store_scan_api_keys(
    struct cv_store *st, int64_t since_us, int64_t *max_changed_us,
    void (*fn)(void *ctx, const char *merchant_id, const char *prefix, const unsigned char hash[32],
               const char *scopes, const char *origins, bool revoked),
    void *ctx);
/* Replaces the allowed origins of the live publishable key with this prefix
 * (origins: a normalized comma list, "" for none). CV_ERR_NOT_FOUND when no
 * live key with exactly the tokenize scope has it. */
CV_MUST_USE cv_status cv_store_set_key_origins(struct cv_store *st, const char *prefix,
                                               const char *origins,
                                               char merchant_id[CV_MERCHANT_ID_LEN + 1]);
/* Reads a live key's merchant, whether it is publishable (scopes exactly
 * tokenize) and its origins (comma list, truncated to cap). CV_ERR_NOT_FOUND
 * when no live key has this prefix. */
CV_MUST_USE cv_status cv_store_get_key_origins(struct cv_store *st, const char *prefix,
                                               char merchant_id[CV_MERCHANT_ID_LEN + 1],
                                               bool *publishable, char *origins, size_t cap);

#endif
