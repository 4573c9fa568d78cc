/* store_batch.c: group commit for the write path. Concurrent tokenize and
 * audit writes are queued; writer threads take everything queued, write it
 * in one transaction (one multi-row INSERT for tokens, one statement for the
 * audit appends) and commit once, then wake every request of the batch. A
 * request still returns only after its own row is durably committed, but N
 * requests share one WAL flush instead of paying for N. If a batch fails
 * (a token collision, a constraint), its jobs are retried one by one, each in
 * its own transaction, so one bad row never fails its neighbours. */
#include "store_batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "store_pg_internal.h"

#define BATCH_MAX  128
#define TOKEN_COLS 11
#define AUDIT_COLS 7

enum job_kind { JOB_TOKEN, JOB_AUDIT, JOB_READ };

struct job {
    enum job_kind kind;
    const struct cv_token_row *row;
    const unsigned char *idem_key_hash;
    const char *response_body;
    const struct cv_audit_event *ev;
    const char *merchant_id; /* JOB_READ */
    const char *token;
    struct cv_token_row *out;
    cv_status result;
    bool done;
    pthread_cond_t cond;
    struct job *next;
};

struct cv_batcher {
    struct cv_store *store;
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *head, *tail;
    bool stopping;
    unsigned n_threads;
    pthread_t threads[8];
};

/* One job in its own transaction, through the store's prepared statements. */
static cv_status run_single(struct cv_store *st, const struct job *j)
{
    if (j->kind == JOB_TOKEN)
        return cv_store_insert_token_direct(st, j->row, j->idem_key_hash, j->response_body);
    if (j->kind == JOB_READ)
        return cv_store_get_token_direct(st, j->merchant_id, j->token, j->out);
    return cv_store_audit_append_direct(st, j->ev);
}

/* Growable SQL text and parameter arrays for one batch. */
struct batch_sql {
    char *sql;
    size_t len, cap;
    const char **values;
    int *lengths;
    int *formats;
    int n;
    char (*nums)[24];
};

static void sql_add(struct batch_sql *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap + n + 1) * 2;
        char *p = cv_xmalloc(cap);
        if (b->len > 0)
            memcpy(p, b->sql, b->len);
        free(b->sql);
        b->sql = p;
        b->cap = cap;
    }
    memcpy(b->sql + b->len, s, n + 1);
    b->len += n;
}

/* Appends one element to a PostgreSQL array literal: NULL, or a double-quoted
 * string with '"' and '\\' escaped. The literal travels as a parameter. */
static void array_add(struct batch_sql *a, const char *v, bool comma)
{
    if (comma)
        sql_add(a, ",");
    if (v == NULL) {
        sql_add(a, "NULL");
        return;
    }
    sql_add(a, "\"");
    char one[3] = {0, 0, 0};
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            one[0] = '\\';
            one[1] = *p;
        } else {
            one[0] = *p;
            one[1] = '\0';
        }
        sql_add(a, one);
    }
    sql_add(a, "\"");
}

static void param(struct batch_sql *b, const char *v, int len, int fmt)
{
    b->values[b->n] = v;
    b->lengths[b->n] = len;
    b->formats[b->n] = fmt;
    b->n++;
}

static void param_int(struct batch_sql *b, long long v)
{
    snprintf(b->nums[b->n], sizeof(b->nums[0]), "%lld", v);
    param(b, b->nums[b->n], 0, 0);
}

/* "($k,$k+1,...)" for one row of a VALUES list. */
static void placeholders(struct batch_sql *b, int first, int count)
{
    char tmp[24];
    sql_add(b, "(");
    for (int i = 0; i < count; i++) {
        snprintf(tmp, sizeof(tmp), "%s$%d", i > 0 ? "," : "", first + i);
        sql_add(b, tmp);
    }
    sql_add(b, ")");
}

static void batch_sql_init(struct batch_sql *b, int params)
{
    memset(b, 0, sizeof(*b));
    b->values = cv_xcalloc((size_t)params, sizeof(*b->values));
    b->lengths = cv_xcalloc((size_t)params, sizeof(*b->lengths));
    b->formats = cv_xcalloc((size_t)params, sizeof(*b->formats));
    b->nums = cv_xcalloc((size_t)params, sizeof(*b->nums));
}

static void batch_sql_reset(struct batch_sql *b)
{
    b->len = 0;
    b->n = 0;
    if (b->sql != NULL)
        b->sql[0] = '\0';
}

static void batch_sql_free(struct batch_sql *b)
{
    free(b->sql);
    free(b->values);
    free(b->lengths);
    free(b->formats);
    free(b->nums);
}

static bool exec_ok(PGconn *pg, const struct batch_sql *b)
{
    PGresult *r = PQexecParams(pg, b->sql, b->n, NULL, b->values, b->lengths, b->formats, 0);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cv_log(CV_LOG_DEBUG, "batch_statement_failed", CV_LS("sqlstate", state));
    }
    PQclear(r);
    return ok;
}

static bool exec_plain(PGconn *pg, const char *sql)
{
    /* BEGIN/COMMIT/ROLLBACK: fixed text, no data. */
    PGresult *r = PQexec(pg, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

/* Writes every job of the batch in one transaction. */
static cv_status write_batch(struct cv_store *st, struct job **jobs, size_t n)
{
    struct cv_pg_conn *pc = NULL;
    struct batch_sql b;
    size_t n_tokens = 0, n_audits = 0;
    cv_status result = CV_OK;
    CV_TRY(cv_pg_acquire(st, &pc));
    PGconn *pg = cv_pg_handle(pc);
    batch_sql_init(&b, (int)(n * TOKEN_COLS + 8));
    for (size_t i = 0; i < n; i++)
        *(jobs[i]->kind == JOB_TOKEN ? &n_tokens : &n_audits) += 1;

    if (!exec_plain(pg, "BEGIN"))
        goto fail;
    if (n_tokens > 0) {
        sql_add(&b, "INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, "
                    "ciphertext, brand, bin, last4, fingerprint, created_at) VALUES ");
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const struct cv_token_row *r = jobs[i]->row;
            if (jobs[i]->kind != JOB_TOKEN)
                continue;
            if (k++ > 0)
                sql_add(&b, ",");
            placeholders(&b, b.n + 1, TOKEN_COLS);
            param(&b, r->merchant_id, 0, 0);
            param(&b, r->token, 0, 0);
            param_int(&b, r->format_version);
            param_int(&b, (long long)r->dek_id);
            param(&b, (const char *)r->nonce, (int)sizeof(r->nonce), 1);
            param(&b, (const char *)r->ciphertext, (int)r->ciphertext_len, 1);
            param(&b, r->brand, 0, 0);
            param(&b, r->bin, 0, 0);
            param(&b, r->last4, 0, 0);
            param(&b, r->fingerprint, 0, 0);
            param(&b, r->created_at, 0, 0);
        }
        if (!exec_ok(pg, &b))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (jobs[i]->kind != JOB_TOKEN || jobs[i]->idem_key_hash == NULL)
                continue;
            batch_sql_reset(&b);
            sql_add(&b, "UPDATE idempotency_keys SET state = 'done', status_code = 201, "
                        "response_body = $3 WHERE merchant_id = $1 AND key_hash = $2 "
                        "AND state = 'in_progress'");
            param(&b, jobs[i]->row->merchant_id, 0, 0);
            param(&b, (const char *)jobs[i]->idem_key_hash, 32, 1);
            param(&b, jobs[i]->response_body, 0, 0);
            if (!exec_ok(pg, &b))
                goto fail;
        }
    }
    if (n_audits > 0) {
        /* One array per field, in queue order: audit_append_batch() locks
         * the chain tip once and chains the events in array order. */
        struct batch_sql arrays[AUDIT_COLS];
        batch_sql_reset(&b);
        sql_add(&b, "SELECT audit_append_batch($1::text[], $2::text[], $3::text[], $4::text[], "
                    "$5::text[], $6::text[], $7::text[])");
        for (int c = 0; c < AUDIT_COLS; c++) {
            memset(&arrays[c], 0, sizeof(arrays[c]));
            sql_add(&arrays[c], "{");
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            const struct cv_audit_event *e = jobs[i]->ev;
            if (jobs[i]->kind != JOB_AUDIT)
                continue;
            const char *fields[AUDIT_COLS] = {e->actor,  e->merchant_id, e->token, e->request_id,
                                              e->action, e->outcome,     e->detail};
            for (int c = 0; c < AUDIT_COLS; c++)
                array_add(&arrays[c], fields[c], k > 0);
            k++;
        }
        for (int c = 0; c < AUDIT_COLS; c++) {
            sql_add(&arrays[c], "}");
            param(&b, arrays[c].sql, 0, 0);
        }
        bool done = exec_ok(pg, &b);
        for (int c = 0; c < AUDIT_COLS; c++)
            free(arrays[c].sql);
        if (!done)
            goto fail;
    }
    /* COMMIT returns after the WAL flush (synchronous_commit is on). */
    if (!exec_plain(pg, "COMMIT"))
        goto fail;
    goto out;
fail:
    result = PQstatus(pg) == CONNECTION_OK ? CV_ERR_DB : CV_ERR_DB_UNAVAILABLE;
    if (PQstatus(pg) == CONNECTION_OK && PQtransactionStatus(pg) != PQTRANS_IDLE)
        (void)exec_plain(pg, "ROLLBACK");
out:
    batch_sql_free(&b);
    cv_pg_release(st, pc);
    return result;
}

/* Reads of a batch in one query (no transaction needed: one statement). */
static void read_batch(struct cv_store *st, struct job **jobs, size_t n)
{
    struct batch_sql ms, ts;
    const char *merchants[BATCH_MAX], *tokens[BATCH_MAX];
    struct cv_token_row *outs[BATCH_MAX];
    cv_status results[BATCH_MAX];
    memset(&ms, 0, sizeof(ms));
    memset(&ts, 0, sizeof(ts));
    sql_add(&ms, "{");
    sql_add(&ts, "{");
    for (size_t i = 0; i < n; i++) {
        array_add(&ms, jobs[i]->merchant_id, i > 0);
        array_add(&ts, jobs[i]->token, i > 0);
        merchants[i] = jobs[i]->merchant_id;
        tokens[i] = jobs[i]->token;
        outs[i] = jobs[i]->out;
    }
    sql_add(&ms, "}");
    sql_add(&ts, "}");
    cv_status st_all =
        cv_store_get_tokens_batch(st, ms.sql, ts.sql, outs, merchants, tokens, results, n);
    for (size_t i = 0; i < n; i++)
        jobs[i]->result = st_all == CV_OK ? results[i] : st_all;
    free(ms.sql);
    free(ts.sql);
}

static void *writer(void *arg)
{
    struct cv_batcher *bt = arg;
    struct job *jobs[BATCH_MAX];
    pthread_mutex_lock(&bt->lock);
    for (;;) {
        while (bt->head == NULL && !bt->stopping)
            pthread_cond_wait(&bt->work, &bt->lock);
        if (bt->head == NULL && bt->stopping)
            break;
        size_t n = 0;
        while (bt->head != NULL && n < BATCH_MAX) {
            jobs[n++] = bt->head;
            bt->head = bt->head->next;
        }
        if (bt->head == NULL)
            bt->tail = NULL;
        pthread_mutex_unlock(&bt->lock);

        cv_status st = CV_OK;
        if (jobs[0]->kind == JOB_READ && n > 1)
            read_batch(bt->store, jobs, n); /* sets each job's result */
        else
            st = n == 1 ? run_single(bt->store, jobs[0]) : write_batch(bt->store, jobs, n);
        if (jobs[0]->kind == JOB_READ && n > 1) {
            /* results already set */
        } else if (n > 1 && st == CV_OK) {
            for (size_t i = 0; i < n; i++)
                jobs[i]->result = CV_OK;
        } else if (n > 1 && st == CV_ERR_DB_UNAVAILABLE) {
            for (size_t i = 0; i < n; i++)
                jobs[i]->result = st;
        } else if (n > 1) {
            /* Isolate the row that failed the batch: each job on its own. */
            for (size_t i = 0; i < n; i++)
                jobs[i]->result = run_single(bt->store, jobs[i]);
        } else {
            jobs[0]->result = st;
        }

        pthread_mutex_lock(&bt->lock);
        for (size_t i = 0; i < n; i++) {
            jobs[i]->done = true;
            pthread_cond_signal(&jobs[i]->cond);
        }
    }
    pthread_mutex_unlock(&bt->lock);
    return NULL;
}

static cv_status submit(struct cv_batcher *bt, struct job *j)
{
    pthread_cond_init(&j->cond, NULL);
    j->done = false;
    j->next = NULL;
    pthread_mutex_lock(&bt->lock);
    if (bt->stopping) {
        pthread_mutex_unlock(&bt->lock);
        pthread_cond_destroy(&j->cond);
        return CV_ERR_SHUTTING_DOWN;
    }
    if (bt->tail != NULL)
        bt->tail->next = j;
    else
        bt->head = j;
    bt->tail = j;
    pthread_cond_signal(&bt->work);
    while (!j->done)
        pthread_cond_wait(&j->cond, &bt->lock);
    pthread_mutex_unlock(&bt->lock);
    pthread_cond_destroy(&j->cond);
    return j->result;
}

cv_status cv_batcher_insert_token(struct cv_batcher *bt, const struct cv_token_row *row,
                                  const unsigned char *idem_key_hash, const char *response_body)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.kind = JOB_TOKEN;
    j.row = row;
    j.idem_key_hash = idem_key_hash;
    j.response_body = response_body;
    return submit(bt, &j);
}

cv_status cv_batcher_get_token(struct cv_batcher *bt, const char *merchant_id, const char *token,
                               struct cv_token_row *out)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.kind = JOB_READ;
    j.merchant_id = merchant_id;
    j.token = token;
    j.out = out;
    return submit(bt, &j);
}

cv_status cv_batcher_audit_append(struct cv_batcher *bt, const struct cv_audit_event *ev)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.kind = JOB_AUDIT;
    j.ev = ev;
    return submit(bt, &j);
}

struct cv_batcher *cv_batcher_start(struct cv_store *st, unsigned writers)
{
    struct cv_batcher *bt = cv_xcalloc(1, sizeof(*bt));
    bt->store = st;
    pthread_mutex_init(&bt->lock, NULL);
    pthread_cond_init(&bt->work, NULL);
    if (writers == 0)
        writers = 1;
    if (writers > sizeof(bt->threads) / sizeof(bt->threads[0]))
        writers = sizeof(bt->threads) / sizeof(bt->threads[0]);
    for (unsigned i = 0; i < writers; i++) {
        if (pthread_create(&bt->threads[i], NULL, writer, bt) != 0)
            break;
        bt->n_threads++;
    }
    if (bt->n_threads == 0) {
        cv_batcher_stop(bt);
        return NULL;
    }
    return bt;
}

void cv_batcher_stop(struct cv_batcher *bt)
{
    if (bt == NULL)
        return;
    pthread_mutex_lock(&bt->lock);
    bt->stopping = true; /* queued jobs are still written before writers exit */
    pthread_cond_broadcast(&bt->work);
    pthread_mutex_unlock(&bt->lock);
    for (unsigned i = 0; i < bt->n_threads; i++)
        pthread_join(bt->threads[i], NULL);
    pthread_mutex_destroy(&bt->lock);
    pthread_cond_destroy(&bt->work);
    free(bt);
}
