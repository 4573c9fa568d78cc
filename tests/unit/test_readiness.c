/* test_readiness.c: the readiness cache. A second caller within the period
 * gets the first answer without a probe; after the period a new probe runs;
 * callers that arrive while a probe runs wait for it and share its answer
 * (one probe for all of them); a failing answer is cached like a good one. */
#include "cardvault/readiness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

struct fake {
    atomic_int probes;
    unsigned delay_ms;
    bool database_ok;
};

static void probe(const void *ctx, struct cv_readiness_report *out)
{
    struct fake *f = (struct fake *)(uintptr_t)ctx;
    atomic_fetch_add(&f->probes, 1);
    if (f->delay_ms > 0)
        usleep(f->delay_ms * 1000);
    out->database_ok = f->database_ok;
    out->kek_ok = true;
}

static void second_call_within_the_period_is_not_probed(void)
{
    struct fake f = {0, 0, true};
    struct cv_readiness *r = cv_readiness_new(1000, NULL);
    struct cv_readiness_report a, b;
    cv_readiness_check(r, probe, &f, &a);
    f.database_ok = false; /* a probe now would say otherwise */
    cv_readiness_check(r, probe, &f, &b);
    CHECK_EQ_INT(atomic_load(&f.probes), 1);
    CHECK(a.database_ok && b.database_ok && b.kek_ok);
    cv_readiness_free(r);
}

static void after_the_period_a_new_probe_runs(void)
{
    struct fake f = {0, 0, false};
    struct cv_readiness *r = cv_readiness_new(50, NULL);
    struct cv_readiness_report a, b, c;
    cv_readiness_check(r, probe, &f, &a);
    cv_readiness_check(r, probe, &f, &b); /* the failure is cached too */
    CHECK_EQ_INT(atomic_load(&f.probes), 1);
    usleep(80 * 1000);
    f.database_ok = true;
    cv_readiness_check(r, probe, &f, &c);
    CHECK_EQ_INT(atomic_load(&f.probes), 2);
    CHECK(!a.database_ok && !b.database_ok && c.database_ok);
    cv_readiness_free(r);
}

struct caller {
    struct cv_readiness *r;
    struct fake *f;
    struct cv_readiness_report got;
};

static void *call(void *arg)
{
    struct caller *c = arg;
    cv_readiness_check(c->r, probe, c->f, &c->got);
    return NULL;
}

static void concurrent_callers_share_one_probe(void)
{
    struct fake f = {0, 200, true}; /* a slow database */
    struct cv_readiness *r = cv_readiness_new(1000, NULL);
    struct caller callers[16];
    pthread_t t[16];
    for (int i = 0; i < 16; i++) {
        callers[i] = (struct caller){r, &f, {false, false, CV_REPLICATION_NOT_CHECKED}};
        CHECK(pthread_create(&t[i], NULL, call, &callers[i]) == 0);
    }
    for (int i = 0; i < 16; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&f.probes), 1);
    for (int i = 0; i < 16; i++)
        CHECK(callers[i].got.database_ok && callers[i].got.kek_ok);
    cv_readiness_free(r);
}

static void probes_are_counted_in_metrics(void)
{
    struct fake f = {0, 0, true};
    struct cv_metrics *m = cv_metrics_new();
    struct cv_readiness *r = cv_readiness_new(1000, m);
    struct cv_readiness_report a;
    for (int i = 0; i < 5; i++)
        cv_readiness_check(r, probe, &f, &a);
    size_t len = 0;
    struct cv_metrics_gauges g = {0};
    char *text = cv_metrics_render(m, &g, &len);
    CHECK(strstr(text, "\ncardvault_readiness_probes_total 1\n") != NULL);
    free(text);
    cv_readiness_free(r);
    cv_metrics_free(m);
}

int main(void)
{
    RUN(second_call_within_the_period_is_not_probed);
    RUN(after_the_period_a_new_probe_runs);
    RUN(concurrent_callers_share_one_probe);
    RUN(probes_are_counted_in_metrics);
    cv_readiness_free(NULL);
    return check_summary("readiness");
}
