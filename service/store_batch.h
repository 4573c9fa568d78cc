#ifndef CV_STORE_BATCH_H
#define CV_STORE_BATCH_H

/* Private to the store: the group-commit queue between the front door
 * (store.c) and the SQL files. It works on the pool, never on the store
 * handle, and calls only downward (store_tokens.c, store_audit.c, pg.c). */

#include "cardvault/status.h"
#include "cardvault/store_rows.h"

struct cv_batcher;
struct cv_pg_pool;
struct cv_audit_sealer;

/* A queued job's outcome, delivered on a writer thread. */
typedef void (*cv_batch_done_fn)(void *ctx, cv_status st);

/* Starts `writers` writer threads (1-8); NULL if none could start. Audit
 * appends are sealed through *sealer, read at each append (borrowed: it
 * lives in the store handle). */
struct cv_batcher *cv_batcher_start(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                                    unsigned writers);
/* Writes what is queued, then joins the writers. Accepts NULL. */
void cv_batcher_stop(struct cv_batcher *bt);
/* Queue a write and wait until its transaction has committed (or failed).
 * A token's audit event (ev, may be NULL) commits in the same transaction. */
CV_MUST_USE cv_status cv_batcher_insert_token(struct cv_batcher *bt, const struct cv_token_row *row,
                                              const unsigned char *idem_key_hash,
                                              const char *response_body,
                                              const struct cv_audit_event *ev);
CV_MUST_USE cv_status cv_batcher_audit_append(struct cv_batcher *bt,
                                              const struct cv_audit_event *ev);
/* One token and its audit event (ev; NULL: the token alone) in one
 * transaction on its own, without the queue: the store's unbatched path and
 * a failed batch's one-by-one retry. The statuses of cv_tokens_insert. */
CV_MUST_USE cv_status cv_batch_insert_token_audited(
    struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer, const struct cv_token_row *row,
    const unsigned char *idem_key_hash, const char *response_body, const struct cv_audit_event *ev);
/* Queue a read; concurrent reads share one query. */
CV_MUST_USE cv_status cv_batcher_get_token(struct cv_batcher *bt, const char *merchant_id,
                                           const char *token, struct cv_token_row *out);

/* The same three, without waiting: CV_OK means queued, and done(ctx, status)
 * is then called exactly once, on a writer thread, after the job's
 * transaction committed (CV_OK) or failed; CV_ERR_SHUTTING_DOWN means the
 * batcher is stopping, nothing was queued and done is never called. What the
 * pointers name must stay valid until done is called. done may queue again. */
CV_MUST_USE cv_status cv_batcher_insert_token_async(
    struct cv_batcher *bt, const struct cv_token_row *row, const unsigned char *idem_key_hash,
    const char *response_body, const struct cv_audit_event *ev, cv_batch_done_fn done, void *ctx);
CV_MUST_USE cv_status cv_batcher_get_token_async(struct cv_batcher *bt, const char *merchant_id,
                                                 const char *token, struct cv_token_row *out,
                                                 cv_batch_done_fn done, void *ctx);
CV_MUST_USE cv_status cv_batcher_audit_append_async(struct cv_batcher *bt,
                                                    const struct cv_audit_event *ev,
                                                    cv_batch_done_fn done, void *ctx);

#endif
