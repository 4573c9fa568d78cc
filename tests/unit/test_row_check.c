/* test_row_check.c: row_check.c, the check that a token row's clear
 * columns (BIN, last 4, brand, fingerprint) belong to the card sealed in it.
 * A row built the way tokenize builds it passes; each column changed alone,
 * all of them, emptied, stretched, cut short or left without its NUL is
 * refused with exactly that column named; a fingerprint made for another
 * card, another merchant or under another key is refused; a decrypted PAN
 * that is not 12-19 digits is refused. The fingerprint oracle is an
 * independent HMAC-SHA-256 (EVP_Q_mac), not envelope.c. */
#include "cardvault/row_check.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "cardvault/token.h"
#include "check.h"
#include "test_helpers.h"

#define MERCHANT_A "mer_000000000000000000aa"
#define MERCHANT_B "mer_000000000000000000bb"
#define TOKEN_A    "tok_4eC39HqLyjWDarjtT1zdp7"
#define ALL_COLUMNS                                                                                \
    (CV_ROW_MISMATCH_BIN | CV_ROW_MISMATCH_LAST4 | CV_ROW_MISMATCH_BRAND |                         \
     CV_ROW_MISMATCH_FINGERPRINT)

static struct cv_secbuf *fp_key_of(unsigned char fill)
{
    struct cv_secbuf *k = cv_secbuf_new(CV_FP_KEY_BYTES);
    memset(k->data, fill, CV_FP_KEY_BYTES);
    k->len = CV_FP_KEY_BYTES;
    return k;
}

/* "fp_" + base62(first 16 bytes of HMAC-SHA-256(key, merchant || 0x00 || pan)). */
static void ref_fingerprint(const struct cv_secbuf *key, const char *merchant, const char *pan,
                            char out[CV_FINGERPRINT_LEN + 1])
{
    unsigned char msg[128], mac[32];
    size_t ml = strlen(merchant), pl = strlen(pan), mac_len = 0;
    memcpy(msg, merchant, ml);
    msg[ml] = 0;
    memcpy(msg + ml + 1, pan, pl);
    CHECK(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->data, key->len, msg, ml + 1 + pl, mac,
                    sizeof(mac), &mac_len) != NULL);
    CHECK_EQ_INT(mac_len, 32);
    cv_token_format_fingerprint(mac, out);
}

/* The row tokenize writes for card (literal display values, as the API
 * documents them), fingerprinted under key for merchant. */
static struct cv_token_row row_of(const struct cv_secbuf *key, const char *merchant,
                                  const char *pan, const char *bin, const char *last4,
                                  const char *brand)
{
    struct cv_token_row r;
    memset(&r, 0, sizeof(r));
    snprintf(r.merchant_id, sizeof(r.merchant_id), "%s", merchant);
    snprintf(r.token, sizeof(r.token), "%s", TOKEN_A);
    r.format_version = CV_SEAL_FORMAT_V1;
    snprintf(r.bin, sizeof(r.bin), "%s", bin);
    snprintf(r.last4, sizeof(r.last4), "%s", last4);
    snprintf(r.brand, sizeof(r.brand), "%s", brand);
    ref_fingerprint(key, merchant, pan, r.fingerprint);
    return r;
}

static unsigned check_of(const struct cv_secbuf *key, const struct cv_token_row *r,
                         const struct cv_card_plain *c, cv_status *st)
{
    unsigned m = 0xffu;
    *st = cv_row_check_columns(key, r, c, &m);
    return m;
}

static void columns_of_the_sealed_card_pass(void)
{
    static const struct {
        const char *pan, *bin, *last4, *brand;
    } cards[] = {
        {"4242424242424242", "424242", "4242", "visa"},
        {"5555555555554444", "555555", "4444", "mastercard"},
        {"2223003122003222", "222300", "3222", "mastercard"},
        {"378282246310005", "378282", "0005", "amex"},
        {"6011111111111117", "601111", "1117", "discover"},
        {"3530111333300000", "353011", "0000", "jcb"},
        {"36227206271667", "362272", "1667", "diners"},
        {"6200000000000005", "620000", "0005", "unionpay"},
        {"4222222222222", "422222", "2222", "visa"},
        {"4000000000000000006", "400000", "0006", "visa"},
        {"9999999999999995", "999999", "9995", "unknown"},
    };
    struct cv_secbuf *key = fp_key_of(0x5a);
    for (size_t i = 0; i < sizeof(cards) / sizeof(cards[0]); i++) {
        struct cv_card_plain c = test_card(cards[i].pan, 12, 2031, "A Holder");
        struct cv_token_row r =
            row_of(key, MERCHANT_A, cards[i].pan, cards[i].bin, cards[i].last4, cards[i].brand);
        cv_status st = CV_ERR_INTERNAL;
        unsigned m = check_of(key, &r, &c, &st);
        if (st != CV_OK || m != 0)
            fprintf(stderr, "  card %zu (%s): %s, mask %u\n", i, cards[i].brand, cv_status_name(st),
                    m);
        CHECK_EQ_INT(st, CV_OK);
        CHECK_EQ_INT(m, 0);
        cv_wipe(&c, sizeof(c));
    }
    cv_secbuf_free(key);
}

/* Each column changed alone names that column and only that one. */
static void each_changed_column_is_refused_and_named(void)
{
    struct cv_secbuf *key = fp_key_of(0x5a);
    struct cv_card_plain c = test_card("4242424242424242", 12, 2031, NULL);
    char other_fp[CV_FINGERPRINT_LEN + 1];
    ref_fingerprint(key, MERCHANT_A, "4000056655665556", other_fp);
    for (int which = 0; which < 4; which++) {
        struct cv_token_row r = row_of(key, MERCHANT_A, c.pan, "424242", "4242", "visa");
        unsigned want = 0;
        switch (which) {
        case 0:
            snprintf(r.bin, sizeof(r.bin), "%s", "400005");
            want = CV_ROW_MISMATCH_BIN;
            break;
        case 1:
            snprintf(r.last4, sizeof(r.last4), "%s", "5556");
            want = CV_ROW_MISMATCH_LAST4;
            break;
        case 2:
            snprintf(r.brand, sizeof(r.brand), "%s", "mastercard");
            want = CV_ROW_MISMATCH_BRAND;
            break;
        default:
            memcpy(r.fingerprint, other_fp, sizeof(r.fingerprint));
            want = CV_ROW_MISMATCH_FINGERPRINT;
            break;
        }
        cv_status st = CV_OK;
        unsigned m = check_of(key, &r, &c, &st);
        CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
        CHECK_EQ_INT(m, want);
    }
    cv_secbuf_free(key);
}

static void every_column_changed_names_all_four(void)
{
    struct cv_secbuf *key = fp_key_of(0x5a);
    struct cv_card_plain c = test_card("4242424242424242", 12, 2031, NULL);
    /* Another real card's whole set of columns: consistent with each other,
     * not with the card in the ciphertext. */
    struct cv_token_row r =
        row_of(key, MERCHANT_A, "5555555555554444", "555555", "4444", "mastercard");
    cv_status st = CV_OK;
    CHECK_EQ_INT(check_of(key, &r, &c, &st), ALL_COLUMNS);
    CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
    cv_secbuf_free(key);
}

static void emptied_columns_are_refused(void)
{
    struct cv_secbuf *key = fp_key_of(0x5a);
    struct cv_card_plain c = test_card("4242424242424242", 12, 2031, NULL);
    struct cv_token_row r;
    memset(&r, 0, sizeof(r));
    snprintf(r.merchant_id, sizeof(r.merchant_id), "%s", MERCHANT_A);
    cv_status st = CV_OK;
    CHECK_EQ_INT(check_of(key, &r, &c, &st), ALL_COLUMNS);
    CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
    cv_secbuf_free(key);
}

/* Prefixes, extensions, case and a missing NUL: equal up to a point is not equal. */
static void near_miss_columns_are_refused(void)
{
    static const char *const brands[] = {"vis", "visa ", "VISA", "visa\t", " visa", "visamaster"};
    struct cv_secbuf *key = fp_key_of(0x5a);
    struct cv_card_plain c = test_card("4242424242424242", 12, 2031, NULL);
    cv_status st = CV_OK;
    for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++) {
        struct cv_token_row r = row_of(key, MERCHANT_A, c.pan, "424242", "4242", brands[i]);
        CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_BRAND);
    }
    struct cv_token_row r = row_of(key, MERCHANT_A, c.pan, "42424", "4242", "visa");
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_BIN);
    r = row_of(key, MERCHANT_A, c.pan, "424242", "242", "visa");
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_LAST4);
    /* No NUL in the buffer at all. */
    r = row_of(key, MERCHANT_A, c.pan, "424242", "4242", "visa");
    memset(r.last4, '4', sizeof(r.last4));
    memset(r.bin, '4', sizeof(r.bin));
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_BIN | CV_ROW_MISMATCH_LAST4);
    /* A fingerprint one character off, and one cut short. */
    r = row_of(key, MERCHANT_A, c.pan, "424242", "4242", "visa");
    r.fingerprint[CV_FINGERPRINT_LEN - 1] =
        r.fingerprint[CV_FINGERPRINT_LEN - 1] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_FINGERPRINT);
    r = row_of(key, MERCHANT_A, c.pan, "424242", "4242", "visa");
    r.fingerprint[CV_FINGERPRINT_LEN - 1] = '\0';
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_FINGERPRINT);
    CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
    cv_secbuf_free(key);
}

/* The fingerprint is keyed and per merchant: one made for the same card at
 * another merchant, or under another key, is not this row's. */
static void fingerprint_of_another_merchant_or_key_is_refused(void)
{
    struct cv_secbuf *key = fp_key_of(0x5a), *other = fp_key_of(0xa5);
    struct cv_card_plain c = test_card("4242424242424242", 12, 2031, NULL);
    cv_status st = CV_OK;
    struct cv_token_row r = row_of(key, MERCHANT_B, c.pan, "424242", "4242", "visa");
    snprintf(r.merchant_id, sizeof(r.merchant_id), "%s", MERCHANT_A);
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_FINGERPRINT);
    r = row_of(other, MERCHANT_A, c.pan, "424242", "4242", "visa");
    CHECK_EQ_INT(check_of(key, &r, &c, &st), CV_ROW_MISMATCH_FINGERPRINT);
    /* The same row passes under the key that made it. */
    CHECK_EQ_INT(check_of(other, &r, &c, &st), 0);
    CHECK_EQ_INT(st, CV_OK);
    cv_secbuf_free(key);
    cv_secbuf_free(other);
}

/* Something that decrypted but is no PAN we could have sealed. */
static void decrypted_non_pan_is_refused(void)
{
    static const char *const pans[] = {"", "42424242424", "4242x42424242424", "4242 4242 4242 4242",
                                       NULL};
    struct cv_secbuf *key = fp_key_of(0x5a);
    for (size_t i = 0; i < sizeof(pans) / sizeof(pans[0]); i++) {
        struct cv_card_plain c;
        memset(&c, 0, sizeof(c));
        if (pans[i] != NULL)
            snprintf(c.pan, sizeof(c.pan), "%s", pans[i]);
        else
            memset(c.pan, '4', sizeof(c.pan)); /* 20 digits and no NUL */
        struct cv_token_row r =
            row_of(key, MERCHANT_A, "4242424242424242", "424242", "4242", "visa");
        cv_status st = CV_OK;
        CHECK_EQ_INT(check_of(key, &r, &c, &st), ALL_COLUMNS);
        CHECK_EQ_INT(st, CV_ERR_INTEGRITY);
    }
    cv_secbuf_free(key);
}

static void describe_names_columns_only(void)
{
    char out[CV_ROW_MISMATCH_NAMES_MAX];
    cv_row_check_describe(0, out, sizeof(out));
    CHECK(strcmp(out, "") == 0);
    cv_row_check_describe(CV_ROW_MISMATCH_LAST4, out, sizeof(out));
    CHECK(strcmp(out, "last4") == 0);
    cv_row_check_describe(CV_ROW_MISMATCH_BIN | CV_ROW_MISMATCH_FINGERPRINT, out, sizeof(out));
    CHECK(strcmp(out, "bin,fingerprint") == 0);
    cv_row_check_describe(ALL_COLUMNS, out, sizeof(out));
    CHECK(strcmp(out, "bin,last4,brand,fingerprint") == 0);
    /* Too small a buffer: cut, still a string. */
    char tiny[6];
    cv_row_check_describe(ALL_COLUMNS, tiny, sizeof(tiny));
    CHECK(strlen(tiny) < sizeof(tiny));
    cv_row_check_describe(ALL_COLUMNS, tiny, 1);
    CHECK(tiny[0] == '\0');
}

int main(void)
{
    RUN(columns_of_the_sealed_card_pass);
    RUN(each_changed_column_is_refused_and_named);
    RUN(every_column_changed_names_all_four);
    RUN(emptied_columns_are_refused);
    RUN(near_miss_columns_are_refused);
    RUN(fingerprint_of_another_merchant_or_key_is_refused);
    RUN(decrypted_non_pan_is_refused);
    RUN(describe_names_columns_only);
    return check_summary("row_check");
}
