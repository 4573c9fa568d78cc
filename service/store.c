/* store.c: the front door of the store. Opens and closes it (the pool of
 * pg.c), switches group commit on (store_batch.c), answers the health and
 * startup questions (ping, durability settings, schema version), and routes
 * token writes, token reads and audit appends either through the batcher or
 * straight to the SQL files. Calls go one way: store.c -> store_batch.c ->
 * store_tokens.c / store_audit.c -> pg.c; nothing below calls back up. No
 * card data in the clear ever reaches the store. */
#include "cardvault/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"
#include "pg.h"
#include "store_audit_sql.h"
#include "store_batch.h"
#include "store_handle.h"
#include "store_tokens_sql.h"

static const struct cv_pg_stmt ping = {"ping", "SELECT 1", 0, CV_PG_PREPARED, false, false};

static const struct cv_pg_stmt durability = {
    "check_durability", "SELECT current_setting('fsync')", 0, CV_PG_PREPARED, false, false};

/* Asked first so a fresh database is "version 0", not an error. */
static const struct cv_pg_stmt has_migrations = {
    "schema_version_table",
    "SELECT to_regclass('schema_migrations') IS NOT NULL",
    0,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt schema_version = {
    "schema_version",
    "SELECT coalesce(max(version), 0) FROM schema_migrations",
    0,
    CV_PG_PREPARED,
    false,
    false};

cv_status cv_store_open(const char *conninfo, unsigned pool_size, struct cv_store **out, char *why,
                        size_t why_len)
{
    struct cv_store *store = cv_xcalloc(1, sizeof(*store));
    cv_status st = cv_pg_pool_open(conninfo, pool_size, &store->pool, why, why_len);
    if (st != CV_OK) {
        free(store);
        return st;
    }
    *out = store;
    return CV_OK;
}

cv_status cv_store_start_batching(struct cv_store *store, unsigned writers)
{
    store->writer = cv_batcher_start(store->pool, &store->sealer, writers);
    store->reader = cv_batcher_start(store->pool, &store->sealer, writers);
    return store->writer != NULL && store->reader != NULL ? CV_OK : CV_ERR_INTERNAL;
}

void cv_store_close(struct cv_store *store)
{
    if (store == NULL)
        return;
    cv_batcher_stop(store->writer); /* queued writes finish before connections close */
    cv_batcher_stop(store->reader);
    cv_pg_pool_close(store->pool);
    free(store);
}

cv_status cv_store_ping(struct cv_store *store)
{
    return cv_pg_run_once(store->pool, &ping, NULL, NULL);
}

/* Who replicates synchronously now: the standby list in force, and how many
 * WAL senders the server has (their rows are visible to any role; their
 * details are not, and are not needed). */
static const struct cv_pg_stmt replication = {
    "replication_state",
    "SELECT current_setting('synchronous_standby_names'), "
    "(SELECT count(*) FROM pg_stat_replication)",
    0,
    CV_PG_PREPARED,
    false,
    false};

cv_status cv_store_replication(struct cv_store *store, bool *standby_named, int *senders)
{
    PGresult *r = NULL;
    *standby_named = false;
    *senders = 0;
    CV_TRY(cv_pg_run_once(store->pool, &replication, NULL, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_DB_UNAVAILABLE;
    if (st == CV_OK) {
        const char *names = PQgetvalue(r, 0, 0);
        *standby_named = names[strspn(names, " \t\"")] != '\0';
        *senders = (int)cv_pg_get_int(r, 0, 1);
    }
    PQclear(r);
    return st;
}

void cv_store_cancel_busy(struct cv_store *store)
{
    cv_pg_cancel_busy(store->pool);
}

void cv_store_pool_usage(struct cv_store *store, unsigned *in_use, unsigned *size)
{
    cv_pg_pool_usage(store->pool, in_use, size);
}

void cv_store_libpq_version(char *out, size_t cap)
{
    /* PQlibVersion: major * 10000 + minor since PostgreSQL 10. */
    int v = PQlibVersion();
    snprintf(out, cap, "%d.%d", v / 10000, v % 10000);
}

cv_status cv_store_check_durability(struct cv_store *store, struct cv_store_durability *out)
{
    PGresult *r = NULL;
    memset(out, 0, sizeof(*out));
    CV_TRY(cv_pg_run_once(store->pool, &durability, NULL, &r));
    cv_status st = PQntuples(r) == 1 ? CV_OK : CV_ERR_DB_UNAVAILABLE;
    if (st == CV_OK) {
        out->fsync_on = strcmp(PQgetvalue(r, 0, 0), "on") == 0;
    }
    PQclear(r);
    return st;
}

cv_status cv_store_require_durable(struct cv_store *store, char *why, size_t why_len)
{
    return cv_pg_pool_require_durable(store->pool, why, why_len);
}

static const struct cv_pg_stmt role_check = {
    "role_check",
    "SELECT current_user, r.rolsuper, pg_has_role(current_user, c.relowner, 'MEMBER') "
    "FROM pg_roles r, pg_class c WHERE r.rolname = current_user "
    "AND c.oid = to_regclass('tokens')",
    0,
    CV_PG_ONE_OFF,
    false,
    false};

cv_status cv_store_check_role(struct cv_store *store, bool allow_owner, bool *privileged, char *why,
                              size_t why_len)
{
    PGresult *r = NULL;
    *privileged = false;
    cv_status st = cv_pg_run_once(store->pool, &role_check, NULL, &r);
    if (st != CV_OK || PQntuples(r) != 1) {
        PQclear(r);
        snprintf(why, why_len, "cannot read the database role serve connects as");
        return st != CV_OK ? st : CV_ERR_DB;
    }
    bool superuser = cv_pg_get_bool(r, 0, 1);
    *privileged = superuser || cv_pg_get_bool(r, 0, 2);
    if (*privileged && !allow_owner)
        snprintf(why, why_len,
                 "the database role %.64s is %s: run serve as a member of cardvault_service "
                 "(docs/operations.md), or set CARDVAULT_ALLOW_OWNER_ROLE=1 in development",
                 PQgetvalue(r, 0, 0), superuser ? "a superuser" : "the owner of the schema");
    else if (*privileged)
        snprintf(why, why_len,
                 "the database role %.64s is %s: serve can alter the schema and rewrite the "
                 "audit trail; CARDVAULT_ALLOW_OWNER_ROLE=1 is for development only",
                 PQgetvalue(r, 0, 0), superuser ? "a superuser" : "the owner of the schema");
    PQclear(r);
    return *privileged && !allow_owner ? CV_ERR_CONFIG : CV_OK;
}

cv_status cv_store_schema_version(struct cv_store *store, int *version)
{
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    *version = 0;
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_run(c, &has_migrations, NULL, &r);
    if (st != CV_OK)
        goto out;
    bool exists = cv_pg_get_bool(r, 0, 0);
    PQclear(r);
    r = NULL;
    if (!exists)
        goto out;
    if ((st = cv_pg_run(c, &schema_version, NULL, &r)) != CV_OK)
        goto out;
    *version = (int)cv_pg_get_int(r, 0, 0);
out:
    PQclear(r);
    cv_pg_release(c);
    return st;
}

cv_status cv_store_insert_token(struct cv_store *store, const struct cv_token_row *row,
                                const unsigned char *idem_key_hash, const char *response_body,
                                const struct cv_audit_event *ev)
{
    if (store->writer != NULL)
        return cv_batcher_insert_token(store->writer, row, idem_key_hash, response_body, ev);
    return cv_batch_insert_token_audited(store->pool, &store->sealer, row, idem_key_hash,
                                         response_body, ev);
}

cv_status cv_store_get_token(struct cv_store *store, const char *merchant_id, const char *token,
                             struct cv_token_row *out)
{
    if (store->reader != NULL)
        return cv_batcher_get_token(store->reader, merchant_id, token, out);
    return cv_tokens_get(store->pool, merchant_id, token, out);
}

cv_status cv_store_insert_token_async(struct cv_store *store, const struct cv_token_row *row,
                                      const unsigned char *idem_key_hash, const char *response_body,
                                      const struct cv_audit_event *ev, cv_store_done_fn done,
                                      void *ctx)
{
    if (store->writer != NULL)
        return cv_batcher_insert_token_async(store->writer, row, idem_key_hash, response_body, ev,
                                             done, ctx);
    done(ctx, cv_batch_insert_token_audited(store->pool, &store->sealer, row, idem_key_hash,
                                            response_body, ev));
    return CV_OK;
}

cv_status cv_store_get_token_async(struct cv_store *store, const char *merchant_id,
                                   const char *token, struct cv_token_row *out,
                                   cv_store_done_fn done, void *ctx)
{
    if (store->reader != NULL)
        return cv_batcher_get_token_async(store->reader, merchant_id, token, out, done, ctx);
    done(ctx, cv_tokens_get(store->pool, merchant_id, token, out));
    return CV_OK;
}

void cv_store_set_audit_sealer(struct cv_store *store, cv_audit_seal_fn fn, void *ctx)
{
    store->sealer.fn = fn;
    store->sealer.ctx = ctx;
}

cv_status cv_store_audit_append(struct cv_store *store, const struct cv_audit_event *ev)
{
    if (store->writer != NULL)
        return cv_batcher_audit_append(store->writer, ev);
    return cv_audit_store_append(store->pool, &store->sealer, ev);
}

cv_status cv_store_audit_append_async(struct cv_store *store, const struct cv_audit_event *ev,
                                      cv_store_done_fn done, void *ctx)
{
    if (store->writer != NULL)
        return cv_batcher_audit_append_async(store->writer, ev, done, ctx);
    done(ctx, cv_audit_store_append(store->pool, &store->sealer, ev));
    return CV_OK;
}
