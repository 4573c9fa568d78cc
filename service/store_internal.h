#ifndef CV_STORE_INTERNAL_H
#define CV_STORE_INTERNAL_H

/* Private to the store_*.c files: what a store handle holds. store.c (the
 * front door) creates it; the SQL files below only read the pool from it,
 * and never call back up into store.c or the batcher. */

#include "cardvault/store_rows.h"

struct cv_pg_pool;
struct cv_batcher;

struct cv_store {
    struct cv_pg_pool *pool;
    struct cv_batcher *writer; /* NULL: every write is its own transaction */
    struct cv_batcher *reader; /* NULL: every read is its own round trip */
};

#endif
