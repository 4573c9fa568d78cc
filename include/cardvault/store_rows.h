#ifndef CV_STORE_ROWS_H
#define CV_STORE_ROWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/envelope.h"
#include "cardvault/token.h"

/* The rows the store hands over and takes, and the opaque store handle.
 * Types only: modules that pass rows around include this, not the store. */

struct cv_store;

/* Token metadata limits (metadata.h checks them; migration 0008 bounds the
 * column's shape again). */
#define CV_META_KEYS_MAX  20
#define CV_META_KEY_MAX   40  /* bytes: A-Z a-z 0-9 _ . - */
#define CV_META_VALUE_MAX 500 /* bytes of UTF-8 */

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
    /* Token metadata and lifetime (migration 0008); never card data. */
    char *metadata;      /* heap JSON object text; NULL is {}; cv_token_row_cleanup frees */
    char expires_at[32]; /* RFC 3339, UTC; "" when the token has no lifetime */
    int64_t created_us;  /* created_at in microseconds since 1970 (filled by get and list) */
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

struct cv_audit_row;

/* Seals one audit event under the audit key K_audit: hash gets
 * SHA-256(row->prev_hash || canonical(row)) and mac gets
 * HMAC-SHA-256(K_audit, prev_mac || canonical(row)) (audit.h). The keyring,
 * which holds K_audit, hands this to the store (cv_store_set_audit_sealer)
 * so that every append computes its link in C and the key never reaches the
 * database. CV_ERR_CRYPTO on failure. */
typedef cv_status (*cv_audit_seal_fn)(void *ctx, const struct cv_audit_row *row,
                                      const unsigned char prev_mac[32], unsigned char hash[32],
                                      unsigned char mac[32]);

/* Idempotency records (POST /v1/tokens with Idempotency-Key). Hashes are
 * keyed MACs computed by the caller; nothing here sees the key or the body. */
struct cv_idem_record {
    bool done;
    unsigned char request_hash[32];
    int status_code;
    char *response_body; /* heap when done; cv_idem_record_cleanup frees */
};

#endif
