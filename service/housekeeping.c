/* housekeeping.c: the service's periodic chores, on one thread that sleeps
 * on a condition variable so shutdown never waits a whole interval. */
#include "cardvault/housekeeping.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"

struct cv_housekeeping {
    struct cv_store *store;
    unsigned interval_s;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
};

static void purge_once(struct cv_housekeeping *hk)
{
    int64_t deleted = 0;
    if (cv_store_idem_purge(hk->store, &deleted) != CV_OK)
        cv_log(CV_LOG_WARN, "idempotency_purge_failed", CV_LS("effect", "retried next interval"));
    else if (deleted > 0)
        cv_log(CV_LOG_INFO, "idempotency_purged", CV_LI("records", deleted));
}

static void *run(void *arg)
{
    struct cv_housekeeping *hk = arg;
    pthread_mutex_lock(&hk->lock);
    while (!hk->stopping) {
        pthread_mutex_unlock(&hk->lock);
        purge_once(hk);
        pthread_mutex_lock(&hk->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += hk->interval_s;
        while (!hk->stopping && pthread_cond_timedwait(&hk->wake, &hk->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&hk->lock);
    return NULL;
}

cv_status cv_housekeeping_start(struct cv_store *store, unsigned interval_s,
                                struct cv_housekeeping **out)
{
    struct cv_housekeeping *hk = cv_xcalloc(1, sizeof(*hk));
    hk->store = store;
    hk->interval_s = interval_s == 0 ? 60 : interval_s;
    pthread_mutex_init(&hk->lock, NULL);
    pthread_cond_init(&hk->wake, NULL);
    if (pthread_create(&hk->thread, NULL, run, hk) != 0) {
        pthread_mutex_destroy(&hk->lock);
        pthread_cond_destroy(&hk->wake);
        free(hk);
        return CV_ERR_INTERNAL;
    }
    *out = hk;
    return CV_OK;
}

void cv_housekeeping_stop(struct cv_housekeeping *hk)
{
    if (hk == NULL)
        return;
    pthread_mutex_lock(&hk->lock);
    hk->stopping = true;
    pthread_cond_signal(&hk->wake);
    pthread_mutex_unlock(&hk->lock);
    pthread_join(hk->thread, NULL);
    pthread_mutex_destroy(&hk->lock);
    pthread_cond_destroy(&hk->wake);
    free(hk);
}
