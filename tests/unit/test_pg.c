/* test_pg.c: the pure parts of pg.c, without a database: the bounded
 * parameter list (capacity checked, failure sticky, never written past), the
 * executor's refusal of a bad list, the SQLSTATE -> status mapping, bytea
 * decoding and the text[] literal builder. */
#include "../../service/pg.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "check.h"

static void params_hold_text_int_and_bytes(void)
{
    struct cv_pg_params p;
    const unsigned char raw[3] = {0, 1, 2};
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, "mer_x");
    cv_pg_param_int(&p, -42);
    cv_pg_param_bytes(&p, raw, sizeof(raw));
    cv_pg_param_text(&p, NULL);
    CHECK_EQ_INT(p.n, 4);
    CHECK(!p.failed);
    CHECK(strcmp(p.values[0], "mer_x") == 0 && p.formats[0] == 0);
    CHECK(strcmp(p.values[1], "-42") == 0);
    CHECK(p.values[2] == (const char *)raw && p.lengths[2] == 3 && p.formats[2] == 1);
    CHECK(p.values[3] == NULL);
    cv_pg_params_cleanup(&p);
}

static void params_refuse_past_capacity_and_stay_failed(void)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    for (int i = 0; i < CV_PG_INLINE_PARAMS; i++)
        cv_pg_param_int(&p, i);
    CHECK(!p.failed);
    cv_pg_param_text(&p, "one too many");
    CHECK(p.failed);
    CHECK_EQ_INT(p.n, CV_PG_INLINE_PARAMS);
    cv_pg_param_int(&p, 7); /* sticky: still nothing written */
    CHECK_EQ_INT(p.n, CV_PG_INLINE_PARAMS);
    cv_pg_params_reset(&p);
    CHECK(!p.failed && p.n == 0);
    cv_pg_params_cleanup(&p);
}

static void params_with_a_larger_capacity_use_the_heap(void)
{
    struct cv_pg_params p;
    cv_pg_params_init_cap(&p, 200);
    for (int i = 0; i < 200; i++)
        cv_pg_param_int(&p, i);
    CHECK(!p.failed);
    CHECK_EQ_INT(p.n, 200);
    CHECK(strcmp(p.values[199], "199") == 0);
    cv_pg_param_int(&p, 200);
    CHECK(p.failed);
    cv_pg_params_cleanup(&p);
    cv_pg_params_cleanup(NULL);
}

static void run_refuses_a_failed_or_miscounted_list(void)
{
    static const struct cv_pg_stmt two = {"two", "SELECT $1, $2", 2, CV_PG_PREPARED, false, false};
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, "a");
    /* one value for two parameters: refused before any connection is used */
    CHECK(cv_pg_run(NULL, &two, &p, NULL) == CV_ERR_INTERNAL);
    cv_pg_param_text(&p, "b");
    p.failed = true;
    CHECK(cv_pg_run(NULL, &two, &p, NULL) == CV_ERR_INTERNAL);
}

static void sqlstates_map_to_one_meaning_each(void)
{
    CHECK(cv_pg_status_for_sqlstate("23505") == CV_ERR_DUPLICATE);
    CHECK(cv_pg_status_for_sqlstate("23503") == CV_ERR_DB); /* foreign key: not a duplicate */
    CHECK(cv_pg_status_for_sqlstate("08006") == CV_ERR_DB_UNAVAILABLE);
    CHECK(cv_pg_status_for_sqlstate("53100") == CV_ERR_DB_UNAVAILABLE); /* disk full */
    CHECK(cv_pg_status_for_sqlstate("57P01") == CV_ERR_DB_UNAVAILABLE); /* admin shutdown */
    CHECK(cv_pg_status_for_sqlstate("57014") == CV_ERR_DB_UNAVAILABLE); /* cancelled */
    CHECK(cv_pg_status_for_sqlstate("25006") == CV_ERR_DB_UNAVAILABLE); /* read-only */
    CHECK(cv_pg_status_for_sqlstate("58030") == CV_ERR_DB_UNAVAILABLE); /* I/O */
    CHECK(cv_pg_status_for_sqlstate("42601") == CV_ERR_DB);             /* syntax */
    CHECK(cv_pg_status_for_sqlstate(NULL) == CV_ERR_DB_UNAVAILABLE);
}

static void bytea_decodes_hex_text(void)
{
    unsigned char *b = NULL;
    size_t n = 0;
    CHECK(cv_pg_decode_bytea("\\x00ff7A", &b, &n) == CV_OK);
    CHECK_EQ_INT(n, 3);
    CHECK(b != NULL && b[0] == 0x00 && b[1] == 0xff && b[2] == 0x7a);
    free(b);
    CHECK(cv_pg_decode_bytea("\\x", &b, &n) == CV_OK);
    CHECK_EQ_INT(n, 0);
    free(b);
}

static void bytea_rejects_malformed_text(void)
{
    static unsigned char sentinel[1];
    unsigned char *b = sentinel;
    size_t n = 99;
    CHECK(cv_pg_decode_bytea("00ff", &b, &n) == CV_ERR_DB); /* no \x prefix */
    CHECK(b == NULL && n == 0);
    CHECK(cv_pg_decode_bytea("\\x0", &b, &n) == CV_ERR_DB);  /* odd length */
    CHECK(cv_pg_decode_bytea("\\xzz", &b, &n) == CV_ERR_DB); /* not hex */
    CHECK(cv_pg_decode_bytea("", &b, &n) == CV_ERR_DB);
    CHECK(b == NULL);
}

static void array_literal_quotes_and_escapes(void)
{
    struct cv_buf b;
    const char *vals[4] = {"mer_a", "quo\"te", "back\\slash", NULL};
    cv_buf_init(&b, 1024);
    CHECK(cv_pg_array_literal(&b, vals, 4) == CV_OK);
    CHECK(strcmp(b.data, "{\"mer_a\",\"quo\\\"te\",\"back\\\\slash\",NULL}") == 0);
    cv_buf_reset(&b);
    CHECK(cv_pg_array_literal(&b, vals, 0) == CV_OK);
    CHECK(strcmp(b.data, "{}") == 0);
    cv_buf_cleanup(&b);
}

static void array_literal_fails_at_the_cap(void)
{
    struct cv_buf b;
    const char *vals[2] = {"0123456789", "0123456789"};
    cv_buf_init(&b, 16);
    CHECK(cv_pg_array_literal(&b, vals, 2) == CV_ERR_BODY_TOO_LARGE);
    cv_buf_cleanup(&b);
}

/* serve's rule, on every new session: synchronous_commit against the
 * synchronous standby list (blank or "" names none). */
static void durable_settings_follow_the_standby_names(void)
{
    char why[256];
    CHECK_EQ_INT(cv_pg_durable_settings_ok("on", "", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("local", "", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("remote_write", " ", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("local", "\"\"", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("on", "ANY 1 (node_2)", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("remote_apply", "*", why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("off", "", why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "synchronous_commit=off") != NULL);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("local", "ANY 1 (node_2)", why, sizeof(why)),
                 CV_ERR_CONFIG);
    CHECK(strstr(why, "synchronous_commit=local") != NULL);
    CHECK(strstr(why, "on or remote_apply") != NULL);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("remote_write", "node_2", why, sizeof(why)),
                 CV_ERR_CONFIG);
    CHECK_EQ_INT(cv_pg_durable_settings_ok("off", "node_2", why, sizeof(why)), CV_ERR_CONFIG);
}

int main(void)
{
    cv_log_to_stderr(true); /* the refused lists are logged: keep stdout for the summary */
    RUN(params_hold_text_int_and_bytes);
    RUN(params_refuse_past_capacity_and_stay_failed);
    RUN(params_with_a_larger_capacity_use_the_heap);
    RUN(run_refuses_a_failed_or_miscounted_list);
    RUN(sqlstates_map_to_one_meaning_each);
    RUN(bytea_decodes_hex_text);
    RUN(bytea_rejects_malformed_text);
    RUN(array_literal_quotes_and_escapes);
    RUN(array_literal_fails_at_the_cap);
    RUN(durable_settings_follow_the_standby_names);
    return check_summary("pg");
}
