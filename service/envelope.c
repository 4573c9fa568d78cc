/* envelope.c: AES-256-GCM sealing of card plaintext under data keys, and the
 * keyed fingerprint. Nonces are 96 random bits per encryption (NIST SP
 * 800-38D 8.2.2); the per-key use limit that keeps that safe is enforced by
 * keyring.c. The plaintext sealed is the card's version-1 encoding
 * (cv_card_encode; the layout is documented in card.h). Every plaintext
 * buffer is wiped on every path. This module never logs and never sees the
 * database. */
#include "cardvault/envelope.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>

/* AAD: "cardvault" | u8 version | token | 0x00 | merchant | 0x00 | i64be dek_id.
 * NUL separators make the encoding injective: no two rows share AAD bytes. */
static size_t build_aad(const struct cv_aad *a, unsigned char *out, size_t cap)
{
    size_t tl = strlen(a->token), ml = strlen(a->merchant_id);
    size_t need = 9 + 1 + tl + 1 + ml + 1 + 8;
    if (need > cap || a->format_version < 0 || a->format_version > 255)
        return 0;
    size_t n = 0;
    memcpy(out, "cardvault", 9);
    n += 9;
    out[n++] = (unsigned char)a->format_version;
    memcpy(out + n, a->token, tl);
    n += tl;
    out[n++] = 0;
    memcpy(out + n, a->merchant_id, ml);
    n += ml;
    out[n++] = 0;
    for (int i = 7; i >= 0; i--)
        out[n++] = (unsigned char)((uint64_t)a->dek_id >> (8 * i));
    return n;
}

/* OpenSSL 3 looks algorithms up in its provider tables on every use of
 * EVP_aes_256_gcm() and friends (an "implicit fetch", with a lock). Fetch
 * each once for the life of the process: this is on every request's path. */
static EVP_CIPHER *gcm_fetched;
static EVP_MD *sha256_fetched;
static EVP_MAC *hmac_fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_algorithms(void)
{
    gcm_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
    hmac_fetched = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static const EVP_CIPHER *aes_gcm(void)
{
    pthread_once(&fetch_once, fetch_algorithms);
    return gcm_fetched;
}

cv_status cv_envelope_new_key(struct cv_secbuf **out)
{
    struct cv_secbuf *k = cv_secbuf_new(CV_DEK_BYTES);
    if (cv_random_bytes(k->data, CV_DEK_BYTES) != CV_OK) {
        cv_secbuf_free(k);
        return CV_ERR_CRYPTO;
    }
    k->len = CV_DEK_BYTES;
    *out = k;
    return CV_OK;
}

cv_status cv_envelope_seal(const struct cv_secbuf *dek, const struct cv_aad *aad,
                           const struct cv_card_plain *card,
                           unsigned char nonce[CV_GCM_NONCE_BYTES], unsigned char **ct,
                           size_t *ct_len)
{
    cv_status st = CV_ERR_CRYPTO;
    unsigned char plain[CV_CARD_PLAIN_MAX];
    unsigned char aad_buf[256];
    unsigned char *out = NULL;
    int outl = 0, finl = 0;
    EVP_CIPHER_CTX *ctx = NULL;

    *ct = NULL;
    *ct_len = 0;
    size_t plain_len = 0;
    size_t aad_len = build_aad(aad, aad_buf, sizeof(aad_buf));
    if (dek->len != CV_DEK_BYTES || aad_len == 0)
        goto out;
    if (cv_card_encode(card, plain, sizeof(plain), &plain_len) != CV_OK)
        goto out;
    if (RAND_bytes(nonce, CV_GCM_NONCE_BYTES) != 1)
        goto out;
    out = cv_xmalloc(plain_len + CV_GCM_TAG_BYTES);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || aes_gcm() == NULL ||
        EVP_EncryptInit_ex2(ctx, aes_gcm(), dek->data, nonce, NULL) != 1)
        goto out;
    if (EVP_EncryptUpdate(ctx, NULL, &outl, aad_buf, (int)aad_len) != 1)
        goto out;
    if (EVP_EncryptUpdate(ctx, out, &outl, plain, (int)plain_len) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, out + outl, &finl) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CV_GCM_TAG_BYTES, out + outl + finl) != 1)
        goto out;
    *ct = out;
    *ct_len = (size_t)(outl + finl) + CV_GCM_TAG_BYTES;
    out = NULL;
    st = CV_OK;
out:
    cv_wipe(plain, sizeof(plain));
    free(out);
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

cv_status cv_envelope_open(const struct cv_secbuf *dek, const struct cv_aad *aad,
                           const unsigned char *nonce, size_t nonce_len, const unsigned char *ct,
                           size_t ct_len, struct cv_card_plain *card)
{
    cv_status st = CV_ERR_INTEGRITY;
    unsigned char plain[CV_CARD_PLAIN_MAX + 16];
    unsigned char aad_buf[256];
    unsigned char tag[CV_GCM_TAG_BYTES];
    int outl = 0, finl = 0;
    EVP_CIPHER_CTX *ctx = NULL;

    memset(card, 0, sizeof(*card));
    size_t aad_len = build_aad(aad, aad_buf, sizeof(aad_buf));
    if (dek->len != CV_DEK_BYTES || aad_len == 0 || nonce_len != CV_GCM_NONCE_BYTES ||
        ct_len < CV_GCM_TAG_BYTES || ct_len - CV_GCM_TAG_BYTES > CV_CARD_PLAIN_MAX)
        goto out;
    size_t body_len = ct_len - CV_GCM_TAG_BYTES;
    memcpy(tag, ct + body_len, CV_GCM_TAG_BYTES);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || aes_gcm() == NULL ||
        EVP_DecryptInit_ex2(ctx, aes_gcm(), dek->data, nonce, NULL) != 1)
        goto out;
    if (EVP_DecryptUpdate(ctx, NULL, &outl, aad_buf, (int)aad_len) != 1)
        goto out;
    if (EVP_DecryptUpdate(ctx, plain, &outl, ct, (int)body_len) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CV_GCM_TAG_BYTES, tag) != 1)
        goto out;
    /* Final verifies the tag; nothing decrypted is used unless it succeeds. */
    if (EVP_DecryptFinal_ex(ctx, plain + outl, &finl) != 1)
        goto out;
    st = cv_card_decode(plain, (size_t)(outl + finl), card);
out:
    if (st != CV_OK)
        cv_wipe(card, sizeof(*card));
    cv_wipe(plain, sizeof(plain));
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

cv_status cv_envelope_hmac(const struct cv_secbuf *key, const void *const *parts,
                           const size_t *lens, size_t n_parts, unsigned char out[32])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    cv_status st = CV_ERR_CRYPTO;
    static const unsigned char sep = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    pthread_once(&fetch_once, fetch_algorithms);
    EVP_MAC_CTX *ctx = hmac_fetched != NULL ? EVP_MAC_CTX_new(hmac_fetched) : NULL;
    if (ctx == NULL || EVP_MAC_init(ctx, key->data, key->len, params) != 1)
        goto out;
    for (size_t i = 0; i < n_parts; i++) {
        if ((i > 0 && EVP_MAC_update(ctx, &sep, 1) != 1) ||
            EVP_MAC_update(ctx, parts[i], lens[i]) != 1)
            goto out;
    }
    if (EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac)) != 1 || mac_len != 32)
        goto out;
    memcpy(out, mac, 32);
    st = CV_OK;
out:
    cv_wipe(mac, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    return st;
}

cv_status cv_envelope_fingerprint(const struct cv_secbuf *fp_key, const char *merchant_id,
                                  const char *pan, unsigned char out[16])
{
    unsigned char mac[32];
    const void *parts[] = {merchant_id, pan};
    const size_t lens[] = {strlen(merchant_id), strlen(pan)};
    CV_TRY(cv_envelope_hmac(fp_key, parts, lens, 2, mac));
    memcpy(out, mac, 16);
    cv_wipe(mac, sizeof(mac));
    return CV_OK;
}

cv_status cv_envelope_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    pthread_once(&fetch_once, fetch_algorithms);
    if (sha256_fetched == NULL || EVP_Digest(data, len, out, &n, sha256_fetched, NULL) != 1 ||
        n != 32)
        return CV_ERR_CRYPTO;
    return CV_OK;
}

cv_status cv_envelope_sha384(const void *data, size_t len, unsigned char out[48])
{
    unsigned int n = 0;
    /* Once, outside any hot path (the integrity value of elements.js). */
    if (EVP_Digest(data, len, out, &n, EVP_sha384(), NULL) != 1 || n != 48)
        return CV_ERR_CRYPTO;
    return CV_OK;
}

cv_status cv_envelope_seal_bytes(const unsigned char *key, const void *aad, size_t aad_len,
                                 const unsigned char *plain, size_t len,
                                 unsigned char nonce[CV_GCM_NONCE_BYTES], unsigned char *ct,
                                 unsigned char tag[CV_GCM_TAG_BYTES])
{
    cv_status st = CV_ERR_CRYPTO;
    int outl = 0, finl = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || aes_gcm() == NULL || len > 64 || aad_len > 1024)
        goto out;
    if (RAND_bytes(nonce, CV_GCM_NONCE_BYTES) != 1 ||
        EVP_EncryptInit_ex2(ctx, aes_gcm(), key, nonce, NULL) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1 ||
        EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CV_GCM_TAG_BYTES, tag) != 1)
        goto out;
    st = CV_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

cv_status cv_envelope_open_bytes(const unsigned char *key, const void *aad, size_t aad_len,
                                 const unsigned char *ct, size_t len,
                                 const unsigned char nonce[CV_GCM_NONCE_BYTES],
                                 const unsigned char tag[CV_GCM_TAG_BYTES], unsigned char *plain)
{
    cv_status st = CV_ERR_CRYPTO;
    int outl = 0, finl = 0;
    unsigned char tag_copy[CV_GCM_TAG_BYTES];
    memcpy(tag_copy, tag, sizeof(tag_copy));
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || aes_gcm() == NULL || len > 64 || aad_len > 1024)
        goto out;
    if (EVP_DecryptInit_ex2(ctx, aes_gcm(), key, nonce, NULL) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(ctx, plain, &outl, ct, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CV_GCM_TAG_BYTES, tag_copy) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, plain + outl, &finl) != 1) {
        OPENSSL_cleanse(plain, len);
        st = CV_ERR_INTEGRITY;
        goto out;
    }
    st = CV_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    return st;
}
