/* store_keys.c: every SQL statement about keys: the vault's metadata (the
 * KEK's check value and the wrapped fingerprint key), the data keys (insert,
 * get, adopt, reserve uses, retire, destroy), and the key-lifecycle queries
 * of `cardvault keys ...` (inventory, KEK rotation, re-encryption batches).
 * Only wrapped keys pass through here: a KEK rotation runs its locked
 * transaction here but hands each wrapped key to the caller's callback (the
 * keyring), which unwraps and wraps it again; this file never sees a
 * plaintext key. It calls only pg.c and the audit appends of store_audit.c. */
#include "cardvault/store_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "pg.h"
#include "store_audit_sql.h"
#include "store_handle.h"

/* Key commands run beside live traffic. Each of their transactions waits at
 * most this long for any lock (table or row) and is retried a few times, so
 * a session holding a lock the command needs (pg_dump, a long transaction)
 * makes the command give up instead of queueing everything behind it. */
#define KEY_LOCK_TIMEOUT_SQL "SET LOCAL lock_timeout = '2s'"
#define KEY_LOCK_ATTEMPTS    3
#define KEY_LOCK_BACKOFF_MS  250
/* lock_not_available: lock_timeout expired */
#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"

#define DEK_COLS                                                                                   \
    "dek_id, wrapped_key, state, use_count, max_uses, "                                            \
    "extract(epoch FROM now() - created_at)::bigint"

static const struct cv_pg_stmt get_meta = {
    "get_meta", "SELECT kek_check_value, fingerprint_key_wrapped FROM vault_meta",
    0,          CV_PG_PREPARED,
    false,      false};

static const struct cv_pg_stmt init_meta = {
    "init_meta",
    "INSERT INTO vault_meta (kek_provider, kek_check_value, "
    "fingerprint_key_wrapped) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    3,
    CV_PG_PREPARED,
    false,
    false};

/* Only under the KEK the vault is bound to right now: an instance still
 * holding a rotated-out KEK inserts nothing. */
static const struct cv_pg_stmt insert_dek = {
    "insert_dek",
    "INSERT INTO data_keys (wrapped_key, max_uses) SELECT $1, $2 "
    "FROM vault_meta WHERE kek_check_value = $3 FOR SHARE "
    "RETURNING dek_id",
    3,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt get_dek = {
    "get_dek", "SELECT " DEK_COLS " FROM data_keys WHERE dek_id = $1", 1, CV_PG_PREPARED, false,
    false};

static const struct cv_pg_stmt find_active_dek = {
    "find_active_dek",
    "SELECT " DEK_COLS " FROM data_keys "
    "WHERE state = 'active' AND use_count < max_uses "
    "AND created_at > now() - make_interval(secs => $1) "
    "ORDER BY dek_id DESC LIMIT 1",
    1,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt reserve_dek = {
    "reserve_dek",
    "UPDATE data_keys SET use_count = use_count + $2 "
    "WHERE dek_id = $1 AND state = 'active' AND use_count + $2 <= max_uses "
    "RETURNING use_count",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt retire_dek = {"retire_dek",
                                             "UPDATE data_keys SET state = 'retired', "
                                             "retired_at = now() "
                                             "WHERE dek_id = $1 AND state = 'active'",
                                             1,
                                             CV_PG_PREPARED,
                                             false,
                                             false};

static const struct cv_pg_stmt list_deks = {
    "list_deks",
    "SELECT d.dek_id, d.state, "
    "extract(epoch FROM now() - d.created_at)::bigint, d.use_count, "
    "d.max_uses, (SELECT count(*) FROM tokens t WHERE t.dek_id = d.dek_id) "
    "FROM data_keys d ORDER BY d.dek_id",
    0,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt meta_info = {
    "meta_info",
    "SELECT kek_provider, kek_check_value, "
    "coalesce(to_char(rewrapped_at AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') FROM vault_meta",
    0,
    CV_PG_PREPARED,
    false,
    false};

/* Locks the singleton (FOR NO KEY UPDATE: nothing references vault_meta by
 * key, and it still conflicts with FOR SHARE): DEK inserts, which read it FOR
 * SHARE, wait for the rotation, then see the new check value and refuse the
 * old KEK's wrapping. So no DEK row can appear while the rotation runs. */
static const struct cv_pg_stmt rewrap_meta = {
    "rewrap_meta",
    "SELECT kek_check_value, fingerprint_key_wrapped, audit_key_wrapped FROM vault_meta "
    "FOR NO KEY UPDATE",
    0,
    CV_PG_PREPARED,
    false,
    false};

/* No row lock here: the re-wrapping (HSM round trips) happens with no DEK
 * row locked, so token inserts (their foreign key takes FOR KEY SHARE on the
 * DEK row) never wait for it. New DEK rows cannot appear meanwhile (see
 * rewrap_meta); a row destroyed meanwhile is skipped by rewrap_dek. */
static const struct cv_pg_stmt rewrap_deks = {
    "rewrap_deks",
    "SELECT dek_id, wrapped_key FROM data_keys WHERE wrapped_key IS NOT NULL "
    "ORDER BY dek_id",
    0,
    CV_PG_PREPARED,
    false,
    false};

/* Only if the row still holds the wrapping we re-wrapped: a key destroyed
 * since (wrapped_key NULL) is never brought back. The UPDATE's row lock
 * (FOR NO KEY UPDATE) does not conflict with inserts' FOR KEY SHARE. */
static const struct cv_pg_stmt rewrap_dek = {
    "rewrap_dek",
    "UPDATE data_keys SET wrapped_key = $2 WHERE dek_id = $1 AND wrapped_key = $3",
    3,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt rewrap_update_meta = {
    "rewrap_update_meta",
    "UPDATE vault_meta SET kek_provider = $1, kek_check_value = $2, "
    "fingerprint_key_wrapped = $3, audit_key_wrapped = $4, rewrapped_at = now()",
    4,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt retire_others = {
    "retire_others",
    "UPDATE data_keys SET state = 'retired', retired_at = now() "
    "WHERE state = 'active' AND dek_id <> $1",
    1,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt tokens_to_reencrypt = {
    "tokens_to_reencrypt",
    "SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, "
    /* the clear columns too: opening a row checks them against its card */
    "t.brand, t.bin, t.last4, t.fingerprint "
    /* 10 s: by then no instance still seals under the key (keyring.c) */
    "FROM tokens t JOIN data_keys d USING (dek_id) WHERE d.state = 'retired' "
    "AND d.retired_at < now() - interval '10 seconds' "
    "AND ($1::bigint = 0 OR t.dek_id = $1::bigint) ORDER BY t.dek_id, t.merchant_id, t.token "
    "LIMIT $2",
    2,
    CV_PG_PREPARED,
    false,
    false};

/* The old dek_id in the WHERE: a row deleted or re-encrypted meanwhile is
 * simply skipped. */
static const struct cv_pg_stmt update_cipher = {
    "update_cipher",
    "UPDATE tokens SET dek_id = $3, nonce = $4, ciphertext = $5 "
    "WHERE merchant_id = $1 AND token = $2 AND dek_id = $6",
    6,
    CV_PG_PREPARED,
    false,
    false};

/* FOR UPDATE (not NO KEY UPDATE), on purpose and only on the retired key
 * being destroyed: it conflicts with the FOR KEY SHARE every token insert
 * takes on its DEK row (store_tokens.c), so the destruction waits for
 * inserts already under way, and an insert arriving later waits for the
 * destruction and then finds the key destroyed and writes nothing. */
static const struct cv_pg_stmt lock_dek = {"lock_dek_for_destroy",
                                           "SELECT 1 FROM data_keys WHERE dek_id = $1 FOR UPDATE",
                                           1,
                                           CV_PG_PREPARED,
                                           false,
                                           false};

/* Only a key retired long enough ago: instances keep sealing under a
 * just-retired key until their use reservation lapses (5 s, keyring.c).
 * Should a seal under it still reach the database later, its insert is
 * refused (store_tokens.c), so no card is acknowledged under a shredded key.
 * The wrapped key is overwritten with NULL: without it, its rows cannot be
 * opened. */
static const struct cv_pg_stmt destroy_dek = {
    "destroy_dek",
    "UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, "
    "destroyed_at = now() WHERE dek_id = $1 AND state = 'retired' "
    "AND retired_at < now() - interval '10 seconds' "
    "RETURNING (SELECT count(*) FROM tokens WHERE dek_id = $1)",
    1,
    CV_PG_PREPARED,
    false,
    false};

/* A plain VACUUM, not VACUUM FULL: FULL needs ACCESS EXCLUSIVE, and while it
 * waits (behind pg_dump or any long reader) every read and insert of
 * data_keys queues behind it. Plain VACUUM takes a lock that no read or
 * write conflicts with; SKIP_LOCKED makes it skip the table rather than wait
 * when another VACUUM holds it, TRUNCATE false keeps it from taking ACCESS
 * EXCLUSIVE at the end. It frees the dead row version holding the old
 * wrapped key once no snapshot can see it; the bytes themselves (like copies
 * in WAL and backups) stay wrapped under the KEK: rotating the KEK completes
 * the shred (docs/key-management.md). */
static const struct cv_pg_stmt vacuum_deks = {"vacuum_data_keys",
                                              "VACUUM (SKIP_LOCKED, TRUNCATE false) data_keys",
                                              0,
                                              CV_PG_ONE_OFF,
                                              false,
                                              false};

/* Of the given DEK ids, those destroyed or gone (the keyring drops them). */
static const struct cv_pg_stmt dead_deks = {
    "dead_deks",
    "SELECT k.id FROM unnest($1::bigint[]) AS k(id) WHERE NOT EXISTS "
    "(SELECT 1 FROM data_keys d WHERE d.dek_id = k.id AND d.state <> 'destroyed')",
    1,
    CV_PG_PREPARED,
    false,
    false};

/* The audit key (migration 0005): NULL until the first process of this
 * version that holds the KEK creates it. */
static const struct cv_pg_stmt get_audit_key = {
    "get_audit_key",
    "SELECT audit_key_wrapped FROM vault_meta WHERE audit_key_wrapped IS NOT NULL",
    0,
    CV_PG_PREPARED,
    false,
    false};

/* Set once, only under the KEK the vault names (a process holding a
 * rotated-out KEK stores nothing); the row lock also orders two instances
 * creating it at once: the second finds it set and changes nothing. */
static const struct cv_pg_stmt set_audit_key = {
    "set_audit_key",
    "UPDATE vault_meta SET audit_key_wrapped = $1 "
    "WHERE audit_key_wrapped IS NULL AND kek_check_value = $2",
    2,
    CV_PG_PREPARED,
    false,
    false};

/* Vault metadata */

cv_status cv_store_get_meta(struct cv_store *store, unsigned char kcv[CV_KCV_BYTES],
                            unsigned char **fp_wrapped, size_t *fp_wrapped_len)
{
    PGresult *r = NULL;
    CV_TRY(cv_pg_run_once(store->pool, &get_meta, NULL, &r));
    cv_status st = CV_ERR_NOT_FOUND;
    if (PQntuples(r) == 1) {
        st = cv_pg_get_fixed_bytea(r, 0, 0, kcv, CV_KCV_BYTES);
        if (st == CV_OK)
            st = cv_pg_get_bytea(r, 0, 1, fp_wrapped, fp_wrapped_len);
    }
    PQclear(r);
    return st;
}

cv_status cv_store_init_meta(struct cv_store *store, const char *provider,
                             const unsigned char kcv[CV_KCV_BYTES], const unsigned char *fp_wrapped,
                             size_t fp_wrapped_len, bool *created)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, provider);
    cv_pg_param_bytes(&p, kcv, CV_KCV_BYTES);
    cv_pg_param_bytes(&p, fp_wrapped, fp_wrapped_len);
    CV_TRY(cv_pg_run_once(store->pool, &init_meta, &p, &r));
    *created = cv_pg_changed(r) == 1; /* 0: another instance bound the vault first */
    PQclear(r);
    return CV_OK;
}

cv_status cv_store_get_audit_key(struct cv_store *store, unsigned char **wrapped,
                                 size_t *wrapped_len)
{
    PGresult *r = NULL;
    *wrapped = NULL;
    *wrapped_len = 0;
    CV_TRY(cv_pg_run_once(store->pool, &get_audit_key, NULL, &r));
    cv_status st = CV_ERR_NOT_FOUND;
    if (PQntuples(r) == 1)
        st = cv_pg_get_bytea(r, 0, 0, wrapped, wrapped_len);
    PQclear(r);
    return st;
}

cv_status cv_store_meta_info(struct cv_store *store, char provider[32],
                             unsigned char kcv[CV_KCV_BYTES], char rewrapped_at[32])
{
    PGresult *r = NULL;
    CV_TRY(cv_pg_run_once(store->pool, &meta_info, NULL, &r));
    cv_status st = CV_ERR_NOT_FOUND;
    if (PQntuples(r) == 1) {
        cv_pg_get_text(r, 0, 0, provider, 32);
        cv_pg_get_text(r, 0, 2, rewrapped_at, 32);
        st = cv_pg_get_fixed_bytea(r, 0, 1, kcv, CV_KCV_BYTES);
    }
    PQclear(r);
    return st;
}

/* Data keys */

cv_status cv_store_insert_dek(struct cv_store *store, const unsigned char *wrapped,
                              size_t wrapped_len, int64_t max_uses,
                              const unsigned char kcv[CV_KCV_BYTES], int64_t *dek_id)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_bytes(&p, wrapped, wrapped_len);
    cv_pg_param_int(&p, max_uses);
    cv_pg_param_bytes(&p, kcv, CV_KCV_BYTES);
    CV_TRY(cv_pg_run_once(store->pool, &insert_dek, &p, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (st == CV_OK)
        *dek_id = cv_pg_get_int(r, 0, 0);
    PQclear(r);
    return st;
}

static cv_status dek_from_result(const PGresult *r, struct cv_dek_row *out)
{
    memset(out, 0, sizeof(*out));
    if (PQntuples(r) != 1)
        return CV_ERR_NOT_FOUND;
    out->dek_id = cv_pg_get_int(r, 0, 0);
    cv_pg_get_text(r, 0, 2, out->state, sizeof(out->state));
    out->use_count = cv_pg_get_int(r, 0, 3);
    out->max_uses = cv_pg_get_int(r, 0, 4);
    out->age_s = cv_pg_get_int(r, 0, 5);
    if (PQgetisnull(r, 0, 1))
        return CV_OK; /* destroyed: no key material left */
    return cv_pg_get_bytea(r, 0, 1, &out->wrapped, &out->wrapped_len);
}

static cv_status dek_query(struct cv_store *store, const struct cv_pg_stmt *s, int64_t arg,
                           struct cv_dek_row *out)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, arg);
    CV_TRY(cv_pg_run_once(store->pool, s, &p, &r));
    cv_status st = dek_from_result(r, out);
    PQclear(r);
    return st;
}

cv_status cv_store_get_dek(struct cv_store *store, int64_t dek_id, struct cv_dek_row *out)
{
    return dek_query(store, &get_dek, dek_id, out);
}

cv_status cv_store_find_active_dek(struct cv_store *store, int64_t max_age_s,
                                   struct cv_dek_row *out)
{
    return dek_query(store, &find_active_dek, max_age_s, out);
}

cv_status cv_store_reserve_dek_uses(struct cv_store *store, int64_t dek_id, int64_t block,
                                    bool *reserved)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, dek_id);
    cv_pg_param_int(&p, block);
    CV_TRY(cv_pg_run_once(store->pool, &reserve_dek, &p, &r));
    *reserved = PQntuples(r) == 1;
    PQclear(r);
    if (!*reserved && cv_store_retire_dek(store, dek_id) != CV_OK)
        cv_log(CV_LOG_WARN, "dek_retire_failed", CV_LI("dek_id", dek_id));
    return CV_OK;
}

cv_status cv_store_retire_dek(struct cv_store *store, int64_t dek_id)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, dek_id);
    return cv_pg_run_once(store->pool, &retire_dek, &p, NULL);
}

void cv_dek_row_cleanup(struct cv_dek_row *row)
{
    free(row->wrapped);
    memset(row, 0, sizeof(*row));
}

/* Key lifecycle */

cv_status cv_store_list_deks(struct cv_store *store,
                             void (*fn)(void *ctx, const struct cv_dek_status *d), void *ctx)
{
    PGresult *r = NULL;
    CV_TRY(cv_pg_run_once(store->pool, &list_deks, NULL, &r));
    for (int i = 0; i < PQntuples(r); i++) {
        struct cv_dek_status d;
        memset(&d, 0, sizeof(d));
        d.dek_id = cv_pg_get_int(r, i, 0);
        cv_pg_get_text(r, i, 1, d.state, sizeof(d.state));
        d.age_s = cv_pg_get_int(r, i, 2);
        d.use_count = cv_pg_get_int(r, i, 3);
        d.max_uses = cv_pg_get_int(r, i, 4);
        d.tokens = cv_pg_get_int(r, i, 5);
        fn(ctx, &d);
    }
    PQclear(r);
    return CV_OK;
}

/* One transaction of a key command, run by run_key_tx. */
typedef cv_status (*key_tx_fn)(struct cv_pg_conn *c, void *ctx);

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs fn inside BEGIN ... COMMIT with a 2 s lock_timeout; when a lock is not
 * granted in time the transaction is rolled back (nothing changed) and run
 * again, KEY_LOCK_ATTEMPTS times in all. CV_ERR_DB_UNAVAILABLE when it gave
 * up (logged as key_lock_not_granted, naming what), else fn's status. */
static cv_status run_key_tx(struct cv_store *store, const char *what, key_tx_fn fn, void *ctx)
{
    cv_status st = CV_ERR_DB_UNAVAILABLE;
    for (int attempt = 1; attempt <= KEY_LOCK_ATTEMPTS; attempt++) {
        struct cv_pg_conn *c = NULL;
        bool busy = false;
        CV_TRY(cv_pg_acquire(store->pool, &c));
        st = cv_pg_command(c, "BEGIN");
        if (st == CV_OK)
            st = cv_pg_command(c, KEY_LOCK_TIMEOUT_SQL);
        if (st == CV_OK)
            st = fn(c, ctx);
        if (st == CV_OK)
            st = cv_pg_command(c, "COMMIT");
        if (st != CV_OK) {
            busy = strcmp(cv_pg_last_sqlstate(c), SQLSTATE_LOCK_NOT_AVAILABLE) == 0;
            cv_pg_rollback(c);
        }
        cv_pg_release(c);
        if (!busy)
            return st;
        cv_log(CV_LOG_WARN, "key_lock_not_granted", CV_LS("operation", what),
               CV_LI("attempt", attempt), CV_LI("attempts", KEY_LOCK_ATTEMPTS),
               CV_LI("lock_timeout_ms", 2000));
        if (attempt < KEY_LOCK_ATTEMPTS)
            pause_ms((long)attempt * KEY_LOCK_BACKOFF_MS);
    }
    return CV_ERR_DB_UNAVAILABLE;
}

/* Checks the locked metadata row names old_kcv and re-wraps the
 * fingerprint key and the audit key (when the vault has one) through fn;
 * *fp_new and *audit_new (heap) get the new wrappings (*audit_new NULL when
 * there is no audit key yet). */
static cv_status rewrap_fingerprint_key(struct cv_pg_conn *c, const unsigned char *old_kcv,
                                        cv_store_rewrap_fn fn, void *ctx, unsigned char **fp_new,
                                        size_t *fp_new_len, unsigned char **audit_new,
                                        size_t *audit_new_len)
{
    PGresult *meta = NULL;
    unsigned char kcv_db[CV_KCV_BYTES], *fp = NULL, *ak = NULL;
    size_t fp_len = 0, ak_len = 0;
    CV_TRY(cv_pg_run(c, &rewrap_meta, NULL, &meta));
    cv_status st = CV_ERR_NOT_FOUND;
    if (PQntuples(meta) != 1)
        goto out;
    if ((st = cv_pg_get_fixed_bytea(meta, 0, 0, kcv_db, CV_KCV_BYTES)) != CV_OK)
        goto out;
    if (!cv_ct_equal(kcv_db, old_kcv, CV_KCV_BYTES)) {
        st = CV_ERR_CONFIG; /* the current KEK is not the one we were given */
        goto out;
    }
    if ((st = cv_pg_get_bytea(meta, 0, 1, &fp, &fp_len)) != CV_OK)
        goto out;
    if ((st = fn(ctx, fp, fp_len, fp_new, fp_new_len)) != CV_OK)
        goto out;
    if (PQgetisnull(meta, 0, 2))
        goto out; /* no audit key yet: the first process of this version makes one */
    if ((st = cv_pg_get_bytea(meta, 0, 2, &ak, &ak_len)) != CV_OK)
        goto out;
    st = fn(ctx, ak, ak_len, audit_new, audit_new_len);
out:
    free(fp);
    free(ak);
    PQclear(meta);
    return st;
}

/* One DEK row, its wrapping read and its re-wrapping made, before any row
 * is written. */
struct rewrap_item {
    int64_t dek_id;
    unsigned char *old_wrapped, *new_wrapped;
    size_t old_len, new_len;
};

static void rewrap_items_free(struct rewrap_item *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++) {
        free(items[i].old_wrapped);
        free(items[i].new_wrapped);
    }
    free(items);
}

/* Re-wraps every DEK still holding key material through fn (no row lock
 * held meanwhile), then writes them all in one quick pass. */
static cv_status rewrap_every_dek(struct cv_pg_conn *c, cv_store_rewrap_fn fn, void *ctx,
                                  int *rewrapped)
{
    PGresult *deks = NULL;
    CV_TRY(cv_pg_run(c, &rewrap_deks, NULL, &deks));
    size_t n = (size_t)PQntuples(deks);
    struct rewrap_item *items = cv_xcalloc(n > 0 ? n : 1, sizeof(*items));
    cv_status st = CV_OK;
    for (size_t i = 0; i < n && st == CV_OK; i++) {
        items[i].dek_id = cv_pg_get_int(deks, (int)i, 0);
        st = cv_pg_get_bytea(deks, (int)i, 1, &items[i].old_wrapped, &items[i].old_len);
        if (st == CV_OK)
            st = fn(ctx, items[i].old_wrapped, items[i].old_len, &items[i].new_wrapped,
                    &items[i].new_len);
    }
    PQclear(deks);
    for (size_t i = 0; i < n && st == CV_OK; i++) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        cv_pg_params_init(&p);
        cv_pg_param_int(&p, items[i].dek_id);
        cv_pg_param_bytes(&p, items[i].new_wrapped, items[i].new_len);
        cv_pg_param_bytes(&p, items[i].old_wrapped, items[i].old_len);
        if ((st = cv_pg_run(c, &rewrap_dek, &p, &r)) != CV_OK)
            break;
        *rewrapped += (int)cv_pg_changed(r); /* 0: destroyed meanwhile */
        PQclear(r);
    }
    rewrap_items_free(items, n);
    return st;
}

struct rewrap_all_ctx {
    const struct cv_audit_sealer *sealer;
    const unsigned char *old_kcv, *new_kcv;
    const char *new_provider;
    cv_store_rewrap_fn fn;
    void *fn_ctx;
    const struct cv_audit_event *ev;
    int rewrapped;
};

static cv_status rewrap_all_tx(struct cv_pg_conn *c, void *arg)
{
    struct rewrap_all_ctx *a = arg;
    struct cv_pg_params p;
    unsigned char *fp_new = NULL, *audit_new = NULL;
    size_t fp_new_len = 0, audit_new_len = 0;
    a->rewrapped = 0;
    cv_status st = rewrap_fingerprint_key(c, a->old_kcv, a->fn, a->fn_ctx, &fp_new, &fp_new_len,
                                          &audit_new, &audit_new_len);
    if (st != CV_OK)
        goto out;
    if ((st = rewrap_every_dek(c, a->fn, a->fn_ctx, &a->rewrapped)) != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, a->new_provider);
    cv_pg_param_bytes(&p, a->new_kcv, CV_KCV_BYTES);
    cv_pg_param_bytes(&p, fp_new, fp_new_len);
    if (audit_new != NULL)
        cv_pg_param_bytes(&p, audit_new, audit_new_len);
    else
        cv_pg_param_text(&p, NULL);
    if ((st = cv_pg_run(c, &rewrap_update_meta, &p, NULL)) != CV_OK)
        goto out;
    st = cv_audit_store_append_in(c, a->sealer, a->ev);
out:
    free(fp_new);
    free(audit_new);
    return st;
}

cv_status cv_store_rewrap_all(struct cv_store *store, const unsigned char old_kcv[CV_KCV_BYTES],
                              const unsigned char new_kcv[CV_KCV_BYTES], const char *new_provider,
                              cv_store_rewrap_fn fn, void *ctx, const struct cv_audit_event *ev,
                              int *rewrapped)
{
    struct rewrap_all_ctx a = {&store->sealer, old_kcv, new_kcv, new_provider, fn, ctx, ev, 0};
    /* One transaction: a crash before its COMMIT leaves the old KEK in force. */
    cv_status st = run_key_tx(store, "rotate-kek", rewrap_all_tx, &a);
    *rewrapped = st == CV_OK ? a.rewrapped : 0;
    return st;
}

static cv_status retire_others_tx(struct cv_pg_conn *c, void *arg)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, *(const int64_t *)arg);
    return cv_pg_run(c, &retire_others, &p, NULL);
}

cv_status cv_store_retire_active_except(struct cv_store *store, int64_t keep)
{
    return run_key_tx(store, "retire-deks", retire_others_tx, &keep);
}

static cv_status reencrypt_row(const PGresult *r, int i, struct cv_token_row *row)
{
    memset(row, 0, sizeof(*row));
    cv_pg_get_text(r, i, 0, row->merchant_id, sizeof(row->merchant_id));
    cv_pg_get_text(r, i, 1, row->token, sizeof(row->token));
    row->format_version = (int)cv_pg_get_int(r, i, 2);
    row->dek_id = cv_pg_get_int(r, i, 3);
    /* a wrong-length nonce stays zero: the opener reports an integrity failure */
    if (cv_pg_get_fixed_bytea(r, i, 4, row->nonce, sizeof(row->nonce)) != CV_OK)
        memset(row->nonce, 0, sizeof(row->nonce));
    cv_pg_get_text(r, i, 6, row->brand, sizeof(row->brand));
    cv_pg_get_text(r, i, 7, row->bin, sizeof(row->bin));
    cv_pg_get_text(r, i, 8, row->last4, sizeof(row->last4));
    cv_pg_get_text(r, i, 9, row->fingerprint, sizeof(row->fingerprint));
    return cv_pg_get_bytea(r, i, 5, &row->ciphertext, &row->ciphertext_len);
}

cv_status cv_store_tokens_to_reencrypt(struct cv_store *store, int64_t from_dek, size_t limit,
                                       struct cv_token_row *rows, size_t *n)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    *n = 0;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, from_dek);
    cv_pg_param_int(&p, (int64_t)limit);
    CV_TRY(cv_pg_run_once(store->pool, &tokens_to_reencrypt, &p, &r));
    cv_status st = CV_OK;
    for (int i = 0; i < PQntuples(r) && (size_t)i < limit; i++) {
        if ((st = reencrypt_row(r, i, &rows[i])) != CV_OK)
            break;
        (*n)++;
    }
    PQclear(r);
    return st;
}

struct update_ciphers_ctx {
    const struct cv_token_row *rows;
    const int64_t *old_dek_ids;
    size_t n, updated;
};

static cv_status update_ciphers_tx(struct cv_pg_conn *c, void *arg)
{
    struct update_ciphers_ctx *u = arg;
    u->updated = 0;
    for (size_t i = 0; i < u->n; i++) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        cv_pg_params_init(&p);
        cv_pg_param_text(&p, u->rows[i].merchant_id);
        cv_pg_param_text(&p, u->rows[i].token);
        cv_pg_param_int(&p, u->rows[i].dek_id);
        cv_pg_param_bytes(&p, u->rows[i].nonce, sizeof(u->rows[i].nonce));
        cv_pg_param_bytes(&p, u->rows[i].ciphertext, u->rows[i].ciphertext_len);
        cv_pg_param_int(&p, u->old_dek_ids[i]);
        CV_TRY(cv_pg_run(c, &update_cipher, &p, &r));
        u->updated += (size_t)cv_pg_changed(r);
        PQclear(r);
    }
    return CV_OK;
}

cv_status cv_store_update_ciphers(struct cv_store *store, const struct cv_token_row *rows,
                                  const int64_t *old_dek_ids, size_t n, size_t *updated)
{
    struct update_ciphers_ctx u = {rows, old_dek_ids, n, 0};
    cv_status st = run_key_tx(store, "reencrypt", update_ciphers_tx, &u);
    *updated = st == CV_OK ? u.updated : 0;
    return st;
}

struct audit_key_ctx {
    const struct cv_audit_sealer *sealer;
    const unsigned char *wrapped, *kcv;
    size_t wrapped_len;
    const struct cv_audit_event *ev;
    bool created;
};

static cv_status create_audit_key_tx(struct cv_pg_conn *c, void *arg)
{
    struct audit_key_ctx *a = arg;
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_bytes(&p, a->wrapped, a->wrapped_len);
    cv_pg_param_bytes(&p, a->kcv, CV_KCV_BYTES);
    CV_TRY(cv_pg_run(c, &set_audit_key, &p, &r));
    a->created = cv_pg_changed(r) == 1;
    PQclear(r);
    if (!a->created)
        return CV_OK; /* another process came first: nothing to append */
    /* The first keyed event commits with the key: whoever can read the key
     * also finds a keyed head, so an unkeyed head later means stripping. */
    return cv_audit_store_start_keyed_in(c, a->sealer, a->ev);
}

cv_status cv_store_create_audit_key(struct cv_store *store, const unsigned char kcv[CV_KCV_BYTES],
                                    const unsigned char *wrapped, size_t wrapped_len,
                                    const struct cv_audit_event *ev, bool *created)
{
    struct audit_key_ctx a = {&store->sealer, wrapped, kcv, wrapped_len, ev, false};
    *created = false;
    CV_TRY(run_key_tx(store, "create-audit-key", create_audit_key_tx, &a));
    *created = a.created;
    return CV_OK;
}

struct destroy_ctx {
    const struct cv_audit_sealer *sealer;
    int64_t dek_id;
    const struct cv_audit_event *ev;
    int64_t tokens;
};

static cv_status destroy_tx(struct cv_pg_conn *c, void *arg)
{
    struct destroy_ctx *d = arg;
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, d->dek_id);
    CV_TRY(cv_pg_run(c, &lock_dek, &p, NULL));
    CV_TRY(cv_pg_run(c, &destroy_dek, &p, &r));
    bool found = PQntuples(r) == 1;
    if (found)
        d->tokens = cv_pg_get_int(r, 0, 0);
    PQclear(r);
    if (!found)
        return CV_ERR_NOT_FOUND;
    return cv_audit_store_append_in(c, d->sealer, d->ev);
}

cv_status cv_store_destroy_dek(struct cv_store *store, int64_t dek_id,
                               const struct cv_audit_event *ev, int64_t *tokens)
{
    struct destroy_ctx d = {&store->sealer, dek_id, ev, 0};
    *tokens = 0;
    CV_TRY(run_key_tx(store, "destroy-dek", destroy_tx, &d));
    *tokens = d.tokens;
    /* Outside the transaction (VACUUM cannot run inside one), and never
     * waiting on a lock: see vacuum_deks. A failure changes nothing of the
     * destruction, which has committed. */
    if (cv_pg_run_once(store->pool, &vacuum_deks, NULL, NULL) != CV_OK)
        cv_log(CV_LOG_WARN, "vacuum_after_destroy_failed", CV_LI("dek_id", dek_id),
               CV_LS("effect", "the dead row version goes at the next autovacuum"));
    return CV_OK;
}

cv_status cv_store_dead_deks(struct cv_store *store, const int64_t *ids, size_t n, int64_t *dead,
                             size_t *n_dead)
{
    struct cv_buf list;
    struct cv_pg_params p;
    PGresult *r = NULL;
    *n_dead = 0;
    if (n == 0)
        return CV_OK;
    cv_buf_init(&list, 64 * 1024);
    cv_status st = cv_buf_append_char(&list, '{');
    for (size_t i = 0; i < n && st == CV_OK; i++)
        st = cv_buf_appendf(&list, "%s%lld", i > 0 ? "," : "", (long long)ids[i]);
    if (st == CV_OK)
        st = cv_buf_append_char(&list, '}');
    if (st != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, list.data);
    if ((st = cv_pg_run_once(store->pool, &dead_deks, &p, &r)) != CV_OK)
        goto out;
    for (int i = 0; i < PQntuples(r) && (size_t)i < n; i++)
        dead[(*n_dead)++] = cv_pg_get_int(r, i, 0);
out:
    PQclear(r);
    cv_buf_cleanup(&list);
    return st;
}
