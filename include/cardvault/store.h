#ifndef CV_STORE_H
#define CV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/envelope.h"
#include "cardvault/keyprovider.h"
#include "cardvault/status.h"
#include "cardvault/token.h"

/* PostgreSQL persistence: a pool of connections with prepared statements,
 * rows <-> structs. store.c is the front door (open, close, batching); the
 * SQL lives in one file per kind of data (store_tokens.c, store_keys.c,
 * store_merchants.c, store_audit.c) over pg.c. Every statement is parameterized. Card data never
 * reaches this module in the clear: only ciphertext, BIN, last 4, brand, fingerprint. Database
 * errors are logged here once, by SQLSTATE and statement name only (server messages can echo
 * values), and returned as statuses: CV_ERR_DB_UNAVAILABLE when the server is unreachable or
 * refuses writes, CV_ERR_DUPLICATE on a unique violation, CV_ERR_DB otherwise. */

struct cv_store;

struct cv_token_row {
    char merchant_id[CV_MERCHANT_ID_LEN + 1];
    char token[CV_TOKEN_LEN + 1];
    int format_version;
    int64_t dek_id;
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char *ciphertext; /* heap; cv_token_row_cleanup frees */
    size_t ciphertext_len;
    char brand[16];
    char bin[7];
    char last4[5];
    char fingerprint[CV_FINGERPRINT_LEN + 1];
    char created_at[32]; /* RFC 3339, UTC, filled by insert and get */
    bool dek_destroyed;  /* filled by get */
};

struct cv_dek_row {
    int64_t dek_id;
    unsigned char *wrapped; /* heap */
    size_t wrapped_len;
    char state[16];
    int64_t use_count;
    int64_t max_uses;
    int64_t age_s;
};

struct cv_audit_event {
    const char *actor;       /* API key prefix, or "cli:<command>" */
    const char *merchant_id; /* may be NULL */
    const char *token;       /* may be NULL */
    const char *request_id;  /* may be NULL */
    const char *action;      /* "token.detokenize", "token.delete", "api_key.create", ... */
    const char *outcome;     /* "success", "not_found", "denied", "integrity_error", ... */
    const char *detail;      /* may be NULL; never card data */
};

/* Connects the first pool connection now (so bad configuration fails fast,
 * with libpq's reason in why); the others connect on demand. */
CV_MUST_USE cv_status cv_store_open(const char *conninfo, unsigned pool_size, struct cv_store **out,
                                    char *why, size_t why_len);
/* From now on token inserts and audit appends from concurrent callers share
 * transactions (group commit) through `writers` writer threads; each call
 * still returns only after its own write committed. */
CV_MUST_USE cv_status cv_store_start_batching(struct cv_store *st, unsigned writers);
/* Finishes queued writes, closes every connection, frees. Accepts NULL. */
void cv_store_close(struct cv_store *st);
/* SELECT 1 through the pool. */
CV_MUST_USE cv_status cv_store_ping(struct cv_store *st);
/* Asks the server to cancel every statement running on a checked-out
 * connection (shutdown, after the drain deadline); their callers then see
 * an error and return. */
void cv_store_cancel_busy(struct cv_store *st);
/* Connections checked out now, and the pool size (for metrics). */
void cv_store_pool_usage(struct cv_store *st, unsigned *in_use, unsigned *size);

/* Durability settings of the server: synchronous_commit must not be off. */
CV_MUST_USE cv_status cv_store_check_durability(struct cv_store *st, bool *fsync_on,
                                                bool *sync_commit_on);
/* Highest applied migration version (0 when none). */
CV_MUST_USE cv_status cv_store_schema_version(struct cv_store *st, int *version);

/* Vault metadata (singleton). CV_ERR_NOT_FOUND when the vault is new. */
CV_MUST_USE cv_status cv_store_get_meta(struct cv_store *st, unsigned char kcv[CV_KCV_BYTES],
                                        unsigned char **fp_wrapped, size_t *fp_wrapped_len);
/* Creates the singleton; *created is false when another instance did first
 * (nothing changed: read it back with cv_store_get_meta). */
CV_MUST_USE cv_status cv_store_init_meta(struct cv_store *st, const char *provider,
                                         const unsigned char kcv[CV_KCV_BYTES],
                                         const unsigned char *fp_wrapped, size_t fp_wrapped_len,
                                         bool *created);

/* Data keys. insert_dek stores a DEK wrapped under the KEK whose check value
 * is kcv, only if that is still the vault's KEK (CV_ERR_NOT_FOUND otherwise). */
CV_MUST_USE cv_status cv_store_insert_dek(struct cv_store *st, const unsigned char *wrapped,
                                          size_t wrapped_len, int64_t max_uses,
                                          const unsigned char kcv[CV_KCV_BYTES], int64_t *dek_id);
CV_MUST_USE cv_status cv_store_get_dek(struct cv_store *st, int64_t dek_id, struct cv_dek_row *out);
/* Newest active DEK younger than max_age_s with uses left; CV_ERR_NOT_FOUND if none. */
CV_MUST_USE cv_status cv_store_find_active_dek(struct cv_store *st, int64_t max_age_s,
                                               struct cv_dek_row *out);
/* Reserves `block` more uses of an active DEK. *reserved is false when the key
 * is no longer active or the block would pass max_uses (then it is retired). */
CV_MUST_USE cv_status cv_store_reserve_dek_uses(struct cv_store *st, int64_t dek_id, int64_t block,
                                                bool *reserved);
CV_MUST_USE cv_status cv_store_retire_dek(struct cv_store *st, int64_t dek_id);
void cv_dek_row_cleanup(struct cv_dek_row *row);

/* Merchants and API keys. scopes is a comma list ("tokenize,read"). */
CV_MUST_USE cv_status cv_store_insert_merchant(struct cv_store *st, const char *merchant_id,
                                               const char *name);
CV_MUST_USE cv_status cv_store_insert_api_key(struct cv_store *st, const char *merchant_id,
                                              const char *prefix, const unsigned char hash[32],
                                              const char *scopes);
CV_MUST_USE cv_status cv_store_revoke_api_key(struct cv_store *st, const char *prefix,
                                              char merchant_id[CV_MERCHANT_ID_LEN + 1]);
/* Calls fn for every key changed at or after since_us (microseconds since the
 * epoch); *max_changed_us gets the newest change seen. */
CV_MUST_USE cv_status
cv_store_scan_api_keys(struct cv_store *st, int64_t since_us, int64_t *max_changed_us,
                       void (*fn)(void *ctx, const char *merchant_id, const char *prefix,
                                  const unsigned char hash[32], const char *scopes, bool revoked),
                       void *ctx);

/* Idempotency records (POST /v1/tokens with Idempotency-Key). Hashes are
 * keyed MACs computed by the caller; nothing here sees the key or the body. */
struct cv_idem_record {
    bool done;
    unsigned char request_hash[32];
    int status_code;
    char *response_body; /* heap when done; cv_idem_record_cleanup frees */
};
/* Claims (merchant, key_hash) for a new request, or reclaims an expired or
 * abandoned (in progress for longer than stale_s) record. When the key is
 * taken, *claimed is false and *existing describes the record. */
CV_MUST_USE cv_status cv_store_idem_claim(struct cv_store *st, const char *merchant_id,
                                          const unsigned char key_hash[32],
                                          const unsigned char request_hash[32], int64_t ttl_s,
                                          int64_t stale_s, bool *claimed,
                                          struct cv_idem_record *existing);
/* Records the final answer of a claimed key. */
CV_MUST_USE cv_status cv_store_idem_complete(struct cv_store *st, const char *merchant_id,
                                             const unsigned char key_hash[32], int status_code,
                                             const char *response_body);
/* Drops an in-progress claim whose request failed, so a retry can run. */
CV_MUST_USE cv_status cv_store_idem_release(struct cv_store *st, const char *merchant_id,
                                            const unsigned char key_hash[32]);
/* Deletes expired records; *deleted gets the count. */
CV_MUST_USE cv_status cv_store_idem_purge(struct cv_store *st, int64_t *deleted);
void cv_idem_record_cleanup(struct cv_idem_record *rec);

/* Tokens. row->created_at (RFC 3339, set by the caller) is stored as given.
 * CV_ERR_DUPLICATE on a token collision. When idem_key_hash is not NULL the
 * claimed idempotency record is completed with (201, response_body) in the
 * same statement, so a token and its idempotency answer commit together. */
CV_MUST_USE cv_status cv_store_insert_token(struct cv_store *st, const struct cv_token_row *row,
                                            const unsigned char *idem_key_hash,
                                            const char *response_body);
/* CV_ERR_NOT_FOUND unless (merchant_id, token) exists. */
CV_MUST_USE cv_status cv_store_get_token(struct cv_store *st, const char *merchant_id,
                                         const char *token, struct cv_token_row *out);
/* Deletes the row and appends its audit event in one transaction;
 * CV_ERR_NOT_FOUND (still audited) when there was no such row. */
CV_MUST_USE cv_status cv_store_delete_token(struct cv_store *st, const char *merchant_id,
                                            const char *token, const struct cv_audit_event *ev);
/* Tokens of a merchant with this fingerprint, newest first (up to max). */
CV_MUST_USE cv_status cv_store_find_by_fingerprint(struct cv_store *st, const char *merchant_id,
                                                   const char *fingerprint,
                                                   struct cv_token_row *rows, size_t max,
                                                   size_t *count);
void cv_token_row_cleanup(struct cv_token_row *row);

/* Appends to the hash-chained audit trail; returns only after commit. */
CV_MUST_USE cv_status cv_store_audit_append(struct cv_store *st, const struct cv_audit_event *ev);

#endif
