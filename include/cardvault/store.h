#ifndef CV_STORE_H
#define CV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_keys.h"
#include "cardvault/store_import.h"
#include "cardvault/store_merchants.h"
#include "cardvault/store_rows.h"
#include "cardvault/store_tokens.h"

/* PostgreSQL persistence: a pool of connections with prepared statements,
 * rows <-> structs. store.c is the front door (open, close, batching); the
 * SQL lives in one file per kind of data (store_tokens.c, store_keys.c,
 * store_merchants.c, store_audit.c) over pg.c. Every statement is parameterized. Card data never
 * reaches this module in the clear: only ciphertext, BIN, last 4, brand, fingerprint. Database
 * errors are logged here once, by SQLSTATE and statement name only (server messages can echo
 * values), and returned as statuses: CV_ERR_DB_UNAVAILABLE when the server is unreachable or
 * refuses writes, CV_ERR_DUPLICATE on a unique violation, CV_ERR_DB otherwise. */

/* The front door (store.c): open, close, batching, health, and the three
 * operations the batcher may group (token insert, token read, audit
 * append). Including this header declares the whole store. */

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
/* Whether synchronous_standby_names names a standby now, and how many WAL
 * senders (standbys streaming) the server has. */
CV_MUST_USE cv_status cv_store_replication(struct cv_store *st, bool *standby_named, int *senders);
/* Asks the server to cancel every statement running on a checked-out
 * connection (shutdown, after the drain deadline); their callers then see
 * an error and return. */
void cv_store_cancel_busy(struct cv_store *st);
/* Connections checked out now, and the pool size (for metrics). */
void cv_store_pool_usage(struct cv_store *st, unsigned *in_use, unsigned *size);
/* The version of the libpq library the process runs with, written as
 * "MAJOR.MINOR" (e.g. "15.4") into out. */
void cv_store_libpq_version(char *out, size_t cap);

/* The server's durability settings, as serve checks them at start-up. */
struct cv_store_durability {
    bool fsync_on;
};
/* Reads fsync (synchronous_commit is cv_store_require_durable's). */
CV_MUST_USE cv_status cv_store_check_durability(struct cv_store *st,
                                                struct cv_store_durability *out);
/* serve's rule on the durability settings: synchronous_commit not off,
 * and on or remote_apply when synchronous_standby_names names a standby.
 * Checked now (CV_ERR_CONFIG with a one-line reason in why) and, once it
 * passes, again on every new database session, so a failover to a server
 * with weaker settings is refused (503 until they are fixed) rather than
 * served. */
CV_MUST_USE cv_status cv_store_require_durable(struct cv_store *st, char *why, size_t why_len);
/* Whether serve may run as the role it is connected as: not a superuser,
 * not a member of the role that owns the schema's tables (tokens), which
 * could alter them, disable the audit triggers or rewrite the trail. When it
 * is one, CV_ERR_CONFIG with a one-line reason in why, unless allow_owner
 * (CARDVAULT_ALLOW_OWNER_ROLE=1): then CV_OK with *privileged set and the
 * reason in why, for a warning. CV_ERR_DB when the role cannot be read. */
CV_MUST_USE cv_status cv_store_check_role(struct cv_store *st, bool allow_owner, bool *privileged,
                                          char *why, size_t why_len);
/* Highest applied migration version (0 when none). */
CV_MUST_USE cv_status cv_store_schema_version(struct cv_store *st, int *version);

/* Tokens. row->created_at (RFC 3339, set by the caller) is stored as given.
 * CV_ERR_DUPLICATE on a token collision. When idem_key_hash is not NULL the
 * claimed idempotency record is completed with (201, response_body) in the
 * same statement, so a token and its idempotency answer commit together.
 * When ev is not NULL it is appended to the audit trail in the same
 * transaction: the token is never committed without its event. */
CV_MUST_USE cv_status cv_store_insert_token(struct cv_store *st, const struct cv_token_row *row,
                                            const unsigned char *idem_key_hash,
                                            const char *response_body,
                                            const struct cv_audit_event *ev);
/* CV_ERR_NOT_FOUND unless (merchant_id, token) exists. */
CV_MUST_USE cv_status cv_store_get_token(struct cv_store *st, const char *merchant_id,
                                         const char *token, struct cv_token_row *out);

/* The outcome of a write or read that did not wait (the _async calls). */
typedef void (*cv_store_done_fn)(void *ctx, cv_status st);
/* cv_store_insert_token, cv_store_get_token and cv_store_audit_append
 * without waiting: CV_OK means accepted, and done(ctx, status) is then
 * called exactly once with the status the waiting call would have returned:
 * with group commit on a writer thread after the transaction's COMMIT (a
 * write is CV_OK only once durably committed), without it before the call
 * returns. Any other status (CV_ERR_SHUTTING_DOWN) means nothing was done
 * and done is never called. What the pointers name must stay valid until
 * done is called; done may start the next call. */
CV_MUST_USE cv_status cv_store_insert_token_async(
    struct cv_store *st, const struct cv_token_row *row, const unsigned char *idem_key_hash,
    const char *response_body, const struct cv_audit_event *ev, cv_store_done_fn done, void *ctx);
CV_MUST_USE cv_status cv_store_get_token_async(struct cv_store *st, const char *merchant_id,
                                               const char *token, struct cv_token_row *out,
                                               cv_store_done_fn done, void *ctx);
CV_MUST_USE cv_status cv_store_audit_append_async(struct cv_store *st,
                                                  const struct cv_audit_event *ev,
                                                  cv_store_done_fn done, void *ctx);

/* Installs the audit key's sealer (the keyring calls this once it holds
 * K_audit; fn NULL removes it, after the last append). Without one every
 * audit append fails with CV_ERR_CONFIG: an unkeyed event would break the
 * keyed chain. */
void cv_store_set_audit_sealer(struct cv_store *st, cv_audit_seal_fn fn, void *ctx);
/* Appends to the keyed, hash-chained audit trail; returns only after commit.
 * CV_ERR_CONFIG without a sealer, CV_ERR_INTEGRITY when the chain's head has
 * lost its MAC (the trail was stripped: nothing is appended). */
CV_MUST_USE cv_status cv_store_audit_append(struct cv_store *st, const struct cv_audit_event *ev);

#endif
