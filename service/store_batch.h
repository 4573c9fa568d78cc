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

/* The unbatched paths (one statement, one transaction), in store_pg.c. */
CV_MUST_USE cv_status cv_store_insert_token_direct(struct cv_store *st,
                                                   const struct cv_token_row *row,
                                                   const unsigned char *idem_key_hash,
                                                   const char *response_body);
CV_MUST_USE cv_status cv_store_audit_append_direct(struct cv_store *st,
                                                   const struct cv_audit_event *ev);

#endif
