/* auth.c: API-key authentication. The full key exists only in the request
 * header and in the one CLI output that hands it to the merchant; we keep
 * SHA-256(key). A 256-bit random key needs no slow hash: there is nothing to
 * brute-force offline. The in-memory table is keyed by that hash, so what an
 * attacker can time is a lookup by a value they cannot steer; the final match
 * is a constant-time comparison all the same. Never logs key material beyond
 * the 12-character prefix. */
#include "cardvault/auth.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cardvault/envelope.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"

struct entry {
    bool used;
    bool revoked;
    unsigned char hash[32];
    struct cv_principal who;
};

struct cv_auth {
    struct cv_auth_source src;
    unsigned refresh_ms;
    int64_t stale_max_ms;       /* the cache serves this long after the last good refresh */
    _Atomic int64_t last_ok_ms; /* monotonic time of the last good refresh */
    atomic_bool stale;          /* logged as stale; cleared by the next good refresh */
    pthread_rwlock_t lock;
    struct entry *slots; /* open addressing, power-of-two capacity */
    size_t cap, count;
    int64_t last_changed_us;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stopping;
};

static const char *const scope_names[] = {"tokenize", "read", "delete", "detokenize", "relay"};
#define N_SCOPE_NAMES (sizeof(scope_names) / sizeof(scope_names[0]))

static size_t slot_of(const unsigned char hash[32], size_t cap)
{
    size_t h = 0;
    memcpy(&h, hash, sizeof(h));
    return h & (cap - 1);
}

/* The slot of hash: its entry, or the empty slot where it belongs. The table
 * is never more than half full, so the probe always ends. */
static struct entry *slot_for(const struct cv_auth *a, const unsigned char hash[32])
{
    size_t i = slot_of(hash, a->cap);
    while (a->slots[i].used && !cv_ct_equal(a->slots[i].hash, hash, 32))
        i = (i + 1) & (a->cap - 1);
    return &a->slots[i];
}

/* Caller holds the write lock. Doubles the table; the old entries are
 * distinct, so each moves to an empty slot and the count is unchanged. */
static void grow_locked(struct cv_auth *a)
{
    size_t old_cap = a->cap;
    struct entry *old = a->slots;
    a->cap = old_cap == 0 ? 64 : old_cap * 2;
    a->slots = cv_xcalloc(a->cap, sizeof(*a->slots));
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].used)
            *slot_for(a, old[i].hash) = old[i];
    free(old);
}

/* Caller holds the write lock. */
static void put_locked(struct cv_auth *a, const unsigned char hash[32],
                       const struct cv_principal *who, bool revoked)
{
    if ((a->count + 1) * 2 > a->cap)
        grow_locked(a);
    struct entry *e = slot_for(a, hash);
    if (!e->used)
        a->count++;
    e->used = true;
    e->revoked = revoked;
    memcpy(e->hash, hash, 32);
    e->who = *who;
}

/* Rows read from the database, applied to the table only once the query is
 * done, so request threads never wait on the database behind our lock. */
struct pending {
    struct entry *rows;
    size_t n, cap;
};

static void on_key(void *ctx, const char *merchant_id, const char *prefix,
                   const unsigned char hash[32], const char *scopes, const char *origins,
                   bool revoked)
{
    struct pending *p = ctx;
    if (p->n == p->cap) {
        size_t cap = p->cap == 0 ? 64 : p->cap * 2;
        struct entry *rows = cv_xcalloc(cap, sizeof(*rows));
        if (p->n > 0)
            memcpy(rows, p->rows, p->n * sizeof(*rows));
        free(p->rows);
        p->rows = rows;
        p->cap = cap;
    }
    struct entry *e = &p->rows[p->n++];
    unsigned bits = 0;
    if (cv_auth_parse_scopes(scopes, &bits) != CV_OK)
        bits = 0; /* an unreadable scope list grants nothing */
    e->revoked = revoked;
    memcpy(e->hash, hash, 32);
    snprintf(e->who.merchant_id, sizeof(e->who.merchant_id), "%s", merchant_id);
    snprintf(e->who.key_prefix, sizeof(e->who.key_prefix), "%s", prefix);
    e->who.scopes = bits;
    /* Re-checked here: a list the database holds but origin.c would not
     * produce (edited by hand) binds the key to nothing. */
    if (origins == NULL || cv_origin_list_parse(origins, e->who.origins) != CV_OK)
        e->who.origins[0] = '\0';
}

static int64_t now_ms(const struct cv_auth *a)
{
    if (a->src.now_ms != NULL)
        return a->src.now_ms(a->src.ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned cv_auth_stale_max_ms(unsigned refresh_ms, unsigned configured_ms)
{
    if (configured_ms != 0)
        return configured_ms;
    unsigned ten = refresh_ms > UINT_MAX / 10 ? UINT_MAX : refresh_ms * 10;
    return ten > 30000 ? ten : 30000;
}

/* True when the table is too old to trust for revocations. Logs once on
 * entering that state (whoever notices first: a request or the refresher). */
static bool check_stale(struct cv_auth *a)
{
    int64_t age = now_ms(a) - atomic_load(&a->last_ok_ms);
    if (age <= a->stale_max_ms)
        return false;
    if (!atomic_exchange(&a->stale, true))
        cv_log(CV_LOG_ERROR, "api_key_cache_stale", CV_LI("since_refresh_ms", age),
               CV_LI("bound_ms", a->stale_max_ms),
               CV_LS("effect", "API keys refused (503) until a key refresh succeeds"));
    return true;
}

bool cv_auth_is_stale(struct cv_auth *a)
{
    return check_stale(a);
}

cv_status cv_auth_refresh(struct cv_auth *a)
{
    /* Re-read a window before the newest change seen: a transaction that
     * stamped changed_at earlier may commit after we looked. */
    int64_t since = a->last_changed_us - 10 * 1000000LL;
    int64_t max_seen = a->last_changed_us;
    struct pending p = {NULL, 0, 0};
    cv_status st = a->src.scan(a->src.ctx, since < 0 ? 0 : since, &max_seen, on_key, &p);
    if (st == CV_OK) {
        pthread_rwlock_wrlock(&a->lock);
        for (size_t i = 0; i < p.n; i++)
            put_locked(a, p.rows[i].hash, &p.rows[i].who, p.rows[i].revoked);
        pthread_rwlock_unlock(&a->lock);
        a->last_changed_us = max_seen;
        atomic_store(&a->last_ok_ms, now_ms(a));
        if (atomic_exchange(&a->stale, false))
            cv_log(CV_LOG_INFO, "api_key_cache_fresh",
                   CV_LS("effect", "API keys accepted again; revocations up to date"));
    } else {
        (void)check_stale(a);
    }
    if (p.rows != NULL)
        cv_wipe(p.rows, p.cap * sizeof(*p.rows));
    free(p.rows);
    return st;
}

static void *refresher(void *arg)
{
    struct cv_auth *a = arg;
    pthread_mutex_lock(&a->stop_lock);
    while (!a->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + (long long)a->refresh_ms * 1000000LL;
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_timedwait(&a->stop_cond, &a->stop_lock, &until);
        if (a->stopping)
            break;
        pthread_mutex_unlock(&a->stop_lock);
        if (cv_auth_refresh(a) != CV_OK) /* the table stays as it was, for a bounded time */
            cv_log(CV_LOG_WARN, "api_key_refresh_failed",
                   CV_LS("effect",
                         atomic_load(&a->stale) ? "refusing API keys" : "using cached keys"));
        pthread_mutex_lock(&a->stop_lock);
    }
    pthread_mutex_unlock(&a->stop_lock);
    return NULL;
}

static cv_status scan_store(void *ctx, int64_t since_us, int64_t *max_changed_us,
                            void (*fn)(void *fn_ctx, const char *merchant_id, const char *prefix,
                                       const unsigned char hash[32], const char *scopes,
                                       const char *origins, bool revoked),
                            void *fn_ctx)
{
    return cv_store_scan_api_keys(ctx, since_us, max_changed_us, fn, fn_ctx);
}

cv_status cv_auth_open(struct cv_store *store, unsigned refresh_ms, struct cv_auth **out)
{
    return cv_auth_open_bounded(store, refresh_ms, 0, out);
}

cv_status cv_auth_open_bounded(struct cv_store *store, unsigned refresh_ms, unsigned stale_max_ms,
                               struct cv_auth **out)
{
    struct cv_auth_source src = {scan_store, NULL, store};
    return cv_auth_open_source(&src, refresh_ms, stale_max_ms, true, out);
}

cv_status cv_auth_open_source(const struct cv_auth_source *src, unsigned refresh_ms,
                              unsigned stale_max_ms, bool background, struct cv_auth **out)
{
    struct cv_auth *a = cv_xcalloc(1, sizeof(*a));
    a->src = *src;
    a->refresh_ms = refresh_ms;
    a->stale_max_ms = cv_auth_stale_max_ms(refresh_ms, stale_max_ms);
    atomic_init(&a->last_ok_ms, 0);
    atomic_init(&a->stale, false);
    pthread_rwlock_init(&a->lock, NULL);
    pthread_mutex_init(&a->stop_lock, NULL);
    pthread_cond_init(&a->stop_cond, NULL);
    cv_status st = cv_auth_refresh(a);
    if (st == CV_OK && background) {
        if (pthread_create(&a->thread, NULL, refresher, a) != 0)
            st = CV_ERR_INTERNAL;
        else
            a->thread_started = true;
    }
    if (st != CV_OK) {
        cv_auth_close(a);
        return st;
    }
    *out = a;
    return CV_OK;
}

void cv_auth_close(struct cv_auth *a)
{
    if (a == NULL)
        return;
    if (a->thread_started) {
        pthread_mutex_lock(&a->stop_lock);
        a->stopping = true;
        pthread_cond_signal(&a->stop_cond);
        pthread_mutex_unlock(&a->stop_lock);
        pthread_join(a->thread, NULL);
    }
    if (a->slots != NULL)
        cv_wipe(a->slots, a->cap * sizeof(*a->slots));
    free(a->slots);
    pthread_rwlock_destroy(&a->lock);
    pthread_mutex_destroy(&a->stop_lock);
    pthread_cond_destroy(&a->stop_cond);
    free(a);
}

cv_status cv_auth_parse_bearer(const char *authorization, const char **key, size_t *len)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return CV_ERR_UNAUTHENTICATED;
    const char *k = authorization + 7;
    while (*k == ' ')
        k++;
    size_t n = strlen(k);
    if (!cv_token_api_key_is_valid(k, n))
        return CV_ERR_UNAUTHENTICATED;
    *key = k;
    *len = n;
    return CV_OK;
}

cv_status cv_auth_authenticate(struct cv_auth *a, const char *authorization,
                               struct cv_principal *out)
{
    const char *key = NULL;
    size_t len = 0;
    CV_TRY(cv_auth_parse_bearer(authorization, &key, &len));
    return cv_auth_authenticate_key(a, key, len, out);
}

cv_status cv_auth_authenticate_key(struct cv_auth *a, const char *key, size_t len,
                                   struct cv_principal *out)
{
    unsigned char hash[32];
    if (key == NULL || !cv_token_api_key_is_valid(key, len))
        return CV_ERR_UNAUTHENTICATED;
    /* Fail closed: a table not refreshed for longer than the bound may be
     * missing revocations. Every key is refused, known or not, so the
     * answer says nothing about the key. */
    if (check_stale(a))
        return CV_ERR_DB_UNAVAILABLE;
    if (cv_envelope_sha256(key, len, hash) != CV_OK)
        return CV_ERR_INTERNAL;
    cv_status st = CV_ERR_UNAUTHENTICATED;
    pthread_rwlock_rdlock(&a->lock);
    if (a->cap > 0) {
        size_t i = slot_of(hash, a->cap);
        for (size_t probes = 0; probes < a->cap && a->slots[i].used; probes++) {
            if (cv_ct_equal(a->slots[i].hash, hash, 32)) {
                if (!a->slots[i].revoked) {
                    *out = a->slots[i].who;
                    st = CV_OK;
                }
                break;
            }
            i = (i + 1) & (a->cap - 1);
        }
    }
    pthread_rwlock_unlock(&a->lock);
    cv_wipe(hash, sizeof(hash));
    return st;
}

cv_status cv_auth_parse_scopes(const char *csv, unsigned *scopes)
{
    unsigned bits = 0;
    const char *p = csv;
    if (csv == NULL || *csv == '\0')
        return CV_ERR_BAD_REQUEST;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        bool known = false;
        for (unsigned i = 0; i < N_SCOPE_NAMES; i++) {
            if (strlen(scope_names[i]) == n && strncmp(p, scope_names[i], n) == 0) {
                bits |= 1u << i;
                known = true;
            }
        }
        if (!known)
            return CV_ERR_BAD_REQUEST;
        p += n;
        if (*p == ',')
            p++;
    }
    *scopes = bits;
    return CV_OK;
}

void cv_auth_format_scopes(unsigned scopes, char out[64])
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < N_SCOPE_NAMES; i++) {
        if (scopes & (1u << i))
            n += (size_t)snprintf(out + n, 64 - n, "%s%s", n > 0 ? "," : "", scope_names[i]);
    }
}

cv_status cv_auth_create_key(struct cv_store *store, const char *merchant_id, unsigned scopes,
                             const char *origins, char key[CV_APIKEY_LEN + 1],
                             char prefix[CV_APIKEY_PREFIX_LEN + 1])
{
    /* A key that can do more than tokenize must never be put on a page. */
    if (origins != NULL && origins[0] != '\0' && scopes != CV_SCOPE_TOKENIZE)
        return CV_ERR_BAD_REQUEST;
    /* A relay key relays and does nothing else: it must not be able to read
     * or detokenize what it sends on. */
    if ((scopes & CV_SCOPE_RELAY) != 0 && scopes != CV_SCOPE_RELAY)
        return CV_ERR_BAD_REQUEST;
    const char *kind = scopes == CV_SCOPE_TOKENIZE     ? "pk"
                       : scopes == CV_SCOPE_DETOKENIZE ? "dk"
                       : scopes == CV_SCOPE_RELAY      ? "rk"
                                                       : "sk";
    unsigned char hash[32];
    char csv[64];
    cv_auth_format_scopes(scopes, csv);
    CV_TRY(cv_token_api_key(kind, key));
    memcpy(prefix, key, CV_APIKEY_PREFIX_LEN);
    prefix[CV_APIKEY_PREFIX_LEN] = '\0';
    cv_status st = cv_envelope_sha256(key, strlen(key), hash);
    if (st == CV_OK)
        st = cv_store_insert_api_key(store, merchant_id, prefix, hash, csv, origins);
    if (st != CV_OK)
        cv_wipe(key, CV_APIKEY_LEN + 1);
    return st;
}
