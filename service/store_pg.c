/* store_pg.c: the PostgreSQL side of cardvault. Owns a fixed pool of
 * connections, prepares every statement on each connection once, and maps
 * rows to structs. Every statement is parameterized (PQexecPrepared). Errors
 * are logged by SQLSTATE and statement name only: server messages can quote
 * the values that caused them. No card data in the clear ever reaches here. */
#include "cardvault/store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"
#include "store_batch.h"
#include "store_pg_internal.h"

#define RFC3339_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

enum stmt_id {
    S_PING,
    S_SCHEMA_VERSION,
    S_GET_META,
    S_INIT_META,
    S_INSERT_DEK,
    S_GET_DEK,
    S_FIND_ACTIVE_DEK,
    S_RESERVE_DEK,
    S_RETIRE_DEK,
    S_INSERT_MERCHANT,
    S_INSERT_API_KEY,
    S_REVOKE_API_KEY,
    S_SCAN_API_KEYS,
    S_INSERT_TOKEN,
    S_GET_TOKEN,
    S_DELETE_TOKEN,
    S_FIND_BY_FP,
    S_AUDIT_APPEND,
    S_INSERT_TOKEN_IDEM,
    S_IDEM_CLAIM,
    S_IDEM_GET,
    S_IDEM_COMPLETE,
    S_IDEM_RELEASE,
    S_IDEM_PURGE,
    S_GET_TOKENS_BATCH,
    S_COUNT
};

struct stmt {
    const char *name;
    const char *sql;
    int nparams;
};

#define TOKEN_COLS                                                                                 \
    "t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, "  \
    "t.last4, t.fingerprint, " RFC3339_UTC("t.created_at") ", d.state = 'destroyed'"

static const struct stmt stmts[S_COUNT] = {
    [S_PING] = {"ping", "SELECT 1", 0},
    [S_SCHEMA_VERSION] = {"schema_version",
                          "SELECT coalesce(max(version), 0) FROM schema_migrations", 0},
    [S_GET_META] = {"get_meta", "SELECT kek_check_value, fingerprint_key_wrapped FROM vault_meta",
                    0},
    [S_INIT_META] = {"init_meta",
                     "INSERT INTO vault_meta (kek_provider, kek_check_value, "
                     "fingerprint_key_wrapped) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                     3},
    [S_INSERT_DEK] = {"insert_dek",
                      /* Only under the KEK the vault is bound to right now: an
                       * instance still holding a rotated-out KEK inserts nothing. */
                      "INSERT INTO data_keys (wrapped_key, max_uses) SELECT $1, $2 "
                      "FROM vault_meta WHERE kek_check_value = $3 FOR SHARE "
                      "RETURNING dek_id",
                      3},
    [S_GET_DEK] = {"get_dek",
                   "SELECT dek_id, wrapped_key, state, use_count, max_uses, "
                   "extract(epoch FROM now() - created_at)::bigint FROM data_keys "
                   "WHERE dek_id = $1",
                   1},
    [S_FIND_ACTIVE_DEK] = {"find_active_dek",
                           "SELECT dek_id, wrapped_key, state, use_count, max_uses, "
                           "extract(epoch FROM now() - created_at)::bigint FROM data_keys "
                           "WHERE state = 'active' AND use_count < max_uses "
                           "AND created_at > now() - make_interval(secs => $1) "
                           "ORDER BY dek_id DESC LIMIT 1",
                           1},
    [S_RESERVE_DEK] = {"reserve_dek",
                       "UPDATE data_keys SET use_count = use_count + $2 "
                       "WHERE dek_id = $1 AND state = 'active' AND use_count + $2 <= max_uses "
                       "RETURNING use_count",
                       2},
    [S_RETIRE_DEK] = {"retire_dek",
                      "UPDATE data_keys SET state = 'retired', retired_at = now() "
                      "WHERE dek_id = $1 AND state = 'active'",
                      1},
    [S_INSERT_MERCHANT] = {"insert_merchant",
                           "INSERT INTO merchants (merchant_id, name) VALUES ($1, $2)", 2},
    [S_INSERT_API_KEY] = {"insert_api_key",
                          "INSERT INTO api_keys (merchant_id, key_prefix, key_hash, scopes) "
                          "VALUES ($1, $2, $3, string_to_array($4, ','))",
                          4},
    [S_REVOKE_API_KEY] = {"revoke_api_key",
                          "UPDATE api_keys SET revoked_at = now(), changed_at = clock_timestamp() "
                          "WHERE key_prefix = $1 AND revoked_at IS NULL RETURNING merchant_id",
                          1},
    [S_SCAN_API_KEYS] = {"scan_api_keys",
                         "SELECT merchant_id, key_prefix, key_hash, array_to_string(scopes, ','), "
                         "revoked_at IS NOT NULL, "
                         "(extract(epoch FROM changed_at) * 1000000)::bigint "
                         "FROM api_keys WHERE changed_at >= to_timestamp($1::float8 / 1000000)",
                         1},
    [S_INSERT_TOKEN] = {"insert_token",
                        "INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, "
                        "ciphertext, brand, bin, last4, fingerprint, created_at) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        11},
    [S_GET_TOKEN] = {"get_token",
                     "SELECT " TOKEN_COLS " FROM tokens t JOIN data_keys d USING (dek_id) "
                     "WHERE t.merchant_id = $1 AND t.token = $2",
                     2},
    [S_DELETE_TOKEN] = {"delete_token",
                        "WITH d AS (DELETE FROM tokens WHERE merchant_id = $1 AND token = $2 "
                        "RETURNING 1), n AS (SELECT count(*) AS c FROM d) "
                        "SELECT n.c, audit_append($3, $1, $2, $4, $5, "
                        "CASE WHEN n.c > 0 THEN 'success' ELSE 'not_found' END, NULL) FROM n",
                        5},
    [S_FIND_BY_FP] = {"find_by_fingerprint",
                      "SELECT " TOKEN_COLS " FROM tokens t JOIN data_keys d USING (dek_id) "
                      "WHERE t.merchant_id = $1 AND t.fingerprint = $2 "
                      "ORDER BY t.created_at DESC LIMIT $3",
                      3},
    [S_AUDIT_APPEND] = {"audit_append", "SELECT audit_append($1, $2, $3, $4, $5, $6, $7)", 7},
    /* A data-modifying CTE runs exactly once whether or not it is referenced:
     * the token row and its idempotency answer commit in one statement. */
    [S_INSERT_TOKEN_IDEM] = {"insert_token_idem",
                             "WITH t AS (INSERT INTO tokens (merchant_id, token, format_version, "
                             "dek_id, nonce, ciphertext, brand, bin, last4, fingerprint, "
                             "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
                             "RETURNING merchant_id) "
                             "UPDATE idempotency_keys i SET state = 'done', status_code = 201, "
                             "response_body = $13 FROM t WHERE i.merchant_id = t.merchant_id "
                             "AND i.key_hash = $12 AND i.state = 'in_progress'",
                             13},
    [S_IDEM_CLAIM] = {"idem_claim",
                      "INSERT INTO idempotency_keys (merchant_id, key_hash, request_hash, state, "
                      "expires_at) VALUES ($1, $2, $3, 'in_progress', "
                      "now() + make_interval(secs => $4)) "
                      "ON CONFLICT (merchant_id, key_hash) DO UPDATE SET "
                      "request_hash = EXCLUDED.request_hash, state = 'in_progress', "
                      "status_code = NULL, response_body = NULL, created_at = now(), "
                      "expires_at = EXCLUDED.expires_at "
                      "WHERE idempotency_keys.expires_at < now() OR "
                      "(idempotency_keys.state = 'in_progress' AND "
                      "idempotency_keys.created_at < now() - make_interval(secs => $5)) "
                      "RETURNING 1",
                      5},
    [S_IDEM_GET] = {"idem_get",
                    "SELECT state = 'done', request_hash, status_code, response_body "
                    "FROM idempotency_keys WHERE merchant_id = $1 AND key_hash = $2",
                    2},
    [S_IDEM_COMPLETE] = {"idem_complete",
                         "UPDATE idempotency_keys SET state = 'done', status_code = $3, "
                         "response_body = $4 WHERE merchant_id = $1 AND key_hash = $2 "
                         "AND state = 'in_progress'",
                         4},
    [S_IDEM_RELEASE] = {"idem_release",
                        "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key_hash = $2 "
                        "AND state = 'in_progress'",
                        2},
    [S_IDEM_PURGE] = {"idem_purge", "DELETE FROM idempotency_keys WHERE expires_at < now()", 0},
    /* Concurrent reads share one round trip: each row is still found by its
     * full (merchant_id, token) key, so a batch never mixes merchants' data. */
    [S_GET_TOKENS_BATCH] = {"get_tokens_batch",
                            "SELECT " TOKEN_COLS " FROM tokens t JOIN data_keys d USING (dek_id) "
                            "JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, token) "
                            "ON t.merchant_id = k.merchant_id AND t.token = k.token",
                            2},
};

struct conn {
    PGconn *pg;
    PGcancel *cancel; /* made by the owning thread; PQcancel may use it from another */
    bool busy;        /* checked out (guarded by the store's lock) */
    bool prepared[S_COUNT];
};

/* The handle other store_*.c files get (store_pg_internal.h) is this conn. */
struct cv_pg_conn {
    struct conn c;
};

/* A thread waiting for a connection; release() hands one over directly. */
struct pool_waiter {
    pthread_cond_t cond;
    int conn_index; /* set by the releasing thread; -1 while waiting */
    struct pool_waiter *next;
};

struct cv_store {
    char *conninfo;
    unsigned size;
    struct conn *conns;
    unsigned *free_stack; /* indexes of idle connections */
    unsigned free_count;
    pthread_mutex_t lock;
    struct pool_waiter *waiters_head, *waiters_tail; /* FIFO */
    struct cv_batcher *batcher;                      /* NULL: every write is its own transaction */
    struct cv_batcher *reader;                       /* NULL: every read is its own round trip */
};

/* A parameter list built on the stack: text or binary values. */
struct params {
    const char *values[16];
    int lengths[16];
    int formats[16];
    int n;
    char numbuf[16][24];
};

static void p_text(struct params *p, const char *s)
{
    p->values[p->n] = s;
    p->lengths[p->n] = 0;
    p->formats[p->n] = 0;
    p->n++;
}

static void p_int(struct params *p, int64_t v)
{
    snprintf(p->numbuf[p->n], sizeof(p->numbuf[0]), "%" PRId64, v);
    p_text(p, p->numbuf[p->n]);
}

static void p_bytes(struct params *p, const unsigned char *b, size_t len)
{
    p->values[p->n] = (const char *)b;
    p->lengths[p->n] = (int)len;
    p->formats[p->n] = 1;
    p->n++;
}

static void close_conn(struct conn *c)
{
    if (c->cancel != NULL)
        PQfreeCancel(c->cancel);
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->cancel = NULL;
    c->pg = NULL;
    memset(c->prepared, 0, sizeof(c->prepared));
}

/* Connects c if it is not connected. On failure the reason (libpq's first
 * line: it may name host and user, never our data) goes to why when given,
 * else to the log. */
static cv_status connect_one(struct cv_store *st, struct conn *c, char *why, size_t why_len)
{
    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK)
        return CV_OK;
    close_conn(c);
    c->pg = PQconnectdb(st->conninfo);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        const char *msg = PQerrorMessage(c->pg);
        char line[256];
        snprintf(line, sizeof(line), "%s", msg != NULL ? msg : "");
        line[strcspn(line, "\n")] = '\0';
        if (why != NULL)
            snprintf(why, why_len, "%s", line);
        else
            cv_log(CV_LOG_WARN, "db_connect_failed", CV_LS("reason", line));
        PQfinish(c->pg);
        c->pg = NULL;
        return CV_ERR_DB_UNAVAILABLE;
    }
    c->cancel = PQgetCancel(c->pg);
    return CV_OK;
}

/* Returns connection index i to the pool: straight to the longest waiter
 * if there is one (first come, first served: no thread can overtake a
 * sleeping one, which bounds the wait), else onto the free stack. Caller
 * holds st->lock. */
static void hand_back_locked(struct cv_store *st, unsigned i)
{
    struct pool_waiter *w = st->waiters_head;
    if (w != NULL) {
        st->waiters_head = w->next;
        if (st->waiters_head == NULL)
            st->waiters_tail = NULL;
        w->conn_index = (int)i;
        pthread_cond_signal(&w->cond);
    } else {
        st->free_stack[st->free_count++] = i;
    }
}

static cv_status acquire(struct cv_store *st, struct conn **out)
{
    pthread_mutex_lock(&st->lock);
    int index = -1;
    if (st->free_count > 0 && st->waiters_head == NULL) {
        index = (int)st->free_stack[--st->free_count];
    } else {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 5;
        struct pool_waiter me = {.conn_index = -1, .next = NULL};
        pthread_cond_init(&me.cond, NULL);
        if (st->waiters_tail != NULL)
            st->waiters_tail->next = &me;
        else
            st->waiters_head = &me;
        st->waiters_tail = &me;
        while (me.conn_index < 0) {
            if (pthread_cond_timedwait(&me.cond, &st->lock, &deadline) == ETIMEDOUT &&
                me.conn_index < 0) {
                /* unlink ourselves: nobody handed us a connection */
                struct pool_waiter **pp = &st->waiters_head, *prev = NULL;
                while (*pp != NULL && *pp != &me) {
                    prev = *pp;
                    pp = &(*pp)->next;
                }
                if (*pp == &me) {
                    *pp = me.next;
                    if (st->waiters_tail == &me)
                        st->waiters_tail = prev;
                }
                break;
            }
        }
        pthread_cond_destroy(&me.cond);
        index = me.conn_index;
    }
    if (index >= 0)
        st->conns[index].busy = true;
    pthread_mutex_unlock(&st->lock);
    if (index < 0) {
        cv_log(CV_LOG_WARN, "db_pool_exhausted", CV_LI("pool_size", st->size));
        return CV_ERR_DB_UNAVAILABLE;
    }
    struct conn *c = &st->conns[index];
    cv_status s = connect_one(st, c, NULL, 0);
    if (s != CV_OK) {
        pthread_mutex_lock(&st->lock);
        c->busy = false;
        hand_back_locked(st, (unsigned)index);
        pthread_mutex_unlock(&st->lock);
        return s;
    }
    *out = c;
    return CV_OK;
}

static void release(struct cv_store *st, struct conn *c)
{
    /* A connection left inside a transaction or broken is not reused as is. */
    if (c->pg != NULL &&
        (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE))
        close_conn(c);
    pthread_mutex_lock(&st->lock);
    c->busy = false;
    hand_back_locked(st, (unsigned)(c - st->conns));
    pthread_mutex_unlock(&st->lock);
}

static cv_status map_error(const struct conn *c, const PGresult *res, const char *what)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    cv_status s = CV_ERR_DB;
    if (PQstatus(c->pg) != CONNECTION_OK || state == NULL)
        s = CV_ERR_DB_UNAVAILABLE;
    else if (strcmp(state, "23505") == 0)
        s = CV_ERR_DUPLICATE;
    else if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
             strncmp(state, "57P", 3) == 0 || strcmp(state, "57014") == 0 ||
             strcmp(state, "25006") == 0 || strncmp(state, "58", 2) == 0)
        /* connection, insufficient resources (disk full), shutdown, read-only, I/O */
        s = CV_ERR_DB_UNAVAILABLE;
    if (s != CV_ERR_DUPLICATE)
        cv_log(s == CV_ERR_DB_UNAVAILABLE ? CV_LOG_WARN : CV_LOG_ERROR, "db_error",
               CV_LS("statement", what), CV_LS("sqlstate", state != NULL ? state : "none"));
    return s;
}

/* Runs a prepared statement; *res is set only on success (caller PQclears). */
static cv_status run(struct conn *c, enum stmt_id id, const struct params *p, PGresult **res)
{
    const struct stmt *s = &stmts[id];
    *res = NULL;
    if (!c->prepared[id]) {
        PGresult *pr = PQprepare(c->pg, s->name, s->sql, s->nparams, NULL);
        if (PQresultStatus(pr) != PGRES_COMMAND_OK) {
            cv_status e = map_error(c, pr, s->name);
            PQclear(pr);
            return e;
        }
        PQclear(pr);
        c->prepared[id] = true;
    }
    PGresult *r = PQexecPrepared(c->pg, s->name, p != NULL ? p->n : 0, p != NULL ? p->values : NULL,
                                 p != NULL ? p->lengths : NULL, p != NULL ? p->formats : NULL, 0);
    ExecStatusType rs = PQresultStatus(r);
    if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
        cv_status e = map_error(c, r, s->name);
        PQclear(r);
        return e;
    }
    *res = r;
    return CV_OK;
}

/* Acquire, run, release: the common shape of one-statement operations. */
static cv_status run_once(struct cv_store *st, enum stmt_id id, const struct params *p,
                          PGresult **res)
{
    struct conn *c = NULL;
    CV_TRY(acquire(st, &c));
    cv_status s = run(c, id, p, res);
    release(st, c);
    return s;
}

/* Decodes a text-format bytea ("\x0a1b...") into a new heap buffer. */
static cv_status get_bytea(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    const char *v = PQgetvalue(r, row, col);
    size_t n = strlen(v);
    *out = NULL;
    *len = 0;
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) % 2 != 0)
        return CV_ERR_DB;
    size_t bytes = (n - 2) / 2;
    unsigned char *b = cv_xmalloc(bytes);
    for (size_t i = 0; i < bytes; i++) {
        int hi = cv_hex_value((unsigned char)v[2 + 2 * i]),
            lo = cv_hex_value((unsigned char)v[3 + 2 * i]);
        if (hi < 0 || lo < 0) {
            free(b);
            return CV_ERR_DB;
        }
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    *out = b;
    *len = bytes;
    return CV_OK;
}

static cv_status get_fixed_bytea(const PGresult *r, int row, int col, unsigned char *out,
                                 size_t want)
{
    unsigned char *b = NULL;
    size_t n = 0;
    CV_TRY(get_bytea(r, row, col, &b, &n));
    cv_status s = n == want ? CV_OK : CV_ERR_DB;
    if (s == CV_OK)
        memcpy(out, b, want);
    free(b);
    return s;
}

static void copy_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", PQgetvalue(r, row, col));
}

static int64_t get_int(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

cv_status cv_store_open(const char *conninfo, unsigned pool_size, struct cv_store **out, char *why,
                        size_t why_len)
{
    struct cv_store *st = cv_xcalloc(1, sizeof(*st));
    st->conninfo = cv_xstrdup(conninfo);
    st->size = pool_size == 0 ? 1 : pool_size;
    st->conns = cv_xcalloc(st->size, sizeof(*st->conns));
    st->free_stack = cv_xcalloc(st->size, sizeof(*st->free_stack));
    for (unsigned i = 0; i < st->size; i++)
        st->free_stack[i] = st->size - 1 - i;
    st->free_count = st->size;
    pthread_mutex_init(&st->lock, NULL);
    cv_status s = connect_one(st, &st->conns[0], why, why_len);
    if (s != CV_OK) {
        cv_store_close(st);
        return s;
    }
    *out = st;
    return CV_OK;
}

cv_status cv_store_start_batching(struct cv_store *st, unsigned writers)
{
    st->batcher = cv_batcher_start(st, writers);
    st->reader = cv_batcher_start(st, writers);
    return st->batcher != NULL && st->reader != NULL ? CV_OK : CV_ERR_INTERNAL;
}

void cv_store_close(struct cv_store *st)
{
    if (st == NULL)
        return;
    cv_batcher_stop(st->batcher); /* queued writes finish before connections close */
    cv_batcher_stop(st->reader);
    for (unsigned i = 0; i < st->size; i++)
        close_conn(&st->conns[i]);
    cv_wipe(st->conninfo, strlen(st->conninfo));
    free(st->conninfo);
    free(st->conns);
    free(st->free_stack);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

cv_status cv_store_ping(struct cv_store *st)
{
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_PING, NULL, &r));
    PQclear(r);
    return CV_OK;
}

void cv_store_cancel_busy(struct cv_store *st)
{
    char err[256];
    pthread_mutex_lock(&st->lock);
    for (unsigned i = 0; i < st->size; i++) {
        if (st->conns[i].busy && st->conns[i].cancel != NULL &&
            PQcancel(st->conns[i].cancel, err, sizeof(err)) == 1)
            cv_log(CV_LOG_WARN, "db_query_cancelled", CV_LS("reason", "shutdown"));
    }
    pthread_mutex_unlock(&st->lock);
}

void cv_store_pool_usage(struct cv_store *st, unsigned *in_use, unsigned *size)
{
    pthread_mutex_lock(&st->lock);
    *in_use = st->size - st->free_count;
    *size = st->size;
    pthread_mutex_unlock(&st->lock);
}

cv_status cv_store_check_durability(struct cv_store *st, bool *fsync_on, bool *sync_commit_on)
{
    struct conn *c = NULL;
    CV_TRY(acquire(st, &c));
    cv_status s = CV_ERR_DB_UNAVAILABLE;
    /* Fixed statements with no parameters: nothing to bind. */
    PGresult *r = PQexec(c->pg, "SELECT current_setting('fsync'), "
                                "current_setting('synchronous_commit')");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *fsync_on = strcmp(PQgetvalue(r, 0, 0), "on") == 0;
        *sync_commit_on = strcmp(PQgetvalue(r, 0, 1), "off") != 0;
        s = CV_OK;
    } else {
        s = map_error(c, r, "check_durability");
    }
    PQclear(r);
    release(st, c);
    return s;
}

cv_status cv_store_schema_version(struct cv_store *st, int *version)
{
    struct conn *c = NULL;
    CV_TRY(acquire(st, &c));
    PGresult *r = NULL;
    cv_status s = CV_OK;
    /* Ask the catalog first so a fresh database is "version 0", not an error. */
    PGresult *t = PQexec(c->pg, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    if (PQresultStatus(t) != PGRES_TUPLES_OK) {
        s = map_error(c, t, "schema_version");
    } else if (strcmp(PQgetvalue(t, 0, 0), "t") != 0) {
        *version = 0;
    } else if ((s = run(c, S_SCHEMA_VERSION, NULL, &r)) == CV_OK) {
        *version = (int)get_int(r, 0, 0);
    }
    PQclear(t);
    PQclear(r);
    release(st, c);
    return s;
}

cv_status cv_store_get_meta(struct cv_store *st, unsigned char kcv[CV_KCV_BYTES],
                            unsigned char **fp_wrapped, size_t *fp_wrapped_len)
{
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_GET_META, NULL, &r));
    cv_status s = CV_ERR_NOT_FOUND;
    if (PQntuples(r) == 1) {
        s = get_fixed_bytea(r, 0, 0, kcv, CV_KCV_BYTES);
        if (s == CV_OK)
            s = get_bytea(r, 0, 1, fp_wrapped, fp_wrapped_len);
    }
    PQclear(r);
    return s;
}

cv_status cv_store_init_meta(struct cv_store *st, const char *provider,
                             const unsigned char kcv[CV_KCV_BYTES], const unsigned char *fp_wrapped,
                             size_t fp_wrapped_len)
{
    struct params p = {.n = 0};
    p_text(&p, provider);
    p_bytes(&p, kcv, CV_KCV_BYTES);
    p_bytes(&p, fp_wrapped, fp_wrapped_len);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_INIT_META, &p, &r));
    cv_status s = strcmp(PQcmdTuples(r), "1") == 0 ? CV_OK : CV_ERR_DUPLICATE;
    PQclear(r);
    return s;
}

cv_status cv_store_insert_dek(struct cv_store *st, const unsigned char *wrapped, size_t wrapped_len,
                              int64_t max_uses, const unsigned char kcv[CV_KCV_BYTES],
                              int64_t *dek_id)
{
    struct params p = {.n = 0};
    p_bytes(&p, wrapped, wrapped_len);
    p_int(&p, max_uses);
    p_bytes(&p, kcv, CV_KCV_BYTES);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_INSERT_DEK, &p, &r));
    cv_status s = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (s == CV_OK)
        *dek_id = get_int(r, 0, 0);
    PQclear(r);
    return s;
}

static cv_status dek_from_result(const PGresult *r, struct cv_dek_row *out)
{
    memset(out, 0, sizeof(*out));
    if (PQntuples(r) != 1)
        return CV_ERR_NOT_FOUND;
    out->dek_id = get_int(r, 0, 0);
    copy_text(out->state, sizeof(out->state), r, 0, 2);
    out->use_count = get_int(r, 0, 3);
    out->max_uses = get_int(r, 0, 4);
    out->age_s = get_int(r, 0, 5);
    if (PQgetisnull(r, 0, 1))
        return CV_OK; /* destroyed: no key material left */
    return get_bytea(r, 0, 1, &out->wrapped, &out->wrapped_len);
}

cv_status cv_store_get_dek(struct cv_store *st, int64_t dek_id, struct cv_dek_row *out)
{
    struct params p = {.n = 0};
    p_int(&p, dek_id);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_GET_DEK, &p, &r));
    cv_status s = dek_from_result(r, out);
    PQclear(r);
    return s;
}

cv_status cv_store_find_active_dek(struct cv_store *st, int64_t max_age_s, struct cv_dek_row *out)
{
    struct params p = {.n = 0};
    p_int(&p, max_age_s);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_FIND_ACTIVE_DEK, &p, &r));
    cv_status s = dek_from_result(r, out);
    PQclear(r);
    return s;
}

cv_status cv_store_reserve_dek_uses(struct cv_store *st, int64_t dek_id, int64_t block)
{
    struct params p = {.n = 0};
    p_int(&p, dek_id);
    p_int(&p, block);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_RESERVE_DEK, &p, &r));
    cv_status s = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    PQclear(r);
    if (s == CV_ERR_NOT_FOUND && cv_store_retire_dek(st, dek_id) != CV_OK)
        cv_log(CV_LOG_WARN, "dek_retire_failed", CV_LI("dek_id", dek_id));
    return s;
}

cv_status cv_store_retire_dek(struct cv_store *st, int64_t dek_id)
{
    struct params p = {.n = 0};
    p_int(&p, dek_id);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_RETIRE_DEK, &p, &r));
    PQclear(r);
    return CV_OK;
}

void cv_dek_row_cleanup(struct cv_dek_row *row)
{
    free(row->wrapped);
    memset(row, 0, sizeof(*row));
}

cv_status cv_store_insert_merchant(struct cv_store *st, const char *merchant_id, const char *name)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_text(&p, name);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_INSERT_MERCHANT, &p, &r));
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_insert_api_key(struct cv_store *st, const char *merchant_id, const char *prefix,
                                  const unsigned char hash[32], const char *scopes)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_text(&p, prefix);
    p_bytes(&p, hash, 32);
    p_text(&p, scopes);
    PGresult *r = NULL;
    cv_status s = run_once(st, S_INSERT_API_KEY, &p, &r);
    if (s == CV_ERR_DB) {
        /* a foreign-key violation: the merchant does not exist */
        s = CV_ERR_NOT_FOUND;
    }
    PQclear(r);
    return s;
}

cv_status cv_store_revoke_api_key(struct cv_store *st, const char *prefix,
                                  char merchant_id[CV_MERCHANT_ID_LEN + 1])
{
    struct params p = {.n = 0};
    p_text(&p, prefix);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_REVOKE_API_KEY, &p, &r));
    cv_status s = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (s == CV_OK)
        copy_text(merchant_id, CV_MERCHANT_ID_LEN + 1, r, 0, 0);
    PQclear(r);
    return s;
}

cv_status cv_store_scan_api_keys(struct cv_store *st, int64_t since_us, int64_t *max_changed_us,
                                 void (*fn)(void *ctx, const char *merchant_id, const char *prefix,
                                            const unsigned char hash[32], const char *scopes,
                                            bool revoked),
                                 void *ctx)
{
    struct params p = {.n = 0};
    p_int(&p, since_us);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_SCAN_API_KEYS, &p, &r));
    cv_status s = CV_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned char hash[32];
        if ((s = get_fixed_bytea(r, i, 2, hash, sizeof(hash))) != CV_OK)
            break;
        fn(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), hash, PQgetvalue(r, i, 3),
           strcmp(PQgetvalue(r, i, 4), "t") == 0);
        int64_t changed = get_int(r, i, 5);
        if (changed > *max_changed_us)
            *max_changed_us = changed;
    }
    PQclear(r);
    return s;
}

cv_status cv_store_insert_token(struct cv_store *st, const struct cv_token_row *row,
                                const unsigned char *idem_key_hash, const char *response_body)
{
    if (st->batcher != NULL)
        return cv_batcher_insert_token(st->batcher, row, idem_key_hash, response_body);
    return cv_store_insert_token_direct(st, row, idem_key_hash, response_body);
}

cv_status cv_store_insert_token_direct(struct cv_store *st, const struct cv_token_row *row,
                                       const unsigned char *idem_key_hash,
                                       const char *response_body)
{
    struct params p = {.n = 0};
    p_text(&p, row->merchant_id);
    p_text(&p, row->token);
    p_int(&p, row->format_version);
    p_int(&p, row->dek_id);
    p_bytes(&p, row->nonce, sizeof(row->nonce));
    p_bytes(&p, row->ciphertext, row->ciphertext_len);
    p_text(&p, row->brand);
    p_text(&p, row->bin);
    p_text(&p, row->last4);
    p_text(&p, row->fingerprint);
    p_text(&p, row->created_at);
    if (idem_key_hash != NULL) {
        p_bytes(&p, idem_key_hash, 32);
        p_text(&p, response_body);
    }
    PGresult *r = NULL;
    /* Autocommit: the statement's own transaction commits (synchronous_commit
     * on, checked at startup) before PQexecPrepared returns, so the caller's
     * 201 always follows a durable commit. */
    CV_TRY(run_once(st, idem_key_hash != NULL ? S_INSERT_TOKEN_IDEM : S_INSERT_TOKEN, &p, &r));
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_idem_claim(struct cv_store *st, const char *merchant_id,
                              const unsigned char key_hash[32],
                              const unsigned char request_hash[32], int64_t ttl_s, int64_t stale_s,
                              bool *claimed, struct cv_idem_record *existing)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_bytes(&p, key_hash, 32);
    p_bytes(&p, request_hash, 32);
    p_int(&p, ttl_s);
    p_int(&p, stale_s);
    PGresult *r = NULL;
    memset(existing, 0, sizeof(*existing));
    CV_TRY(run_once(st, S_IDEM_CLAIM, &p, &r));
    *claimed = PQntuples(r) == 1;
    PQclear(r);
    if (*claimed)
        return CV_OK;
    struct params g = {.n = 0};
    p_text(&g, merchant_id);
    p_bytes(&g, key_hash, 32);
    CV_TRY(run_once(st, S_IDEM_GET, &g, &r));
    cv_status s = CV_OK;
    if (PQntuples(r) != 1) {
        s = CV_ERR_DUPLICATE; /* released between our two statements: caller retries */
    } else {
        existing->done = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        s = get_fixed_bytea(r, 0, 1, existing->request_hash, 32);
        if (s == CV_OK && existing->done) {
            existing->status_code = (int)get_int(r, 0, 2);
            existing->response_body = cv_xstrdup(PQgetvalue(r, 0, 3));
        }
    }
    PQclear(r);
    return s;
}

static cv_status run_simple(struct cv_store *st, enum stmt_id id, const struct params *p)
{
    PGresult *r = NULL;
    CV_TRY(run_once(st, id, p, &r));
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_idem_complete(struct cv_store *st, const char *merchant_id,
                                 const unsigned char key_hash[32], int status_code,
                                 const char *response_body)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_bytes(&p, key_hash, 32);
    p_int(&p, status_code);
    p_text(&p, response_body);
    return run_simple(st, S_IDEM_COMPLETE, &p);
}

cv_status cv_store_idem_release(struct cv_store *st, const char *merchant_id,
                                const unsigned char key_hash[32])
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_bytes(&p, key_hash, 32);
    return run_simple(st, S_IDEM_RELEASE, &p);
}

cv_status cv_store_idem_purge(struct cv_store *st, int64_t *deleted)
{
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_IDEM_PURGE, NULL, &r));
    *deleted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return CV_OK;
}

void cv_idem_record_cleanup(struct cv_idem_record *rec)
{
    free(rec->response_body);
    memset(rec, 0, sizeof(*rec));
}

static cv_status token_from_result(const PGresult *r, int i, struct cv_token_row *out)
{
    memset(out, 0, sizeof(*out));
    copy_text(out->merchant_id, sizeof(out->merchant_id), r, i, 0);
    copy_text(out->token, sizeof(out->token), r, i, 1);
    out->format_version = (int)get_int(r, i, 2);
    out->dek_id = get_int(r, i, 3);
    /* a wrong-length nonce is reported as an integrity failure by the opener */
    if (get_fixed_bytea(r, i, 4, out->nonce, sizeof(out->nonce)) != CV_OK)
        memset(out->nonce, 0, sizeof(out->nonce));
    CV_TRY(get_bytea(r, i, 5, &out->ciphertext, &out->ciphertext_len));
    copy_text(out->brand, sizeof(out->brand), r, i, 6);
    copy_text(out->bin, sizeof(out->bin), r, i, 7);
    copy_text(out->last4, sizeof(out->last4), r, i, 8);
    copy_text(out->fingerprint, sizeof(out->fingerprint), r, i, 9);
    copy_text(out->created_at, sizeof(out->created_at), r, i, 10);
    out->dek_destroyed = strcmp(PQgetvalue(r, i, 11), "t") == 0;
    return CV_OK;
}

cv_status cv_store_get_token(struct cv_store *st, const char *merchant_id, const char *token,
                             struct cv_token_row *out)
{
    if (st->reader != NULL)
        return cv_batcher_get_token(st->reader, merchant_id, token, out);
    return cv_store_get_token_direct(st, merchant_id, token, out);
}

cv_status cv_store_get_tokens_batch(struct cv_store *st, const char *merchants_array,
                                    const char *tokens_array, struct cv_token_row **outs,
                                    const char *const *merchant_ids, const char *const *tokens,
                                    cv_status *results, size_t n)
{
    struct params p = {.n = 0};
    p_text(&p, merchants_array);
    p_text(&p, tokens_array);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_GET_TOKENS_BATCH, &p, &r));
    for (size_t j = 0; j < n; j++)
        results[j] = CV_ERR_NOT_FOUND;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *m = PQgetvalue(r, i, 0), *t = PQgetvalue(r, i, 1);
        for (size_t j = 0; j < n; j++) {
            /* every request for this exact (merchant, token) gets its own copy */
            if (results[j] == CV_ERR_NOT_FOUND && strcmp(merchant_ids[j], m) == 0 &&
                strcmp(tokens[j], t) == 0)
                results[j] = token_from_result(r, i, outs[j]);
        }
    }
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_get_token_direct(struct cv_store *st, const char *merchant_id, const char *token,
                                    struct cv_token_row *out)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_text(&p, token);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_GET_TOKEN, &p, &r));
    cv_status s = PQntuples(r) == 1 ? token_from_result(r, 0, out) : CV_ERR_NOT_FOUND;
    PQclear(r);
    return s;
}

cv_status cv_store_delete_token(struct cv_store *st, const char *merchant_id, const char *token,
                                const struct cv_audit_event *ev)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_text(&p, token);
    p_text(&p, ev->actor);
    p_text(&p, ev->request_id);
    p_text(&p, ev->action);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_DELETE_TOKEN, &p, &r));
    cv_status s = get_int(r, 0, 0) > 0 ? CV_OK : CV_ERR_NOT_FOUND;
    PQclear(r);
    return s;
}

cv_status cv_store_find_by_fingerprint(struct cv_store *st, const char *merchant_id,
                                       const char *fingerprint, struct cv_token_row *rows,
                                       size_t max, size_t *count)
{
    struct params p = {.n = 0};
    p_text(&p, merchant_id);
    p_text(&p, fingerprint);
    p_int(&p, (int64_t)max);
    PGresult *r = NULL;
    *count = 0;
    CV_TRY(run_once(st, S_FIND_BY_FP, &p, &r));
    cv_status s = CV_OK;
    for (int i = 0; i < PQntuples(r) && (size_t)i < max && s == CV_OK; i++) {
        s = token_from_result(r, i, &rows[i]);
        if (s == CV_OK)
            (*count)++;
    }
    PQclear(r);
    return s;
}

void cv_token_row_cleanup(struct cv_token_row *row)
{
    free(row->ciphertext);
    memset(row, 0, sizeof(*row));
}

cv_status cv_store_audit_append(struct cv_store *st, const struct cv_audit_event *ev)
{
    if (st->batcher != NULL)
        return cv_batcher_audit_append(st->batcher, ev);
    return cv_store_audit_append_direct(st, ev);
}

cv_status cv_store_audit_append_direct(struct cv_store *st, const struct cv_audit_event *ev)
{
    struct params p = {.n = 0};
    p_text(&p, ev->actor);
    p_text(&p, ev->merchant_id);
    p_text(&p, ev->token);
    p_text(&p, ev->request_id);
    p_text(&p, ev->action);
    p_text(&p, ev->outcome);
    p_text(&p, ev->detail);
    PGresult *r = NULL;
    CV_TRY(run_once(st, S_AUDIT_APPEND, &p, &r));
    PQclear(r);
    return CV_OK;
}

/* Shared with the other store_*.c files through store_pg_internal.h. */

cv_status cv_pg_acquire(struct cv_store *st, struct cv_pg_conn **out)
{
    struct conn *c = NULL;
    CV_TRY(acquire(st, &c));
    *out = (struct cv_pg_conn *)c;
    return CV_OK;
}

void cv_pg_release(struct cv_store *st, struct cv_pg_conn *pc)
{
    release(st, &pc->c);
}

PGconn *cv_pg_handle(struct cv_pg_conn *pc)
{
    return pc->c.pg;
}

cv_status cv_pg_error(struct cv_pg_conn *pc, const PGresult *res, const char *what)
{
    return map_error(&pc->c, res, what);
}

cv_status cv_pg_get_bytea(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    return get_bytea(r, row, col, out, len);
}
