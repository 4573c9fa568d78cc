/* store_keys.c: the database side of the key lifecycle: DEK inventory,
 * KEK rotation (re-wrapping every DEK and the fingerprint key in one
 * transaction), re-encryption batches and crypto-shredding. Token rows are
 * never touched by a KEK rotation. Every statement is parameterized. */
#include "cardvault/store_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "store_pg_internal.h"

static cv_status exec_params(struct cv_pg_conn *pc, const char *what, const char *sql, int n,
                             const char *const *values, const int *lengths, const int *formats,
                             PGresult **out)
{
    PGresult *r = PQexecParams(cv_pg_handle(pc), sql, n, NULL, values, lengths, formats, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        cv_status e = cv_pg_error(pc, r, what);
        PQclear(r);
        return e;
    }
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return CV_OK;
}

static cv_status exec_plain(struct cv_pg_conn *pc, const char *sql)
{
    return exec_params(pc, sql, sql, 0, NULL, NULL, NULL, NULL);
}

static void rollback(struct cv_pg_conn *pc)
{
    if (PQtransactionStatus(cv_pg_handle(pc)) != PQTRANS_IDLE)
        PQclear(PQexec(cv_pg_handle(pc), "ROLLBACK"));
}

static cv_status audit_in_tx(struct cv_pg_conn *pc, const struct cv_audit_event *ev)
{
    const char *v[7] = {ev->actor,  ev->merchant_id, ev->token, ev->request_id,
                        ev->action, ev->outcome,     ev->detail};
    return exec_params(pc, "audit_append", "SELECT audit_append($1, $2, $3, $4, $5, $6, $7)", 7, v,
                       NULL, NULL, NULL);
}

cv_status cv_store_list_deks(struct cv_store *st,
                             void (*fn)(void *ctx, const struct cv_dek_status *d), void *ctx)
{
    struct cv_pg_conn *pc = NULL;
    PGresult *r = NULL;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s =
        exec_params(pc, "list_deks",
                    "SELECT d.dek_id, d.state, "
                    "extract(epoch FROM now() - d.created_at)::bigint, d.use_count, "
                    "d.max_uses, (SELECT count(*) FROM tokens t WHERE t.dek_id = d.dek_id) "
                    "FROM data_keys d ORDER BY d.dek_id",
                    0, NULL, NULL, NULL, &r);
    if (s == CV_OK) {
        for (int i = 0; i < PQntuples(r); i++) {
            struct cv_dek_status d;
            memset(&d, 0, sizeof(d));
            d.dek_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
            snprintf(d.state, sizeof(d.state), "%s", PQgetvalue(r, i, 1));
            d.age_s = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            d.use_count = strtoll(PQgetvalue(r, i, 3), NULL, 10);
            d.max_uses = strtoll(PQgetvalue(r, i, 4), NULL, 10);
            d.tokens = strtoll(PQgetvalue(r, i, 5), NULL, 10);
            fn(ctx, &d);
        }
        PQclear(r);
    }
    cv_pg_release(st, pc);
    return s;
}

cv_status cv_store_meta_info(struct cv_store *st, char provider[32],
                             unsigned char kcv[CV_KCV_BYTES], char rewrapped_at[32])
{
    struct cv_pg_conn *pc = NULL;
    PGresult *r = NULL;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_params(pc, "meta_info",
                              "SELECT kek_provider, kek_check_value, "
                              "coalesce(to_char(rewrapped_at AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') FROM vault_meta",
                              0, NULL, NULL, NULL, &r);
    if (s == CV_OK && PQntuples(r) != 1)
        s = CV_ERR_NOT_FOUND;
    if (s == CV_OK) {
        unsigned char *b = NULL;
        size_t n = 0;
        snprintf(provider, 32, "%s", PQgetvalue(r, 0, 0));
        snprintf(rewrapped_at, 32, "%s", PQgetvalue(r, 0, 2));
        s = cv_pg_get_bytea(r, 0, 1, &b, &n);
        if (s == CV_OK && n == CV_KCV_BYTES)
            memcpy(kcv, b, CV_KCV_BYTES);
        else if (s == CV_OK)
            s = CV_ERR_DB;
        free(b);
    }
    PQclear(r);
    cv_pg_release(st, pc);
    return s;
}

/* Unwraps `wrapped` with old_kp and wraps it again with new_kp. */
static cv_status rewrap_one(struct cv_keyprovider *old_kp, struct cv_keyprovider *new_kp,
                            const unsigned char *wrapped, size_t len, unsigned char **out,
                            size_t *out_len)
{
    struct cv_secbuf *key = NULL;
    CV_TRY(cv_keyprovider_unwrap(old_kp, wrapped, len, &key));
    cv_status s = cv_keyprovider_wrap(new_kp, key, out, out_len);
    cv_secbuf_free(key);
    return s;
}

cv_status cv_store_rewrap_all(struct cv_store *st, struct cv_keyprovider *old_kp,
                              struct cv_keyprovider *new_kp, const struct cv_audit_event *ev,
                              int *rewrapped)
{
    unsigned char old_kcv[CV_KCV_BYTES], new_kcv[CV_KCV_BYTES];
    struct cv_pg_conn *pc = NULL;
    PGresult *meta = NULL, *deks = NULL;
    unsigned char *buf = NULL, *fp_new = NULL;
    size_t len = 0, fp_new_len = 0;
    *rewrapped = 0;
    CV_TRY(cv_keyprovider_check_value(old_kp, old_kcv));
    CV_TRY(cv_keyprovider_check_value(new_kp, new_kcv));
    if (cv_ct_equal(old_kcv, new_kcv, CV_KCV_BYTES))
        return CV_ERR_BAD_REQUEST; /* the "new" KEK is the current one */
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_plain(pc, "BEGIN");
    /* FOR UPDATE on the singleton: DEK inserts (which read it FOR SHARE) wait
     * for us, then see the new check value and refuse the old KEK's wrapping. */
    if (s == CV_OK)
        s = exec_params(pc, "rewrap_meta",
                        "SELECT kek_check_value, fingerprint_key_wrapped FROM vault_meta "
                        "FOR UPDATE",
                        0, NULL, NULL, NULL, &meta);
    if (s != CV_OK)
        goto out;
    unsigned char *kcv_db = NULL;
    size_t kcv_len = 0;
    s = PQntuples(meta) == 1 ? cv_pg_get_bytea(meta, 0, 0, &kcv_db, &kcv_len) : CV_ERR_NOT_FOUND;
    bool matches =
        s == CV_OK && kcv_len == CV_KCV_BYTES && cv_ct_equal(kcv_db, old_kcv, CV_KCV_BYTES);
    free(kcv_db);
    if (s == CV_OK && !matches)
        s = CV_ERR_CONFIG; /* the current KEK is not the one we were given */
    if (s == CV_OK)
        s = cv_pg_get_bytea(meta, 0, 1, &buf, &len);
    if (s == CV_OK)
        s = rewrap_one(old_kp, new_kp, buf, len, &fp_new, &fp_new_len);
    free(buf);
    buf = NULL;
    if (s == CV_OK)
        s = exec_params(pc, "rewrap_deks",
                        "SELECT dek_id, wrapped_key FROM data_keys WHERE wrapped_key IS NOT NULL "
                        "ORDER BY dek_id FOR UPDATE",
                        0, NULL, NULL, NULL, &deks);
    for (int i = 0; s == CV_OK && i < PQntuples(deks); i++) {
        unsigned char *w = NULL, *nw = NULL;
        size_t wl = 0, nwl = 0;
        s = cv_pg_get_bytea(deks, i, 1, &w, &wl);
        if (s == CV_OK)
            s = rewrap_one(old_kp, new_kp, w, wl, &nw, &nwl);
        if (s == CV_OK) {
            const char *v[2] = {PQgetvalue(deks, i, 0), (const char *)nw};
            const int l[2] = {0, (int)nwl};
            const int f[2] = {0, 1};
            s = exec_params(pc, "rewrap_dek",
                            "UPDATE data_keys SET wrapped_key = $2 WHERE dek_id = $1", 2, v, l, f,
                            NULL);
        }
        if (s == CV_OK)
            (*rewrapped)++;
        free(w);
        free(nw);
    }
    if (s == CV_OK) {
        const char *v[3] = {cv_keyprovider_name(new_kp), (const char *)new_kcv,
                            (const char *)fp_new};
        const int l[3] = {0, CV_KCV_BYTES, (int)fp_new_len};
        const int f[3] = {0, 1, 1};
        s = exec_params(pc, "rewrap_update_meta",
                        "UPDATE vault_meta SET kek_provider = $1, kek_check_value = $2, "
                        "fingerprint_key_wrapped = $3, rewrapped_at = now()",
                        3, v, l, f, NULL);
    }
    if (s == CV_OK)
        s = audit_in_tx(pc, ev);
    /* One transaction: a crash before this COMMIT leaves the old KEK in force. */
    if (s == CV_OK)
        s = exec_plain(pc, "COMMIT");
out:
    if (s != CV_OK)
        rollback(pc);
    PQclear(meta);
    PQclear(deks);
    free(fp_new);
    cv_pg_release(st, pc);
    if (s != CV_OK)
        *rewrapped = 0;
    return s;
}

cv_status cv_store_retire_active_except(struct cv_store *st, int64_t keep)
{
    struct cv_pg_conn *pc = NULL;
    char k[24];
    snprintf(k, sizeof(k), "%lld", (long long)keep);
    const char *v[1] = {k};
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_params(pc, "retire_others",
                              "UPDATE data_keys SET state = 'retired', retired_at = now() "
                              "WHERE state = 'active' AND dek_id <> $1",
                              1, v, NULL, NULL, NULL);
    cv_pg_release(st, pc);
    return s;
}

cv_status cv_store_tokens_to_reencrypt(struct cv_store *st, int64_t from_dek, size_t limit,
                                       struct cv_token_row *rows, size_t *n)
{
    struct cv_pg_conn *pc = NULL;
    PGresult *r = NULL;
    char f[24], l[24];
    snprintf(f, sizeof(f), "%lld", (long long)from_dek);
    snprintf(l, sizeof(l), "%zu", limit);
    const char *v[2] = {f, l};
    *n = 0;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_params(
        pc, "tokens_to_reencrypt",
        "SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext "
        /* 10 s: by then no instance still seals under the key (keyring.c) */
        "FROM tokens t JOIN data_keys d USING (dek_id) WHERE d.state = 'retired' "
        "AND d.retired_at < now() - interval '10 seconds' "
        "AND ($1::bigint = 0 OR t.dek_id = $1::bigint) ORDER BY t.dek_id, t.merchant_id, t.token "
        "LIMIT $2",
        2, v, NULL, NULL, &r);
    for (int i = 0; s == CV_OK && i < PQntuples(r) && (size_t)i < limit; i++) {
        struct cv_token_row *row = &rows[i];
        unsigned char *nonce = NULL;
        size_t nonce_len = 0;
        memset(row, 0, sizeof(*row));
        snprintf(row->merchant_id, sizeof(row->merchant_id), "%s", PQgetvalue(r, i, 0));
        snprintf(row->token, sizeof(row->token), "%s", PQgetvalue(r, i, 1));
        row->format_version = (int)strtol(PQgetvalue(r, i, 2), NULL, 10);
        row->dek_id = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        s = cv_pg_get_bytea(r, i, 4, &nonce, &nonce_len);
        if (s == CV_OK && nonce_len == sizeof(row->nonce))
            memcpy(row->nonce, nonce, nonce_len);
        free(nonce);
        if (s == CV_OK)
            s = cv_pg_get_bytea(r, i, 5, &row->ciphertext, &row->ciphertext_len);
        if (s == CV_OK)
            (*n)++;
    }
    if (s == CV_OK)
        PQclear(r);
    cv_pg_release(st, pc);
    return s;
}

cv_status cv_store_update_ciphers(struct cv_store *st, const struct cv_token_row *rows,
                                  const int64_t *old_dek_ids, size_t n, size_t *updated)
{
    struct cv_pg_conn *pc = NULL;
    *updated = 0;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_plain(pc, "BEGIN");
    for (size_t i = 0; s == CV_OK && i < n; i++) {
        char dek[24], old[24];
        PGresult *r = NULL;
        snprintf(dek, sizeof(dek), "%lld", (long long)rows[i].dek_id);
        snprintf(old, sizeof(old), "%lld", (long long)old_dek_ids[i]);
        const char *v[6] = {rows[i].merchant_id,
                            rows[i].token,
                            dek,
                            (const char *)rows[i].nonce,
                            (const char *)rows[i].ciphertext,
                            old};
        const int l[6] = {0, 0, 0, (int)sizeof(rows[i].nonce), (int)rows[i].ciphertext_len, 0};
        const int f[6] = {0, 0, 0, 1, 1, 0};
        /* The old dek_id in the WHERE: a row deleted or re-encrypted meanwhile
         * is simply skipped. */
        s = exec_params(pc, "update_cipher",
                        "UPDATE tokens SET dek_id = $3, nonce = $4, ciphertext = $5 "
                        "WHERE merchant_id = $1 AND token = $2 AND dek_id = $6",
                        6, v, l, f, &r);
        if (s == CV_OK) {
            *updated += (size_t)strtol(PQcmdTuples(r), NULL, 10);
            PQclear(r);
        }
    }
    if (s == CV_OK)
        s = exec_plain(pc, "COMMIT");
    if (s != CV_OK) {
        rollback(pc);
        *updated = 0;
    }
    cv_pg_release(st, pc);
    return s;
}

cv_status cv_store_destroy_dek(struct cv_store *st, int64_t dek_id, const struct cv_audit_event *ev,
                               int64_t *tokens)
{
    struct cv_pg_conn *pc = NULL;
    PGresult *r = NULL;
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)dek_id);
    const char *v[1] = {id};
    *tokens = 0;
    CV_TRY(cv_pg_acquire(st, &pc));
    cv_status s = exec_plain(pc, "BEGIN");
    /* Only a key retired long enough ago: instances keep sealing under a
     * just-retired key until their use reservation lapses (5 s, keyring.c),
     * and a card acknowledged under it would be shredded at once. The wrapped
     * key is overwritten with NULL: without it, its rows cannot be opened. */
    if (s == CV_OK)
        s = exec_params(pc, "destroy_dek",
                        "UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, "
                        "destroyed_at = now() WHERE dek_id = $1 AND state = 'retired' "
                        "AND retired_at < now() - interval '10 seconds' "
                        "RETURNING (SELECT count(*) FROM tokens WHERE dek_id = $1)",
                        1, v, NULL, NULL, &r);
    if (s == CV_OK) {
        if (PQntuples(r) == 1)
            *tokens = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            s = CV_ERR_NOT_FOUND;
        PQclear(r);
    }
    if (s == CV_OK)
        s = audit_in_tx(pc, ev);
    if (s == CV_OK)
        s = exec_plain(pc, "COMMIT");
    if (s != CV_OK)
        rollback(pc);
    /* Rewrite the small table so the dead row version holding the wrapped key
     * leaves the heap now instead of whenever autovacuum reuses its space.
     * Copies in WAL and backups remain until they expire: they are wrapped
     * under the KEK, so rotating the KEK afterwards completes the shred. */
    if (s == CV_OK && exec_plain(pc, "VACUUM (FULL) data_keys") != CV_OK)
        cv_log(CV_LOG_WARN, "vacuum_after_destroy_failed", CV_LI("dek_id", dek_id));
    cv_pg_release(st, pc);
    return s;
}
