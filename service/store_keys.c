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

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "pg.h"
#include "store_audit_sql.h"
#include "store_handle.h"

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

/* FOR UPDATE on the singleton: DEK inserts (which read it FOR SHARE) wait
 * for the rotation, then see the new check value and refuse the old KEK's
 * wrapping. */
static const struct cv_pg_stmt rewrap_meta = {
    "rewrap_meta",
    "SELECT kek_check_value, fingerprint_key_wrapped FROM vault_meta FOR UPDATE",
    0,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt rewrap_deks = {
    "rewrap_deks",
    "SELECT dek_id, wrapped_key FROM data_keys WHERE wrapped_key IS NOT NULL "
    "ORDER BY dek_id FOR UPDATE",
    0,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt rewrap_dek = {
    "rewrap_dek",
    "UPDATE data_keys SET wrapped_key = $2 WHERE dek_id = $1",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt rewrap_update_meta = {
    "rewrap_update_meta",
    "UPDATE vault_meta SET kek_provider = $1, kek_check_value = $2, "
    "fingerprint_key_wrapped = $3, rewrapped_at = now()",
    3,
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
    "SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext "
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

/* Only a key retired long enough ago: instances keep sealing under a
 * just-retired key until their use reservation lapses (5 s, keyring.c), and
 * a card acknowledged under it would be shredded at once. The wrapped key is
 * overwritten with NULL: without it, its rows cannot be opened. */
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

/* Rewrites the small table so the dead row version holding the wrapped key
 * leaves the heap now instead of whenever autovacuum reuses its space. */
static const struct cv_pg_stmt vacuum_deks = {
    "vacuum_data_keys", "VACUUM (FULL) data_keys", 0, CV_PG_ONE_OFF, false, false};

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

/* Checks the locked metadata row names old_kcv and re-wraps the
 * fingerprint key through fn; *fp_new (heap) gets the new wrapping. */
static cv_status rewrap_fingerprint_key(struct cv_pg_conn *c, const unsigned char *old_kcv,
                                        cv_store_rewrap_fn fn, void *ctx, unsigned char **fp_new,
                                        size_t *fp_new_len)
{
    PGresult *meta = NULL;
    unsigned char kcv_db[CV_KCV_BYTES], *fp = NULL;
    size_t fp_len = 0;
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
    st = fn(ctx, fp, fp_len, fp_new, fp_new_len);
out:
    free(fp);
    PQclear(meta);
    return st;
}

/* Re-wraps DEK row i of deks through fn and stores the result. */
static cv_status rewrap_one_dek(struct cv_pg_conn *c, const PGresult *deks, int i,
                                cv_store_rewrap_fn fn, void *ctx)
{
    unsigned char *w = NULL, *nw = NULL;
    size_t wl = 0, nwl = 0;
    struct cv_pg_params p;
    cv_status st = cv_pg_get_bytea(deks, i, 1, &w, &wl);
    if (st != CV_OK)
        goto out;
    if ((st = fn(ctx, w, wl, &nw, &nwl)) != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, cv_pg_get_int(deks, i, 0));
    cv_pg_param_bytes(&p, nw, nwl);
    st = cv_pg_run(c, &rewrap_dek, &p, NULL);
out:
    free(w);
    free(nw);
    return st;
}

/* Re-wraps every DEK still holding key material through fn. */
static cv_status rewrap_every_dek(struct cv_pg_conn *c, cv_store_rewrap_fn fn, void *ctx,
                                  int *rewrapped)
{
    PGresult *deks = NULL;
    CV_TRY(cv_pg_run(c, &rewrap_deks, NULL, &deks));
    cv_status st = CV_OK;
    for (int i = 0; i < PQntuples(deks); i++) {
        if ((st = rewrap_one_dek(c, deks, i, fn, ctx)) != CV_OK)
            break;
        (*rewrapped)++;
    }
    PQclear(deks);
    return st;
}

cv_status cv_store_rewrap_all(struct cv_store *store, const unsigned char old_kcv[CV_KCV_BYTES],
                              const unsigned char new_kcv[CV_KCV_BYTES], const char *new_provider,
                              cv_store_rewrap_fn fn, void *ctx, const struct cv_audit_event *ev,
                              int *rewrapped)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_params p;
    unsigned char *fp_new = NULL;
    size_t fp_new_len = 0;
    *rewrapped = 0;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    if ((st = rewrap_fingerprint_key(c, old_kcv, fn, ctx, &fp_new, &fp_new_len)) != CV_OK)
        goto out;
    if ((st = rewrap_every_dek(c, fn, ctx, rewrapped)) != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, new_provider);
    cv_pg_param_bytes(&p, new_kcv, CV_KCV_BYTES);
    cv_pg_param_bytes(&p, fp_new, fp_new_len);
    if ((st = cv_pg_run(c, &rewrap_update_meta, &p, NULL)) != CV_OK)
        goto out;
    if ((st = cv_audit_store_append_in(c, ev)) != CV_OK)
        goto out;
    /* One transaction: a crash before this COMMIT leaves the old KEK in force. */
    st = cv_pg_command(c, "COMMIT");
out:
    if (st != CV_OK) {
        cv_pg_rollback(c);
        *rewrapped = 0;
    }
    free(fp_new);
    cv_pg_release(c);
    return st;
}

cv_status cv_store_retire_active_except(struct cv_store *store, int64_t keep)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, keep);
    return cv_pg_run_once(store->pool, &retire_others, &p, NULL);
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

cv_status cv_store_update_ciphers(struct cv_store *store, const struct cv_token_row *rows,
                                  const int64_t *old_dek_ids, size_t n, size_t *updated)
{
    struct cv_pg_conn *c = NULL;
    *updated = 0;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        cv_pg_params_init(&p);
        cv_pg_param_text(&p, rows[i].merchant_id);
        cv_pg_param_text(&p, rows[i].token);
        cv_pg_param_int(&p, rows[i].dek_id);
        cv_pg_param_bytes(&p, rows[i].nonce, sizeof(rows[i].nonce));
        cv_pg_param_bytes(&p, rows[i].ciphertext, rows[i].ciphertext_len);
        cv_pg_param_int(&p, old_dek_ids[i]);
        if ((st = cv_pg_run(c, &update_cipher, &p, &r)) != CV_OK)
            goto out;
        *updated += (size_t)cv_pg_changed(r);
        PQclear(r);
    }
    st = cv_pg_command(c, "COMMIT");
out:
    if (st != CV_OK) {
        cv_pg_rollback(c);
        *updated = 0;
    }
    cv_pg_release(c);
    return st;
}

cv_status cv_store_destroy_dek(struct cv_store *store, int64_t dek_id,
                               const struct cv_audit_event *ev, int64_t *tokens)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_params p;
    PGresult *r = NULL;
    *tokens = 0;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, dek_id);
    if ((st = cv_pg_run(c, &destroy_dek, &p, &r)) != CV_OK)
        goto out;
    if (PQntuples(r) != 1) {
        st = CV_ERR_NOT_FOUND;
        goto out;
    }
    *tokens = cv_pg_get_int(r, 0, 0);
    if ((st = cv_audit_store_append_in(c, ev)) != CV_OK)
        goto out;
    if ((st = cv_pg_command(c, "COMMIT")) != CV_OK)
        goto out;
    /* Copies in WAL and backups remain until they expire: they are wrapped
     * under the KEK, so rotating the KEK afterwards completes the shred. */
    if (cv_pg_run(c, &vacuum_deks, NULL, NULL) != CV_OK)
        cv_log(CV_LOG_WARN, "vacuum_after_destroy_failed", CV_LI("dek_id", dek_id));
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    PQclear(r);
    cv_pg_release(c);
    return st;
}
