/* cvc_hold.c: uses, lifetime, binding, capacity, wiping. */
#include <string.h>

#include "cardvault/cvc_hold.h"
#include "check.h"

static time_t fake_now = 1000000;
static time_t clock_fn(void *ctx)
{
    (void)ctx;
    return fake_now;
}

#define M1 "mer_aaaaaaaaaaaaaaaaaaaa"
#define M2 "mer_bbbbbbbbbbbbbbbbbbbb"
#define T1 "tok_aaaaaaaaaaaaaaaaaaaaaa"
#define T2 "tok_bbbbbbbbbbbbbbbbbbbbbb"

static struct cv_holds *open_holds(size_t capacity)
{
    struct cv_hold_limits lim = {1, 3, 300, 900, capacity, "b7"};
    struct cv_holds *h = NULL;
    bool locked = false;
    CHECK_EQ_INT(cv_holds_open(&lim, clock_fn, NULL, &h, &locked), CV_OK);
    return h;
}

static void put(struct cv_holds *h, const char *m, const char *t, const char *cvc, unsigned uses,
                unsigned ttl, char id[CV_HOLD_ID_MAX + 1])
{
    time_t exp = 0;
    unsigned granted = 0;
    const char *param = NULL;
    CHECK_EQ_INT(cv_holds_put(h, m, t, cvc, uses, ttl, id, &exp, &granted, &param), CV_OK);
}

static void test_one_use_by_default(void)
{
    struct cv_holds *h = open_holds(16);
    char id[CV_HOLD_ID_MAX + 1], cvc[CV_HOLD_CVC_MAX + 1];
    put(h, M1, T1, "123", 0, 0, id);
    CHECK(strncmp(id, "hold_b7_", 8) == 0);
    CHECK_EQ_INT(strlen(id), 8 + CV_HOLD_RANDOM_CHARS);
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_OK);
    CHECK(strcmp(cvc, "123") == 0);
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_ERR_HOLD_GONE);
    CHECK_EQ_INT(cvc[0], '\0');
    struct cv_hold_stats s;
    cv_holds_stats(h, &s);
    CHECK_EQ_INT(s.active, 0);
    CHECK_EQ_INT(s.created, 1);
    CHECK_EQ_INT(s.used, 1);
    cv_holds_close(h);
}

static void test_uses_and_caps(void)
{
    struct cv_holds *h = open_holds(16);
    char id[CV_HOLD_ID_MAX + 1], cvc[CV_HOLD_CVC_MAX + 1];
    put(h, M1, T1, "4321", 3, 0, id);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_OK);
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_ERR_HOLD_GONE);
    time_t exp = 0;
    unsigned granted = 0;
    const char *param = NULL;
    CHECK_EQ_INT(cv_holds_put(h, M1, T1, "123", 4, 0, id, &exp, &granted, &param),
                 CV_ERR_BAD_REQUEST);
    CHECK(param != NULL && strcmp(param, "uses") == 0);
    CHECK_EQ_INT(cv_holds_put(h, M1, T1, "123", 1, 901, id, &exp, &granted, &param),
                 CV_ERR_BAD_REQUEST);
    CHECK(param != NULL && strcmp(param, "ttl_seconds") == 0);
    static const char *const bad[] = {"12", "12345", "12a", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(cv_holds_put(h, M1, T1, bad[i], 0, 0, id, &exp, &granted, &param),
                     CV_ERR_BAD_REQUEST);
    cv_holds_close(h);
}

static void test_expiry_never_extends(void)
{
    struct cv_holds *h = open_holds(16);
    char id[CV_HOLD_ID_MAX + 1], cvc[CV_HOLD_CVC_MAX + 1];
    fake_now = 1000000;
    put(h, M1, T1, "123", 3, 10, id);
    fake_now += 9;
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_OK); /* a use does not extend it */
    fake_now += 1;
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_ERR_HOLD_GONE);
    put(h, M1, T1, "123", 0, 5, id);
    fake_now += 5;
    CHECK_EQ_INT(cv_holds_sweep(h), 1);
    struct cv_hold_stats s;
    cv_holds_stats(h, &s);
    CHECK_EQ_INT(s.active, 0);
    cv_holds_close(h);
}

static void test_bound_to_merchant_and_token(void)
{
    struct cv_holds *h = open_holds(16);
    char id[CV_HOLD_ID_MAX + 1], cvc[CV_HOLD_CVC_MAX + 1];
    put(h, M1, T1, "123", 0, 0, id);
    CHECK_EQ_INT(cv_holds_take(h, M2, T1, id, cvc), CV_ERR_HOLD_GONE);
    CHECK_EQ_INT(cv_holds_take(h, M1, T2, id, cvc), CV_ERR_HOLD_GONE);
    char other[CV_HOLD_ID_MAX + 1];
    memcpy(other, id, sizeof(other));
    other[strlen(other) - 1] = other[strlen(other) - 1] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, other, cvc), CV_ERR_HOLD_GONE);
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, "", cvc), CV_ERR_HOLD_GONE);
    /* the failed takes used nothing up */
    CHECK_EQ_INT(cv_holds_take(h, M1, T1, id, cvc), CV_OK);
    cv_holds_close(h);
}

static void test_capacity(void)
{
    struct cv_holds *h = open_holds(2);
    char id[CV_HOLD_ID_MAX + 1], id2[CV_HOLD_ID_MAX + 1];
    put(h, M1, T1, "123", 0, 10, id);
    put(h, M1, T1, "123", 0, 10, id2);
    time_t exp = 0;
    unsigned granted = 0;
    const char *param = NULL;
    CHECK_EQ_INT(cv_holds_put(h, M1, T1, "123", 0, 10, id2, &exp, &granted, &param),
                 CV_ERR_HOLDS_FULL);
    cv_holds_drop(h, id);
    put(h, M1, T1, "123", 0, 10, id2);
    cv_holds_close(h);
}

int main(void)
{
    RUN(test_one_use_by_default);
    RUN(test_uses_and_caps);
    RUN(test_expiry_never_extends);
    RUN(test_bound_to_merchant_and_token);
    RUN(test_capacity);
    return check_summary("cvc_hold");
}
