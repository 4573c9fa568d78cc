#ifndef CV_STORE_KEYS_H
#define CV_STORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "cardvault/keyprovider.h"
#include "cardvault/status.h"
#include "cardvault/store.h"

/* Key-lifecycle persistence for `cardvault keys ...`: inventory, KEK
 * rotation, re-encryption batches, crypto-shredding. */

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
/* In one transaction: checks old_kp is the vault's KEK, re-wraps every DEK
 * and the fingerprint key under new_kp, records the new check value and ev.
 * CV_ERR_CONFIG when old_kp is not the current KEK, CV_ERR_BAD_REQUEST when
 * both are the same key. */
CV_MUST_USE cv_status cv_store_rewrap_all(struct cv_store *st, struct cv_keyprovider *old_kp,
                                          struct cv_keyprovider *new_kp,
                                          const struct cv_audit_event *ev, int *rewrapped);
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

#endif
