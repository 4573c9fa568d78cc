#ifndef CV_STORE_KEYS_H
#define CV_STORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

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
/* Turns one wrapped key into its new wrapping (heap, free()); the store
 * never sees what is between the two. */
typedef cv_status (*cv_store_rewrap_fn)(void *ctx, const unsigned char *wrapped, size_t len,
                                        unsigned char **rewrapped, size_t *rewrapped_len);
/* In one transaction, with the vault's metadata and every DEK row locked:
 * checks old_kcv is the vault's KEK, passes the fingerprint key and every
 * DEK through fn, stores the results, records new_kcv and new_provider, and
 * appends ev. Nothing changes unless all of it commits. CV_ERR_CONFIG when
 * old_kcv is not the current KEK; fn's status when fn fails. */
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

#endif
