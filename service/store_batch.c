/* store_batch.c: group commit for the write path. Concurrent tokenize and
 * audit writes are queued; writer threads take everything queued, write it
 * in one transaction (one multi-row INSERT for tokens, one statement for the
 * audit appends, the tokens' own token.tokenize events among them; sent as
 * two libpq pipelines, so two round trips) and commit once, then wake every
 * request of the batch, or call its completion back on the writer thread
 * (the asynchronous submissions, which leave the caller's thread free while
 * the batch is written). A request still
 * returns only after its own row and its audit event are durably
 * committed, but N requests share one WAL flush instead of paying for N. If a batch fails
 * (a token collision, a constraint), its jobs are retried one by one, each in
 * its own transaction, so one bad row never fails its neighbours. It sits
 * between the front door (store.c) and the SQL files: it calls
 * store_tokens.c, store_audit.c and pg.c, and nothing below calls it. */
#include "store_batch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "pg.h"
#include "store_audit_sql.h"
#include "store_tokens_sql.h"

enum job_kind { JOB_TOKEN, JOB_AUDIT, JOB_READ };

struct job {
    enum job_kind kind;
    const struct cv_token_row *row;
    const unsigned char *idem_key_hash;
    const char *response_body;
    const struct cv_audit_event *ev; /* JOB_AUDIT; JOB_TOKEN: its event, or NULL */
    const char *merchant_id;         /* JOB_READ */
    const char *token;
    struct cv_token_row *out;
    cv_status result;
    /* How the submitter learns the outcome: a synchronous caller waits on
     * cond until done; an asynchronous one (on_done set, the job on the
     * heap) is called back on the writer thread, which then frees the job. */
    bool done;
    pthread_cond_t cond;
    cv_batch_done_fn on_done;
    void *on_done_ctx;
    struct job *next;
};

struct cv_batcher {
    struct cv_pg_pool *pool;
    const struct cv_audit_sealer *sealer;
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct job *head, *tail;
    bool stopping;
    unsigned n_threads;
    pthread_t threads[8];
};

/* Two round trips, as a batch (write_batch): BEGIN, the token and the lock
 * of the audit chain's tip; then the event, sealed from that tip, and
 * COMMIT. The token first, its event last: the tip stays locked only from
 * the end of the first round trip to the COMMIT. */
cv_status cv_batch_insert_token_audited(struct cv_pg_pool *pool,
                                        const struct cv_audit_sealer *sealer,
                                        const struct cv_token_row *row,
                                        const unsigned char *idem_key_hash,
                                        const char *response_body, const struct cv_audit_event *ev)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_params p;
    struct cv_audit_batch ab;
    struct cv_pg_pipeline first, second;
    if (ev == NULL)
        return cv_tokens_insert(pool, row, idem_key_hash, response_body);
    cv_audit_batch_init(&ab, false);
    cv_pg_pipeline_init(&first);
    cv_pg_pipeline_init(&second);
    cv_status st = cv_pg_acquire(pool, &c);
    if (st != CV_OK)
        goto done;
    cv_pg_pipeline_add(&first, &cv_pg_begin, NULL);
    size_t insert_step = cv_tokens_insert_one_queue(&p, &first, row, idem_key_hash, response_body);
    if ((st = cv_audit_batch_queue_lock(&ab, &first, sealer)) != CV_OK)
        goto out;
    if ((st = cv_pg_pipeline_run(c, &first)) != CV_OK)
        goto out;
    if ((st = cv_tokens_insert_one_check(&first, insert_step, row, idem_key_hash != NULL)) != CV_OK)
        goto out;
    if ((st = cv_audit_batch_queue_append(&ab, &first, &second, sealer, &ev, 1)) != CV_OK)
        goto out;
    cv_pg_pipeline_add(&second, &cv_pg_commit, NULL);
    st = cv_pg_pipeline_run(c, &second);
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    cv_pg_release(c);
done:
    cv_pg_pipeline_cleanup(&second);
    cv_pg_pipeline_cleanup(&first);
    cv_audit_batch_cleanup(&ab);
    return st;
}

/* One job in its own transaction, through the prepared statements. */
static cv_status run_single(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                            const struct job *j)
{
    if (j->kind == JOB_TOKEN)
        return cv_batch_insert_token_audited(pool, sealer, j->row, j->idem_key_hash,
                                             j->response_body, j->ev);
    if (j->kind == JOB_READ)
        return cv_tokens_get(pool, j->merchant_id, j->token, j->out);
    return cv_audit_store_append(pool, sealer, j->ev);
}

/* The token rows and the audit events of a batch, in queue order. */
struct batch_parts {
    const struct cv_token_row *rows[CV_STORE_BATCH_MAX];
    const unsigned char *idem[CV_STORE_BATCH_MAX];
    const char *bodies[CV_STORE_BATCH_MAX];
    size_t n_rows;
    const struct cv_audit_event *events[CV_STORE_BATCH_MAX];
    size_t n_events;
};

static void split_batch(struct job **jobs, size_t n, struct batch_parts *b)
{
    b->n_rows = 0;
    b->n_events = 0;
    for (size_t i = 0; i < n; i++) {
        if (jobs[i]->kind == JOB_TOKEN) {
            b->rows[b->n_rows] = jobs[i]->row;
            b->idem[b->n_rows] = jobs[i]->idem_key_hash;
            b->bodies[b->n_rows] = jobs[i]->response_body;
            b->n_rows++;
            if (jobs[i]->ev != NULL)
                b->events[b->n_events++] = jobs[i]->ev;
        } else {
            b->events[b->n_events++] = jobs[i]->ev;
        }
    }
}

/* Writes every job of the batch in one transaction. CV_ERR_DB_UNAVAILABLE
 * when the connection is gone (no job can succeed on its own either),
 * CV_ERR_COMMIT_UNCONFIRMED when the batch committed on the primary but its
 * wait for the synchronous standby was cancelled, or the session ended
 * during the COMMIT (every job's outcome is unknown, and a retry one by one
 * would write the rows twice), CV_ERR_DB for any other failure (the jobs are
 * then retried one by one).
 *
 * Two round trips, each a libpq pipeline (pg.c): first BEGIN, the DEK lock,
 * the token rows, their idempotency answers and the lock of the audit
 * chain's tip; then the audit append and COMMIT. They cannot be one: every
 * event's MAC chains from the tip's hash and MAC, read under that lock, and
 * is computed here with K_audit, which never goes to the database. The tip
 * is locked from the end of the first round trip to the COMMIT. A failing
 * statement makes the server skip the rest of its pipeline; the transaction
 * is then rolled back and the batch retried row by row, as before. */
static cv_status write_batch(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                             struct job **jobs, size_t n)
{
    struct cv_pg_conn *c = NULL;
    struct batch_parts b;
    struct cv_tokens_batch tb;
    struct cv_audit_batch ab;
    struct cv_pg_pipeline first, second;
    split_batch(jobs, n, &b);
    cv_tokens_batch_init(&tb);
    cv_audit_batch_init(&ab, true);
    cv_pg_pipeline_init(&first);
    cv_pg_pipeline_init(&second);
    cv_status st = cv_pg_acquire(pool, &c);
    if (st != CV_OK)
        goto done;
    cv_pg_pipeline_add(&first, &cv_pg_begin, NULL);
    if ((st = cv_tokens_batch_queue(&tb, &first, b.rows, b.idem, b.bodies, b.n_rows)) != CV_OK)
        goto out;
    /* Every event of the batch, the tokens' token.tokenize events included,
     * after the rows: the chain tip locked once, until COMMIT. */
    if (b.n_events > 0 && (st = cv_audit_batch_queue_lock(&ab, &first, sealer)) != CV_OK)
        goto out;
    if ((st = cv_pg_pipeline_run(c, &first)) != CV_OK)
        goto out;
    if ((st = cv_tokens_batch_check(&tb, &first)) != CV_OK)
        goto out;
    if (b.n_events > 0 && (st = cv_audit_batch_queue_append(&ab, &first, &second, sealer, b.events,
                                                            b.n_events)) != CV_OK)
        goto out;
    /* COMMIT returns after the WAL flush (synchronous_commit is on), and
     * with a synchronous standby after the standby has it too; a cancelled
     * wait for the standby (the notice arrives while its answer is read)
     * is CV_ERR_COMMIT_UNCONFIRMED (pg.c). */
    cv_pg_pipeline_add(&second, &cv_pg_commit, NULL);
    st = cv_pg_pipeline_run(c, &second);
out:
    if (st != CV_OK) {
        cv_pg_rollback(c);
        if (st != CV_ERR_DB_UNAVAILABLE && st != CV_ERR_COMMIT_UNCONFIRMED)
            st = CV_ERR_DB;
    }
    cv_pg_release(c);
done:
    cv_pg_pipeline_cleanup(&second);
    cv_pg_pipeline_cleanup(&first);
    cv_audit_batch_cleanup(&ab);
    cv_tokens_batch_cleanup(&tb);
    return st;
}

/* Reads of a batch in one query (no transaction needed: one statement). */
static void read_batch(struct cv_pg_pool *pool, struct job **jobs, size_t n)
{
    const char *merchants[CV_STORE_BATCH_MAX], *tokens[CV_STORE_BATCH_MAX];
    struct cv_token_row *outs[CV_STORE_BATCH_MAX];
    cv_status results[CV_STORE_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        merchants[i] = jobs[i]->merchant_id;
        tokens[i] = jobs[i]->token;
        outs[i] = jobs[i]->out;
    }
    cv_status all = cv_tokens_get_many(pool, merchants, tokens, outs, results, n);
    for (size_t i = 0; i < n; i++)
        jobs[i]->result = all == CV_OK ? results[i] : all;
}

/* Runs n jobs taken from the queue and sets each one's result. */
static void run_jobs(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                     struct job **jobs, size_t n)
{
    if (n == 1) {
        jobs[0]->result = run_single(pool, sealer, jobs[0]);
        return;
    }
    if (jobs[0]->kind == JOB_READ) {
        read_batch(pool, jobs, n);
        return;
    }
    cv_status st = write_batch(pool, sealer, jobs, n);
    if (st == CV_OK || st == CV_ERR_DB_UNAVAILABLE || st == CV_ERR_COMMIT_UNCONFIRMED) {
        for (size_t i = 0; i < n; i++)
            jobs[i]->result = st;
        return;
    }
    /* Isolate the row that failed the batch: each job on its own. */
    for (size_t i = 0; i < n; i++)
        jobs[i]->result = run_single(pool, sealer, jobs[i]);
}

/* Hands each job its outcome: the callbacks first, outside the lock (one
 * may queue a new job), then the waiting callers. A write's result is CV_OK
 * only when its COMMIT returned OK (write_batch, run_single), so a callback
 * never acknowledges a write that is not durably committed. */
static void complete_jobs(struct cv_batcher *bt, struct job **jobs, size_t n)
{
    size_t waiting = 0;
    for (size_t i = 0; i < n; i++) {
        struct job *j = jobs[i];
        if (j->on_done == NULL) {
            jobs[waiting++] = j;
            continue;
        }
        j->on_done(j->on_done_ctx, j->result);
        free(j);
    }
    if (waiting == 0)
        return;
    pthread_mutex_lock(&bt->lock);
    for (size_t i = 0; i < waiting; i++) {
        jobs[i]->done = true;
        pthread_cond_signal(&jobs[i]->cond);
    }
    pthread_mutex_unlock(&bt->lock);
}

static void *writer(void *arg)
{
    struct cv_batcher *bt = arg;
    struct job *jobs[CV_STORE_BATCH_MAX];
    pthread_mutex_lock(&bt->lock);
    for (;;) {
        while (bt->head == NULL && !bt->stopping)
            pthread_cond_wait(&bt->work, &bt->lock);
        if (bt->head == NULL && bt->stopping)
            break;
        size_t n = 0;
        while (bt->head != NULL && n < CV_STORE_BATCH_MAX) {
            jobs[n++] = bt->head;
            bt->head = bt->head->next;
        }
        if (bt->head == NULL)
            bt->tail = NULL;
        pthread_mutex_unlock(&bt->lock);

        run_jobs(bt->pool, bt->sealer, jobs, n);
        complete_jobs(bt, jobs, n);

        pthread_mutex_lock(&bt->lock);
    }
    pthread_mutex_unlock(&bt->lock);
    return NULL;
}

/* Appends j to the queue; false (nothing queued) once the batcher stops.
 * The caller holds bt->lock. */
static bool enqueue(struct cv_batcher *bt, struct job *j)
{
    if (bt->stopping)
        return false;
    j->next = NULL;
    if (bt->tail != NULL)
        bt->tail->next = j;
    else
        bt->head = j;
    bt->tail = j;
    pthread_cond_signal(&bt->work);
    return true;
}

static cv_status submit(struct cv_batcher *bt, struct job *j)
{
    pthread_cond_init(&j->cond, NULL);
    j->done = false;
    pthread_mutex_lock(&bt->lock);
    if (!enqueue(bt, j)) {
        pthread_mutex_unlock(&bt->lock);
        pthread_cond_destroy(&j->cond);
        return CV_ERR_SHUTTING_DOWN;
    }
    while (!j->done)
        pthread_cond_wait(&j->cond, &bt->lock);
    pthread_mutex_unlock(&bt->lock);
    pthread_cond_destroy(&j->cond);
    return j->result;
}

/* Queues a heap copy of *tmpl that calls done(ctx, result) when written. */
static cv_status submit_async(struct cv_batcher *bt, const struct job *tmpl, cv_batch_done_fn done,
                              void *ctx)
{
    struct job *j = cv_xmalloc(sizeof(*j));
    *j = *tmpl;
    j->on_done = done;
    j->on_done_ctx = ctx;
    pthread_mutex_lock(&bt->lock);
    bool queued = enqueue(bt, j);
    pthread_mutex_unlock(&bt->lock);
    if (!queued) {
        free(j);
        return CV_ERR_SHUTTING_DOWN;
    }
    return CV_OK;
}

static void token_job(struct job *j, const struct cv_token_row *row,
                      const unsigned char *idem_key_hash, const char *response_body,
                      const struct cv_audit_event *ev)
{
    memset(j, 0, sizeof(*j));
    j->kind = JOB_TOKEN;
    j->row = row;
    j->idem_key_hash = idem_key_hash;
    j->response_body = response_body;
    j->ev = ev;
}

cv_status cv_batcher_insert_token(struct cv_batcher *bt, const struct cv_token_row *row,
                                  const unsigned char *idem_key_hash, const char *response_body,
                                  const struct cv_audit_event *ev)
{
    struct job j;
    token_job(&j, row, idem_key_hash, response_body, ev);
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

cv_status cv_batcher_insert_token_async(struct cv_batcher *bt, const struct cv_token_row *row,
                                        const unsigned char *idem_key_hash,
                                        const char *response_body, const struct cv_audit_event *ev,
                                        cv_batch_done_fn done, void *ctx)
{
    struct job j;
    token_job(&j, row, idem_key_hash, response_body, ev);
    return submit_async(bt, &j, done, ctx);
}

cv_status cv_batcher_get_token_async(struct cv_batcher *bt, const char *merchant_id,
                                     const char *token, struct cv_token_row *out,
                                     cv_batch_done_fn done, void *ctx)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.kind = JOB_READ;
    j.merchant_id = merchant_id;
    j.token = token;
    j.out = out;
    return submit_async(bt, &j, done, ctx);
}

cv_status cv_batcher_audit_append_async(struct cv_batcher *bt, const struct cv_audit_event *ev,
                                        cv_batch_done_fn done, void *ctx)
{
    struct job j;
    memset(&j, 0, sizeof(j));
    j.kind = JOB_AUDIT;
    j.ev = ev;
    return submit_async(bt, &j, done, ctx);
}

struct cv_batcher *cv_batcher_start(struct cv_pg_pool *pool, const struct cv_audit_sealer *sealer,
                                    unsigned writers)
{
    struct cv_batcher *bt = cv_xcalloc(1, sizeof(*bt));
    bt->pool = pool;
    bt->sealer = sealer;
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
