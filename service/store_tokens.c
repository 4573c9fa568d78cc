/* store_tokens.c: the SQL of token rows and of the idempotency records that
 * travel with them: insert (alone, or with its idempotency answer in the
 * same statement), get (alone or many in one query), delete (with its audit
 * event in the same transaction), find by fingerprint, and the idempotency
 * claim/complete/release/purge. Card data never reaches here in the clear:
 * only ciphertext, BIN, last 4, brand and a keyed fingerprint. It calls only
 * pg.c and the audit append of store_audit.c; it never calls back into
 * store.c or the batcher. */
#include "cardvault/store_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "store_audit_sql.h"
#include "store_handle.h"
#include "store_tokens_sql.h"

#define RFC3339_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#define TOKEN_COLS                                                                                 \
    "t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, "  \
    "t.last4, t.fingerprint, " RFC3339_UTC(                                                        \
        "t.created_at") ", d.state = 'destroyed', "                                                \
                        "t.metadata::text, " RFC3339_UTC(                                          \
                            "t.expires_at") ", "                                                   \
                                            "(extract(epoch FROM t.created_at) * 1000000)::bigint"

/* An expired token answers exactly like a missing one: every read, the
 * reuse lookup, the delete and the update see only live rows; the
 * housekeeping purge deletes the others. */
#define LIVE "(t.expires_at IS NULL OR t.expires_at > now())"

/* Columns of one inserted row. */
#define INSERT_COLS 13
/* The idempotency claim retries this many times when the record it lost to
 * was released before it could be read (the holder's request failed). */
#define CLAIM_ATTEMPTS 8

/* Every token insert names its DEK row and takes FOR KEY SHARE on it (the
 * lock its foreign key takes anyway, so a KEK rotation or a use reservation
 * updating the row never waits for inserts), and inserts nothing when that
 * key is destroyed. `keys destroy-dek` takes FOR UPDATE on the row before
 * marking it (store_keys.c), which conflicts: the destruction waits for
 * inserts under way, and a later insert waits for the destruction, then sees
 * the key destroyed. So a card sealed under a key shredded meanwhile, however
 * late its insert, is refused instead of acknowledged. */
#define INSERT_ONE_SQL                                                                             \
    "INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, "                      \
    "ciphertext, brand, bin, last4, fingerprint, created_at, metadata, expires_at) "               \
    "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, "                            \
    "NULLIF($13, '')::timestamptz FROM data_keys "                                                 \
    "WHERE dek_id = $4::bigint AND state <> 'destroyed' FOR KEY SHARE"

static const struct cv_pg_stmt insert_token = {"insert_token", INSERT_ONE_SQL, 13,
                                               CV_PG_PREPARED, false,          false};

/* A data-modifying CTE runs exactly once whether or not it is referenced:
 * the token row and its idempotency answer commit in one statement. The
 * answer is the number of token rows written (0: its DEK is destroyed). */
static const struct cv_pg_stmt insert_token_idem = {
    "insert_token_idem",
    "WITH t AS (" INSERT_ONE_SQL " RETURNING merchant_id), "
    "u AS (UPDATE idempotency_keys i SET state = 'done', status_code = 201, "
    "response_body = $15 FROM t WHERE i.merchant_id = t.merchant_id "
    "AND i.key_hash = $14 AND i.state = 'in_progress' RETURNING 1) "
    "SELECT count(*) FROM t",
    15,
    CV_PG_PREPARED,
    false,
    false};

/* The DEK rows of a batch, locked as one insert locks its own (above), in
 * id order (the order a KEK rotation writes them). */
static const struct cv_pg_stmt lock_batch_deks = {
    "lock_batch_deks",
    "SELECT dek_id FROM data_keys WHERE dek_id = ANY($1::bigint[]) "
    "AND state <> 'destroyed' ORDER BY dek_id FOR KEY SHARE",
    1,
    CV_PG_PREPARED,
    false,
    true};

/* The idempotency answer of one row of a batch insert (same transaction). */
static const struct cv_pg_stmt idem_complete_created = {
    "idem_complete_created",
    "UPDATE idempotency_keys SET state = 'done', status_code = 201, "
    "response_body = $3 WHERE merchant_id = $1 AND key_hash = $2 "
    "AND state = 'in_progress'",
    3,
    CV_PG_PREPARED,
    false,
    true};

static const struct cv_pg_stmt get_token = {"get_token",
                                            "SELECT " TOKEN_COLS
                                            " FROM tokens t JOIN data_keys d USING (dek_id) "
                                            "WHERE t.merchant_id = $1 AND t.token = $2 AND " LIVE,
                                            2,
                                            CV_PG_PREPARED,
                                            false,
                                            false};

/* Concurrent reads share one round trip: each row is still found by its
 * full (merchant_id, token) key, so a batch never mixes merchants' data. */
static const struct cv_pg_stmt get_tokens_batch = {
    "get_tokens_batch",
    "SELECT " TOKEN_COLS " FROM tokens t JOIN data_keys d USING (dek_id) "
    "JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, token) "
    "ON t.merchant_id = k.merchant_id AND t.token = k.token WHERE " LIVE,
    2,
    CV_PG_PREPARED,
    false,
    false};

/* The delete and its audit event share one transaction: a deletion is
 * never unaudited. The event's MAC is computed in C (store_audit.c), so it
 * can no longer be appended inside this very statement; the count tells
 * the caller which outcome to record. */
static const struct cv_pg_stmt delete_token = {
    "delete_token",
    "WITH d AS (DELETE FROM tokens t WHERE t.merchant_id = $1 AND t.token = $2 AND " LIVE
    " RETURNING 1) SELECT count(*) FROM d",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt find_by_fp = {"find_by_fingerprint",
                                             "SELECT " TOKEN_COLS
                                             " FROM tokens t JOIN data_keys d USING (dek_id) "
                                             "WHERE t.merchant_id = $1 AND t.fingerprint = $2 "
                                             "AND " LIVE " ORDER BY t.created_at DESC LIMIT $3",
                                             3,
                                             CV_PG_PREPARED,
                                             false,
                                             false};

static const struct cv_pg_stmt idem_claim = {
    "idem_claim",
    "INSERT INTO idempotency_keys (merchant_id, key_hash, request_hash, state, "
    "expires_at) VALUES ($1, $2, $3, 'in_progress', "
    "now() + make_interval(secs => $4)) "
    "ON CONFLICT (merchant_id, key_hash) DO UPDATE SET "
    "request_hash = EXCLUDED.request_hash, state = 'in_progress', "
    "status_code = NULL, response_body = NULL, created_at = now(), "
    "expires_at = EXCLUDED.expires_at "
    "WHERE idempotency_keys.expires_at < now() OR "
    "(idempotency_keys.state = 'in_progress' AND "
    "idempotency_keys.created_at < now() - make_interval(secs => $5)) "
    "RETURNING 1",
    5,
    CV_PG_PREPARED,
    false,
    false};

/* A claim that does not wait for its own flush (see claim_new_lazily). The
 * setting is local to the claim's transaction: set_config(..., true) ends
 * with it, so the session keeps the synchronous_commit the pool checked. */
static const struct cv_pg_stmt claim_no_flush_wait = {
    "idem_claim_no_flush_wait",
    "SELECT set_config('synchronous_commit', 'off', true)",
    0,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt idem_get = {
    "idem_get",
    "SELECT state = 'done', request_hash, status_code, response_body "
    "FROM idempotency_keys WHERE merchant_id = $1 AND key_hash = $2",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt idem_complete = {
    "idem_complete",
    "UPDATE idempotency_keys SET state = 'done', status_code = $3, "
    "response_body = $4 WHERE merchant_id = $1 AND key_hash = $2 "
    "AND state = 'in_progress'",
    4,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt idem_release = {
    "idem_release",
    "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key_hash = $2 "
    "AND state = 'in_progress'",
    2,
    CV_PG_PREPARED,
    false,
    false};

static const struct cv_pg_stmt idem_purge = {
    "idem_purge", "DELETE FROM idempotency_keys WHERE expires_at < now()", 0, CV_PG_PREPARED, false,
    false};

static void add_row_params(struct cv_pg_params *p, const struct cv_token_row *row)
{
    cv_pg_param_text(p, row->merchant_id);
    cv_pg_param_text(p, row->token);
    cv_pg_param_int(p, row->format_version);
    cv_pg_param_int(p, row->dek_id);
    cv_pg_param_bytes(p, row->nonce, sizeof(row->nonce));
    cv_pg_param_bytes(p, row->ciphertext, row->ciphertext_len);
    cv_pg_param_text(p, row->brand);
    cv_pg_param_text(p, row->bin);
    cv_pg_param_text(p, row->last4);
    cv_pg_param_text(p, row->fingerprint);
    cv_pg_param_text(p, row->created_at);
    cv_pg_param_text(p, row->metadata != NULL ? row->metadata : "{}");
    cv_pg_param_text(p, row->expires_at);
}

static cv_status token_from_result(const PGresult *r, int i, struct cv_token_row *out)
{
    memset(out, 0, sizeof(*out));
    cv_pg_get_text(r, i, 0, out->merchant_id, sizeof(out->merchant_id));
    cv_pg_get_text(r, i, 1, out->token, sizeof(out->token));
    out->format_version = (int)cv_pg_get_int(r, i, 2);
    out->dek_id = cv_pg_get_int(r, i, 3);
    /* a wrong-length nonce is reported as an integrity failure by the opener */
    if (cv_pg_get_fixed_bytea(r, i, 4, out->nonce, sizeof(out->nonce)) != CV_OK)
        memset(out->nonce, 0, sizeof(out->nonce));
    CV_TRY(cv_pg_get_bytea(r, i, 5, &out->ciphertext, &out->ciphertext_len));
    cv_pg_get_text(r, i, 6, out->brand, sizeof(out->brand));
    cv_pg_get_text(r, i, 7, out->bin, sizeof(out->bin));
    cv_pg_get_text(r, i, 8, out->last4, sizeof(out->last4));
    cv_pg_get_text(r, i, 9, out->fingerprint, sizeof(out->fingerprint));
    cv_pg_get_text(r, i, 10, out->created_at, sizeof(out->created_at));
    out->dek_destroyed = cv_pg_get_bool(r, i, 11);
    out->metadata = cv_xstrdup(PQgetvalue(r, i, 12));
    cv_pg_get_text(r, i, 13, out->expires_at, sizeof(out->expires_at));
    out->created_us = cv_pg_get_int(r, i, 14);
    return CV_OK;
}

/* The parameters of one token insert, with its idempotency answer when
 * idem_key_hash is not NULL; the statement that takes them. */
static const struct cv_pg_stmt *insert_params(struct cv_pg_params *p,
                                              const struct cv_token_row *row,
                                              const unsigned char *idem_key_hash,
                                              const char *response_body)
{
    cv_pg_params_init(p);
    add_row_params(p, row);
    if (idem_key_hash == NULL)
        return &insert_token;
    cv_pg_param_bytes(p, idem_key_hash, 32);
    cv_pg_param_text(p, response_body);
    return &insert_token_idem;
}

/* CV_OK when the statement (result r) wrote the row. */
static cv_status written_outcome(PGresult *r, const struct cv_token_row *row, bool with_idem)
{
    int64_t written = with_idem ? cv_pg_get_int(r, 0, 0) : cv_pg_changed(r);
    if (written == 1)
        return CV_OK;
    /* Sealed under a key destroyed meanwhile: never acknowledge it. The
     * client retries and the card is sealed under the active key. */
    cv_log(CV_LOG_WARN, "token_insert_refused", CV_LI("dek_id", row->dek_id),
           CV_LS("reason", "data key destroyed"));
    return CV_ERR_DB_UNAVAILABLE;
}

/* The same; r is cleared. */
static cv_status insert_outcome(PGresult *r, const struct cv_token_row *row, bool with_idem)
{
    cv_status st = written_outcome(r, row, with_idem);
    PQclear(r);
    return st;
}

cv_status cv_tokens_insert(struct cv_pg_pool *pool, const struct cv_token_row *row,
                           const unsigned char *idem_key_hash, const char *response_body)
{
    struct cv_pg_params p;
    const struct cv_pg_stmt *s = insert_params(&p, row, idem_key_hash, response_body);
    /* Autocommit: the statement's own transaction commits (synchronous_commit
     * on, checked at startup) before the executor returns, so the caller's
     * 201 always follows a durable commit. */
    PGresult *r = NULL;
    CV_TRY(cv_pg_run_once(pool, s, &p, &r));
    return insert_outcome(r, row, idem_key_hash != NULL);
}

size_t cv_tokens_insert_one_queue(struct cv_pg_params *p, struct cv_pg_pipeline *pl,
                                  const struct cv_token_row *row,
                                  const unsigned char *idem_key_hash, const char *response_body)
{
    const struct cv_pg_stmt *s = insert_params(p, row, idem_key_hash, response_body);
    return cv_pg_pipeline_add(pl, s, p);
}

cv_status cv_tokens_insert_one_check(const struct cv_pg_pipeline *pl, size_t step,
                                     const struct cv_token_row *row, bool with_idem)
{
    if (step >= pl->n || pl->steps[step].res == NULL)
        return CV_ERR_INTERNAL;
    return written_outcome(pl->steps[step].res, row, with_idem);
}

/* "{id,id,...}": the distinct DEK ids of a batch, for lock_batch_deks. */
static cv_status dek_list(struct cv_buf *list, const struct cv_token_row *const *rows, size_t n,
                          size_t *n_ids)
{
    int64_t ids[CV_STORE_BATCH_MAX] = {0};
    size_t count = 0;
    for (size_t i = 0; i < n && i < CV_STORE_BATCH_MAX; i++) {
        bool seen = false;
        for (size_t k = 0; k < count && !seen; k++)
            seen = ids[k] == rows[i]->dek_id;
        if (!seen)
            ids[count++] = rows[i]->dek_id;
    }
    *n_ids = count;
    CV_TRY(cv_buf_append_char(list, '{'));
    for (size_t k = 0; k < count; k++)
        CV_TRY(cv_buf_appendf(list, "%s%lld", k > 0 ? "," : "", (long long)ids[k]));
    return cv_buf_append_char(list, '}');
}

/* "INSERT ... VALUES ($1,...,$11),($12,...)" for n rows. */
static cv_status multi_insert_sql(struct cv_buf *sql, size_t n)
{
    CV_TRY(cv_buf_append_str(sql, "INSERT INTO tokens (merchant_id, token, format_version, dek_id, "
                                  "nonce, ciphertext, brand, bin, last4, fingerprint, created_at, "
                                  "metadata, expires_at) VALUES "));
    for (size_t i = 0; i < n; i++) {
        CV_TRY(cv_buf_append_str(sql, i > 0 ? ",(" : "("));
        for (size_t k = 0; k < INSERT_COLS; k++) {
            size_t at = i * INSERT_COLS + k + 1;
            if (k == INSERT_COLS - 2)
                CV_TRY(cv_buf_appendf(sql, ",$%zu::jsonb", at));
            else if (k == INSERT_COLS - 1)
                CV_TRY(cv_buf_appendf(sql, ",NULLIF($%zu, '')::timestamptz", at));
            else
                CV_TRY(cv_buf_appendf(sql, "%s$%zu", k > 0 ? "," : "", at));
        }
        CV_TRY(cv_buf_append_char(sql, ')'));
    }
    return CV_OK;
}

void cv_tokens_batch_init(struct cv_tokens_batch *b)
{
    memset(b, 0, sizeof(*b));
    cv_buf_init(&b->deks, 8 * 1024);
    cv_buf_init(&b->sql, 64 * 1024);
    cv_pg_params_init(&b->lock_params);
    cv_pg_params_init(&b->insert_params);
    b->lock_step = CV_PG_PIPELINE_MAX;
}

void cv_tokens_batch_cleanup(struct cv_tokens_batch *b)
{
    if (b == NULL)
        return;
    cv_pg_params_cleanup(&b->insert_params);
    cv_buf_cleanup(&b->sql);
    cv_buf_cleanup(&b->deks);
    free(b->idem_params);
    b->idem_params = NULL;
}

cv_status cv_tokens_batch_queue(struct cv_tokens_batch *b, struct cv_pg_pipeline *pl,
                                const struct cv_token_row *const *rows,
                                const unsigned char *const *idem_key_hashes,
                                const char *const *response_bodies, size_t n)
{
    if (n == 0)
        return CV_OK;
    if (n > CV_STORE_BATCH_MAX)
        return CV_ERR_INTERNAL;
    /* The DEK rows first, locked until the caller's COMMIT (see
     * INSERT_ONE_SQL); whether each was still live is known only once the
     * pipeline is answered (cv_tokens_batch_check), before the COMMIT. */
    CV_TRY(dek_list(&b->deks, rows, n, &b->n_deks));
    cv_pg_param_text(&b->lock_params, b->deks.data);
    b->lock_step = cv_pg_pipeline_add(pl, &lock_batch_deks, &b->lock_params);
    CV_TRY(multi_insert_sql(&b->sql, n));
    cv_pg_params_cleanup(&b->insert_params);
    cv_pg_params_init_cap(&b->insert_params, (int)(n * INSERT_COLS));
    for (size_t i = 0; i < n; i++)
        add_row_params(&b->insert_params, rows[i]);
    b->insert_many = (struct cv_pg_stmt){"insert_tokens_batch", b->sql.data, b->insert_params.n,
                                         CV_PG_ONE_OFF,         false,       true};
    cv_pg_pipeline_add(pl, &b->insert_many, &b->insert_params);
    b->idem_params = cv_xcalloc(n, sizeof(*b->idem_params));
    for (size_t i = 0; i < n; i++) {
        if (idem_key_hashes[i] == NULL)
            continue;
        struct cv_pg_params *q = &b->idem_params[i];
        cv_pg_params_init(q);
        cv_pg_param_text(q, rows[i]->merchant_id);
        cv_pg_param_bytes(q, idem_key_hashes[i], 32);
        cv_pg_param_text(q, response_bodies[i]);
        cv_pg_pipeline_add(pl, &idem_complete_created, q);
    }
    return CV_OK;
}

cv_status cv_tokens_batch_check(const struct cv_tokens_batch *b, const struct cv_pg_pipeline *pl)
{
    if (b->lock_step >= pl->n)
        return CV_OK; /* no rows queued */
    const struct cv_pg_step *lock = &pl->steps[b->lock_step];
    if (lock->status != CV_OK || lock->res == NULL)
        return CV_ERR_DB;
    /* a destroyed key: the rows are retried one by one */
    return (size_t)PQntuples(lock->res) == b->n_deks ? CV_OK : CV_ERR_DB;
}

cv_status cv_tokens_insert_in(struct cv_pg_conn *c, const struct cv_token_row *const *rows,
                              const unsigned char *const *idem_key_hashes,
                              const char *const *response_bodies, size_t n)
{
    struct cv_tokens_batch b;
    struct cv_pg_pipeline pl;
    cv_tokens_batch_init(&b);
    cv_pg_pipeline_init(&pl);
    /* the lock, the insert and the answers in one round trip */
    cv_status st = cv_tokens_batch_queue(&b, &pl, rows, idem_key_hashes, response_bodies, n);
    if (st == CV_OK)
        st = cv_pg_pipeline_run(c, &pl);
    if (st == CV_OK)
        st = cv_tokens_batch_check(&b, &pl);
    cv_pg_pipeline_cleanup(&pl);
    cv_tokens_batch_cleanup(&b);
    return st;
}

cv_status cv_tokens_get(struct cv_pg_pool *pool, const char *merchant_id, const char *token,
                        struct cv_token_row *out)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, token);
    CV_TRY(cv_pg_run_once(pool, &get_token, &p, &r));
    cv_status st = PQntuples(r) == 1 ? token_from_result(r, 0, out) : CV_ERR_NOT_FOUND;
    PQclear(r);
    return st;
}

cv_status cv_tokens_get_many(struct cv_pg_pool *pool, const char *const *merchant_ids,
                             const char *const *tokens, struct cv_token_row **outs,
                             cv_status *results, size_t n)
{
    struct cv_buf ms, ts;
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_buf_init(&ms, 1024 * 1024);
    cv_buf_init(&ts, 1024 * 1024);
    cv_status st = cv_pg_array_literal(&ms, merchant_ids, n);
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_array_literal(&ts, tokens, n)) != CV_OK)
        goto out;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, ms.data);
    cv_pg_param_text(&p, ts.data);
    if ((st = cv_pg_run_once(pool, &get_tokens_batch, &p, &r)) != CV_OK)
        goto out;
    for (size_t j = 0; j < n; j++)
        results[j] = CV_ERR_NOT_FOUND;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *m = PQgetvalue(r, i, 0), *t = PQgetvalue(r, i, 1);
        for (size_t j = 0; j < n; j++) {
            /* every request for this exact (merchant, token) gets its own copy */
            if (results[j] == CV_ERR_NOT_FOUND && strcmp(merchant_ids[j], m) == 0 &&
                strcmp(tokens[j], t) == 0)
                results[j] = token_from_result(r, i, outs[j]);
        }
    }
out:
    PQclear(r);
    cv_buf_cleanup(&ms);
    cv_buf_cleanup(&ts);
    return st;
}

cv_status cv_store_delete_token(struct cv_store *store, const char *merchant_id, const char *token,
                                const struct cv_audit_event *ev)
{
    struct cv_pg_params p;
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, token);
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_run(c, &delete_token, &p, &r)) != CV_OK)
        goto out;
    bool found = cv_pg_get_int(r, 0, 0) > 0;
    PQclear(r);
    /* The event as the caller gave it, with the merchant, the token and the
     * outcome this delete had. */
    struct cv_audit_event rec = {
        ev->actor, merchant_id, token, ev->request_id, ev->action, found ? "success" : "not_found",
        NULL};
    if ((st = cv_audit_store_append_in(c, &store->sealer, &rec)) != CV_OK)
        goto out;
    if ((st = cv_pg_command(c, "COMMIT")) != CV_OK)
        goto out;
    st = found ? CV_OK : CV_ERR_NOT_FOUND;
out:
    if (st != CV_OK && st != CV_ERR_NOT_FOUND)
        cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
}

cv_status cv_store_find_by_fingerprint(struct cv_store *store, const char *merchant_id,
                                       const char *fingerprint, struct cv_token_row *rows,
                                       size_t max, size_t *count)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    *count = 0;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_text(&p, fingerprint);
    cv_pg_param_int(&p, (int64_t)max);
    CV_TRY(cv_pg_run_once(store->pool, &find_by_fp, &p, &r));
    cv_status st = CV_OK;
    for (int i = 0; i < PQntuples(r) && (size_t)i < max; i++) {
        if ((st = token_from_result(r, i, &rows[i])) != CV_OK)
            break;
        (*count)++;
    }
    PQclear(r);
    return st;
}

void cv_token_row_cleanup(struct cv_token_row *row)
{
    free(row->ciphertext);
    free(row->metadata);
    memset(row, 0, sizeof(*row));
}

/* Reads the record that holds (merchant, key); *found is false when it is
 * gone (released between our claim and this read). */
static cv_status idem_read(struct cv_pg_pool *pool, const char *merchant_id,
                           const unsigned char key_hash[32], bool *found,
                           struct cv_idem_record *existing)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_bytes(&p, key_hash, 32);
    CV_TRY(cv_pg_run_once(pool, &idem_get, &p, &r));
    cv_status st = CV_OK;
    *found = PQntuples(r) == 1;
    if (*found) {
        existing->done = cv_pg_get_bool(r, 0, 0);
        st = cv_pg_get_fixed_bytea(r, 0, 1, existing->request_hash, 32);
        if (st == CV_OK && existing->done) {
            existing->status_code = (int)cv_pg_get_int(r, 0, 2);
            existing->response_body = cv_xstrdup(PQgetvalue(r, 0, 3));
        }
    }
    PQclear(r);
    return st;
}

static void add_claim_params(struct cv_pg_params *p, const char *merchant_id,
                             const unsigned char key_hash[32], const unsigned char request_hash[32],
                             int64_t ttl_s, int64_t stale_s)
{
    cv_pg_param_text(p, merchant_id);
    cv_pg_param_bytes(p, key_hash, 32);
    cv_pg_param_bytes(p, request_hash, 32);
    cv_pg_param_int(p, ttl_s);
    cv_pg_param_int(p, stale_s);
}

/* The claim of a key nobody holds, committed without waiting for the WAL
 * flush or the synchronous standby: one round trip (a pipeline) and no disk
 * wait on the request's thread. Why that is safe: an in-progress record
 * acknowledges nothing. The request's own write commits later with
 * synchronous_commit on, and WAL is flushed and replicated in order, so
 * once that write is confirmed the claim before it is durable too; if the
 * server fails first, the claim may vanish with a write that was never
 * acknowledged, and a retry claims again. *claimed is false when the key
 * has a record already (a retry, a concurrent request): the caller then
 * takes the durable path, whose row lock waits for whatever that record's
 * commit still waits for before the record is read and replayed. */
static cv_status claim_new_lazily(struct cv_store *store, const char *merchant_id,
                                  const unsigned char key_hash[32],
                                  const unsigned char request_hash[32], int64_t ttl_s,
                                  int64_t stale_s, bool *claimed)
{
    struct cv_pg_conn *c = NULL;
    struct cv_pg_pipeline pl;
    struct cv_pg_params p;
    *claimed = false;
    cv_pg_params_init(&p);
    add_claim_params(&p, merchant_id, key_hash, request_hash, ttl_s, stale_s);
    cv_pg_pipeline_init(&pl);
    cv_pg_pipeline_add(&pl, &cv_pg_begin, NULL);
    cv_pg_pipeline_add(&pl, &claim_no_flush_wait, NULL);
    size_t insert_step = cv_pg_pipeline_add(&pl, &idem_claim, &p);
    cv_pg_pipeline_add(&pl, &cv_pg_commit, NULL);
    cv_status st = cv_pg_acquire(store->pool, &c);
    if (st == CV_OK) {
        st = cv_pg_pipeline_run(c, &pl);
        if (st == CV_OK)
            *claimed = PQntuples(pl.steps[insert_step].res) == 1;
        else
            cv_pg_rollback(c);
        cv_pg_release(c);
    }
    cv_pg_pipeline_cleanup(&pl);
    /* A session that ended during the COMMIT leaves the claim unknown: the
     * request fails as unavailable, and a retry either claims afresh or
     * finds that in-progress record (taken over once stale), never a
     * second write under the key. */
    return st == CV_ERR_COMMIT_UNCONFIRMED ? CV_ERR_DB_UNAVAILABLE : st;
}

cv_status cv_store_idem_claim(struct cv_store *store, const char *merchant_id,
                              const unsigned char key_hash[32],
                              const unsigned char request_hash[32], int64_t ttl_s, int64_t stale_s,
                              bool durable, bool *claimed, struct cv_idem_record *existing)
{
    memset(existing, 0, sizeof(*existing));
    *claimed = false;
    if (!durable) {
        CV_TRY(
            claim_new_lazily(store, merchant_id, key_hash, request_hash, ttl_s, stale_s, claimed));
        if (*claimed)
            return CV_OK;
    }
    /* Claim, else read who holds the key. A holder whose request failed
     * releases its claim, possibly between our two statements: then the key
     * is free again and we claim once more, a bounded number of times. */
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        bool found = false;
        cv_pg_params_init(&p);
        add_claim_params(&p, merchant_id, key_hash, request_hash, ttl_s, stale_s);
        CV_TRY(cv_pg_run_once(store->pool, &idem_claim, &p, &r));
        *claimed = PQntuples(r) == 1;
        PQclear(r);
        if (*claimed)
            return CV_OK;
        CV_TRY(idem_read(store->pool, merchant_id, key_hash, &found, existing));
        if (found)
            return CV_OK;
    }
    /* Claimed and released over and over by others: the key is busy. */
    return CV_ERR_IDEMPOTENCY_IN_USE;
}

cv_status cv_store_idem_complete(struct cv_store *store, const char *merchant_id,
                                 const unsigned char key_hash[32], int status_code,
                                 const char *response_body)
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_bytes(&p, key_hash, 32);
    cv_pg_param_int(&p, status_code);
    cv_pg_param_text(&p, response_body);
    return cv_pg_run_once(store->pool, &idem_complete, &p, NULL);
}

cv_status cv_store_idem_release(struct cv_store *store, const char *merchant_id,
                                const unsigned char key_hash[32])
{
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, merchant_id);
    cv_pg_param_bytes(&p, key_hash, 32);
    return cv_pg_run_once(store->pool, &idem_release, &p, NULL);
}

cv_status cv_store_idem_purge(struct cv_store *store, int64_t *deleted)
{
    PGresult *r = NULL;
    CV_TRY(cv_pg_run_once(store->pool, &idem_purge, NULL, &r));
    *deleted = cv_pg_changed(r);
    PQclear(r);
    return CV_OK;
}

void cv_idem_record_cleanup(struct cv_idem_record *rec)
{
    free(rec->response_body);
    memset(rec, 0, sizeof(*rec));
}

/* GET /v1/tokens: one page of a merchant's live tokens, newest first, by
 * (created_at, token) — unique, so a cursor names one place in the order.
 * Every filter is a parameter; a NULL parameter switches its filter off. */
static const struct cv_pg_stmt list_tokens = {
    "list_tokens",
    "SELECT " TOKEN_COLS " FROM tokens t JOIN data_keys d USING (dek_id) "
    "WHERE t.merchant_id = $1 AND " LIVE " AND ($2::bigint IS NULL OR "
    "(t.created_at, t.token) < (timestamptz 'epoch' + $2::bigint * interval '1 microsecond', "
    "$3::text)) AND ($4::text IS NULL OR t.fingerprint = $4) "
    "AND ($5::bigint IS NULL OR t.created_at >= to_timestamp($5::bigint)) "
    "AND ($6::bigint IS NULL OR t.created_at < to_timestamp($6::bigint)) "
    "AND ($7::text IS NULL OR t.metadata ->> $7::text = $8::text) "
    "ORDER BY t.created_at DESC, t.token DESC LIMIT $9",
    9,
    CV_PG_PREPARED,
    false,
    false};

/* PATCH /v1/tokens/{token}: the re-sealed card, metadata and lifetime of a
 * live token, only if the row still has the nonce the caller opened (a
 * concurrent update re-sealed it meanwhile: 0 rows, the caller starts
 * over), and only under a data key that is not destroyed, locked FOR KEY
 * SHARE like an insert's (see INSERT_ONE_SQL). */
static const struct cv_pg_stmt update_token = {
    "update_token",
    "UPDATE tokens t SET format_version = $3, dek_id = $4, nonce = $5, ciphertext = $6, "
    "metadata = $7::jsonb, expires_at = NULLIF($8, '')::timestamptz "
    "WHERE t.merchant_id = $1 AND t.token = $2 AND " LIVE " AND t.nonce = $9 "
    "AND EXISTS (SELECT 1 FROM data_keys k WHERE k.dek_id = $4::bigint "
    "AND k.state <> 'destroyed' FOR KEY SHARE)",
    9,
    CV_PG_PREPARED,
    false,
    false};

/* The housekeeping purge: up to $1 expired rows of any merchant, oldest
 * expiry first; rows another purge holds are skipped, not waited for.
 * Answers how many rows of each merchant went, so each merchant's trail
 * shows its own purges. */
static const struct cv_pg_stmt purge_expired = {
    "purge_expired_tokens",
    "WITH gone AS (DELETE FROM tokens WHERE (merchant_id, token) IN (SELECT merchant_id, token "
    "FROM tokens WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
    "RETURNING merchant_id) "
    "SELECT merchant_id, count(*) FROM gone GROUP BY merchant_id ORDER BY merchant_id",
    1,
    CV_PG_PREPARED,
    false,
    false};

cv_status cv_store_list_tokens(struct cv_store *store, const struct cv_token_list_query *q,
                               struct cv_token_row *rows, size_t max, size_t *count)
{
    struct cv_pg_params p;
    PGresult *r = NULL;
    *count = 0;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, q->merchant_id);
    if (q->after_token[0] != '\0') {
        cv_pg_param_int(&p, q->after_created_us);
        cv_pg_param_text(&p, q->after_token);
    } else {
        cv_pg_param_text(&p, NULL);
        cv_pg_param_text(&p, NULL);
    }
    cv_pg_param_text(&p, q->fingerprint[0] != '\0' ? q->fingerprint : NULL);
    if (q->has_created_gte)
        cv_pg_param_int(&p, q->created_gte);
    else
        cv_pg_param_text(&p, NULL);
    if (q->has_created_lt)
        cv_pg_param_int(&p, q->created_lt);
    else
        cv_pg_param_text(&p, NULL);
    cv_pg_param_text(&p, q->meta_key[0] != '\0' ? q->meta_key : NULL);
    cv_pg_param_text(&p, q->meta_key[0] != '\0' ? q->meta_value : NULL);
    cv_pg_param_int(&p, (int64_t)max);
    CV_TRY(cv_pg_run_once(store->pool, &list_tokens, &p, &r));
    cv_status st = CV_OK;
    for (int i = 0; i < PQntuples(r) && (size_t)i < max; i++) {
        if ((st = token_from_result(r, i, &rows[i])) != CV_OK)
            break;
        (*count)++;
    }
    PQclear(r);
    if (st != CV_OK) {
        for (size_t i = 0; i < *count; i++)
            cv_token_row_cleanup(&rows[i]);
        *count = 0;
    }
    return st;
}

cv_status cv_store_update_token(struct cv_store *store, const struct cv_token_row *row,
                                const unsigned char old_nonce[CV_GCM_NONCE_BYTES],
                                const struct cv_audit_event *ev)
{
    struct cv_pg_params p;
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    cv_pg_params_init(&p);
    cv_pg_param_text(&p, row->merchant_id);
    cv_pg_param_text(&p, row->token);
    cv_pg_param_int(&p, row->format_version);
    cv_pg_param_int(&p, row->dek_id);
    cv_pg_param_bytes(&p, row->nonce, sizeof(row->nonce));
    cv_pg_param_bytes(&p, row->ciphertext, row->ciphertext_len);
    cv_pg_param_text(&p, row->metadata != NULL ? row->metadata : "{}");
    cv_pg_param_text(&p, row->expires_at);
    cv_pg_param_bytes(&p, old_nonce, CV_GCM_NONCE_BYTES);
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_run(c, &update_token, &p, &r)) != CV_OK)
        goto out;
    bool updated = cv_pg_changed(r) == 1;
    PQclear(r);
    if (!updated) {
        st = CV_ERR_NOT_FOUND; /* gone, expired, updated meanwhile, or its key destroyed */
        goto out;
    }
    /* The update and its audit event commit together. */
    struct cv_audit_event rec = {ev->actor,  row->merchant_id, row->token, ev->request_id,
                                 ev->action, "success",        ev->detail};
    if ((st = cv_audit_store_append_in(c, &store->sealer, &rec)) != CV_OK)
        goto out;
    st = cv_pg_command(c, "COMMIT");
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
}

cv_status cv_store_purge_expired(struct cv_store *store, size_t batch, int64_t *deleted)
{
    struct cv_pg_params p;
    struct cv_pg_conn *c = NULL;
    PGresult *r = NULL;
    char detail[48];
    *deleted = 0;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, (int64_t)batch);
    CV_TRY(cv_pg_acquire(store->pool, &c));
    cv_status st = cv_pg_command(c, "BEGIN");
    if (st != CV_OK)
        goto out;
    if ((st = cv_pg_run(c, &purge_expired, &p, &r)) != CV_OK)
        goto out;
    /* One event per merchant and batch: how many rows, never which cards. */
    int64_t n = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t k = cv_pg_get_int(r, i, 1);
        snprintf(detail, sizeof(detail), "tokens=%lld", (long long)k);
        struct cv_audit_event rec = {"housekeeping",        PQgetvalue(r, i, 0), NULL,  NULL,
                                     "token.purge_expired", "success",           detail};
        if ((st = cv_audit_store_append_in(c, &store->sealer, &rec)) != CV_OK)
            break;
        n += k;
    }
    PQclear(r);
    if (st != CV_OK || (st = cv_pg_command(c, "COMMIT")) != CV_OK)
        goto out;
    *deleted = n;
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    cv_pg_release(c);
    return st;
}
