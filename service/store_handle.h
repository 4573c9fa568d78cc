#ifndef CV_STORE_HANDLE_H
#define CV_STORE_HANDLE_H

/* Private to the store_*.c files: what a store handle holds. Its own small
 * module, below store.c and every SQL file, so none of them depends on the
 * front door. store.c creates the handle; the SQL files below only read the
 * pool from it, and never call back up into store.c or the batcher. */

#include "cardvault/store_rows.h"

struct cv_pg_pool;
struct cv_batcher;

struct cv_store {
    struct cv_pg_pool *pool;
    struct cv_batcher *writer; /* NULL: every write is its own transaction */
    struct cv_batcher *reader; /* NULL: every read is its own round trip */
};

#endif
