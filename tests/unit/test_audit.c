/* test_audit.c: audit.c's pure parts. Time formatting and --since parsing
 * against known instants; the canonical text and SHA-256 chain against
 * vectors computed independently (Python hashlib over the bytes
 * audit_canonical() produces); the verifier's verdict on edited, deleted,
 * reordered, inserted and truncated chains; the keyed chain (HMAC-SHA-256
 * under K_audit, vectors from Python's hmac module) and the verifier's
 * verdict on rewritten, forged, stripped and unkeyed rows; and JSON export
 * escaping (the
 * PAN scanner's tests are in test_pan_scan.c). */
#include "cardvault/audit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"
#include "check.h"
#include "unhex.h"

/* 2024-02-29T23:59:59.123456Z and 2024-03-01T00:00:00.000001Z */
#define T1_US INT64_C(1709251199123456)
#define T2_US INT64_C(1709251200000001)
/* sha256(32 zero bytes || canonical(row1)), then sha256(h1 || canonical(row2)) */
#define H1_HEX "69a0f73405d39a131871817d27f000a2e0144589153f4b0a364c39bed91ffa25"
#define H2_HEX "902e2143ce52dcba6dcfcf137d806a5d5650bda425da0ed9087a3bec9b6ab6bd"

/* HMAC-SHA-256(K, 32 zero bytes || canonical(row1)), then
 * HMAC-SHA-256(K, m1 || canonical(row2)), with K = bytes 0x01..0x20 */
#define M1_HEX "13247a4ff21755077b60480a3f9387d9649e15ed0e22f2660e1103fd70cc95fe"
#define M2_HEX "6a40efd62663322da5b12356738be2316121b7fde1cdb8b25b42e1c0b77dd9a7"

static const unsigned char zero32[32];

static void format_time_matches_to_char(void)
{
    char ts[CV_AUDIT_TIME_LEN];
    cv_audit_format_time(T1_US, ts);
    CHECK(strcmp(ts, "2024-02-29T23:59:59.123456Z") == 0);
    cv_audit_format_time(T2_US, ts);
    CHECK(strcmp(ts, "2024-03-01T00:00:00.000001Z") == 0);
    cv_audit_format_time(0, ts);
    CHECK(strcmp(ts, "1970-01-01T00:00:00.000000Z") == 0);
    cv_audit_format_time(-1, ts); /* floor, not truncation toward zero */
    CHECK(strcmp(ts, "1969-12-31T23:59:59.999999Z") == 0);
}

static void parse_since_accepts_date_and_rfc3339(void)
{
    int64_t us = 0;
    CHECK(cv_audit_parse_since("2024-03-01", &us) == CV_OK);
    CHECK_EQ_INT(us, INT64_C(1709251200000000));
    CHECK(cv_audit_parse_since("2024-02-29T23:59:59.123456Z", &us) == CV_OK);
    CHECK_EQ_INT(us, T1_US);
    CHECK(cv_audit_parse_since("2024-03-01T09:00:00+09:00", &us) == CV_OK);
    CHECK_EQ_INT(us, INT64_C(1709251200000000));
    CHECK(cv_audit_parse_since("2024-02-29t14:59:59.1234567-09:00", &us) == CV_OK);
    CHECK_EQ_INT(us, INT64_C(1709251199123456));
}

static void parse_since_rejects_near_misses(void)
{
    int64_t us = 0;
    const char *bad[] = {"",
                         "2024-3-01",
                         "2024-02-30",
                         "2023-02-29",
                         "2024-13-01",
                         "2024-03-01T00:00:00", /* no offset: ambiguous */
                         "2024-03-01T24:00:00Z",
                         "2024-03-01T00:00:00.Z",
                         "2024-03-01T00:00:00Z junk",
                         "2024-03-01T00:00:00+0900",
                         "'; DROP TABLE audit_events; --",
                         NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        CHECK(cv_audit_parse_since(bad[i], &us) == CV_ERR_BAD_REQUEST);
    CHECK(cv_audit_parse_since(NULL, &us) == CV_ERR_BAD_REQUEST);
}

/* Two rows whose hashes were computed outside C; h1/h2 are filled in. */
static void make_rows(struct cv_audit_row *r1, struct cv_audit_row *r2, unsigned char h1[32],
                      unsigned char h2[32])
{
    unhex(H1_HEX, h1, 32);
    unhex(H2_HEX, h2, 32);
    *r1 = (struct cv_audit_row){.seq = 1,
                                .occurred_us = T1_US,
                                .actor = "cli:merchant-create",
                                .merchant_id = "mer_ABC",
                                .action = "merchant.create",
                                .outcome = "success",
                                .prev_hash = zero32,
                                .prev_hash_len = 32,
                                .hash = h1,
                                .hash_len = 32};
    *r2 = (struct cv_audit_row){.seq = 2,
                                .occurred_us = T2_US,
                                .actor = "sk_AbCdEfGhI",
                                .merchant_id = "mer_ABC",
                                .token = "tok_X",
                                .request_id = "req_Y",
                                .action = "token.detokenize",
                                .outcome = "success",
                                .detail = "na\xc3\xafve \"q\"",
                                .prev_hash = h1,
                                .prev_hash_len = 32,
                                .hash = h2,
                                .hash_len = 32};
}

static void canonical_joins_nine_fields_with_unit_separator(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    size_t len = 0;
    char *c = cv_audit_canonical(&r1, &len);
    const char want[] = "1\x1f"
                        "2024-02-29T23:59:59.123456Z\x1f"
                        "cli:merchant-create\x1fmer_ABC\x1f\x1f\x1fmerchant.create\x1fsuccess\x1f";
    CHECK_EQ_INT(len, sizeof(want) - 1);
    CHECK(memcmp(c, want, sizeof(want) - 1) == 0);
    free(c);
}

static void event_hash_matches_independent_vectors(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], got[32];
    make_rows(&r1, &r2, h1, h2);
    CHECK(cv_audit_event_hash(&r1, got) == CV_OK);
    CHECK(memcmp(got, h1, 32) == 0);
    CHECK(cv_audit_event_hash(&r2, got) == CV_OK);
    CHECK(memcmp(got, h2, 32) == 0);
}

static struct cv_audit_head head_of(int64_t seq, const unsigned char *h)
{
    struct cv_audit_head head = {.seq = seq, .hash_len = 32};
    memcpy(head.hash, h, 32);
    return head;
}

static void verify_accepts_intact_chain(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(cv_audit_verify_row(&v, &r2));
    struct cv_audit_head head = head_of(2, h2);
    CHECK(cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.events, 2);
    CHECK(!v.broken);
}

static void verify_accepts_empty_chain(void)
{
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    struct cv_audit_head head = head_of(0, zero32);
    CHECK(cv_audit_verify_finish(&v, &head));
}

static void verify_flags_edited_row(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    r2.outcome = "not_found"; /* the classic cover-up */
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    CHECK(strstr(v.reason, "content") != NULL);
}

static void verify_flags_edited_null_field(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    r1.token = "tok_planted"; /* NULL -> value changes the canonical text */
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(!cv_audit_verify_row(&v, &r1));
    CHECK_EQ_INT(v.first_broken_seq, 1);
}

static void verify_flags_deleted_row(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(!cv_audit_verify_row(&v, &r2)); /* row 1 gone */
    CHECK_EQ_INT(v.first_broken_seq, 1);
}

static void verify_flags_reordered_and_relinked_rows(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    r2.seq = 1; /* row 2 renumbered into first place */
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 1);
    CHECK(strstr(v.reason, "prev_hash") != NULL);
}

static void verify_flags_truncated_tail_and_rows_past_head(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(cv_audit_verify_row(&v, &r1));
    struct cv_audit_head head = head_of(2, h2); /* row 2 deleted, head still says 2 */
    CHECK(!cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.first_broken_seq, 2);

    cv_audit_verify_init(&v);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(cv_audit_verify_row(&v, &r2));
    head = head_of(1, h1); /* row 2 inserted behind audit_append's back */
    CHECK(!cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.first_broken_seq, 2);

    cv_audit_verify_init(&v);
    CHECK(cv_audit_verify_row(&v, &r1));
    head = head_of(1, h2); /* head hash replaced */
    CHECK(!cv_audit_verify_finish(&v, &head));
}

static void parse_anchor_accepts_seq_colon_hash_only(void)
{
    int64_t seq = 0;
    unsigned char h[32];
    CHECK(cv_audit_parse_anchor("2:" H2_HEX, &seq, h) == CV_OK);
    CHECK_EQ_INT(seq, 2);
    char hex[65];
    cv_audit_hex(h, 32, hex);
    CHECK(strcmp(hex, H2_HEX) == 0);
    /* the grouped form serve logs (no long digit runs in the log) */
    char grouped[80];
    size_t g = 0;
    for (size_t k = 0; k < 64; k++) {
        if (k > 0 && k % 8 == 0)
            grouped[g++] = '-';
        grouped[g++] = H2_HEX[k];
    }
    grouped[g] = '\0';
    char anchor[96];
    snprintf(anchor, sizeof anchor, "2:%s", grouped);
    unsigned char h2[32];
    CHECK(cv_audit_parse_anchor(anchor, &seq, h2) == CV_OK);
    CHECK(memcmp(h, h2, 32) == 0);
    CHECK(cv_audit_parse_anchor("0:" H2_HEX, &seq, h) != CV_OK);     /* seq starts at 1 */
    CHECK(cv_audit_parse_anchor(":" H2_HEX, &seq, h) != CV_OK);      /* no seq */
    CHECK(cv_audit_parse_anchor("-2:" H2_HEX, &seq, h) != CV_OK);    /* sign */
    CHECK(cv_audit_parse_anchor("2" H2_HEX, &seq, h) != CV_OK);      /* no colon */
    CHECK(cv_audit_parse_anchor("2:" H2_HEX "0", &seq, h) != CV_OK); /* 65 digits */
    CHECK(
        cv_audit_parse_anchor("2:x02e2143ce52dcba6dcfcf137d806a5d5650bda425da0ed9087a3bec9b6ab6bd",
                              &seq, h) != CV_OK); /* not hex */
    CHECK(cv_audit_parse_anchor("2:", &seq, h) != CV_OK);
    CHECK(cv_audit_parse_anchor("99999999999999999999:" H2_HEX, &seq, h) != CV_OK);
}

/* A kept anchor catches what a bare chain cannot: a cut tail with the head
 * moved back to match, and a rewritten event. */
static void verify_expect_catches_cut_tail_and_rewrite(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_expect(&v, 2, h2);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(cv_audit_verify_row(&v, &r2));
    struct cv_audit_head head = head_of(2, h2);
    CHECK(cv_audit_verify_finish(&v, &head));

    cv_audit_verify_init(&v); /* row 2 deleted and the head moved to row 1 */
    cv_audit_verify_expect(&v, 2, h2);
    CHECK(cv_audit_verify_row(&v, &r1));
    head = head_of(1, h1);
    CHECK(!cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    CHECK(strstr(v.reason, "ends before") != NULL);

    cv_audit_verify_init(&v); /* the anchor's event has another hash */
    cv_audit_verify_expect(&v, 1, h2);
    CHECK(!cv_audit_verify_row(&v, &r1));
    CHECK_EQ_INT(v.first_broken_seq, 1);
    CHECK(strstr(v.reason, "another hash") != NULL);
}

static void export_line_escapes_and_nulls(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32];
    make_rows(&r1, &r2, h1, h2);
    r2.detail = "a\"b\\c\n\x01";
    size_t len = 0;
    char *line = cv_audit_export_line(&r2, &len);
    CHECK_EQ_INT(strlen(line), len);
    CHECK(strncmp(line, "{\"seq\":2,\"occurred_at\":\"2024-03-01T00:00:00.000001Z\"", 52) == 0);
    CHECK(strstr(line, "\"detail\":\"a\\\"b\\\\c\\u000a\\u0001\"") != NULL);
    CHECK(strstr(line, "\"hash\":\"" H2_HEX "\",\"mac\":null}") != NULL);
    CHECK(strstr(line, "\"prev_hash\":\"" H1_HEX "\"") != NULL);
    free(line);
    line = cv_audit_export_line(&r1, &len);
    CHECK(strstr(line, "\"token\":null,\"request_id\":null") != NULL);
    CHECK(strstr(line, "\"detail\":null") != NULL);
    free(line);
}

/* ------------------------------------------------------------ keyed chain */

static struct cv_secbuf *test_key(void)
{
    struct cv_secbuf *k = cv_secbuf_new(CV_AUDIT_KEY_BYTES);
    for (size_t i = 0; i < CV_AUDIT_KEY_BYTES; i++)
        k->data[i] = (unsigned char)(i + 1);
    k->len = CV_AUDIT_KEY_BYTES;
    return k;
}

/* The sealer a keyring would give: SHA-256 link and HMAC under ctx's key. */
static cv_status seal_with(void *ctx, const struct cv_audit_row *row,
                           const unsigned char prev_mac[32], unsigned char hash[32],
                           unsigned char mac[32])
{
    CV_TRY(cv_audit_event_hash(row, hash));
    return cv_audit_event_mac(ctx, prev_mac, row, mac);
}

/* Rows 1 and 2 keyed: m1 chains from 32 zero bytes, m2 from m1. */
static void make_keyed_rows(struct cv_audit_row *r1, struct cv_audit_row *r2, unsigned char h1[32],
                            unsigned char h2[32], unsigned char m1[32], unsigned char m2[32])
{
    make_rows(r1, r2, h1, h2);
    unhex(M1_HEX, m1, 32);
    unhex(M2_HEX, m2, 32);
    r1->mac = m1;
    r1->mac_len = 32;
    r2->mac = m2;
    r2->mac_len = 32;
}

static struct cv_audit_head keyed_head_of(int64_t seq, const unsigned char *h,
                                          const unsigned char *m)
{
    struct cv_audit_head head = head_of(seq, h);
    memcpy(head.mac, m, 32);
    head.mac_len = 32;
    return head;
}

static void event_mac_matches_independent_vectors(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32], got[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    CHECK(cv_audit_event_mac(k, zero32, &r1, got) == CV_OK);
    CHECK(memcmp(got, m1, 32) == 0);
    CHECK(cv_audit_event_mac(k, m1, &r2, got) == CV_OK);
    CHECK(memcmp(got, m2, 32) == 0);
    /* the chaining matters: row 2 under a zero previous MAC is another MAC */
    CHECK(cv_audit_event_mac(k, zero32, &r2, got) == CV_OK);
    CHECK(memcmp(got, m2, 32) != 0);
    cv_secbuf_free(k);
}

static void event_mac_refuses_a_missing_or_short_key(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], got[32];
    make_rows(&r1, &r2, h1, h2);
    CHECK(cv_audit_event_mac(NULL, zero32, &r1, got) == CV_ERR_CRYPTO);
    struct cv_secbuf *k = test_key();
    k->len = 16;
    CHECK(cv_audit_event_mac(k, zero32, &r1, got) == CV_ERR_CRYPTO);
    cv_secbuf_free(k);
}

static void verify_accepts_keyed_chain_and_reports_where_it_starts(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(cv_audit_verify_row(&v, &r2));
    struct cv_audit_head head = keyed_head_of(2, h2, m2);
    CHECK(cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.keyed_from, 1);
    CHECK_EQ_INT(v.keyed_events, 2);
    cv_secbuf_free(k);
}

static void verify_accepts_unkeyed_rows_then_keyed_rows(void)
{
    /* row 1 written before migration 0005, row 2 the first keyed one: its
     * MAC chains from its prev_hash, row 1's hash */
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_rows(&r1, &r2, h1, h2);
    CHECK(cv_audit_event_mac(k, h1, &r2, m2) == CV_OK);
    r2.mac = m2;
    r2.mac_len = 32;
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(cv_audit_verify_row(&v, &r2));
    struct cv_audit_head head = keyed_head_of(2, h2, m2);
    CHECK(cv_audit_verify_finish(&v, &head));
    CHECK_EQ_INT(v.keyed_from, 2);
    CHECK_EQ_INT(v.keyed_events, 1);
    /* row 1 rewritten and row 2's SHA-256 link recomputed: row 2's MAC,
     * which chained from row 1's old hash, no longer matches */
    unsigned char h1x[32], h2x[32];
    r1.outcome = "denied";
    CHECK(cv_audit_event_hash(&r1, h1x) == CV_OK);
    r1.hash = h1x;
    r2.prev_hash = h1x;
    CHECK(cv_audit_event_hash(&r2, h2x) == CV_OK);
    r2.hash = h2x;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    cv_secbuf_free(k);
}

static void verify_flags_rewrite_with_recomputed_sha256(void)
{
    /* A database writer edits row 2 and recomputes its SHA-256 link (the
     * attack that passed before): the MAC no longer matches. */
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32], h2x[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    r2.outcome = "denied";
    CHECK(cv_audit_event_hash(&r2, h2x) == CV_OK);
    r2.hash = h2x;
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    CHECK(strstr(v.reason, "MAC") != NULL);
    cv_secbuf_free(k);
}

static void verify_flags_mac_under_another_key(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    k->data[0] ^= 1; /* a forger's own key */
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(!cv_audit_verify_row(&v, &r1));
    CHECK_EQ_INT(v.first_broken_seq, 1);
    cv_secbuf_free(k);
}

static void verify_flags_unkeyed_row_after_keyed_row(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    r2.mac = NULL; /* appended by something without the key */
    r2.mac_len = 0;
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    CHECK(strstr(v.reason, "unkeyed") != NULL);
    cv_secbuf_free(k);
}

static void verify_flags_stripped_prefix_of_keyed_rows(void)
{
    /* Row 1's MAC removed (and the SHA chain left intact): row 2 now looks
     * like the first keyed row, but its MAC chains from m1, not from zeros. */
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    r1.mac = NULL;
    r1.mac_len = 0;
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1));
    CHECK(!cv_audit_verify_row(&v, &r2));
    CHECK_EQ_INT(v.first_broken_seq, 2);
    cv_secbuf_free(k);
}

static void verify_flags_head_mac_and_wholly_stripped_chain(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    struct cv_secbuf *k = test_key();
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1) && cv_audit_verify_row(&v, &r2));
    struct cv_audit_head head = keyed_head_of(2, h2, m1); /* head's MAC replaced */
    CHECK(!cv_audit_verify_finish(&v, &head));
    CHECK(strstr(v.reason, "audit_head MAC") != NULL);
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1) && cv_audit_verify_row(&v, &r2));
    head = head_of(2, h2); /* head without a MAC on a keyed chain */
    CHECK(!cv_audit_verify_finish(&v, &head));
    /* every MAC stripped: the SHA-256 chain holds, but the vault has a key */
    make_rows(&r1, &r2, h1, h2);
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, seal_with, k);
    CHECK(cv_audit_verify_row(&v, &r1) && cv_audit_verify_row(&v, &r2));
    head = head_of(2, h2);
    CHECK(!cv_audit_verify_finish(&v, &head));
    CHECK(strstr(v.reason, "stripped") != NULL);
    cv_secbuf_free(k);
}

static void verify_without_key_refuses_keyed_rows(void)
{
    struct cv_audit_row r1, r2;
    unsigned char h1[32], h2[32], m1[32], m2[32];
    make_keyed_rows(&r1, &r2, h1, h2, m1, m2);
    struct cv_audit_verifier v;
    cv_audit_verify_init(&v);
    CHECK(!cv_audit_verify_row(&v, &r1));
    CHECK_EQ_INT(v.first_broken_seq, 1);
}

int main(void)
{
    RUN(format_time_matches_to_char);
    RUN(parse_since_accepts_date_and_rfc3339);
    RUN(parse_since_rejects_near_misses);
    RUN(canonical_joins_nine_fields_with_unit_separator);
    RUN(event_hash_matches_independent_vectors);
    RUN(verify_accepts_intact_chain);
    RUN(parse_anchor_accepts_seq_colon_hash_only);
    RUN(verify_expect_catches_cut_tail_and_rewrite);
    RUN(verify_accepts_empty_chain);
    RUN(verify_flags_edited_row);
    RUN(verify_flags_edited_null_field);
    RUN(verify_flags_deleted_row);
    RUN(verify_flags_reordered_and_relinked_rows);
    RUN(verify_flags_truncated_tail_and_rows_past_head);
    RUN(export_line_escapes_and_nulls);
    RUN(event_mac_matches_independent_vectors);
    RUN(event_mac_refuses_a_missing_or_short_key);
    RUN(verify_accepts_keyed_chain_and_reports_where_it_starts);
    RUN(verify_accepts_unkeyed_rows_then_keyed_rows);
    RUN(verify_flags_rewrite_with_recomputed_sha256);
    RUN(verify_flags_mac_under_another_key);
    RUN(verify_flags_unkeyed_row_after_keyed_row);
    RUN(verify_flags_stripped_prefix_of_keyed_rows);
    RUN(verify_flags_head_mac_and_wholly_stripped_chain);
    RUN(verify_without_key_refuses_keyed_rows);
    return check_summary("test_audit");
}
