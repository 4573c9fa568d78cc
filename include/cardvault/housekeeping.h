#ifndef CV_HOUSEKEEPING_H
#define CV_HOUSEKEEPING_H

#include "cardvault/status.h"
#include "cardvault/store.h"

/* Background chores of a running service: purging expired idempotency
 * records (24 h by default) and expired tokens (counted in metrics, NULL for
 * none) every interval_s, and logging the audit chain's
 * head (event audit_anchor, seq and hash) now and every anchor_interval_s.
 * Several instances may purge at once: the DELETE is idempotent. */

struct cv_housekeeping;

struct cv_metrics;

CV_MUST_USE cv_status cv_housekeeping_start(struct cv_store *store, struct cv_metrics *metrics,
                                            unsigned interval_s, unsigned anchor_interval_s,
                                            struct cv_housekeeping **out);
/* Stops and joins the thread; accepts NULL. */
void cv_housekeeping_stop(struct cv_housekeeping *hk);

#endif
