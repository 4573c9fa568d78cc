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
 * taken, *claimed is false and *existing describes the record. durable:
 * the claim is flushed (and on the synchronous standby) before this
 * returns; needed when the request's effect lies outside the database (a
 * relay's outbound call). Without it a new key's claim does not wait for
 * the disk: the request's own committed write makes it durable. */
CV_MUST_USE cv_status cv_store_idem_claim(struct cv_store *st, const char *merchant_id,
                                          const unsigned char key_hash[32],
                                          const unsigned char request_hash[32], int64_t ttl_s,
                                          int64_t stale_s, bool durable, bool *claimed,
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

/* One page of GET /v1/tokens (every string NUL-terminated; "" switches a
 * filter off). */
struct cv_token_list_query {
    const char *merchant_id;
    int64_t after_created_us;           /* the cursor: after this row ... */
    char after_token[CV_TOKEN_LEN + 1]; /* ... in the list order; "" from the start */
    char fingerprint[CV_FINGERPRINT_LEN + 1];
    bool has_created_gte, has_created_lt;
    int64_t created_gte, created_lt;    /* Unix seconds */
    char meta_key[CV_META_KEY_MAX + 1]; /* metadata[meta_key] = meta_value */
    char meta_value[CV_META_VALUE_MAX + 1];
};
/* Up to max live tokens of q->merchant_id, newest first, after the cursor,
 * filtered; each row is the caller's to clean up. */
CV_MUST_USE cv_status cv_store_list_tokens(struct cv_store *st, const struct cv_token_list_query *q,
                                           struct cv_token_row *rows, size_t max, size_t *count);
/* Writes row's sealed card (format, DEK, nonce, ciphertext), metadata and
 * expires_at over the live token (row->merchant_id, row->token) whose nonce
 * is still old_nonce, and appends ev (outcome success) in the same
 * transaction. CV_ERR_NOT_FOUND when nothing was written: the token is gone
 * or expired, another update re-sealed it meanwhile, or row's DEK was
 * destroyed; the caller reads it again to tell. */
CV_MUST_USE cv_status cv_store_update_token(struct cv_store *st, const struct cv_token_row *row,
                                            const unsigned char old_nonce[CV_GCM_NONCE_BYTES],
                                            const struct cv_audit_event *ev);
/* Deletes up to batch expired tokens (any merchant) and appends one
 * token.purge_expired audit event with their count, in one transaction;
 * *deleted gets the count (0: nothing expired, no event). */
CV_MUST_USE cv_status cv_store_purge_expired(struct cv_store *st, size_t batch, int64_t *deleted);

#endif
