#ifndef CV_ENVELOPE_H
#define CV_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "cardvault/status.h"

/* Envelope cryptography on data keys: DEK generation, AES-256-GCM sealing
 * of card plaintext bound to its row by associated data, and the keyed
 * fingerprint. Knows nothing of the database or HTTP; never logs secrets. */

#define CV_DEK_BYTES       32
#define CV_GCM_NONCE_BYTES 12
#define CV_GCM_TAG_BYTES   16
#define CV_FP_KEY_BYTES    32
#define CV_SEAL_FORMAT_V1  1
/* The sealed plaintext is the card's encoding (card.h). */
#define CV_CARD_PLAIN_MAX CV_CARD_ENCODED_MAX

/* What a ciphertext is bound to: a ciphertext moved to another row, another
 * merchant, or relabelled with another key id fails to open. */
struct cv_aad {
    int format_version;
    const char *token;
    const char *merchant_id;
    int64_t dek_id;
};

/* A fresh 256-bit key from the CSPRNG in a secure buffer (caller frees). */
CV_MUST_USE cv_status cv_envelope_new_key(struct cv_secbuf **out);

/* Seals card under dek: random 96-bit nonce, ciphertext||tag into *ct (heap,
 * caller frees with free(); not secret). */
CV_MUST_USE cv_status cv_envelope_seal(const struct cv_secbuf *dek, const struct cv_aad *aad,
                                       const struct cv_card_plain *card,
                                       unsigned char nonce[CV_GCM_NONCE_BYTES], unsigned char **ct,
                                       size_t *ct_len);
/* Opens a sealed card; CV_ERR_INTEGRITY when the tag, AAD or layout do not
 * verify. `card` is wiped on failure; the caller wipes it after use. */
CV_MUST_USE cv_status cv_envelope_open(const struct cv_secbuf *dek, const struct cv_aad *aad,
                                       const unsigned char *nonce, size_t nonce_len,
                                       const unsigned char *ct, size_t ct_len,
                                       struct cv_card_plain *card);
/* AES-256-GCM over a few bytes held in memory only (the security-code
 * holds): key is CV_DEK_BYTES long, a fresh random nonce is written to
 * nonce, ct gets len bytes, tag CV_GCM_TAG_BYTES. */
CV_MUST_USE cv_status cv_envelope_seal_bytes(const unsigned char *key, const void *aad,
                                             size_t aad_len, const unsigned char *plain, size_t len,
                                             unsigned char nonce[CV_GCM_NONCE_BYTES],
                                             unsigned char *ct,
                                             unsigned char tag[CV_GCM_TAG_BYTES]);
/* The reverse; CV_ERR_INTEGRITY when the tag or AAD do not verify (plain is
 * wiped then). */
CV_MUST_USE cv_status cv_envelope_open_bytes(const unsigned char *key, const void *aad,
                                             size_t aad_len, const unsigned char *ct, size_t len,
                                             const unsigned char nonce[CV_GCM_NONCE_BYTES],
                                             const unsigned char tag[CV_GCM_TAG_BYTES],
                                             unsigned char *plain);
/* HMAC-SHA-256 over parts joined by single 0x00 bytes. */
CV_MUST_USE cv_status cv_envelope_hmac(const struct cv_secbuf *key, const void *const *parts,
                                       const size_t *lens, size_t n_parts, unsigned char out[32]);
/* HMAC-SHA-256(fp_key, merchant_id || 0x00 || pan), first 16 bytes. */
CV_MUST_USE cv_status cv_envelope_fingerprint(const struct cv_secbuf *fp_key,
                                              const char *merchant_id, const char *pan,
                                              unsigned char out[16]);
/* SHA-256 of data. */
CV_MUST_USE cv_status cv_envelope_sha256(const void *data, size_t len, unsigned char out[32]);
/* SHA-384 of data (Subresource Integrity of a served script). */
CV_MUST_USE cv_status cv_envelope_sha384(const void *data, size_t len, unsigned char out[48]);

#endif
