#ifndef CV_STORE_MERCHANTS_H
#define CV_STORE_MERCHANTS_H

#include <stdbool.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"
#include "cardvault/token.h"

/* Merchants and their API keys (store_merchants.c). */

/* Merchants and API keys. scopes is a comma list ("tokenize,read"). */
CV_MUST_USE cv_status cv_store_insert_merchant(struct cv_store *st, const char *merchant_id,
                                               const char *name);
CV_MUST_USE cv_status cv_store_insert_api_key(struct cv_store *st, const char *merchant_id,
                                              const char *prefix, const unsigned char hash[32],
                                              const char *scopes);
CV_MUST_USE cv_status cv_store_revoke_api_key(struct cv_store *st, const char *prefix,
                                              char merchant_id[CV_MERCHANT_ID_LEN + 1]);
/* Calls fn for every key changed at or after since_us (microseconds since the
 * epoch); *max_changed_us gets the newest change seen. */
CV_MUST_USE cv_status
cv_store_scan_api_keys(struct cv_store *st, int64_t since_us, int64_t *max_changed_us,
                       void (*fn)(void *ctx, const char *merchant_id, const char *prefix,
                                  const unsigned char hash[32], const char *scopes, bool revoked),
                       void *ctx);

#endif
