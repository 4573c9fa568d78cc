/* bench/relay_client.c: the relay's outbound client (cv_relay_client_send)
 * against the fake processor, and in the same run its limit: a bare libcurl
 * client with the same TLS work per request (a new connection and a full
 * mutual-TLS handshake each time, as the relay does) at the same fake.
 * Run by bench/relay.sh, which makes the PKI and starts the fake:
 *
 *   relay_client PKI_DIR PORT SECONDS THREADS
 *
 * Prints one JSON object: for "limit" and "relay", requests, errors, rate
 * (per second) and the p50/p99 latency in milliseconds. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/handler.h"
#include "cardvault/relay_client.h"
#include "cardvault/relay_dest.h"

#define LAT_MAX 200000

static const char BODY[] =
    "{\"amount\":1000,\"currency\":\"EUR\",\"card\":{\"number\":"
    "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"}}";

static struct cv_relay_destinations DESTS;
static const struct cv_relay_destination *DEST;
static const char *PKI;
static double SECONDS_RUN;

struct worker {
    pthread_t thread;
    bool relay;
    size_t n, errors;
    double *lat_ms;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

/* The limit: what any client pays for one request over a fresh mutual-TLS
 * connection to this processor. */
static bool direct_once(void)
{
    char url[256], ca[1024], cert[1024], key[1024], resolve[128];
    snprintf(url, sizeof(url), "%s/v1/charges", DEST->url);
    snprintf(ca, sizeof(ca), "%s/ca.pem", PKI);
    snprintf(cert, sizeof(cert), "%s/client.pem", PKI);
    snprintf(key, sizeof(key), "%s/client.key", PKI);
    snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", DEST->host, DEST->port);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return false;
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, res);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, BODY);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(BODY));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    curl_slist_free_all(res);
    curl_slist_free_all(hdr);
    return rc == CURLE_OK && code == 200;
}

static char CT_NAME[] = "Content-Type";
static char CT_VALUE[] = "application/json";
static const struct cv_relay_header CT[] = {{.name = CT_NAME, .value = CT_VALUE}};

static bool relay_once(void)
{
    struct cv_relay_outbound req = {
        .destination = DEST->name,
        .method = "POST",
        .path = "/v1/charges",
        .headers = CT,
        .n_headers = 1,
        .body = (const unsigned char *)BODY,
        .body_len = strlen(BODY),
        .request_id = "bench",
    };
    struct cv_relay_answer ans;
    bool maybe_sent = false;
    cv_status st = cv_relay_client_send(DEST, &req, &ans, &maybe_sent);
    bool ok = st == CV_OK && ans.status == 200;
    if (st == CV_OK)
        cv_relay_answer_cleanup(&ans);
    return ok;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    double end = now_s() + SECONDS_RUN;
    for (;;) {
        double t0 = now_s();
        if (t0 >= end)
            break;
        bool ok = w->relay ? relay_once() : direct_once();
        if (!ok)
            w->errors++;
        else if (w->n < LAT_MAX)
            w->lat_ms[w->n++] = (now_s() - t0) * 1000.0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One phase: threads workers for SECONDS_RUN; prints its JSON member. */
static void phase(const char *label, bool relay, int threads, bool last)
{
    struct worker *ws = calloc((size_t)threads, sizeof(*ws));
    if (ws == NULL)
        exit(2);
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        ws[i].relay = relay;
        ws[i].lat_ms = calloc(LAT_MAX, sizeof(double));
        if (ws[i].lat_ms == NULL || pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0)
            exit(2);
    }
    size_t n = 0, errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ws[i].thread, NULL);
        n += ws[i].n;
        errors += ws[i].errors;
    }
    double elapsed = now_s() - t0;
    double *all = calloc(n + 1, sizeof(double));
    if (all == NULL)
        exit(2);
    size_t k = 0;
    for (int i = 0; i < threads; i++) {
        memcpy(all + k, ws[i].lat_ms, ws[i].n * sizeof(double));
        k += ws[i].n;
        free(ws[i].lat_ms);
    }
    free(ws);
    qsort(all, n, sizeof(double), cmp_double);
    double p50 = n > 0 ? all[n / 2] : 0, p99 = n > 0 ? all[(n * 99) / 100] : 0;
    free(all);
    printf("  \"%s\": {\"requests\": %zu, \"errors\": %zu, \"rate\": %.1f, \"p50_ms\": %.2f, "
           "\"p99_ms\": %.2f}%s\n",
           label, n, errors, (double)n / elapsed, p50, p99, last ? "" : ",");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: relay_client PKI_DIR PORT SECONDS THREADS\n");
        return 2;
    }
    PKI = argv[1];
    SECONDS_RUN = strtod(argv[3], NULL);
    int threads = (int)strtol(argv[4], NULL, 10);
    if (SECONDS_RUN <= 0 || threads < 1 || threads > 64)
        return 2;
    char json[4096], why[256] = "";
    snprintf(json, sizeof(json),
             "{\"destinations\": [{\"name\": \"bench\", \"url\": \"https://processor.test:%s\", "
             "\"methods\": [\"POST\"], \"paths\": [\"/v1/charges\"], \"resolve\": \"127.0.0.1\", "
             "\"ca_file\": \"%s/ca.pem\", \"client_cert\": \"%s/client.pem\", "
             "\"client_key\": \"%s/client.key\", \"timeout_ms\": 5000}]}",
             argv[2], PKI, PKI, PKI);
    if (cv_relay_client_init() != CV_OK ||
        cv_relay_destinations_parse(json, strlen(json), &DESTS, why, sizeof(why)) != CV_OK) {
        fprintf(stderr, "relay_client: set-up failed: %s\n", why);
        return 2;
    }
    DEST = cv_relay_destinations_find(&DESTS, "bench");
    printf("{\n  \"threads\": %d, \"seconds\": %.1f,\n", threads, SECONDS_RUN);
    /* limit, relay, limit again: the two limits bracket the relay run, so a
     * machine that changed under the run shows as two different limits */
    phase("limit", false, threads, false);
    phase("relay", true, threads, false);
    phase("limit_after", false, threads, true);
    printf("}\n");
    cv_relay_destinations_free(&DESTS);
    cv_relay_client_shutdown();
    return 0;
}
