/* store_audit.c: every audit SQL statement of the store but one. Appends to
 * the hash-chained trail (one event, one event inside a key-lifecycle
 * transaction, or a group-commit batch in one statement, as pipeline
 * steps), and the queries
 * behind `cardvault audit`: reads the trail back in seq order from one
 * snapshot, lists every column of the database from the catalog, and
 * streams a table's values through a server-side cursor. The exception is
 * delete_token (store_tokens.c), whose audit event must share the delete's
 * own statement. Values travel as parameters; the only text spliced into
 * SQL are identifiers taken from the catalog, each quoted by libpq. It never
 * logs a value it reads: errors are logged by SQLSTATE only (pg.c). */
#include "store_audit_sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/audit.h"
#include "cardvault/buf.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "store_handle.h"

#define CURSOR_NAME "cv_audit_scan"
#define AUDIT_COLS  7
/* The DECLARE text of the storage scan: identifiers of one table. */
#define DECLARE_MAX_BYTES (1024 * 1024)
/* One array literal of a group-commit batch (128 events at most). */
#define ARRAY_MAX_BYTES (8 * 1024 * 1024)

_Static_assert(sizeof(((struct cv_audit_batch *)0)->arrays) / sizeof(struct cv_buf) ==
                   AUDIT_COLS + 2,
               "one array literal per column of audit_append_rows");

/* Appends are computed in C because each event's MAC needs K_audit, which
 * must never reach PostgreSQL (not in SQL text, not as a parameter: with
 * log_statement = all, parameters are logged). So an append is three steps
 * in the caller's transaction: lock the chain's tip and read the database
 * clock once the lock is held (head_lock), compute each event's seq, hash
 * and MAC here, then insert the rows and move the tip in one call
 * (audit_append_rows). The timestamp still comes from the database, as
 * before: taken after the lock is granted (the outer query projects it from
 * the locked subquery, which PostgreSQL never flattens), so times follow seq
 * order across instances. Every event of a batch shares that one time. A
 * group-commit batch costs one head read and one append whatever its size. */
#define HEAD_LOCK_SQL                                                                              \
    "SELECT seq, hash, mac, (extract(epoch FROM date_trunc('microseconds', clock_timestamp())) "   \
    "* 1000000)::bigint FROM (SELECT seq, hash, mac FROM audit_head WHERE id FOR UPDATE) h"

static const struct cv_pg_stmt head_lock = {"audit_head_lock", HEAD_LOCK_SQL, 0,
                                            CV_PG_PREPARED,    false,         false};

/* The same lock opening its own transaction, in one round trip (simple
 * protocol: static text, no parameters), for an append outside any
 * transaction. */
static const struct cv_pg_stmt begin_head_lock = {
    "audit_begin_head_lock", "BEGIN; " HEAD_LOCK_SQL, 0, CV_PG_SCRIPT, false, false};

#define APPEND_ROWS_SQL                                                                            \
    "SELECT audit_append_rows($1::bigint, timestamptz 'epoch' + $2::bigint * interval "            \
    "'1 microsecond', $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], "    \
    "$9::text[], $10::bytea[], $11::bytea[])"

static const struct cv_pg_stmt append_rows = {"audit_append_rows", APPEND_ROWS_SQL, 11,
                                              CV_PG_PREPARED,      false,           false};

/* A group-commit batch: a failure is retried event by event, so it is
 * logged at debug level only. */
static const struct cv_pg_stmt append_rows_batch = {
    "audit_append_rows_batch", APPEND_ROWS_SQL, 11, CV_PG_PREPARED, false, true};

static const struct cv_pg_stmt audit_head = {
    "audit_head", "SELECT seq, hash, mac FROM audit_head WHERE id", 0, CV_PG_ONE_OFF, false, false};

/* extract(epoch ...) is numeric since PostgreSQL 14, so the microsecond
 * count is exact; since_us goes back in as a bigint of microseconds for the
 * same reason (no float8 rounding). Keyset paging on the primary key. */
static const struct cv_pg_stmt audit_page = {
    "audit_walk_page",
    "SELECT seq, (extract(epoch FROM occurred_at) * 1000000)::bigint, actor, merchant_id, "
    "token, request_id, action, outcome, detail, prev_hash, hash, mac FROM audit_events "
    "WHERE seq > $1::bigint AND ($2::bigint IS NULL OR occurred_at >= "
    "timestamptz 'epoch' + $2::bigint * interval '1 microsecond') "
    "ORDER BY seq LIMIT $3::int",
    3,
    CV_PG_ONE_OFF,
    false,
    false};

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
static const struct cv_pg_stmt audit_columns = {
    "audit_columns",
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
    "ORDER BY n.nspname, c.relname, a.attnum",
    0,
    CV_PG_ONE_OFF,
    false,
    false};

/* The primary key of one table, in key order (row locations of `cardvault
 * scan`); the name travels as parameters and is quoted by the server. */
static const struct cv_pg_stmt audit_pk = {
    "audit_pk",
    "SELECT a.attname FROM pg_index i "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND i.indisprimary "
    "ORDER BY array_position(i.indkey::int2[], a.attnum)",
    2,
    CV_PG_ONE_OFF,
    false,
    false};

/* The tip as locked by head_lock, and the time the new events get. */
struct locked_head {
    int64_t seq;
    unsigned char hash[CV_AUDIT_HASH_BYTES];
    unsigned char mac[CV_AUDIT_MAC_BYTES];
    bool keyed;
    int64_t now_us;
};

static cv_status read_locked_head(const PGresult *r, struct locked_head *h)
{
    memset(h, 0, sizeof(*h));
    if (PQntuples(r) != 1)
        return CV_ERR_NOT_FOUND; /* migration 0001 inserts the row; its absence is tampering */
    h->seq = cv_pg_get_int(r, 0, 0);
    CV_TRY(cv_pg_get_fixed_bytea(r, 0, 1, h->hash, sizeof(h->hash)));
    h->keyed = !PQgetisnull(r, 0, 2);
    if (h->keyed)
        CV_TRY(cv_pg_get_fixed_bytea(r, 0, 2, h->mac, sizeof(h->mac)));
    h->now_us = cv_pg_get_int(r, 0, 3);
    return CV_OK;
}

/* "\\x" and 64 hex digits: one bytea element of an array literal. */
#define HEX_BYTEA_LEN (2 + 2 * CV_AUDIT_HASH_BYTES + 1)

static void hex_bytea(const unsigned char *b, char out[HEX_BYTEA_LEN])
{
    static const char hx[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < CV_AUDIT_HASH_BYTES; i++) {
        out[2 + 2 * i] = hx[b[i] >> 4];
        out[3 + 2 * i] = hx[b[i] & 15];
    }
    out[HEX_BYTEA_LEN - 1] = '\0';
}

/* Computes the n events' links from the locked head h into the parameters
 * of audit_append_rows: p (initialised here) and the array literals it
 * points into (arrays: AUDIT_COLS + 2 buffers, initialised by the caller).
 * genesis_ok: the head may be unkeyed (the first keyed event of the chain,
 * written with the audit key's creation); otherwise an unkeyed head means
 * the trail's MACs were stripped. */
static cv_status seal_params(const struct cv_audit_sealer *sealer, const struct locked_head *h,
                             const struct cv_audit_event *const *evs, size_t n, bool genesis_ok,
                             struct cv_buf *arrays, struct cv_pg_params *p)
{
    if (!h->keyed && !genesis_ok) {
        cv_log(CV_LOG_ERROR, "audit_chain_unkeyed",
               CV_LS("effect",
                     "audit_head has no MAC although the vault has an audit key: the "
                     "trail was stripped; nothing appended (run cardvault audit verify)"));
        return CV_ERR_INTEGRITY;
    }
    const char **column = cv_xcalloc(n, sizeof(*column));
    char(*hashes)[HEX_BYTEA_LEN] = cv_xcalloc(n, sizeof(*hashes));
    char(*macs)[HEX_BYTEA_LEN] = cv_xcalloc(n, sizeof(*macs));
    unsigned char prev[CV_AUDIT_HASH_BYTES], prev_mac[CV_AUDIT_MAC_BYTES];
    cv_status st = CV_OK;
    memcpy(prev, h->hash, sizeof(prev));
    /* The first keyed event chains from the SHA-256 tip it follows (32 zero
     * bytes in a new vault): its MAC then covers every unkeyed event before
     * it, as they stood when the chain became keyed. */
    memcpy(prev_mac, h->keyed ? h->mac : h->hash, sizeof(prev_mac));
    for (size_t i = 0; i < n; i++) {
        const struct cv_audit_event *e = evs[i];
        unsigned char hash[CV_AUDIT_HASH_BYTES], mac[CV_AUDIT_MAC_BYTES];
        struct cv_audit_row row = {
            .seq = h->seq + 1 + (int64_t)i,
            .occurred_us = h->now_us,
            .actor = e->actor,
            .merchant_id = e->merchant_id,
            .token = e->token,
            .request_id = e->request_id,
            .action = e->action,
            .outcome = e->outcome,
            .detail = e->detail,
            .prev_hash = prev,
            .prev_hash_len = sizeof(prev),
        };
        if ((st = sealer->fn(sealer->ctx, &row, prev_mac, hash, mac)) != CV_OK)
            goto out;
        hex_bytea(hash, hashes[i]);
        hex_bytea(mac, macs[i]);
        memcpy(prev, hash, sizeof(prev));
        memcpy(prev_mac, mac, sizeof(prev_mac));
    }
    cv_pg_params_init(p);
    cv_pg_param_int(p, h->seq + 1);
    cv_pg_param_int(p, h->now_us);
    for (int k = 0; k < AUDIT_COLS + 2; k++) {
        for (size_t i = 0; i < n; i++) {
            const struct cv_audit_event *e = evs[i];
            const char *fields[AUDIT_COLS + 2] = {e->actor,      e->merchant_id, e->token,
                                                  e->request_id, e->action,      e->outcome,
                                                  e->detail,     hashes[i],      macs[i]};
            column[i] = fields[k];
        }
        if ((st = cv_pg_array_literal(&arrays[k], column, n)) != CV_OK)
            goto out;
        cv_pg_param_text(p, arrays[k].data);
    }
out:
    cv_wipe(prev_mac, sizeof(prev_mac));
    free(column);
    free(hashes);
    free(macs);
    return st;
}

static void arrays_init(struct cv_buf *arrays)
{
    for (int k = 0; k < AUDIT_COLS + 2; k++)
        cv_buf_init(&arrays[k], ARRAY_MAX_BYTES);
}

static void arrays_cleanup(struct cv_buf *arrays)
{
    for (int k = 0; k < AUDIT_COLS + 2; k++)
        cv_buf_cleanup(&arrays[k]);
}

/* Seals the n events after the locked head h and appends them with
 * audit_append_rows on c. */
static cv_status append_sealed(struct cv_pg_conn *c, const struct cv_audit_sealer *sealer,
                               const struct locked_head *h, const struct cv_audit_event *const *evs,
                               size_t n, bool genesis_ok, const struct cv_pg_stmt *stmt)
{
    struct cv_buf arrays[AUDIT_COLS + 2];
    struct cv_pg_params p;
    arrays_init(arrays);
    cv_status st = seal_params(sealer, h, evs, n, genesis_ok, arrays, &p);
    if (st == CV_OK)
        st = cv_pg_run(c, stmt, &p, NULL);
    arrays_cleanup(arrays);
    return st;
}

static cv_status need_sealer(const struct cv_audit_sealer *sealer)
{
    if (sealer != NULL && sealer->fn != NULL)
        return CV_OK;
    cv_log(CV_LOG_ERROR, "audit_key_missing",
           CV_LS("effect", "no audit key loaded (the KEK was not opened): event not appended"));
    return CV_ERR_CONFIG;
}

/* Locks the head on c (inside the caller's transaction) and appends. */
static cv_status append_in(struct cv_pg_conn *c, const struct cv_audit_sealer *sealer,
                           const struct cv_audit_event *const *evs, size_t n, bool genesis_ok,
                           const struct cv_pg_stmt *stmt)
{
    PGresult *r = NULL;
    struct locked_head h;
    if (n == 0)
        return CV_OK;
    CV_TRY(need_sealer(sealer));
    CV_TRY(cv_pg_run(c, &head_lock, NULL, &r));
    cv_status st = read_locked_head(r, &h);
    PQclear(r);
    if (st == CV_OK)
        st = append_sealed(c, sealer, &h, evs, n, genesis_ok, stmt);
    return st;
}

cv_status cv_audit_store_append(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                                const struct cv_audit_event *ev)
{
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    struct locked_head h;
    CV_TRY(need_sealer(sealer));
    CV_TRY(cv_pg_acquire(pool, &c));
    /* BEGIN and the lock in one round trip, the append, COMMIT: three. */
    cv_status st = cv_pg_run(c, &begin_head_lock, NULL, &r);
    if (st != CV_OK)
        goto out;
    st = read_locked_head(r, &h);
    PQclear(r);
    if (st != CV_OK)
        goto out;
    if ((st = append_sealed(c, sealer, &h, &ev, 1, false, &append_rows)) != CV_OK)
        goto out;
    st = cv_pg_command(c, "COMMIT");
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
}

cv_status cv_audit_store_append_in(struct cv_pg_conn *c, const struct cv_audit_sealer *sealer,
                                   const struct cv_audit_event *ev)
{
    return append_in(c, sealer, &ev, 1, false, &append_rows);
}

cv_status cv_audit_store_start_keyed_in(struct cv_pg_conn *c, const struct cv_audit_sealer *sealer,
                                        const struct cv_audit_event *ev)
{
    return append_in(c, sealer, &ev, 1, true, &append_rows);
}

void cv_audit_batch_init(struct cv_audit_batch *a, bool retried)
{
    memset(a, 0, sizeof(*a));
    a->retried = retried;
    arrays_init(a->arrays);
    a->lock_step = CV_PG_PIPELINE_MAX;
}

void cv_audit_batch_cleanup(struct cv_audit_batch *a)
{
    if (a == NULL)
        return;
    arrays_cleanup(a->arrays);
}

cv_status cv_audit_batch_queue_lock(struct cv_audit_batch *a, struct cv_pg_pipeline *pl,
                                    const struct cv_audit_sealer *sealer)
{
    CV_TRY(need_sealer(sealer));
    a->lock_step = cv_pg_pipeline_add(pl, &head_lock, NULL);
    return CV_OK;
}

cv_status cv_audit_batch_queue_append(struct cv_audit_batch *a, const struct cv_pg_pipeline *locked,
                                      struct cv_pg_pipeline *pl,
                                      const struct cv_audit_sealer *sealer,
                                      const struct cv_audit_event *const *evs, size_t n)
{
    struct locked_head h;
    if (a->lock_step >= locked->n || locked->steps[a->lock_step].res == NULL)
        return CV_ERR_INTERNAL;
    CV_TRY(need_sealer(sealer));
    CV_TRY(read_locked_head(locked->steps[a->lock_step].res, &h));
    CV_TRY(seal_params(sealer, &h, evs, n, false, a->arrays, &a->params));
    cv_pg_pipeline_add(pl, a->retried ? &append_rows_batch : &append_rows, &a->params);
    return CV_OK;
}

static cv_status read_head(struct cv_pg_conn *c, struct cv_audit_head *head)
{
    PGresult *r = NULL;
    memset(head, 0, sizeof(*head));
    CV_TRY(cv_pg_run(c, &audit_head, NULL, &r));
    cv_status st = CV_OK;
    if (PQntuples(r) != 1) {
        st = CV_ERR_NOT_FOUND; /* migration 0001 inserts the row; its absence is tampering */
        head->seq = -1;
    } else {
        unsigned char *h = NULL;
        size_t n = 0;
        head->seq = cv_pg_get_int(r, 0, 0);
        st = cv_pg_get_bytea(r, 0, 1, &h, &n);
        if (st == CV_OK) {
            head->hash_len = n <= sizeof(head->hash) ? n : 0;
            memcpy(head->hash, h, head->hash_len);
        }
        free(h);
        h = NULL;
        if (st == CV_OK && !PQgetisnull(r, 0, 2)) {
            st = cv_pg_get_bytea(r, 0, 2, &h, &n);
            if (st == CV_OK) {
                /* a MAC of the wrong length reads as one that cannot match */
                head->mac_len = n == sizeof(head->mac) ? n : 1;
                memcpy(head->mac, h, n == sizeof(head->mac) ? n : 0);
            }
            free(h);
        }
    }
    PQclear(r);
    return st;
}

cv_status cv_store_audit_head(struct cv_store *store, struct cv_audit_head *head)
{
    struct cv_pg_conn *c = NULL;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = read_head(c, head);
    cv_pg_release(c);
    return st;
}

static const char *nullable(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Hands each row of one page to fn; *last_seq gets the last seq seen. */
static cv_status walk_page(const PGresult *r, int64_t *last_seq,
                           cv_status (*fn)(void *ctx, const struct cv_audit_row *row), void *ctx)
{
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned char *prev = NULL, *hash = NULL, *mac = NULL;
        size_t prev_len = 0, hash_len = 0, mac_len = 0;
        struct cv_audit_row row = {
            .seq = cv_pg_get_int(r, i, 0),
            .occurred_us = cv_pg_get_int(r, i, 1),
            .actor = nullable(r, i, 2),
            .merchant_id = nullable(r, i, 3),
            .token = nullable(r, i, 4),
            .request_id = nullable(r, i, 5),
            .action = nullable(r, i, 6),
            .outcome = nullable(r, i, 7),
            .detail = nullable(r, i, 8),
        };
        cv_status st = cv_pg_get_bytea(r, i, 9, &prev, &prev_len);
        if (st != CV_OK)
            goto next;
        if ((st = cv_pg_get_bytea(r, i, 10, &hash, &hash_len)) != CV_OK)
            goto next;
        row.prev_hash = prev;
        row.prev_hash_len = prev_len;
        row.hash = hash;
        row.hash_len = hash_len;
        if (!PQgetisnull(r, i, 11)) {
            if ((st = cv_pg_get_bytea(r, i, 11, &mac, &mac_len)) != CV_OK)
                goto next;
            row.mac = mac;
            row.mac_len = mac_len;
        }
        st = fn(ctx, &row);
    next:
        *last_seq = row.seq;
        free(prev);
        free(hash);
        free(mac);
        if (st != CV_OK)
            return st;
    }
    return CV_OK;
}

cv_status cv_store_audit_walk(struct cv_store *store, int64_t since_us, unsigned page_rows,
                              struct cv_audit_head *head,
                              cv_status (*fn)(void *ctx, const struct cv_audit_row *row), void *ctx)
{
    struct cv_pg_conn *c = NULL;
    cv_status st = CV_OK;
    int64_t after = INT64_MIN; /* rows a forger gave seq <= 0 are walked, and fail, too */
    CV_TRY(cv_pg_acquire(store->pool, &c));
    if ((st = cv_pg_use_utf8(c)) != CV_OK)
        goto out;
    /* One snapshot: the head and every page agree even while the service appends. */
    if ((st = cv_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) != CV_OK)
        goto out;
    if ((st = read_head(c, head)) != CV_OK)
        goto out;
    for (;;) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        cv_pg_params_init(&p);
        cv_pg_param_int(&p, after);
        if (since_us == INT64_MIN)
            cv_pg_param_text(&p, NULL);
        else
            cv_pg_param_int(&p, since_us);
        cv_pg_param_int(&p, page_rows == 0 ? 1000 : page_rows);
        if ((st = cv_pg_run(c, &audit_page, &p, &r)) != CV_OK)
            goto out;
        int n = PQntuples(r);
        st = walk_page(r, &after, fn, ctx);
        PQclear(r);
        if (st != CV_OK || n == 0)
            goto out;
    }
out:
    /* Read-only: ending it either way changes nothing. */
    cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
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

static enum cv_audit_col_kind column_kind(const char *kind)
{
    if (strcmp(kind, "bytea") == 0)
        return CV_AUDIT_COL_BYTEA;
    if (strcmp(kind, "bytea_array") == 0)
        return CV_AUDIT_COL_BYTEA_ARRAY;
    if (strcmp(kind, "text") == 0)
        return CV_AUDIT_COL_TEXT;
    return CV_AUDIT_COL_SKIPPED;
}

cv_status cv_store_audit_columns(struct cv_store *store, struct cv_audit_column **cols, size_t *n)
{
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    *cols = NULL;
    *n = 0;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_use_utf8(c);
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_run(c, &audit_columns, NULL, &r)) != CV_OK)
        goto out;
    size_t rows = (size_t)PQntuples(r);
    struct cv_audit_column *col = cv_xcalloc(rows > 0 ? rows : 1, sizeof(*col));
    for (size_t i = 0; i < rows; i++) {
        col[i].schema = cv_xstrdup(PQgetvalue(r, (int)i, 0));
        col[i].table = cv_xstrdup(PQgetvalue(r, (int)i, 1));
        col[i].column = cv_xstrdup(PQgetvalue(r, (int)i, 2));
        col[i].type = cv_xstrdup(PQgetvalue(r, (int)i, 3));
        col[i].kind = column_kind(PQgetvalue(r, (int)i, 4));
    }
    *cols = col;
    *n = rows;
out:
    PQclear(r);
    cv_pg_release(c);
    return st;
}

/* One select-list expression: every one yields text or bytea, so a
 * binary-format FETCH returns each cell's raw bytes: text as its UTF-8
 * bytes, bytea undecorated. */
static cv_status append_column(struct cv_buf *sql, const char *sep, const char *quoted,
                               enum cv_audit_col_kind kind)
{
    switch (kind) {
    case CV_AUDIT_COL_BYTEA:
        return cv_buf_appendf(sql, "%s%s::bytea", sep, quoted);
    case CV_AUDIT_COL_BYTEA_ARRAY:
        /* unnest flattens any number of dimensions */
        return cv_buf_appendf(
            sql, "%s(SELECT string_agg(e, '\\x0a'::bytea) FROM unnest(%s::bytea[]) AS u(e))", sep,
            quoted);
    default:
        return cv_buf_appendf(sql, "%s%s::text", sep, quoted);
    }
}

/* Builds "DECLARE ... FOR SELECT [ctid, keys,] <exprs> FROM ONLY
 * schema.table [LIMIT n]" into sql. CV_ERR_DB when libpq cannot quote an
 * identifier. */
static cv_status declare_sql(struct cv_pg_conn *c, const struct cv_audit_column *cols, size_t n,
                             char *const *keys, size_t nkeys, bool with_ctid, uint64_t limit,
                             struct cv_buf *sql)
{
    char *qs = cv_pg_quote_ident(c, cols[0].schema);
    char *qt = cv_pg_quote_ident(c, cols[0].table);
    cv_status st = CV_ERR_DB;
    if (qs == NULL || qt == NULL)
        goto out;
    if ((st = cv_buf_append_str(sql, "DECLARE " CURSOR_NAME " NO SCROLL CURSOR FOR SELECT ")) !=
        CV_OK)
        goto out;
    if (with_ctid && (st = cv_buf_append_str(sql, "ctid::text, ")) != CV_OK)
        goto out;
    for (size_t i = 0; i < nkeys; i++) {
        char *qk = cv_pg_quote_ident(c, keys[i]);
        if (qk == NULL) {
            st = CV_ERR_DB;
            goto out;
        }
        st = cv_buf_appendf(sql, "%s::text, ", qk);
        cv_pg_freemem(qk);
        if (st != CV_OK)
            goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char *qc = cv_pg_quote_ident(c, cols[i].column);
        if (qc == NULL) {
            st = CV_ERR_DB;
            goto out;
        }
        st = append_column(sql, i > 0 ? ", " : "", qc, cols[i].kind);
        cv_pg_freemem(qc);
        if (st != CV_OK)
            goto out;
    }
    st = cv_buf_appendf(sql, " FROM ONLY %s.%s", qs, qt);
    if (st == CV_OK && limit > 0)
        st = cv_buf_appendf(sql, " LIMIT %llu", (unsigned long long)limit);
out:
    cv_pg_freemem(qs);
    cv_pg_freemem(qt);
    return st;
}

/* Hands every non-NULL cell of one fetched page to fn with its row's
 * location, then wipes it. The first `lead` cells are the location: ctid,
 * then the key columns. */
static void scan_page(PGresult *r, size_t n, size_t lead, char *const *keys, size_t nkeys,
                      cv_audit_cell_fn fn, void *ctx)
{
    char loc[512];
    for (int i = 0; i < PQntuples(r); i++) {
        loc[0] = '\0';
        if (lead > 0) {
            size_t used = 0;
            for (size_t k = 0; k < nkeys && used < sizeof(loc); k++) {
                const char *v =
                    PQgetisnull(r, i, (int)(k + 1)) ? "NULL" : PQgetvalue(r, i, (int)(k + 1));
                int w = snprintf(loc + used, sizeof(loc) - used, "%s%s=%s", k > 0 ? ", " : "",
                                 keys[k], v);
                used += w > 0 ? (size_t)w : 0;
            }
            if (nkeys == 0)
                snprintf(loc, sizeof(loc), "ctid=%s", PQgetvalue(r, i, 0));
        }
        for (size_t k = 0; k < n; k++) {
            int col = (int)(lead + k);
            if (PQgetisnull(r, i, col))
                continue;
            char *v = PQgetvalue(r, i, col);
            size_t vlen = (size_t)PQgetlength(r, i, col);
            fn(ctx, k, (const unsigned char *)v, vlen, lead > 0 ? loc : NULL,
               lead > 0 ? PQgetvalue(r, i, 0) : NULL);
            /* The value may be the very card number the scan looks for. */
            cv_wipe(v, vlen);
        }
        cv_wipe(loc, sizeof(loc));
        for (size_t k = 0; k < lead; k++)
            cv_wipe(PQgetvalue(r, i, (int)k), (size_t)PQgetlength(r, i, (int)k));
    }
}

/* The primary key's column names of cols' table (none: *n = 0). */
static cv_status primary_key(struct cv_pg_conn *c, const struct cv_audit_column *col, char ***keys,
                             size_t *n)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    *keys = NULL;
    *n = 0;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, col->schema);
    cv_pg_param_text(&p, col->table);
    CV_TRY(cv_pg_run(c, &audit_pk, &p, &r));
    size_t rows = (size_t)PQntuples(r);
    *keys = cv_xcalloc(rows + 1, sizeof(**keys));
    for (size_t i = 0; i < rows; i++)
        (*keys)[i] = cv_xstrdup(PQgetvalue(r, (int)i, 0));
    *n = rows;
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_audit_scan_rows(struct cv_store *store, const struct cv_audit_column *cols,
                                   size_t n, const struct cv_audit_scan_opts *opts,
                                   cv_audit_cell_fn fn, void *ctx, uint64_t *rows)
{
    char fetch[64];
    struct cv_pg_conn *c = NULL;
    struct cv_buf decl;
    char **keys = NULL;
    size_t nkeys = 0;
    snprintf(fetch, sizeof(fetch), "FETCH FORWARD %u FROM " CURSOR_NAME,
             opts->batch_rows == 0 ? 1000u : opts->batch_rows);
    /* Binary results: raw bytes of every text and bytea cell. */
    const struct cv_pg_stmt fetch_page = {"audit_scan_fetch", fetch, 0, CV_PG_ONE_OFF, true, false};
    *rows = 0;
    if (n == 0)
        return CV_OK;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_buf_init(&decl, DECLARE_MAX_BYTES);
    cv_status st = cv_pg_use_utf8(c);
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")) != CV_OK)
        goto out;
    if (opts->row_locations && (st = primary_key(c, &cols[0], &keys, &nkeys)) != CV_OK)
        goto out;
    size_t lead = opts->row_locations ? 1 + nkeys : 0;
    if (declare_sql(c, cols, n, keys, nkeys, opts->row_locations, opts->max_rows, &decl) != CV_OK) {
        st = cv_pg_error(c, NULL, "audit_scan_quote", false);
        goto out;
    }
    const struct cv_pg_stmt declare = {"audit_scan_declare", decl.data, 0,
                                       CV_PG_ONE_OFF,        false,     false};
    if ((st = cv_pg_run(c, &declare, NULL, NULL)) != CV_OK)
        goto out;
    for (;;) {
        PGresult *r = NULL;
        if ((st = cv_pg_run(c, &fetch_page, NULL, &r)) != CV_OK)
            goto out;
        int nr = PQntuples(r);
        scan_page(r, n, lead, keys, nkeys, fn, ctx);
        *rows += (uint64_t)nr;
        PQclear(r);
        if (nr == 0)
            goto out;
    }
out:
    cv_pg_rollback(c);
    cv_buf_cleanup(&decl);
    cv_pg_release(c);
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    return st;
}

struct plain_cells {
    void (*fn)(void *ctx, size_t col, const unsigned char *bytes, size_t len);
    void *ctx;
};

static void plain_cell(void *ctx, size_t col, const unsigned char *bytes, size_t len,
                       const char *row_key, const char *ctid)
{
    struct plain_cells *p = ctx;
    (void)row_key;
    (void)ctid;
    p->fn(p->ctx, col, bytes, len);
}

cv_status cv_store_audit_scan_table(struct cv_store *store, const struct cv_audit_column *cols,
                                    size_t n, unsigned batch_rows,
                                    void (*fn)(void *ctx, size_t col, const unsigned char *bytes,
                                               size_t len),
                                    void *ctx, uint64_t *rows)
{
    struct cv_audit_scan_opts opts = {batch_rows, 0, false};
    struct plain_cells p = {fn, ctx};
    return cv_store_audit_scan_rows(store, cols, n, &opts, plain_cell, &p, rows);
}
