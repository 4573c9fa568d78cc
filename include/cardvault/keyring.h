#ifndef CV_KEYRING_H
#define CV_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/envelope.h"
#include "cardvault/keyprovider.h"
#include "cardvault/status.h"
#include "cardvault/store.h"

/* The key hierarchy at run time: checks the KEK against the database's key
 * check value, unwraps the fingerprint key, keeps the active DEK (rotated by
 * age and by use count, uses reserved in the database in blocks) and a cache
 * of unwrapped DEKs for opening. Unwrapped keys never leave this module:
 * callers ask it to seal, open or fingerprint. */

struct cv_keyring;

struct cv_keyring_limits {
    int64_t dek_max_age_s;
    int64_t dek_max_uses;
};

/* Opens the configured KEK again (after `keys rotate-kek`); may be NULL. */
typedef cv_status (*cv_keyring_reopen_fn)(void *ctx, struct cv_keyprovider **out, char *why,
                                          size_t why_len);

/* Binds the KEK to the vault (first run: creates the fingerprint key and the
 * check value), unwraps the audit key K_audit (creating it, with the chain's
 * first keyed event, when the vault has none: a vault older than migration
 * 0005, or a new one) and installs it as the store's audit sealer, so every
 * append through this store is MAC-chained. CV_ERR_CONFIG with a reason in why when the KEK is not
 * this vault's. kp is borrowed and must outlive the keyring; providers opened later through reopen
 * belong to the keyring. */
CV_MUST_USE cv_status cv_keyring_open(struct cv_store *store, struct cv_keyprovider *kp,
                                      const struct cv_keyring_limits *limits,
                                      cv_keyring_reopen_fn reopen, void *reopen_ctx,
                                      struct cv_keyring **out, char *why, size_t why_len);
/* False when the vault was re-keyed and this process could not load the new
 * KEK (readiness check; asks the database). */
bool cv_keyring_kek_ok(struct cv_keyring *kr);
/* Starts the key refresh (the service, not the CLI): every 5 s the cached
 * DEKs are checked against the database and those destroyed or gone are
 * wiped and forgotten (log dek_dropped). Stopped by cv_keyring_close. */
CV_MUST_USE cv_status cv_keyring_start_refresh(struct cv_keyring *kr);
/* Stops the refresh, wipes every unwrapped key and frees; accepts NULL. */
void cv_keyring_close(struct cv_keyring *kr);

/* Seals card for (merchant, token) under the active DEK: fills row->dek_id,
 * format_version, nonce, ciphertext. */
CV_MUST_USE cv_status cv_keyring_seal(struct cv_keyring *kr, const struct cv_card_plain *card,
                                      struct cv_token_row *row);
/* Opens row into card. CV_ERR_TOKEN_DESTROYED when its DEK was destroyed,
 * CV_ERR_INTEGRITY when the ciphertext does not verify for this row or when
 * the row's BIN, last 4, brand or fingerprint differ from the card it opened
 * to (row_check.h; logged as token_columns_mismatch). card is wiped on every
 * failure. */
CV_MUST_USE cv_status cv_keyring_open_row(struct cv_keyring *kr, const struct cv_token_row *row,
                                          struct cv_card_plain *card);
/* "fp_..." for (merchant, pan). */
CV_MUST_USE cv_status cv_keyring_fingerprint(struct cv_keyring *kr, const char *merchant_id,
                                             const char *pan, char out[CV_FINGERPRINT_LEN + 1]);
/* HMAC-SHA-256 under a subkey domain of the fingerprint key:
 * HMAC(fp_key, label || 0 || merchant_id || 0 || data). Used for keyed hashes
 * of idempotency keys and request bodies; label keeps domains apart. */
CV_MUST_USE cv_status cv_keyring_mac(struct cv_keyring *kr, const char *label,
                                     const char *merchant_id, const void *data, size_t len,
                                     unsigned char out[32]);
/* The store's audit sealer (cv_audit_seal_fn; ctx is the keyring): the
 * event's SHA-256 link and its HMAC under K_audit. `audit verify` checks
 * the chain with it. */
CV_MUST_USE cv_status cv_keyring_audit_seal(void *ctx, const struct cv_audit_row *row,
                                            const unsigned char prev_mac[32],
                                            unsigned char hash[32], unsigned char mac[32]);
/* Number of DEK rotations this process performed (metrics). */
uint64_t cv_keyring_rotations(struct cv_keyring *kr);
/* Forces a new active DEK now (operators: `cardvault keys rotate-dek`). */
CV_MUST_USE cv_status cv_keyring_rotate(struct cv_keyring *kr, int64_t *new_dek_id);

/* Re-keys the vault (operators: `cardvault keys rotate-kek`): in one store
 * transaction, every DEK and the fingerprint key are unwrapped under old_kp
 * and wrapped under new_kp here, the new check value is recorded, and ev is
 * appended. CV_ERR_CONFIG when old_kp is not the vault's current KEK,
 * CV_ERR_BAD_REQUEST when both are the same key. */
CV_MUST_USE cv_status cv_keyring_rewrap_kek(struct cv_store *store, struct cv_keyprovider *old_kp,
                                            struct cv_keyprovider *new_kp,
                                            const struct cv_audit_event *ev, int *rewrapped);

#endif
