/* test_envelope.c: envelope.c's AES-256-GCM sealing and its failure to open
 * anything that was not sealed for exactly this row: every flipped bit of
 * ciphertext and tag, every truncation, another nonce, token, merchant, key
 * id, format version or key, and ciphertexts swapped between rows. The
 * on-disk formats (plaintext layout and AAD encoding) are pinned by sealing
 * hand-built bytes through EVP directly, so a change that would orphan
 * stored rows fails here first. GCM itself is checked against the published
 * AES-256 vectors in tests/vectors/gcm-aes256.rsp; the fingerprint against
 * an independent HMAC-SHA-256, and SHA-256 against FIPS 180-2 answers. */
#include "cardvault/envelope.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "check.h"
#include "test_helpers.h"
#include "unhex.h"

#define GCM_VECTORS_PATH "tests/vectors/gcm-aes256.rsp"
#define GCM_VECTORS_MIN  4

#define TOKEN_A    "tok_4eC39HqLyjWDarjtT1zdp7"
#define TOKEN_B    "tok_1AbCdEfGhIjKlMnOpQrStU"
#define MERCHANT_A "mer_000000000000000000aa"
#define MERCHANT_B "mer_000000000000000000bb"

/* ---- helpers -------------------------------------------------------------- */

static struct cv_secbuf *key_of(unsigned char fill)
{
    struct cv_secbuf *k = cv_secbuf_new(CV_DEK_BYTES);
    memset(k->data, fill, CV_DEK_BYTES);
    k->len = CV_DEK_BYTES;
    return k;
}

static struct cv_aad aad_of(const char *token, const char *merchant, int64_t dek_id)
{
    struct cv_aad a = {CV_SEAL_FORMAT_V1, token, merchant, dek_id};
    return a;
}

static struct cv_card_plain card_of(const char *pan, int month, int year, const char *name)
{
    return test_card(pan, month, year, name);
}

static bool cards_equal(const struct cv_card_plain *a, const struct cv_card_plain *b)
{
    return strcmp(a->pan, b->pan) == 0 && a->exp_month == b->exp_month &&
           a->exp_year == b->exp_year && a->has_name == b->has_name &&
           strcmp(a->name, b->name) == 0;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

struct sealed {
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char *ct;
    size_t ct_len;
};

static void seal_ok(const struct cv_secbuf *dek, const struct cv_aad *aad,
                    const struct cv_card_plain *card, struct sealed *s)
{
    memset(s, 0, sizeof(*s));
    CHECK_EQ_INT(cv_envelope_seal(dek, aad, card, s->nonce, &s->ct, &s->ct_len), CV_OK);
    CHECK(s->ct != NULL);
}

/* Opens and returns the status; on failure also checks that card was wiped. */
static cv_status open_status(const struct cv_secbuf *dek, const struct cv_aad *aad,
                             const unsigned char *nonce, size_t nonce_len, const unsigned char *ct,
                             size_t ct_len)
{
    struct cv_card_plain out;
    memset(&out, 0xAA, sizeof(out));
    cv_status st = cv_envelope_open(dek, aad, nonce, nonce_len, ct, ct_len, &out);
    if (st != CV_OK)
        CHECK(all_zero(&out, sizeof(out)));
    cv_wipe(&out, sizeof(out));
    return st;
}

/* The AAD encoding envelope.c documents, rebuilt independently:
 * "cardvault" | u8 version | token | 0x00 | merchant | 0x00 | i64be dek_id. */
static size_t ref_aad(int version, const char *token, const char *merchant, int64_t dek_id,
                      unsigned char *out)
{
    size_t n = 0, tl = strlen(token), ml = strlen(merchant);
    memcpy(out, "cardvault", 9);
    n = 9;
    out[n++] = (unsigned char)version;
    memcpy(out + n, token, tl);
    n += tl;
    out[n++] = 0;
    memcpy(out + n, merchant, ml);
    n += ml;
    out[n++] = 0;
    for (int i = 7; i >= 0; i--)
        out[n++] = (unsigned char)((uint64_t)dek_id >> (8 * i));
    return n;
}

/* AES-256-GCM through EVP alone: ct gets plain_len bytes then the 16-byte tag. */
static bool evp_gcm_seal(const unsigned char *key, const unsigned char *iv, size_t iv_len,
                         const unsigned char *aad, size_t aad_len, const unsigned char *plain,
                         size_t plain_len, unsigned char *ct)
{
    int outl = 0, finl = 0;
    bool ok = false;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    OSSL_PARAM params[] = {OSSL_PARAM_END, OSSL_PARAM_END};
    size_t ivl = iv_len;
    params[0] = OSSL_PARAM_construct_size_t("ivlen", &ivl);
    if (ctx == NULL || EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, params) != 1 ||
        EVP_EncryptInit_ex2(ctx, NULL, key, iv, NULL) != 1)
        goto out;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1)
        goto out;
    if (plain_len > 0 && EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)plain_len) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, ct + plain_len) != 1)
        goto out;
    ok = true;
out:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* Seals raw plaintext bytes for (TOKEN_A, MERCHANT_A, dek_id 7) under dek,
 * bypassing pack_card: lets the tests hand envelope_open layouts that carry
 * a valid tag but are not well-formed. */
static size_t seal_raw_for_a(const struct cv_secbuf *dek, const unsigned char *plain,
                             size_t plain_len, unsigned char nonce[CV_GCM_NONCE_BYTES],
                             unsigned char *ct)
{
    unsigned char aad[128];
    size_t aad_len = ref_aad(CV_SEAL_FORMAT_V1, TOKEN_A, MERCHANT_A, 7, aad);
    memset(nonce, 0x5c, CV_GCM_NONCE_BYTES);
    CHECK(evp_gcm_seal(dek->data, nonce, CV_GCM_NONCE_BYTES, aad, aad_len, plain, plain_len, ct));
    return plain_len + CV_GCM_TAG_BYTES;
}

/* ---- round trips ---------------------------------------------------------- */

static void seal_open_round_trip_with_name(void)
{
    struct cv_secbuf *dek = key_of(0x11);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, "HANAKO YAMADA"), out;
    struct sealed s;

    seal_ok(dek, &aad, &card, &s);
    /* u8 len | 16 digits | month | u16 year | u8 name_len | 13 bytes, plus the tag */
    CHECK_EQ_INT(s.ct_len, 1 + 16 + 1 + 2 + 1 + 13 + CV_GCM_TAG_BYTES);
    CHECK_EQ_INT(cv_envelope_open(dek, &aad, s.nonce, sizeof(s.nonce), s.ct, s.ct_len, &out),
                 CV_OK);
    CHECK(cards_equal(&card, &out));
    CHECK_EQ_INT(out.has_name, 1);
    cv_wipe(&out, sizeof(out));
    free(s.ct);
    cv_secbuf_free(dek);
}

static void seal_open_round_trip_without_name(void)
{
    struct cv_secbuf *dek = key_of(0x12);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 1);
    struct cv_card_plain card = card_of("378282246310005", 1, 2031, NULL), out;
    struct sealed s;

    seal_ok(dek, &aad, &card, &s);
    CHECK_EQ_INT(cv_envelope_open(dek, &aad, s.nonce, sizeof(s.nonce), s.ct, s.ct_len, &out),
                 CV_OK);
    CHECK(cards_equal(&card, &out));
    CHECK_EQ_INT(out.has_name, 0);
    CHECK_EQ_INT(out.name[0], '\0');
    free(s.ct);
    cv_secbuf_free(dek);
}

static void seal_open_round_trip_at_the_size_limits(void)
{
    /* 12- and 19-digit PANs, a 128-byte UTF-8 name, and the year 9999 (u16). */
    char name[CV_NAME_MAX_BYTES + 1];
    memset(name, 'N', CV_NAME_MAX_BYTES);
    memcpy(name, "\xc3\xa9", 2); /* a two-byte UTF-8 character: bytes, not chars, are counted */
    name[CV_NAME_MAX_BYTES] = '\0';
    const char *pans[] = {"424242424242", "6205500000000000004"};
    struct cv_secbuf *dek = key_of(0x13);
    struct cv_aad aad = aad_of(TOKEN_B, MERCHANT_B, INT64_MAX);
    for (size_t i = 0; i < 2; i++) {
        struct cv_card_plain card = card_of(pans[i], 12, 9999, name), out;
        struct sealed s;
        seal_ok(dek, &aad, &card, &s);
        CHECK_EQ_INT(s.ct_len, 1 + strlen(pans[i]) + 4 + 128 + CV_GCM_TAG_BYTES);
        CHECK_EQ_INT(cv_envelope_open(dek, &aad, s.nonce, sizeof(s.nonce), s.ct, s.ct_len, &out),
                     CV_OK);
        CHECK(cards_equal(&card, &out));
        free(s.ct);
    }
    cv_secbuf_free(dek);
}

static void seal_draws_a_fresh_nonce_every_time(void)
{
    /* NIST SP 800-38D 8.2.2: a repeated (key, nonce) pair leaks the XOR of
     * two plaintexts and the authentication key. */
    struct cv_secbuf *dek = key_of(0x14);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, NULL);
    struct sealed a, b;
    seal_ok(dek, &aad, &card, &a);
    seal_ok(dek, &aad, &card, &b);
    CHECK(memcmp(a.nonce, b.nonce, sizeof(a.nonce)) != 0);
    CHECK(!all_zero(a.nonce, sizeof(a.nonce)));
    CHECK_EQ_INT(a.ct_len, b.ct_len);
    CHECK(memcmp(a.ct, b.ct, a.ct_len) != 0);
    free(a.ct);
    free(b.ct);
    cv_secbuf_free(dek);
}

static void ciphertext_does_not_contain_the_pan(void)
{
    struct cv_secbuf *dek = key_of(0x15);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, "HANAKO YAMADA");
    struct sealed s;
    seal_ok(dek, &aad, &card, &s);
    for (size_t i = 0; i + 4 <= s.ct_len; i++)
        CHECK(memcmp(s.ct + i, "4242", 4) != 0 && memcmp(s.ct + i, "HANA", 4) != 0);
    free(s.ct);
    cv_secbuf_free(dek);
}

/* ---- hostile twins: tampering -------------------------------------------- */

struct fixture {
    struct cv_secbuf *dek;
    struct cv_aad aad;
    struct sealed s;
};

static void fixture_init(struct fixture *f)
{
    struct cv_card_plain card = card_of("5555555555554444", 3, 2032, "JOHN Q PUBLIC");
    f->dek = key_of(0x21);
    f->aad = aad_of(TOKEN_A, MERCHANT_A, 42);
    seal_ok(f->dek, &f->aad, &card, &f->s);
    /* The untouched fixture opens: every failure below is the tampering's doing. */
    CHECK_EQ_INT(open_status(f->dek, &f->aad, f->s.nonce, CV_GCM_NONCE_BYTES, f->s.ct, f->s.ct_len),
                 CV_OK);
}

static void fixture_cleanup(struct fixture *f)
{
    free(f->s.ct);
    cv_secbuf_free(f->dek);
}

static void open_fails_on_any_flipped_ciphertext_bit(void)
{
    struct fixture f;
    fixture_init(&f);
    size_t body = f.s.ct_len - CV_GCM_TAG_BYTES;
    for (size_t i = 0; i < body; i++) {
        for (int bit = 0; bit < 8; bit++) {
            f.s.ct[i] ^= (unsigned char)(1u << bit);
            CHECK_EQ_INT(
                open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                CV_ERR_INTEGRITY);
            f.s.ct[i] ^= (unsigned char)(1u << bit);
        }
    }
    fixture_cleanup(&f);
}

static void open_fails_on_any_flipped_tag_bit(void)
{
    struct fixture f;
    fixture_init(&f);
    for (size_t i = f.s.ct_len - CV_GCM_TAG_BYTES; i < f.s.ct_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            f.s.ct[i] ^= (unsigned char)(1u << bit);
            CHECK_EQ_INT(
                open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                CV_ERR_INTEGRITY);
            f.s.ct[i] ^= (unsigned char)(1u << bit);
        }
    }
    fixture_cleanup(&f);
}

static void open_fails_on_every_truncation_and_on_extension(void)
{
    struct fixture f;
    fixture_init(&f);
    for (size_t n = 0; n < f.s.ct_len; n++) {
        /* An exact-size copy, so reading past the truncation point is an ASan report. */
        unsigned char *cut = malloc(n == 0 ? 1 : n);
        memcpy(cut, f.s.ct, n);
        CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, cut, n),
                     CV_ERR_INTEGRITY);
        free(cut);
    }
    unsigned char *longer = malloc(f.s.ct_len + 1);
    memcpy(longer, f.s.ct, f.s.ct_len);
    longer[f.s.ct_len] = 0;
    CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, longer, f.s.ct_len + 1),
                 CV_ERR_INTEGRITY);
    free(longer);
    CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, 0),
                 CV_ERR_INTEGRITY);
    fixture_cleanup(&f);
}

static void open_refuses_an_oversized_ciphertext_without_reading_it_all(void)
{
    struct fixture f;
    fixture_init(&f);
    size_t big = CV_CARD_PLAIN_MAX + CV_GCM_TAG_BYTES + 1;
    unsigned char *ct = calloc(1, big);
    CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, ct, big),
                 CV_ERR_INTEGRITY);
    free(ct);
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_nonce(void)
{
    struct fixture f;
    fixture_init(&f);
    for (size_t i = 0; i < CV_GCM_NONCE_BYTES; i++) {
        f.s.nonce[i] ^= 0x01;
        CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                     CV_ERR_INTEGRITY);
        f.s.nonce[i] ^= 0x01;
    }
    /* A nonce of another length is refused, not hashed into a different IV. */
    unsigned char longer[CV_GCM_NONCE_BYTES + 1];
    memcpy(longer, f.s.nonce, CV_GCM_NONCE_BYTES);
    longer[CV_GCM_NONCE_BYTES] = 0;
    CHECK_EQ_INT(open_status(f.dek, &f.aad, longer, sizeof(longer), f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES - 1, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    CHECK_EQ_INT(open_status(f.dek, &f.aad, f.s.nonce, 0, f.s.ct, f.s.ct_len), CV_ERR_INTEGRITY);
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_aad_token(void)
{
    struct fixture f;
    fixture_init(&f);
    struct cv_aad other = f.aad;
    other.token = TOKEN_B;
    CHECK_EQ_INT(open_status(f.dek, &other, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    other.token = "";
    CHECK_EQ_INT(open_status(f.dek, &other, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_merchant(void)
{
    struct fixture f;
    fixture_init(&f);
    struct cv_aad other = f.aad;
    other.merchant_id = MERCHANT_B;
    CHECK_EQ_INT(open_status(f.dek, &other, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_dek_id(void)
{
    struct fixture f;
    fixture_init(&f);
    const int64_t ids[] = {41, 43, 0, -42, 42 + (1LL << 32), INT64_MIN};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        struct cv_aad other = f.aad;
        other.dek_id = ids[i];
        CHECK_EQ_INT(open_status(f.dek, &other, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                     CV_ERR_INTEGRITY);
    }
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_format_version(void)
{
    struct fixture f;
    fixture_init(&f);
    /* The AAD carries the version as one byte, so 257 would alias 1 here;
     * keyring.c refuses any row whose version is not CV_SEAL_FORMAT_V1
     * before it gets this far. */
    const int versions[] = {0, 2, 255};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        struct cv_aad other = f.aad;
        other.format_version = versions[i];
        CHECK_EQ_INT(open_status(f.dek, &other, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                     CV_ERR_INTEGRITY);
    }
    fixture_cleanup(&f);
}

static void open_fails_on_wrong_key(void)
{
    struct fixture f;
    fixture_init(&f);
    struct cv_secbuf *other = key_of(0x21);
    other->data[CV_DEK_BYTES - 1] ^= 0x80; /* one bit away from the right key */
    CHECK_EQ_INT(open_status(other, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    cv_secbuf_free(other);
    /* A key of the wrong length is refused before it reaches the cipher. */
    struct cv_secbuf *short_key = key_of(0x21);
    short_key->len = 16;
    CHECK_EQ_INT(open_status(short_key, &f.aad, f.s.nonce, CV_GCM_NONCE_BYTES, f.s.ct, f.s.ct_len),
                 CV_ERR_INTEGRITY);
    cv_secbuf_free(short_key);
    fixture_cleanup(&f);
}

static void open_fails_when_token_and_merchant_boundaries_shift(void)
{
    /* "tok_ab"+"c" and "tok_a"+"bc" concatenate to the same bytes: only the
     * NUL separators in the AAD tell the two rows apart. */
    struct cv_secbuf *dek = key_of(0x22);
    struct cv_aad a = aad_of("tok_ab", "c", 1), b = aad_of("tok_a", "bc", 1);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, NULL);
    struct sealed s;
    seal_ok(dek, &a, &card, &s);
    CHECK_EQ_INT(open_status(dek, &a, s.nonce, CV_GCM_NONCE_BYTES, s.ct, s.ct_len), CV_OK);
    CHECK_EQ_INT(open_status(dek, &b, s.nonce, CV_GCM_NONCE_BYTES, s.ct, s.ct_len),
                 CV_ERR_INTEGRITY);
    free(s.ct);
    cv_secbuf_free(dek);
}

static void ciphertext_swapped_between_rows_fails_to_open(void)
{
    /* Two rows under the same DEK, same merchant; an attacker with write
     * access to the table swaps their (nonce, ciphertext) columns. */
    struct cv_secbuf *dek = key_of(0x23);
    struct cv_aad row_a = aad_of(TOKEN_A, MERCHANT_A, 9), row_b = aad_of(TOKEN_B, MERCHANT_A, 9);
    struct cv_card_plain card_a = card_of("4242424242424242", 12, 2030, "ALICE");
    struct cv_card_plain card_b = card_of("5555555555554444", 11, 2029, "BOB");
    struct sealed a, b;
    seal_ok(dek, &row_a, &card_a, &a);
    seal_ok(dek, &row_b, &card_b, &b);
    CHECK_EQ_INT(open_status(dek, &row_a, b.nonce, CV_GCM_NONCE_BYTES, b.ct, b.ct_len),
                 CV_ERR_INTEGRITY);
    CHECK_EQ_INT(open_status(dek, &row_b, a.nonce, CV_GCM_NONCE_BYTES, a.ct, a.ct_len),
                 CV_ERR_INTEGRITY);
    /* Swapping only the ciphertext column, or only the nonce, fails as well. */
    CHECK_EQ_INT(open_status(dek, &row_a, a.nonce, CV_GCM_NONCE_BYTES, b.ct, b.ct_len),
                 CV_ERR_INTEGRITY);
    CHECK_EQ_INT(open_status(dek, &row_a, b.nonce, CV_GCM_NONCE_BYTES, a.ct, a.ct_len),
                 CV_ERR_INTEGRITY);
    /* A row moved to another merchant with its token unchanged. */
    struct cv_aad moved = aad_of(TOKEN_A, MERCHANT_B, 9);
    CHECK_EQ_INT(open_status(dek, &moved, a.nonce, CV_GCM_NONCE_BYTES, a.ct, a.ct_len),
                 CV_ERR_INTEGRITY);
    free(a.ct);
    free(b.ct);
    cv_secbuf_free(dek);
}

static void seal_refuses_a_key_of_the_wrong_length(void)
{
    struct cv_secbuf *dek = key_of(0x24);
    dek->len = CV_DEK_BYTES - 1;
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, NULL);
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    static unsigned char sentinel[1];
    unsigned char *ct = sentinel;
    size_t ct_len = 99;
    CHECK(cv_envelope_seal(dek, &aad, &card, nonce, &ct, &ct_len) != CV_OK);
    CHECK(ct == NULL);
    CHECK_EQ_INT(ct_len, 0);
    cv_secbuf_free(dek);
}

static void seal_refuses_aad_too_long_to_encode(void)
{
    char token[300];
    memset(token, 'x', sizeof(token) - 1);
    token[sizeof(token) - 1] = '\0';
    struct cv_secbuf *dek = key_of(0x25);
    struct cv_aad aad = aad_of(token, MERCHANT_A, 7);
    struct cv_card_plain card = card_of("4242424242424242", 12, 2030, NULL);
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char *ct = NULL;
    size_t ct_len = 0;
    CHECK(cv_envelope_seal(dek, &aad, &card, nonce, &ct, &ct_len) != CV_OK);
    CHECK(ct == NULL);
    unsigned char junk[64] = {0};
    CHECK_EQ_INT(open_status(dek, &aad, nonce, sizeof(nonce), junk, sizeof(junk)),
                 CV_ERR_INTEGRITY);
    cv_secbuf_free(dek);
}

/* ---- the stored formats ---------------------------------------------------- */

static void documented_layout_and_aad_open(void)
{
    /* Hand-packed v1 plaintext under the documented AAD: if either format
     * changes, rows already in the database stop opening. */
    static const unsigned char plain[] = {16,  '4', '2',  '4',  '2', '4', '2', '4',
                                          '2', '4', '2',  '4',  '2', '4', '2', '4',
                                          '2', 12,  0x07, 0xEE, 3,   'A', 'B', 'C'};
    struct cv_secbuf *dek = key_of(0x31);
    unsigned char nonce[CV_GCM_NONCE_BYTES], ct[sizeof(plain) + CV_GCM_TAG_BYTES];
    size_t ct_len = seal_raw_for_a(dek, plain, sizeof(plain), nonce, ct);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    struct cv_card_plain out;
    CHECK_EQ_INT(cv_envelope_open(dek, &aad, nonce, sizeof(nonce), ct, ct_len, &out), CV_OK);
    CHECK(strcmp(out.pan, "4242424242424242") == 0);
    CHECK_EQ_INT(out.exp_month, 12);
    CHECK_EQ_INT(out.exp_year, 2030);
    CHECK_EQ_INT(out.has_name, 1);
    CHECK(strcmp(out.name, "ABC") == 0);
    cv_secbuf_free(dek);
}

static void authentic_but_malformed_plaintext_is_refused(void)
{
    /* Each of these carries a valid tag, so only the layout check stands
     * between it and a caller: lengths out of range, bytes left over, a name
     * length that runs past the end. */
    struct {
        const char *why;
        unsigned char bytes[200];
        size_t len;
    } cases[] = {
        {"empty", {0}, 0},
        {"pan_len 11",
         {11, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', 1, 7, 0xEE, 0xff},
         16},
        {"pan_len 20", {20}, 1 + 20 + 4},
        {"pan_len 255", {255}, 1},
        {"stops before the year",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1},
         14},
        {"no name marker",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 7, 0xEE},
         16},
        {"byte after no-name",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 7, 0xEE, 0xff, 'X'},
         18},
        {"name_len past end",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 7, 0xEE, 5, 'A', 'B'},
         19},
        {"name shorter than data",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 7, 0xEE, 1, 'A', 'B'},
         19},
        {"name_len 129",
         {12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 7, 0xEE, 129},
         17 + 129},
    };
    struct cv_secbuf *dek = key_of(0x32);
    struct cv_aad aad = aad_of(TOKEN_A, MERCHANT_A, 7);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char nonce[CV_GCM_NONCE_BYTES], ct[sizeof(cases[i].bytes) + CV_GCM_TAG_BYTES];
        size_t ct_len = seal_raw_for_a(dek, cases[i].bytes, cases[i].len, nonce, ct);
        cv_status st = open_status(dek, &aad, nonce, sizeof(nonce), ct, ct_len);
        if (st != CV_ERR_INTEGRITY)
            fprintf(stderr, "  malformed layout accepted: %s\n", cases[i].why);
        CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
    }
    cv_secbuf_free(dek);
}

/* ---- GCM known answers ------------------------------------------------------ */

struct gcm_vector {
    unsigned char key[32], iv[64], pt[128], aad[128], ct[128], tag[16];
    long key_len, iv_len, pt_len, aad_len, ct_len, tag_len;
};

static void check_gcm_vector(const struct gcm_vector *v)
{
    unsigned char out[128 + 16];
    CHECK_EQ_INT(v->key_len, 32);
    CHECK_EQ_INT(v->tag_len, 16);
    CHECK_EQ_INT(v->pt_len, v->ct_len);
    CHECK(evp_gcm_seal(v->key, v->iv, (size_t)v->iv_len, v->aad, (size_t)v->aad_len, v->pt,
                       (size_t)v->pt_len, out));
    CHECK(memcmp(out, v->ct, (size_t)v->ct_len) == 0);
    CHECK(memcmp(out + v->pt_len, v->tag, 16) == 0);
}

static void gcm_matches_published_aes256_vectors(void)
{
    char line[512], name[16], value[400];
    struct gcm_vector v;
    int count = 0;
    FILE *f = fopen(GCM_VECTORS_PATH, "r");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    memset(&v, 0, sizeof(v));
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        value[0] = '\0';
        if (sscanf(line, "%15s = %399s", name, value) < 1)
            continue;
        if (strcmp(name, "Key") == 0)
            v.key_len = unhex(value, v.key, sizeof(v.key));
        else if (strcmp(name, "IV") == 0)
            v.iv_len = unhex(value, v.iv, sizeof(v.iv));
        else if (strcmp(name, "PT") == 0)
            v.pt_len = unhex(value, v.pt, sizeof(v.pt));
        else if (strcmp(name, "AAD") == 0)
            v.aad_len = unhex(value, v.aad, sizeof(v.aad));
        else if (strcmp(name, "CT") == 0)
            v.ct_len = unhex(value, v.ct, sizeof(v.ct));
        else if (strcmp(name, "Tag") == 0) {
            v.tag_len = unhex(value, v.tag, sizeof(v.tag));
            check_gcm_vector(&v);
            count++;
            memset(&v, 0, sizeof(v));
        }
    }
    fclose(f);
    CHECK(count >= GCM_VECTORS_MIN);
}

static void gcm_vector_with_one_tag_bit_flipped_fails_to_decrypt(void)
{
    /* The oracle itself must be able to fail: test case 16 with a bad tag. */
    unsigned char key[32], iv[12], aad[20], ct[60], tag[16], out[60];
    CHECK_EQ_INT(
        unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, sizeof(key)),
        32);
    CHECK_EQ_INT(unhex("cafebabefacedbaddecaf888", iv, sizeof(iv)), 12);
    CHECK_EQ_INT(unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, sizeof(aad)), 20);
    CHECK_EQ_INT(unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48"
                       "590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                       ct, sizeof(ct)),
                 60);
    CHECK_EQ_INT(unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag, sizeof(tag)), 16);
    for (int flip = 0; flip < 2; flip++) {
        int outl = 0, finl = 0;
        tag[15] ^= (unsigned char)flip;
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        CHECK(ctx != NULL && EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key, iv, NULL) == 1);
        CHECK(EVP_DecryptUpdate(ctx, NULL, &outl, aad, sizeof(aad)) == 1);
        CHECK(EVP_DecryptUpdate(ctx, out, &outl, ct, sizeof(ct)) == 1);
        CHECK(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1);
        CHECK_EQ_INT(EVP_DecryptFinal_ex(ctx, out + outl, &finl), flip ? 0 : 1);
        EVP_CIPHER_CTX_free(ctx);
    }
}

/* ---- fingerprint and SHA-256 ------------------------------------------------- */

static void fingerprint(unsigned char fill, const char *merchant, const char *pan,
                        unsigned char out[16])
{
    struct cv_secbuf *k = key_of(fill);
    CHECK_EQ_INT(cv_envelope_fingerprint(k, merchant, pan, out), CV_OK);
    cv_secbuf_free(k);
}

static void fingerprint_is_stable_for_same_merchant_and_pan(void)
{
    unsigned char a[16], b[16];
    fingerprint(0x41, MERCHANT_A, "4242424242424242", a);
    fingerprint(0x41, MERCHANT_A, "4242424242424242", b);
    CHECK(memcmp(a, b, 16) == 0);
    CHECK(!all_zero(a, 16));
}

static void fingerprint_differs_by_merchant_pan_and_key(void)
{
    unsigned char base[16], other[16];
    fingerprint(0x41, MERCHANT_A, "4242424242424242", base);
    fingerprint(0x41, MERCHANT_B, "4242424242424242", other);
    CHECK(memcmp(base, other, 16) != 0);
    fingerprint(0x41, MERCHANT_A, "4000056655665556", other);
    CHECK(memcmp(base, other, 16) != 0);
    fingerprint(0x42, MERCHANT_A, "4242424242424242", other);
    CHECK(memcmp(base, other, 16) != 0);
    /* merchant "mer_1" + pan "23..." must not collide with "mer_12" + "3...". */
    unsigned char x[16], y[16];
    fingerprint(0x41, "mer_1", "234242424242424242", x);
    fingerprint(0x41, "mer_12", "34242424242424242", y);
    CHECK(memcmp(x, y, 16) != 0);
}

static void fingerprint_is_hmac_sha256_of_merchant_nul_pan(void)
{
    /* Independent oracle: one-shot HMAC over the documented message. */
    unsigned char want[EVP_MAX_MD_SIZE], got[16], key[32];
    unsigned int want_len = 0;
    const char msg[] = MERCHANT_A "\0"
                                  "4242424242424242";
    memset(key, 0x43, sizeof(key));
    CHECK(HMAC(EVP_sha256(), key, sizeof(key), (const unsigned char *)msg, sizeof(msg) - 1, want,
               &want_len) != NULL);
    CHECK_EQ_INT(want_len, 32);
    fingerprint(0x43, MERCHANT_A, "4242424242424242", got);
    CHECK(memcmp(got, want, 16) == 0);
}

static void sha256_matches_fips_180_answers(void)
{
    static const struct {
        const char *msg;
        const char *hex;
    } cases[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char got[32], want[32];
        CHECK_EQ_INT(unhex(cases[i].hex, want, sizeof(want)), 32);
        CHECK_EQ_INT(cv_envelope_sha256(cases[i].msg, strlen(cases[i].msg), got), CV_OK);
        CHECK(memcmp(got, want, 32) == 0);
    }
    /* Hostile twin: one byte more or less is a different digest. */
    unsigned char abc[32], ab[32], abcd[32];
    CHECK_EQ_INT(cv_envelope_sha256("abc", 3, abc), CV_OK);
    CHECK_EQ_INT(cv_envelope_sha256("abc", 2, ab), CV_OK);
    CHECK_EQ_INT(cv_envelope_sha256("abcd", 4, abcd), CV_OK);
    CHECK(memcmp(abc, ab, 32) != 0 && memcmp(abc, abcd, 32) != 0);
}

static void new_key_is_32_random_bytes(void)
{
    struct cv_secbuf *a = NULL, *b = NULL;
    CHECK_EQ_INT(cv_envelope_new_key(&a), CV_OK);
    CHECK_EQ_INT(cv_envelope_new_key(&b), CV_OK);
    if (a != NULL && b != NULL) {
        CHECK_EQ_INT(a->len, CV_DEK_BYTES);
        CHECK(memcmp(a->data, b->data, CV_DEK_BYTES) != 0);
        CHECK(!all_zero(a->data, CV_DEK_BYTES));
    }
    cv_secbuf_free(a);
    cv_secbuf_free(b);
}

int main(void)
{
    RUN(seal_open_round_trip_with_name);
    RUN(seal_open_round_trip_without_name);
    RUN(seal_open_round_trip_at_the_size_limits);
    RUN(seal_draws_a_fresh_nonce_every_time);
    RUN(ciphertext_does_not_contain_the_pan);
    RUN(open_fails_on_any_flipped_ciphertext_bit);
    RUN(open_fails_on_any_flipped_tag_bit);
    RUN(open_fails_on_every_truncation_and_on_extension);
    RUN(open_refuses_an_oversized_ciphertext_without_reading_it_all);
    RUN(open_fails_on_wrong_nonce);
    RUN(open_fails_on_wrong_aad_token);
    RUN(open_fails_on_wrong_merchant);
    RUN(open_fails_on_wrong_dek_id);
    RUN(open_fails_on_wrong_format_version);
    RUN(open_fails_on_wrong_key);
    RUN(open_fails_when_token_and_merchant_boundaries_shift);
    RUN(ciphertext_swapped_between_rows_fails_to_open);
    RUN(seal_refuses_a_key_of_the_wrong_length);
    RUN(seal_refuses_aad_too_long_to_encode);
    RUN(documented_layout_and_aad_open);
    RUN(authentic_but_malformed_plaintext_is_refused);
    RUN(gcm_matches_published_aes256_vectors);
    RUN(gcm_vector_with_one_tag_bit_flipped_fails_to_decrypt);
    RUN(fingerprint_is_stable_for_same_merchant_and_pan);
    RUN(fingerprint_differs_by_merchant_pan_and_key);
    RUN(fingerprint_is_hmac_sha256_of_merchant_nul_pan);
    RUN(sha256_matches_fips_180_answers);
    RUN(new_key_is_32_random_bytes);
    return check_summary("envelope");
}
