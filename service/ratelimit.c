/* ratelimit.c: token buckets in a fixed, striped table. Keys are hashed with
 * a per-process random seed so nobody can aim many keys at one slot. A bucket
 * that gets recycled starts full again: the table size bounds how many
 * distinct keys are tracked at full precision (4096 by default), which is
 * far above the keys one instance serves. cv_ratelimit_auth_outcome is the
 * policy of the failed-authentication budget: it counts and throttles
 * failures only, so a valid key is never refused for what others did. */
#include "cardvault/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/secbuf.h"

#define STRIPES 64
#define PROBE   4

struct bucket {
    uint64_t hash; /* 0: empty */
    double tokens;
    double last_s;
};

struct cv_ratelimit {
    double rate;
    double burst;
    size_t slots;
    uint64_t seed;
    struct bucket *b;
    pthread_mutex_t locks[STRIPES];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t hash_key(uint64_t seed, const char *key)
{
    /* FNV-1a, seeded, then a final avalanche (splitmix64). */
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h == 0 ? 1 : h;
}

struct cv_ratelimit *cv_ratelimit_new(double rate_per_s, double burst, size_t slots)
{
    struct cv_ratelimit *rl = cv_xcalloc(1, sizeof(*rl));
    rl->rate = rate_per_s;
    rl->burst = burst < 1 ? 1 : burst;
    rl->slots = slots < STRIPES * PROBE ? STRIPES * PROBE : slots;
    rl->slots -= rl->slots % (STRIPES * PROBE); /* a probe window never crosses a stripe */
    rl->b = cv_xcalloc(rl->slots, sizeof(*rl->b));
    if (cv_random_bytes(&rl->seed, sizeof(rl->seed)) != CV_OK)
        rl->seed = (uint64_t)time(NULL);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    return rl;
}

void cv_ratelimit_free(struct cv_ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    free(rl->b);
    free(rl);
}

bool cv_ratelimit_take(struct cv_ratelimit *rl, const char *key, bool consume,
                       unsigned *retry_after_s)
{
    if (rl == NULL || rl->rate <= 0)
        return true;
    uint64_t h = hash_key(rl->seed, key);
    size_t window = (size_t)(h % (rl->slots / PROBE)) * PROBE;
    size_t per_stripe = rl->slots / STRIPES;
    pthread_mutex_t *lock = &rl->locks[window / per_stripe];
    double t = now_s();
    bool ok;
    pthread_mutex_lock(lock);
    struct bucket *b = NULL, *oldest = &rl->b[window];
    for (size_t i = window; i < window + PROBE; i++) {
        if (rl->b[i].hash == h) {
            b = &rl->b[i];
            break;
        }
        if (rl->b[i].last_s < oldest->last_s)
            oldest = &rl->b[i];
    }
    if (b == NULL) {
        b = oldest;
        b->hash = h;
        b->tokens = rl->burst;
        b->last_s = t;
    }
    b->tokens = fmin(rl->burst, b->tokens + (t - b->last_s) * rl->rate);
    b->last_s = t;
    ok = b->tokens >= 1.0;
    if (ok && consume)
        b->tokens -= 1.0;
    if (!ok && retry_after_s != NULL) {
        double wait = (1.0 - b->tokens) / rl->rate;
        *retry_after_s = wait < 1.0 ? 1u : (unsigned)ceil(wait);
    }
    pthread_mutex_unlock(lock);
    return ok;
}

cv_status cv_ratelimit_auth_outcome(struct cv_ratelimit *failures, const char *client,
                                    cv_status auth_st, unsigned *retry_after_s)
{
    if (auth_st != CV_ERR_UNAUTHENTICATED)
        return auth_st;
    return cv_ratelimit_take(failures, client, true, retry_after_s) ? CV_ERR_UNAUTHENTICATED
                                                                    : CV_ERR_RATE_LIMITED;
}
