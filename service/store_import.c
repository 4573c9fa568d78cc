/* store_import.c: the SQL of `cardvault import`. The batch commit writes a
 * batch's token rows (through the same multi-row insert group commit uses,
 * with its DEK locks) and the batch's import_rows mapping in one
 * transaction: a run killed at any point leaves whole batches or nothing, and
 * a rerun with the same job id skips exactly what was committed. It also runs
 * the read-only query that feeds an import from a shop's own database,
 * through a cursor so memory stays bounded whatever the table's size. Values
 * travel as parameters; the one text spliced into SQL is the operator's own
 * query (the import's source, run READ ONLY). It never logs a value: errors
 * are logged by SQLSTATE only (pg.c), and the values read from the shop's
 * database (card numbers) are wiped as soon as the caller has seen them. */
#include "cardvault/store_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/buf.h"
#include "cardvault/secbuf.h"
#include "store_handle.h"
#include "store_tokens_sql.h"

#define SOURCE_CURSOR "cv_import_source"
#define MAP_CURSOR    "cv_import_map"
/* One array literal of a batch (128 ids of at most 200 bytes, quoted). */
#define ARRAY_MAX_BYTES (256 * 1024)
#define QUERY_MAX_BYTES (1024 * 1024)

static const struct cv_pg_stmt import_done = {
    "import_done",
    "SELECT row_id FROM import_rows WHERE merchant_id = $1 AND job_id = $2",
    2,
    CV_PG_ONE_OFF,
    false,
    false};

static const struct cv_pg_stmt import_existing = {
    "import_existing",
    "SELECT DISTINCT ON (fingerprint) fingerprint, token FROM tokens "
    "WHERE merchant_id = $1 AND fingerprint = ANY($2::text[]) "
    "ORDER BY fingerprint, created_at, token",
    2,
    CV_PG_ONE_OFF,
    false,
    false};

/* The mapping rows of one batch, as parallel arrays; merchant and job are
 * the caller's. */
static const struct cv_pg_stmt import_map_insert = {
    "import_map_insert",
    "INSERT INTO import_rows (merchant_id, job_id, row_id, token, brand, last4, exp_month, "
    "exp_year, merged) SELECT $1, $2, u.row_id, u.token, u.brand, u.last4, u.m, u.y, u.merged "
    "FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], "
    "$8::smallint[], $9::boolean[]) WITH ORDINALITY AS u(row_id, token, brand, last4, m, y, "
    "merged, n) ORDER BY u.n",
    9,
    CV_PG_ONE_OFF,
    false,
    true};

static const struct cv_pg_stmt import_map_declare = {
    "import_map_declare",
    "DECLARE " MAP_CURSOR " NO SCROLL CURSOR FOR SELECT row_id, token, brand, last4, exp_month, "
    "exp_year, merged FROM import_rows WHERE merchant_id = $1 AND job_id = $2 ORDER BY seq",
    2,
    CV_PG_ONE_OFF,
    false,
    false};

static const struct cv_pg_stmt import_map_fetch = {
    "import_map_fetch", "FETCH FORWARD 1000 FROM " MAP_CURSOR, 0, CV_PG_ONE_OFF, false, false};

cv_status cv_store_import_done(struct cv_store *store, const char *merchant_id, const char *job_id,
                               void (*fn)(void *ctx, const char *row_id), void *ctx)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, job_id);
    CV_TRY(cv_pg_run_once(store->pool, &import_done, &p, &r));
    for (int i = 0; i < PQntuples(r); i++)
        fn(ctx, PQgetvalue(r, i, 0));
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_import_existing(struct cv_store *store, const char *merchant_id,
                                   const char *const *fingerprints, size_t n,
                                   char (*tokens)[CV_TOKEN_LEN + 1])
{
    struct cv_buf arr;
    struct cv_pg_params p;
    PGresult *r = NULL;
    for (size_t i = 0; i < n; i++)
        tokens[i][0] = '\0';
    if (n == 0)
        return CV_OK;
    cv_buf_init(&arr, ARRAY_MAX_BYTES);
    cv_status st = cv_pg_array_literal(&arr, fingerprints, n);
    if (st != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, arr.data);
    if ((st = cv_pg_run_once(store->pool, &import_existing, &p, &r)) != CV_OK)
        goto out;
    for (int k = 0; k < PQntuples(r); k++) {
        const char *fp = PQgetvalue(r, k, 0);
        for (size_t i = 0; i < n; i++)
            if (strcmp(fingerprints[i], fp) == 0)
                cv_pg_get_text(r, k, 1, tokens[i], CV_TOKEN_LEN + 1);
    }
out:
    PQclear(r);
    cv_buf_cleanup(&arr);
    return st;
}

/* The nine parameters of import_map_insert, built into arrays[]. */
static cv_status map_params(const char *merchant_id, const char *job_id,
                            const struct cv_import_row *map, size_t n, struct cv_buf arrays[7],
                            struct cv_pg_params *p)
{
    const char **col = cv_xcalloc(n > 0 ? n : 1, sizeof(*col));
    char(*num)[8] = cv_xcalloc(n > 0 ? 2 * n : 1, sizeof(*num));
    cv_status st = CV_OK;
    for (int k = 0; k < 7 && st == CV_OK; k++) {
        for (size_t i = 0; i < n; i++) {
            switch (k) {
            case 0:
                col[i] = map[i].row_id;
                break;
            case 1:
                col[i] = map[i].token;
                break;
            case 2:
                col[i] = map[i].brand;
                break;
            case 3:
                col[i] = map[i].last4;
                break;
            case 4:
                snprintf(num[2 * i], sizeof(num[0]), "%d", map[i].exp_month);
                col[i] = num[2 * i];
                break;
            case 5:
                snprintf(num[2 * i + 1], sizeof(num[0]), "%d", map[i].exp_year);
                col[i] = num[2 * i + 1];
                break;
            default:
                col[i] = map[i].merged ? "t" : "f";
                break;
            }
        }
        st = cv_pg_array_literal(&arrays[k], col, n);
    }
    free(col);
    free(num);
    cv_pg_param_text(p, merchant_id);
    cv_pg_param_text(p, job_id);
    for (int k = 0; k < 7; k++)
        cv_pg_param_text(p, arrays[k].data);
    return st;
}

cv_status cv_store_import_commit(struct cv_store *store, const char *merchant_id,
                                 const char *job_id, const struct cv_token_row *const *new_rows,
                                 size_t n_new, const struct cv_import_row *map, size_t n_map)
{
    struct cv_pg_conn *c = NULL;
    struct cv_buf arrays[7];
    struct cv_pg_params p;
    const unsigned char *no_idem[CV_IMPORT_BATCH_MAX] = {NULL};
    const char *no_body[CV_IMPORT_BATCH_MAX] = {NULL};
    if (n_new > CV_IMPORT_BATCH_MAX || n_new > CV_STORE_BATCH_MAX)
        return CV_ERR_INTERNAL;
    for (int k = 0; k < 7; k++)
        cv_buf_init(&arrays[k], ARRAY_MAX_BYTES);
    cv_pg_params_init(&p);
    cv_status st = map_params(merchant_id, job_id, map, n_map, arrays, &p);
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_acquire(store->pool, &c)) != CV_OK)
        goto out;
    if ((st = cv_pg_command(c, "BEGIN")) != CV_OK)
        goto out;
    if ((st = cv_tokens_insert_in(c, new_rows, no_idem, no_body, n_new)) != CV_OK)
        goto out;
    if (n_map > 0 && (st = cv_pg_run(c, &import_map_insert, &p, NULL)) != CV_OK)
        goto out;
    st = cv_pg_command(c, "COMMIT");
out:
    if (c != NULL) {
        cv_pg_rollback(c);
        cv_pg_release(c);
    }
    for (int k = 0; k < 7; k++)
        cv_buf_cleanup(&arrays[k]);
    return st;
}

cv_status cv_store_import_mapping(struct cv_store *store, const char *merchant_id,
                                  const char *job_id,
                                  cv_status (*fn)(void *ctx, const struct cv_import_row *row),
                                  void *ctx)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_params p;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (st != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, job_id);
    if ((st = cv_pg_run(c, &import_map_declare, &p, NULL)) != CV_OK)
        goto out;
    for (;;) {
        PGresult *r = NULL;
        if ((st = cv_pg_run(c, &import_map_fetch, NULL, &r)) != CV_OK)
            goto out;
        int n = PQntuples(r);
        for (int i = 0; i < n && st == CV_OK; i++) {
            struct cv_import_row row = {PQgetvalue(r, i, 0),         PQgetvalue(r, i, 1),
                                        PQgetvalue(r, i, 2),         PQgetvalue(r, i, 3),
                                        (int)cv_pg_get_int(r, i, 4), (int)cv_pg_get_int(r, i, 5),
                                        cv_pg_get_bool(r, i, 6)};
            st = fn(ctx, &row);
        }
        PQclear(r);
        if (st != CV_OK || n == 0)
            goto out;
    }
out:
    cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
}

/* Hands each row of one fetched page to fn, then wipes every value. */
static cv_status source_page(PGresult *r, const char *const *names, size_t ncols,
                             const char **values, size_t *lens,
                             cv_status (*fn)(void *ctx, const struct cv_source_row *row), void *ctx)
{
    cv_status st = CV_OK;
    for (int i = 0; i < PQntuples(r) && st == CV_OK; i++) {
        for (size_t k = 0; k < ncols; k++) {
            values[k] = PQgetisnull(r, i, (int)k) ? NULL : PQgetvalue(r, i, (int)k);
            lens[k] = (size_t)PQgetlength(r, i, (int)k);
        }
        struct cv_source_row row = {ncols, names, values, lens};
        st = fn(ctx, &row);
    }
    for (int i = 0; i < PQntuples(r); i++)
        for (int k = 0; k < PQnfields(r); k++)
            cv_wipe(PQgetvalue(r, i, k), (size_t)PQgetlength(r, i, k));
    return st;
}

cv_status cv_store_source_query(const char *conninfo, const char *sql, unsigned fetch_rows,
                                cv_status (*fn)(void *ctx, const struct cv_source_row *row),
                                void *ctx, char *why, size_t why_len)
{
    struct cv_pg_pool *pool = NULL;
    struct cv_pg_conn *c = NULL;
    struct cv_buf decl;
    char fetch[64];
    const char **names = NULL, **values = NULL;
    size_t *lens = NULL, ncols = 0;
    snprintf(fetch, sizeof(fetch), "FETCH FORWARD %u FROM " SOURCE_CURSOR,
             fetch_rows == 0 ? 1000u : fetch_rows);
    const struct cv_pg_stmt fetch_page = {"import_source_fetch", fetch, 0,
                                          CV_PG_ONE_OFF,         false, false};
    cv_buf_init(&decl, QUERY_MAX_BYTES);
    cv_status st = cv_pg_pool_open(conninfo, 1, &pool, why, why_len);
    if (st != CV_OK) {
        st = CV_ERR_CONFIG;
        goto out;
    }
    if ((st = cv_pg_acquire(pool, &c)) != CV_OK)
        goto out;
    if ((st = cv_pg_use_utf8(c)) != CV_OK)
        goto out;
    if ((st = cv_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) != CV_OK)
        goto out;
    /* The operator's own query: the source of the import, run read-only. */
    if ((st = cv_buf_appendf(&decl, "DECLARE " SOURCE_CURSOR " NO SCROLL CURSOR FOR %s", sql)) !=
        CV_OK)
        goto out;
    const struct cv_pg_stmt declare = {"import_source_declare", decl.data, 0,
                                       CV_PG_ONE_OFF,           false,     false};
    if ((st = cv_pg_run(c, &declare, NULL, NULL)) != CV_OK) {
        snprintf(why, why_len, "the --query failed on the source database (SQLSTATE %s)",
                 cv_pg_last_sqlstate(c));
        goto out;
    }
    for (;;) {
        PGresult *r = NULL;
        if ((st = cv_pg_run(c, &fetch_page, NULL, &r)) != CV_OK)
            goto out;
        int n = PQntuples(r);
        if (names == NULL) {
            ncols = (size_t)PQnfields(r);
            names = cv_xcalloc(ncols + 1, sizeof(*names));
            values = cv_xcalloc(ncols + 1, sizeof(*values));
            lens = cv_xcalloc(ncols + 1, sizeof(*lens));
            for (size_t k = 0; k < ncols; k++)
                names[k] = cv_xstrdup(PQfname(r, (int)k));
        }
        st = source_page(r, names, ncols, values, lens, fn, ctx);
        PQclear(r);
        if (st != CV_OK || n == 0)
            goto out;
    }
out:
    if (c != NULL) {
        cv_pg_rollback(c);
        cv_pg_release(c);
    }
    cv_pg_pool_close(pool);
    cv_buf_cleanup(&decl);
    if (names != NULL)
        for (size_t k = 0; k < ncols; k++)
            free((void *)(uintptr_t)names[k]);
    free(names);
    free(values);
    free(lens);
    return st;
}
