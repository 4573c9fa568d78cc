#ifndef CV_STORE_BATCH_H
#define CV_STORE_BATCH_H

/* Private to store_pg.c and store_batch.c: the group-commit queue. */

#include "cardvault/store.h"

struct cv_batcher;

/* Starts `writers` writer threads (1-8); NULL if none could start. */
struct cv_batcher *cv_batcher_start(struct cv_store *st, unsigned writers);
/* Writes what is queued, then joins the writers. Accepts NULL. */
void cv_batcher_stop(struct cv_batcher *bt);
/* Queue a write and wait until its transaction has committed (or failed). */
CV_MUST_USE cv_status cv_batcher_insert_token(struct cv_batcher *bt, const struct cv_token_row *row,
                                              const unsigned char *idem_key_hash,
                                              const char *response_body);
CV_MUST_USE cv_status cv_batcher_audit_append(struct cv_batcher *bt,
                                              const struct cv_audit_event *ev);
/* Queue a read; concurrent reads share one query. */
CV_MUST_USE cv_status cv_batcher_get_token(struct cv_batcher *bt, const char *merchant_id,
                                           const char *token, struct cv_token_row *out);

/* The unbatched paths (one statement, one transaction), in store_pg.c. */
CV_MUST_USE cv_status cv_store_insert_token_direct(struct cv_store *st,
                                                   const struct cv_token_row *row,
                                                   const unsigned char *idem_key_hash,
                                                   const char *response_body);
CV_MUST_USE cv_status cv_store_audit_append_direct(struct cv_store *st,
                                                   const struct cv_audit_event *ev);
CV_MUST_USE cv_status cv_store_get_token_direct(struct cv_store *st, const char *merchant_id,
                                                const char *token, struct cv_token_row *out);
/* One query for n reads: the keys travel as two PostgreSQL array literals;
 * results[j] is CV_OK (outs[j] filled) or CV_ERR_NOT_FOUND. */
CV_MUST_USE cv_status cv_store_get_tokens_batch(struct cv_store *st, const char *merchants_array,
                                                const char *tokens_array,
                                                struct cv_token_row **outs,
                                                const char *const *merchant_ids,
                                                const char *const *tokens, cv_status *results,
                                                size_t n);

#endif
