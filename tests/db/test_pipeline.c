/* test_pipeline.c: pg.c's pipeline helper and the group commit built on it,
 * against a real PostgreSQL (tests/integration/run.sh runs it on the
 * integration database once the HTTP suite has written tokens, with that
 * database's conninfo in CV_DB_URL). Its own rows go to temporary tables,
 * except the batcher's: token rows of an existing merchant and data key,
 * deleted at the end. */
#include <pthread.h>
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

static const struct cv_pg_stmt begin_s = {"BEGIN", "BEGIN", 0, CV_PG_ONE_OFF, false, false};
static const struct cv_pg_stmt commit_s = {"COMMIT", "COMMIT", 0, CV_PG_ONE_OFF, false, false};
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

static void pipeline_runs_every_step_and_commits(void)
{
    struct cv_pg_conn *c = fresh_table();
    struct cv_pg_pipeline pl;
    struct cv_pg_params p[3];
    CHECK(c != NULL);
    if (c == NULL)
        return;
    cv_pg_pipeline_init(&pl);
    cv_pg_pipeline_add(&pl, &begin_s, NULL);
    for (int i = 0; i < 3; i++) {
        cv_pg_params_init(&p[i]);
        cv_pg_param_int(&p[i], i + 1);
        cv_pg_param_text(&p[i], "it's a 'quoted' value");
        cv_pg_pipeline_add(&pl, &put, &p[i]);
    }
    size_t counted = cv_pg_pipeline_add(&pl, &count_s, NULL);
    cv_pg_pipeline_add(&pl, &commit_s, NULL);
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
    cv_pg_pipeline_add(&pl, &begin_s, NULL);
    for (int i = 0; i < 3; i++) {
        cv_pg_params_init(&p[i]);
        cv_pg_param_int(&p[i], keys[i]);
        cv_pg_param_text(&p[i], "v");
        cv_pg_pipeline_add(&pl, &put, &p[i]);
    }
    cv_pg_pipeline_add(&pl, &commit_s, NULL);
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
    cv_pg_pipeline_init(&pl);
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1); /* one of two */
    cv_pg_pipeline_add(&pl, &begin_s, NULL);
    cv_pg_pipeline_add(&pl, &put, &p);
    cv_pg_pipeline_add(&pl, &commit_s, NULL);
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
    cv_pg_pipeline_init(&pl);
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, 1);
    cv_pg_param_text(&p, "v");
    cv_pg_pipeline_add(&pl, &begin_s, NULL);
    cv_pg_pipeline_add(&pl, &put, &p);
    cv_pg_pipeline_add(&pl, &suicide, NULL);
    cv_pg_pipeline_add(&pl, &commit_s, NULL);
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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

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
    RUN(duplicate_in_a_batch_falls_back_row_by_row);
    cv_pg_pool_close(pool);
    return check_summary("pipeline");
}
