#ifndef CV_STORE_AUDIT_SQL_H
#define CV_STORE_AUDIT_SQL_H

/* Private to the store: appends to the hash-chained audit trail. Every
 * audit SQL statement lives in store_audit.c except the one that must share
 * a token's own statement (delete_token in store_tokens.c, which appends
 * through the same audit_append() SQL function in the same statement). */

#include <stddef.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"
#include "pg.h"

/* One event in its own (autocommit) statement. */
CV_MUST_USE cv_status cv_audit_store_append(struct cv_pg_pool *pool,
                                            const struct cv_audit_event *ev);
/* One event inside the caller's open transaction on c (key lifecycle). */
CV_MUST_USE cv_status cv_audit_store_append_in(struct cv_pg_conn *c,
                                               const struct cv_audit_event *ev);
/* n events, in order, in one statement inside the caller's open transaction
 * (group commit): the chain tip is locked once. Failures are logged at
 * debug level only (the batch is retried event by event). */
CV_MUST_USE cv_status cv_audit_store_append_many_in(struct cv_pg_conn *c,
                                                    const struct cv_audit_event *const *evs,
                                                    size_t n);

#endif
