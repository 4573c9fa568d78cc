/* readiness.c: the short-lived, single-flight readiness cache (see
 * readiness.h). It knows nothing about what a probe asks: api_health.c
 * passes the probe. It must never run two probes at once, nor hold its lock
 * while a probe runs (a probe may wait seconds on the database). */
#include "cardvault/readiness.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "cardvault/secbuf.h"

struct cv_readiness {
    pthread_mutex_t lock;
    pthread_cond_t probed;
    struct cv_metrics *metrics;
    unsigned ttl_ms;
    bool probing;
    bool have; /* last is an answer */
    uint64_t at_ms;
    uint64_t generation; /* probes finished: waiters wait for the next one */
    struct cv_readiness_report last;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct cv_readiness *cv_readiness_new(unsigned ttl_ms, struct cv_metrics *metrics)
{
    struct cv_readiness *r = cv_xcalloc(1, sizeof(*r));
    r->ttl_ms = ttl_ms;
    r->metrics = metrics;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->probed, NULL);
    return r;
}

void cv_readiness_free(struct cv_readiness *r)
{
    if (r == NULL)
        return;
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->probed);
    free(r);
}

void cv_readiness_check(struct cv_readiness *r, cv_readiness_probe_fn probe, const void *ctx,
                        struct cv_readiness_report *out)
{
    pthread_mutex_lock(&r->lock);
    if (r->probing) {
        /* Someone is asking already: share their answer. */
        uint64_t gen = r->generation;
        while (r->probing && r->generation == gen)
            pthread_cond_wait(&r->probed, &r->lock);
        *out = r->last;
        pthread_mutex_unlock(&r->lock);
        return;
    }
    if (r->have && now_ms() - r->at_ms < r->ttl_ms) {
        *out = r->last;
        pthread_mutex_unlock(&r->lock);
        return;
    }
    r->probing = true;
    pthread_mutex_unlock(&r->lock);

    struct cv_readiness_report fresh = {false, false, CV_REPLICATION_NOT_CHECKED};
    probe(ctx, &fresh);
    cv_metrics_count_readiness_probe(r->metrics);

    pthread_mutex_lock(&r->lock);
    r->last = fresh;
    r->have = true;
    r->at_ms = now_ms(); /* from the end: a slow probe is not repeated at once */
    r->probing = false;
    r->generation++;
    pthread_cond_broadcast(&r->probed);
    pthread_mutex_unlock(&r->lock);
    *out = fresh;
}
