/* fuzz_aead_open.c: cv_envelope_open on attacker-controlled ciphertext rows,
 * under one fixed DEK. The first byte picks a mode:
 *   0  raw row: format version, dek_id, nonce (any length), token, merchant
 *      and ciphertext all come from the input. Opening may succeed only for
 *      a genuine sealed row (the corpus holds some, made by
 *      gen_aead_seeds.c); whenever it does, re-sealing the card it returned
 *      under the same nonce and AAD must give back the input ciphertext
 *      byte for byte, so no accepted row is anything but an honest seal.
 *   1  authentic plaintext: the input is sealed here with the right AAD and
 *      a valid tag, so the layout parser (unpack_card) sees hostile bytes
 *      that pass authentication; whatever it accepts must be NUL-terminated
 *      and within the struct.
 *   2  tamper mask: the input is XORed over a row sealed at start-up
 *      (nonce | ciphertext | token | merchant | dek_id | version); any
 *      nonzero mask must fail to open, an all-zero one must open.
 * Never a crash, never CV_OK for a forged row. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Shared with gen_aead_seeds.c: the seeds are sealed under this key. */
#include "fuzz_aead_key.h"

#define ROW_TOKEN    "tok_4eC39HqLyjWDarjtT1zdp7"
#define ROW_MERCHANT "mer_0000000000000000000a"
#define ROW_DEK_ID   7
#define TEXT_MAX     64 /* token and merchant bytes taken from the input */

static struct cv_secbuf *dek;

/* The row sealed at start-up for mode 2, flattened as the mask sees it. */
static struct {
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char *ct;
    size_t ct_len;
} row;

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_aead_open invariant broken: %s\n", why);
    abort();
}

/* "cardvault" | u8 version | token | 0 | merchant | 0 | i64be dek_id, as envelope.c documents. */
static size_t aad_bytes(const struct cv_aad *a, unsigned char *out, size_t cap)
{
    size_t tl = strlen(a->token), ml = strlen(a->merchant_id), n = 0;
    if (9 + 1 + tl + 1 + ml + 1 + 8 > cap)
        return 0;
    memcpy(out, "cardvault", 9);
    n = 9;
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

/* AES-256-GCM under the fixed DEK through EVP alone; ct gets len + 16 bytes. */
static bool gcm_seal(const unsigned char *nonce, const unsigned char *aad, size_t aad_len,
                     const unsigned char *plain, size_t len, unsigned char *ct)
{
    int outl = 0, finl = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx != NULL &&
              EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), dek->data, nonce, NULL) == 1 &&
              EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1 &&
              (len == 0 || EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)len) == 1) &&
              EVP_EncryptFinal_ex(ctx, ct + (len == 0 ? 0 : outl), &finl) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CV_GCM_TAG_BYTES, ct + len) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* The v1 plaintext layout of a card, as envelope.c documents it. */
static size_t pack(const struct cv_card_plain *c, unsigned char *out)
{
    size_t pl = strnlen(c->pan, sizeof(c->pan)), nl = c->has_name ? strnlen(c->name, 129) : 0;
    size_t n = 0;
    out[n++] = (unsigned char)pl;
    memcpy(out + n, c->pan, pl);
    n += pl;
    out[n++] = (unsigned char)c->exp_month;
    out[n++] = (unsigned char)((unsigned)c->exp_year >> 8);
    out[n++] = (unsigned char)((unsigned)c->exp_year & 0xff);
    out[n++] = c->has_name ? (unsigned char)nl : 0xff;
    memcpy(out + n, c->name, nl);
    return n + nl;
}

static void check_card_shape(const struct cv_card_plain *c)
{
    if (strnlen(c->pan, sizeof(c->pan)) == sizeof(c->pan) ||
        strnlen(c->name, sizeof(c->name)) == sizeof(c->name))
        fail("opened card not NUL-terminated");
    if ((c->has_name != 0 && c->has_name != 1) || c->exp_month < 0 || c->exp_month > 255 ||
        c->exp_year < 0 || c->exp_year > 65535)
        fail("opened card out of the layout's range");
}

/* Reads a length byte then that many bytes (bounded) as a C string. */
static void take_text(const uint8_t **p, size_t *n, char *out)
{
    size_t l = 0;
    if (*n > 0) {
        l = **p % (TEXT_MAX + 1);
        (*p)++;
        (*n)--;
    }
    if (l > *n)
        l = *n;
    memcpy(out, *p, l);
    out[l] = '\0';
    *p += l;
    *n -= l;
}

static void mode_raw_row(const uint8_t *p, size_t n)
{
    if (n < 10)
        return;
    struct cv_aad aad;
    char token[TEXT_MAX + 1], merchant[TEXT_MAX + 1];
    aad.format_version = p[0];
    uint64_t id = 0;
    for (int i = 1; i <= 8; i++)
        id = id << 8 | p[i];
    aad.dek_id = (int64_t)id;
    size_t nonce_len = p[9] % 32;
    p += 10;
    n -= 10;
    if (nonce_len > n)
        nonce_len = n;
    unsigned char *nonce = malloc(nonce_len == 0 ? 1 : nonce_len);
    memcpy(nonce, p, nonce_len);
    p += nonce_len;
    n -= nonce_len;
    take_text(&p, &n, token);
    take_text(&p, &n, merchant);
    aad.token = token;
    aad.merchant_id = merchant;
    unsigned char *ct = malloc(n == 0 ? 1 : n);
    memcpy(ct, p, n);

    struct cv_card_plain card;
    cv_status st = cv_envelope_open(dek, &aad, nonce, nonce_len, ct, n, &card);
    if (st == CV_OK) {
        check_card_shape(&card);
        unsigned char plain[256], aadb[256], again[256 + CV_GCM_TAG_BYTES];
        size_t pl = pack(&card, plain), al = aad_bytes(&aad, aadb, sizeof(aadb));
        if (nonce_len != CV_GCM_NONCE_BYTES || al == 0 || pl + CV_GCM_TAG_BYTES != n ||
            !gcm_seal(nonce, aadb, al, plain, pl, again) || memcmp(again, ct, n) != 0)
            fail("opened a row that is not an honest seal of what it returned");
    } else if (st != CV_ERR_INTEGRITY) {
        fail("open failed with a status other than integrity_error");
    } else {
        const unsigned char *b = (const unsigned char *)&card;
        for (size_t i = 0; i < sizeof(card); i++)
            if (b[i] != 0)
                fail("failed open left card bytes behind");
    }
    cv_wipe(&card, sizeof(card));
    free(ct);
    free(nonce);
}

static void mode_authentic_plaintext(const uint8_t *p, size_t n)
{
    static const unsigned char nonce[CV_GCM_NONCE_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    struct cv_aad aad = {CV_SEAL_FORMAT_V1, ROW_TOKEN, ROW_MERCHANT, ROW_DEK_ID};
    unsigned char aadb[128];
    if (n > 256)
        n = 256;
    size_t al = aad_bytes(&aad, aadb, sizeof(aadb));
    unsigned char *ct = malloc(n + CV_GCM_TAG_BYTES);
    if (!gcm_seal(nonce, aadb, al, p, n, ct))
        fail("EVP seal failed");
    struct cv_card_plain card;
    cv_status st =
        cv_envelope_open(dek, &aad, nonce, sizeof(nonce), ct, n + CV_GCM_TAG_BYTES, &card);
    if (st == CV_OK) {
        check_card_shape(&card);
        unsigned char plain[256];
        /* What was accepted is exactly what was sealed, unless the PAN bytes
         * hold a NUL (only a forged seal could write one; the layout check does
         * not look at digits, the tag vouches for them). */
        if (strnlen(card.pan, sizeof(card.pan)) == p[0] &&
            (!card.has_name || strnlen(card.name, sizeof(card.name)) == p[p[0] + 4]) &&
            (pack(&card, plain) != n || memcmp(plain, p, n) != 0))
            fail("accepted layout does not round-trip");
    } else if (st != CV_ERR_INTEGRITY) {
        fail("open failed with a status other than integrity_error");
    }
    cv_wipe(&card, sizeof(card));
    free(ct);
}

static void mode_tamper_mask(const uint8_t *mask, size_t n)
{
    char token[] = ROW_TOKEN, merchant[] = ROW_MERCHANT;
    unsigned char nonce[CV_GCM_NONCE_BYTES];
    unsigned char *ct = malloc(row.ct_len);
    uint8_t idb[8], version = CV_SEAL_FORMAT_V1;
    memcpy(nonce, row.nonce, sizeof(nonce));
    memcpy(ct, row.ct, row.ct_len);
    for (int i = 0; i < 8; i++)
        idb[i] = (uint8_t)((uint64_t)ROW_DEK_ID >> (8 * (7 - i)));

    /* One flat view of every field the mask may touch. */
    struct {
        unsigned char *p;
        size_t len;
    } fields[] = {{nonce, sizeof(nonce)},
                  {ct, row.ct_len},
                  {(unsigned char *)token, sizeof(token) - 1},
                  {(unsigned char *)merchant, sizeof(merchant) - 1},
                  {idb, sizeof(idb)},
                  {&version, 1}};
    bool changed = false;
    size_t k = 0;
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
        for (size_t i = 0; i < fields[f].len && k < n; i++, k++) {
            fields[f].p[i] ^= mask[k];
            changed |= mask[k] != 0;
        }
    }
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | idb[i];
    struct cv_aad aad = {version, token, merchant, (int64_t)id};
    struct cv_card_plain card;
    cv_status st = cv_envelope_open(dek, &aad, nonce, sizeof(nonce), ct, row.ct_len, &card);
    if (changed && st == CV_OK)
        fail("a tampered row opened");
    if (!changed && st != CV_OK)
        fail("the untouched row did not open");
    cv_wipe(&card, sizeof(card));
    free(ct);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    dek = cv_secbuf_new(CV_DEK_BYTES);
    if (cv_secbuf_set(dek, cv_fuzz_aead_key, CV_DEK_BYTES) != CV_OK)
        fail("key setup");
    struct cv_aad aad = {CV_SEAL_FORMAT_V1, ROW_TOKEN, ROW_MERCHANT, ROW_DEK_ID};
    struct cv_card_plain card;
    memset(&card, 0, sizeof(card));
    snprintf(card.pan, sizeof(card.pan), "%s", "4242424242424242");
    card.exp_month = 12;
    card.exp_year = 2030;
    snprintf(card.name, sizeof(card.name), "%s", "HANAKO YAMADA");
    card.has_name = 1;
    if (cv_envelope_seal(dek, &aad, &card, row.nonce, &row.ct, &row.ct_len) != CV_OK)
        fail("seal at start-up");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        mode_raw_row(data + 1, size - 1);
        break;
    case 1:
        mode_authentic_plaintext(data + 1, size - 1);
        break;
    default:
        mode_tamper_mask(data + 1, size - 1);
        break;
    }
    return 0;
}
