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
/* n events, in order, inside the caller's open transaction (group commit):
 * one head lock and one append call for the whole batch. Failures are logged
 * at debug level only (the batch is retried event by event). */
CV_MUST_USE cv_status cv_audit_store_append_many_in(struct cv_pg_conn *c,
                                                    const struct cv_audit_sealer *sealer,
                                                    const struct cv_audit_event *const *evs,
                                                    size_t n);

#endif
