#ifndef CV_CVC_HOLD_H
#define CV_CVC_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "cardvault/status.h"
#include "cardvault/token.h"

/* Security-code holds (docs/storage-policy.md, "Security codes"): the one
 * place a card's security code (CVC) lives after tokenize, so that a relay
 * can send it to the processor for the first charge. Never in the database,
 * a log or a file:
 *   - one fixed table in memory mapped at start-up, locked (mlock: never
 *     swapped) and excluded from core dumps (MADV_DONTDUMP);
 *   - each code sealed there with AES-256-GCM under a key drawn at start-up
 *     and kept in the same region, bound to its hold id, merchant and token;
 *   - at most `uses` takes and `ttl_s` seconds (the clock starts at put and
 *     never extends); wiped on its last take, on expiry (the sweeper), and
 *     at close. A restart loses every hold by design.
 * A hold id is "hold_<instance>_<24 base62>": the instance id lets a load
 * balancer send the relay to the instance holding the code. A take with
 * another merchant or token, an unknown, expired or used-up id all answer
 * CV_ERR_HOLD_GONE alike. Thread-safe. */

#define CV_HOLD_INSTANCE_MAX 16
#define CV_HOLD_RANDOM_CHARS 24
#define CV_HOLD_ID_MAX       (5 + CV_HOLD_INSTANCE_MAX + 1 + CV_HOLD_RANDOM_CHARS)
#define CV_HOLD_CVC_MAX      4

struct cv_hold_limits {
    unsigned default_uses;  /* 1 */
    unsigned max_uses;      /* operator's cap (CARDVAULT_CVC_HOLD_MAX_USES) */
    unsigned default_ttl_s; /* 300 */
    unsigned max_ttl_s;     /* operator's cap (CARDVAULT_CVC_HOLD_MAX_TTL) */
    size_t capacity;        /* holds at once */
    const char *instance;   /* [a-z0-9]{1,16} */
};

struct cv_holds;

/* The clock the holds read (tests pass their own). */
typedef time_t (*cv_hold_clock)(void *ctx);

/* *locked tells whether mlock succeeded (a container's memlock limit may
 * refuse it; the caller decides how loudly to say so). */
CV_MUST_USE cv_status cv_holds_open(const struct cv_hold_limits *lim, cv_hold_clock now,
                                    void *now_ctx, struct cv_holds **out, bool *locked);
/* Starts a thread that wipes expired holds every second (cv_holds_close
 * stops it). */
CV_MUST_USE cv_status cv_holds_start_sweeper(struct cv_holds *h);
/* Stops the sweeper, wipes every hold and the key, unmaps. Accepts NULL. */
void cv_holds_close(struct cv_holds *h);

/* Holds cvc (3 or 4 digits) for (merchant_id, token). uses 0 and ttl_s 0
 * mean the defaults; above the operator's caps is CV_ERR_BAD_REQUEST (with
 * *param "uses" or "ttl_seconds"). CV_ERR_HOLDS_FULL when the table is
 * full. */
CV_MUST_USE cv_status cv_holds_put(struct cv_holds *h, const char *merchant_id, const char *token,
                                   const char *cvc, unsigned uses, unsigned ttl_s,
                                   char id[CV_HOLD_ID_MAX + 1], time_t *expires_at,
                                   unsigned *uses_granted, const char **param);

/* One use of the hold: the code into cvc (NUL-terminated; the caller wipes
 * it). The hold is wiped when this was its last use. */
CV_MUST_USE cv_status cv_holds_take(struct cv_holds *h, const char *merchant_id, const char *token,
                                    const char *id, char cvc[CV_HOLD_CVC_MAX + 1]);

/* Wipes the hold with this id, whatever its uses and expiry (a hold whose
 * creation could not be audited). */
void cv_holds_drop(struct cv_holds *h, const char *id);

/* Wipes the expired holds; returns how many. */
size_t cv_holds_sweep(struct cv_holds *h);

/* Holds alive now, and counters since open. */
struct cv_hold_stats {
    size_t active;
    unsigned long long created, used, expired, full;
};
void cv_holds_stats(struct cv_holds *h, struct cv_hold_stats *out);

/* Is this an instance id holds accept ([a-z0-9]{1,16})? */
bool cv_holds_instance_ok(const char *s);

#endif
