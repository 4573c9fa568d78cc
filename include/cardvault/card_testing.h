#ifndef CV_CARD_TESTING_H
#define CV_CARD_TESTING_H

#include <stdbool.h>

#include "cardvault/auth.h"
#include "cardvault/status.h"

/* Defences of the tokenize path against card testing, the abuse of a key
 * that sits in a public checkout page (a pk_ key) to try card numbers:
 *
 * - quotas: tokenize requests per API key (one budget for keys with the
 *   read scope, a lower one for keys without it) and per Origin header
 *   value, as token buckets (ratelimit.c) that refill over an hour;
 * - a detector: one key tokenizing many distinct cards that share a BIN and
 *   last 4 (someone walking the hidden middle digits) or a BIN and expiry,
 *   within a window. It counts distinct cards by their keyed fingerprint,
 *   reduced to a per-process 64-bit hash in a fixed table; it never holds a
 *   PAN, a BIN or a last 4, and wipes what it held when a window ends. It
 *   counts cardvault_card_testing_suspected_total and logs
 *   card_testing_suspected (key prefix, merchant, BIN, last 4, count; never
 *   the middle digits); optionally it refuses the key's further tokenizes of
 *   that BIN and last 4 for the window (keys without the read scope only).
 *
 * Everything is in memory, per process: with N instances behind a load
 * balancer a key gets up to N times each quota. Thread-safe. */

struct cv_card_testing;
struct cv_metrics;

struct cv_card_testing_limits {
    unsigned key_per_hour;         /* keys with the read scope; 0 = no quota */
    unsigned publishable_per_hour; /* keys without it (pk_); 0 = no quota */
    unsigned origin_per_hour;      /* per Origin header value; 0 = no quota */
    unsigned threshold;            /* distinct cards that raise the signal; 0 = detector off */
    unsigned window_s;             /* detection (and block) window */
    bool block; /* refuse a keyless-read key's further cards of a flagged group */
};

/* Most distinct cards a group remembers: the highest threshold. */
#define CV_CARD_TESTING_THRESHOLD_MAX 32

/* now_s: a monotonic clock in seconds (NULL: CLOCK_MONOTONIC); tests pass
 * their own. metrics may be NULL. Free with cv_card_testing_free. */
struct cv_card_testing *cv_card_testing_new(const struct cv_card_testing_limits *limits,
                                            struct cv_metrics *metrics, double (*now_s)(void));
/* Wipes and frees. Accepts NULL. */
void cv_card_testing_free(struct cv_card_testing *ct);

/* Admits one tokenize request of who (origin: the request's Origin header,
 * or NULL) against the quotas, taking one unit from each that applies.
 * CV_OK, or CV_ERR_QUOTA_EXCEEDED with *retry_after_s (whole seconds, at
 * least 1) and nothing taken. ct NULL admits everything. */
CV_MUST_USE cv_status cv_card_testing_admit(struct cv_card_testing *ct,
                                            const struct cv_principal *who, const char *origin,
                                            unsigned *retry_after_s);

/* A validated card about to be tokenized: what the detector may see. */
struct cv_card_testing_card {
    const struct cv_principal *who;
    const char *request_id;
    const char *bin;         /* 6 digits */
    const char *last4;       /* 4 digits */
    const char *fingerprint; /* the keyed fingerprint (fp_...) */
    int exp_month;
    int exp_year;
};

/* Counts the card in its two groups (key + BIN + last 4, key + BIN +
 * expiry); raises the signal when a group reaches the threshold. CV_OK, or
 * CV_ERR_QUOTA_EXCEEDED (with *retry_after_s: the rest of the block) when
 * blocking is on, the key lacks the read scope and its BIN + last 4 group
 * is flagged. ct NULL observes nothing. */
CV_MUST_USE cv_status cv_card_testing_observe(struct cv_card_testing *ct,
                                              const struct cv_card_testing_card *card,
                                              unsigned *retry_after_s);

#endif
