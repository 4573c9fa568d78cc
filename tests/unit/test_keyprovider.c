/* test_keyprovider.c: KEK custody. The in-memory primitives (AES-256 key
 * wrap with padding, key check value) against an independent RFC 5649
 * implementation written here, which is itself checked against the RFC's
 * section 6 vectors (tests/vectors/kwp-rfc5649.txt; they use a 192-bit KEK,
 * so they go through OpenSSL's AES-192-WRAP-PAD and the reference, and the
 * reference then holds the service's 256-bit wrapping to the same
 * algorithm). Then the file provider: which files it accepts (hex, base64,
 * 0600/0400) and which it refuses (readable or writable by group or others,
 * wrong length, garbage, missing, a directory; symlinks are followed to a
 * target that must itself pass), and that its
 * one-line reasons never quote the key. */
#include "cardvault/keyprovider.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cardvault/secbuf.h"
#include "check.h"
#include "test_helpers.h"
#include "unhex.h"

#define KWP_VECTORS_PATH "tests/vectors/kwp-rfc5649.txt"
#define KWP_VECTORS_MIN  2

/* ---- helpers ----------------------------------------------------------------- */

static struct cv_secbuf *buf_of(const unsigned char *bytes, size_t n)
{
    struct cv_secbuf *b = cv_secbuf_new(n);
    CHECK_EQ_INT(cv_secbuf_set(b, bytes, n), CV_OK);
    return b;
}

static struct cv_secbuf *kek_of(unsigned char seed)
{
    unsigned char k[32];
    for (size_t i = 0; i < sizeof(k); i++)
        k[i] = (unsigned char)(seed + 7 * i);
    struct cv_secbuf *b = buf_of(k, sizeof(k));
    cv_wipe(k, sizeof(k));
    return b;
}

static void tohex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* One AES block encryption under a 16-, 24- or 32-byte key. */
static bool aes_block(const unsigned char *key, size_t key_len, const unsigned char in[16],
                      unsigned char out[16])
{
    const EVP_CIPHER *c = key_len == 32   ? EVP_aes_256_ecb()
                          : key_len == 24 ? EVP_aes_192_ecb()
                                          : EVP_aes_128_ecb();
    int outl = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    bool ok = ctx != NULL && EVP_EncryptInit_ex2(ctx, c, key, NULL, NULL) == 1 &&
              EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
              EVP_EncryptUpdate(ctx, out, &outl, in, 16) == 1 && outl == 16;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* RFC 5649 section 4.1, written from the RFC: alternative IV A65959A6 ||
 * 32-bit length, zero padding to whole semiblocks, then one AES block for a
 * single semiblock or the six RFC 3394 rounds otherwise. out gets
 * 8 * (n + 1) bytes; returns that length. */
static size_t ref_kwp_wrap(const unsigned char *kek, size_t kek_len, const unsigned char *p,
                           size_t p_len, unsigned char *out)
{
    size_t n = (p_len + 7) / 8;
    unsigned char a[8] = {0xA6, 0x59, 0x59, 0xA6}, b[16], in[16];
    a[4] = (unsigned char)(p_len >> 24);
    a[5] = (unsigned char)(p_len >> 16);
    a[6] = (unsigned char)(p_len >> 8);
    a[7] = (unsigned char)p_len;
    memset(out + 8, 0, 8 * n);
    memcpy(out + 8, p, p_len);
    if (n == 1) {
        memcpy(in, a, 8);
        memcpy(in + 8, out + 8, 8);
        CHECK(aes_block(kek, kek_len, in, out));
        return 16;
    }
    for (uint64_t j = 0; j < 6; j++) {
        for (size_t i = 1; i <= n; i++) {
            memcpy(in, a, 8);
            memcpy(in + 8, out + 8 * i, 8);
            CHECK(aes_block(kek, kek_len, in, b));
            uint64_t t = (uint64_t)n * j + i;
            memcpy(a, b, 8);
            for (int k = 0; k < 8; k++)
                a[7 - k] ^= (unsigned char)(t >> (8 * k));
            memcpy(out + 8 * i, b + 8, 8);
        }
    }
    memcpy(out, a, 8);
    return 8 * (n + 1);
}

/* OpenSSL's wrap-with-padding cipher by name, one direction. */
static long evp_kwp(const char *name, int enc, const unsigned char *kek, const unsigned char *in,
                    size_t in_len, unsigned char *out)
{
    int outl = 0, finl = 0;
    long n = -1;
    EVP_CIPHER *c = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (c != NULL && ctx != NULL && EVP_CipherInit_ex2(ctx, c, kek, NULL, enc, NULL) == 1 &&
        EVP_CipherUpdate(ctx, out, &outl, in, (int)in_len) == 1 &&
        EVP_CipherFinal_ex(ctx, out + outl, &finl) == 1)
        n = outl + finl;
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(c);
    return n;
}

/* ---- key wrap ------------------------------------------------------------------ */

static void wrap_unwrap_round_trip(void)
{
    unsigned char raw[32];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(0xC0 ^ i);
    struct cv_secbuf *kek = kek_of(1), *dek = buf_of(raw, sizeof(raw)), *back = NULL;
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;

    CHECK_EQ_INT(cv_kek_wrap_raw(kek, dek, &wrapped, &wrapped_len), CV_OK);
    CHECK_EQ_INT(wrapped_len, 40); /* 32 bytes + the 8-byte integrity block */
    CHECK(wrapped != NULL && memcmp(wrapped, raw, 8) != 0);
    CHECK_EQ_INT(cv_kek_unwrap_raw(kek, wrapped, wrapped_len, &back), CV_OK);
    CHECK(back != NULL && back->len == 32 && memcmp(back->data, raw, 32) == 0);
    cv_secbuf_free(back);
    free(wrapped);
    cv_secbuf_free(dek);
    cv_secbuf_free(kek);
}

static void wrap_matches_reference_rfc5649_with_a_256_bit_kek_at_every_length(void)
{
    /* 1..72 bytes: the single-block case, every amount of padding, and the
     * fingerprint key and DEK sizes the service actually wraps. */
    struct cv_secbuf *kek = kek_of(2);
    for (size_t len = 1; len <= 72; len++) {
        unsigned char raw[72], want[88];
        for (size_t i = 0; i < len; i++)
            raw[i] = (unsigned char)(len * 31 + i);
        struct cv_secbuf *key = buf_of(raw, len), *back = NULL;
        unsigned char *got = NULL;
        size_t got_len = 0;
        size_t want_len = ref_kwp_wrap(kek->data, 32, raw, len, want);
        CHECK_EQ_INT(cv_kek_wrap_raw(kek, key, &got, &got_len), CV_OK);
        CHECK_EQ_INT(got_len, want_len);
        CHECK(got != NULL && memcmp(got, want, want_len) == 0);
        CHECK_EQ_INT(cv_kek_unwrap_raw(kek, got, got_len, &back), CV_OK);
        CHECK(back != NULL && back->len == len && memcmp(back->data, raw, len) == 0);
        cv_secbuf_free(back);
        free(got);
        cv_secbuf_free(key);
    }
    cv_secbuf_free(kek);
}

static void rfc5649_vectors_match_openssl_and_the_reference(void)
{
    char line[256], name[8], value[200];
    unsigned char k[32], p[64], c[80], out[96];
    long k_len = -1, p_len = -1;
    int count = 0;
    FILE *f = fopen(KWP_VECTORS_PATH, "r");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || sscanf(line, "%7s = %199s", name, value) != 2)
            continue;
        if (strcmp(name, "K") == 0) {
            k_len = unhex(value, k, sizeof(k));
        } else if (strcmp(name, "P") == 0) {
            p_len = unhex(value, p, sizeof(p));
        } else if (strcmp(name, "C") == 0) {
            long c_len = unhex(value, c, sizeof(c));
            CHECK_EQ_INT(k_len, 24);
            CHECK(p_len > 0 && c_len == 8 * ((p_len + 7) / 8 + 1));
            if (k_len != 24 || p_len <= 0 || c_len <= 0)
                break;
            /* The reference implementation agrees with the RFC... */
            CHECK_EQ_INT(ref_kwp_wrap(k, 24, p, (size_t)p_len, out), c_len);
            CHECK(memcmp(out, c, (size_t)c_len) == 0);
            /* ...and so does OpenSSL's AES-192-WRAP-PAD, both ways. */
            CHECK_EQ_INT(evp_kwp("AES-192-WRAP-PAD", 1, k, p, (size_t)p_len, out), c_len);
            CHECK(memcmp(out, c, (size_t)c_len) == 0);
            CHECK_EQ_INT(evp_kwp("AES-192-WRAP-PAD", 0, k, c, (size_t)c_len, out), p_len);
            CHECK(memcmp(out, p, (size_t)p_len) == 0);
            /* Hostile twin: the vector with its last byte changed does not unwrap. */
            c[c_len - 1] ^= 1;
            CHECK_EQ_INT(evp_kwp("AES-192-WRAP-PAD", 0, k, c, (size_t)c_len, out), -1);
            count++;
        }
    }
    fclose(f);
    CHECK(count >= KWP_VECTORS_MIN);
}

static void unwrap_with_wrong_kek_fails(void)
{
    struct cv_secbuf *kek = kek_of(3), *other = kek_of(3), *dek = kek_of(9), *back = NULL;
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    other->data[0] ^= 1;
    CHECK_EQ_INT(cv_kek_wrap_raw(kek, dek, &wrapped, &wrapped_len), CV_OK);
    CHECK_EQ_INT(cv_kek_unwrap_raw(other, wrapped, wrapped_len, &back), CV_ERR_INTEGRITY);
    CHECK(back == NULL);
    /* A KEK of the wrong size is refused, not stretched or truncated. */
    struct cv_secbuf *short_kek = kek_of(3);
    short_kek->len = 24;
    CHECK_EQ_INT(cv_kek_unwrap_raw(short_kek, wrapped, wrapped_len, &back), CV_ERR_INTEGRITY);
    CHECK(back == NULL);
    unsigned char *w2 = NULL;
    size_t w2_len = 0;
    CHECK(cv_kek_wrap_raw(short_kek, dek, &w2, &w2_len) != CV_OK);
    free(w2);
    cv_secbuf_free(short_kek);
    free(wrapped);
    cv_secbuf_free(dek);
    cv_secbuf_free(other);
    cv_secbuf_free(kek);
}

static void unwrap_fails_on_tampered_truncated_or_extended_bytes(void)
{
    struct cv_secbuf *kek = kek_of(4), *dek = kek_of(10), *back = NULL;
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    CHECK_EQ_INT(cv_kek_wrap_raw(kek, dek, &wrapped, &wrapped_len), CV_OK);
    for (size_t i = 0; i < wrapped_len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            wrapped[i] ^= (unsigned char)(1u << bit);
            CHECK_EQ_INT(cv_kek_unwrap_raw(kek, wrapped, wrapped_len, &back), CV_ERR_INTEGRITY);
            CHECK(back == NULL);
            wrapped[i] ^= (unsigned char)(1u << bit);
        }
    }
    for (size_t n = 0; n < wrapped_len; n++) {
        unsigned char *cut = malloc(n == 0 ? 1 : n); /* exact size: over-reads are ASan reports */
        memcpy(cut, wrapped, n);
        CHECK_EQ_INT(cv_kek_unwrap_raw(kek, cut, n, &back), CV_ERR_INTEGRITY);
        CHECK(back == NULL);
        free(cut);
    }
    unsigned char longer[48];
    memcpy(longer, wrapped, wrapped_len);
    memset(longer + wrapped_len, 0, sizeof(longer) - wrapped_len);
    CHECK_EQ_INT(cv_kek_unwrap_raw(kek, longer, sizeof(longer), &back), CV_ERR_INTEGRITY);
    CHECK(back == NULL);
    /* Oversized input is refused before it reaches the cipher. */
    unsigned char *huge = calloc(1, 2048);
    CHECK_EQ_INT(cv_kek_unwrap_raw(kek, huge, 2048, &back), CV_ERR_INTEGRITY);
    free(huge);
    CHECK_EQ_INT(cv_kek_unwrap_raw(kek, wrapped, wrapped_len, &back), CV_OK);
    cv_secbuf_free(back);
    free(wrapped);
    cv_secbuf_free(dek);
    cv_secbuf_free(kek);
}

static void wrap_refuses_oversized_keys_and_never_yields_an_unwrappable_empty_key(void)
{
    struct cv_secbuf *kek = kek_of(5);
    struct cv_secbuf *empty = cv_secbuf_new(8), *huge = cv_secbuf_new(1025), *back = NULL;
    unsigned char *out = NULL;
    size_t out_len = 0;
    empty->len = 0;
    huge->len = 1025;
    /* RFC 5649 wraps 1 to 2^32 octets. OpenSSL answers an empty input with an
     * empty output rather than an error; whatever comes back must not unwrap
     * to a key (the service only ever wraps 32-byte keys). */
    cv_status st = cv_kek_wrap_raw(kek, empty, &out, &out_len);
    if (st == CV_OK) {
        CHECK_EQ_INT(cv_kek_unwrap_raw(kek, out, out_len, &back), CV_ERR_INTEGRITY);
        CHECK(back == NULL);
    }
    free(out);
    out = NULL;
    CHECK(cv_kek_wrap_raw(kek, huge, &out, &out_len) != CV_OK);
    free(out);
    cv_secbuf_free(huge);
    cv_secbuf_free(empty);
    cv_secbuf_free(kek);
}

static void provider_vtable_wraps_unwraps_and_names_itself(void)
{
    struct cv_keyprovider *kp = cv_keyprovider_memory_take(kek_of(6));
    struct cv_secbuf *dek = kek_of(11), *back = NULL;
    unsigned char *w = NULL;
    size_t w_len = 0;
    CHECK(strcmp(cv_keyprovider_name(kp), "file") == 0);
    CHECK_EQ_INT(cv_keyprovider_wrap(kp, dek, &w, &w_len), CV_OK);
    CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, w_len, &back), CV_OK);
    CHECK(back != NULL && back->len == 32 && memcmp(back->data, dek->data, 32) == 0);
    cv_secbuf_free(back);
    back = NULL;
    w[0] ^= 0x40;
    CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, w_len, &back), CV_ERR_INTEGRITY);
    CHECK(back == NULL);
    free(w);
    cv_secbuf_free(dek);
    cv_keyprovider_free(kp);
    cv_keyprovider_free(NULL);
}

/* ---- key check value ------------------------------------------------------------ */

static void kcv_is_stable_and_is_aes_of_the_zero_block(void)
{
    /* The AES oracle first: FIPS-197 appendix C.3. */
    unsigned char fk[32], fin[16], fout[16], fwant[16];
    CHECK_EQ_INT(
        unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", fk, sizeof(fk)),
        32);
    CHECK_EQ_INT(unhex("00112233445566778899aabbccddeeff", fin, sizeof(fin)), 16);
    CHECK_EQ_INT(unhex("8ea2b7ca516745bfeafc49904b496089", fwant, sizeof(fwant)), 16);
    CHECK(aes_block(fk, 32, fin, fout) && memcmp(fout, fwant, 16) == 0);

    struct cv_secbuf *kek = buf_of(fk, sizeof(fk));
    unsigned char a[CV_KCV_BYTES], b[CV_KCV_BYTES], zero[16] = {0}, want[16];
    CHECK_EQ_INT(cv_kek_check_value_raw(kek, a), CV_OK);
    CHECK_EQ_INT(cv_kek_check_value_raw(kek, b), CV_OK);
    CHECK(memcmp(a, b, CV_KCV_BYTES) == 0);
    CHECK(aes_block(fk, 32, zero, want));
    CHECK(memcmp(a, want, CV_KCV_BYTES) == 0);

    struct cv_keyprovider *kp = cv_keyprovider_memory_take(buf_of(fk, sizeof(fk)));
    CHECK_EQ_INT(cv_keyprovider_check_value(kp, b), CV_OK);
    CHECK(memcmp(a, b, CV_KCV_BYTES) == 0);
    cv_keyprovider_free(kp);
    cv_secbuf_free(kek);
}

static void kcv_differs_between_keks(void)
{
    unsigned char seen[16][CV_KCV_BYTES];
    for (unsigned i = 0; i < 16; i++) {
        struct cv_secbuf *kek = kek_of((unsigned char)(0x80 + i));
        CHECK_EQ_INT(cv_kek_check_value_raw(kek, seen[i]), CV_OK);
        for (unsigned j = 0; j < i; j++)
            CHECK(memcmp(seen[i], seen[j], CV_KCV_BYTES) != 0);
        cv_secbuf_free(kek);
    }
    /* One flipped bit of the KEK changes the check value. */
    struct cv_secbuf *x = kek_of(0x80), *y = kek_of(0x80);
    unsigned char kx[CV_KCV_BYTES], ky[CV_KCV_BYTES];
    y->data[31] ^= 1;
    CHECK_EQ_INT(cv_kek_check_value_raw(x, kx), CV_OK);
    CHECK_EQ_INT(cv_kek_check_value_raw(y, ky), CV_OK);
    CHECK(memcmp(kx, ky, CV_KCV_BYTES) != 0);
    /* And a KEK of the wrong size has none. */
    y->len = 16;
    CHECK(cv_kek_check_value_raw(y, ky) != CV_OK);
    cv_secbuf_free(x);
    cv_secbuf_free(y);
}

/* ---- the file provider ------------------------------------------------------------ */

/* Known KEK bytes, their hex and base64 forms (base64 computed at run time). */
static unsigned char kek_bytes[32];
static char kek_hex[65];
static char kek_b64[45];
static char tmpdir[64];

static void file_fixture_init(void)
{
    for (size_t i = 0; i < sizeof(kek_bytes); i++)
        kek_bytes[i] = (unsigned char)(0x3D * (i + 1));
    tohex(kek_bytes, sizeof(kek_bytes), kek_hex);
    CHECK_EQ_INT(EVP_EncodeBlock((unsigned char *)kek_b64, kek_bytes, sizeof(kek_bytes)), 44);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cv-test-keyprovider-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
}

/* Writes content to tmpdir/name with exactly this mode (umask bypassed). */
static void write_file(const char *name, const char *content, size_t len, mode_t mode, char *path,
                       size_t path_cap)
{
    test_write_file(tmpdir, name, content, len, mode, path, path_cap);
}

/* True when why quotes any 8 consecutive characters of the key's text forms. */
static bool leaks_key(const char *why)
{
    const char *forms[] = {kek_hex, kek_b64};
    for (size_t f = 0; f < 2; f++) {
        size_t n = strlen(forms[f]);
        for (size_t i = 0; i + 8 <= n; i++) {
            char window[9];
            memcpy(window, forms[f] + i, 8);
            window[8] = '\0';
            if (strstr(why, window) != NULL)
                return true;
        }
    }
    size_t wl = strlen(why);
    for (size_t i = 0; i + 4 <= sizeof(kek_bytes); i++) {
        for (size_t j = 0; j + 4 <= wl; j++) {
            if (memcmp(why + j, kek_bytes + i, 4) == 0)
                return true;
        }
    }
    return false;
}

/* Opens path and expects the known KEK (compared through its check value). */
static void expect_accepted(const char *path)
{
    struct cv_keyprovider *kp = NULL;
    char why[256] = "";
    cv_status st = cv_keyprovider_file_open(path, &kp, why, sizeof(why));
    if (st != CV_OK)
        fprintf(stderr, "  refused %s: %s\n", path, why);
    CHECK_EQ_INT(st, CV_OK);
    if (kp == NULL)
        return;
    struct cv_secbuf *want = buf_of(kek_bytes, sizeof(kek_bytes));
    unsigned char a[CV_KCV_BYTES], b[CV_KCV_BYTES];
    CHECK_EQ_INT(cv_keyprovider_check_value(kp, a), CV_OK);
    CHECK_EQ_INT(cv_kek_check_value_raw(want, b), CV_OK);
    CHECK(memcmp(a, b, CV_KCV_BYTES) == 0);
    cv_secbuf_free(want);
    cv_keyprovider_free(kp);
}

/* Opens path, expects CV_ERR_CONFIG with a reason containing `mentions`. */
static void expect_refused(const char *path, const char *mentions)
{
    struct cv_keyprovider *kp = NULL;
    char why[256] = "";
    CHECK_EQ_INT(cv_keyprovider_file_open(path, &kp, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(kp == NULL);
    CHECK(why[0] != '\0');
    CHECK(strchr(why, '\n') == NULL); /* one line */
    if (strstr(why, mentions) == NULL) {
        fprintf(stderr, "  reason \"%s\" does not mention \"%s\"\n", why, mentions);
        CHECK(0);
    }
    CHECK(!leaks_key(why));
    cv_keyprovider_free(kp);
}

static void file_accepts_hex_and_base64_at_mode_0600(void)
{
    char path[160], text[200];
    write_file("hex", kek_hex, 64, 0600, path, sizeof(path));
    expect_accepted(path);
    /* What `openssl rand -hex 32 > kek` writes: a trailing newline. */
    snprintf(text, sizeof(text), "%s\n", kek_hex);
    write_file("hex-nl", text, strlen(text), 0600, path, sizeof(path));
    expect_accepted(path);
    snprintf(text, sizeof(text), " \t\r\n%s \r\n\n", kek_hex);
    write_file("hex-ws", text, strlen(text), 0600, path, sizeof(path));
    expect_accepted(path);
    for (size_t i = 0; i < 64; i++)
        text[i] = (char)(kek_hex[i] >= 'a' ? kek_hex[i] - 32 : kek_hex[i]);
    write_file("hex-upper", text, 64, 0600, path, sizeof(path));
    expect_accepted(path);
    write_file("b64", kek_b64, 44, 0600, path, sizeof(path));
    expect_accepted(path);
    snprintf(text, sizeof(text), "%s\n", kek_b64);
    write_file("b64-nl", text, strlen(text), 0600, path, sizeof(path));
    expect_accepted(path);
    /* Read-only for the owner is stricter still, and fine. */
    write_file("hex-0400", kek_hex, 64, 0400, path, sizeof(path));
    expect_accepted(path);
}

static void file_refuses_group_or_other_access(void)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0606, 0620, 0602, 0610, 0601, 0777};
    char path[160], name[32];
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        snprintf(name, sizeof(name), "mode-%04o", (unsigned)modes[i]);
        write_file(name, kek_hex, 64, modes[i], path, sizeof(path));
        expect_refused(path, "group or others");
    }
}

static void file_refuses_wrong_length(void)
{
    char path[160], text[200];
    write_file("hex-62", kek_hex, 62, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    snprintf(text, sizeof(text), "%sab", kek_hex);
    write_file("hex-66", text, 66, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    write_file("hex-63", kek_hex, 63, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    /* Two keys on two lines is not one key. */
    snprintf(text, sizeof(text), "%s\n%s\n", kek_hex, kek_hex);
    write_file("hex-twice", text, strlen(text), 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    write_file("b64-43", kek_b64, 43, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    /* 44 base64 characters ending "==" hold 31 bytes. */
    unsigned char b31[31];
    char t31[45];
    memcpy(b31, kek_bytes, sizeof(b31));
    CHECK_EQ_INT(EVP_EncodeBlock((unsigned char *)t31, b31, sizeof(b31)), 44);
    write_file("b64-31", t31, 44, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    write_file("empty", "", 0, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    write_file("blank", "\n\n  \n", 5, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
}

static void file_refuses_garbage(void)
{
    char path[160], text[200];
    memcpy(text, kek_hex, 64);
    text[17] = 'g';
    write_file("hex-g", text, 64, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    memcpy(text, kek_hex, 64);
    text[40] = ' ';
    write_file("hex-space", text, 64, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    memcpy(text, kek_hex, 64);
    text[63] = '\0'; /* an embedded NUL, not a terminator */
    write_file("hex-nul", text, 64, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    memcpy(text, kek_b64, 44);
    text[10] = '*';
    write_file("b64-star", text, 44, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    write_file("binary", (const char *)kek_bytes, 32, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
    memset(text, 'A', 44);
    text[42] = '=';
    text[43] = '=';
    write_file("b64-pad2", text, 44, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
}

static void file_refuses_content_past_the_read_window(void)
{
    /* A key followed by a long run of blanks and then anything else is not
     * "exactly 32 bytes", however far away the extra text sits. */
    char path[160], text[600];
    memcpy(text, kek_hex, 64);
    memset(text + 64, ' ', 250);
    memcpy(text + 314, "garbage", 7);
    write_file("hex-far-garbage", text, 321, 0600, path, sizeof(path));
    expect_refused(path, "32 bytes");
}

static void file_refuses_missing_file_and_directory(void)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/no-such-file", tmpdir);
    expect_refused(path, "no-such-file");
    expect_refused(tmpdir, "not a regular file");
}

static void file_follows_symlinks_but_checks_the_target(void)
{
    /* Symlinks are followed on purpose (Kubernetes mounts secrets through
     * one); what counts is the mode of the file the link points to. */
    char target[160], loose[160], link_path[160];
    write_file("target", kek_hex, 64, 0600, target, sizeof(target));
    snprintf(link_path, sizeof(link_path), "%s/link", tmpdir);
    unlink(link_path);
    CHECK(symlink(target, link_path) == 0);
    expect_accepted(link_path);

    write_file("target-0644", kek_hex, 64, 0644, loose, sizeof(loose));
    snprintf(link_path, sizeof(link_path), "%s/link-0644", tmpdir);
    unlink(link_path);
    CHECK(symlink(loose, link_path) == 0);
    expect_refused(link_path, "group or others");

    snprintf(link_path, sizeof(link_path), "%s/link-dangling", tmpdir);
    unlink(link_path);
    CHECK(symlink("/nonexistent/cardvault-kek", link_path) == 0);
    expect_refused(link_path, "cannot open");
}

static void file_reason_fits_a_small_buffer(void)
{
    char path[160], why[16];
    struct cv_keyprovider *kp = NULL;
    write_file("small-why", kek_hex, 64, 0644, path, sizeof(path));
    memset(why, 'x', sizeof(why));
    CHECK_EQ_INT(cv_keyprovider_file_open(path, &kp, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(memchr(why, '\0', sizeof(why)) != NULL);
}

static void file_fixture_cleanup(void)
{
    static const char *const names[] = {
        "hex",         "hex-nl",    "hex-ws",       "hex-upper", "b64",
        "b64-nl",      "hex-0400",  "mode-0644",    "mode-0640", "mode-0604",
        "mode-0660",   "mode-0606", "mode-0620",    "mode-0602", "mode-0610",
        "mode-0601",   "mode-0777", "hex-62",       "hex-66",    "hex-63",
        "hex-twice",   "b64-43",    "b64-31",       "empty",     "blank",
        "hex-g",       "hex-space", "hex-nul",      "b64-star",  "binary",
        "b64-pad2",    "target",    "link",         "small-why", "hex-far-garbage",
        "target-0644", "link-0644", "link-dangling"};
    char path[160];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    CHECK(rmdir(tmpdir) == 0);
}

int main(void)
{
    RUN(wrap_unwrap_round_trip);
    RUN(wrap_matches_reference_rfc5649_with_a_256_bit_kek_at_every_length);
    RUN(rfc5649_vectors_match_openssl_and_the_reference);
    RUN(unwrap_with_wrong_kek_fails);
    RUN(unwrap_fails_on_tampered_truncated_or_extended_bytes);
    RUN(wrap_refuses_oversized_keys_and_never_yields_an_unwrappable_empty_key);
    RUN(provider_vtable_wraps_unwraps_and_names_itself);
    RUN(kcv_is_stable_and_is_aes_of_the_zero_block);
    RUN(kcv_differs_between_keks);
    RUN(file_fixture_init);
    RUN(file_accepts_hex_and_base64_at_mode_0600);
    RUN(file_refuses_group_or_other_access);
    RUN(file_refuses_wrong_length);
    RUN(file_refuses_garbage);
    RUN(file_refuses_content_past_the_read_window);
    RUN(file_refuses_missing_file_and_directory);
    RUN(file_follows_symlinks_but_checks_the_target);
    RUN(file_reason_fits_a_small_buffer);
    RUN(file_fixture_cleanup);
    return check_summary("keyprovider");
}
