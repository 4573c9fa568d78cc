/* card_testing.c: the tokenize path's defences against card testing: the
 * per-key and per-origin tokenize quotas (token buckets of ratelimit.c that
 * refill over an hour) and the distinct-card detector. The detector keeps a
 * fixed table of groups (key + BIN + last 4, key + BIN + expiry), each
 * named only by a seeded 64-bit hash, holding the seeded 64-bit hashes of
 * the keyed fingerprints it has seen, up to the threshold; a group whose
 * window ended is wiped (lazily, and by a sweep of a few slots on every
 * call). It must never hold or log a PAN or its middle digits: the log
 * event carries the BIN and last 4 of the card that raised it (the display
 * data PCI DSS 3.4.1 allows), never together with anything else of the
 * number. */
#include "cardvault/card_testing.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/log.h"
#include "cardvault/metrics.h"
#include "cardvault/ratelimit.h"
#include "cardvault/secbuf.h"

/* Bucket tables: far above the keys and origins one instance serves; a
 * flood of made-up origins only recycles buckets (ratelimit.h). */
#define QUOTA_SLOTS   4096
#define ORIGIN_MAX    256 /* bytes of an Origin value that name its bucket */
#define GROUP_SLOTS   4096
#define GROUP_PROBE   4
#define SWEEP_SLOTS   8 /* groups looked at for expiry on every observe */
#define SECS_PER_HOUR 3600.0

struct group {
    uint64_t id; /* 0: empty */
    double start_s;
    double last_s;
    double blocked_until_s;
    unsigned n; /* distinct cards seen this window, at most the threshold */
    bool reported;
    uint64_t cards[CV_CARD_TESTING_THRESHOLD_MAX];
};

struct cv_card_testing {
    struct cv_card_testing_limits limits;
    struct cv_metrics *metrics;
    double (*now_s)(void);
    struct cv_ratelimit *per_key;         /* keys with the read scope */
    struct cv_ratelimit *per_publishable; /* keys without it */
    struct cv_ratelimit *per_origin;
    uint64_t seed;
    pthread_mutex_t lock; /* the group table */
    size_t sweep_next;
    struct group groups[GROUP_SLOTS];
};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A quota of n an hour: n at once, then n per hour. 0 stays 0 (off). */
static struct cv_ratelimit *hourly(unsigned per_hour)
{
    return cv_ratelimit_new((double)per_hour / SECS_PER_HOUR, (double)per_hour, QUOTA_SLOTS);
}

struct cv_card_testing *cv_card_testing_new(const struct cv_card_testing_limits *limits,
                                            struct cv_metrics *metrics, double (*now_s)(void))
{
    struct cv_card_testing *ct = cv_xcalloc(1, sizeof(*ct));
    ct->limits = *limits;
    if (ct->limits.threshold > CV_CARD_TESTING_THRESHOLD_MAX)
        ct->limits.threshold = CV_CARD_TESTING_THRESHOLD_MAX;
    if (ct->limits.window_s == 0)
        ct->limits.window_s = 3600;
    ct->metrics = metrics;
    ct->now_s = now_s != NULL ? now_s : monotonic_s;
    ct->per_key = hourly(limits->key_per_hour);
    ct->per_publishable = hourly(limits->publishable_per_hour);
    ct->per_origin = hourly(limits->origin_per_hour);
    if (cv_random_bytes(&ct->seed, sizeof(ct->seed)) != CV_OK)
        ct->seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)ct;
    pthread_mutex_init(&ct->lock, NULL);
    return ct;
}

void cv_card_testing_free(struct cv_card_testing *ct)
{
    if (ct == NULL)
        return;
    cv_ratelimit_free(ct->per_key);
    cv_ratelimit_free(ct->per_publishable);
    cv_ratelimit_free(ct->per_origin);
    pthread_mutex_destroy(&ct->lock);
    cv_wipe(ct, sizeof(*ct));
    free(ct);
}

static bool can_read(const struct cv_principal *who)
{
    return (who->scopes & CV_SCOPE_READ) != 0;
}

cv_status cv_card_testing_admit(struct cv_card_testing *ct, const struct cv_principal *who,
                                const char *origin, unsigned *retry_after_s)
{
    char origin_key[ORIGIN_MAX + 1];
    unsigned wait = 0;
    *retry_after_s = 0;
    if (ct == NULL)
        return CV_OK;
    struct cv_ratelimit *keys = can_read(who) ? ct->per_key : ct->per_publishable;
    bool has_origin = origin != NULL && origin[0] != '\0';
    if (has_origin) {
        /* Scheme and host are case-insensitive: one bucket per origin. */
        size_t n = strnlen(origin, ORIGIN_MAX);
        for (size_t i = 0; i < n; i++) {
            char c = origin[i];
            origin_key[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        origin_key[n] = '\0';
    }
    /* Look first, take only when every quota has room, so a refusal by one
     * does not spend the other. */
    if (!cv_ratelimit_take(keys, who->key_prefix, false, &wait)) {
        *retry_after_s = wait;
        cv_metrics_count_tokenize_refused(ct->metrics, CV_METRICS_REFUSED_KEY_QUOTA);
        return CV_ERR_QUOTA_EXCEEDED;
    }
    if (has_origin && !cv_ratelimit_take(ct->per_origin, origin_key, false, &wait)) {
        *retry_after_s = wait;
        cv_metrics_count_tokenize_refused(ct->metrics, CV_METRICS_REFUSED_ORIGIN_QUOTA);
        return CV_ERR_QUOTA_EXCEEDED;
    }
    (void)cv_ratelimit_take(keys, who->key_prefix, true, NULL);
    if (has_origin)
        (void)cv_ratelimit_take(ct->per_origin, origin_key, true, NULL);
    return CV_OK;
}

/* Seeded 64-bit hash of the given strings, each followed by a 0 byte so
 * ("ab","c") and ("a","bc") differ: FNV-1a, then a splitmix64 finish. The
 * seed is random per process, so nobody outside can aim values at a slot. */
static uint64_t hash_parts(uint64_t seed, const char *const *parts, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t k = 0; k < n; k++) {
        for (const unsigned char *p = (const unsigned char *)parts[k]; *p != '\0'; p++) {
            h ^= *p;
            h *= 1099511628211ULL;
        }
        h *= 1099511628211ULL; /* the separator */
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h == 0 ? 1 : h;
}

static bool expired(const struct cv_card_testing *ct, const struct group *g, double now)
{
    return now - g->start_s >= (double)ct->limits.window_s;
}

/* A window ended: forget its cards (the block, if any, outlives it). */
static void restart_window(struct group *g, double now)
{
    cv_wipe(g->cards, sizeof(g->cards));
    g->n = 0;
    g->reported = false;
    g->start_s = now;
}

/* Wipes a few groups whose window and block are over. Under the lock. */
static void sweep(struct cv_card_testing *ct, double now)
{
    for (int k = 0; k < SWEEP_SLOTS; k++) {
        struct group *g = &ct->groups[ct->sweep_next];
        ct->sweep_next = (ct->sweep_next + 1) % GROUP_SLOTS;
        if (g->id != 0 && expired(ct, g, now) && now >= g->blocked_until_s)
            cv_wipe(g, sizeof(*g));
    }
}

/* Which slot to recycle first: an empty one, then one not blocking, then
 * a blocking one (an attacker who floods the table with made-up groups
 * should lose his own block last). */
static int recycle_rank(const struct group *g, double now)
{
    if (g->id == 0)
        return 0;
    return now < g->blocked_until_s ? 2 : 1;
}

/* The group named id, found or made (recycling the least recently used slot
 * of its probe window, by recycle_rank). Under the lock. */
static struct group *group_of(struct cv_card_testing *ct, uint64_t id, double now)
{
    size_t window = (size_t)(id % (GROUP_SLOTS / GROUP_PROBE)) * GROUP_PROBE;
    struct group *victim = &ct->groups[window];
    for (size_t i = window; i < window + GROUP_PROBE; i++) {
        struct group *g = &ct->groups[i];
        if (g->id == id) {
            if (expired(ct, g, now))
                restart_window(g, now);
            return g;
        }
        int rank = recycle_rank(g, now);
        int best = recycle_rank(victim, now);
        if (rank < best || (rank == best && g->last_s < victim->last_s))
            victim = g;
    }
    cv_wipe(victim, sizeof(*victim));
    victim->id = id;
    victim->start_s = now;
    victim->last_s = now;
    return victim;
}

/* Adds the card to g; true when this card made the group reach the
 * threshold (the one moment the signal is raised per window). */
static bool count_card(struct cv_card_testing *ct, struct group *g, uint64_t card, double now)
{
    g->last_s = now;
    for (unsigned i = 0; i < g->n; i++)
        if (g->cards[i] == card)
            return false;
    if (g->n < ct->limits.threshold)
        g->cards[g->n++] = card;
    if (g->n < ct->limits.threshold || g->reported)
        return false;
    g->reported = true;
    return true;
}

static void report(const struct cv_card_testing *ct, const struct cv_card_testing_card *card,
                   enum cv_metrics_card_signal signal, bool blocking)
{
    cv_metrics_count_card_testing(ct->metrics, signal);
    bool by_last4 = signal == CV_METRICS_SIGNAL_BIN_LAST4;
    /* BIN and last 4 only, as separate fields: never the middle digits. */
    cv_log(CV_LOG_WARN, "card_testing_suspected", CV_LS("request_id", card->request_id),
           CV_LS("merchant_id", card->who->merchant_id), CV_LS("key_prefix", card->who->key_prefix),
           CV_LS("signal", by_last4 ? "bin_last4" : "bin_expiry"), CV_LS("bin", card->bin),
           CV_LS("last4", by_last4 ? card->last4 : NULL),
           CV_LI("distinct_cards", ct->limits.threshold), CV_LI("window_s", ct->limits.window_s),
           CV_LB("blocked", blocking));
}

static unsigned whole_seconds(double s)
{
    return s < 1.0 ? 1u : (unsigned)ceil(s);
}

cv_status cv_card_testing_observe(struct cv_card_testing *ct,
                                  const struct cv_card_testing_card *card, unsigned *retry_after_s)
{
    char expiry[16];
    *retry_after_s = 0;
    if (ct == NULL || ct->limits.threshold == 0)
        return CV_OK;
    snprintf(expiry, sizeof(expiry), "%02d/%04d", card->exp_month, card->exp_year);
    const char *last4_parts[] = {"bin+last4", card->who->key_prefix, card->bin, card->last4};
    const char *expiry_parts[] = {"bin+expiry", card->who->key_prefix, card->bin, expiry};
    const char *card_parts[] = {"card", card->fingerprint};
    uint64_t by_last4 = hash_parts(ct->seed, last4_parts, 4);
    uint64_t by_expiry = hash_parts(ct->seed, expiry_parts, 4);
    uint64_t id = hash_parts(ct->seed, card_parts, 2);
    bool may_block = ct->limits.block && !can_read(card->who);
    bool last4_signal = false, expiry_signal = false;
    cv_status st = CV_OK;

    pthread_mutex_lock(&ct->lock);
    double now = ct->now_s();
    sweep(ct, now);
    struct group *g = group_of(ct, by_last4, now);
    if (may_block && now < g->blocked_until_s) {
        /* Flagged: this key's cards with this BIN and last 4 wait the block out. */
        g->last_s = now;
        *retry_after_s = whole_seconds(g->blocked_until_s - now);
        st = CV_ERR_QUOTA_EXCEEDED;
        goto out;
    }
    last4_signal = count_card(ct, g, id, now);
    if (last4_signal && may_block)
        g->blocked_until_s = now + (double)ct->limits.window_s;
    expiry_signal = count_card(ct, group_of(ct, by_expiry, now), id, now);
out:
    pthread_mutex_unlock(&ct->lock);
    cv_wipe(expiry, sizeof(expiry));
    /* Logged outside the lock; once per group and window. */
    if (last4_signal)
        report(ct, card, CV_METRICS_SIGNAL_BIN_LAST4, may_block);
    if (expiry_signal)
        report(ct, card, CV_METRICS_SIGNAL_BIN_EXPIRY, false);
    if (st != CV_OK)
        cv_metrics_count_tokenize_refused(ct->metrics, CV_METRICS_REFUSED_CARD_TESTING);
    return st;
}
