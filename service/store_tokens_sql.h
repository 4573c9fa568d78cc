#ifndef CV_STORE_TOKENS_SQL_H
#define CV_STORE_TOKENS_SQL_H

/* Private to the store: the token-row SQL below the front door (store.c) and
 * the batcher (store_batch.c). Each takes the pool or a connection, never
 * the store handle, so nothing here can call back up. */

#include <stddef.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"
#include "pg.h"

/* Most jobs one group commit (or one shared read) carries. */
#define CV_STORE_BATCH_MAX 128

/* One token row (and, with idem_key_hash, its idempotency answer) in one
 * autocommit statement. CV_ERR_DUPLICATE on a token collision;
 * CV_ERR_DB_UNAVAILABLE (retriable, nothing written) when the row's DEK is
 * destroyed. */
CV_MUST_USE cv_status cv_tokens_insert(struct cv_pg_pool *pool, const struct cv_token_row *row,
                                       const unsigned char *idem_key_hash,
                                       const char *response_body);
/* The single insert as a step of pl (inside the caller's transaction): p
 * gets its parameters (caller storage, borrowed by the step until the run).
 * Returns the step's index, for cv_tokens_insert_one_check. */
size_t cv_tokens_insert_one_queue(struct cv_pg_params *p, struct cv_pg_pipeline *pl,
                                  const struct cv_token_row *row,
                                  const unsigned char *idem_key_hash, const char *response_body);
/* After pl ran without failure: CV_OK when that step wrote the row,
 * CV_ERR_DB_UNAVAILABLE (logged; retriable, the caller must not commit)
 * when its DEK is destroyed. */
CV_MUST_USE cv_status cv_tokens_insert_one_check(const struct cv_pg_pipeline *pl, size_t step,
                                                 const struct cv_token_row *row, bool with_idem);
/* A group commit's token rows as pipeline steps (pg.c's cv_pg_pipeline_run),
 * inside the caller's transaction: their DEK rows locked (FOR KEY SHARE,
 * until the caller's COMMIT), one multi-row INSERT, then the idempotency
 * answers of the rows that carry a key hash. The statements and their
 * parameters live here until cleanup; the rows, hashes and bodies are
 * borrowed until the pipeline has run. */
struct cv_tokens_batch {
    struct cv_buf deks, sql;
    struct cv_pg_params lock_params, insert_params;
    struct cv_pg_params *idem_params; /* one per row; used by those with a key hash */
    struct cv_pg_stmt insert_many;
    size_t n_deks;
    size_t lock_step; /* the lock's step in the pipeline */
};

void cv_tokens_batch_init(struct cv_tokens_batch *b);
/* Frees what the batch holds. Accepts NULL. */
void cv_tokens_batch_cleanup(struct cv_tokens_batch *b);
/* Adds the steps of n rows (none for n = 0) to pl. idem_key_hashes[i] and
 * response_bodies[i] may be NULL. Failures of these steps are expected (a
 * collision fails the batch, which is retried row by row) and logged at
 * debug level only. CV_ERR_INTERNAL when n exceeds CV_STORE_BATCH_MAX. */
CV_MUST_USE cv_status cv_tokens_batch_queue(struct cv_tokens_batch *b, struct cv_pg_pipeline *pl,
                                            const struct cv_token_row *const *rows,
                                            const unsigned char *const *idem_key_hashes,
                                            const char *const *response_bodies, size_t n);
/* After the pipeline ran without failure: CV_ERR_DB when a row's DEK was
 * destroyed (the insert then must not commit), else CV_OK. */
CV_MUST_USE cv_status cv_tokens_batch_check(const struct cv_tokens_batch *b,
                                            const struct cv_pg_pipeline *pl);
/* The same steps run at once inside the caller's open transaction on c
 * (the import): one round trip. CV_ERR_DB when a row's DEK is destroyed
 * (the caller must not commit); the pipeline's statuses otherwise. */
CV_MUST_USE cv_status cv_tokens_insert_in(struct cv_pg_conn *c,
                                          const struct cv_token_row *const *rows,
                                          const unsigned char *const *idem_key_hashes,
                                          const char *const *response_bodies, size_t n);
/* CV_ERR_NOT_FOUND unless (merchant_id, token) exists. */
CV_MUST_USE cv_status cv_tokens_get(struct cv_pg_pool *pool, const char *merchant_id,
                                    const char *token, struct cv_token_row *out);
/* n reads in one query, each by its full (merchant_id, token) key:
 * results[j] is CV_OK (outs[j] filled) or CV_ERR_NOT_FOUND. */
CV_MUST_USE cv_status cv_tokens_get_many(struct cv_pg_pool *pool, const char *const *merchant_ids,
                                         const char *const *tokens, struct cv_token_row **outs,
                                         cv_status *results, size_t n);

#endif
