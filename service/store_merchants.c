/* store_merchants.c: the SQL of merchants and their API keys: create a
 * merchant, add and revoke a key, and scan keys changed since a moment (the
 * authenticator's cache refresh). Keys are stored as hashes only; nothing
 * here ever sees an API key in the clear. It calls only pg.c. */
#include "cardvault/store_merchants.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "store_handle.h"

static const struct cv_pg_stmt insert_merchant = {
    "insert_merchant",
    "INSERT INTO merchants (merchant_id, name) VALUES ($1, $2)",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt insert_api_key = {
    "insert_api_key",
    "INSERT INTO api_keys (merchant_id, key_prefix, key_hash, scopes, allowed_origins) "
    "VALUES ($1, $2, $3, string_to_array($4, ','), string_to_array($5, ','))",
    5,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt revoke_api_key = {
    "revoke_api_key",
    "UPDATE api_keys SET revoked_at = now(), changed_at = clock_timestamp() "
    "WHERE key_prefix = $1 AND revoked_at IS NULL RETURNING merchant_id",
    1,
    CV_PG_PREPARED,
    false,
    false};

/* Origins only on a live key whose scopes are exactly {tokenize} (the
 * table's CHECK says the same); changed_at makes running services pick the
 * change up at their next key refresh. */
static const struct cv_pg_stmt set_key_origins = {
    "set_key_origins",
    "UPDATE api_keys SET allowed_origins = string_to_array($2, ','), "
    "changed_at = clock_timestamp() "
    "WHERE key_prefix = $1 AND revoked_at IS NULL AND scopes = ARRAY['tokenize'] "
    "RETURNING merchant_id",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt get_key_origins = {
    "get_key_origins",
    "SELECT merchant_id, scopes = ARRAY['tokenize'], array_to_string(allowed_origins, ',') "
    "FROM api_keys WHERE key_prefix = $1 AND revoked_at IS NULL",
    1,
    CV_PG_PREPARED,
    false,
    false};

/* The key refresh runs every second or so; a query slower than this is a
 * failed refresh. */
#define API_KEY_SCAN_TIMEOUT "2s"

static const struct cv_pg_stmt scan_api_keys = {
    "scan_api_keys",
    "SELECT merchant_id, key_prefix, key_hash, array_to_string(scopes, ','), "
    "revoked_at IS NOT NULL, "
    "(extract(epoch FROM changed_at) * 1000000)::bigint, "
    "array_to_string(allowed_origins, ',') "
    "FROM api_keys WHERE changed_at >= to_timestamp($1::float8 / 1000000)",
    1,
    CV_PG_PREPARED,
    false,
    false};

cv_status cv_store_insert_merchant(struct cv_store *store, const char *merchant_id,
                                   const char *name)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, name);
    return cv_pg_run_once(store->pool, &insert_merchant, &p, NULL);
}

cv_status cv_store_insert_api_key(struct cv_store *store, const char *merchant_id,
                                  const char *prefix, const unsigned char hash[32],
                                  const char *scopes, const char *origins)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, prefix);
    cv_pg_param_bytes(&p, hash, 32);
    cv_pg_param_text(&p, scopes);
    cv_pg_param_text(&p, origins != NULL ? origins : "");
    cv_status st = cv_pg_run_once(store->pool, &insert_api_key, &p, NULL);
    /* a foreign-key violation: the merchant does not exist */
    return st == CV_ERR_DB ? CV_ERR_NOT_FOUND : st;
}

cv_status cv_store_revoke_api_key(struct cv_store *store, const char *prefix,
                                  char merchant_id[CV_MERCHANT_ID_LEN + 1])
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, prefix);
    CV_TRY(cv_pg_run_once(store->pool, &revoke_api_key, &p, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (st == CV_OK)
        cv_pg_get_text(r, 0, 0, merchant_id, CV_MERCHANT_ID_LEN + 1);
    PQclear(r);
    return st;
}

cv_status cv_store_scan_api_keys(struct cv_store *store, int64_t since_us, int64_t *max_changed_us,
                                 void (*fn)(void *ctx, const char *merchant_id, const char *prefix,
                                            const unsigned char hash[32], const char *scopes,
                                            const char *origins, bool revoked),
                                 void *ctx)
{
    struct cv_pg_params p;
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, since_us);
    CV_TRY(cv_pg_acquire(store->pool, &c));
    /* A refresh that hangs (a lock, a stuck server) must come back as a
     * failed refresh, not hold the refresher and a pool connection: the
     * revocation bound in auth.c counts from the last refresh that worked. */
    cv_status st;
    if ((st = cv_pg_command(c, "BEGIN READ ONLY")) != CV_OK ||
        (st = cv_pg_command(c, "SET LOCAL statement_timeout = '" API_KEY_SCAN_TIMEOUT "'")) !=
            CV_OK ||
        (st = cv_pg_run(c, &scan_api_keys, &p, &r)) != CV_OK ||
        (st = cv_pg_command(c, "COMMIT")) != CV_OK) {
        cv_pg_rollback(c);
        cv_pg_release(c);
        PQclear(r);
        return st;
    }
    cv_pg_release(c);
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned char hash[32];
        if ((st = cv_pg_get_fixed_bytea(r, i, 2, hash, sizeof(hash))) != CV_OK)
            break;
        fn(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), hash, PQgetvalue(r, i, 3),
           PQgetvalue(r, i, 6), cv_pg_get_bool(r, i, 4));
        int64_t changed = cv_pg_get_int(r, i, 5);
        if (changed > *max_changed_us)
            *max_changed_us = changed;
    }
    PQclear(r);
    return st;
}

cv_status cv_store_set_key_origins(struct cv_store *store, const char *prefix, const char *origins,
                                   char merchant_id[CV_MERCHANT_ID_LEN + 1])
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, prefix);
    cv_pg_param_text(&p, origins);
    CV_TRY(cv_pg_run_once(store->pool, &set_key_origins, &p, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (st == CV_OK)
        cv_pg_get_text(r, 0, 0, merchant_id, CV_MERCHANT_ID_LEN + 1);
    PQclear(r);
    return st;
}

cv_status cv_store_get_key_origins(struct cv_store *store, const char *prefix,
                                   char merchant_id[CV_MERCHANT_ID_LEN + 1], bool *publishable,
                                   char *origins, size_t cap)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, prefix);
    CV_TRY(cv_pg_run_once(store->pool, &get_key_origins, &p, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_NOT_FOUND;
    if (st == CV_OK) {
        cv_pg_get_text(r, 0, 0, merchant_id, CV_MERCHANT_ID_LEN + 1);
        *publishable = cv_pg_get_bool(r, 0, 1);
        cv_pg_get_text(r, 0, 2, origins, cap);
    }
    PQclear(r);
    return st;
}
