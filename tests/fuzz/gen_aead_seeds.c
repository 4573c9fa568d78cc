/* gen_aead_seeds.c: writes the seed corpus of fuzz_aead_open into the
 * directory given as argv[1]: genuine rows sealed by cv_envelope_seal under
 * the fuzzing key (mode 0), plus near misses, valid and broken plaintext
 * layouts (mode 1) and tamper masks (mode 2). Run by `make fuzz-seeds`; the
 * output is committed so the fuzzer starts from rows that really open. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"

#include "fuzz_aead_key.h"

static const char *dir;

static void put(const char *name, const unsigned char *b, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Mode 0 layout: 0 | version | dek_id be64 | nonce_len | nonce | tlen | token | mlen | merchant |
 * ct */
static size_t raw_row(unsigned char *out, int version, int64_t dek_id, const unsigned char *nonce,
                      size_t nonce_len, const char *token, const char *merchant,
                      const unsigned char *ct, size_t ct_len)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = (unsigned char)version;
    for (int i = 7; i >= 0; i--)
        out[n++] = (unsigned char)((uint64_t)dek_id >> (8 * i));
    out[n++] = (unsigned char)nonce_len;
    memcpy(out + n, nonce, nonce_len);
    n += nonce_len;
    out[n++] = (unsigned char)strlen(token);
    memcpy(out + n, token, strlen(token));
    n += strlen(token);
    out[n++] = (unsigned char)strlen(merchant);
    memcpy(out + n, merchant, strlen(merchant));
    n += strlen(merchant);
    memcpy(out + n, ct, ct_len);
    return n + ct_len;
}

static void sealed_row(const struct cv_secbuf *dek, const char *name, const char *pan,
                       const char *holder, const char *token, const char *merchant, int64_t id)
{
    struct cv_aad aad = {CV_SEAL_FORMAT_V1, token, merchant, id};
    struct cv_card_plain card;
    unsigned char nonce[CV_GCM_NONCE_BYTES], *ct = NULL, out[512];
    size_t ct_len = 0;
    memset(&card, 0, sizeof(card));
    snprintf(card.pan, sizeof(card.pan), "%s", pan);
    card.exp_month = 11;
    card.exp_year = 2031;
    if (holder != NULL) {
        snprintf(card.name, sizeof(card.name), "%s", holder);
        card.has_name = 1;
    }
    if (cv_envelope_seal(dek, &aad, &card, nonce, &ct, &ct_len) != CV_OK)
        exit(1);
    char file[128];
    snprintf(file, sizeof(file), "%s.bin", name);
    put(file, out, raw_row(out, 1, id, nonce, sizeof(nonce), token, merchant, ct, ct_len));
    /* Near misses of the same row: one byte short, a one-bit flip, an 11-byte nonce. */
    snprintf(file, sizeof(file), "%s-truncated.bin", name);
    put(file, out, raw_row(out, 1, id, nonce, sizeof(nonce), token, merchant, ct, ct_len - 1));
    ct[0] ^= 1;
    snprintf(file, sizeof(file), "%s-flipped.bin", name);
    put(file, out, raw_row(out, 1, id, nonce, sizeof(nonce), token, merchant, ct, ct_len));
    ct[0] ^= 1;
    snprintf(file, sizeof(file), "%s-nonce11.bin", name);
    put(file, out, raw_row(out, 1, id, nonce, 11, token, merchant, ct, ct_len));
    free(ct);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_aead_seeds DIR\n");
        return 2;
    }
    dir = argv[1];
    struct cv_secbuf *dek = cv_secbuf_new(CV_DEK_BYTES);
    if (cv_secbuf_set(dek, cv_fuzz_aead_key, CV_DEK_BYTES) != CV_OK)
        return 1;
    sealed_row(dek, "row-name", "4242424242424242", "HANAKO YAMADA", "tok_4eC39HqLyjWDarjtT1zdp7",
               "mer_0000000000000000000a", 7);
    sealed_row(dek, "row-noname", "378282246310005", NULL, "tok_1AbCdEfGhIjKlMnOpQrStU",
               "mer_0000000000000000000b", 1);

    /* Mode 1: plaintext layouts, one valid and several broken. */
    static const unsigned char plain_ok[] = {1,   16,   '4',  '2', '4', '2', '4', '2', '4',
                                             '2', '4',  '2',  '4', '2', '4', '2', '4', '2',
                                             12,  0x07, 0xEE, 3,   'A', 'B', 'C'};
    put("plain-valid.bin", plain_ok, sizeof(plain_ok));
    static const unsigned char plain_noname[] = {1,   12,  '4', '2', '4', '2', '4',  '2',  '4',
                                                 '2', '4', '2', '4', '2', 1,   0x07, 0xEE, 0xff};
    put("plain-noname.bin", plain_noname, sizeof(plain_noname));
    static const unsigned char plain_badname[] = {
        1, 12, '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', '4', '2', 1, 0x07, 0xEE, 200, 'A'};
    put("plain-bad-namelen.bin", plain_badname, sizeof(plain_badname));
    static const unsigned char plain_badpan[] = {1, 25, '4', '2'};
    put("plain-bad-panlen.bin", plain_badpan, sizeof(plain_badpan));

    /* Mode 2: masks. */
    unsigned char mask[64];
    memset(mask, 0, sizeof(mask));
    mask[0] = 2;
    put("mask-zero.bin", mask, sizeof(mask));
    mask[13] = 0x80; /* first ciphertext byte */
    put("mask-ct-bit.bin", mask, sizeof(mask));
    mask[13] = 0;
    mask[1] = 1; /* first nonce byte */
    put("mask-nonce-bit.bin", mask, sizeof(mask));
    cv_secbuf_free(dek);
    return 0;
}
