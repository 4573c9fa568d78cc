/* store_audit.c: the queries behind `cardvault audit`: reads the audit trail
 * back in seq order from one snapshot, lists every column of the database
 * from the catalog, and streams a table's values through a server-side
 * cursor. It borrows pooled connections through store_pg_internal.h. Values
 * travel as parameters; the only text spliced into SQL are identifiers taken
 * from the catalog, and each goes through PQescapeIdentifier. It never logs
 * a value it reads: errors are logged by SQLSTATE only (cv_pg_error). */
#include "cardvault/audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cardvault/secbuf.h"
#include "store_pg_internal.h"

#define CURSOR_NAME "cv_audit_scan"

/* A statement with no parameters that must succeed (BEGIN, DECLARE, ...). */
static cv_status exec_command(struct cv_pg_conn *pc, const char *sql, const char *what)
{
    PGresult *r = PQexecParams(cv_pg_handle(pc), sql, 0, NULL, NULL, NULL, NULL, 0);
    cv_status s = CV_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        s = cv_pg_error(pc, r, what);
    PQclear(r);
    return s;
}

/* The trail's bytes must hash as they do inside PostgreSQL, where
 * audit_canonical() is converted to UTF-8 before SHA-256. */
static cv_status use_utf8(struct cv_pg_conn *pc)
{
    PGconn *pg = cv_pg_handle(pc);
    if (PQclientEncoding(pg) == pg_char_to_encoding("UTF8"))
        return CV_OK;
    if (PQsetClientEncoding(pg, "UTF8") != 0)
        return cv_pg_error(pc, NULL, "audit_client_encoding");
    return CV_OK;
}

static cv_status read_head(struct cv_pg_conn *pc, struct cv_audit_head *head)
{
    PGresult *r = PQexecParams(cv_pg_handle(pc), "SELECT seq, hash FROM audit_head WHERE id", 0,
                               NULL, NULL, NULL, NULL, 0);
    cv_status s = CV_OK;
    memset(head, 0, sizeof(*head));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        s = cv_pg_error(pc, r, "audit_head");
    } else if (PQntuples(r) != 1) {
        s = CV_ERR_NOT_FOUND; /* migration 0001 inserts the row; its absence is tampering */
        head->seq = -1;
    } else {
        unsigned char *h = NULL;
        size_t n = 0;
        head->seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        s = cv_pg_get_bytea(r, 0, 1, &h, &n);
        if (s == CV_OK) {
            head->hash_len = n <= sizeof(head->hash) ? n : 0;
            memcpy(head->hash, h, head->hash_len);
        }
        free(h);
    }
    PQclear(r);
    return s;
}

static const char *nullable(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

cv_status cv_store_audit_walk(struct cv_store *st, int64_t since_us, unsigned page_rows,
                              struct cv_audit_head *head,
                              cv_status (*fn)(void *ctx, const struct cv_audit_row *row), void *ctx)
{
    /* extract(epoch ...) is numeric since PostgreSQL 14, so the microsecond
     * count is exact; since_us goes back in as a bigint of microseconds for
     * the same reason (no float8 rounding). Keyset paging on the primary key. */
    static const char page_sql[] =
        "SELECT seq, (extract(epoch FROM occurred_at) * 1000000)::bigint, actor, merchant_id, "
        "token, request_id, action, outcome, detail, prev_hash, hash FROM audit_events "
        "WHERE seq > $1::bigint AND ($2::bigint IS NULL OR occurred_at >= "
        "timestamptz 'epoch' + $2::bigint * interval '1 microsecond') "
        "ORDER BY seq LIMIT $3::int";
    struct cv_pg_conn *pc = NULL;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = use_utf8(pc);
    if (s == CV_OK)
        /* One snapshot: the head and every page agree even while the service appends. */
        s = exec_command(pc, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "audit_walk_begin");
    if (s == CV_OK)
        s = read_head(pc, head);
    int64_t after = INT64_MIN; /* rows a forger gave seq <= 0 are walked, and fail, too */
    while (s == CV_OK) {
        char after_s[24], since_s[24], limit_s[16];
        snprintf(after_s, sizeof(after_s), "%" PRId64, after);
        snprintf(since_s, sizeof(since_s), "%" PRId64, since_us);
        snprintf(limit_s, sizeof(limit_s), "%u", page_rows == 0 ? 1000u : page_rows);
        const char *params[3] = {after_s, since_us == INT64_MIN ? NULL : since_s, limit_s};
        PGresult *r = PQexecParams(cv_pg_handle(pc), page_sql, 3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            s = cv_pg_error(pc, r, "audit_walk_page");
            PQclear(r);
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n && s == CV_OK; i++) {
            unsigned char *prev = NULL, *hash = NULL;
            size_t prev_len = 0, hash_len = 0;
            struct cv_audit_row row = {
                .seq = strtoll(PQgetvalue(r, i, 0), NULL, 10),
                .occurred_us = strtoll(PQgetvalue(r, i, 1), NULL, 10),
                .actor = nullable(r, i, 2),
                .merchant_id = nullable(r, i, 3),
                .token = nullable(r, i, 4),
                .request_id = nullable(r, i, 5),
                .action = nullable(r, i, 6),
                .outcome = nullable(r, i, 7),
                .detail = nullable(r, i, 8),
            };
            s = cv_pg_get_bytea(r, i, 9, &prev, &prev_len);
            if (s == CV_OK)
                s = cv_pg_get_bytea(r, i, 10, &hash, &hash_len);
            if (s == CV_OK) {
                row.prev_hash = prev;
                row.prev_hash_len = prev_len;
                row.hash = hash;
                row.hash_len = hash_len;
                s = fn(ctx, &row);
            }
            after = row.seq;
            free(prev);
            free(hash);
        }
        PQclear(r);
        if (n == 0)
            break;
    }
    /* Read-only: ending it either way changes nothing. */
    PGresult *end = PQexecParams(cv_pg_handle(pc), "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
    PQclear(end);
    cv_pg_release(st, pc);
    return s;
}

void cv_audit_columns_free(struct cv_audit_column *cols, size_t n)
{
    if (cols == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(cols[i].schema);
        free(cols[i].table);
        free(cols[i].column);
        free(cols[i].type);
    }
    free(cols);
}

cv_status cv_store_audit_columns(struct cv_store *st, struct cv_audit_column **cols, size_t *n)
{
    /* Domains are resolved to their base type (recursively), arrays to their
     * element type. Type categories (pg_type.typcategory): S string (text,
     * varchar, char, name, citext), N numeric (a PAN fits in bigint and
     * numeric), U user-defined (json, jsonb, xml, tsvector, uuid, ...) and C
     * composite are read as text; bytea as raw bytes. The rest (B boolean,
     * D date/time, T interval, G geometric, I network, V bit string, E enum,
     * R range, P pseudo) cannot carry a run of 12 digits and are listed as
     * skipped. Tables and populated materialized views only: views hold no
     * data of their own, partitioned parents none beyond their partitions
     * (which are tables here), and foreign tables live elsewhere. */
    static const char sql[] =
        "WITH RECURSIVE dom(oid, base) AS ("
        "  SELECT t.oid, t.oid FROM pg_type t WHERE t.typtype <> 'd'"
        "  UNION ALL"
        "  SELECT t.oid, d.base FROM pg_type t JOIN dom d ON t.typbasetype = d.oid"
        "  WHERE t.typtype = 'd') "
        "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
        "  CASE WHEN bt.oid = 'bytea'::regtype THEN 'bytea' "
        "       WHEN bt.typcategory = 'A' AND et.oid = 'bytea'::regtype THEN 'bytea_array' "
        "       WHEN (CASE WHEN bt.typcategory = 'A' THEN et.typcategory ELSE bt.typcategory END)"
        "            IN ('S', 'N', 'U', 'C') THEN 'text' "
        "       ELSE 'skip' END "
        "FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "JOIN dom ON dom.oid = a.atttypid "
        "JOIN pg_type bt ON bt.oid = dom.base "
        "LEFT JOIN dom edom ON bt.typcategory = 'A' AND edom.oid = bt.typelem "
        "LEFT JOIN pg_type et ON et.oid = edom.base "
        "WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) "
        "  AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)' "
        "ORDER BY n.nspname, c.relname, a.attnum";
    struct cv_pg_conn *pc = NULL;
    *cols = NULL;
    *n = 0;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = use_utf8(pc);
    PGresult *r = NULL;
    if (s == CV_OK) {
        r = PQexecParams(cv_pg_handle(pc), sql, 0, NULL, NULL, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            s = cv_pg_error(pc, r, "audit_columns");
    }
    if (s == CV_OK) {
        size_t rows = (size_t)PQntuples(r);
        struct cv_audit_column *c = cv_xcalloc(rows > 0 ? rows : 1, sizeof(*c));
        for (size_t i = 0; i < rows; i++) {
            const char *kind = PQgetvalue(r, (int)i, 4);
            c[i].schema = cv_xstrdup(PQgetvalue(r, (int)i, 0));
            c[i].table = cv_xstrdup(PQgetvalue(r, (int)i, 1));
            c[i].column = cv_xstrdup(PQgetvalue(r, (int)i, 2));
            c[i].type = cv_xstrdup(PQgetvalue(r, (int)i, 3));
            c[i].kind = strcmp(kind, "bytea") == 0         ? CV_AUDIT_COL_BYTEA
                        : strcmp(kind, "bytea_array") == 0 ? CV_AUDIT_COL_BYTEA_ARRAY
                        : strcmp(kind, "text") == 0        ? CV_AUDIT_COL_TEXT
                                                           : CV_AUDIT_COL_SKIPPED;
        }
        *cols = c;
        *n = rows;
    }
    PQclear(r);
    cv_pg_release(st, pc);
    return s;
}

/* Appends text to a growing heap string. */
static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t l = strlen(s);
    if (*len + l + 1 > *cap) {
        size_t ncap = (*cap + l + 1) * 2;
        char *nb = cv_xmalloc(ncap);
        if (*buf != NULL)
            memcpy(nb, *buf, *len);
        free(*buf);
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, l + 1);
    *len += l;
}

/* Builds "DECLARE ... FOR SELECT <exprs> FROM ONLY schema.table"; NULL if
 * libpq cannot quote an identifier. Every expression yields text or bytea,
 * so a binary-format FETCH returns each cell's raw bytes: text as its UTF-8
 * bytes, bytea undecorated. */
static char *declare_sql(PGconn *pg, const struct cv_audit_column *cols, size_t n)
{
    char *sql = NULL, *qs = NULL, *qt = NULL;
    size_t len = 0, cap = 0;
    qs = PQescapeIdentifier(pg, cols[0].schema, strlen(cols[0].schema));
    qt = PQescapeIdentifier(pg, cols[0].table, strlen(cols[0].table));
    if (qs == NULL || qt == NULL)
        goto fail;
    append(&sql, &len, &cap, "DECLARE " CURSOR_NAME " NO SCROLL CURSOR FOR SELECT ");
    for (size_t i = 0; i < n; i++) {
        char *qc = PQescapeIdentifier(pg, cols[i].column, strlen(cols[i].column));
        if (qc == NULL)
            goto fail;
        if (i > 0)
            append(&sql, &len, &cap, ", ");
        switch (cols[i].kind) {
        case CV_AUDIT_COL_BYTEA:
            append(&sql, &len, &cap, qc);
            append(&sql, &len, &cap, "::bytea");
            break;
        case CV_AUDIT_COL_BYTEA_ARRAY:
            /* unnest flattens any number of dimensions */
            append(&sql, &len, &cap, "(SELECT string_agg(e, '\\x0a'::bytea) FROM unnest(");
            append(&sql, &len, &cap, qc);
            append(&sql, &len, &cap, "::bytea[]) AS u(e))");
            break;
        default:
            append(&sql, &len, &cap, qc);
            append(&sql, &len, &cap, "::text");
            break;
        }
        PQfreemem(qc);
    }
    append(&sql, &len, &cap, " FROM ONLY ");
    append(&sql, &len, &cap, qs);
    append(&sql, &len, &cap, ".");
    append(&sql, &len, &cap, qt);
    PQfreemem(qs);
    PQfreemem(qt);
    return sql;
fail:
    PQfreemem(qs);
    PQfreemem(qt);
    free(sql);
    return NULL;
}

cv_status cv_store_audit_scan_table(struct cv_store *st, const struct cv_audit_column *cols,
                                    size_t n, unsigned batch_rows,
                                    void (*fn)(void *ctx, size_t col, const unsigned char *bytes,
                                               size_t len),
                                    void *ctx, uint64_t *rows)
{
    char fetch[64];
    snprintf(fetch, sizeof(fetch), "FETCH FORWARD %u FROM " CURSOR_NAME,
             batch_rows == 0 ? 1000u : batch_rows);
    *rows = 0;
    if (n == 0)
        return CV_OK;
    struct cv_pg_conn *pc = NULL;
    CV_TRY(cv_pg_acquire(st, &pc));
    PGconn *pg = cv_pg_handle(pc);
    char *decl = NULL;
    cv_status s = use_utf8(pc);
    if (s == CV_OK)
        s = exec_command(pc, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "audit_scan_begin");
    if (s == CV_OK) {
        decl = declare_sql(pg, cols, n);
        if (decl == NULL) {
            s = cv_pg_error(pc, NULL, "audit_scan_quote");
        } else {
            s = exec_command(pc, decl, "audit_scan_declare");
        }
    }
    while (s == CV_OK) {
        /* Binary results: raw bytes of every text and bytea cell. */
        PGresult *r = PQexecParams(pg, fetch, 0, NULL, NULL, NULL, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            s = cv_pg_error(pc, r, "audit_scan_fetch");
            PQclear(r);
            break;
        }
        int nr = PQntuples(r);
        for (int i = 0; i < nr; i++) {
            for (size_t c = 0; c < n; c++) {
                if (PQgetisnull(r, i, (int)c))
                    continue;
                char *v = PQgetvalue(r, i, (int)c);
                size_t vlen = (size_t)PQgetlength(r, i, (int)c);
                fn(ctx, c, (const unsigned char *)v, vlen);
                /* The value may be the very card number the scan looks for. */
                cv_wipe(v, vlen);
            }
        }
        *rows += (uint64_t)nr;
        PQclear(r);
        if (nr == 0)
            break;
    }
    PGresult *end = PQexecParams(pg, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
    PQclear(end);
    free(decl);
    cv_pg_release(st, pc);
    return s;
}
