/* test_pipeline.c: pg.c's pipeline helper and the group commit built on it,
 * against a real PostgreSQL (tests/integration/run.sh runs it on the
 * integration database once the HTTP suite has written tokens, with that
 * database's conninfo in CV_DB_URL). Its own rows go to temporary tables,
 * except the batcher's: token rows of an existing merchant and data key,
 * deleted at the end. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../service/pg.h"
#include "../../service/store_batch.h"
#include "../../service/store_tokens_sql.h"
#include "cardvault/log.h"
#include "check.h"

static struct cv_pg_pool *pool;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const struct cv_pg_stmt make_table = {
    "t_make", "CREATE TEMP TABLE IF NOT EXISTS pl_t (k int PRIMARY KEY, v text)",
    0,        CV_PG_ONE_OFF,
    false,    false};
static const struct cv_pg_stmt empty_table = {
    "t_empty", "DELETE FROM pl_t", 0, CV_PG_ONE_OFF, false, false};
/* prepared: the first use prepares it inside the pipeline */
static const struct cv_pg_stmt put = {
    "t_put", "INSERT INTO pl_t VALUES ($1::int, $2)", 2, CV_PG_PREPARED, false, true};
static const struct cv_pg_stmt count_s = {
    "t_count", "SELECT count(*) FROM pl_t", 0, CV_PG_PREPARED, false, false};
static const struct cv_pg_stmt bad_sql = {"t_bad", "SELEC nonsense", 0, CV_PG_PREPARED, false,
                                          true};
static const struct cv_pg_stmt suicide = {
    "t_terminate", "SELECT pg_terminate_backend(pg_backend_pid())", 0, CV_PG_ONE_OFF, false, true};

static struct cv_pg_conn *fresh_table(void)
{
    struct cv_pg_conn *c = NULL;
    if (cv_pg_acquire(pool, &c) != CV_OK)
        return NULL;
    if (cv_pg_run(c, &make_table, NULL, NULL) != CV_OK ||
        cv_pg_run(c, &empty_table, NULL, NULL) != CV_OK) {
        cv_pg_release(c);
        return NULL;
    }
    return c;
}

static int64_t rows_in_table(struct cv_pg_conn *c)
{
    PGresult *r = NULL;
    if (cv_pg_run(c, &count_s, NULL, &r) != CV_OK)
        return -1;
    int64_t n = cv_pg_get_int(r, 0, 0);
    PQclear(r);
    return n;
}

/* pl emptied, then BEGIN and s with p (set by the caller) as its first steps. */
static void begin_then(struct cv_pg_pipeline *pl, const struct cv_pg_stmt *s,
                       const struct cv_pg_params *p)
{
    cv_pg_pipeline_init(pl);
    cv_pg_pipeline_add(pl, &cv_pg_begin, NULL);
    cv_pg_pipeline_add(pl, s, p);
}

static void pipeline_runs_every_step_and_commits(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p[3];
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_pipeline_init(&pl);
    cv_pg_pipeline_add(&pl, &cv_pg_begin, NULL);
    for (int i = 0; i < 3; i++) {
        cv_pg_params_init(&p[i]);
        cv_pg_param_int(&p[i], i + 1);
        cv_pg_param_text(&p[i], "it's a 'quoted' value");
        cv_pg_pipeline_add(&pl, &put, &p[i]);
    }
    size_t counted = cv_pg_pipeline_add(&pl, &count_s, NULL);
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_OK);
    for (size_t i = 0; i < pl.n; i++)
        CHECK_EQ_INT(pl.steps[i].status, CV_OK);
    CHECK(pl.steps[counted].res != NULL && cv_pg_get_int(pl.steps[counted].res, 0, 0) == 3);
    cv_pg_pipeline_cleanup(&pl);
    /* idle, out of pipeline mode: the plain executor works on it again */
    CHECK(!cv_pg_in_transaction(c));
    CHECK_EQ_INT(rows_in_table(c), 3);
    /* the prepared statement survived: a second pipeline reuses it */
    cv_pg_pipeline_init(&pl);
    cv_pg_params_init(&p[0]);
    cv_pg_param_int(&p[0], 9);
    cv_pg_param_text(&p[0], NULL);
    cv_pg_pipeline_add(&pl, &put, &p[0]);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_OK);
    cv_pg_pipeline_cleanup(&pl);
    CHECK_EQ_INT(rows_in_table(c), 4);
    cv_pg_release(c);
}

static void failing_step_aborts_the_rest_and_nothing_commits(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p[3];
    const int keys[3] = {1, 1, 2}; /* the second is a duplicate key */
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_pipeline_init(&pl);
    cv_pg_pipeline_add(&pl, &cv_pg_begin, NULL);
    for (int i = 0; i < 3; i++) {
        cv_pg_params_init(&p[i]);
        cv_pg_param_int(&p[i], keys[i]);
        cv_pg_param_text(&p[i], "v");
        cv_pg_pipeline_add(&pl, &put, &p[i]);
    }
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_DUPLICATE);
    CHECK_EQ_INT(pl.steps[0].status, CV_OK);
    CHECK_EQ_INT(pl.steps[1].status, CV_OK);
    CHECK_EQ_INT(pl.steps[2].status, CV_ERR_DUPLICATE);
    CHECK(!pl.steps[2].aborted);
    CHECK(pl.steps[3].aborted && pl.steps[3].status != CV_OK && pl.steps[3].res == NULL);
    CHECK(pl.steps[4].aborted && pl.steps[4].status != CV_OK);
    cv_pg_pipeline_cleanup(&pl);
    /* the COMMIT never ran: the transaction is still open, and failed */
    CHECK(cv_pg_in_transaction(c));
    cv_pg_rollback(c);
    CHECK(!cv_pg_in_transaction(c));
    CHECK_EQ_INT(rows_in_table(c), 0);
    cv_pg_release(c);
}

static void failed_prepare_is_not_remembered(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    CHECK(c != NULL);
    if (c == NULL)
        return;
    for (int round = 0; round < 2; round++) {
        cv_pg_pipeline_init(&pl);
        cv_pg_pipeline_add(&pl, &count_s, NULL);
        cv_pg_pipeline_add(&pl, &bad_sql, NULL);
        cv_pg_pipeline_add(&pl, &count_s, NULL);
        /* a syntax error (42601) each time: never "no such statement" */
        CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_DB);
        CHECK_EQ_INT(pl.steps[0].status, CV_OK);
        CHECK(!pl.steps[1].aborted);
        CHECK(strcmp(cv_pg_last_sqlstate(c), "42601") == 0);
        CHECK(pl.steps[2].aborted);
        cv_pg_pipeline_cleanup(&pl);
        CHECK(!cv_pg_in_transaction(c));
    }
    CHECK_EQ_INT(rows_in_table(c), 0);
    cv_pg_release(c);
}

static void bad_parameters_send_nothing(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1); /* one of two */
    begin_then(&pl, &put, &p);
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_INTERNAL);
    cv_pg_pipeline_cleanup(&pl);
    CHECK(!cv_pg_in_transaction(c));
    /* an overflowing pipeline is refused too */
    cv_pg_pipeline_init(&pl);
    for (int i = 0; i <= CV_PG_PIPELINE_MAX; i++)
        cv_pg_pipeline_add(&pl, &count_s, NULL);
    CHECK(pl.overflow && pl.n == CV_PG_PIPELINE_MAX);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_INTERNAL);
    cv_pg_pipeline_cleanup(&pl);
    CHECK_EQ_INT(rows_in_table(c), 0);
    cv_pg_release(c);
}

/* The server ends the session at a step before the COMMIT, and says so
 * (57P01): the COMMIT cannot have run, so the outcome is known (nothing
 * committed), not unconfirmed. */
static void session_ended_by_the_server_before_commit_is_unavailable(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1);
    cv_pg_param_text(&p, "v");
    begin_then(&pl, &put, &p);
    cv_pg_pipeline_add(&pl, &suicide, NULL);
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_DB_UNAVAILABLE);
    cv_pg_pipeline_cleanup(&pl);
    cv_pg_rollback(c);
    cv_pg_release(c); /* closes it; the next acquire reconnects */
    c = fresh_table();
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_EQ_INT(rows_in_table(c), 0);
        cv_pg_release(c);
    }
}

/* The server ends the session while the COMMIT runs (a deferred trigger
 * fires at COMMIT and terminates its own backend): whether it committed is
 * not known to the client, so it is unconfirmed, never unavailable (which a
 * caller could retry) nor a success. */
static const struct cv_pg_stmt make_dying_table[] = {
    {"t_die_table", "CREATE TEMP TABLE pl_die (k int)", 0, CV_PG_ONE_OFF, false, false},
    {"t_die_fn",
     "CREATE FUNCTION pg_temp.pl_die() RETURNS trigger LANGUAGE plpgsql AS "
     "'BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
     "RETURN NULL; END'",
     0, CV_PG_ONE_OFF, false, false},
    {"t_die_trigger",
     "CREATE CONSTRAINT TRIGGER pl_die_at_commit AFTER INSERT ON pl_die "
     "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.pl_die()",
     0, CV_PG_ONE_OFF, false, false},
};
static const struct cv_pg_stmt put_dying = {
    "t_put_die", "INSERT INTO pl_die VALUES ($1::int)", 1, CV_PG_PREPARED, false, true};
static const struct cv_pg_stmt backend_pid = {
    "t_pid", "SELECT pg_backend_pid()", 0, CV_PG_ONE_OFF, false, false};

static void session_ended_during_commit_is_unconfirmed(void)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    CHECK(cv_pg_acquire(pool, &c) == CV_OK);
    if (c == NULL)
        return;
    for (size_t i = 0; i < sizeof(make_dying_table) / sizeof(make_dying_table[0]); i++)
        CHECK_EQ_INT(cv_pg_run(c, &make_dying_table[i], NULL, NULL), CV_OK);
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1);
    begin_then(&pl, &put_dying, &p);
    size_t commit = cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_COMMIT_UNCONFIRMED);
    CHECK_EQ_INT(pl.steps[1].status, CV_OK);
    CHECK(pl.steps[commit].status != CV_OK && !pl.steps[commit].aborted);
    cv_pg_pipeline_cleanup(&pl);
    cv_pg_rollback(c); /* nothing to roll back on a dead session */
    cv_pg_release(c);
}

/* A step after the COMMIT is refused before anything is sent: its failure
 * would hide that the transaction committed. */
static void step_after_commit_is_refused(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1);
    cv_pg_param_text(&p, "v");
    begin_then(&pl, &put, &p);
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    cv_pg_pipeline_add(&pl, &count_s, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(c, &pl), CV_ERR_INTERNAL);
    cv_pg_pipeline_cleanup(&pl);
    CHECK(!cv_pg_in_transaction(c));
    CHECK_EQ_INT(rows_in_table(c), 0);
    cv_pg_release(c);
}

/* A session a pipeline finds broken retires the pool's idle sessions
 * opened before it (the pool's generation): none of them is handed out
 * again, each is replaced by a new session at its checkout. */
static void broken_pipeline_session_retires_older_sessions(void)
{
    struct cv_pg_conn *held[4] = {NULL, NULL, NULL, NULL};
    int64_t old_pids[4] = {0, 0, 0, 0};
    size_t n_held = 0;
    PGresult *r = NULL;
    /* every slot of the pool open, and its backend known */
    for (; n_held < 4; n_held++) {
        if (cv_pg_acquire(pool, &held[n_held]) != CV_OK)
            break;
        if (cv_pg_run(held[n_held], &backend_pid, NULL, &r) == CV_OK) {
            old_pids[n_held] = cv_pg_get_int(r, 0, 0);
            PQclear(r);
        }
    }
    CHECK_EQ_INT(n_held, 4);
    for (size_t i = 1; i < n_held; i++)
        cv_pg_release(held[i]);
    if (n_held == 0)
        return;
    struct cv_pg_pipeline pl;
    cv_pg_pipeline_init(&pl);
    cv_pg_pipeline_add(&pl, &suicide, NULL);
    CHECK_EQ_INT(cv_pg_pipeline_run(held[0], &pl), CV_ERR_DB_UNAVAILABLE);
    cv_pg_pipeline_cleanup(&pl);
    cv_pg_release(held[0]);
    for (size_t i = 0; i < n_held; i++) {
        held[i] = NULL;
        CHECK(cv_pg_acquire(pool, &held[i]) == CV_OK);
        if (held[i] == NULL)
            continue;
        CHECK(cv_pg_run(held[i], &backend_pid, NULL, &r) == CV_OK);
        if (r == NULL)
            continue;
        int64_t pid = cv_pg_get_int(r, 0, 0);
        PQclear(r);
        r = NULL;
        for (size_t k = 0; k < n_held; k++)
            CHECK(pid != old_pids[k]);
    }
    for (size_t i = 0; i < n_held; i++)
        cv_pg_release(held[i]);
}

/* -- synchronous replication (a superuser's session only: it names a
 * standby that does not exist for the length of the test, then resets it) */

static const struct cv_pg_stmt am_superuser = {
    "t_super", "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
    0,         CV_PG_ONE_OFF,
    false,     false};
static const struct cv_pg_stmt name_standby = {
    "t_name_standby",
    "ALTER SYSTEM SET synchronous_standby_names = 'pl_absent_standby'",
    0,
    CV_PG_ONE_OFF,
    false,
    false};
static const struct cv_pg_stmt unname_standby = {"t_unname_standby",
                                                 "ALTER SYSTEM RESET synchronous_standby_names",
                                                 0,
                                                 CV_PG_ONE_OFF,
                                                 false,
                                                 false};
static const struct cv_pg_stmt reload = {
    "t_reload", "SELECT pg_reload_conf(), pg_sleep(0.3)", 0, CV_PG_ONE_OFF, false, false};
/* a real table: a transaction that wrote only temporary tables writes no
 * WAL before its commit record, and does not wait for the standby */
static const struct cv_pg_stmt make_sync_table = {
    "t_sync_table", "CREATE TABLE IF NOT EXISTS pl_syncrep (k int)", 0, CV_PG_ONE_OFF, false,
    false};
static const struct cv_pg_stmt drop_sync_table = {
    "t_sync_drop", "DROP TABLE IF EXISTS pl_syncrep", 0, CV_PG_ONE_OFF, false, false};
static const struct cv_pg_stmt put_sync = {
    "t_put_sync", "INSERT INTO pl_syncrep VALUES ($1::int)", 1, CV_PG_PREPARED, false, false};
static const struct cv_pg_stmt count_sync = {
    "t_count_sync", "SELECT count(*) FROM pl_syncrep", 0, CV_PG_ONE_OFF, false, false};
static const struct cv_pg_stmt cancel_waiters = {
    "t_cancel_syncrep",
    "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
    0,
    CV_PG_ONE_OFF,
    false,
    false};

struct canceller {
    atomic_bool done; /* set once the pipeline has returned */
    int cancels;
};

/* Cancels the backends waiting for the standby until one was cancelled,
 * then waits for the pipeline to return. Failsafe: after 30 s it lifts the
 * standby requirement itself, which releases every waiter, so the rest of
 * the suite never waits for the absent standby. */
static void *cancel_syncrep(void *arg)
{
    struct canceller *k = arg;
    struct cv_pg_conn *c = NULL;
    if (cv_pg_acquire(pool, &c) != CV_OK)
        return NULL;
    for (int i = 0; i < 300 && !atomic_load(&k->done); i++) {
        PGresult *r = NULL;
        sleep_ms(100);
        if (k->cancels == 0 && cv_pg_run(c, &cancel_waiters, NULL, &r) == CV_OK) {
            k->cancels += (int)cv_pg_get_int(r, 0, 0);
            PQclear(r);
        }
    }
    if (!atomic_load(&k->done) && cv_pg_run(c, &unname_standby, NULL, NULL) == CV_OK &&
        cv_pg_run(c, &reload, NULL, NULL) == CV_OK)
        fprintf(stderr,
                "# the pipeline's COMMIT was never cancelled: standby requirement lifted\n");
    cv_pg_release(c);
    return NULL;
}

static void cancelled_standby_wait_in_pipeline_is_unconfirmed(void)
{
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    CHECK(cv_pg_acquire(pool, &c) == CV_OK);
    if (c == NULL)
        return;
    CHECK(cv_pg_run(c, &am_superuser, NULL, &r) == CV_OK);
    bool super = r != NULL && PQntuples(r) == 1 && cv_pg_get_bool(r, 0, 0);
    PQclear(r);
    if (!super) {
        fprintf(stderr, "# skipped: the test's role is not a superuser\n");
        cv_pg_release(c);
        return;
    }
    CHECK_EQ_INT(cv_pg_run(c, &drop_sync_table, NULL, NULL), CV_OK);
    CHECK_EQ_INT(cv_pg_run(c, &make_sync_table, NULL, NULL), CV_OK);
    CHECK_EQ_INT(cv_pg_run(c, &name_standby, NULL, NULL), CV_OK);
    CHECK_EQ_INT(cv_pg_run(c, &reload, NULL, NULL), CV_OK);

    struct canceller k;
    pthread_t th;
    atomic_init(&k.done, false);
    k.cancels = 0;
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    pthread_create(&th, NULL, cancel_syncrep, &k);
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 7);
    begin_then(&pl, &put_sync, &p);
    size_t commit = cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    cv_status st = cv_pg_pipeline_run(c, &pl);
    atomic_store(&k.done, true);
    pthread_join(th, NULL);
    CHECK(k.cancels > 0);
    CHECK_EQ_INT(st, CV_ERR_COMMIT_UNCONFIRMED);
    /* the server answered COMMIT: it committed locally */
    CHECK_EQ_INT(pl.steps[commit].status, CV_OK);
    CHECK(strcmp(cv_pg_last_sqlstate(c), "01000") == 0);
    cv_pg_pipeline_cleanup(&pl);
    CHECK(!cv_pg_in_transaction(c));

    /* the reset commits nothing (ALTER SYSTEM writes a file), so it does
     * not wait for the standby */
    CHECK_EQ_INT(cv_pg_run(c, &unname_standby, NULL, NULL), CV_OK);
    CHECK_EQ_INT(cv_pg_run(c, &reload, NULL, NULL), CV_OK);
    CHECK(cv_pg_run(c, &count_sync, NULL, &r) == CV_OK);
    if (r != NULL) {
        CHECK_EQ_INT(cv_pg_get_int(r, 0, 0), 1);
        PQclear(r);
    }
    CHECK_EQ_INT(cv_pg_run(c, &drop_sync_table, NULL, NULL), CV_OK);
    cv_pg_release(c);
}

/* -- the group commit */

struct submit {
    struct cv_batcher *bt;
    struct cv_token_row row;
    cv_status result;
};

static void *submit_one(void *arg)
{
    struct submit *s = arg;
    s->result = cv_batcher_insert_token(s->bt, &s->row, NULL, NULL, NULL);
    return NULL;
}

static void fill_row(struct cv_token_row *row, const char *merchant, int64_t dek_id, char tag)
{
    static unsigned char ct[20];
    memset(row, 0, sizeof(*row));
    snprintf(row->merchant_id, sizeof(row->merchant_id), "%s", merchant);
    snprintf(row->token, sizeof(row->token), "tok_PIPELINEtestrow%c000000", tag);
    row->format_version = 1;
    row->dek_id = dek_id;
    row->ciphertext = ct;
    row->ciphertext_len = sizeof(ct);
    snprintf(row->brand, sizeof(row->brand), "visa");
    snprintf(row->bin, sizeof(row->bin), "424242");
    snprintf(row->last4, sizeof(row->last4), "4242");
    snprintf(row->fingerprint, sizeof(row->fingerprint), "fp_PIPELINEtestrow%c000000", tag);
    snprintf(row->created_at, sizeof(row->created_at), "2026-01-01T00:00:00Z");
}

static const struct cv_pg_stmt any_key = {
    "t_any_key",
    "SELECT merchant_id, dek_id FROM tokens t JOIN data_keys d USING (dek_id) "
    "WHERE d.state <> 'destroyed' LIMIT 1",
    0,
    CV_PG_ONE_OFF,
    false,
    false};
static const struct cv_pg_stmt hold_key = {
    "t_hold_key",
    "SELECT 1 FROM data_keys WHERE dek_id = $1::bigint FOR UPDATE",
    1,
    CV_PG_ONE_OFF,
    false,
    false};
static const struct cv_pg_stmt count_test_rows = {
    "t_count_rows",
    "SELECT count(*), count(DISTINCT token) FROM tokens WHERE merchant_id = $1 "
    "AND token LIKE 'tok_PIPELINEtest%'",
    1,
    CV_PG_ONE_OFF,
    false,
    false};
static const struct cv_pg_stmt drop_test_rows = {
    "t_drop_rows",
    "DELETE FROM tokens WHERE merchant_id = $1 AND token LIKE 'tok_PIPELINEtest%'",
    1,
    CV_PG_ONE_OFF,
    false,
    false};

/* A batch of three rows, two of them the same token: the batch's pipeline
 * fails at the insert (23505), the rest of it is skipped and rolled back,
 * and the rows are retried one by one: the first two written, the
 * duplicate answered CV_ERR_DUPLICATE, as without pipelining. The batch is
 * forced by holding the data key's row: the writer's first job (alone)
 * waits on it while the others queue behind it. */
static void duplicate_in_a_batch_falls_back_row_by_row(void)
{
    struct cv_pg_conn *c = NULL, *holder = NULL;
    PGresult *r = NULL;
    char merchant[CV_MERCHANT_ID_LEN + 1] = "";
    int64_t dek_id = 0;
    struct cv_pg_params p;
    CHECK(cv_pg_acquire(pool, &c) == CV_OK);
    if (c == NULL)
        return;
    CHECK(cv_pg_run(c, &any_key, NULL, &r) == CV_OK && PQntuples(r) == 1);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        cv_pg_release(c);
        return;
    }
    cv_pg_get_text(r, 0, 0, merchant, sizeof(merchant));
    dek_id = cv_pg_get_int(r, 0, 1);
    PQclear(r);

    struct cv_batcher *bt = cv_batcher_start(pool, NULL, 1);
    CHECK(bt != NULL);
    struct submit s[4];
    const char tags[4] = {'A', 'B', 'B', 'C'};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        s[i].bt = bt;
        fill_row(&s[i].row, merchant, dek_id, tags[i]);
    }
    CHECK(cv_pg_acquire(pool, &holder) == CV_OK);
    CHECK(cv_pg_command(holder, "BEGIN") == CV_OK);
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, dek_id);
    CHECK(cv_pg_run(holder, &hold_key, &p, NULL) == CV_OK);
    pthread_create(&th[0], NULL, submit_one, &s[0]);
    sleep_ms(300); /* the writer took A alone and waits on the key */
    for (int i = 1; i < 4; i++)
        pthread_create(&th[i], NULL, submit_one, &s[i]);
    sleep_ms(300); /* B, B, C queued behind it */
    cv_pg_rollback(holder);
    cv_pg_release(holder);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cv_batcher_stop(bt);
    CHECK_EQ_INT(s[0].result, CV_OK);
    CHECK_EQ_INT(s[3].result, CV_OK);
    /* one of the two B's, whichever the retry wrote first */
    CHECK((s[1].result == CV_OK && s[2].result == CV_ERR_DUPLICATE) ||
          (s[1].result == CV_ERR_DUPLICATE && s[2].result == CV_OK));
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant);
    CHECK(cv_pg_run(c, &count_test_rows, &p, &r) == CV_OK);
    if (r != NULL) {
        CHECK_EQ_INT(cv_pg_get_int(r, 0, 0), 3);
        CHECK_EQ_INT(cv_pg_get_int(r, 0, 1), 3);
        PQclear(r);
    }
    CHECK(cv_pg_run(c, &drop_test_rows, &p, NULL) == CV_OK);
    cv_pg_release(c);
}

int main(void)
{
    const char *url = getenv("CV_DB_URL");
    char why[256];
    if (url == NULL) {
        fprintf(stderr, "test_pipeline: CV_DB_URL is not set\n");
        return 2;
    }
    cv_log_set_level(CV_LOG_WARN);
    if (cv_pg_pool_open(url, 4, &pool, why, sizeof(why)) != CV_OK) {
        fprintf(stderr, "test_pipeline: %s\n", why);
        return 2;
    }
    RUN(pipeline_runs_every_step_and_commits);
    RUN(failing_step_aborts_the_rest_and_nothing_commits);
    RUN(failed_prepare_is_not_remembered);
    RUN(bad_parameters_send_nothing);
    RUN(session_ended_by_the_server_before_commit_is_unavailable);
    RUN(session_ended_during_commit_is_unconfirmed);
    RUN(step_after_commit_is_refused);
    RUN(broken_pipeline_session_retires_older_sessions);
    RUN(cancelled_standby_wait_in_pipeline_is_unconfirmed);
    RUN(duplicate_in_a_batch_falls_back_row_by_row);
    cv_pg_pool_close(pool);
    return check_summary("pipeline");
}
