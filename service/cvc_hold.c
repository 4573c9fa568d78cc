/* cvc_hold.c: security codes held in locked memory, briefly (cvc_hold.h). */
#include "cardvault/cvc_hold.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"

struct slot {
    bool used;
    char id[CV_HOLD_ID_MAX + 1];
    char merchant_id[CV_MERCHANT_ID_LEN + 1];
    char token[CV_TOKEN_LEN + 1];
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char tag[CV_GCM_TAG_BYTES];
    unsigned char ct[CV_HOLD_CVC_MAX];
    unsigned char len;
    unsigned uses_left;
    time_t expires_at;
};

/* Everything secret lives in `region`: the key first, then the slots. */
struct cv_holds {
    pthread_mutex_t mu;
    void *region;
    size_t region_len;
    unsigned char *key; /* CV_DEK_BYTES, in region */
    struct slot *slots; /* capacity, in region */
    size_t capacity;
    struct cv_hold_limits lim;
    char instance[CV_HOLD_INSTANCE_MAX + 1];
    cv_hold_clock now;
    void *now_ctx;
    struct cv_hold_stats stats;
    /* the sweeper thread */
    pthread_t sweeper;
    bool sweeping, stopping;
    pthread_cond_t wake;
};

bool cv_holds_instance_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CV_HOLD_INSTANCE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static time_t system_now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

cv_status cv_holds_open(const struct cv_hold_limits *lim, cv_hold_clock now, void *now_ctx,
                        struct cv_holds **out, bool *locked)
{
    *out = NULL;
    *locked = false;
    if (lim->capacity == 0 || lim->capacity > 1000000 || lim->max_uses == 0 ||
        lim->max_ttl_s == 0 || lim->default_uses == 0 || lim->default_uses > lim->max_uses ||
        lim->default_ttl_s == 0 || lim->default_ttl_s > lim->max_ttl_s ||
        !cv_holds_instance_ok(lim->instance != NULL ? lim->instance : ""))
        return CV_ERR_CONFIG;
    struct cv_holds *h = cv_xcalloc(1, sizeof(*h));
    long page = sysconf(_SC_PAGESIZE);
    size_t want = CV_DEK_BYTES + 64 + lim->capacity * sizeof(struct slot);
    h->region_len = (want + (size_t)page - 1) / (size_t)page * (size_t)page;
    /* fd -1 is what MAP_ANONYMOUS asks for (cppcheck's rule does not know it) */
    h->region =
        /* cppcheck-suppress invalidFunctionArg */
        mmap(NULL, h->region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h->region == MAP_FAILED) {
        free(h);
        return CV_ERR_INTERNAL;
    }
    /* Out of core dumps first, then pinned in RAM. */
    (void)madvise(h->region, h->region_len, MADV_DONTDUMP);
    *locked = mlock(h->region, h->region_len) == 0;
    h->key = h->region;
    h->slots = (struct slot *)((unsigned char *)h->region + 64);
    h->capacity = lim->capacity;
    h->lim = *lim;
    snprintf(h->instance, sizeof(h->instance), "%s", lim->instance);
    h->lim.instance = h->instance;
    h->now = now != NULL ? now : system_now;
    h->now_ctx = now_ctx;
    if (cv_random_bytes(h->key, CV_DEK_BYTES) != CV_OK) {
        munmap(h->region, h->region_len);
        free(h);
        return CV_ERR_CRYPTO;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->wake, NULL);
    *out = h;
    return CV_OK;
}

static void *sweep_loop(void *arg)
{
    struct cv_holds *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += 1;
        pthread_cond_timedwait(&h->wake, &h->mu, &at);
        if (h->stopping)
            break;
        pthread_mutex_unlock(&h->mu);
        (void)cv_holds_sweep(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

cv_status cv_holds_start_sweeper(struct cv_holds *h)
{
    if (pthread_create(&h->sweeper, NULL, sweep_loop, h) != 0)
        return CV_ERR_INTERNAL;
    h->sweeping = true;
    return CV_OK;
}

void cv_holds_close(struct cv_holds *h)
{
    if (h == NULL)
        return;
    if (h->sweeping) {
        pthread_mutex_lock(&h->mu);
        h->stopping = true;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->sweeper, NULL);
    }
    pthread_mutex_lock(&h->mu);
    cv_wipe(h->region, h->region_len);
    pthread_mutex_unlock(&h->mu);
    munlock(h->region, h->region_len);
    munmap(h->region, h->region_len);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->wake);
    cv_wipe(h, sizeof(*h));
    free(h);
}

/* What a sealed code is bound to: its hold id, merchant and token. */
static size_t bind_aad(const struct slot *s, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "cvc-hold-v1|%s|%s|%s", s->id, s->merchant_id, s->token);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void slot_wipe(struct slot *s)
{
    cv_wipe(s, sizeof(*s));
}

cv_status cv_holds_put(struct cv_holds *h, const char *merchant_id, const char *token,
                       const char *cvc, unsigned uses, unsigned ttl_s, char id[CV_HOLD_ID_MAX + 1],
                       time_t *expires_at, unsigned *uses_granted, const char **param)
{
    *param = NULL;
    size_t len = strlen(cvc);
    if (len < 3 || len > CV_HOLD_CVC_MAX || strspn(cvc, "0123456789") != len) {
        *param = "cvc";
        return CV_ERR_BAD_REQUEST;
    }
    if (strlen(merchant_id) > CV_MERCHANT_ID_LEN || strlen(token) > CV_TOKEN_LEN)
        return CV_ERR_BAD_REQUEST;
    if (uses == 0)
        uses = h->lim.default_uses;
    if (ttl_s == 0)
        ttl_s = h->lim.default_ttl_s;
    if (uses > h->lim.max_uses) {
        *param = "uses";
        return CV_ERR_BAD_REQUEST;
    }
    if (ttl_s > h->lim.max_ttl_s) {
        *param = "ttl_seconds";
        return CV_ERR_BAD_REQUEST;
    }
    char rnd[CV_HOLD_RANDOM_CHARS + 1];
    CV_TRY(cv_token_random_base62(rnd, CV_HOLD_RANDOM_CHARS));
    rnd[CV_HOLD_RANDOM_CHARS] = '\0';

    cv_status st = CV_ERR_HOLDS_FULL;
    time_t now = h->now(h->now_ctx);
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->capacity; i++) {
        struct slot *s = &h->slots[i];
        if (s->used && s->expires_at <= now) {
            slot_wipe(s);
            h->stats.expired++;
            h->stats.active--;
        }
        if (s->used)
            continue;
        snprintf(s->id, sizeof(s->id), "hold_%s_%s", h->instance, rnd);
        snprintf(s->merchant_id, sizeof(s->merchant_id), "%s", merchant_id);
        snprintf(s->token, sizeof(s->token), "%s", token);
        char aad[160];
        size_t aad_len = bind_aad(s, aad, sizeof(aad));
        st = aad_len == 0 ? CV_ERR_INTERNAL
                          : cv_envelope_seal_bytes(h->key, aad, aad_len, (const unsigned char *)cvc,
                                                   len, s->nonce, s->ct, s->tag);
        if (st != CV_OK) {
            slot_wipe(s);
            break;
        }
        s->len = (unsigned char)len;
        s->uses_left = uses;
        s->expires_at = now + (time_t)ttl_s;
        s->used = true;
        snprintf(id, CV_HOLD_ID_MAX + 1, "%s", s->id);
        *expires_at = s->expires_at;
        *uses_granted = uses;
        h->stats.created++;
        h->stats.active++;
        break;
    }
    if (st == CV_ERR_HOLDS_FULL)
        h->stats.full++;
    pthread_mutex_unlock(&h->mu);
    cv_wipe(rnd, sizeof(rnd));
    return st;
}

cv_status cv_holds_take(struct cv_holds *h, const char *merchant_id, const char *token,
                        const char *id, char cvc[CV_HOLD_CVC_MAX + 1])
{
    memset(cvc, 0, CV_HOLD_CVC_MAX + 1);
    char want[CV_HOLD_ID_MAX + 1] = {0};
    if (strlen(id) > CV_HOLD_ID_MAX)
        return CV_ERR_HOLD_GONE;
    snprintf(want, sizeof(want), "%s", id);
    char want_m[CV_MERCHANT_ID_LEN + 1] = {0}, want_t[CV_TOKEN_LEN + 1] = {0};
    snprintf(want_m, sizeof(want_m), "%s", merchant_id);
    snprintf(want_t, sizeof(want_t), "%s", token);

    cv_status st = CV_ERR_HOLD_GONE;
    time_t now = h->now(h->now_ctx);
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->capacity; i++) {
        struct slot *s = &h->slots[i];
        /* Every used slot is compared whole, in constant time: the answer's
         * timing tells nothing of how much of an id matched. */
        if (!s->used || !cv_ct_equal(s->id, want, sizeof(want)))
            continue;
        if (s->expires_at <= now) {
            slot_wipe(s);
            h->stats.expired++;
            h->stats.active--;
            break;
        }
        if (!cv_ct_equal(s->merchant_id, want_m, sizeof(want_m)) ||
            !cv_ct_equal(s->token, want_t, sizeof(want_t)))
            break; /* someone else's hold: as if missing, and left alone */
        char aad[160];
        size_t aad_len = bind_aad(s, aad, sizeof(aad));
        st = cv_envelope_open_bytes(h->key, aad, aad_len, s->ct, s->len, s->nonce, s->tag,
                                    (unsigned char *)cvc);
        if (st != CV_OK) {
            slot_wipe(s);
            h->stats.active--;
            st = CV_ERR_HOLD_GONE;
            break;
        }
        h->stats.used++;
        if (--s->uses_left == 0) {
            slot_wipe(s);
            h->stats.active--;
        }
        break;
    }
    pthread_mutex_unlock(&h->mu);
    if (st != CV_OK)
        cv_wipe(cvc, CV_HOLD_CVC_MAX + 1);
    return st;
}

void cv_holds_drop(struct cv_holds *h, const char *id)
{
    char want[CV_HOLD_ID_MAX + 1] = {0};
    if (strlen(id) > CV_HOLD_ID_MAX)
        return;
    snprintf(want, sizeof(want), "%s", id);
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->capacity; i++) {
        struct slot *s = &h->slots[i];
        if (s->used && cv_ct_equal(s->id, want, sizeof(want))) {
            slot_wipe(s);
            h->stats.active--;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
}

size_t cv_holds_sweep(struct cv_holds *h)
{
    size_t n = 0;
    time_t now = h->now(h->now_ctx);
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->capacity; i++) {
        struct slot *s = &h->slots[i];
        if (s->used && s->expires_at <= now) {
            slot_wipe(s);
            n++;
        }
    }
    h->stats.expired += n;
    h->stats.active -= n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void cv_holds_stats(struct cv_holds *h, struct cv_hold_stats *out)
{
    pthread_mutex_lock(&h->mu);
    *out = h->stats;
    pthread_mutex_unlock(&h->mu);
}
