#ifndef CV_METRICS_H
#define CV_METRICS_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "cardvault/routes.h"
#include "cardvault/status.h"

/* Counters and latency histograms, rendered in the Prometheus text format
 * (0.0.4). Updates are lock-free atomics on fixed arrays: the request path
 * never allocates or locks for metrics. Labels are route patterns, status
 * codes and error codes: never tokens, keys or card data. */

struct cv_metrics;

struct cv_metrics *cv_metrics_new(void);
void cv_metrics_free(struct cv_metrics *m);

/* One finished HTTP request. st is the handler's status (CV_OK on success). */
void cv_metrics_observe_request(struct cv_metrics *m, enum cv_route_id route, int http_status,
                                cv_status st, double seconds);
/* An Authorization header that named no valid key (brute-force signal). */
void cv_metrics_count_auth_failure(struct cv_metrics *m);
/* A connection closed because its request had not fully arrived by the
 * request deadline (slow or stalled client). Accepts NULL. */
void cv_metrics_count_deadline_close(struct cv_metrics *m);
/* Expired tokens the housekeeping purge deleted (accepts NULL). */
void cv_metrics_count_tokens_purged(struct cv_metrics *m, uint64_t n);
/* The certificate the API listener serves now: its expiry (Unix time),
 * rendered as cardvault_tls_cert_not_after_seconds once set. */
void cv_metrics_tls_cert(struct cv_metrics *m, int64_t not_after);
/* A SIGHUP reload of the certificate: taken (ok) or refused. */
void cv_metrics_count_tls_reload(struct cv_metrics *m, bool ok);
/* One readiness probe actually run against the database and the KEK (the
 * cached answer in between is not counted). Accepts NULL. */
void cv_metrics_count_readiness_probe(struct cv_metrics *m);

/* Card-testing signals (card_testing.c): one key tokenized many distinct
 * cards sharing a BIN and last 4, or a BIN and expiry, within the window. */
enum cv_metrics_card_signal {
    CV_METRICS_SIGNAL_BIN_LAST4 = 0,
    CV_METRICS_SIGNAL_BIN_EXPIRY,
    CV_METRICS_SIGNAL_COUNT
};
/* Why a tokenize was refused with tokenize_quota_exceeded. */
enum cv_metrics_tokenize_refusal {
    CV_METRICS_REFUSED_KEY_QUOTA = 0,
    CV_METRICS_REFUSED_ORIGIN_QUOTA,
    CV_METRICS_REFUSED_CARD_TESTING,
    CV_METRICS_REFUSED_COUNT
};
void cv_metrics_count_card_testing(struct cv_metrics *m, enum cv_metrics_card_signal signal);
void cv_metrics_count_tokenize_refused(struct cv_metrics *m, enum cv_metrics_tokenize_refusal why);

/* How a relay (POST /v1/relay/{destination}) ended: the processor answered
 * (any HTTP status), the vault refused it before sending (validation, token,
 * hold), or sending failed (connect, TLS, timeout, answer too large, ...). */
enum cv_metrics_relay_outcome {
    CV_METRICS_RELAY_ANSWERED = 0,
    CV_METRICS_RELAY_REFUSED,
    CV_METRICS_RELAY_FAILED,
    CV_METRICS_RELAY_COUNT
};
/* Counts one relay and its duration under its destination (a name from the
 * operator's list, or NULL for one that is not listed: counted as "-"). At
 * most CV_METRICS_RELAY_DESTINATIONS names; later ones count as "other". */
#define CV_METRICS_RELAY_DESTINATIONS 32
void cv_metrics_count_relay(struct cv_metrics *m, const char *destination,
                            enum cv_metrics_relay_outcome outcome, double seconds);

/* Gauges sampled when /metrics is scraped. */
struct cv_metrics_gauges {
    unsigned db_pool_in_use;
    unsigned db_pool_size;
    uint64_t dek_rotations;
    int ready;
    /* When sync_standby_known (a standby is expected and the database
     * answered): true while it streams, false while the primary runs
     * without it (none named, or none connected) */
    bool sync_standby_known;
    bool sync_standby;
};

/* The build's identity, rendered as the constant gauge
 * cardvault_build_info{version,openssl,libmicrohttpd} 1. Copied (each value
 * truncated to CV_METRICS_LABEL_MAX bytes); call once before serving. */
#define CV_METRICS_LABEL_MAX 63
void cv_metrics_set_build_info(struct cv_metrics *m, const char *version, const char *openssl,
                               const char *libmicrohttpd);

/* What the process metrics need from /proc/self/stat (proc(5)): CPU time in
 * clock ticks, start time in ticks after boot, virtual size in bytes and
 * resident set in pages. */
struct cv_proc_stat {
    unsigned long long utime_ticks;
    unsigned long long stime_ticks;
    unsigned long long start_ticks;
    unsigned long long vsize_bytes;
    unsigned long long rss_pages;
};
/* Parses the text of /proc/PID/stat (len bytes, need not end in NUL). The
 * command name (field 2) may hold spaces and parentheses: fields are counted
 * from its last ')'. CV_ERR_IO when a field is missing or not a number. */
CV_MUST_USE cv_status cv_metrics_parse_proc_stat(const char *text, size_t len,
                                                 struct cv_proc_stat *out);

/* Renders the exposition text (heap, free()), with the process metrics of
 * the calling process read from /proc/self at the time of the call. */
char *cv_metrics_render(struct cv_metrics *m, const struct cv_metrics_gauges *g, size_t *len);

#endif
