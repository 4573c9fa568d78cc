#ifndef CV_STORE_AUDIT_SQL_H
#define CV_STORE_AUDIT_SQL_H

/* Private to the store: appends to the keyed, hash-chained audit trail.
 * Every audit SQL statement lives in store_audit.c. Each append locks
 * audit_head, computes the events' hashes and MACs in C through the sealer
 * (K_audit never reaches the database) and writes them with
 * audit_append_rows(). Without a sealer an append fails with CV_ERR_CONFIG;
 * when the head has lost its MAC, with CV_ERR_INTEGRITY. */

#include <stddef.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"
#include "pg.h"
#include "store_handle.h"

/* One event in its own transaction (3 round trips). */
CV_MUST_USE cv_status cv_audit_store_append(struct cv_pg_pool *pool,
                                            const struct cv_audit_sealer *sealer,
                                            const struct cv_audit_event *ev);
/* One event inside the caller's open transaction on c (key lifecycle,
 * token delete). */
CV_MUST_USE cv_status cv_audit_store_append_in(struct cv_pg_conn *c,
                                               const struct cv_audit_sealer *sealer,
                                               const struct cv_audit_event *ev);
/* The first keyed event, inside the transaction that stores the audit key:
 * an unkeyed head is then expected (its MAC chains from 32 zero bytes). */
CV_MUST_USE cv_status cv_audit_store_start_keyed_in(struct cv_pg_conn *c,
                                                    const struct cv_audit_sealer *sealer,
                                                    const struct cv_audit_event *ev);
/* A group commit's audit events (or one token's event), in order, inside the caller's open
 * transaction, as steps of two pipelines (pg.c's cv_pg_pipeline_run): the
 * lock of the chain's tip in the first, then, once its answer is known, the
 * append in the second. Each event's MAC needs the locked tip's hash and MAC
 * and the database's clock read under the lock, and is computed here in C
 * with K_audit, which never reaches the database, so the append cannot
 * travel in the same round trip as the lock. One lock and one append call
 * for the whole batch. */
struct cv_audit_batch {
    struct cv_buf arrays[9]; /* the append's array literals */
    struct cv_pg_params params;
    size_t lock_step; /* the lock's step in the first pipeline */
    bool retried;     /* a failed append is retried event by event: logged at debug level */
};

void cv_audit_batch_init(struct cv_audit_batch *a, bool retried);
/* Frees what the batch holds. Accepts NULL. */
void cv_audit_batch_cleanup(struct cv_audit_batch *a);
/* Adds the lock of the chain's tip to pl. CV_ERR_CONFIG without a sealer. */
CV_MUST_USE cv_status cv_audit_batch_queue_lock(struct cv_audit_batch *a, struct cv_pg_pipeline *pl,
                                                const struct cv_audit_sealer *sealer);
/* After `locked` (the pipeline holding the lock) ran without failure: seals
 * the n events after the tip it read and adds their append to pl. The
 * statuses of the appends above. */
CV_MUST_USE cv_status cv_audit_batch_queue_append(
    struct cv_audit_batch *a, const struct cv_pg_pipeline *locked, struct cv_pg_pipeline *pl,
    const struct cv_audit_sealer *sealer, const struct cv_audit_event *const *evs, size_t n);

#endif
