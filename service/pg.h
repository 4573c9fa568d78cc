#ifndef CV_PG_H
#define CV_PG_H

/* The PostgreSQL core under the store files and migrate.c: a connection
 * pool, statements, bounded parameter lists, one executor, the SQLSTATE ->
 * status mapping and bytea decoding. It names libpq types, so it lives in
 * service/, never in include/. pg.c is the only file that calls libpq's
 * executors (PQexec*, PQprepare); everything else describes a statement and
 * hands it to cv_pg_run. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "cardvault/buf.h"
#include "cardvault/status.h"

struct cv_pg_pool;
struct cv_pg_conn;

/* How cv_pg_run sends a statement. */
enum cv_pg_mode {
    CV_PG_PREPARED = 0, /* prepared once per connection under its name, then executed */
    CV_PG_ONE_OFF,      /* text built at run time (still parameterized): PQexecParams */
    CV_PG_SCRIPT,       /* several static statements, no parameters (migration files) */
};

/* A statement: a name for the logs (and for preparation), its SQL text and
 * how many parameters it takes. Store files keep theirs in static tables. */
struct cv_pg_stmt {
    const char *name;
    const char *sql;
    int nparams;
    enum cv_pg_mode mode;
    bool binary_results; /* cells come back raw (text as bytes, bytea undecorated) */
    bool quiet;          /* failures are expected and handled: logged at debug level */
};

/* Inline capacity of a parameter list; more needs cv_pg_params_init_cap. */
#define CV_PG_INLINE_PARAMS 16

/* A bounded parameter list. Adding past its capacity does not write out of
 * bounds: the list is marked failed (sticky) and cv_pg_run refuses it with
 * CV_ERR_INTERNAL, as it does a list whose count differs from the statement's. */
struct cv_pg_params {
    int n;
    int cap;
    bool failed;
    const char **values;
    int *lengths;
    int *formats;
    char (*nums)[24];
    /* storage for the common case, so most statements allocate nothing */
    const char *inline_values[CV_PG_INLINE_PARAMS];
    int inline_lengths[CV_PG_INLINE_PARAMS];
    int inline_formats[CV_PG_INLINE_PARAMS];
    char inline_nums[CV_PG_INLINE_PARAMS][24];
};

/* A list of up to CV_PG_INLINE_PARAMS values, on the caller's storage. */
void cv_pg_params_init(struct cv_pg_params *p);
/* A list of up to cap values (heap when cap exceeds the inline capacity). */
void cv_pg_params_init_cap(struct cv_pg_params *p, int cap);
/* Frees what init_cap allocated. Accepts NULL. */
void cv_pg_params_cleanup(struct cv_pg_params *p);
/* Empties the list, keeping its capacity. */
void cv_pg_params_reset(struct cv_pg_params *p);
/* A text value (NULL for SQL NULL), borrowed until the statement ran. */
void cv_pg_param_text(struct cv_pg_params *p, const char *s);
/* A bigint, formatted into the list's own storage. */
void cv_pg_param_int(struct cv_pg_params *p, int64_t v);
/* A bytea value in binary format, borrowed until the statement ran. */
void cv_pg_param_bytes(struct cv_pg_params *p, const void *b, size_t len);

/* Opens a pool of `size` connections; the first connects now, so bad
 * configuration fails fast with libpq's reason (first line) in why. */
CV_MUST_USE cv_status cv_pg_pool_open(const char *conninfo, unsigned size, struct cv_pg_pool **out,
                                      char *why, size_t why_len);
/* Closes every connection and frees. Accepts NULL. */
void cv_pg_pool_close(struct cv_pg_pool *pool);
/* Checks out a live connection (reconnecting if needed). Waiters are served
 * first come, first served; CV_ERR_DB_UNAVAILABLE when the server cannot be
 * reached or no connection frees up within 5 s. */
CV_MUST_USE cv_status cv_pg_acquire(struct cv_pg_pool *pool, struct cv_pg_conn **out);
/* Returns it; a broken connection or one left inside a transaction is closed. */
void cv_pg_release(struct cv_pg_conn *c);
/* Asks the server to cancel what every checked-out connection is running. */
void cv_pg_cancel_busy(struct cv_pg_pool *pool);
/* Checks one session's settings with cv_pg_durable_settings_ok now
 * (CV_ERR_CONFIG with the reason in why when they fail, CV_ERR_DB_UNAVAILABLE
 * when they cannot be read); once they pass, every new session of the pool
 * (a reconnect, perhaps to a new primary after a failover) is checked the
 * same way before it serves, and one that fails is closed
 * (CV_ERR_DB_UNAVAILABLE, logged db_settings_refused). */
CV_MUST_USE cv_status cv_pg_pool_require_durable(struct cv_pg_pool *pool, char *why,
                                                 size_t why_len);
/* The rule on the two settings' values: synchronous_commit not off, and on
 * or remote_apply when synchronous_standby_names names a standby. CV_OK, or
 * CV_ERR_CONFIG with a one-line reason in why. */
CV_MUST_USE cv_status cv_pg_durable_settings_ok(const char *synchronous_commit,
                                                const char *standby_names, char *why,
                                                size_t why_len);
/* Connections checked out now, and the pool size. */
void cv_pg_pool_usage(struct cv_pg_pool *pool, unsigned *in_use, unsigned *size);

/* The one executor: runs s with p (NULL for none) on c. On success *res (if
 * res is not NULL) gets the result, which the caller PQclears; on failure
 * nothing is left to free and the status comes from cv_pg_error, or is
 * CV_ERR_COMMIT_UNCONFIRMED when the statement committed but the server
 * cancelled its wait for the synchronous standby (logged here). */
CV_MUST_USE cv_status cv_pg_run(struct cv_pg_conn *c, const struct cv_pg_stmt *s,
                                const struct cv_pg_params *p, PGresult **res);
/* BEGIN and COMMIT as statements, for the pipelines' first and last steps
 * (a pipeline's COMMIT step is how cv_pg_pipeline_run knows what committed). */
extern const struct cv_pg_stmt cv_pg_begin;
extern const struct cv_pg_stmt cv_pg_commit;

/* One statement of a pipeline: what to send, and what came back. */
struct cv_pg_step {
    const struct cv_pg_stmt *stmt;
    const struct cv_pg_params *params; /* NULL for none; borrowed until the run */
    PGresult *res;     /* on success, the result (cleared by cv_pg_pipeline_cleanup) */
    cv_status status;  /* CV_OK, the step's own failure, or CV_ERR_DB when not run */
    bool aborted;      /* an earlier step failed, so the server skipped this one */
    bool prepare_sent; /* private to pg.c */
};

/* Most statements one pipeline carries (a group commit's first half: BEGIN,
 * the DEK lock, the insert, one idempotency answer per row, the audit lock). */
#define CV_PG_PIPELINE_MAX 160

/* Statements sent together and answered after one sync: one round trip. */
struct cv_pg_pipeline {
    struct cv_pg_step steps[CV_PG_PIPELINE_MAX];
    size_t n;
    bool overflow; /* an add past CV_PG_PIPELINE_MAX: the run refuses it */
};

/* An empty pipeline on the caller's storage. */
void cv_pg_pipeline_init(struct cv_pg_pipeline *pl);
/* Appends s with p (NULL: none; borrowed until the run); returns the step's
 * index (CV_PG_PIPELINE_MAX when full: the pipeline is marked overflowed). */
size_t cv_pg_pipeline_add(struct cv_pg_pipeline *pl, const struct cv_pg_stmt *s,
                          const struct cv_pg_params *p);
/* Clears every result and empties the pipeline. Accepts NULL. */
void cv_pg_pipeline_cleanup(struct cv_pg_pipeline *pl);
/* Sends every step of pl on c in libpq's pipeline mode with one sync, then
 * reads each step's result into it: one round trip whatever the number of
 * statements (statements not yet prepared on c are prepared in the same
 * pipeline). The first failing step stops the server (the steps after it
 * are aborted, nothing of them ran); an open transaction stays open, or
 * failed, for the caller to COMMIT or roll back. Returns CV_OK, the first
 * failure as cv_pg_error maps it (logged once), CV_ERR_INTERNAL for a bad
 * parameter list, an overflowed pipeline or a step after the COMMIT
 * (nothing sent), or CV_ERR_COMMIT_UNCONFIRMED as cv_pg_run does for a
 * COMMIT step: its wait for the synchronous standby was cancelled, or the
 * session ended once it was sent and before a failure the server reported
 * ahead of it (the server may have committed without our reading it). c is
 * left out of pipeline mode with nothing pending, or broken (release closes
 * it, and retires the pool's sessions opened before it). */
CV_MUST_USE cv_status cv_pg_pipeline_run(struct cv_pg_conn *c, struct cv_pg_pipeline *pl);
/* Acquire, run, release: the shape of one-statement operations. */
CV_MUST_USE cv_status cv_pg_run_once(struct cv_pg_pool *pool, const struct cv_pg_stmt *s,
                                     const struct cv_pg_params *p, PGresult **res);
/* A fixed command without parameters or rows (BEGIN, COMMIT, SET ...); the
 * text is its own name in the logs. */
CV_MUST_USE cv_status cv_pg_command(struct cv_pg_conn *c, const char *sql);
/* Rolls back an open transaction, if any; never fails (the connection is
 * closed on release if the rollback did not take). */
void cv_pg_rollback(struct cv_pg_conn *c);
/* True while c is inside a transaction (or a failed one). */
bool cv_pg_in_transaction(const struct cv_pg_conn *c);
/* Sets the client encoding to UTF-8 unless it already is. */
CV_MUST_USE cv_status cv_pg_use_utf8(struct cv_pg_conn *c);
/* Quotes an identifier for SQL text; NULL when libpq cannot (free with cv_pg_freemem). */
char *cv_pg_quote_ident(struct cv_pg_conn *c, const char *ident);
void cv_pg_freemem(void *p);

/* Logs SQLSTATE and `what` only (a server message can quote the values that
 * caused it) and maps: 23505 -> CV_ERR_DUPLICATE; connection loss, resources,
 * shutdown, cancel, read-only, I/O -> CV_ERR_DB_UNAVAILABLE; else CV_ERR_DB.
 * res may be NULL (a failure before any result). */
CV_MUST_USE cv_status cv_pg_error(struct cv_pg_conn *c, const PGresult *res, const char *what,
                                  bool quiet);
/* True when a notice is PostgreSQL's report that it cancelled the wait for
 * the synchronous standby of a transaction it had already committed locally.
 * cv_pg_run then answers CV_ERR_COMMIT_UNCONFIRMED for the statement that
 * committed, never CV_OK. Pure. */
bool cv_pg_is_sync_wait_cancelled(const PGresult *notice);
/* The status for a SQLSTATE (NULL: none, as when the connection is gone). Pure. */
cv_status cv_pg_status_for_sqlstate(const char *sqlstate);
/* The SQLSTATE of the last failure on c ("" if none), for callers that must
 * name it (migrate's one-line reason). */
const char *cv_pg_last_sqlstate(const struct cv_pg_conn *c);

/* Decodes text-format bytea ("\x0a1b...") into a new heap buffer (free()).
 * CV_ERR_DB when the text is not well-formed hex bytea. Pure. */
CV_MUST_USE cv_status cv_pg_decode_bytea(const char *text, unsigned char **out, size_t *len);
/* The same for a result cell. */
CV_MUST_USE cv_status cv_pg_get_bytea(const PGresult *r, int row, int col, unsigned char **out,
                                      size_t *len);
/* A bytea cell of exactly `want` bytes into out; CV_ERR_DB otherwise. */
CV_MUST_USE cv_status cv_pg_get_fixed_bytea(const PGresult *r, int row, int col, unsigned char *out,
                                            size_t want);
/* A text cell into dst (truncated to cap - 1). */
void cv_pg_get_text(const PGresult *r, int row, int col, char *dst, size_t cap);
/* A bigint cell. */
int64_t cv_pg_get_int(const PGresult *r, int row, int col);
/* A boolean cell ("t"). */
bool cv_pg_get_bool(const PGresult *r, int row, int col);
/* Appends a PostgreSQL text[] literal ("{...}") of n values to b: NULL
 * becomes NULL, every other value a double-quoted element with '"' and '\\'
 * escaped. The literal travels as one parameter, never inside SQL text. */
CV_MUST_USE cv_status cv_pg_array_literal(struct cv_buf *b, const char *const *values, size_t n);
/* Rows changed by a command (PQcmdTuples). */
int64_t cv_pg_changed(PGresult *r);

#endif
