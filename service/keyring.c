/* keyring.c: the run-time key hierarchy. The KEK stays in its provider; the
 * fingerprint key and the DEKs are unwrapped into secure buffers that only
 * this module touches, under a read-write lock so a DEK is never wiped while
 * another thread uses it. GCM with random nonces is safe only far below 2^32
 * encryptions per key (NIST SP 800-38D 8.3), so every encryption is paid for
 * in advance: uses are reserved in the database in blocks, and a key whose
 * reservation fails is never used to encrypt again. */
#include "cardvault/keyring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/audit.h"
#include "cardvault/log.h"
#include "cardvault/row_check.h"
#include "cardvault/secbuf.h"
#include "cardvault/store_keys.h"
#include "cardvault/token.h"

/* Uses reserved per database round trip. A crash forfeits at most this many
 * uses of a key, which only brings its rotation forward. */
#define USE_BLOCK 1000
/* A reservation is spent within this many seconds or renewed: renewing
 * checks the key is still active, so `keys rotate-dek` and retirement take
 * effect on every instance within this time. */
#define RESERVATION_TTL_S 5
/* The key refresh: every this many seconds the cached DEKs are checked
 * against the database, and those destroyed (or gone) are wiped. */
#define DEK_REFRESH_S 5

struct dek_entry {
    int64_t id;
    struct cv_secbuf *key;
};

struct cv_keyring {
    struct cv_store *store;
    struct cv_keyring_limits limits;
    struct cv_secbuf *fp_key;
    /* K_audit: the audit chain's MAC key, unwrapped like the fingerprint key
     * and handed to the store as a sealer (cv_keyring_audit_seal). */
    struct cv_secbuf *audit_key;

    /* The KEK provider can be swapped after `keys rotate-kek` (see
     * kek_refresh); calls into it hold kp_lock for reading. */
    pthread_rwlock_t kp_lock;
    struct cv_keyprovider *kp;
    bool kp_owned; /* a provider we reopened ourselves, freed on close */
    unsigned char kcv[CV_KCV_BYTES];
    cv_keyring_reopen_fn reopen;
    void *reopen_ctx;
    atomic_bool kek_stale;

    pthread_rwlock_t cache_lock; /* guards entries */
    struct dek_entry *entries;
    size_t n_entries, cap_entries;

    pthread_mutex_t active_lock; /* guards the fields below */
    int64_t active_id;           /* 0: none yet */
    int64_t last_active_id;      /* the key before a rotation, for the rotation count */
    int64_t uses_left;           /* reserved and not yet spent */
    time_t active_expires;       /* monotonic seconds: end of the cryptoperiod */
    time_t reserved_until;       /* monotonic seconds: end of the reservation */
    atomic_uint_least64_t rotations;

    /* the key refresh thread (cv_keyring_start_refresh) */
    pthread_mutex_t refresh_lock;
    pthread_cond_t refresh_wake;
    pthread_t refresh_thread;
    bool refreshing, refresh_stopping;
};

static time_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Caller holds cache_lock (read or write). */
static const struct dek_entry *find_entry(const struct cv_keyring *kr, int64_t id)
{
    for (size_t i = 0; i < kr->n_entries; i++)
        if (kr->entries[i].id == id)
            return &kr->entries[i];
    return NULL;
}

/* Adds an unwrapped key to the cache (takes it), unless a racing thread did. */
static void cache_put(struct cv_keyring *kr, int64_t id, struct cv_secbuf *key)
{
    pthread_rwlock_wrlock(&kr->cache_lock);
    if (find_entry(kr, id) != NULL) {
        cv_secbuf_free(key);
    } else {
        if (kr->n_entries == kr->cap_entries) {
            size_t cap = kr->cap_entries == 0 ? 8 : kr->cap_entries * 2;
            struct dek_entry *e = cv_xcalloc(cap, sizeof(*e));
            if (kr->n_entries > 0)
                memcpy(e, kr->entries, kr->n_entries * sizeof(*e));
            free(kr->entries);
            kr->entries = e;
            kr->cap_entries = cap;
        }
        kr->entries[kr->n_entries].id = id;
        kr->entries[kr->n_entries].key = key;
        kr->n_entries++;
    }
    pthread_rwlock_unlock(&kr->cache_lock);
}

static void cache_evict(struct cv_keyring *kr, int64_t id)
{
    pthread_rwlock_wrlock(&kr->cache_lock);
    for (size_t i = 0; i < kr->n_entries; i++) {
        if (kr->entries[i].id == id) {
            cv_secbuf_free(kr->entries[i].key);
            kr->entries[i] = kr->entries[kr->n_entries - 1];
            kr->n_entries--;
            break;
        }
    }
    pthread_rwlock_unlock(&kr->cache_lock);
}

/* Wipes and forgets every cached DEK the database says is destroyed or
 * gone, and stops sealing under it if it was the active one. */
static cv_status drop_dead_deks(struct cv_keyring *kr)
{
    pthread_rwlock_rdlock(&kr->cache_lock);
    size_t n = kr->n_entries;
    int64_t *ids = cv_xcalloc(n > 0 ? n : 1, sizeof(*ids));
    for (size_t i = 0; i < n; i++)
        ids[i] = kr->entries[i].id;
    pthread_rwlock_unlock(&kr->cache_lock);
    int64_t *dead = cv_xcalloc(n > 0 ? n : 1, sizeof(*dead));
    size_t n_dead = 0;
    cv_status st = cv_store_dead_deks(kr->store, ids, n, dead, &n_dead);
    for (size_t i = 0; st == CV_OK && i < n_dead; i++) {
        cache_evict(kr, dead[i]);
        pthread_mutex_lock(&kr->active_lock);
        if (kr->active_id == dead[i])
            kr->active_id = 0; /* the next seal adopts or creates another */
        pthread_mutex_unlock(&kr->active_lock);
        cv_log(CV_LOG_INFO, "dek_dropped", CV_LI("dek_id", dead[i]), CV_LS("reason", "destroyed"));
    }
    free(ids);
    free(dead);
    return st;
}

static void *refresher(void *arg)
{
    struct cv_keyring *kr = arg;
    pthread_mutex_lock(&kr->refresh_lock);
    while (!kr->refresh_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += DEK_REFRESH_S;
        while (!kr->refresh_stopping &&
               pthread_cond_timedwait(&kr->refresh_wake, &kr->refresh_lock, &until) == 0)
            ;
        if (kr->refresh_stopping)
            break;
        pthread_mutex_unlock(&kr->refresh_lock);
        if (drop_dead_deks(kr) != CV_OK)
            cv_log(CV_LOG_WARN, "dek_refresh_failed", CV_LS("effect", "retried next interval"));
        pthread_mutex_lock(&kr->refresh_lock);
    }
    pthread_mutex_unlock(&kr->refresh_lock);
    return NULL;
}

cv_status cv_keyring_start_refresh(struct cv_keyring *kr)
{
    if (kr->refreshing)
        return CV_OK;
    if (pthread_create(&kr->refresh_thread, NULL, refresher, kr) != 0)
        return CV_ERR_INTERNAL;
    kr->refreshing = true;
    return CV_OK;
}

static cv_status kp_unwrap(struct cv_keyring *kr, const unsigned char *in, size_t len,
                           struct cv_secbuf **out)
{
    pthread_rwlock_rdlock(&kr->kp_lock);
    cv_status st = cv_keyprovider_unwrap(kr->kp, in, len, out);
    pthread_rwlock_unlock(&kr->kp_lock);
    return st;
}

static cv_status kp_wrap(struct cv_keyring *kr, const struct cv_secbuf *key, unsigned char **out,
                         size_t *out_len, unsigned char kcv[CV_KCV_BYTES])
{
    pthread_rwlock_rdlock(&kr->kp_lock);
    cv_status st = cv_keyprovider_wrap(kr->kp, key, out, out_len);
    memcpy(kcv, kr->kcv, CV_KCV_BYTES);
    pthread_rwlock_unlock(&kr->kp_lock);
    return st;
}

/* What kek_refresh found. */
enum kek_state {
    KEK_CURRENT,  /* ours is the vault's KEK: a failure under it was real */
    KEK_RELOADED, /* the vault was re-keyed and we now hold the new KEK: retry */
    KEK_STALE,    /* re-keyed, and the new KEK is not installed here yet */
};

/* The vault's KEK changed under us (`keys rotate-kek`)? Reopen the configured
 * provider: when the operator has already put the new KEK in place (same file
 * path, or the token now holding the new key) we switch to it without a
 * restart; otherwise the keyring is marked stale: it keeps serving with the
 * DEKs it holds, but refuses to create or unwrap DEKs, and /readyz fails.
 * A status only when the database cannot be asked. */
static cv_status kek_refresh(struct cv_keyring *kr, enum kek_state *state)
{
    unsigned char db_kcv[CV_KCV_BYTES], new_kcv[CV_KCV_BYTES];
    unsigned char *fp_wrapped = NULL;
    size_t fp_len = 0;
    CV_TRY(cv_store_get_meta(kr->store, db_kcv, &fp_wrapped, &fp_len));
    free(fp_wrapped);
    pthread_rwlock_rdlock(&kr->kp_lock);
    bool same = cv_ct_equal(db_kcv, kr->kcv, CV_KCV_BYTES);
    pthread_rwlock_unlock(&kr->kp_lock);
    if (same) {
        atomic_store(&kr->kek_stale, false);
        *state = KEK_CURRENT;
        return CV_OK;
    }
    struct cv_keyprovider *fresh = NULL;
    char why[256];
    if (kr->reopen == NULL || kr->reopen(kr->reopen_ctx, &fresh, why, sizeof(why)) != CV_OK ||
        cv_keyprovider_check_value(fresh, new_kcv) != CV_OK ||
        !cv_ct_equal(new_kcv, db_kcv, CV_KCV_BYTES)) {
        cv_keyprovider_free(fresh);
        if (!atomic_exchange(&kr->kek_stale, true))
            cv_log(CV_LOG_ERROR, "kek_stale",
                   CV_LS("effect", "the vault was re-keyed (keys rotate-kek) and the configured "
                                   "KEK is the old one: serving with cached data keys only; "
                                   "install the new KEK at the configured location"));
        *state = KEK_STALE;
        return CV_OK;
    }
    pthread_rwlock_wrlock(&kr->kp_lock);
    struct cv_keyprovider *old = kr->kp_owned ? kr->kp : NULL;
    kr->kp = fresh;
    kr->kp_owned = true;
    memcpy(kr->kcv, new_kcv, CV_KCV_BYTES);
    pthread_rwlock_unlock(&kr->kp_lock);
    cv_keyprovider_free(old);
    atomic_store(&kr->kek_stale, false);
    cv_log(CV_LOG_INFO, "kek_reloaded", CV_LS("provider", cv_keyprovider_name(fresh)));
    *state = KEK_RELOADED;
    return CV_OK;
}

/* True when the vault was re-keyed and we now hold its new KEK. */
static bool kek_reloaded(struct cv_keyring *kr)
{
    enum kek_state state = KEK_CURRENT;
    return kek_refresh(kr, &state) == CV_OK && state == KEK_RELOADED;
}

bool cv_keyring_kek_ok(struct cv_keyring *kr)
{
    /* kek_refresh compares the vault's check value with ours, reloads the
     * configured KEK when they differ and keeps kek_stale current; when the
     * database cannot be asked, the flag stays as it was. */
    enum kek_state state;
    if (kek_refresh(kr, &state) != CV_OK)
        cv_log(CV_LOG_DEBUG, "kek_check_skipped", CV_LS("reason", "database unavailable"));
    return !atomic_load(&kr->kek_stale);
}

/* Makes sure DEK id is unwrapped in the cache. */
static cv_status load_dek(struct cv_keyring *kr, int64_t id)
{
    pthread_rwlock_rdlock(&kr->cache_lock);
    bool present = find_entry(kr, id) != NULL;
    pthread_rwlock_unlock(&kr->cache_lock);
    if (present)
        return CV_OK;
    struct cv_dek_row row;
    cv_status st = cv_store_get_dek(kr->store, id, &row);
    if (st == CV_ERR_NOT_FOUND)
        return CV_ERR_INTEGRITY; /* a row naming a key that never existed */
    if (st != CV_OK)
        return st;
    if (row.wrapped == NULL) {
        cv_dek_row_cleanup(&row);
        return CV_ERR_TOKEN_DESTROYED;
    }
    struct cv_secbuf *key = NULL;
    st = kp_unwrap(kr, row.wrapped, row.wrapped_len, &key);
    if (st != CV_OK) {
        enum kek_state state = KEK_CURRENT;
        if (kek_refresh(kr, &state) == CV_OK && state == KEK_RELOADED)
            /* re-wrapped under a new KEK we could load: retry */
            st = kp_unwrap(kr, row.wrapped, row.wrapped_len, &key);
        else if (state == KEK_STALE) {
            /* re-keyed, and the new KEK is not installed here yet: retryable */
            cv_dek_row_cleanup(&row);
            return CV_ERR_DB_UNAVAILABLE;
        }
    }
    cv_dek_row_cleanup(&row);
    if (st != CV_OK) {
        cv_log(CV_LOG_ERROR, "dek_unwrap_failed", CV_LI("dek_id", id));
        return CV_ERR_CRYPTO;
    }
    if (key->len != CV_DEK_BYTES) {
        cv_secbuf_free(key);
        return CV_ERR_CRYPTO;
    }
    cache_put(kr, id, key);
    return CV_OK;
}

/* Wraps key under our KEK and stores it, only while that KEK is still the
 * vault's (CV_ERR_NOT_FOUND otherwise). */
static cv_status store_new_dek(struct cv_keyring *kr, const struct cv_secbuf *key, int64_t *id)
{
    unsigned char *wrapped = NULL, kcv[CV_KCV_BYTES];
    size_t wrapped_len = 0;
    cv_status st = kp_wrap(kr, key, &wrapped, &wrapped_len, kcv);
    if (st != CV_OK)
        goto out;
    st = cv_store_insert_dek(kr->store, wrapped, wrapped_len, kr->limits.dek_max_uses, kcv, id);
out:
    free(wrapped);
    return st;
}

/* Caller holds active_lock. Adopts the newest usable DEK in the database, or
 * creates one, then reserves a block of uses on it. *adopted is false when
 * a racing instance exhausted or retired that key before we could reserve
 * on it (the caller tries again with a new key). */
static cv_status rotate_locked(struct cv_keyring *kr, bool force_new, bool *adopted)
{
    bool reserved = false;
    *adopted = false;
    struct cv_dek_row row;
    int64_t id = 0, age_s = 0;
    cv_status st = force_new ? CV_ERR_NOT_FOUND
                             : cv_store_find_active_dek(kr->store, kr->limits.dek_max_age_s, &row);
    if (st == CV_OK) {
        id = row.dek_id;
        age_s = row.age_s;
        cv_dek_row_cleanup(&row);
    } else if (st == CV_ERR_NOT_FOUND) {
        struct cv_secbuf *key = NULL;
        CV_TRY(cv_envelope_new_key(&key));
        for (int attempt = 0; attempt < 2; attempt++) {
            st = store_new_dek(kr, key, &id);
            /* NOT_FOUND: the vault's KEK is no longer ours; try the new one once. */
            if (st != CV_ERR_NOT_FOUND || !kek_reloaded(kr))
                break;
        }
        if (st == CV_ERR_NOT_FOUND)
            st = CV_ERR_DB_UNAVAILABLE; /* stale KEK: answer 503 until reconfigured */
        if (st != CV_OK) {
            cv_secbuf_free(key);
            return st;
        }
        cache_put(kr, id, key);
        cv_log(CV_LOG_INFO, "dek_created", CV_LI("dek_id", id));
        char detail[48];
        snprintf(detail, sizeof(detail), "dek %lld", (long long)id);
        struct cv_audit_event ev = {"service:keyring",  NULL,      NULL,  NULL,
                                    "keys.dek_created", "success", detail};
        if (cv_store_audit_append(kr->store, &ev) != CV_OK)
            cv_log(CV_LOG_WARN, "audit_append_failed", CV_LS("action", "keys.dek_created"));
    } else {
        return st;
    }
    CV_TRY(load_dek(kr, id));
    /* The reservation's clock starts before its round trip, never after:
     * destroy-dek's wait is counted from the database's side. */
    time_t reserve_start = mono_now();
    CV_TRY(cv_store_reserve_dek_uses(kr->store, id, USE_BLOCK, &reserved));
    if (!reserved)
        return CV_OK; /* lost the key to a racing instance: *adopted stays false */
    if (kr->last_active_id != id) {
        if (kr->last_active_id != 0)
            atomic_fetch_add(&kr->rotations, 1);
        cv_log(CV_LOG_INFO, "dek_active", CV_LI("dek_id", id), CV_LI("age_s", age_s));
    }
    kr->last_active_id = id;
    kr->active_id = id;
    kr->uses_left = USE_BLOCK;
    kr->reserved_until = reserve_start + RESERVATION_TTL_S;
    kr->active_expires = mono_now() + (time_t)(kr->limits.dek_max_age_s - age_s);
    *adopted = true;
    return CV_OK;
}

/* Caller holds active_lock. Spends one reserved use, reserving or rotating first. */
static cv_status take_use_locked(struct cv_keyring *kr, int64_t *id)
{
    if (kr->active_id != 0 && mono_now() >= kr->active_expires) {
        if (cv_store_retire_dek(kr->store, kr->active_id) != CV_OK)
            cv_log(CV_LOG_WARN, "dek_retire_failed", CV_LI("dek_id", kr->active_id));
        kr->active_id = 0; /* never encrypt past its cryptoperiod, retired or not */
    }
    if (kr->active_id != 0 && (kr->uses_left == 0 || mono_now() >= kr->reserved_until)) {
        /* Unspent uses of an expired reservation are forfeited: the count in
         * the database only ever overstates what was used, never understates. */
        bool reserved = false;
        time_t reserve_start = mono_now();
        CV_TRY(cv_store_reserve_dek_uses(kr->store, kr->active_id, USE_BLOCK, &reserved));
        if (reserved) {
            kr->uses_left = USE_BLOCK;
            kr->reserved_until = reserve_start + RESERVATION_TTL_S;
        } else {
            kr->active_id = 0; /* exhausted or retired elsewhere: rotate */
        }
    }
    /* A few attempts: a racing instance may exhaust the key we just adopted. */
    for (int attempt = 0; kr->active_id == 0 || kr->uses_left == 0; attempt++) {
        bool adopted = false;
        if (attempt == 3)
            return CV_ERR_DB;
        CV_TRY(rotate_locked(kr, attempt > 0, &adopted));
    }
    kr->uses_left--;
    *id = kr->active_id;
    return CV_OK;
}

cv_status cv_keyring_seal(struct cv_keyring *kr, const struct cv_card_plain *card,
                          struct cv_token_row *row)
{
    int64_t id = 0;
    pthread_mutex_lock(&kr->active_lock);
    cv_status st = take_use_locked(kr, &id);
    pthread_mutex_unlock(&kr->active_lock);
    if (st != CV_OK)
        return st;
    st = load_dek(kr, id);
    if (st == CV_ERR_TOKEN_DESTROYED)
        return CV_ERR_DB_UNAVAILABLE; /* destroyed under us: retriable, never 410 */
    if (st != CV_OK)
        return st;
    row->dek_id = id;
    row->format_version = CV_SEAL_FORMAT_V1;
    struct cv_aad aad = {CV_SEAL_FORMAT_V1, row->token, row->merchant_id, id};
    pthread_rwlock_rdlock(&kr->cache_lock);
    const struct dek_entry *e = find_entry(kr, id);
    st = e != NULL ? cv_envelope_seal(e->key, &aad, card, row->nonce, &row->ciphertext,
                                      &row->ciphertext_len)
                   : CV_ERR_DB_UNAVAILABLE; /* dropped by the key refresh meanwhile */
    pthread_rwlock_unlock(&kr->cache_lock);
    return st;
}

/* The clear columns beside the ciphertext (BIN, last 4, brand, fingerprint)
 * are not covered by it: a database writer could change what a read shows
 * or where a fingerprint lookup leads. Every open recomputes them from the
 * card it opened; a row that disagrees is refused like a ciphertext that
 * does not verify (CV_ERR_INTEGRITY, card wiped). The log line names the
 * columns, never their values. */
static cv_status check_columns(struct cv_keyring *kr, const struct cv_token_row *row,
                               struct cv_card_plain *card)
{
    unsigned mismatch = 0;
    cv_status st = cv_row_check_columns(kr->fp_key, row, card, &mismatch);
    if (st == CV_ERR_INTEGRITY) {
        char fields[CV_ROW_MISMATCH_NAMES_MAX];
        cv_row_check_describe(mismatch, fields, sizeof(fields));
        cv_log(CV_LOG_ERROR, "token_columns_mismatch", CV_LS("merchant_id", row->merchant_id),
               CV_LS("token", row->token), CV_LI("dek_id", row->dek_id), CV_LS("columns", fields));
    }
    if (st != CV_OK)
        cv_wipe(card, sizeof(*card));
    return st;
}

cv_status cv_keyring_open_row(struct cv_keyring *kr, const struct cv_token_row *row,
                              struct cv_card_plain *card)
{
    if (row->dek_destroyed) {
        cache_evict(kr, row->dek_id);
        return CV_ERR_TOKEN_DESTROYED;
    }
    if (row->format_version != CV_SEAL_FORMAT_V1)
        return CV_ERR_INTEGRITY;
    CV_TRY(load_dek(kr, row->dek_id));
    struct cv_aad aad = {row->format_version, row->token, row->merchant_id, row->dek_id};
    pthread_rwlock_rdlock(&kr->cache_lock);
    const struct dek_entry *e = find_entry(kr, row->dek_id);
    cv_status st = e != NULL ? cv_envelope_open(e->key, &aad, row->nonce, sizeof(row->nonce),
                                                row->ciphertext, row->ciphertext_len, card)
                             : CV_ERR_TOKEN_DESTROYED;
    pthread_rwlock_unlock(&kr->cache_lock);
    if (st == CV_OK)
        st = check_columns(kr, row, card);
    return st;
}

cv_status cv_keyring_fingerprint(struct cv_keyring *kr, const char *merchant_id, const char *pan,
                                 char out[CV_FINGERPRINT_LEN + 1])
{
    unsigned char mac[16];
    CV_TRY(cv_envelope_fingerprint(kr->fp_key, merchant_id, pan, mac));
    cv_token_format_fingerprint(mac, out);
    cv_wipe(mac, sizeof(mac));
    return CV_OK;
}

cv_status cv_keyring_mac(struct cv_keyring *kr, const char *label, const char *merchant_id,
                         const void *data, size_t len, unsigned char out[32])
{
    /* Labels start with a letter other than "m", fingerprint inputs with
     * "mer_": the two domains can never produce the same HMAC input. */
    const void *parts[] = {label, merchant_id, data};
    const size_t lens[] = {strlen(label), strlen(merchant_id), len};
    return cv_envelope_hmac(kr->fp_key, parts, lens, 3, out);
}

uint64_t cv_keyring_rotations(struct cv_keyring *kr)
{
    return atomic_load(&kr->rotations);
}

cv_status cv_keyring_rotate(struct cv_keyring *kr, int64_t *new_dek_id)
{
    pthread_mutex_lock(&kr->active_lock);
    int64_t old = kr->active_id;
    bool adopted = false;
    cv_status st = rotate_locked(kr, true, &adopted);
    if (st == CV_OK && !adopted)
        st = CV_ERR_DB; /* a brand-new key exhausted at once: nothing sane to retry */
    if (st == CV_OK && old != 0 && old != kr->active_id)
        st = cv_store_retire_dek(kr->store, old);
    *new_dek_id = kr->active_id;
    pthread_mutex_unlock(&kr->active_lock);
    return st;
}

cv_status cv_keyring_audit_seal(void *ctx, const struct cv_audit_row *row,
                                const unsigned char prev_mac[32], unsigned char hash[32],
                                unsigned char mac[32])
{
    const struct cv_keyring *kr = ctx;
    CV_TRY(cv_audit_event_hash(row, hash));
    return cv_audit_event_mac(kr->audit_key, prev_mac, row, mac);
}

/* A vault without an audit key (created before migration 0005, or just
 * bound): a fresh one, wrapped under the KEK and stored together with the
 * chain's first keyed event (audit.key_created). When another process
 * stored one first, ours is dropped and *created stays false. */
static cv_status create_audit_key(struct cv_keyring *kr, const unsigned char kcv[CV_KCV_BYTES],
                                  bool *created)
{
    struct cv_secbuf *key = NULL;
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    *created = false;
    CV_TRY(cv_envelope_new_key(&key));
    cv_status st = cv_keyprovider_wrap(kr->kp, key, &wrapped, &wrapped_len);
    if (st != CV_OK)
        goto out;
    kr->audit_key = key; /* the first event is sealed with it */
    key = NULL;
    cv_store_set_audit_sealer(kr->store, cv_keyring_audit_seal, kr);
    struct cv_audit_event ev = {"service:keyring",
                                NULL,
                                NULL,
                                NULL,
                                "audit.key_created",
                                "success",
                                "the audit chain is keyed from this event"};
    st = cv_store_create_audit_key(kr->store, kcv, wrapped, wrapped_len, &ev, created);
    if (st != CV_OK || !*created) {
        cv_store_set_audit_sealer(kr->store, NULL, NULL);
        cv_secbuf_free(kr->audit_key);
        kr->audit_key = NULL;
    }
out:
    free(wrapped);
    cv_secbuf_free(key);
    return st;
}

/* Unwraps the vault's audit key (creating it first if the vault has none)
 * and installs it as the store's sealer. */
static cv_status open_audit_key(struct cv_keyring *kr, const unsigned char kcv[CV_KCV_BYTES],
                                char *why, size_t why_len)
{
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    bool created = false;
    cv_status st = cv_store_get_audit_key(kr->store, &wrapped, &wrapped_len);
    if (st == CV_ERR_NOT_FOUND) {
        st = create_audit_key(kr, kcv, &created);
        if (st == CV_OK && created) {
            cv_log(CV_LOG_INFO, "audit_key_created",
                   CV_LS("effect", "audit events are MAC-chained under a key wrapped by the KEK "
                                   "from now on (audit.key_created)"));
            return CV_OK;
        }
        if (st == CV_OK) /* another process came first: read theirs */
            st = cv_store_get_audit_key(kr->store, &wrapped, &wrapped_len);
    }
    if (st != CV_OK) {
        snprintf(why, why_len, "cannot read or create the audit key (%s)", cv_status_name(st));
        goto out;
    }
    st = cv_keyprovider_unwrap(kr->kp, wrapped, wrapped_len, &kr->audit_key);
    if (st != CV_OK || kr->audit_key->len != CV_AUDIT_KEY_BYTES) {
        snprintf(why, why_len, "cannot unwrap the audit key with this KEK");
        st = CV_ERR_CONFIG;
        goto out;
    }
    cv_store_set_audit_sealer(kr->store, cv_keyring_audit_seal, kr);
out:
    free(wrapped);
    return st;
}

/* First run: a fresh fingerprint key, wrapped, stored with the KEK's check
 * value. When another instance bound the vault first, ours is dropped and
 * the caller reads theirs back. */
static cv_status bind_new_vault(struct cv_keyring *kr, const unsigned char kcv[CV_KCV_BYTES])
{
    struct cv_secbuf *fp = NULL;
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    bool created = false;
    CV_TRY(cv_envelope_new_key(&fp));
    cv_status st = cv_keyprovider_wrap(kr->kp, fp, &wrapped, &wrapped_len);
    if (st != CV_OK)
        goto out;
    /* created or not (another instance came first), the caller reads the
     * stored binding back */
    st = cv_store_init_meta(kr->store, cv_keyprovider_name(kr->kp), kcv, wrapped, wrapped_len,
                            &created);
out:
    free(wrapped);
    cv_secbuf_free(fp);
    return st;
}

cv_status cv_keyring_open(struct cv_store *store, struct cv_keyprovider *kp,
                          const struct cv_keyring_limits *limits, cv_keyring_reopen_fn reopen,
                          void *reopen_ctx, struct cv_keyring **out, char *why, size_t why_len)
{
    unsigned char kcv[CV_KCV_BYTES], stored_kcv[CV_KCV_BYTES];
    unsigned char *fp_wrapped = NULL;
    size_t fp_wrapped_len = 0;
    struct cv_keyring *kr = cv_xcalloc(1, sizeof(*kr));
    kr->store = store;
    kr->kp = kp;
    kr->limits = *limits;
    kr->reopen = reopen;
    kr->reopen_ctx = reopen_ctx;
    pthread_rwlock_init(&kr->cache_lock, NULL);
    pthread_rwlock_init(&kr->kp_lock, NULL);
    pthread_mutex_init(&kr->active_lock, NULL);
    pthread_mutex_init(&kr->refresh_lock, NULL);
    pthread_cond_init(&kr->refresh_wake, NULL);
    atomic_init(&kr->rotations, 0);
    atomic_init(&kr->kek_stale, false);

    cv_status st = cv_keyprovider_check_value(kp, kcv);
    if (st != CV_OK) {
        snprintf(why, why_len, "cannot compute the KEK check value");
        goto out;
    }
    st = cv_store_get_meta(store, stored_kcv, &fp_wrapped, &fp_wrapped_len);
    if (st == CV_ERR_NOT_FOUND) {
        st = bind_new_vault(kr, kcv);
        if (st == CV_OK) /* ours, or another instance's that came first */
            st = cv_store_get_meta(store, stored_kcv, &fp_wrapped, &fp_wrapped_len);
    }
    if (st != CV_OK) {
        snprintf(why, why_len, "cannot read the vault's key metadata (%s)", cv_status_name(st));
        goto out;
    }
    memcpy(kr->kcv, kcv, CV_KCV_BYTES);
    if (!cv_ct_equal(kcv, stored_kcv, CV_KCV_BYTES)) {
        snprintf(why, why_len,
                 "the KEK does not match this database (key check value differs): refusing to "
                 "start with a key that cannot read or would fork the vault");
        st = CV_ERR_CONFIG;
        goto out;
    }
    st = cv_keyprovider_unwrap(kp, fp_wrapped, fp_wrapped_len, &kr->fp_key);
    if (st != CV_OK || kr->fp_key->len != CV_FP_KEY_BYTES) {
        snprintf(why, why_len, "cannot unwrap the fingerprint key with this KEK");
        st = CV_ERR_CONFIG;
        goto out;
    }
    if ((st = open_audit_key(kr, kcv, why, why_len)) != CV_OK)
        goto out;
    *out = kr;
    kr = NULL;
out:
    free(fp_wrapped);
    cv_wipe(kcv, sizeof(kcv));
    cv_keyring_close(kr);
    return st;
}

void cv_keyring_close(struct cv_keyring *kr)
{
    if (kr == NULL)
        return;
    if (kr->refreshing) {
        pthread_mutex_lock(&kr->refresh_lock);
        kr->refresh_stopping = true;
        pthread_cond_signal(&kr->refresh_wake);
        pthread_mutex_unlock(&kr->refresh_lock);
        pthread_join(kr->refresh_thread, NULL);
    }
    for (size_t i = 0; i < kr->n_entries; i++)
        cv_secbuf_free(kr->entries[i].key);
    free(kr->entries);
    cv_secbuf_free(kr->fp_key);
    if (kr->audit_key != NULL)
        cv_store_set_audit_sealer(kr->store, NULL, NULL); /* no append may use it now */
    cv_secbuf_free(kr->audit_key);
    if (kr->kp_owned)
        cv_keyprovider_free(kr->kp);
    pthread_rwlock_destroy(&kr->kp_lock);
    pthread_rwlock_destroy(&kr->cache_lock);
    pthread_mutex_destroy(&kr->active_lock);
    pthread_mutex_destroy(&kr->refresh_lock);
    pthread_cond_destroy(&kr->refresh_wake);
    free(kr);
}

/* One wrapped key, unwrapped under the old KEK and wrapped under the new one;
 * the plaintext key lives only in a secure buffer here, never in the store. */
struct rewrap_ctx {
    struct cv_keyprovider *old_kp, *new_kp;
};

static cv_status rewrap_one(void *ctx, const unsigned char *wrapped, size_t len,
                            unsigned char **out, size_t *out_len)
{
    const struct rewrap_ctx *rc = ctx;
    struct cv_secbuf *key = NULL;
    CV_TRY(cv_keyprovider_unwrap(rc->old_kp, wrapped, len, &key));
    cv_status st = cv_keyprovider_wrap(rc->new_kp, key, out, out_len);
    cv_secbuf_free(key);
    return st;
}

cv_status cv_keyring_rewrap_kek(struct cv_store *store, struct cv_keyprovider *old_kp,
                                struct cv_keyprovider *new_kp, const struct cv_audit_event *ev,
                                int *rewrapped)
{
    unsigned char old_kcv[CV_KCV_BYTES], new_kcv[CV_KCV_BYTES];
    struct rewrap_ctx rc = {old_kp, new_kp};
    *rewrapped = 0;
    CV_TRY(cv_keyprovider_check_value(old_kp, old_kcv));
    CV_TRY(cv_keyprovider_check_value(new_kp, new_kcv));
    if (cv_ct_equal(old_kcv, new_kcv, CV_KCV_BYTES))
        return CV_ERR_BAD_REQUEST; /* the "new" KEK is the current one */
    return cv_store_rewrap_all(store, old_kcv, new_kcv, cv_keyprovider_name(new_kp), rewrap_one,
                               &rc, ev, rewrapped);
}
