#ifndef CV_STORE_HANDLE_H
#define CV_STORE_HANDLE_H

/* Private to the store_*.c files: what a store handle holds. Its own small
 * module, below store.c and every SQL file, so none of them depends on the
 * front door. store.c creates the handle; the SQL files below only read the
 * pool from it, and never call back up into store.c or the batcher. */

#include "cardvault/store_rows.h"

/* The audit key's sealer as the keyring gave it (fn NULL: none). */
struct cv_audit_sealer {
    cv_audit_seal_fn fn;
    void *ctx;
};

struct cv_pg_pool;
struct cv_batcher;

struct cv_store {
    struct cv_pg_pool *pool;
    struct cv_batcher *writer; /* NULL: every write is its own transaction */
    struct cv_batcher *reader; /* NULL: every read is its own round trip */
    /* Seals audit events under K_audit (set by the keyring that holds it;
     * every append refuses to run without it). The batchers read it through
     * a pointer, so it stays in place for the store's lifetime. */
    struct cv_audit_sealer sealer;
};

#endif
