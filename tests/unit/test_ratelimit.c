/* test_ratelimit.c: ratelimit.c's token buckets: a burst is allowed and then
 * refused with a Retry-After of at least one second, a check without consume
 * takes nothing, keys do not share a bucket, rate 0 disables the limit, and
 * a full table recycles buckets instead of growing; the auth-failure budget
 * counts and throttles failures only (a valid key and a stale key cache's
 * 503 take nothing). */
#include "cardvault/ratelimit.h"

#include <stdio.h>

#include "check.h"

static void burst_then_refused_with_retry_after(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0.5, 3, 0);
    unsigned ra = 0;
    for (int i = 0; i < 3; i++)
        CHECK(cv_ratelimit_take(rl, "k", true, &ra));
    CHECK(!cv_ratelimit_take(rl, "k", true, &ra));
    CHECK(ra >= 1 && ra <= 2); /* 0.5/s: one token within 2 s */
    cv_ratelimit_free(rl);
}

static void check_without_consume_takes_nothing(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0.01, 1, 0);
    for (int i = 0; i < 10; i++)
        CHECK(cv_ratelimit_take(rl, "k", false, NULL));
    CHECK(cv_ratelimit_take(rl, "k", true, NULL));
    CHECK(!cv_ratelimit_take(rl, "k", false, NULL));
    cv_ratelimit_free(rl);
}

static void keys_have_their_own_buckets(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0.01, 1, 0);
    CHECK(cv_ratelimit_take(rl, "a", true, NULL));
    CHECK(!cv_ratelimit_take(rl, "a", true, NULL));
    CHECK(cv_ratelimit_take(rl, "b", true, NULL));
    cv_ratelimit_free(rl);
}

static void rate_zero_disables(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0, 1, 0);
    for (int i = 0; i < 100; i++)
        CHECK(cv_ratelimit_take(rl, "k", true, NULL));
    cv_ratelimit_free(rl);
    CHECK(cv_ratelimit_take(NULL, "k", true, NULL));
}

static void full_table_recycles(void)
{
    /* far more keys than slots: every new key still gets a fresh bucket */
    struct cv_ratelimit *rl = cv_ratelimit_new(0.01, 1, 256);
    char key[32];
    int allowed = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        allowed += cv_ratelimit_take(rl, key, true, NULL);
    }
    CHECK_EQ_INT(allowed, 5000);
    cv_ratelimit_free(rl);
}

static void valid_key_passes_an_empty_failure_bucket(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0.01, 2, 0);
    unsigned ra = 0;
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.1", CV_ERR_UNAUTHENTICATED, &ra),
                 CV_ERR_UNAUTHENTICATED);
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.1", CV_ERR_UNAUTHENTICATED, &ra),
                 CV_ERR_UNAUTHENTICATED);
    /* empty: the next failure is throttled, with a wait */
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.1", CV_ERR_UNAUTHENTICATED, &ra),
                 CV_ERR_RATE_LIMITED);
    CHECK(ra >= 1);
    /* a valid key from the same address is never refused, and takes nothing */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.1", CV_OK, &ra), CV_OK);
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.1", CV_ERR_UNAUTHENTICATED, &ra),
                 CV_ERR_RATE_LIMITED);
    /* another address has its own budget */
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "10.0.0.2", CV_ERR_UNAUTHENTICATED, &ra),
                 CV_ERR_UNAUTHENTICATED);
    cv_ratelimit_free(rl);
}

static void stale_key_cache_takes_no_failure_token(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0.01, 1, 0);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "a", CV_ERR_DB_UNAVAILABLE, NULL),
                     CV_ERR_DB_UNAVAILABLE);
        CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "a", CV_ERR_INTERNAL, NULL), CV_ERR_INTERNAL);
    }
    /* the bucket is still full: the first real failure is a 401 */
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "a", CV_ERR_UNAUTHENTICATED, NULL),
                 CV_ERR_UNAUTHENTICATED);
    CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "a", CV_ERR_UNAUTHENTICATED, NULL),
                 CV_ERR_RATE_LIMITED);
    cv_ratelimit_free(rl);
}

static void failure_budget_off_never_throttles(void)
{
    struct cv_ratelimit *rl = cv_ratelimit_new(0, 0, 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(cv_ratelimit_auth_outcome(rl, "a", CV_ERR_UNAUTHENTICATED, NULL),
                     CV_ERR_UNAUTHENTICATED);
    cv_ratelimit_free(rl);
}

int main(void)
{
    RUN(burst_then_refused_with_retry_after);
    RUN(check_without_consume_takes_nothing);
    RUN(keys_have_their_own_buckets);
    RUN(rate_zero_disables);
    RUN(full_table_recycles);
    RUN(valid_key_passes_an_empty_failure_bucket);
    RUN(stale_key_cache_takes_no_failure_token);
    RUN(failure_budget_off_never_throttles);
    return check_summary("ratelimit");
}
