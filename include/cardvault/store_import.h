#ifndef CV_STORE_IMPORT_H
#define CV_STORE_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"

/* `cardvault import` in the store (store_import.c): the import_rows table
 * (migrations/0007_import.sql), the batch commit that writes token rows and
 * their mapping rows in one transaction, and the read-only query on a shop's
 * own database that feeds an import. No card data reaches import_rows. */

#define CV_IMPORT_BATCH_MAX 128

/* One source row's outcome: the token it maps to. */
struct cv_import_row {
    const char *row_id;
    const char *token;
    const char *brand;
    const char *last4;
    int exp_month;
    int exp_year;
    bool merged;
};

/* Calls fn with every row id already committed for (merchant, job). */
CV_MUST_USE cv_status cv_store_import_done(struct cv_store *st, const char *merchant_id,
                                           const char *job_id,
                                           void (*fn)(void *ctx, const char *row_id), void *ctx);
/* For each of the n fingerprints, the oldest token of this merchant that
 * has it, into tokens[i] ("" when none; CV_TOKEN_LEN + 1 bytes each). */
CV_MUST_USE cv_status cv_store_import_existing(struct cv_store *st, const char *merchant_id,
                                               const char *const *fingerprints, size_t n,
                                               char (*tokens)[CV_TOKEN_LEN + 1]);
/* One transaction: inserts the n_new token rows (at most
 * CV_IMPORT_BATCH_MAX) and the n_map mapping rows of (merchant, job).
 * CV_ERR_DUPLICATE when a row id of the job was committed meanwhile (by
 * another run) or a token collided: nothing of the batch is written. */
CV_MUST_USE cv_status cv_store_import_commit(struct cv_store *st, const char *merchant_id,
                                             const char *job_id,
                                             const struct cv_token_row *const *new_rows,
                                             size_t n_new, const struct cv_import_row *map,
                                             size_t n_map);
/* Calls fn for every mapping row of (merchant, job) in commit order,
 * through a cursor (bounded memory). Stops at fn's first non-CV_OK status. */
CV_MUST_USE cv_status
cv_store_import_mapping(struct cv_store *st, const char *merchant_id, const char *job_id,
                        cv_status (*fn)(void *ctx, const struct cv_import_row *row), void *ctx);

/* A read-only query on another database (a shop's own): its column names
 * and, per row, its values (text; NULL for SQL NULL) and their lengths. */
struct cv_source_row {
    size_t ncols;
    const char *const *names;
    const char *const *values;
    const size_t *lens;
};
/* Connects to conninfo, runs sql in a READ ONLY transaction through a
 * cursor, fetch_rows rows at a time (bounded memory), and calls fn per row;
 * every value is wiped once fn returns (it may hold a card number). Stops at
 * fn's first non-CV_OK status and returns it. CV_ERR_CONFIG with libpq's
 * reason in why when the connection fails; CV_ERR_DB (SQLSTATE logged) when
 * the query fails. */
CV_MUST_USE cv_status cv_store_source_query(const char *conninfo, const char *sql,
                                            unsigned fetch_rows,
                                            cv_status (*fn)(void *ctx,
                                                            const struct cv_source_row *row),
                                            void *ctx, char *why, size_t why_len);

#endif
