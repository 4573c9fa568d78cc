#ifndef CV_STORE_KEYS_H
#define CV_STORE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/status.h"
#include "cardvault/keyprovider.h"
#include "cardvault/store_rows.h"

/* Key persistence (store_keys.c): the vault's metadata, the data keys the
 * keyring uses, and the key lifecycle of `cardvault keys ...` (inventory,
 * KEK rotation, re-encryption batches, crypto-shredding). Only wrapped keys
 * pass through. */

/* Vault metadata (singleton). CV_ERR_NOT_FOUND when the vault is new. */
CV_MUST_USE cv_status cv_store_get_meta(struct cv_store *st, unsigned char kcv[CV_KCV_BYTES],
                                        unsigned char **fp_wrapped, size_t *fp_wrapped_len);
/* Creates the singleton; *created is false when another instance did first
 * (nothing changed: read it back with cv_store_get_meta). */
CV_MUST_USE cv_status cv_store_init_meta(struct cv_store *st, const char *provider,
                                         const unsigned char kcv[CV_KCV_BYTES],
                                         const unsigned char *fp_wrapped, size_t fp_wrapped_len,
                                         bool *created);

/* The audit key K_audit wrapped under the KEK (heap, free()).
 * CV_ERR_NOT_FOUND while the vault has none yet. */
CV_MUST_USE cv_status cv_store_get_audit_key(struct cv_store *st, unsigned char **wrapped,
                                             size_t *wrapped_len);
/* Stores a new audit key wrapped under the KEK whose check value is kcv, if
 * the vault has none and that is still its KEK, and appends ev in the same
 * transaction as the chain's first keyed event (sealed with the new key:
 * install its sealer first). *created is false when the vault already had
 * one or changed KEK (nothing changed: read it back). */
CV_MUST_USE cv_status cv_store_create_audit_key(struct cv_store *st,
                                                const unsigned char kcv[CV_KCV_BYTES],
                                                const unsigned char *wrapped, size_t wrapped_len,
                                                const struct cv_audit_event *ev, bool *created);

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

struct cv_dek_status {
    int64_t dek_id;
    char state[16]; /* active | retired | destroyed */
    int64_t age_s;
    int64_t use_count; /* reserved uses, an upper bound of encryptions */
    int64_t max_uses;
    int64_t tokens; /* rows it protects */
};

CV_MUST_USE cv_status cv_store_list_deks(struct cv_store *st,
                                         void (*fn)(void *ctx, const struct cv_dek_status *d),
                                         void *ctx);
/* The vault's KEK identity as recorded: provider name, check value, last re-wrap ("" if none). */
CV_MUST_USE cv_status cv_store_meta_info(struct cv_store *st, char provider[32],
                                         unsigned char kcv[CV_KCV_BYTES], char rewrapped_at[32]);
/* Turns one wrapped key into its new wrapping (heap, free()); the store
 * never sees what is between the two. */
typedef cv_status (*cv_store_rewrap_fn)(void *ctx, const unsigned char *wrapped, size_t len,
                                        unsigned char **rewrapped, size_t *rewrapped_len);
/* Key commands (rewrap_all, retire_active_except, update_ciphers,
 * destroy_dek) wait at most 2 s for any lock and retry 3 times in all, so
 * they never stall live traffic behind a lock they queue for; they return
 * CV_ERR_DB_UNAVAILABLE (nothing changed) when they gave up or the database
 * cannot be reached. */

/* In one transaction, with the vault's metadata locked (no new DEK can
 * appear): checks old_kcv is the vault's KEK, passes the fingerprint key, the
 * audit key and every DEK through fn with no DEK row locked, then stores the results,
 * records new_kcv and new_provider, and appends ev. Nothing changes unless
 * all of it commits. CV_ERR_CONFIG when old_kcv is not the current KEK; fn's
 * status when fn fails. */
CV_MUST_USE cv_status cv_store_rewrap_all(struct cv_store *st,
                                          const unsigned char old_kcv[CV_KCV_BYTES],
                                          const unsigned char new_kcv[CV_KCV_BYTES],
                                          const char *new_provider, cv_store_rewrap_fn fn,
                                          void *ctx, const struct cv_audit_event *ev,
                                          int *rewrapped);
/* Retires every active DEK except `keep` (after `keys rotate-dek`). */
CV_MUST_USE cv_status cv_store_retire_active_except(struct cv_store *st, int64_t keep);
/* Up to `limit` rows under retired DEKs (only from_dek unless 0). */
CV_MUST_USE cv_status cv_store_tokens_to_reencrypt(struct cv_store *st, int64_t from_dek,
                                                   size_t limit, struct cv_token_row *rows,
                                                   size_t *n);
/* In one transaction, replaces each row's (dek_id, nonce, ciphertext) if it
 * is still under old_dek_ids[i]. */
CV_MUST_USE cv_status cv_store_update_ciphers(struct cv_store *st, const struct cv_token_row *rows,
                                              const int64_t *old_dek_ids, size_t n,
                                              size_t *updated);
/* Crypto-shreds a DEK retired at least 10 s ago (no instance still seals
 * under it) and records ev; CV_ERR_NOT_FOUND otherwise. */
CV_MUST_USE cv_status cv_store_destroy_dek(struct cv_store *st, int64_t dek_id,
                                           const struct cv_audit_event *ev, int64_t *tokens);
/* Of the n DEK ids given, those destroyed or absent go to dead (room for n). */
CV_MUST_USE cv_status cv_store_dead_deks(struct cv_store *st, const int64_t *ids, size_t n,
                                         int64_t *dead, size_t *n_dead);

#endif
