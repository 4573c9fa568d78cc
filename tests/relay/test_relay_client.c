/* The relay client (relay_client.c) against the fake processor
 * (tests/relay/fake_processor.py), below the HTTP API: the exact body
 * arrives; what the destination does not list is refused with no TCP
 * connection; a redirect is not followed; a wrong host name, an untrusted CA
 * and a missing client certificate fail before the processor reads any
 * request; a pin mismatch fails; slow, silent, oversized and reset answers
 * each give their own status. Started by tests/relay/run.sh, which makes the
 * test PKI, starts three fakes and passes (in the environment):
 *   RELAY_PKI          the PKI directory (make-pki.sh)
 *   RELAY_PORT_GOOD    processor.test from the test CA, client certificate required
 *   RELAY_PORT_WRONG   a certificate for other.test
 *   RELAY_PORT_ROGUE   processor.test from a CA nobody trusts
 *   RELAY_PORT_WEAK    processor.test from the test CA, TLS 1.2 with a CBC suite only
 *   RELAY_PORT_CLOSED  a port nothing listens on
 *   RELAY_REC_GOOD, RELAY_CNT_GOOD, RELAY_REC_WRONG, RELAY_CNT_WRONG,
 *   RELAY_REC_ROGUE, RELAY_CNT_ROGUE, RELAY_REC_WEAK, RELAY_CNT_WEAK   each fake's request record
 * and connection count */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/handler.h"
#include "cardvault/relay_client.h"
#include "cardvault/relay_dest.h"
#include "check.h"

static struct cv_relay_destinations DESTS;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL) {
        fprintf(stderr, "relay-client: %s is not set (run tests/relay/run.sh)\n", name);
        exit(2);
    }
    return v;
}

static long read_count(const char *file)
{
    FILE *f = fopen(file, "r");
    long n = -1;
    if (f != NULL) {
        if (fscanf(f, "%ld", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

/* The number of requests the fake has recorded, and the last one (a new
 * reference, or NULL). */
static size_t read_record(const char *file, json_t **last)
{
    FILE *f = fopen(file, "r");
    size_t n = 0;
    if (last != NULL)
        *last = NULL;
    if (f == NULL)
        return 0;
    static char line[1 << 16];
    while (fgets(line, sizeof(line), f) != NULL) {
        n++;
        if (last != NULL) {
            json_decref(*last);
            *last = json_loads(line, 0, NULL);
        }
    }
    fclose(f);
    return n;
}

static const struct cv_relay_destination *dest(const char *name)
{
    const struct cv_relay_destination *d = cv_relay_destinations_find(&DESTS, name);
    if (d == NULL) {
        fprintf(stderr, "relay-client: no destination %s in the test list\n", name);
        exit(2);
    }
    return d;
}

static char CT_NAME[] = "Content-Type";
static char CT_VALUE[] = "application/json";
static const struct cv_relay_header JSON_CT[] = {{.name = CT_NAME, .value = CT_VALUE}};

/* Sends body by POST to path at the destination named so. */
static cv_status send_to(const char *name, const char *method, const char *path, const char *body,
                         struct cv_relay_answer *ans, bool *maybe_sent)
{
    struct cv_relay_outbound req = {
        .destination = name,
        .method = method,
        .path = path,
        .headers = JSON_CT,
        .n_headers = 1,
        .body = (const unsigned char *)body,
        .body_len = body != NULL ? strlen(body) : 0,
        .request_id = "req_test",
    };
    return cv_relay_client_send(dest(name), &req, ans, maybe_sent);
}

static const char CHARGE[] =
    "{\"amount\":1000,\"card\":{\"number\":\"4242424242424242\",\"cvc\":\"123\",\"exp\":\"12/30\"},"
    "\"note\":\"caf\xc3\xa9 \\\"quoted\\\" \\\\ back\"}";

/* The good fake's counters before a call, to compare after it. */
struct snap {
    long conns;
    size_t reqs;
};

static struct snap snap_good(void)
{
    struct snap s = {read_count(env("RELAY_CNT_GOOD")), read_record(env("RELAY_REC_GOOD"), NULL)};
    return s;
}

static void exact_body_arrives(void)
{
    struct snap before = snap_good();
    struct cv_relay_answer ans;
    bool maybe_sent = true;
    CHECK_EQ_INT(send_to("acme", "POST", "/v1/charges?expand=x", CHARGE, &ans, &maybe_sent), CV_OK);
    CHECK_EQ_INT(ans.status, 200);
    CHECK(ans.body != NULL && strstr(ans.body, "\"succeeded\"") != NULL);
    bool ct = false;
    for (size_t i = 0; i < ans.n_headers; i++)
        if (strcmp(ans.headers[i].name, "content-type") == 0 &&
            strcmp(ans.headers[i].value, "application/json") == 0)
            ct = true;
    CHECK(ct);
    cv_relay_answer_cleanup(&ans);
    json_t *last = NULL;
    CHECK_EQ_INT(read_record(env("RELAY_REC_GOOD"), &last), before.reqs + 1);
    CHECK(last != NULL);
    if (last != NULL) {
        const char *body = json_string_value(json_object_get(last, "body"));
        CHECK(body != NULL && strcmp(body, CHARGE) == 0);
        const char *method = json_string_value(json_object_get(last, "method"));
        CHECK(method != NULL && strcmp(method, "POST") == 0);
        const char *path = json_string_value(json_object_get(last, "path"));
        CHECK(path != NULL && strcmp(path, "/v1/charges?expand=x") == 0);
        json_t *h = json_object_get(last, "headers");
        const char *ctype = json_string_value(json_object_get(h, "content-type"));
        CHECK(ctype != NULL && strcmp(ctype, "application/json") == 0);
        const char *host = json_string_value(json_object_get(h, "host"));
        CHECK(host != NULL && strncmp(host, "processor.test", 14) == 0);
        CHECK(json_object_get(h, "expect") == NULL);
        CHECK(json_object_get(h, "cookie") == NULL);
        json_decref(last);
    }
    CHECK_EQ_INT(read_count(env("RELAY_CNT_GOOD")), before.conns + 1);
}

static void echo_comes_back_byte_for_byte(void)
{
    struct cv_relay_answer ans;
    bool maybe_sent = false;
    CHECK_EQ_INT(send_to("acme", "POST", "/v1/echo", CHARGE, &ans, &maybe_sent), CV_OK);
    CHECK_EQ_INT(ans.status, 200);
    CHECK_EQ_INT(ans.body_len, strlen(CHARGE));
    CHECK(ans.body != NULL && memcmp(ans.body, CHARGE, strlen(CHARGE)) == 0);
    cv_relay_answer_cleanup(&ans);
}

static void pinned_key_that_matches_is_sent(void)
{
    struct cv_relay_answer ans;
    bool maybe_sent = false;
    CHECK_EQ_INT(send_to("pinned", "POST", "/v1/charges", CHARGE, &ans, &maybe_sent), CV_OK);
    CHECK_EQ_INT(ans.status, 200);
    cv_relay_answer_cleanup(&ans);
}

/* Not on the list: refused, and the processor never sees a connection. */
static void unlisted_method_or_path_makes_no_connection(void)
{
    static const char *const cases[][2] = {
        {"GET", "/v1/charges"},
        {"DELETE", "/v1/charges"},
        {"POST", "/v1/refunds"},
        {"POST", "/v1/chargesX"},
        {"POST", "/v1/charges/../x"},
        {"POST", "/v1/charges%2f..%2fx"},
        {"POST", "//evil.test/v1/charges"},
        {"POST", "/v1/charges#frag"},
        {"POST", "v1/charges"},
        {"POST", "/v1/charges\\x"},
        {"TRACE", "/v1/charges"},
        {"POST", "/v1/charges x"},
    };
    struct snap before = snap_good();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_relay_answer ans;
        bool maybe_sent = true;
        cv_status st = send_to("acme", cases[i][0], cases[i][1], CHARGE, &ans, &maybe_sent);
        if (st != CV_ERR_RELAY_NOT_ALLOWED)
            fprintf(stderr, "  %s %s: status %d\n", cases[i][0], cases[i][1], (int)st);
        CHECK_EQ_INT(st, CV_ERR_RELAY_NOT_ALLOWED);
        CHECK(!maybe_sent);
        CHECK(ans.body == NULL && ans.n_headers == 0);
    }
    /* A destination that is not listed is not found, so nothing to send to. */
    CHECK(cv_relay_destinations_find(&DESTS, "evil") == NULL);
    CHECK(cv_relay_destinations_find(&DESTS, "ACME") == NULL);
    CHECK(cv_relay_destinations_find(&DESTS, "") == NULL);
    struct snap after = snap_good();
    CHECK_EQ_INT(after.conns, before.conns);
    CHECK_EQ_INT(after.reqs, before.reqs);
}

static void oversized_request_makes_no_connection(void)
{
    struct snap before = snap_good();
    size_t n = dest("small")->max_request_bytes + 1;
    char *big = calloc(n + 1, 1);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'a', n);
    struct cv_relay_answer ans;
    bool maybe_sent = true;
    CHECK_EQ_INT(send_to("small", "POST", "/v1/charges", big, &ans, &maybe_sent),
                 CV_ERR_BODY_TOO_LARGE);
    CHECK(!maybe_sent);
    free(big);
    struct snap after = snap_good();
    CHECK_EQ_INT(after.conns, before.conns);
    CHECK_EQ_INT(after.reqs, before.reqs);
}

static void redirect_is_not_followed(void)
{
    struct snap before = snap_good();
    struct cv_relay_answer ans;
    bool maybe_sent = false;
    CHECK_EQ_INT(send_to("acme", "POST", "/v1/redirect", CHARGE, &ans, &maybe_sent),
                 CV_ERR_RELAY_REDIRECT);
    CHECK(maybe_sent);
    CHECK(ans.body == NULL);
    json_t *last = NULL;
    /* one request (the redirect itself), never a second one to its Location */
    CHECK_EQ_INT(read_record(env("RELAY_REC_GOOD"), &last), before.reqs + 1);
    const char *path = json_string_value(json_object_get(last, "path"));
    CHECK(path != NULL && strcmp(path, "/v1/redirect") == 0);
    json_decref(last);
    CHECK_EQ_INT(read_count(env("RELAY_CNT_GOOD")), before.conns + 1);
}

/* A TLS failure: the connection is made, the handshake fails, the processor
 * records no request. */
static void tls_fails_before_any_request(const char *name, const char *rec, const char *cnt)
{
    long conns = read_count(cnt);
    size_t reqs = read_record(rec, NULL);
    struct cv_relay_answer ans;
    bool maybe_sent = true;
    cv_status st = send_to(name, "POST", "/v1/charges", CHARGE, &ans, &maybe_sent);
    if (st != CV_ERR_RELAY_TLS)
        fprintf(stderr, "  %s: status %d\n", name, (int)st);
    CHECK_EQ_INT(st, CV_ERR_RELAY_TLS);
    CHECK(!maybe_sent);
    CHECK(ans.body == NULL);
    CHECK_EQ_INT(read_count(cnt), conns + 1);
    CHECK_EQ_INT(read_record(rec, NULL), reqs);
}

static void wrong_host_name_fails_before_sending(void)
{
    tls_fails_before_any_request("wrongname", env("RELAY_REC_WRONG"), env("RELAY_CNT_WRONG"));
}

static void untrusted_ca_fails_before_sending(void)
{
    tls_fails_before_any_request("rogue", env("RELAY_REC_ROGUE"), env("RELAY_CNT_ROGUE"));
}

static void missing_client_certificate_fails_before_sending(void)
{
    tls_fails_before_any_request("nocert", env("RELAY_REC_GOOD"), env("RELAY_CNT_GOOD"));
}

static void pin_mismatch_fails_before_sending(void)
{
    tls_fails_before_any_request("mispinned", env("RELAY_REC_GOOD"), env("RELAY_CNT_GOOD"));
}

/* TLS 1.2 with CBC and SHA-1 MAC: not among the relay's suites (ECDHE with
 * AES-GCM or ChaCha20-Poly1305), so no fallback to it. */
static void weak_cipher_suite_is_refused(void)
{
    tls_fails_before_any_request("weak", env("RELAY_REC_WEAK"), env("RELAY_CNT_WEAK"));
}

/* The system store does not hold the test CA. */
static void system_store_does_not_trust_the_test_ca(void)
{
    tls_fails_before_any_request("systemca", env("RELAY_REC_GOOD"), env("RELAY_CNT_GOOD"));
}

static void failure_status(const char *name, const char *path, cv_status want)
{
    struct cv_relay_answer ans;
    bool maybe_sent = false;
    cv_status st = send_to(name, "POST", path, CHARGE, &ans, &maybe_sent);
    if (st != want)
        fprintf(stderr, "  %s %s: status %d, want %d\n", name, path, (int)st, (int)want);
    CHECK_EQ_INT(st, want);
    CHECK(ans.body == NULL && ans.n_headers == 0 && ans.status == 0);
}

static void slow_answer_times_out(void)
{
    failure_status("acme", "/v1/slow", CV_ERR_RELAY_TIMEOUT);
}

static void silent_processor_times_out(void)
{
    failure_status("acme", "/v1/hang", CV_ERR_RELAY_TIMEOUT);
}

static void ten_megabyte_answer_is_too_large(void)
{
    failure_status("acme", "/v1/big", CV_ERR_RELAY_ANSWER_TOO_LARGE);
}

static void reset_is_an_upstream_failure(void)
{
    failure_status("acme", "/v1/reset", CV_ERR_RELAY_UPSTREAM);
}

static void refused_connection_is_connect_failure(void)
{
    struct cv_relay_answer ans;
    bool maybe_sent = true;
    CHECK_EQ_INT(send_to("closed", "POST", "/v1/charges", CHARGE, &ans, &maybe_sent),
                 CV_ERR_RELAY_CONNECT);
    CHECK(!maybe_sent);
}

/* The test list: every destination points at processor.test, pinned to
 * 127.0.0.1 with "resolve" (the certificate's host name is still checked). */
static void load_destinations(void)
{
    const char *pki = env("RELAY_PKI");
    char pin[128] = "";
    char path[1024];
    snprintf(path, sizeof(path), "%s/server.pin", pki);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(pin, sizeof(pin), f) == NULL) {
        fprintf(stderr, "relay-client: cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
    pin[strcspn(pin, "\r\n")] = '\0';
    /* a pin of the right form that is not the server's key */
    static const char other_pin[] = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    static const char paths[] = "[\"/v1/charges\",\"/v1/echo\",\"/v1/redirect\",\"/v1/slow\","
                                "\"/v1/hang\",\"/v1/big\",\"/v1/reset\"]";
    json_t *list = json_array();
    struct {
        const char *name, *port, *extra;
        bool client_cert, ca;
    } rows[] = {
        {"acme", "RELAY_PORT_GOOD", NULL, true, true},
        {"pinned", "RELAY_PORT_GOOD", pin, true, true},
        {"mispinned", "RELAY_PORT_GOOD", other_pin, true, true},
        {"nocert", "RELAY_PORT_GOOD", NULL, false, true},
        {"systemca", "RELAY_PORT_GOOD", NULL, true, false},
        {"small", "RELAY_PORT_GOOD", NULL, true, true},
        {"wrongname", "RELAY_PORT_WRONG", NULL, true, true},
        {"rogue", "RELAY_PORT_ROGUE", NULL, true, true},
        {"weak", "RELAY_PORT_WEAK", NULL, true, true},
        {"closed", "RELAY_PORT_CLOSED", NULL, true, true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char url[128], file[1024];
        snprintf(url, sizeof(url), "https://processor.test:%s", env(rows[i].port));
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(rows[i].name));
        json_object_set_new(o, "url", json_string(url));
        json_object_set_new(o, "methods", json_pack("[s]", "POST"));
        json_object_set_new(o, "paths", json_loads(paths, 0, NULL));
        json_object_set_new(o, "resolve", json_string("127.0.0.1"));
        json_object_set_new(o, "timeout_ms", json_integer(1500));
        json_object_set_new(o, "connect_timeout_ms", json_integer(1000));
        json_object_set_new(o, "max_answer_bytes", json_integer(1024 * 1024));
        if (rows[i].ca) {
            snprintf(file, sizeof(file), "%s/ca.pem", pki);
            json_object_set_new(o, "ca_file", json_string(file));
        }
        if (rows[i].client_cert) {
            snprintf(file, sizeof(file), "%s/client.pem", pki);
            json_object_set_new(o, "client_cert", json_string(file));
            snprintf(file, sizeof(file), "%s/client.key", pki);
            json_object_set_new(o, "client_key", json_string(file));
        }
        if (rows[i].extra != NULL)
            json_object_set_new(o, "pin", json_string(rows[i].extra));
        if (strcmp(rows[i].name, "small") == 0)
            json_object_set_new(o, "max_request_bytes", json_integer(64));
        json_array_append_new(list, o);
    }
    json_t *root = json_pack("{s:o}", "destinations", list);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char why[256] = "";
    if (text == NULL ||
        cv_relay_destinations_parse(text, strlen(text), &DESTS, why, sizeof(why)) != CV_OK) {
        fprintf(stderr, "relay-client: the test destinations do not parse: %s\n", why);
        exit(2);
    }
    free(text);
}

int main(void)
{
    if (cv_relay_client_init() != CV_OK) {
        fprintf(stderr, "relay-client: curl_global_init failed\n");
        return 2;
    }
    load_destinations();
    RUN(exact_body_arrives);
    RUN(echo_comes_back_byte_for_byte);
    RUN(pinned_key_that_matches_is_sent);
    RUN(unlisted_method_or_path_makes_no_connection);
    RUN(oversized_request_makes_no_connection);
    RUN(redirect_is_not_followed);
    RUN(wrong_host_name_fails_before_sending);
    RUN(untrusted_ca_fails_before_sending);
    RUN(missing_client_certificate_fails_before_sending);
    RUN(pin_mismatch_fails_before_sending);
    RUN(weak_cipher_suite_is_refused);
    RUN(system_store_does_not_trust_the_test_ca);
    RUN(slow_answer_times_out);
    RUN(silent_processor_times_out);
    RUN(ten_megabyte_answer_is_too_large);
    RUN(reset_is_an_upstream_failure);
    RUN(refused_connection_is_connect_failure);
    cv_relay_destinations_free(&DESTS);
    cv_relay_client_shutdown();
    return check_summary("relay-client");
}
