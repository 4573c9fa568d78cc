/* housekeeping.c: the service's periodic chores, on one thread that sleeps
 * on a condition variable so shutdown never waits a whole interval:
 *   - purging expired idempotency records;
 *   - purging expired tokens (ttl_seconds) in batches of PURGE_BATCH rows,
 *     one audit event per batch (the count), at most PURGE_BATCHES_MAX
 *     batches a round so one backlog never holds the thread for long;
 *   - logging the audit chain's head (audit_anchor: seq and hash), at start
 *     and every anchor interval. Log lines leave the database (to the log
 *     collector or SIEM), so a kept anchor shows a later truncation or rewrite
 *     of the trail: `cardvault audit verify --expect SEQ:HASH`. */
#include "cardvault/housekeeping.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "cardvault/audit.h"
#include "cardvault/log.h"
#include "cardvault/metrics.h"
#include "cardvault/secbuf.h"

#define PURGE_BATCH       100
#define PURGE_BATCHES_MAX 50

struct cv_housekeeping {
    struct cv_store *store;
    struct cv_metrics *metrics; /* may be NULL */
    unsigned interval_s;
    unsigned anchor_interval_s;
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
    /* Expired tokens: the row, its ciphertext and its metadata go; the
     * audit trail keeps one event per batch with the count. */
    int64_t total = 0;
    for (int b = 0; b < PURGE_BATCHES_MAX; b++) {
        if (cv_store_purge_expired(hk->store, PURGE_BATCH, &deleted) != CV_OK) {
            cv_log(CV_LOG_WARN, "token_purge_failed", CV_LS("effect", "retried next interval"));
            break;
        }
        total += deleted;
        if (deleted < PURGE_BATCH)
            break;
    }
    if (total > 0) {
        cv_metrics_count_tokens_purged(hk->metrics, (uint64_t)total);
        cv_log(CV_LOG_INFO, "tokens_purged", CV_LI("tokens", total));
    }
}

static void anchor_once(struct cv_housekeeping *hk)
{
    struct cv_audit_head head;
    char hex[2 * CV_AUDIT_HASH_BYTES + 1];
    if (cv_store_audit_head(hk->store, &head) != CV_OK || head.hash_len != CV_AUDIT_HASH_BYTES) {
        cv_log(CV_LOG_WARN, "audit_anchor_failed", CV_LS("effect", "retried next interval"));
        return;
    }
    cv_audit_hex(head.hash, CV_AUDIT_HASH_BYTES, hex);
    /* In groups of 8 hex digits: an unbroken hash can hold a run of 11 or
     * more decimal digits, which log scanners rightly treat as a possible
     * card number. `audit verify --expect` takes either form. */
    char grouped[2 * CV_AUDIT_HASH_BYTES + 2 * CV_AUDIT_HASH_BYTES / 8];
    size_t g = 0;
    for (size_t k = 0; k < 2 * CV_AUDIT_HASH_BYTES; k++) {
        if (k > 0 && k % 8 == 0)
            grouped[g++] = '-';
        grouped[g++] = hex[k];
    }
    grouped[g] = '\0';
    cv_log(CV_LOG_INFO, "audit_anchor", CV_LI("seq", head.seq), CV_LS("hash", grouped));
}

static void *run(void *arg)
{
    struct cv_housekeeping *hk = arg;
    struct timespec now, next_purge, next_anchor;
    clock_gettime(CLOCK_REALTIME, &now);
    next_purge = now; /* purge at once; the first anchor was logged at start */
    next_anchor = now;
    next_anchor.tv_sec += hk->anchor_interval_s;
    pthread_mutex_lock(&hk->lock);
    while (!hk->stopping) {
        pthread_mutex_unlock(&hk->lock);
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec >= next_purge.tv_sec) {
            purge_once(hk);
            next_purge.tv_sec = now.tv_sec + hk->interval_s;
        }
        if (now.tv_sec >= next_anchor.tv_sec) {
            anchor_once(hk);
            next_anchor.tv_sec = now.tv_sec + hk->anchor_interval_s;
        }
        pthread_mutex_lock(&hk->lock);
        struct timespec until = next_purge.tv_sec < next_anchor.tv_sec ? next_purge : next_anchor;
        while (!hk->stopping && pthread_cond_timedwait(&hk->wake, &hk->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&hk->lock);
    return NULL;
}

cv_status cv_housekeeping_start(struct cv_store *store, struct cv_metrics *metrics,
                                unsigned interval_s, unsigned anchor_interval_s,
                                struct cv_housekeeping **out)
{
    struct cv_housekeeping *hk = cv_xcalloc(1, sizeof(*hk));
    hk->store = store;
    hk->metrics = metrics;
    hk->interval_s = interval_s == 0 ? 60 : interval_s;
    hk->anchor_interval_s = anchor_interval_s == 0 ? 60 : anchor_interval_s;
    pthread_mutex_init(&hk->lock, NULL);
    pthread_cond_init(&hk->wake, NULL);
    anchor_once(hk); /* before the service answers: the head as it starts */
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
