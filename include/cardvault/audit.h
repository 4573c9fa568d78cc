#ifndef CV_AUDIT_H
#define CV_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/store_rows.h"

/* Evidence for reviewers: the hash-chained audit trail read back and checked
 * (verify, export), and the catalog walk behind the storage scan that looks
 * for card numbers in every column of the database (pan_scan.h scans the
 * values). audit.c is pure: it recomputes the chain over rows it is given.
 * store_audit.c fetches rows for it. */

#define CV_AUDIT_HASH_BYTES 32
#define CV_AUDIT_MAC_BYTES  32
#define CV_AUDIT_KEY_BYTES  32
/* "2026-01-02T03:04:05.123456Z" + NUL */
#define CV_AUDIT_TIME_LEN 28

/* One audit_events row as read back. Strings are NUL-terminated; the four
 * nullable columns are NULL for SQL NULL. Borrowed for the callback's duration. */
struct cv_audit_row {
    int64_t seq;
    int64_t occurred_us; /* microseconds since 1970-01-01T00:00:00Z */
    const char *actor;
    const char *merchant_id;
    const char *token;
    const char *request_id;
    const char *action;
    const char *outcome;
    const char *detail;
    const unsigned char *prev_hash;
    size_t prev_hash_len;
    const unsigned char *hash;
    size_t hash_len;
    const unsigned char *mac; /* NULL: an unkeyed row (written before migration 0005) */
    size_t mac_len;
};

/* The chain's tip as kept in audit_head. */
struct cv_audit_head {
    int64_t seq;
    unsigned char hash[CV_AUDIT_HASH_BYTES];
    size_t hash_len;
    unsigned char mac[CV_AUDIT_MAC_BYTES];
    size_t mac_len; /* 0: the head carries no MAC (the chain is not keyed yet) */
};

/* Formats microseconds since the epoch exactly as audit_canonical() does with
 * to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'). */
void cv_audit_format_time(int64_t us, char out[CV_AUDIT_TIME_LEN]);
/* Parses --since: "YYYY-MM-DD" (midnight UTC) or RFC 3339
 * ("YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)"). CV_ERR_BAD_REQUEST otherwise. */
CV_MUST_USE cv_status cv_audit_parse_since(const char *s, int64_t *us);

/* The canonical text an event's hash covers: the nine fields joined by 0x1f,
 * NULLs as empty strings (see audit_canonical() in migrations/0001_init.sql).
 * Returns heap text (free()) and its length. */
char *cv_audit_canonical(const struct cv_audit_row *row, size_t *len);
/* SHA-256(prev_hash || canonical(row)). CV_ERR_CRYPTO if hashing fails. */
CV_MUST_USE cv_status cv_audit_event_hash(const struct cv_audit_row *row,
                                          unsigned char out[CV_AUDIT_HASH_BYTES]);

/* The keyed link: HMAC-SHA-256(key, prev_mac || canonical(row)), where
 * prev_mac is the previous event's MAC, or, for the chain's first keyed
 * event, its prev_hash (the SHA-256 tip of the unkeyed events before it; 32
 * zero bytes in a vault created keyed), so that MAC covers them too. key is K_audit (32 bytes,
 * wrapped under the KEK in vault_meta); whoever holds it computes this in C, the database never
 * sees it. CV_ERR_CRYPTO if the MAC cannot be computed. */
CV_MUST_USE cv_status cv_audit_event_mac(const struct cv_secbuf *key,
                                         const unsigned char prev_mac[CV_AUDIT_MAC_BYTES],
                                         const struct cv_audit_row *row,
                                         unsigned char out[CV_AUDIT_MAC_BYTES]);

/* Walks the chain one row at a time, in seq order, from seq 1. */
struct cv_audit_verifier {
    int64_t next_seq;
    unsigned char last_hash[CV_AUDIT_HASH_BYTES];
    uint64_t events;
    bool broken;
    int64_t first_broken_seq;
    const char *reason; /* static text */
    /* An anchor kept outside the database (audit verify --expect): the chain
     * must hold event expect_seq with exactly this hash. */
    bool expect_set;
    bool expect_seen;
    int64_t expect_seq;
    unsigned char expect_hash[CV_AUDIT_HASH_BYTES];
    /* The audit key's MAC (cv_audit_verify_set_key): keyed rows are checked
     * with it; without it a keyed row fails verification. */
    cv_audit_seal_fn seal_fn;
    void *seal_ctx;
    bool require_keyed; /* the vault has an audit key: some event must be keyed */
    int64_t keyed_from; /* seq of the first keyed event; 0: none met yet */
    uint64_t keyed_events;
    unsigned char last_mac[CV_AUDIT_MAC_BYTES];
};

/* Parses an anchor "SEQ:HASH" (seq >= 1, hash 64 hex digits, dashes between
 * them allowed: serve's audit_anchor lines group them by 8). CV_ERR_BAD_REQUEST
 * otherwise. */
CV_MUST_USE cv_status cv_audit_parse_anchor(const char *s, int64_t *seq,
                                            unsigned char hash[CV_AUDIT_HASH_BYTES]);

void cv_audit_verify_init(struct cv_audit_verifier *v);
/* Gives the verifier the audit key (fn seals under K_audit, see
 * cv_audit_seal_fn in store_rows.h) and says the vault has such a key, so
 * the chain must be keyed from some seq on. */
void cv_audit_verify_set_key(struct cv_audit_verifier *v, cv_audit_seal_fn fn, void *ctx);
/* Checks one row: its seq follows the previous one, its prev_hash is the
 * previous hash, its hash is recomputed from its content, and, from the
 * first keyed row on, every row carries the MAC chained from the previous
 * one (an unkeyed row after a keyed one fails). Returns false (and records
 * the first broken seq and a reason) on the first failure; later rows are
 * then ignored. */
bool cv_audit_verify_row(struct cv_audit_verifier *v, const struct cv_audit_row *row);
/* Requires the walked chain to contain event seq with exactly hash: a tail
 * cut below seq, or any rewrite up to seq, then fails verification. */
void cv_audit_verify_expect(struct cv_audit_verifier *v, int64_t seq,
                            const unsigned char hash[CV_AUDIT_HASH_BYTES]);
/* Checks that the tip of what was walked is audit_head, hash and MAC
 * (catches a truncated tail and rows inserted without audit_append_rows),
 * that an expected anchor was met, and, with a key set, that the chain is
 * keyed at all. */
bool cv_audit_verify_finish(struct cv_audit_verifier *v, const struct cv_audit_head *head);

/* One JSON line (no newline) for the SIEM export: seq, occurred_at, actor,
 * merchant_id, token, request_id, action, outcome, detail, prev_hash, hash.
 * Strings are JSON-escaped by cv_buf_append_json_string. Returns heap text
 * (free()) and its length, or NULL for a row past 1 MiB of text. */
char *cv_audit_export_line(const struct cv_audit_row *row, size_t *len);
/* Lower-case hex of n bytes into out[2n + 1]. */
void cv_audit_hex(const unsigned char *in, size_t n, char *out);

/* --- Reading the trail and the catalog back (store_audit.c) --- */

/* Calls fn for every event with occurred_at >= since_us (INT64_MIN: all), in
 * seq order, page_rows rows per query, inside one REPEATABLE READ READ ONLY
 * snapshot; *head gets audit_head as of that snapshot. Stops at the first
 * status fn returns other than CV_OK and returns it. */
CV_MUST_USE cv_status cv_store_audit_walk(
    struct cv_store *st, int64_t since_us, unsigned page_rows, struct cv_audit_head *head,
    cv_status (*fn)(void *ctx, const struct cv_audit_row *row), void *ctx);

/* Reads audit_head (the chain's tip) now: what serve logs as audit_anchor.
 * CV_ERR_NOT_FOUND when the row is missing. */
CV_MUST_USE cv_status cv_store_audit_head(struct cv_store *st, struct cv_audit_head *head);

enum cv_audit_col_kind {
    CV_AUDIT_COL_TEXT,        /* read as column::text */
    CV_AUDIT_COL_BYTEA,       /* read as raw bytes */
    CV_AUDIT_COL_BYTEA_ARRAY, /* elements' raw bytes joined by '\n' */
    CV_AUDIT_COL_SKIPPED      /* a type that cannot hold digits (timestamps, booleans, ...) */
};

struct cv_audit_column {
    char *schema;
    char *table;
    char *column;
    char *type; /* format_type() text */
    enum cv_audit_col_kind kind;
};

/* Every column of every table and materialized view in the current database
 * outside pg_catalog, information_schema and the toast/temp schemas, from the
 * catalog, ordered by schema, table, column position. Free with
 * cv_audit_columns_free. */
CV_MUST_USE cv_status cv_store_audit_columns(struct cv_store *st, struct cv_audit_column **cols,
                                             size_t *n);
void cv_audit_columns_free(struct cv_audit_column *cols, size_t n);

/* Reads every row of one table (the scannable columns cols[0..n-1], all of
 * the same schema.table) through a server-side cursor, batch_rows at a time,
 * and calls fn once per non-NULL cell with its raw bytes. *rows gets the row
 * count. Identifiers are quoted with PQescapeIdentifier. */
CV_MUST_USE cv_status cv_store_audit_scan_table(
    struct cv_store *st, const struct cv_audit_column *cols, size_t n, unsigned batch_rows,
    void (*fn)(void *ctx, size_t col, const unsigned char *bytes, size_t len), void *ctx,
    uint64_t *rows);

/* The same with options, for `cardvault scan`: at most max_rows rows (0:
 * all) and, when row_locations, each cell's row named by its primary key
 * ("id=42", the key columns as text) or, for a table without one, by ctid
 * ("ctid=(0,1)"); row_key is NULL otherwise. ctid is the row's ctid text
 * either way when row_locations (a caller shows it instead of a key that
 * itself looks like card data). Both are borrowed for the call. */
struct cv_audit_scan_opts {
    unsigned batch_rows;
    uint64_t max_rows;
    bool row_locations;
};
typedef void (*cv_audit_cell_fn)(void *ctx, size_t col, const unsigned char *bytes, size_t len,
                                 const char *row_key, const char *ctid);
CV_MUST_USE cv_status cv_store_audit_scan_rows(struct cv_store *st,
                                               const struct cv_audit_column *cols, size_t n,
                                               const struct cv_audit_scan_opts *opts,
                                               cv_audit_cell_fn fn, void *ctx, uint64_t *rows);

#endif
