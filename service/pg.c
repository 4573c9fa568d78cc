/* pg.c: the PostgreSQL core. A fixed pool of connections with FIFO waiters,
 * statements prepared lazily on each connection, bounded parameter lists,
 * the one executor (cv_pg_run) and its pipelined twin (cv_pg_pipeline_run),
 * the SQLSTATE -> status mapping and bytea
 * decoding. It is the only file that calls libpq's executors. It never logs
 * a server message or a parameter value: errors are logged by SQLSTATE and
 * statement name only, because a server message can quote the values that
 * caused it. It knows no table: the SQL belongs to the store_*.c files. */
#include "pg.h"

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

/* A connection waits this long for a free pool slot before giving up. */
#define POOL_WAIT_S 5

struct cv_pg_conn {
    struct cv_pg_pool *pool;
    PGconn *pg;
    PGcancel *cancel; /* made by the owning thread; PQcancel may use it from another */
    bool busy;        /* checked out (guarded by the pool's lock) */
    /* statements prepared on this connection, by identity */
    const struct cv_pg_stmt **prepared;
    size_t n_prepared, cap_prepared;
    char last_sqlstate[6];
    /* Set by the notice receiver (on the thread running the statement,
     * inside libpq's call) when the server said it cancelled the wait for
     * the synchronous standby; cleared before each statement. */
    bool sync_wait_cancelled;
    /* the pool's generation when this session was opened (guarded by the
     * pool's lock) */
    unsigned generation;
};

/* A thread waiting for a connection; release hands one over directly. */
struct pool_waiter {
    pthread_cond_t cond;
    int conn_index; /* set by the releasing thread; -1 while waiting */
    struct pool_waiter *next;
};

struct cv_pg_pool {
    char *conninfo;
    unsigned size;
    struct cv_pg_conn *conns;
    unsigned *free_stack; /* indexes of idle connections */
    unsigned free_count;
    pthread_mutex_t lock;
    struct pool_waiter *waiters_head, *waiters_tail; /* FIFO */
    /* Set once serve has checked the durability settings: from then on every
     * new session (a reconnect, perhaps to a new primary after a failover)
     * is checked again before it serves a request. */
    bool require_durable;
    /* Raised when a session is found broken: the server went away (a
     * restart, a failover), so every idle session opened before is most
     * likely dead too. Each is closed at its next checkout instead of
     * failing one more request. */
    unsigned generation;
};

/* Parameter lists */

static void params_setup(struct cv_pg_params *p, int cap)
{
    memset(p, 0, offsetof(struct cv_pg_params, inline_values));
    p->cap = cap;
    if (cap <= CV_PG_INLINE_PARAMS) {
        p->values = p->inline_values;
        p->lengths = p->inline_lengths;
        p->formats = p->inline_formats;
        p->nums = p->inline_nums;
    } else {
        p->values = cv_xcalloc((size_t)cap, sizeof(*p->values));
        p->lengths = cv_xcalloc((size_t)cap, sizeof(*p->lengths));
        p->formats = cv_xcalloc((size_t)cap, sizeof(*p->formats));
        p->nums = cv_xcalloc((size_t)cap, sizeof(*p->nums));
    }
}

void cv_pg_params_init(struct cv_pg_params *p)
{
    params_setup(p, CV_PG_INLINE_PARAMS);
}

void cv_pg_params_init_cap(struct cv_pg_params *p, int cap)
{
    params_setup(p, cap < 0 ? 0 : cap);
}

void cv_pg_params_cleanup(struct cv_pg_params *p)
{
    if (p == NULL)
        return;
    if (p->values != p->inline_values) {
        free(p->values);
        free(p->lengths);
        free(p->formats);
        free(p->nums);
    }
    params_setup(p, 0);
}

void cv_pg_params_reset(struct cv_pg_params *p)
{
    p->n = 0;
    p->failed = false;
}

/* The next free slot, or -1 (and the list marked failed) when it is full. */
static int next_slot(struct cv_pg_params *p)
{
    if (p->failed || p->n >= p->cap) {
        p->failed = true;
        return -1;
    }
    return p->n++;
}

void cv_pg_param_text(struct cv_pg_params *p, const char *s)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void cv_pg_param_int(struct cv_pg_params *p, int64_t v)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    snprintf(p->nums[i], sizeof(p->nums[i]), "%" PRId64, v);
    p->values[i] = p->nums[i];
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void cv_pg_param_bytes(struct cv_pg_params *p, const void *b, size_t len)
{
    int i = next_slot(p);
    if (i < 0)
        return;
    if (len > INT32_MAX) {
        p->failed = true;
        return;
    }
    p->values[i] = b;
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

/* Connections and the pool */

static void close_conn(struct cv_pg_conn *c)
{
    if (c->cancel != NULL)
        PQfreeCancel(c->cancel);
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->cancel = NULL;
    c->pg = NULL;
    c->n_prepared = 0; /* statements die with their session */
}

/* The server's word that it stopped waiting for the synchronous standby
 * after committing locally. PostgreSQL 15 (syncrep.c, SyncRepWaitForLSN)
 * sends it as a WARNING with no errcode of its own, so SQLSTATE 01000
 * (ERRCODE_WARNING), when the wait is cancelled (pg_cancel_backend, a
 * client's cancel request), and as 57P01 (ERRCODE_ADMIN_SHUTDOWN) before it
 * terminates the session (that one never reaches the client today: the
 * server stops sending first; a lost connection is unavailable anyway).
 * Recognised by fields the server never translates: the non-localised
 * severity and the SQLSTATE, and then the reporting source file or
 * function; the English text is a fallback for a server that sends no
 * source location. Nothing of the notice is logged here: it quotes no
 * value, but it is not ours to repeat. */
bool cv_pg_is_sync_wait_cancelled(const PGresult *notice)
{
    const char *sev = PQresultErrorField(notice, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(notice, PG_DIAG_SQLSTATE);
    const char *file = PQresultErrorField(notice, PG_DIAG_SOURCE_FILE);
    const char *func = PQresultErrorField(notice, PG_DIAG_SOURCE_FUNCTION);
    const char *primary = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
    if (sev == NULL || strcmp(sev, "WARNING") != 0 || state == NULL ||
        (strcmp(state, "01000") != 0 && strcmp(state, "57P01") != 0))
        return false;
    if ((file != NULL && strcmp(file, "syncrep.c") == 0) ||
        (func != NULL && strncmp(func, "SyncRep", 7) == 0))
        return true;
    return primary != NULL &&
           (strncmp(primary, "canceling wait for synchronous replication", 42) == 0 ||
            strncmp(primary, "canceling the wait for synchronous replication", 46) == 0);
}

/* libpq's notice receiver on every pooled connection: notes a cancelled
 * synchronous-replication wait; every other notice is dropped (libpq's
 * default would print it, server text and all, to stderr). */
static void on_notice(void *arg, const PGresult *notice)
{
    struct cv_pg_conn *c = arg;
    if (cv_pg_is_sync_wait_cancelled(notice))
        c->sync_wait_cancelled = true;
}

cv_status cv_pg_durable_settings_ok(const char *synchronous_commit, const char *standby_names,
                                    char *why, size_t why_len)
{
    if (strcmp(synchronous_commit, "off") == 0) {
        snprintf(why, why_len,
                 "the database has synchronous_commit=off: an acknowledged token could be lost in "
                 "a crash");
        return CV_ERR_CONFIG;
    }
    /* With a synchronous standby, only on and remote_apply make COMMIT wait
     * until the standby has the transaction: local and remote_write would
     * acknowledge a token a failover can lose. The setting's text is a
     * list; blank or "" names no standby. */
    bool standby_named = standby_names[strspn(standby_names, " \t\"")] != '\0';
    if (standby_named && strcmp(synchronous_commit, "on") != 0 &&
        strcmp(synchronous_commit, "remote_apply") != 0) {
        snprintf(why, why_len,
                 "the database names a synchronous standby (synchronous_standby_names) but has "
                 "synchronous_commit=%.15s: an acknowledged token could be lost in a failover; "
                 "set synchronous_commit to on or remote_apply",
                 synchronous_commit);
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

/* The new session's own settings, as the server will apply them to its
 * commits (a failover may have put another server behind the same URI). */
static cv_status check_session_durable(PGconn *pg, char *why, size_t why_len)
{
    PGresult *r = PQexec(pg, "SELECT current_setting('synchronous_commit'), "
                             "current_setting('synchronous_standby_names')");
    cv_status st = CV_ERR_DB_UNAVAILABLE;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        st = cv_pg_durable_settings_ok(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), why, why_len);
    else
        snprintf(why, why_len, "cannot read synchronous_commit and synchronous_standby_names");
    PQclear(r);
    return st;
}

cv_status cv_pg_pool_require_durable(struct cv_pg_pool *pool, char *why, size_t why_len)
{
    struct cv_pg_conn *c = NULL;
    snprintf(why, why_len, "cannot reach the database");
    CV_TRY(cv_pg_acquire(pool, &c));
    cv_status st = check_session_durable(c->pg, why, why_len);
    cv_pg_release(c);
    if (st == CV_OK) {
        pthread_mutex_lock(&pool->lock);
        pool->require_durable = true;
        pthread_mutex_unlock(&pool->lock);
    }
    return st;
}

/* Connects c if it is not connected. On failure the reason (libpq's first
 * line: it may name host and user, never our data) goes to why when given,
 * else to the log. */
static cv_status connect_one(struct cv_pg_conn *c, char *why, size_t why_len)
{
    if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK)
        return CV_OK;
    close_conn(c);
    c->pg = PQconnectdb(c->pool->conninfo);
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
    pthread_mutex_lock(&c->pool->lock);
    bool require_durable = c->pool->require_durable;
    pthread_mutex_unlock(&c->pool->lock);
    char reason[256];
    if (require_durable && check_session_durable(c->pg, reason, sizeof(reason)) != CV_OK) {
        /* No request is served on it: each new connection tries again, so
         * the service recovers without a restart once the settings are
         * fixed. */
        cv_log(CV_LOG_ERROR, "db_settings_refused", CV_LS("reason", reason));
        if (why != NULL)
            snprintf(why, why_len, "%s", reason);
        PQfinish(c->pg);
        c->pg = NULL;
        return CV_ERR_DB_UNAVAILABLE;
    }
    c->cancel = PQgetCancel(c->pg);
    PQsetNoticeReceiver(c->pg, on_notice, c);
    return CV_OK;
}

cv_status cv_pg_pool_open(const char *conninfo, unsigned size, struct cv_pg_pool **out, char *why,
                          size_t why_len)
{
    struct cv_pg_pool *pool = cv_xcalloc(1, sizeof(*pool));
    pool->conninfo = cv_xstrdup(conninfo);
    pool->size = size == 0 ? 1 : size;
    pool->conns = cv_xcalloc(pool->size, sizeof(*pool->conns));
    pool->free_stack = cv_xcalloc(pool->size, sizeof(*pool->free_stack));
    for (unsigned i = 0; i < pool->size; i++) {
        pool->conns[i].pool = pool;
        pool->free_stack[i] = pool->size - 1 - i;
    }
    pool->free_count = pool->size;
    pthread_mutex_init(&pool->lock, NULL);
    cv_status st = connect_one(&pool->conns[0], why, why_len);
    if (st != CV_OK) {
        cv_pg_pool_close(pool);
        return st;
    }
    *out = pool;
    return CV_OK;
}

void cv_pg_pool_close(struct cv_pg_pool *pool)
{
    if (pool == NULL)
        return;
    for (unsigned i = 0; i < pool->size; i++) {
        close_conn(&pool->conns[i]);
        free(pool->conns[i].prepared);
    }
    /* the connection string may carry a password */
    cv_wipe(pool->conninfo, strlen(pool->conninfo));
    free(pool->conninfo);
    free(pool->conns);
    free(pool->free_stack);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

/* Returns connection index i to the pool: straight to the longest waiter
 * if there is one (first come, first served: no thread can overtake a
 * sleeping one, which bounds the wait), else onto the free stack. Caller
 * holds pool->lock. */
static void hand_back_locked(struct cv_pg_pool *pool, unsigned i)
{
    struct pool_waiter *w = pool->waiters_head;
    pool->conns[i].busy = false;
    if (w != NULL) {
        pool->waiters_head = w->next;
        if (pool->waiters_head == NULL)
            pool->waiters_tail = NULL;
        w->conn_index = (int)i;
        pool->conns[i].busy = true;
        pthread_cond_signal(&w->cond);
    } else {
        pool->free_stack[pool->free_count++] = i;
    }
}

/* Caller holds pool->lock. Waits in line for a connection; -1 on timeout. */
static int wait_in_line_locked(struct cv_pg_pool *pool)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += POOL_WAIT_S;
    struct pool_waiter me = {.conn_index = -1, .next = NULL};
    pthread_cond_init(&me.cond, NULL);
    /* `me` lives on this stack only while it is queued: every path out of
     * this function unlinks it first (cppcheck cannot see that). */
    if (pool->waiters_tail != NULL)
        pool->waiters_tail->next = &me;
    else
        /* cppcheck-suppress autoVariables */
        pool->waiters_head = &me;
    /* cppcheck-suppress autoVariables */
    pool->waiters_tail = &me;
    while (me.conn_index < 0) {
        if (pthread_cond_timedwait(&me.cond, &pool->lock, &deadline) == ETIMEDOUT &&
            me.conn_index < 0) {
            /* unlink ourselves: nobody handed us a connection */
            struct pool_waiter **pp = &pool->waiters_head, *prev = NULL;
            while (*pp != NULL && *pp != &me) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp == &me) {
                *pp = me.next;
                if (pool->waiters_tail == &me)
                    pool->waiters_tail = prev;
            }
            break;
        }
    }
    pthread_cond_destroy(&me.cond);
    return me.conn_index;
}

cv_status cv_pg_acquire(struct cv_pg_pool *pool, struct cv_pg_conn **out)
{
    pthread_mutex_lock(&pool->lock);
    int index = -1;
    if (pool->free_count > 0 && pool->waiters_head == NULL) {
        index = (int)pool->free_stack[--pool->free_count];
        pool->conns[index].busy = true;
    } else {
        index = wait_in_line_locked(pool); /* handed over already marked busy */
    }
    pthread_mutex_unlock(&pool->lock);
    if (index < 0) {
        cv_log(CV_LOG_WARN, "db_pool_exhausted", CV_LI("pool_size", pool->size));
        return CV_ERR_DB_UNAVAILABLE;
    }
    struct cv_pg_conn *c = &pool->conns[index];
    pthread_mutex_lock(&pool->lock);
    bool stale = c->generation != pool->generation;
    unsigned generation = pool->generation;
    pthread_mutex_unlock(&pool->lock);
    if (stale && c->pg != NULL)
        close_conn(c); /* opened before a broken session was seen */
    bool fresh = c->pg == NULL;
    cv_status st = connect_one(c, NULL, 0);
    if (st == CV_OK && fresh) {
        pthread_mutex_lock(&pool->lock);
        c->generation = generation;
        pthread_mutex_unlock(&pool->lock);
    }
    if (st != CV_OK) {
        pthread_mutex_lock(&pool->lock);
        hand_back_locked(pool, (unsigned)index);
        pthread_mutex_unlock(&pool->lock);
        return st;
    }
    *out = c;
    return CV_OK;
}

void cv_pg_release(struct cv_pg_conn *c)
{
    if (c == NULL)
        return;
    struct cv_pg_pool *pool = c->pool;
    /* A connection left inside a transaction or broken is not reused as is. */
    bool broken = c->pg != NULL && PQstatus(c->pg) != CONNECTION_OK;
    /* ... or still in pipeline mode (a pipeline whose sync was never read:
     * what the server still has to answer is unknown) */
    if (c->pg != NULL && (broken || PQtransactionStatus(c->pg) != PQTRANS_IDLE ||
                          PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF))
        close_conn(c);
    pthread_mutex_lock(&pool->lock);
    if (broken && c->generation == pool->generation)
        pool->generation++; /* the others of its time go at their next checkout */
    hand_back_locked(pool, (unsigned)(c - pool->conns));
    pthread_mutex_unlock(&pool->lock);
}

/* A COMMIT is cancelled too, on purpose. Under synchronous replication a
 * COMMIT whose standby is gone waits forever (statement_timeout does not
 * end it; only a cancel or the end of the session does), so sparing it
 * would hang shutdown, and closing the session would not undo the local
 * commit either. What keeps the answer honest is cv_pg_run: a COMMIT whose
 * wait was cancelled is CV_ERR_COMMIT_UNCONFIRMED (503), never a success. */
void cv_pg_cancel_busy(struct cv_pg_pool *pool)
{
    char err[256];
    pthread_mutex_lock(&pool->lock);
    for (unsigned i = 0; i < pool->size; i++) {
        if (pool->conns[i].busy && pool->conns[i].cancel != NULL &&
            PQcancel(pool->conns[i].cancel, err, sizeof(err)) == 1)
            cv_log(CV_LOG_WARN, "db_query_cancelled", CV_LS("reason", "shutdown"));
    }
    pthread_mutex_unlock(&pool->lock);
}

void cv_pg_pool_usage(struct cv_pg_pool *pool, unsigned *in_use, unsigned *size)
{
    pthread_mutex_lock(&pool->lock);
    *in_use = pool->size - pool->free_count;
    *size = pool->size;
    pthread_mutex_unlock(&pool->lock);
}

/* Errors */

cv_status cv_pg_status_for_sqlstate(const char *state)
{
    if (state == NULL)
        return CV_ERR_DB_UNAVAILABLE;
    if (strcmp(state, "23505") == 0)
        return CV_ERR_DUPLICATE;
    /* connection, insufficient resources (disk full), shutdown, cancel,
     * read-only transaction, I/O */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
        strncmp(state, "57P", 3) == 0 || strcmp(state, "57014") == 0 ||
        strcmp(state, "25006") == 0 || strncmp(state, "58", 2) == 0)
        return CV_ERR_DB_UNAVAILABLE;
    return CV_ERR_DB;
}

cv_status cv_pg_error(struct cv_pg_conn *c, const PGresult *res, const char *what, bool quiet)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    cv_status st = cv_pg_status_for_sqlstate(state);
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK)
        st = CV_ERR_DB_UNAVAILABLE;
    snprintf(c->last_sqlstate, sizeof(c->last_sqlstate), "%s", state != NULL ? state : "");
    if (st == CV_ERR_DUPLICATE)
        return st; /* an expected outcome its caller handles */
    cv_log(quiet                         ? CV_LOG_DEBUG
           : st == CV_ERR_DB_UNAVAILABLE ? CV_LOG_WARN
                                         : CV_LOG_ERROR,
           "db_error", CV_LS("statement", what), CV_LS("sqlstate", state != NULL ? state : "none"));
    return st;
}

const char *cv_pg_last_sqlstate(const struct cv_pg_conn *c)
{
    return c->last_sqlstate;
}

/* The executor */

static bool is_prepared(const struct cv_pg_conn *c, const struct cv_pg_stmt *s)
{
    for (size_t i = 0; i < c->n_prepared; i++)
        if (c->prepared[i] == s)
            return true;
    return false;
}

static void mark_prepared(struct cv_pg_conn *c, const struct cv_pg_stmt *s)
{
    if (c->n_prepared == c->cap_prepared) {
        size_t cap = c->cap_prepared == 0 ? 32 : c->cap_prepared * 2;
        const struct cv_pg_stmt **p = cv_xcalloc(cap, sizeof(const struct cv_pg_stmt *));
        if (c->n_prepared > 0)
            memcpy(p, c->prepared, c->n_prepared * sizeof(const struct cv_pg_stmt *));
        free(c->prepared);
        c->prepared = p;
        c->cap_prepared = cap;
    }
    c->prepared[c->n_prepared++] = s;
}

static cv_status prepare(struct cv_pg_conn *c, const struct cv_pg_stmt *s)
{
    if (is_prepared(c, s))
        return CV_OK;
    PGresult *pr = PQprepare(c->pg, s->name, s->sql, s->nparams, NULL);
    cv_status st = CV_OK;
    if (PQresultStatus(pr) != PGRES_COMMAND_OK)
        st = cv_pg_error(c, pr, s->name, s->quiet);
    else
        mark_prepared(c, s);
    PQclear(pr);
    return st;
}

/* False (logged) when p does not fit s: our bug, not the database's, so a
 * half-built list is never sent. */
static bool params_valid(const struct cv_pg_stmt *s, const struct cv_pg_params *p)
{
    int n = p != NULL ? p->n : 0;
    if ((p != NULL && p->failed) || n != s->nparams || (s->mode == CV_PG_SCRIPT && n != 0)) {
        cv_log(CV_LOG_ERROR, "db_params_invalid", CV_LS("statement", s->name), CV_LI("params", n),
               CV_LI("expected", s->nparams));
        return false;
    }
    return true;
}

/* The status of a COMMIT that failed with status st, when the session is
 * gone: the commit may or may not have taken (the primary crashed or was
 * demoted), and may or may not be on the standby. Not a failure either. */
static cv_status commit_lost(struct cv_pg_conn *c, const char *name, cv_status st)
{
    if (st != CV_ERR_DB_UNAVAILABLE || (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK))
        return st;
    cv_log(CV_LOG_ERROR, "db_commit_unconfirmed", CV_LS("statement", name),
           CV_LS("effect", "the session ended during COMMIT; outcome unknown"));
    return CV_ERR_COMMIT_UNCONFIRMED;
}

/* CV_ERR_COMMIT_UNCONFIRMED (logged) when what just ran committed and the
 * server reported success, but it had cancelled its wait for the standby:
 * the standby may never get the transaction, and after a failover it is
 * gone. Not a success. */
static cv_status commit_confirmed(struct cv_pg_conn *c, const char *name)
{
    if (!c->sync_wait_cancelled || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return CV_OK;
    cv_log(CV_LOG_ERROR, "db_commit_unconfirmed", CV_LS("statement", name),
           CV_LS("effect", "committed on the primary only; the standby may not have it"));
    snprintf(c->last_sqlstate, sizeof(c->last_sqlstate), "%s", "01000");
    return CV_ERR_COMMIT_UNCONFIRMED;
}

cv_status cv_pg_run(struct cv_pg_conn *c, const struct cv_pg_stmt *s, const struct cv_pg_params *p,
                    PGresult **res)
{
    int n = p != NULL ? p->n : 0;
    const char *const *values = p != NULL ? p->values : NULL;
    const int *lengths = p != NULL ? p->lengths : NULL;
    const int *formats = p != NULL ? p->formats : NULL;
    int result_format = s->binary_results ? 1 : 0;
    PGresult *r = NULL;
    if (res != NULL)
        *res = NULL;
    if (!params_valid(s, p))
        return CV_ERR_INTERNAL;
    c->sync_wait_cancelled = false;
    switch (s->mode) {
    case CV_PG_PREPARED:
        CV_TRY(prepare(c, s));
        r = PQexecPrepared(c->pg, s->name, n, values, lengths, formats, result_format);
        break;
    case CV_PG_ONE_OFF:
        r = PQexecParams(c->pg, s->sql, n, NULL, values, lengths, formats, result_format);
        break;
    case CV_PG_SCRIPT:
        /* Static text shipped with the binary, no parameters: a script of
         * several statements can only go through the simple protocol. */
        r = PQexec(c->pg, s->sql);
        break;
    }
    ExecStatusType rs = PQresultStatus(r);
    if (rs != PGRES_TUPLES_OK && rs != PGRES_COMMAND_OK) {
        cv_status st = cv_pg_error(c, r, s->name, s->quiet);
        PQclear(r);
        return strcmp(s->sql, "COMMIT") == 0 ? commit_lost(c, s->name, st) : st;
    }
    /* A COMMIT, or a statement on its own, that committed. */
    cv_status cst = commit_confirmed(c, s->name);
    if (cst != CV_OK) {
        PQclear(r);
        return cst;
    }
    c->last_sqlstate[0] = '\0';
    if (res != NULL)
        *res = r;
    else
        PQclear(r);
    return CV_OK;
}

/* Pipelines */

const struct cv_pg_stmt cv_pg_begin = {"BEGIN", "BEGIN", 0, CV_PG_ONE_OFF, false, false};
const struct cv_pg_stmt cv_pg_commit = {"COMMIT", "COMMIT", 0, CV_PG_ONE_OFF, false, false};

void cv_pg_pipeline_init(struct cv_pg_pipeline *pl)
{
    pl->n = 0;
    pl->overflow = false;
}

size_t cv_pg_pipeline_add(struct cv_pg_pipeline *pl, const struct cv_pg_stmt *s,
                          const struct cv_pg_params *p)
{
    if (pl->n >= CV_PG_PIPELINE_MAX) {
        pl->overflow = true;
        return CV_PG_PIPELINE_MAX;
    }
    struct cv_pg_step *step = &pl->steps[pl->n];
    memset(step, 0, sizeof(*step));
    step->stmt = s;
    step->params = p;
    step->status = CV_ERR_DB;
    return pl->n++;
}

void cv_pg_pipeline_cleanup(struct cv_pg_pipeline *pl)
{
    if (pl == NULL)
        return;
    for (size_t i = 0; i < pl->n; i++) {
        PQclear(pl->steps[i].res);
        pl->steps[i].res = NULL;
    }
    pl->n = 0;
    pl->overflow = false;
}

/* Queues step i. A statement not yet prepared on c is prepared in the same
 * pipeline, once however many steps run it (its name is bound as soon as
 * the server has parsed it, and outlives a rollback). */
static bool send_step(struct cv_pg_conn *c, struct cv_pg_pipeline *pl, size_t i)
{
    struct cv_pg_step *step = &pl->steps[i];
    const struct cv_pg_stmt *s = step->stmt;
    const struct cv_pg_params *p = step->params;
    int n = p != NULL ? p->n : 0;
    const char *const *values = p != NULL ? p->values : NULL;
    const int *lengths = p != NULL ? p->lengths : NULL;
    const int *formats = p != NULL ? p->formats : NULL;
    int result_format = s->binary_results ? 1 : 0;
    if (s->mode != CV_PG_PREPARED)
        return PQsendQueryParams(c->pg, s->sql, n, NULL, values, lengths, formats, result_format) ==
               1;
    bool queued = is_prepared(c, s);
    for (size_t k = 0; k < i && !queued; k++)
        queued = pl->steps[k].prepare_sent && pl->steps[k].stmt == s;
    if (!queued) {
        if (PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL) != 1)
            return false;
        step->prepare_sent = true;
    }
    return PQsendQueryPrepared(c->pg, s->name, n, values, lengths, formats, result_format) == 1;
}

/* The next result of the current query, NULL at its end; the NULL that
 * ends it is consumed too. */
static PGresult *next_result(struct cv_pg_conn *c)
{
    PGresult *r = PQgetResult(c->pg);
    if (r != NULL) {
        PGresult *rest;
        /* one result per query (no multi-statement text, no COPY) */
        while ((rest = PQgetResult(c->pg)) != NULL)
            PQclear(rest);
    }
    return r;
}

static bool conn_ok(const struct cv_pg_conn *c)
{
    return c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK;
}

/* The first failure of a pipeline run: its step (n: none yet), and whether
 * the server reported it (a SQLSTATE: the server stopped there) or libpq did
 * (the session ended: how far the server got is unknown). */
struct first_failure {
    size_t at;
    bool by_server;
};

/* Reads step i's answer. Returns false once the connection has nothing more
 * to give (it broke). */
static bool read_step(struct cv_pg_conn *c, struct cv_pg_pipeline *pl, size_t i,
                      struct first_failure *f)
{
    struct cv_pg_step *step = &pl->steps[i];
    PGresult *r = NULL;
    if (step->prepare_sent) {
        r = next_result(c);
        if (r == NULL)
            return false;
        if (PQresultStatus(r) == PGRES_COMMAND_OK) {
            mark_prepared(c, step->stmt);
            PQclear(r);
            r = NULL;
        }
        /* else: the prepare's failure is the step's; its execution is
         * aborted and read below */
    }
    PGresult *exec = next_result(c);
    if (r == NULL) {
        r = exec;
    } else {
        PQclear(exec);
    }
    if (r == NULL)
        return false;
    ExecStatusType rs = PQresultStatus(r);
    if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
        step->status = CV_OK;
        step->res = r;
        return true;
    }
    if (rs == PGRES_PIPELINE_ABORTED) {
        step->aborted = true;
        step->status = CV_ERR_DB;
    } else if (f->at == pl->n) {
        step->status = cv_pg_error(c, r, step->stmt->name, step->stmt->quiet);
        f->at = i;
        f->by_server = PQresultErrorField(r, PG_DIAG_SQLSTATE) != NULL;
    } else {
        step->status = cv_pg_status_for_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE));
    }
    PQclear(r);
    return true;
}

/* After the last step: reads up to and including the sync's result. */
static bool read_sync(struct cv_pg_conn *c, size_t bound)
{
    for (size_t k = 0; k < bound && conn_ok(c); k++) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL)
            continue;
        ExecStatusType rs = PQresultStatus(r);
        PQclear(r);
        if (rs == PGRES_PIPELINE_SYNC)
            return true;
    }
    return false;
}

/* Why pipeline mode: a group commit's statements depend on each other only
 * through the transaction, not through their results, so they can travel
 * together and pay one network round trip instead of one each. The
 * connection stays in blocking mode: libpq flushes its output buffer as it
 * fills, and the answers (command tags, a few short rows) are far smaller
 * than the socket buffers, so the server never blocks writing them while we
 * are still sending. */
cv_status cv_pg_pipeline_run(struct cv_pg_conn *c, struct cv_pg_pipeline *pl)
{
    size_t n = pl->n, sent = 0, commit_at = pl->n;
    struct first_failure f = {pl->n, false};
    bool synced = false;
    if (pl->overflow) {
        cv_log(CV_LOG_ERROR, "db_pipeline_overflow", CV_LI("steps", CV_PG_PIPELINE_MAX));
        return CV_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!params_valid(pl->steps[i].stmt, pl->steps[i].params) ||
            pl->steps[i].stmt->mode == CV_PG_SCRIPT)
            return CV_ERR_INTERNAL; /* a script needs the simple protocol */
        if (commit_at < n) {
            /* after a COMMIT, a failing step would hide that it committed */
            cv_log(CV_LOG_ERROR, "db_pipeline_invalid", CV_LS("statement", pl->steps[i].stmt->name),
                   CV_LS("reason", "a step after the COMMIT"));
            return CV_ERR_INTERNAL;
        }
        if (strcmp(pl->steps[i].stmt->sql, "COMMIT") == 0)
            commit_at = i;
    }
    if (n == 0)
        return CV_OK;
    if (!conn_ok(c) || PQenterPipelineMode(c->pg) != 1)
        return cv_pg_error(c, NULL, pl->steps[0].stmt->name, pl->steps[0].stmt->quiet);
    c->sync_wait_cancelled = false;
    while (sent < n && send_step(c, pl, sent))
        sent++;
    if (sent < n) {
        f.at = sent;
        pl->steps[sent].status =
            cv_pg_error(c, NULL, pl->steps[sent].stmt->name, pl->steps[sent].stmt->quiet);
    }
    /* What was queued is still synced and read, so the connection is left
     * with nothing pending. */
    if (conn_ok(c) && PQpipelineSync(c->pg) == 1) {
        size_t i = 0;
        while (i < sent && read_step(c, pl, i, &f))
            i++;
        for (; i < sent; i++) {
            /* the session ended before these were answered */
            pl->steps[i].status = CV_ERR_DB_UNAVAILABLE;
            if (f.at == n) {
                pl->steps[i].status =
                    cv_pg_error(c, NULL, pl->steps[i].stmt->name, pl->steps[i].stmt->quiet);
                f.at = i;
            }
        }
        synced = read_sync(c, 4 * n + 8);
    }
    if (!synced || PQexitPipelineMode(c->pg) != 1)
        /* cv_pg_release closes a connection still in pipeline mode */
        cv_log(CV_LOG_WARN, "db_pipeline_unfinished", CV_LI("steps", (int64_t)n));
    if (f.at < n) {
        cv_status st = pl->steps[f.at].status;
        if (commit_at < sent && f.at < commit_at && !f.by_server &&
            pl->steps[commit_at].status == CV_OK) {
            /* libpq lost an earlier step's answer (not the server's error:
             * that would have skipped the COMMIT), yet the COMMIT says it
             * committed: committed, but not as checked. Never a failure a
             * caller may retry. */
            cv_log(CV_LOG_ERROR, "db_commit_unconfirmed",
                   CV_LS("statement", pl->steps[commit_at].stmt->name),
                   CV_LS("effect", "committed after a step whose answer was lost"));
            return CV_ERR_COMMIT_UNCONFIRMED;
        }
        /* Sent, never answered, and the session is gone: a COMMIT queued at
         * or after the failing step may have run on the server all the same
         * (it runs a pipeline without waiting for us to read), unless the
         * server itself reported the failure, which stopped it there. */
        if (commit_at < sent && f.at <= commit_at && (f.at == commit_at || !f.by_server))
            st = commit_lost(c, pl->steps[commit_at].stmt->name, st);
        return st;
    }
    /* Every step succeeded. The notice receiver ran while the COMMIT's
     * answer was read: a COMMIT whose wait for the standby was cancelled
     * is not a success (nor is a pipeline without COMMIT that ended in
     * its implicit transaction's commit). */
    if (c->sync_wait_cancelled && commit_at < n) {
        cv_log(CV_LOG_ERROR, "db_commit_unconfirmed",
               CV_LS("statement", pl->steps[commit_at].stmt->name),
               CV_LS("effect", "committed on the primary only; the standby may not have it"));
        snprintf(c->last_sqlstate, sizeof(c->last_sqlstate), "%s", "01000");
        return CV_ERR_COMMIT_UNCONFIRMED;
    }
    if (!synced)
        return CV_OK; /* the COMMIT (if any) was answered; release closes c */
    return commit_confirmed(c, pl->steps[n - 1].stmt->name);
}

cv_status cv_pg_run_once(struct cv_pg_pool *pool, const struct cv_pg_stmt *s,
                         const struct cv_pg_params *p, PGresult **res)
{
    struct cv_pg_conn *c = NULL;
    CV_TRY(cv_pg_acquire(pool, &c));
    cv_status st = cv_pg_run(c, s, p, res);
    cv_pg_release(c);
    return st;
}

cv_status cv_pg_command(struct cv_pg_conn *c, const char *sql)
{
    const struct cv_pg_stmt s = {sql, sql, 0, CV_PG_ONE_OFF, false, false};
    return cv_pg_run(c, &s, NULL, NULL);
}

void cv_pg_rollback(struct cv_pg_conn *c)
{
    if (!cv_pg_in_transaction(c))
        return;
    /* quiet: the failure that made us roll back was logged already */
    const struct cv_pg_stmt s = {"ROLLBACK", "ROLLBACK", 0, CV_PG_ONE_OFF, false, true};
    if (cv_pg_run(c, &s, NULL, NULL) != CV_OK)
        return; /* release() closes a connection still inside a transaction */
}

bool cv_pg_in_transaction(const struct cv_pg_conn *c)
{
    return c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK &&
           PQtransactionStatus(c->pg) != PQTRANS_IDLE;
}

cv_status cv_pg_use_utf8(struct cv_pg_conn *c)
{
    if (PQclientEncoding(c->pg) == pg_char_to_encoding("UTF8"))
        return CV_OK;
    if (PQsetClientEncoding(c->pg, "UTF8") != 0)
        return cv_pg_error(c, NULL, "client_encoding", false);
    return CV_OK;
}

char *cv_pg_quote_ident(struct cv_pg_conn *c, const char *ident)
{
    return PQescapeIdentifier(c->pg, ident, strlen(ident));
}

void cv_pg_freemem(void *p)
{
    if (p != NULL)
        PQfreemem(p);
}

/* Values */

cv_status cv_pg_decode_bytea(const char *v, unsigned char **out, size_t *len)
{
    size_t n = strlen(v);
    *out = NULL;
    *len = 0;
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) % 2 != 0)
        return CV_ERR_DB;
    size_t bytes = (n - 2) / 2;
    unsigned char *b = cv_xmalloc(bytes > 0 ? bytes : 1);
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

cv_status cv_pg_get_bytea(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    return cv_pg_decode_bytea(PQgetvalue(r, row, col), out, len);
}

cv_status cv_pg_get_fixed_bytea(const PGresult *r, int row, int col, unsigned char *out,
                                size_t want)
{
    unsigned char *b = NULL;
    size_t n = 0;
    CV_TRY(cv_pg_get_bytea(r, row, col, &b, &n));
    bool fits = n == want;
    if (fits)
        memcpy(out, b, want);
    free(b);
    return fits ? CV_OK : CV_ERR_DB;
}

void cv_pg_get_text(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s", PQgetvalue(r, row, col));
}

int64_t cv_pg_get_int(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool cv_pg_get_bool(const PGresult *r, int row, int col)
{
    return strcmp(PQgetvalue(r, row, col), "t") == 0;
}

int64_t cv_pg_changed(PGresult *r)
{
    return strtoll(PQcmdTuples(r), NULL, 10);
}

cv_status cv_pg_array_literal(struct cv_buf *b, const char *const *values, size_t n)
{
    CV_TRY(cv_buf_append_char(b, '{'));
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            CV_TRY(cv_buf_append_char(b, ','));
        if (values[i] == NULL) {
            CV_TRY(cv_buf_append_str(b, "NULL"));
            continue;
        }
        CV_TRY(cv_buf_append_char(b, '"'));
        for (const char *p = values[i]; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                CV_TRY(cv_buf_append_char(b, '\\'));
            CV_TRY(cv_buf_append_char(b, *p));
        }
        CV_TRY(cv_buf_append_char(b, '"'));
    }
    return cv_buf_append_char(b, '}');
}
