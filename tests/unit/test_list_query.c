/* test_list_query.c: the strict query parser of GET /v1/tokens and its
 * cursor. Unknown, repeated and malformed parameters are refused (a typo
 * must not list everything), a cursor is read back only when it is exactly
 * one this service writes, and the first error sticks. */
#include "cardvault/list_query.h"

#include <string.h>

#include "check.h"

#define TOK "tok_4eC39HqLyjWDarjtT1zdp7"
#define FP  "fp_0000000000000000000001"

/* Parses "name=value" pairs (a NULL value: the part had no '='). */
static cv_status parse(struct cv_list_req *q, const char *const *pairs, size_t n)
{
    cv_list_query_init(q);
    for (size_t i = 0; i + 1 < n + 1 && i < n; i += 2)
        (void)cv_list_query_add(q, pairs[i], pairs[i + 1]);
    return cv_list_query_finish(q);
}

static void empty_query_takes_the_defaults(void)
{
    struct cv_list_req q;
    CHECK_EQ_INT(parse(&q, NULL, 0), CV_OK);
    CHECK_EQ_INT(q.limit, CV_LIST_LIMIT_DEFAULT);
    CHECK(!q.has_cursor && q.fingerprint[0] == '\0' && q.meta_key[0] == '\0');
    CHECK(!q.has_created_gte && !q.has_created_lt);
}

static void every_parameter_is_read(void)
{
    struct cv_list_req q;
    char cursor[CV_LIST_CURSOR_LEN + 1];
    CHECK(cv_list_cursor_encode(1764900000123456LL, TOK, cursor));
    const char *pairs[] = {"limit",
                           "100",
                           "cursor",
                           cursor,
                           "fingerprint",
                           FP,
                           "created[gte]",
                           "1700000000",
                           "created[lt]",
                           "1800000000",
                           "metadata[customer_id]",
                           "cus_1"};
    CHECK_EQ_INT(parse(&q, pairs, 12), CV_OK);
    CHECK_EQ_INT(q.limit, 100);
    CHECK(q.has_cursor && q.after_created_us == 1764900000123456LL &&
          strcmp(q.after_token, TOK) == 0);
    CHECK(strcmp(q.fingerprint, FP) == 0);
    CHECK(q.has_created_gte && q.created_gte == 1700000000 && q.has_created_lt &&
          q.created_lt == 1800000000);
    CHECK(strcmp(q.meta_key, "customer_id") == 0 && strcmp(q.meta_value, "cus_1") == 0);
}

static void unknown_repeated_and_malformed_parameters_are_refused(void)
{
    static const struct {
        const char *name, *value;
        const char *name2, *value2;
        cv_status st;
    } cases[] = {
        {"limt", "5", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"LIMIT", "5", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "5", "limit", "5", CV_ERR_INVALID_LIST_QUERY},
        {"limit", NULL, NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "0", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "101", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "010", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "+5", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "5 ", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"limit", "99999999999999999999", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"fingerprint", "fp_short", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"fingerprint", TOK, NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"created[gte]", "-1", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"created[gte]", "1.5", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"created[lt]", "253402300800", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"created[gt]", "1", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"created", "1", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[]", "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[a", "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[a]x", "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[a b]", "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[cvv]", "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"metadata[a]", "x", "metadata[b]", "y", CV_ERR_INVALID_LIST_QUERY},
        {"metadata[a]", "x", "metadata[a]", "x", CV_ERR_INVALID_LIST_QUERY},
        {NULL, "x", NULL, NULL, CV_ERR_INVALID_LIST_QUERY},
        {"cursor", "cur_", NULL, NULL, CV_ERR_INVALID_CURSOR},
        {"cursor", "", NULL, NULL, CV_ERR_INVALID_CURSOR},
        /* the first error sticks, whatever follows */
        {"cursor", "x", "bogus", "1", CV_ERR_INVALID_CURSOR},
        {"bogus", "1", "cursor", "x", CV_ERR_INVALID_LIST_QUERY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_list_req q;
        cv_list_query_init(&q);
        (void)cv_list_query_add(&q, cases[i].name, cases[i].value);
        if (cases[i].name2 != NULL)
            (void)cv_list_query_add(&q, cases[i].name2, cases[i].value2);
        cv_status st = cv_list_query_finish(&q);
        if (st != cases[i].st)
            fprintf(stderr, "  case %zu: %s\n", i, cv_status_name(st));
        CHECK_EQ_INT(st, cases[i].st);
    }
    /* a value over the metadata limit */
    char big[CV_META_VALUE_MAX + 2];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct cv_list_req q;
    cv_list_query_init(&q);
    CHECK_EQ_INT(cv_list_query_add(&q, "metadata[k]", big), CV_ERR_INVALID_LIST_QUERY);
    big[CV_META_VALUE_MAX] = '\0';
    cv_list_query_init(&q);
    CHECK_EQ_INT(cv_list_query_add(&q, "metadata[k]", big), CV_OK);
}

static void cursor_round_trips(void)
{
    char c[CV_LIST_CURSOR_LEN + 1];
    int64_t us = -1;
    char tok[CV_TOKEN_LEN + 1];
    const int64_t times[] = {0, 1, 1764900000000000LL, 253402300799999999LL};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        CHECK(cv_list_cursor_encode(times[i], TOK, c));
        CHECK_EQ_INT(strlen(c), CV_LIST_CURSOR_LEN);
        CHECK(strncmp(c, "cur_", 4) == 0);
        CHECK_EQ_INT(cv_list_cursor_decode(c, strlen(c), &us, tok), CV_OK);
        CHECK_EQ_INT(us, times[i]);
        CHECK(strcmp(tok, TOK) == 0);
    }
    CHECK(!cv_list_cursor_encode(-1, TOK, c));
    CHECK(!cv_list_cursor_encode(0, "tok_short", c));
    CHECK(!cv_list_cursor_encode(0, NULL, c));
}

static void cursor_decode_refuses_anything_else(void)
{
    char c[CV_LIST_CURSOR_LEN + 1];
    char bad[CV_LIST_CURSOR_LEN + 2];
    int64_t us = 7;
    char tok[CV_TOKEN_LEN + 1] = "unchanged";
    CHECK(cv_list_cursor_encode(1764900000000000LL, TOK, c));
    /* each single-byte change that leaves the alphabet is refused */
    const char *swaps = "G-_/ %\x01\xff";
    for (size_t pos = 0; pos < CV_LIST_CURSOR_LEN; pos++) {
        for (const char *s = swaps; *s != '\0'; s++) {
            memcpy(bad, c, sizeof(c));
            if (c[pos] == *s)
                continue;
            bad[pos] = *s;
            if (pos >= 4 && pos < 20 && *s == 'G')
                CHECK_EQ_INT(cv_list_cursor_decode(bad, CV_LIST_CURSOR_LEN, &us, tok),
                             CV_ERR_INVALID_CURSOR);
            if (*s != 'G')
                CHECK_EQ_INT(cv_list_cursor_decode(bad, CV_LIST_CURSOR_LEN, &us, tok),
                             CV_ERR_INVALID_CURSOR);
        }
    }
    us = 7;
    memcpy(tok, "unchanged", sizeof("unchanged"));
    memcpy(bad, c, sizeof(c));
    bad[5] = 'A'; /* uppercase hex: not a spelling we write */
    CHECK_EQ_INT(cv_list_cursor_decode(bad, CV_LIST_CURSOR_LEN, &us, tok), CV_ERR_INVALID_CURSOR);
    CHECK_EQ_INT(cv_list_cursor_decode(c, CV_LIST_CURSOR_LEN - 1, &us, tok), CV_ERR_INVALID_CURSOR);
    memcpy(bad, c, sizeof(c));
    bad[CV_LIST_CURSOR_LEN] = 'x';
    CHECK_EQ_INT(cv_list_cursor_decode(bad, CV_LIST_CURSOR_LEN + 1, &us, tok),
                 CV_ERR_INVALID_CURSOR);
    CHECK_EQ_INT(cv_list_cursor_decode("cur_ffffffffffffffff4eC39HqLyjWDarjtT1zdp7",
                                       CV_LIST_CURSOR_LEN, &us, tok),
                 CV_ERR_INVALID_CURSOR); /* past year 9999 */
    CHECK_EQ_INT(us, 7);                 /* nothing written on refusal */
    CHECK(strcmp(tok, "unchanged") == 0);
}

int main(void)
{
    RUN(empty_query_takes_the_defaults);
    RUN(every_parameter_is_read);
    RUN(unknown_repeated_and_malformed_parameters_are_refused);
    RUN(cursor_round_trips);
    RUN(cursor_decode_refuses_anything_else);
    return check_summary("list_query");
}
