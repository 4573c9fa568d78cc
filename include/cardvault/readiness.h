#ifndef CV_READINESS_H
#define CV_READINESS_H

#include <stdbool.h>

#include "cardvault/metrics.h"

/* A readiness answer shared by every caller for a short time. A readiness
 * probe costs two database round trips and, when the vault's KEK check
 * value changed, reopening the KEK (a PKCS#11 login included); probes come
 * from load balancers, orchestrators and anyone who can reach the ops
 * listener. So a probe runs at most once per ttl, one at a time: callers
 * that arrive while one runs wait for it and share its answer. */

/* The synchronous standby, when one is expected (CARDVAULT_EXPECT_SYNC_STANDBY). */
enum cv_replication_state {
    CV_REPLICATION_NOT_CHECKED = 0, /* none expected, or the database did not answer */
    CV_REPLICATION_OK,              /* a standby is named and streaming */
    CV_REPLICATION_NO_STANDBY,      /* none named: commits are on the primary alone */
    CV_REPLICATION_NOT_CONNECTED,   /* named, none streaming: commits wait for it */
};

struct cv_readiness_report {
    bool database_ok;
    bool kek_ok;
    enum cv_replication_state replication; /* reported, never a reason to be unready */
};

/* Fills out by asking the database and the KEK; ctx is the caller's. */
typedef void (*cv_readiness_probe_fn)(const void *ctx, struct cv_readiness_report *out);

struct cv_readiness;

/* ttl_ms: how long an answer is reused. metrics (may be NULL) counts each
 * probe run. Free with cv_readiness_free. */
struct cv_readiness *cv_readiness_new(unsigned ttl_ms, struct cv_metrics *metrics);
/* Accepts NULL. No caller may be inside cv_readiness_check. */
void cv_readiness_free(struct cv_readiness *r);
/* The cached report when younger than ttl; otherwise runs probe (or waits
 * for the probe another thread is running) and returns its report. */
void cv_readiness_check(struct cv_readiness *r, cv_readiness_probe_fn probe, const void *ctx,
                        struct cv_readiness_report *out);

#endif
