/* test_metrics.c: the Prometheus text exposition (format 0.0.4). After a
 * few observations the counters and histogram show exactly what was
 * observed; every line is a comment or a sample "name{labels} value"; every
 * sample's family was announced by # TYPE; histogram buckets are cumulative
 * and end in +Inf == _count; no value is NaN or infinite; the build-info
 * gauge names the build; the process metrics carry the names Prometheus
 * client libraries use and sane values; a 5 s wait has a bucket of its own.
 * Hostile twins: out-of-range route ids, unknown HTTP codes and statuses, a
 * histogram observation beyond the last bucket, label values with quotes
 * and newlines, and /proc/self/stat text that is truncated, not numeric or
 * has a command name with ") " in it. */
#include "cardvault/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static char *render(struct cv_metrics *m, size_t *len)
{
    struct cv_metrics_gauges g = {
        .db_pool_in_use = 3, .db_pool_size = 8, .dek_rotations = 2, .ready = 1};
    char *text = cv_metrics_render(m, &g, len);
    CHECK(text != NULL);
    CHECK_EQ_INT(strlen(text), *len);
    return text;
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p != NULL; p = strstr(p + 1, line)) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    }
    fprintf(stderr, "  missing line: %s\n", line);
    return false;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Parses one sample line: name, optional {k="v",...}, one space, a value
 * that strtod consumes entirely. Fills name and value. */
static bool parse_sample(const char *line, char *name, size_t name_cap, double *value)
{
    const char *p = line;
    size_t n = 0;
    if (!name_char(*p, true))
        return false;
    while (name_char(*p, n == 0) && n + 1 < name_cap)
        name[n++] = *p++;
    name[n] = '\0';
    if (*p == '{') {
        p++;
        for (;;) {
            if (!name_char(*p, true))
                return false;
            while (name_char(*p, false))
                p++;
            if (p[0] != '=' || p[1] != '"')
                return false;
            p += 2;
            while (*p != '"') {
                if (*p == '\0' || *p == '\n')
                    return false;
                if (*p == '\\')
                    p++;
                p++;
            }
            p++;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == '}') {
                p++;
                break;
            }
            return false;
        }
    }
    if (*p != ' ' || p[1] == ' ' || p[1] == '\0')
        return false;
    char *end = NULL;
    *value = strtod(p + 1, &end);
    return end != NULL && *end == '\0' && end != p + 1;
}

/* Checks every line of the exposition; returns the number of samples. */
static int check_shape(const char *text)
{
    char typed[64][96];
    int n_typed = 0, samples = 0;
    const char *p = text;
    CHECK(*text != '\0' && text[strlen(text) - 1] == '\n');
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        char line[512];
        CHECK(len < sizeof(line));
        if (len >= sizeof(line))
            return samples;
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (nl != NULL);
        CHECK(len > 0); /* no blank lines */
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char fam[96], kind[32];
            CHECK_EQ_INT(sscanf(line + 7, "%95s %31s", fam, kind), 2);
            CHECK(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0 ||
                  strcmp(kind, "histogram") == 0);
            if (n_typed < 64)
                snprintf(typed[n_typed++], sizeof(typed[0]), "%s", fam);
            continue;
        }
        CHECK(line[0] != '#');
        char name[128];
        double v = 0;
        bool ok = parse_sample(line, name, sizeof(name), &v);
        if (!ok)
            fprintf(stderr, "  malformed sample: %s\n", line);
        CHECK(ok);
        if (!ok)
            continue;
        samples++;
        CHECK(!isnan(v) && !isinf(v));
        CHECK(v >= 0);
        CHECK(strstr(line, "nan") == NULL && strstr(line, "NaN") == NULL);
        /* The sample's family (name without a histogram suffix) was typed. */
        bool known = false;
        for (int i = 0; i < n_typed && !known; i++) {
            size_t fl = strlen(typed[i]);
            known = strncmp(name, typed[i], fl) == 0 &&
                    (name[fl] == '\0' || strcmp(name + fl, "_bucket") == 0 ||
                     strcmp(name + fl, "_sum") == 0 || strcmp(name + fl, "_count") == 0);
        }
        if (!known)
            fprintf(stderr, "  sample without # TYPE: %s\n", name);
        CHECK(known);
    }
    return samples;
}

/* Value of the sample line that starts with prefix ("name{...} "), or -1. */
static double sample_value(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = strstr(text, prefix); p != NULL; p = strstr(p + 1, prefix)) {
        if (p == text || p[-1] == '\n')
            return strtod(p + n, NULL);
    }
    return -1;
}

static void fresh_metrics_render_a_valid_exposition(void)
{
    struct cv_metrics *m = cv_metrics_new();
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(text, "cardvault_tokenize_total 0"));
    CHECK(has_line(text, "cardvault_db_pool_connections_in_use 3"));
    CHECK(has_line(text, "cardvault_db_pool_connections 8"));
    CHECK(has_line(text, "cardvault_dek_rotations_total 2"));
    CHECK(has_line(text, "cardvault_ready 1"));
    /* No request observed: no per-status request counters yet. */
    CHECK(strstr(text, "cardvault_http_requests_total{") == NULL);
    free(text);
    cv_metrics_free(m);
}

static void observations_show_up_in_counters_and_histogram(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_observe_request(m, CV_ROUTE_TOKENIZE, 201, CV_OK, 0.0003);
    cv_metrics_observe_request(m, CV_ROUTE_TOKENIZE, 201, CV_OK, 0.004);
    cv_metrics_observe_request(m, CV_ROUTE_TOKENIZE, 400, CV_ERR_INVALID_PAN, 0.0002);
    cv_metrics_observe_request(m, CV_ROUTE_DETOKENIZE, 200, CV_OK, 0.02);
    cv_metrics_observe_request(m, CV_ROUTE_READ, 404, CV_ERR_NOT_FOUND, 0.001);
    cv_metrics_count_auth_failure(m);
    cv_metrics_count_auth_failure(m);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(
        text,
        "cardvault_http_requests_total{route=\"/v1/tokens\",method=\"POST\",status=\"201\"} 2"));
    CHECK(has_line(
        text,
        "cardvault_http_requests_total{route=\"/v1/tokens\",method=\"POST\",status=\"400\"} 1"));
    CHECK(has_line(text, "cardvault_http_requests_total{route=\"/v1/tokens/{token}/detokenize\","
                         "method=\"POST\",status=\"200\"} 1"));
    CHECK(has_line(text, "cardvault_http_requests_total{route=\"/v1/tokens/{token}\","
                         "method=\"GET\",status=\"404\"} 1"));
    CHECK(has_line(text, "cardvault_errors_total{code=\"invalid_pan\"} 1"));
    CHECK(has_line(text, "cardvault_tokenize_total 2"));
    CHECK(has_line(text, "cardvault_detokenize_total 1"));
    CHECK(has_line(text, "cardvault_auth_failures_total 2"));
    /* 0.0002 and 0.0003 fall in le=0.0005, 0.004 in le=0.005: cumulative counts. */
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\","
              "le=\"0.0005\"} 2"));
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\","
              "le=\"0.0025\"} 2"));
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\","
              "le=\"0.005\"} 3"));
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\",method=\"POST\","
              "le=\"+Inf\"} 3"));
    CHECK(has_line(
        text,
        "cardvault_http_request_duration_seconds_count{route=\"/v1/tokens\",method=\"POST\"} 3"));
    double sum = sample_value(
        text, "cardvault_http_request_duration_seconds_sum{route=\"/v1/tokens\",method=\"POST\"} ");
    CHECK(sum > 0.0044 && sum < 0.0046);
    /* A success is not an error. */
    CHECK(strstr(text, "cardvault_errors_total{code=\"ok\"}") == NULL);
    free(text);
    cv_metrics_free(m);
}

static void histogram_buckets_are_cumulative_and_end_at_count(void)
{
    struct cv_metrics *m = cv_metrics_new();
    const double secs[] = {0, 0.0005, 0.00051, 0.003, 0.07, 0.3, 0.9, 2.0, 2.5, 7.0, 3600.0};
    for (size_t i = 0; i < sizeof(secs) / sizeof(secs[0]); i++)
        cv_metrics_observe_request(m, CV_ROUTE_HEALTHZ, 200, CV_OK, secs[i]);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    const char *prefix =
        "cardvault_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\",le=\"";
    double prev = -1;
    int buckets = 0;
    for (const char *p = strstr(text, prefix); p != NULL; p = strstr(p + 1, prefix)) {
        const char *v = strstr(p, "} ");
        double x = strtod(v + 2, NULL);
        CHECK(x >= prev);
        prev = x;
        buckets++;
    }
    CHECK(buckets >= 2);
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\","
              "le=\"+Inf\"} 11"));
    CHECK(has_line(
        text,
        "cardvault_http_request_duration_seconds_count{route=\"/healthz\",method=\"GET\"} 11"));
    /* le="0.0005" includes the observation of exactly 0.0005 (upper bounds are inclusive). */
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\","
              "le=\"0.0005\"} 2"));
    CHECK(has_line(
        text, "cardvault_http_request_duration_seconds_bucket{route=\"/healthz\",method=\"GET\","
              "le=\"2.5\"} 9"));
    free(text);
    cv_metrics_free(m);
}

static void hostile_route_code_and_status_values_are_contained(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_observe_request(m, (enum cv_route_id)12345, 418, CV_ERR_INTERNAL, 0.001);
    cv_metrics_observe_request(m, (enum cv_route_id) - 1, -7, (cv_status)9999, 0.001);
    cv_metrics_observe_request(m, CV_ROUTE_COUNT, 999, (cv_status)-3, 0.001);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(
        text,
        "cardvault_http_requests_total{route=\"unmatched\",method=\"other\",status=\"other\"} 3"));
    CHECK(has_line(text, "cardvault_errors_total{code=\"internal_error\"} 1"));
    CHECK(strstr(text, "418") == NULL && strstr(text, "12345") == NULL);
    free(text);
    cv_metrics_free(m);
}

static void render_grows_its_buffer_past_the_first_block(void)
{
    /* Every route, every status code and every error: the text passes the
     * 16 KiB first allocation and must come out whole. */
    static const int codes[] = {200, 201, 204, 400, 401, 403, 404, 405,
                                409, 410, 413, 415, 429, 500, 503, 302};
    struct cv_metrics *m = cv_metrics_new();
    for (int r = 0; r < CV_ROUTE_COUNT; r++)
        for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++)
            cv_metrics_observe_request(m, (enum cv_route_id)r, codes[c], CV_OK, 0.01);
    for (int s = 1; s < CV_STATUS_COUNT; s++)
        cv_metrics_observe_request(m, CV_ROUTE_UNMATCHED, 500, (cv_status)s, 0.01);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(len > 16384);
    CHECK(check_shape(text) > CV_ROUTE_COUNT * 16);
    CHECK(has_line(text, "cardvault_ready 1"));
    free(text);
    cv_metrics_free(m);
}

static void build_info_names_the_build(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_set_build_info(m, "1.2.3-4-gabcdef0-dirty", "3.0.11", "0.9.75");
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(text, "# TYPE cardvault_build_info gauge"));
    CHECK(has_line(text, "cardvault_build_info{version=\"1.2.3-4-gabcdef0-dirty\","
                         "openssl=\"3.0.11\",libmicrohttpd=\"0.9.75\"} 1"));
    free(text);
    cv_metrics_free(m);
}

static void build_info_escapes_quotes_backslashes_and_newlines(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_set_build_info(m, "a\"b", "c\\d", "e\nf");
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(text, "cardvault_build_info{version=\"a\\\"b\",openssl=\"c\\\\d\","
                         "libmicrohttpd=\"e\\nf\"} 1"));
    free(text);
    /* Longer than a label may be: cut, still one valid line. */
    char longv[200];
    memset(longv, 'v', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    cv_metrics_set_build_info(m, longv, NULL, "");
    text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(strstr(text, "openssl=\"unknown\"") != NULL);
    CHECK(strstr(text, "libmicrohttpd=\"\"} 1") != NULL);
    free(text);
    cv_metrics_free(m);
}

static void process_metrics_have_client_library_names_and_sane_values(void)
{
    struct cv_metrics *m = cv_metrics_new();
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    CHECK(has_line(text, "# TYPE process_cpu_seconds_total counter"));
    CHECK(has_line(text, "# TYPE process_resident_memory_bytes gauge"));
    CHECK(has_line(text, "# TYPE process_virtual_memory_bytes gauge"));
    CHECK(has_line(text, "# TYPE process_open_fds gauge"));
    CHECK(has_line(text, "# TYPE process_max_fds gauge"));
    CHECK(has_line(text, "# TYPE process_start_time_seconds gauge"));
    double cpu = sample_value(text, "process_cpu_seconds_total ");
    double rss = sample_value(text, "process_resident_memory_bytes ");
    double vsz = sample_value(text, "process_virtual_memory_bytes ");
    double fds = sample_value(text, "process_open_fds ");
    double max_fds = sample_value(text, "process_max_fds ");
    double start = sample_value(text, "process_start_time_seconds ");
    CHECK(cpu >= 0.0 && cpu < 3600.0);
    CHECK(rss > 1024.0 * 1024.0); /* a process with libc, OpenSSL, libpq mapped */
    CHECK(vsz >= rss);
    CHECK(fds >= 3.0 && fds <= max_fds); /* stdin, stdout, stderr at least */
    double now = (double)time(NULL);
    CHECK(start > now - 3600.0 && start <= now + 1.0); /* this test started moments ago */
    free(text);
    cv_metrics_free(m);
}

static void five_second_waits_land_below_inf(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_observe_request(m, CV_ROUTE_TOKENIZE, 503, CV_ERR_DB_UNAVAILABLE, 4.9);
    cv_metrics_observe_request(m, CV_ROUTE_TOKENIZE, 201, CV_OK, 5.2);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(check_shape(text) > 0);
    const char *pre = "cardvault_http_request_duration_seconds_bucket{route=\"/v1/tokens\","
                      "method=\"POST\",";
    char line[256];
    snprintf(line, sizeof(line), "%sle=\"2.5\"} 0", pre);
    CHECK(has_line(text, line));
    snprintf(line, sizeof(line), "%sle=\"5\"} 1", pre);
    CHECK(has_line(text, line));
    snprintf(line, sizeof(line), "%sle=\"10\"} 2", pre);
    CHECK(has_line(text, line));
    free(text);
    cv_metrics_free(m);
}

static void proc_stat_parses_fields_after_the_last_paren(void)
{
    /* proc(5) fields 1-24; the command name holds ") (" and spaces. */
    const char *line = "4242 (a) (b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
                       "250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 1 1 0\n";
    struct cv_proc_stat st;
    CHECK_EQ_INT(cv_metrics_parse_proc_stat(line, strlen(line), &st), CV_OK);
    CHECK_EQ_INT(st.utime_ticks, 250);
    CHECK_EQ_INT(st.stime_ticks, 75);
    CHECK_EQ_INT(st.start_ticks, 123456);
    CHECK_EQ_INT(st.vsize_bytes, 987654321);
    CHECK_EQ_INT(st.rss_pages, 2048);
}

static void proc_stat_refuses_truncated_or_garbled_text(void)
{
    struct cv_proc_stat st;
    const char *full = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 2048\n";
    /* Every truncation before the rss field ends is refused (or, cut inside
     * the last number, reads fewer digits: never past len). */
    size_t rss_at = strlen(full) - strlen("2048\n");
    for (size_t n = 0; n < rss_at; n++)
        CHECK(cv_metrics_parse_proc_stat(full, n, &st) != CV_OK);
    CHECK_EQ_INT(cv_metrics_parse_proc_stat(full, rss_at + 2, &st), CV_OK);
    CHECK_EQ_INT(st.rss_pages, 20);
    const char *letters = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 25x 75 0 0 20 0 9 0 123456 987654321 2048";
    CHECK(cv_metrics_parse_proc_stat(letters, strlen(letters), &st) != CV_OK);
    const char *no_paren = "1 x S 1 1 1 0 -1 0 0 0 0 0 250 75 0 0 20 0 9 0 123456 987654321 2048";
    CHECK(cv_metrics_parse_proc_stat(no_paren, strlen(no_paren), &st) != CV_OK);
    const char *two_spaces = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 250  75 0 0 20 0 9 0 123456 9876 2048";
    CHECK(cv_metrics_parse_proc_stat(two_spaces, strlen(two_spaces), &st) != CV_OK);
    const char *huge = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 99999999999999999999999 75 0 0 20 0 9 0 1 2 3";
    CHECK(cv_metrics_parse_proc_stat(huge, strlen(huge), &st) != CV_OK);
}

static void free_accepts_null(void)
{
    cv_metrics_free(NULL);
}

static void relay_durations_fill_a_histogram_by_destination(void)
{
    struct cv_metrics *m = cv_metrics_new();
    cv_metrics_count_relay(m, "acme", CV_METRICS_RELAY_ANSWERED, 0.3);
    cv_metrics_count_relay(m, "acme", CV_METRICS_RELAY_FAILED, 7.0);
    cv_metrics_count_relay(m, "acme", CV_METRICS_RELAY_FAILED, 500.0);
    size_t len = 0;
    char *text = render(m, &len);
    CHECK(has_line(text, "# TYPE cardvault_relay_duration_seconds histogram"));
    CHECK(has_line(text,
                   "cardvault_relay_duration_seconds_bucket{destination=\"acme\",le=\"0.25\"} 0"));
    CHECK(has_line(text,
                   "cardvault_relay_duration_seconds_bucket{destination=\"acme\",le=\"0.5\"} 1"));
    CHECK(has_line(text,
                   "cardvault_relay_duration_seconds_bucket{destination=\"acme\",le=\"10\"} 2"));
    CHECK(has_line(text,
                   "cardvault_relay_duration_seconds_bucket{destination=\"acme\",le=\"120\"} 2"));
    CHECK(has_line(text,
                   "cardvault_relay_duration_seconds_bucket{destination=\"acme\",le=\"+Inf\"} 3"));
    CHECK(has_line(text, "cardvault_relay_duration_seconds_count{destination=\"acme\"} 3"));
    CHECK(has_line(text, "cardvault_relay_duration_seconds_sum{destination=\"acme\"} 507.300000"));
    free(text);
    cv_metrics_free(m);
}

int main(void)
{
    RUN(fresh_metrics_render_a_valid_exposition);
    RUN(observations_show_up_in_counters_and_histogram);
    RUN(histogram_buckets_are_cumulative_and_end_at_count);
    RUN(hostile_route_code_and_status_values_are_contained);
    RUN(render_grows_its_buffer_past_the_first_block);
    RUN(build_info_names_the_build);
    RUN(build_info_escapes_quotes_backslashes_and_newlines);
    RUN(process_metrics_have_client_library_names_and_sane_values);
    RUN(five_second_waits_land_below_inf);
    RUN(proc_stat_parses_fields_after_the_last_paren);
    RUN(proc_stat_refuses_truncated_or_garbled_text);
    RUN(relay_durations_fill_a_histogram_by_destination);
    RUN(free_accepts_null);
    return check_summary("metrics");
}
