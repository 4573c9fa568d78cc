/* test_tls_pair.c: the checks a certificate and key pass before the HTTPS
 * listener takes them (at start and on SIGHUP). Certificates are made here
 * with OpenSSL (P-256, self-signed, chosen validity). A matching, current
 * pair passes with its subject, expiry and fingerprint; a foreign key (also
 * one matching a later certificate of the chain, not the leaf), an expired
 * or not-yet-valid leaf, garbage, an empty file, swapped files and an
 * encrypted key are refused with a one-line reason that holds no key text. */
#include "cardvault/tls_pair.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "check.h"

#define NOW ((time_t)1800000000) /* 2027-01-15 */

struct pem {
    char *text;
    size_t len;
};

static struct pem bio_take(BIO *b)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    struct pem out = {calloc(1, (size_t)n + 1), (size_t)n};
    memcpy(out.text, p, (size_t)n);
    BIO_free(b);
    return out;
}

static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* A self-signed certificate for key, valid from NOW + from_s to NOW + to_s. */
static struct pem make_cert(EVP_PKEY *key, long from_s, long to_s, const char *cn)
{
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_time_adj_ex(X509_getm_notBefore(x), 0, from_s, &(time_t){NOW});
    X509_time_adj_ex(X509_getm_notAfter(x), 0, to_s, &(time_t){NOW});
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, key, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    X509_free(x);
    return bio_take(b);
}

static struct pem key_pem(EVP_PKEY *key, const char *pass)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (pass != NULL)
        PEM_write_bio_PrivateKey(b, key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)(uintptr_t)pass);
    else
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    return bio_take(b);
}

static void pem_free(struct pem *p)
{
    free(p->text);
    p->text = NULL;
}

static void expect_refused(const struct pem *cert, const struct pem *key, const char *mentions)
{
    char why[384] = "";
    struct cv_tls_pair_info info;
    CHECK_EQ_INT(
        cv_tls_pair_check(cert->text, cert->len, key->text, key->len, NOW, &info, why, sizeof(why)),
        CV_ERR_CONFIG);
    CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    CHECK(strstr(why, "PRIVATE KEY") == NULL);
    if (strstr(why, mentions) == NULL) {
        fprintf(stderr, "  reason \"%s\" does not mention \"%s\"\n", why, mentions);
        CHECK(0);
    }
}

static void check_accepts_matching_current_pair(void)
{
    EVP_PKEY *k = new_key();
    struct pem c = make_cert(k, -3600, 86400 * 30, "vault.example");
    struct pem p = key_pem(k, NULL);
    struct cv_tls_pair_info info;
    char why[256] = "";
    CHECK_EQ_INT(cv_tls_pair_check(c.text, c.len, p.text, p.len, NOW, &info, why, sizeof(why)),
                 CV_OK);
    CHECK(strcmp(info.subject, "CN=vault.example") == 0);
    CHECK_EQ_INT((long long)info.not_after, (long long)NOW + 86400 * 30);
    CHECK_EQ_INT(strlen(info.fingerprint), 64);
    CHECK(strspn(info.fingerprint, "0123456789abcdef") == 64);
    pem_free(&c);
    pem_free(&p);
    EVP_PKEY_free(k);
}

static void check_accepts_leaf_then_chain(void)
{
    EVP_PKEY *k = new_key(), *k2 = new_key();
    struct pem leaf = make_cert(k, -60, 3600, "leaf");
    struct pem ca = make_cert(k2, -60, 3600, "ca");
    struct pem chain = {calloc(1, leaf.len + ca.len + 1), leaf.len + ca.len};
    memcpy(chain.text, leaf.text, leaf.len);
    memcpy(chain.text + leaf.len, ca.text, ca.len);
    struct pem p = key_pem(k, NULL);
    struct cv_tls_pair_info info;
    char why[256] = "";
    CHECK_EQ_INT(
        cv_tls_pair_check(chain.text, chain.len, p.text, p.len, NOW, &info, why, sizeof(why)),
        CV_OK);
    CHECK(strcmp(info.subject, "CN=leaf") == 0);
    /* The key must be the first certificate's, not a later one's. */
    struct pem p2 = key_pem(k2, NULL);
    expect_refused(&chain, &p2, "not the certificate's");
    pem_free(&leaf);
    pem_free(&ca);
    pem_free(&chain);
    pem_free(&p);
    pem_free(&p2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

static void check_refuses_key_of_another_certificate(void)
{
    EVP_PKEY *k = new_key(), *other = new_key();
    struct pem c = make_cert(k, -60, 3600, "a");
    struct pem p = key_pem(other, NULL);
    expect_refused(&c, &p, "not the certificate's");
    pem_free(&c);
    pem_free(&p);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
}

static void check_refuses_expired_and_not_yet_valid(void)
{
    EVP_PKEY *k = new_key();
    struct pem p = key_pem(k, NULL);
    struct pem old = make_cert(k, -86400 * 10, -1, "old");
    expect_refused(&old, &p, "has expired");
    struct pem future = make_cert(k, 60, 86400, "future");
    expect_refused(&future, &p, "not valid yet");
    pem_free(&old);
    pem_free(&future);
    pem_free(&p);
    EVP_PKEY_free(k);
}

static void check_refuses_garbage_empty_and_encrypted(void)
{
    EVP_PKEY *k = new_key();
    struct pem c = make_cert(k, -60, 3600, "a");
    struct pem p = key_pem(k, NULL);
    struct pem garbage = {strdup("hello, not a certificate\n"), 25};
    expect_refused(&garbage, &p, "no PEM certificate");
    expect_refused(&c, &garbage, "no unencrypted PEM private key");
    struct pem empty = {strdup(""), 0};
    expect_refused(&empty, &p, "no PEM certificate");
    expect_refused(&c, &empty, "no unencrypted PEM private key");
    /* A certificate's PEM in the key file, and the key in the certificate file. */
    expect_refused(&c, &c, "no unencrypted PEM private key");
    expect_refused(&p, &p, "no PEM certificate");
    /* Encrypted: refused without a prompt (this test would hang otherwise). */
    struct pem enc = key_pem(k, "secret-pass");
    expect_refused(&c, &enc, "no unencrypted PEM private key");
    pem_free(&garbage);
    pem_free(&empty);
    pem_free(&enc);
    pem_free(&c);
    pem_free(&p);
    EVP_PKEY_free(k);
}

int main(void)
{
    RUN(check_accepts_matching_current_pair);
    RUN(check_accepts_leaf_then_chain);
    RUN(check_refuses_key_of_another_certificate);
    RUN(check_refuses_expired_and_not_yet_valid);
    RUN(check_refuses_garbage_empty_and_encrypted);
    return check_summary("tls_pair");
}
