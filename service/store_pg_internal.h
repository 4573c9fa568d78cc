#ifndef CV_STORE_PG_INTERNAL_H
#define CV_STORE_PG_INTERNAL_H

/* Private to the store_*.c files: lets a store module borrow a pooled
 * connection and reuse the error mapping and bytea decoding of store_pg.c.
 * It names libpq types, so it lives in service/, never in include/. Every
 * statement still goes through PQexecParams/PQexecPrepared with parameters. */

#include <stddef.h>

#include <libpq-fe.h>

#include "cardvault/store.h"

struct cv_pg_conn;

/* Checks out a live connection (reconnecting if needed); CV_ERR_DB_UNAVAILABLE
 * when the server cannot be reached or the pool stays exhausted for 5 s. */
CV_MUST_USE cv_status cv_pg_acquire(struct cv_store *st, struct cv_pg_conn **out);
/* Returns it; a broken connection or one left inside a transaction is closed. */
void cv_pg_release(struct cv_store *st, struct cv_pg_conn *pc);
PGconn *cv_pg_handle(struct cv_pg_conn *pc);
/* Logs SQLSTATE + `what` (never the server message) and maps to a status. */
CV_MUST_USE cv_status cv_pg_error(struct cv_pg_conn *pc, const PGresult *res, const char *what);
/* Decodes a text-format bytea cell into a new heap buffer (free()). */
CV_MUST_USE cv_status cv_pg_get_bytea(const PGresult *r, int row, int col, unsigned char **out,
                                      size_t *len);

#endif
