#ifndef CV_STORE_TOKENS_H
#define CV_STORE_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"

/* Token rows and the idempotency records that travel with them
 * (store_tokens.c). Inserting and reading a token go through the front door
 * (store.h), which may batch them. */

/* Claims (merchant, key_hash) for a new request, or reclaims an expired or
 * abandoned (in progress for longer than stale_s) record. When the key is
 * taken, *claimed is false and *existing describes the record. */
CV_MUST_USE cv_status cv_store_idem_claim(struct cv_store *st, const char *merchant_id,
                                          const unsigned char key_hash[32],
                                          const unsigned char request_hash[32], int64_t ttl_s,
                                          int64_t stale_s, bool *claimed,
                                          struct cv_idem_record *existing);
/* Records the final answer of a claimed key. */
CV_MUST_USE cv_status cv_store_idem_complete(struct cv_store *st, const char *merchant_id,
                                             const unsigned char key_hash[32], int status_code,
                                             const char *response_body);
/* Drops an in-progress claim whose request failed, so a retry can run. */
CV_MUST_USE cv_status cv_store_idem_release(struct cv_store *st, const char *merchant_id,
                                            const unsigned char key_hash[32]);
/* Deletes expired records; *deleted gets the count. */
CV_MUST_USE cv_status cv_store_idem_purge(struct cv_store *st, int64_t *deleted);
void cv_idem_record_cleanup(struct cv_idem_record *rec);

/* Deletes the row and appends its audit event in one transaction;
 * CV_ERR_NOT_FOUND (still audited) when there was no such row. */
CV_MUST_USE cv_status cv_store_delete_token(struct cv_store *st, const char *merchant_id,
                                            const char *token, const struct cv_audit_event *ev);
/* Tokens of a merchant with this fingerprint, newest first (up to max). */
CV_MUST_USE cv_status cv_store_find_by_fingerprint(struct cv_store *st, const char *merchant_id,
                                                   const char *fingerprint,
                                                   struct cv_token_row *rows, size_t max,
                                                   size_t *count);
void cv_token_row_cleanup(struct cv_token_row *row);

#endif
