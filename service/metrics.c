/* metrics.c: Prometheus counters and histograms. Fixed-size arrays indexed by
 * route, status class and cv_status keep the hot path to a few atomic adds;
 * rendering walks them when /metrics is scraped and writes the page into a
 * struct cv_buf. It never sees a request's content, only its route, status
 * and duration. The process metrics (CPU, memory, descriptors, start time)
 * are read from /proc/self when scraped, under the names Prometheus client
 * libraries give them, so dashboards built for those work unchanged. */
#include "cardvault/metrics.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cardvault/buf.h"
#include "cardvault/secbuf.h"

/* HTTP status codes we can answer; anything else is counted under "other". */
static const int codes[] = {200, 201, 204, 400, 401, 403, 404, 405, 409,
                            410, 413, 415, 429, 500, 502, 503, 504, 0};
#define N_CODES (sizeof(codes) / sizeof(codes[0]))

/* Up to 10 s: a request can legitimately wait about 5 s (a database pool
 * checkout, a write retried after lock_timeout), and those waits must land
 * in a bucket of their own, not only in +Inf. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define N_BUCKETS (sizeof(buckets) / sizeof(buckets[0]))

/* A relay waits on a processor across the network, up to a destination's
 * timeout_ms (at most 120 s; docs/operations.md, "Relay destinations"). */
static const double relay_buckets[] = {0.05, 0.1,  0.25, 0.5,  1.0,  2.5,
                                       5.0,  10.0, 30.0, 60.0, 120.0};
#define N_RELAY_BUCKETS (sizeof(relay_buckets) / sizeof(relay_buckets[0]))

struct cv_metrics {
    atomic_uint_least64_t requests[CV_ROUTE_COUNT][N_CODES];
    atomic_uint_least64_t latency_bucket[CV_ROUTE_COUNT][N_BUCKETS + 1];
    atomic_uint_least64_t latency_sum_us[CV_ROUTE_COUNT];
    atomic_uint_least64_t errors[CV_STATUS_COUNT];
    atomic_uint_least64_t tokenized;
    atomic_uint_least64_t detokenized;
    atomic_uint_least64_t auth_failures;
    atomic_uint_least64_t deadline_closes;
    atomic_uint_least64_t tokens_purged;
    /* TLS: reloads by outcome, and the serving certificate's expiry (0: none) */
    atomic_uint_least64_t tls_reloads_ok, tls_reloads_refused;
    atomic_int_least64_t tls_not_after;
    atomic_uint_least64_t readiness_probes;
    atomic_uint_least64_t card_testing[CV_METRICS_SIGNAL_COUNT];
    atomic_uint_least64_t tokenize_refused[CV_METRICS_REFUSED_COUNT];
    /* Relays by destination: a slot's name is written once, under relay_lock,
     * before relay_slots counts it; readers take the lock too. */
    pthread_mutex_t relay_lock;
    size_t relay_slots;
    struct {
        char name[CV_METRICS_LABEL_MAX + 1];
        atomic_uint_least64_t n[CV_METRICS_RELAY_COUNT];
        atomic_uint_least64_t duration_sum_us;
        atomic_uint_least64_t duration_bucket[N_RELAY_BUCKETS + 1]; /* + the +Inf one */
    } relay[CV_METRICS_RELAY_DESTINATIONS + 2];                     /* + "-" and "other" */
    /* Set once before serving, read by scrapes. */
    char version[CV_METRICS_LABEL_MAX + 1];
    char openssl[CV_METRICS_LABEL_MAX + 1];
    char libmicrohttpd[CV_METRICS_LABEL_MAX + 1];
    double start_time_s; /* process start, seconds since the epoch; 0 when unknown */
};

/* Label values: fixed words, never a key, a BIN or anything a client sent. */
static const char *const signal_names[CV_METRICS_SIGNAL_COUNT] = {"bin_last4", "bin_expiry"};
static const char *const refusal_names[CV_METRICS_REFUSED_COUNT] = {"key_quota", "origin_quota",
                                                                    "card_testing"};
static const char *const relay_outcome_names[CV_METRICS_RELAY_COUNT] = {"answered", "refused",
                                                                        "failed"};

/* Reads a small /proc file whole into buf (NUL-terminated); false on error. */
static bool read_proc(const char *path, char *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    bool ok = ferror(f) == 0 && n > 0;
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return ok;
}

cv_status cv_metrics_parse_proc_stat(const char *text, size_t len, struct cv_proc_stat *out)
{
    memset(out, 0, sizeof(*out));
    /* The command name is "(...)" and may itself hold ") ": the last ')'
     * ends it. Fields after it start at field 3 (state). */
    size_t close = len;
    for (size_t i = 0; i < len; i++)
        if (text[i] == ')')
            close = i;
    if (close == len)
        return CV_ERR_IO;
    unsigned field = 2;
    size_t i = close + 1;
    while (field < 24) {
        if (i >= len || text[i] != ' ')
            return CV_ERR_IO;
        i++;
        field++;
        size_t start = i;
        unsigned long long v = 0;
        bool digits = true;
        while (i < len && text[i] != ' ' && text[i] != '\n') {
            char c = text[i];
            if (c < '0' || c > '9' || v > (~0ULL - 9) / 10)
                digits = false;
            else
                v = v * 10 + (unsigned long long)(c - '0');
            i++;
        }
        if (i == start)
            return CV_ERR_IO;
        bool wanted = field == 14 || field == 15 || field == 22 || field == 23 || field == 24;
        if (wanted && !digits)
            return CV_ERR_IO;
        if (field == 14)
            out->utime_ticks = v;
        else if (field == 15)
            out->stime_ticks = v;
        else if (field == 22)
            out->start_ticks = v;
        else if (field == 23)
            out->vsize_bytes = v;
        else if (field == 24)
            out->rss_pages = v;
    }
    return CV_OK;
}

static bool read_self_stat(struct cv_proc_stat *st)
{
    char buf[1024];
    size_t len = 0;
    return read_proc("/proc/self/stat", buf, sizeof(buf), &len) &&
           cv_metrics_parse_proc_stat(buf, len, st) == CV_OK;
}

/* The process start in seconds since the epoch: the wall clock now, less
 * the system's uptime, plus the process's start in ticks after boot. Read
 * once: it does not change. 0 when /proc cannot tell. */
static double process_start_time(void)
{
    struct cv_proc_stat st;
    char buf[128];
    size_t len = 0;
    long ticks = sysconf(_SC_CLK_TCK);
    if (ticks <= 0 || !read_self_stat(&st) || !read_proc("/proc/uptime", buf, sizeof(buf), &len))
        return 0.0;
    char *end = NULL;
    errno = 0;
    double uptime = strtod(buf, &end);
    if (errno != 0 || end == buf || !(uptime >= 0.0))
        return 0.0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double t = (double)now.tv_sec + (double)now.tv_nsec / 1e9 - uptime +
               (double)st.start_ticks / (double)ticks;
    /* The clock tick is the precision /proc gives: round to it, so the value
     * does not move by a few milliseconds from one process to the next. */
    return (double)(long long)(t * (double)ticks + 0.5) / (double)ticks;
}

struct cv_metrics *cv_metrics_new(void)
{
    /* Static zero-initialised atomics are valid starting values. */
    struct cv_metrics *m = cv_xcalloc(1, sizeof(struct cv_metrics));
    pthread_mutex_init(&m->relay_lock, NULL);
    cv_metrics_set_build_info(m, "unknown", "unknown", "unknown");
    m->start_time_s = process_start_time();
    return m;
}

static void copy_label(char dst[CV_METRICS_LABEL_MAX + 1], const char *src)
{
    snprintf(dst, CV_METRICS_LABEL_MAX + 1, "%s", src != NULL ? src : "unknown");
}

void cv_metrics_set_build_info(struct cv_metrics *m, const char *version, const char *openssl,
                               const char *libmicrohttpd)
{
    copy_label(m->version, version);
    copy_label(m->openssl, openssl);
    copy_label(m->libmicrohttpd, libmicrohttpd);
}

void cv_metrics_free(struct cv_metrics *m)
{
    if (m != NULL)
        pthread_mutex_destroy(&m->relay_lock);
    free(m);
}

static size_t code_index(int http_status)
{
    for (size_t i = 0; i + 1 < N_CODES; i++)
        if (codes[i] == http_status)
            return i;
    return N_CODES - 1;
}

void cv_metrics_observe_request(struct cv_metrics *m, enum cv_route_id route, int http_status,
                                cv_status st, double seconds)
{
    if ((unsigned)route >= CV_ROUTE_COUNT)
        route = CV_ROUTE_UNMATCHED;
    if (!(seconds >= 0.0)) /* also true for NaN: never convert that to an integer */
        seconds = 0.0;
    atomic_fetch_add(&m->requests[route][code_index(http_status)], 1);
    size_t b = 0;
    while (b < N_BUCKETS && seconds > buckets[b])
        b++;
    atomic_fetch_add(&m->latency_bucket[route][b], 1);
    atomic_fetch_add(&m->latency_sum_us[route], (uint64_t)(seconds * 1e6));
    if (st != CV_OK && (unsigned)st < CV_STATUS_COUNT)
        atomic_fetch_add(&m->errors[st], 1);
    if (st == CV_OK && route == CV_ROUTE_TOKENIZE)
        atomic_fetch_add(&m->tokenized, 1);
    if (st == CV_OK && route == CV_ROUTE_DETOKENIZE)
        atomic_fetch_add(&m->detokenized, 1);
}

void cv_metrics_count_auth_failure(struct cv_metrics *m)
{
    atomic_fetch_add(&m->auth_failures, 1);
}

void cv_metrics_count_tokens_purged(struct cv_metrics *m, uint64_t n)
{
    if (m != NULL)
        atomic_fetch_add(&m->tokens_purged, n);
}

void cv_metrics_tls_cert(struct cv_metrics *m, int64_t not_after)
{
    if (m != NULL)
        atomic_store(&m->tls_not_after, not_after);
}

void cv_metrics_count_tls_reload(struct cv_metrics *m, bool ok)
{
    if (m != NULL)
        atomic_fetch_add(ok ? &m->tls_reloads_ok : &m->tls_reloads_refused, 1);
}

void cv_metrics_count_deadline_close(struct cv_metrics *m)
{
    if (m != NULL)
        atomic_fetch_add(&m->deadline_closes, 1);
}

void cv_metrics_count_readiness_probe(struct cv_metrics *m)
{
    if (m != NULL)
        atomic_fetch_add(&m->readiness_probes, 1);
}

void cv_metrics_count_card_testing(struct cv_metrics *m, enum cv_metrics_card_signal signal)
{
    if (m != NULL && (unsigned)signal < CV_METRICS_SIGNAL_COUNT)
        atomic_fetch_add(&m->card_testing[signal], 1);
}

/* A destination name is a label value only when it is plain: the operator
 * chose it, but a label must never need escaping. */
static bool relay_label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CV_METRICS_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

void cv_metrics_count_relay(struct cv_metrics *m, const char *destination,
                            enum cv_metrics_relay_outcome outcome, double seconds)
{
    if (m == NULL || (unsigned)outcome >= CV_METRICS_RELAY_COUNT)
        return;
    const char *name = destination != NULL && relay_label_ok(destination) ? destination : "-";
    pthread_mutex_lock(&m->relay_lock);
    size_t slot = m->relay_slots;
    for (size_t i = 0; i < m->relay_slots; i++)
        if (strcmp(m->relay[i].name, name) == 0)
            slot = i;
    if (slot == m->relay_slots) {
        /* Full: the last slot counts every further name as "other". */
        if (m->relay_slots == CV_METRICS_RELAY_DESTINATIONS + 1)
            copy_label(m->relay[m->relay_slots++].name, "other");
        if (m->relay_slots == CV_METRICS_RELAY_DESTINATIONS + 2)
            slot = CV_METRICS_RELAY_DESTINATIONS + 1;
        else
            copy_label(m->relay[m->relay_slots++].name, name);
    }
    atomic_fetch_add(&m->relay[slot].n[outcome], 1);
    atomic_fetch_add(&m->relay[slot].duration_sum_us,
                     seconds > 0 ? (uint_least64_t)(seconds * 1e6) : 0);
    size_t b = 0;
    while (b < N_RELAY_BUCKETS && seconds > relay_buckets[b])
        b++;
    atomic_fetch_add(&m->relay[slot].duration_bucket[b], 1);
    pthread_mutex_unlock(&m->relay_lock);
}

void cv_metrics_count_tokenize_refused(struct cv_metrics *m, enum cv_metrics_tokenize_refusal why)
{
    if (m != NULL && (unsigned)why < CV_METRICS_REFUSED_COUNT)
        atomic_fetch_add(&m->tokenize_refused[why], 1);
}

/* The page's size is fixed by the arrays above (routes x codes x buckets,
 * one line each: tens of KiB), so this cap is never reached; it only bounds
 * the buffer like every other text the service produces. */
#define PAGE_MAX_BYTES (1u << 20)

/* A label value in the text format: backslash, double quote and newline
 * escaped (the values are version strings, but they come from libraries). */
static cv_status append_label_value(struct cv_buf *o, const char *v)
{
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            CV_TRY(cv_buf_appendf(o, "\\%c", *p));
        else if (*p == '\n')
            CV_TRY(cv_buf_appendf(o, "\\n"));
        else
            CV_TRY(cv_buf_appendf(o, "%c", *p));
    }
    return CV_OK;
}

static cv_status render_build_info(struct cv_buf *o, const struct cv_metrics *m)
{
    CV_TRY(cv_buf_appendf(o, "# HELP cardvault_build_info The running build: its version and "
                             "the OpenSSL and libmicrohttpd versions it runs with.\n"
                             "# TYPE cardvault_build_info gauge\n"
                             "cardvault_build_info{version=\""));
    CV_TRY(append_label_value(o, m->version));
    CV_TRY(cv_buf_appendf(o, "\",openssl=\""));
    CV_TRY(append_label_value(o, m->openssl));
    CV_TRY(cv_buf_appendf(o, "\",libmicrohttpd=\""));
    CV_TRY(append_label_value(o, m->libmicrohttpd));
    return cv_buf_appendf(o, "\"} 1\n");
}

/* Open descriptors: the entries of /proc/self/fd, less the one this
 * listing holds open itself. -1 when unreadable. */
static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    const struct dirent *e;
    /* One scrape at a time reads its own DIR stream: readdir is safe here. */
    /* NOLINTNEXTLINE(concurrency-mt-unsafe) */
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

/* The process metrics of Prometheus client libraries (client_golang's
 * process collector): the same names, units and types. A value /proc does
 * not give is left out rather than shown as 0. */
static cv_status render_process(struct cv_buf *o, const struct cv_metrics *m)
{
    struct cv_proc_stat st;
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks > 0 && page > 0 && read_self_stat(&st))
        CV_TRY(cv_buf_appendf(
            o,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\n"
            "process_cpu_seconds_total %.2f\n"
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\n"
            "process_resident_memory_bytes %llu\n"
            "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
            "# TYPE process_virtual_memory_bytes gauge\n"
            "process_virtual_memory_bytes %llu\n",
            (double)(st.utime_ticks + st.stime_ticks) / (double)ticks,
            st.rss_pages * (unsigned long long)page, st.vsize_bytes));
    long fds = count_open_fds();
    if (fds >= 0)
        CV_TRY(cv_buf_appendf(o,
                              "# HELP process_open_fds Number of open file descriptors.\n"
                              "# TYPE process_open_fds gauge\n"
                              "process_open_fds %ld\n",
                              fds));
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        CV_TRY(cv_buf_appendf(o,
                              "# HELP process_max_fds Maximum number of open file descriptors.\n"
                              "# TYPE process_max_fds gauge\n"
                              "process_max_fds %llu\n",
                              (unsigned long long)rl.rlim_cur));
    if (m->start_time_s > 0.0)
        CV_TRY(cv_buf_appendf(o,
                              "# HELP process_start_time_seconds Start time of the process since "
                              "unix epoch in seconds.\n"
                              "# TYPE process_start_time_seconds gauge\n"
                              "process_start_time_seconds %.2f\n",
                              m->start_time_s));
    return CV_OK;
}

static cv_status render_relays(struct cv_buf *o, struct cv_metrics *m)
{
    cv_status st = cv_buf_appendf(
        o, "# HELP cardvault_relay_total Relays by destination and outcome (answered: the "
           "processor answered; refused: by the vault before sending; failed: sending failed).\n"
           "# TYPE cardvault_relay_total counter\n");
    pthread_mutex_lock(&m->relay_lock);
    for (size_t i = 0; i < m->relay_slots && st == CV_OK; i++)
        for (unsigned k = 0; k < CV_METRICS_RELAY_COUNT && st == CV_OK; k++)
            st =
                cv_buf_appendf(o, "cardvault_relay_total{destination=\"%s\",outcome=\"%s\"} %llu\n",
                               m->relay[i].name, relay_outcome_names[k],
                               (unsigned long long)atomic_load(&m->relay[i].n[k]));
    if (st == CV_OK)
        st = cv_buf_appendf(o, "# HELP cardvault_relay_duration_seconds_total Time spent in relays "
                               "by destination.\n"
                               "# TYPE cardvault_relay_duration_seconds_total counter\n");
    for (size_t i = 0; i < m->relay_slots && st == CV_OK; i++)
        st = cv_buf_appendf(o, "cardvault_relay_duration_seconds_total{destination=\"%s\"} %.6f\n",
                            m->relay[i].name,
                            (double)atomic_load(&m->relay[i].duration_sum_us) / 1e6);
    if (st == CV_OK)
        st = cv_buf_appendf(o, "# HELP cardvault_relay_duration_seconds Relay durations by "
                               "destination, from the request to the processor's whole answer or "
                               "the failure.\n"
                               "# TYPE cardvault_relay_duration_seconds histogram\n");
    for (size_t i = 0; i < m->relay_slots && st == CV_OK; i++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_RELAY_BUCKETS && st == CV_OK; b++) {
            cum += atomic_load(&m->relay[i].duration_bucket[b]);
            char le[16];
            if (b < N_RELAY_BUCKETS)
                snprintf(le, sizeof(le), "%g", relay_buckets[b]);
            else
                snprintf(le, sizeof(le), "+Inf");
            st = cv_buf_appendf(o,
                                "cardvault_relay_duration_seconds_bucket{destination=\"%s\","
                                "le=\"%s\"} %llu\n",
                                m->relay[i].name, le, (unsigned long long)cum);
        }
        if (st == CV_OK)
            st = cv_buf_appendf(o,
                                "cardvault_relay_duration_seconds_sum{destination=\"%s\"} %.6f\n"
                                "cardvault_relay_duration_seconds_count{destination=\"%s\"} "
                                "%llu\n",
                                m->relay[i].name,
                                (double)atomic_load(&m->relay[i].duration_sum_us) / 1e6,
                                m->relay[i].name, (unsigned long long)cum);
    }
    pthread_mutex_unlock(&m->relay_lock);
    return st;
}

static cv_status render(struct cv_buf *o, struct cv_metrics *m, const struct cv_metrics_gauges *g)
{
    CV_TRY(render_build_info(o, m));
    CV_TRY(render_process(o, m));
    CV_TRY(cv_buf_appendf(
        o, "# HELP cardvault_http_requests_total HTTP requests by route and status.\n"
           "# TYPE cardvault_http_requests_total counter\n"));
    for (unsigned r = 0; r < CV_ROUTE_COUNT; r++)
        for (size_t c = 0; c < N_CODES; c++) {
            uint64_t v = atomic_load(&m->requests[r][c]);
            if (v == 0)
                continue;
            char code[8];
            snprintf(code, sizeof(code), "%d", codes[c]);
            CV_TRY(cv_buf_appendf(
                o, "cardvault_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                cv_route_pattern((enum cv_route_id)r), cv_route_method((enum cv_route_id)r),
                codes[c] == 0 ? "other" : code, (unsigned long long)v));
        }
    CV_TRY(cv_buf_appendf(
        o, "# HELP cardvault_http_request_duration_seconds Request latency by route.\n"
           "# TYPE cardvault_http_request_duration_seconds histogram\n"));
    for (unsigned r = 0; r < CV_ROUTE_COUNT; r++) {
        /* GET and DELETE share a pattern: the method keeps the series apart. */
        char lbl[160];
        snprintf(lbl, sizeof(lbl), "route=\"%s\",method=\"%s\"",
                 cv_route_pattern((enum cv_route_id)r), cv_route_method((enum cv_route_id)r));
        uint64_t cum = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cum += atomic_load(&m->latency_bucket[r][b]);
            CV_TRY(cv_buf_appendf(
                o, "cardvault_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n", lbl,
                buckets[b], (unsigned long long)cum));
        }
        cum += atomic_load(&m->latency_bucket[r][N_BUCKETS]);
        CV_TRY(cv_buf_appendf(
            o,
            "cardvault_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n"
            "cardvault_http_request_duration_seconds_sum{%s} %.6f\n"
            "cardvault_http_request_duration_seconds_count{%s} %llu\n",
            lbl, (unsigned long long)cum, lbl, (double)atomic_load(&m->latency_sum_us[r]) / 1e6,
            lbl, (unsigned long long)cum));
    }
    CV_TRY(cv_buf_appendf(o, "# HELP cardvault_errors_total Error responses by error code.\n"
                             "# TYPE cardvault_errors_total counter\n"));
    for (unsigned s = 1; s < CV_STATUS_COUNT; s++) {
        uint64_t v = atomic_load(&m->errors[s]);
        if (v > 0)
            CV_TRY(cv_buf_appendf(o, "cardvault_errors_total{code=\"%s\"} %llu\n",
                                  cv_status_name((cv_status)s), (unsigned long long)v));
    }
    CV_TRY(cv_buf_appendf(o, "# HELP cardvault_card_testing_suspected_total Keys seen tokenizing "
                             "many distinct cards that share a BIN and last 4 (bin_last4) or a "
                             "BIN and expiry (bin_expiry) within the detection window.\n"
                             "# TYPE cardvault_card_testing_suspected_total counter\n"));
    for (unsigned k = 0; k < CV_METRICS_SIGNAL_COUNT; k++)
        CV_TRY(cv_buf_appendf(o, "cardvault_card_testing_suspected_total{signal=\"%s\"} %llu\n",
                              signal_names[k],
                              (unsigned long long)atomic_load(&m->card_testing[k])));
    CV_TRY(cv_buf_appendf(o, "# HELP cardvault_tokenize_refused_total Tokenize requests refused "
                             "with tokenize_quota_exceeded, by reason.\n"
                             "# TYPE cardvault_tokenize_refused_total counter\n"));
    for (unsigned k = 0; k < CV_METRICS_REFUSED_COUNT; k++)
        CV_TRY(cv_buf_appendf(o, "cardvault_tokenize_refused_total{reason=\"%s\"} %llu\n",
                              refusal_names[k],
                              (unsigned long long)atomic_load(&m->tokenize_refused[k])));
    CV_TRY(render_relays(o, m));
    CV_TRY(cv_buf_appendf(
        o,
        "# HELP cardvault_tokenize_total Cards tokenized.\n"
        "# TYPE cardvault_tokenize_total counter\n"
        "cardvault_tokenize_total %llu\n"
        "# HELP cardvault_detokenize_total Successful detokenize requests.\n"
        "# TYPE cardvault_detokenize_total counter\n"
        "cardvault_detokenize_total %llu\n"
        "# HELP cardvault_auth_failures_total Requests with a missing, unknown or revoked key.\n"
        "# TYPE cardvault_auth_failures_total counter\n"
        "cardvault_auth_failures_total %llu\n"
        "# HELP cardvault_http_deadline_closed_total Connections closed because their request "
        "had not fully arrived within the request deadline.\n"
        "# TYPE cardvault_http_deadline_closed_total counter\n"
        "cardvault_http_deadline_closed_total %llu\n"
        "# HELP cardvault_tokens_purged_total Expired tokens deleted by the housekeeping "
        "purge.\n"
        "# TYPE cardvault_tokens_purged_total counter\n"
        "cardvault_tokens_purged_total %llu\n"
        "# HELP cardvault_readiness_probes_total Readiness checks run against the database and "
        "the KEK (cached answers are not counted).\n"
        "# TYPE cardvault_readiness_probes_total counter\n"
        "cardvault_readiness_probes_total %llu\n"
        "# HELP cardvault_db_pool_connections_in_use Database connections checked out.\n"
        "# TYPE cardvault_db_pool_connections_in_use gauge\n"
        "cardvault_db_pool_connections_in_use %u\n"
        "# HELP cardvault_db_pool_connections Database pool size.\n"
        "# TYPE cardvault_db_pool_connections gauge\n"
        "cardvault_db_pool_connections %u\n"
        "# HELP cardvault_dek_rotations_total Data-key rotations by this process.\n"
        "# TYPE cardvault_dek_rotations_total counter\n"
        "cardvault_dek_rotations_total %llu\n"
        "# HELP cardvault_ready 1 while serving, 0 once draining for shutdown.\n"
        "# TYPE cardvault_ready gauge\n"
        "cardvault_ready %d\n",
        (unsigned long long)atomic_load(&m->tokenized),
        (unsigned long long)atomic_load(&m->detokenized),
        (unsigned long long)atomic_load(&m->auth_failures),
        (unsigned long long)atomic_load(&m->deadline_closes),
        (unsigned long long)atomic_load(&m->tokens_purged),
        (unsigned long long)atomic_load(&m->readiness_probes), g->db_pool_in_use, g->db_pool_size,
        (unsigned long long)g->dek_rotations, g->ready));
    if (atomic_load(&m->tls_not_after) != 0)
        CV_TRY(cv_buf_appendf(
            o,
            "# HELP cardvault_tls_cert_not_after_seconds Expiry of the certificate the API "
            "listener serves (Unix time).\n"
            "# TYPE cardvault_tls_cert_not_after_seconds gauge\n"
            "cardvault_tls_cert_not_after_seconds %lld\n"
            "# HELP cardvault_tls_reloads_total Certificate reloads (SIGHUP), by result.\n"
            "# TYPE cardvault_tls_reloads_total counter\n"
            "cardvault_tls_reloads_total{result=\"ok\"} %llu\n"
            "cardvault_tls_reloads_total{result=\"refused\"} %llu\n",
            (long long)atomic_load(&m->tls_not_after),
            (unsigned long long)atomic_load(&m->tls_reloads_ok),
            (unsigned long long)atomic_load(&m->tls_reloads_refused)));
    if (g->sync_standby_known)
        CV_TRY(cv_buf_appendf(
            o,
            "# HELP cardvault_db_sync_standby 1 while the expected synchronous standby streams, 0 "
            "while the primary runs without one (a second failure would lose writes).\n"
            "# TYPE cardvault_db_sync_standby gauge\n"
            "cardvault_db_sync_standby %d\n",
            g->sync_standby ? 1 : 0));
    return CV_OK;
}

char *cv_metrics_render(struct cv_metrics *m, const struct cv_metrics_gauges *g, size_t *len)
{
    struct cv_buf o;
    cv_buf_init(&o, PAGE_MAX_BYTES);
    cv_status st = render(&o, m, g);
    assert(st == CV_OK); /* the page is far below PAGE_MAX_BYTES, see above */
    (void)st;
    return cv_buf_take(&o, len);
}
