/* relay_dest.c: the operator's destinations file and its path rules. */
#include <string.h>

#include "cardvault/relay_dest.h"
#include "check.h"

static cv_status parse(const char *json, struct cv_relay_destinations *d, char *why, size_t n)
{
    return cv_relay_destinations_parse(json, strlen(json), d, why, n);
}

#define ONE(extra)                                                                                 \
    "{\"destinations\":[{\"name\":\"acme\",\"url\":\"https://api.acme.example/base\","             \
    "\"methods\":[\"POST\"],\"paths\":[\"/v1/charges\",\"/v2/\"]" extra "}]}"

static void test_parses_a_destination(void)
{
    struct cv_relay_destinations d;
    char why[256] = "";
    CHECK_EQ_INT(parse(ONE(",\"ca_file\":\"/etc/ca.pem\",\"timeout_ms\":3000,\"resolve\":"
                           "\"127.0.0.1\",\"client_cert\":\"c.pem\",\"client_key\":\"k.pem\""),
                       &d, why, sizeof(why)),
                 CV_OK);
    CHECK_EQ_INT(d.n, 1);
    const struct cv_relay_destination *a = cv_relay_destinations_find(&d, "acme");
    CHECK(a != NULL);
    if (a != NULL) {
        CHECK(strcmp(a->host, "api.acme.example") == 0);
        CHECK_EQ_INT(a->port, 443);
        CHECK(strcmp(a->url, "https://api.acme.example/base") == 0);
        CHECK_EQ_INT(a->timeout_ms, 3000);
        CHECK(strcmp(a->resolve, "127.0.0.1") == 0);
    }
    CHECK(cv_relay_destinations_find(&d, "other") == NULL);
    cv_relay_destinations_free(&d);
}

static void test_path_rules(void)
{
    struct cv_relay_destinations d;
    char why[256] = "";
    CHECK_EQ_INT(parse(ONE(""), &d, why, sizeof(why)), CV_OK);
    const struct cv_relay_destination *a = &d.v[0];
    CHECK_EQ_INT(cv_relay_destination_allows(a, "POST", "/v1/charges"), CV_OK);
    CHECK_EQ_INT(cv_relay_destination_allows(a, "POST", "/v1/charges/ch_1"), CV_OK);
    CHECK_EQ_INT(cv_relay_destination_allows(a, "POST", "/v1/charges?expand=x"), CV_OK);
    CHECK_EQ_INT(cv_relay_destination_allows(a, "POST", "/v2/anything"), CV_OK);
    static const char *const refused[] = {
        "/v1/chargesX",
        "/v1/refunds",
        "v1/charges",
        "/v1/charges/../refunds",
        "/v1/charges/%2e%2e/refunds",
        "/v1/charges%2frefunds",
        "/v1//charges",
        "/v1/charges\\x",
        "/v1/charges#f",
        "/v1/charges x",
        "/v1/charges/\x01",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        CHECK_EQ_INT(cv_relay_destination_allows(a, "POST", refused[i]), CV_ERR_RELAY_NOT_ALLOWED);
    CHECK_EQ_INT(cv_relay_destination_allows(a, "GET", "/v1/charges"), CV_ERR_RELAY_NOT_ALLOWED);
    CHECK_EQ_INT(cv_relay_destination_allows(a, "TRACE", "/v1/charges"), CV_ERR_RELAY_NOT_ALLOWED);
    cv_relay_destinations_free(&d);
}

static void test_refusals(void)
{
    static const char *const bad[] = {
        "",
        "[]",
        "{\"destinations\":{}}",
        "{\"destinations\":[],\"extra\":1}",
        /* scheme, IP literals, userinfo, query */
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"http://x.example\",\"methods\":[\"POST\"],"
        "\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://10.0.0.1\",\"methods\":[\"POST\"],"
        "\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://[::1]\",\"methods\":[\"POST\"],"
        "\"paths\":[\"/\"]}]}",
        /* IPv4 in the spellings URL parsers (curl's too) read as an address */
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://0x7f000001\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://0x7f.0.0.1\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://0xA9.0xFE.0xA9.0xFE:8443\","
        "\"methods\":[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example.0x1\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://u:p@x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example/?q\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example:0\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        /* names, methods, paths, unknown fields, pairs */
        "{\"destinations\":[{\"name\":\"A B\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"TRACE\"],\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/a/../b\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"],\"follow_redirects\":true}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"],\"client_cert\":\"c.pem\"}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"],\"pin\":\"md5//abc\"}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"],\"timeout_ms\":-1}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":"
        "[\"POST\"],\"paths\":[\"/\"],\"resolve\":\"localhost\"}]}",
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://"
        "x.example\",\"methods\":[\"POST\"]}]}",
        /* a duplicate name, a duplicate key */
        "{\"destinations\":[{\"name\":\"a\",\"url\":\"https://x.example\",\"methods\":[\"POST\"],"
        "\"paths\":[\"/\"]},{\"name\":\"a\",\"url\":\"https://y.example\",\"methods\":[\"POST\"],"
        "\"paths\":[\"/\"]}]}",
        "{\"destinations\":[{\"name\":\"a\",\"name\":\"b\",\"url\":\"https://x.example\","
        "\"methods\":[\"POST\"],\"paths\":[\"/\"]}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cv_relay_destinations d;
        char why[256] = "";
        cv_status st = parse(bad[i], &d, why, sizeof(why));
        if (st != CV_ERR_CONFIG)
            fprintf(stderr, "  accepted #%zu\n", i);
        CHECK_EQ_INT(st, CV_ERR_CONFIG);
        CHECK(why[0] != '\0');
        CHECK_EQ_INT(d.n, 0);
    }
}

static void test_reason_never_quotes_secrets(void)
{
    struct cv_relay_destinations d;
    char why[256] = "";
    CHECK_EQ_INT(
        parse(ONE(",\"pin\":\"sha256//not-a-real-pin-SECRETVALUE\""), &d, why, sizeof(why)),
        CV_ERR_CONFIG);
    CHECK(strstr(why, "SECRETVALUE") == NULL);
    CHECK(strstr(why, "acme") != NULL);
}

int main(void)
{
    RUN(test_parses_a_destination);
    RUN(test_path_rules);
    RUN(test_refusals);
    RUN(test_reason_never_quotes_secrets);
    return check_summary("relay_dest");
}
