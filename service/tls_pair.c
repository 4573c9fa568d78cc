/* tls_pair.c: checks an HTTPS certificate and key pair with OpenSSL before
 * the listener (libmicrohttpd over GnuTLS) is given it. Its point is the
 * reload: a listener that has been told to stop accepting cannot take its
 * socket back, so a new pair is judged here first, and a bad one never
 * replaces a good one. Nothing here logs; the caller logs the reason. */
#include "cardvault/tls_pair.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* ASN1_TIME as Unix time; false when it cannot be read. */
static bool unix_time_of(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = timegm(&tm);
    return true;
}

cv_status cv_tls_pair_check(const char *cert_pem, size_t cert_len, const char *key_pem,
                            size_t key_len, time_t now, struct cv_tls_pair_info *info, char *why,
                            size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    memset(info, 0, sizeof(*info));
    BIO *cb = BIO_new_mem_buf(cert_pem, (int)cert_len);
    BIO *kb = BIO_new_mem_buf(key_pem, (int)key_len);
    if (cb == NULL || kb == NULL) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    if ((leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL)) == NULL) {
        snprintf(why, why_len, "the certificate file holds no PEM certificate");
        goto out;
    }
    /* an empty passphrase, never a prompt: an encrypted key is refused */
    char no_passphrase[1] = {'\0'};
    if ((key = PEM_read_bio_PrivateKey(kb, NULL, NULL, no_passphrase)) == NULL) {
        snprintf(why, why_len, "the key file holds no unencrypted PEM private key");
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        snprintf(why, why_len, "the key is not the certificate's (its public key differs)");
        goto out;
    }
    time_t not_before = 0;
    if (!unix_time_of(X509_get0_notBefore(leaf), &not_before) ||
        !unix_time_of(X509_get0_notAfter(leaf), &info->not_after)) {
        snprintf(why, why_len, "the certificate's validity dates cannot be read");
        goto out;
    }
    if (now < not_before) {
        snprintf(why, why_len, "the certificate is not valid yet");
        goto out;
    }
    if (now >= info->not_after) {
        snprintf(why, why_len, "the certificate has expired");
        goto out;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(leaf, EVP_sha256(), md, &md_len) != 1 || md_len != 32) {
        snprintf(why, why_len, "cannot hash the certificate");
        goto out;
    }
    for (unsigned i = 0; i < md_len; i++)
        snprintf(info->fingerprint + 2 * i, 3, "%02x", md[i]);
    BIO *sb = BIO_new(BIO_s_mem());
    if (sb != NULL &&
        X509_NAME_print_ex(sb, X509_get_subject_name(leaf), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(sb, info->subject, (int)sizeof(info->subject) - 1);
        info->subject[n > 0 ? n : 0] = '\0';
    }
    BIO_free(sb);
    st = CV_OK;
out:
    EVP_PKEY_free(key); /* OpenSSL clears a private key's memory when it frees it */
    X509_free(leaf);
    BIO_free(cb);
    BIO_free(kb);
    return st;
}
