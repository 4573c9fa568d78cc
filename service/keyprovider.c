/* keyprovider.c: dispatch to the KEK provider in use, and the in-memory KEK
 * primitives (AES-256 key wrap with padding, RFC 5649; key check value).
 * Nothing here logs key material; wrap failures are reported as statuses. */
#include "cardvault/keyprovider.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

cv_status cv_keyprovider_wrap(struct cv_keyprovider *kp, const struct cv_secbuf *key,
                              unsigned char **out, size_t *out_len)
{
    return kp->ops->wrap(kp, key, out, out_len);
}

cv_status cv_keyprovider_unwrap(struct cv_keyprovider *kp, const unsigned char *in, size_t in_len,
                                struct cv_secbuf **out)
{
    return kp->ops->unwrap(kp, in, in_len, out);
}

cv_status cv_keyprovider_check_value(struct cv_keyprovider *kp, unsigned char out[CV_KCV_BYTES])
{
    return kp->ops->check_value(kp, out);
}

const char *cv_keyprovider_name(const struct cv_keyprovider *kp)
{
    return kp->ops->name;
}

void cv_keyprovider_free(struct cv_keyprovider *kp)
{
    if (kp == NULL)
        return;
    kp->ops->destroy(kp);
    free(kp);
}

static cv_status wrap_cipher(const struct cv_secbuf *kek, int enc, const unsigned char *in,
                             size_t in_len, unsigned char *out, size_t *out_len)
{
    cv_status st = enc ? CV_ERR_CRYPTO : CV_ERR_INTEGRITY;
    int outl = 0, finl = 0;
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (cipher == NULL || ctx == NULL || kek->len != 32 || in_len > 1024)
        goto out;
    if (EVP_CipherInit_ex2(ctx, cipher, kek->data, NULL, enc, NULL) != 1)
        goto out;
    if (EVP_CipherUpdate(ctx, out, &outl, in, (int)in_len) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + outl, &finl) != 1)
        goto out;
    *out_len = (size_t)(outl + finl);
    st = CV_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    return st;
}

cv_status cv_kek_wrap_raw(const struct cv_secbuf *kek, const struct cv_secbuf *key,
                          unsigned char **out, size_t *out_len)
{
    if (key->len == 0)
        return CV_ERR_CRYPTO;
    /* RFC 5649 output: input padded to a multiple of 8, plus 8 bytes. */
    size_t cap = ((key->len + 7) / 8) * 8 + 8 + 16;
    unsigned char *buf = cv_xmalloc(cap);
    cv_status st = wrap_cipher(kek, 1, key->data, key->len, buf, out_len);
    if (st != CV_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return CV_OK;
}

cv_status cv_kek_unwrap_raw(const struct cv_secbuf *kek, const unsigned char *in, size_t in_len,
                            struct cv_secbuf **out)
{
    if (in_len < 16 || in_len > 1024)
        return CV_ERR_INTEGRITY;
    struct cv_secbuf *key = cv_secbuf_new(in_len);
    size_t n = 0;
    cv_status st = wrap_cipher(kek, 0, in, in_len, key->data, &n);
    if (st != CV_OK) {
        cv_secbuf_free(key);
        return CV_ERR_INTEGRITY;
    }
    key->len = n;
    *out = key;
    return CV_OK;
}

cv_status cv_kek_check_value_raw(const struct cv_secbuf *kek, unsigned char out[CV_KCV_BYTES])
{
    static const unsigned char zero[16];
    unsigned char block[32];
    int outl = 0;
    cv_status st = CV_ERR_CRYPTO;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || kek->len != 32)
        goto out;
    if (EVP_EncryptInit_ex2(ctx, EVP_aes_256_ecb(), kek->data, NULL, NULL) != 1)
        goto out;
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    if (EVP_EncryptUpdate(ctx, block, &outl, zero, sizeof(zero)) != 1 || outl != 16)
        goto out;
    memcpy(out, block, CV_KCV_BYTES);
    st = CV_OK;
out:
    cv_wipe(block, sizeof(block));
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

/* The memory provider: the KEK lives in a secure buffer of this process. */

static cv_status mem_wrap(struct cv_keyprovider *kp, const struct cv_secbuf *key,
                          unsigned char **out, size_t *out_len)
{
    return cv_kek_wrap_raw(kp->state, key, out, out_len);
}

static cv_status mem_unwrap(struct cv_keyprovider *kp, const unsigned char *in, size_t in_len,
                            struct cv_secbuf **out)
{
    return cv_kek_unwrap_raw(kp->state, in, in_len, out);
}

static cv_status mem_kcv(struct cv_keyprovider *kp, unsigned char out[CV_KCV_BYTES])
{
    return cv_kek_check_value_raw(kp->state, out);
}

static void mem_destroy(struct cv_keyprovider *kp)
{
    cv_secbuf_free(kp->state);
    kp->state = NULL;
}

static const struct cv_keyprovider_ops memory_ops = {
    .name = "file",
    .wrap = mem_wrap,
    .unwrap = mem_unwrap,
    .check_value = mem_kcv,
    .destroy = mem_destroy,
};

struct cv_keyprovider *cv_keyprovider_memory_take(struct cv_secbuf *kek)
{
    struct cv_keyprovider *kp = cv_xcalloc(1, sizeof(*kp));
    kp->ops = &memory_ops;
    kp->state = kek;
    return kp;
}
