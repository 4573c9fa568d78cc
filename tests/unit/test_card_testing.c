/* test_card_testing.c: card_testing.c on its own, with a fake clock: the
 * quotas (per key by scope, per origin, a refusal by one spends nothing of
 * the other, none when off), and the distinct-card detector (counts
 * distinct fingerprints only, one signal per group and window, BIN + last 4
 * and BIN + expiry apart, per key, a block that lasts the window and only
 * for keys without the read scope, a window that ends forgets its cards,
 * threshold 0 is off, a flood of groups does not grow the table). */
#include "cardvault/card_testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/metrics.h"
#include "check.h"

static double clock_s = 1000.0;

static double fake_clock(void)
{
    return clock_s;
}

static const struct cv_principal pk = {"mer_aaaaaaaaaaaaaaaaaaaa", "pk_aaaaaaaaa",
                                       CV_SCOPE_TOKENIZE, ""};
static const struct cv_principal pk2 = {"mer_aaaaaaaaaaaaaaaaaaaa", "pk_bbbbbbbbb",
                                        CV_SCOPE_TOKENIZE, ""};
static const struct cv_principal sk = {"mer_aaaaaaaaaaaaaaaaaaaa", "sk_aaaaaaaaa", CV_SCOPES_ALL,
                                       ""};

static struct cv_card_testing *make(unsigned key, unsigned publishable, unsigned origin,
                                    unsigned threshold, bool block, struct cv_metrics *m)
{
    struct cv_card_testing_limits l = {key, publishable, origin, threshold, 600, block};
    clock_s = 1000.0;
    return cv_card_testing_new(&l, m, fake_clock);
}

/* Observes card i (fingerprint fp_<i>) of BIN 411111, the given last 4 and expiry. */
static cv_status see(struct cv_card_testing *ct, const struct cv_principal *who, int i,
                     const char *last4, int exp_month, unsigned *retry)
{
    char fp[32];
    snprintf(fp, sizeof(fp), "fp_%022d", i);
    struct cv_card_testing_card c = {
        who, "req_testtesttesttesttest", "411111", last4, fp, exp_month, 2031};
    return cv_card_testing_observe(ct, &c, retry);
}

static bool shows(struct cv_metrics *m, const char *line)
{
    struct cv_metrics_gauges g;
    size_t len = 0;
    memset(&g, 0, sizeof(g));
    char *page = cv_metrics_render(m, &g, &len);
    bool found = strstr(page, line) != NULL;
    free(page);
    return found;
}

static void publishable_keys_get_the_lower_quota(void)
{
    struct cv_card_testing *ct = make(5, 2, 0, 0, true, NULL);
    unsigned ra = 0;
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, NULL, &ra), CV_OK);
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, NULL, &ra), CV_OK);
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, NULL, &ra), CV_ERR_QUOTA_EXCEEDED);
    CHECK(ra >= 1700 && ra <= 1801); /* 2 an hour: one every 30 minutes */
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk2, NULL, &ra), CV_OK); /* per key */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(cv_card_testing_admit(ct, &sk, NULL, &ra), CV_OK);
    CHECK_EQ_INT(cv_card_testing_admit(ct, &sk, NULL, &ra), CV_ERR_QUOTA_EXCEEDED);
    cv_card_testing_free(ct);
}

static void an_origin_refusal_spends_nothing_of_the_key(void)
{
    struct cv_metrics *m = cv_metrics_new();
    struct cv_card_testing *ct = make(0, 2, 1, 0, true, m);
    unsigned ra = 0;
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, "https://evil.example", &ra), CV_OK);
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, "https://evil.example", &ra),
                 CV_ERR_QUOTA_EXCEEDED);
    CHECK(ra >= 1);
    /* The refused request took nothing from the key: one unit is left. */
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, NULL, &ra), CV_OK);
    CHECK_EQ_INT(cv_card_testing_admit(ct, &pk, NULL, &ra), CV_ERR_QUOTA_EXCEEDED);
    /* key_per_hour 0: secret keys have no quota; an empty Origin is none. */
    for (int i = 0; i < 50; i++)
        CHECK_EQ_INT(cv_card_testing_admit(ct, &sk, "", &ra), CV_OK);
    CHECK(shows(m, "cardvault_tokenize_refused_total{reason=\"key_quota\"} 1"));
    CHECK(shows(m, "cardvault_tokenize_refused_total{reason=\"origin_quota\"} 1"));
    cv_card_testing_free(ct);
    cv_metrics_free(m);
    CHECK_EQ_INT(cv_card_testing_admit(NULL, &pk, "x", &ra), CV_OK);
}

static void distinct_cards_raise_one_signal_per_window(void)
{
    struct cv_metrics *m = cv_metrics_new();
    struct cv_card_testing *ct = make(0, 0, 0, 4, false, m);
    unsigned ra = 0;
    for (int round = 0; round < 5; round++) /* repeats of 3 cards are 3 cards */
        for (int i = 0; i < 3; i++)
            CHECK_EQ_INT(see(ct, &pk, i, "1111", i + 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 0"));
    CHECK_EQ_INT(see(ct, &pk, 3, "1111", 4, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 1"));
    for (int i = 4; i < 20; i++) /* blocking off: no refusal, no second signal */
        CHECK_EQ_INT(see(ct, &pk, i, "1111", i % 12 + 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 1"));
    /* Each card had its own expiry month: no BIN + expiry group reached 4. */
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_expiry\"} 0"));
    /* Another key's cards are counted apart. */
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(see(ct, &pk2, i, "1111", 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 1"));
    /* The window ends: the cards are forgotten, the next 4 raise it again. */
    clock_s += 601;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(see(ct, &pk, i, "1111", 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 1"));
    CHECK_EQ_INT(see(ct, &pk, 3, "1111", 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 2"));
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_expiry\"} 1"));
    cv_card_testing_free(ct);
    cv_metrics_free(m);
}

static void bin_and_expiry_alone_is_a_signal_without_a_block(void)
{
    struct cv_metrics *m = cv_metrics_new();
    struct cv_card_testing *ct = make(0, 0, 0, 3, true, m);
    unsigned ra = 0;
    char last4[12];
    for (int i = 0; i < 10; i++) {
        snprintf(last4, sizeof(last4), "%04d", i);
        CHECK_EQ_INT(see(ct, &pk, i, last4, 7, &ra), CV_OK);
    }
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_expiry\"} 1"));
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 0"));
    cv_card_testing_free(ct);
    cv_metrics_free(m);
}

static void a_block_lasts_the_window_for_publishable_keys_only(void)
{
    struct cv_card_testing *ct = make(0, 0, 0, 3, true, NULL);
    unsigned ra = 0;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(see(ct, &pk, i, "4242", 1, &ra), CV_OK);
    /* Flagged: a new card, and a card seen before, both wait. */
    CHECK_EQ_INT(see(ct, &pk, 3, "4242", 1, &ra), CV_ERR_QUOTA_EXCEEDED);
    CHECK_EQ_INT(ra, 600);
    clock_s += 100;
    CHECK_EQ_INT(see(ct, &pk, 0, "4242", 1, &ra), CV_ERR_QUOTA_EXCEEDED);
    CHECK_EQ_INT(ra, 500);
    /* Other last 4s of the same key go on. */
    CHECK_EQ_INT(see(ct, &pk, 9, "4243", 1, &ra), CV_OK);
    /* A secret key walking the same digits is reported, never blocked. */
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(see(ct, &sk, i, "4242", 1, &ra), CV_OK);
    /* The block ends with its window. */
    clock_s += 501;
    CHECK_EQ_INT(see(ct, &pk, 4, "4242", 1, &ra), CV_OK);
    cv_card_testing_free(ct);
}

static void threshold_zero_is_off(void)
{
    struct cv_metrics *m = cv_metrics_new();
    struct cv_card_testing *ct = make(0, 0, 0, 0, true, m);
    unsigned ra = 0;
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(see(ct, &pk, i, "4242", 1, &ra), CV_OK);
    CHECK(shows(m, "cardvault_card_testing_suspected_total{signal=\"bin_last4\"} 0"));
    cv_card_testing_free(ct);
    cv_metrics_free(m);
    CHECK_EQ_INT(see(NULL, &pk, 1, "4242", 1, &ra), CV_OK);
}

static void a_flood_of_groups_recycles_slots(void)
{
    /* 20,000 groups through a fixed table: nothing grows, nothing fails,
     * and a flagged group is not the first to be recycled. */
    struct cv_card_testing *ct = make(0, 0, 0, 2, true, NULL);
    unsigned ra = 0;
    char last4[12];
    CHECK_EQ_INT(see(ct, &pk, 1, "9999", 1, &ra), CV_OK);
    CHECK_EQ_INT(see(ct, &pk, 2, "9999", 1, &ra), CV_OK);
    for (int i = 0; i < 20000; i++) {
        snprintf(last4, sizeof(last4), "%04d", i % 9999);
        clock_s += 0.001;
        CHECK_EQ_INT(see(ct, &sk, i, last4, i % 12 + 1, &ra), CV_OK);
    }
    CHECK_EQ_INT(see(ct, &pk, 3, "9999", 1, &ra), CV_ERR_QUOTA_EXCEEDED);
    cv_card_testing_free(ct);
}

int main(void)
{
    RUN(publishable_keys_get_the_lower_quota);
    RUN(an_origin_refusal_spends_nothing_of_the_key);
    RUN(distinct_cards_raise_one_signal_per_window);
    RUN(bin_and_expiry_alone_is_a_signal_without_a_block);
    RUN(a_block_lasts_the_window_for_publishable_keys_only);
    RUN(threshold_zero_is_off);
    RUN(a_flood_of_groups_recycles_slots);
    return check_summary("card_testing");
}
