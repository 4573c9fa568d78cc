/* test_origin.c: origin.c's parser and normalizer (scheme and host case,
 * default ports, IPv6 literals), its refusals (paths, users, queries, other
 * schemes, bad ports, bad hosts, overlong input), the bindable rule (https
 * anywhere, http on loopback only), origin lists and the Host-derived origin. */
#include "cardvault/origin.h"

#include <string.h>

#include "check.h"

static bool norm_is(const char *in, const char *want)
{
    char out[CV_ORIGIN_MAX + 1];
    if (cv_origin_normalize(in, strlen(in), out) != CV_OK)
        return false;
    return strcmp(out, want) == 0;
}

static bool refused(const char *in)
{
    char out[CV_ORIGIN_MAX + 1] = "x";
    return cv_origin_normalize(in, strlen(in), out) == CV_ERR_BAD_REQUEST;
}

static void normalize_lowercases_scheme_and_host(void)
{
    CHECK(norm_is("https://shop.example", "https://shop.example"));
    CHECK(norm_is("HTTPS://Shop.Example", "https://shop.example"));
    CHECK(norm_is("Http://LOCALHOST:3000", "http://localhost:3000"));
}

static void normalize_drops_default_ports_only(void)
{
    CHECK(norm_is("https://shop.example:443", "https://shop.example"));
    CHECK(norm_is("http://shop.example:80", "http://shop.example"));
    CHECK(norm_is("https://shop.example:80", "https://shop.example:80"));
    CHECK(norm_is("http://shop.example:443", "http://shop.example:443"));
    CHECK(norm_is("https://shop.example:08443", "https://shop.example:8443"));
    CHECK(norm_is("https://shop.example:65535", "https://shop.example:65535"));
}

static void normalize_accepts_ip_literals(void)
{
    CHECK(norm_is("http://127.0.0.1:8081", "http://127.0.0.1:8081"));
    CHECK(norm_is("http://[::1]:8081", "http://[::1]:8081"));
    CHECK(norm_is("https://[2001:DB8::1]", "https://[2001:db8::1]"));
}

static void normalize_refuses_anything_past_the_authority(void)
{
    CHECK(refused("https://shop.example/"));
    CHECK(refused("https://shop.example/checkout"));
    CHECK(refused("https://shop.example?x=1"));
    CHECK(refused("https://shop.example#top"));
    CHECK(refused("https://user@shop.example"));
    CHECK(refused("https://user:pw@shop.example"));
    CHECK(refused("https://shop.example "));
    CHECK(refused(" https://shop.example"));
    CHECK(refused("https://shop.example\\@evil.example"));
}

static void normalize_refuses_other_schemes_and_shapes(void)
{
    CHECK(refused(""));
    CHECK(refused("shop.example"));
    CHECK(refused("//shop.example"));
    CHECK(refused("ftp://shop.example"));
    CHECK(refused("javascript://shop.example"));
    CHECK(refused("null"));
    CHECK(refused("https:/shop.example"));
    CHECK(refused("https://"));
    CHECK(refused("https://:443"));
}

static void normalize_refuses_bad_ports(void)
{
    CHECK(refused("https://shop.example:"));
    CHECK(refused("https://shop.example:0"));
    CHECK(refused("https://shop.example:65536"));
    CHECK(refused("https://shop.example:123456"));
    CHECK(refused("https://shop.example:8a"));
    CHECK(refused("https://shop.example:-1"));
    CHECK(refused("https://shop.example:1:2"));
}

static void normalize_refuses_bad_hosts(void)
{
    CHECK(refused("https://shop.example."));
    CHECK(refused("https://.shop.example"));
    CHECK(refused("https://shop..example"));
    CHECK(refused("https://-shop.example"));
    CHECK(refused("https://shop-.example"));
    CHECK(refused("https://sh_op.example"));
    CHECK(refused("https://shop\".example"));
    CHECK(refused("https://shop'.example"));
    CHECK(refused("https://shop;.example"));
    CHECK(refused("https://[::1"));
    CHECK(refused("https://[]"));
    CHECK(refused("https://[::1]x"));
    CHECK(refused("https://[g::1]"));
    CHECK(refused("https://\xc3\xa9.example")); /* IDN must come punycoded, as browsers send it */
    char url[100];
    snprintf(url, sizeof(url), "https://%.64s.example",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK(refused(url)); /* a 64-character label */
}

static void normalize_refuses_overlong_origin(void)
{
    char url[400];
    const char *l = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    snprintf(url, sizeof(url), "https://%s.%s.%s.%s.%s.example", l, l, l, l, l);
    CHECK(strlen(url) > CV_ORIGIN_MAX);
    CHECK(refused(url));
}

static void normalize_reads_only_len_bytes(void)
{
    char out[CV_ORIGIN_MAX + 1];
    const char *s = "https://shop.example/path";
    CHECK(cv_origin_normalize(s, strlen("https://shop.example"), out) == CV_OK);
    CHECK(strcmp(out, "https://shop.example") == 0);
    CHECK(cv_origin_normalize(NULL, 0, out) == CV_ERR_BAD_REQUEST);
}

static void canonical_means_already_normalized(void)
{
    CHECK(cv_origin_is_canonical("https://shop.example", 20));
    CHECK(!cv_origin_is_canonical("https://Shop.example", 20));
    CHECK(!cv_origin_is_canonical("https://shop.example:443", 24));
    CHECK(!cv_origin_is_canonical("https://shop.example/", 21));
}

static void bindable_is_https_or_loopback_http(void)
{
    CHECK(cv_origin_is_bindable("https://shop.example"));
    CHECK(cv_origin_is_bindable("http://localhost:3000"));
    CHECK(cv_origin_is_bindable("http://127.0.0.1:8081"));
    CHECK(cv_origin_is_bindable("http://127.10.20.30"));
    CHECK(cv_origin_is_bindable("http://[::1]:8081"));
    CHECK(!cv_origin_is_bindable("http://shop.example"));
    CHECK(!cv_origin_is_bindable("http://localhost.evil.example"));
    CHECK(!cv_origin_is_bindable("http://127.0.0.1.evil.example"));
    CHECK(!cv_origin_is_bindable("http://127.0.0"));
    CHECK(!cv_origin_is_bindable("http://127.0.0.256"));
    CHECK(!cv_origin_is_bindable("http://128.0.0.1"));
    CHECK(!cv_origin_is_bindable("http://[::2]"));
}

static void list_parse_normalizes_and_dedups(void)
{
    char out[CV_ORIGIN_LIST_MAX + 1];
    CHECK(cv_origin_list_parse("https://A.example, https://b.example:443 ,https://a.example",
                               out) == CV_OK);
    CHECK(strcmp(out, "https://a.example,https://b.example") == 0);
    CHECK(cv_origin_list_parse("", out) == CV_OK);
    CHECK(strcmp(out, "") == 0);
    CHECK(cv_origin_list_parse("  ", out) == CV_OK);
    CHECK(strcmp(out, "") == 0);
}

static void list_parse_refuses_bad_items(void)
{
    char out[CV_ORIGIN_LIST_MAX + 1];
    CHECK(cv_origin_list_parse("https://a.example,", out) == CV_ERR_BAD_REQUEST);
    CHECK(strcmp(out, "") == 0);
    CHECK(cv_origin_list_parse(",https://a.example", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_list_parse("https://a.example,,https://b.example", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_list_parse("https://a.example/", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_list_parse("http://shop.example", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_list_parse("*", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_list_parse(NULL, out) == CV_ERR_BAD_REQUEST);
}

static void list_parse_caps_the_count(void)
{
    char out[CV_ORIGIN_LIST_MAX + 1];
    char csv[1024] = "";
    size_t w = 0;
    for (int i = 0; i < CV_ORIGINS_MAX; i++)
        w += (size_t)snprintf(csv + w, sizeof(csv) - w, "%shttps://s%d.example", i > 0 ? "," : "",
                              i);
    CHECK(cv_origin_list_parse(csv, out) == CV_OK);
    snprintf(csv + w, sizeof(csv) - w, ",https://one-too-many.example");
    CHECK(cv_origin_list_parse(csv, out) == CV_ERR_BAD_REQUEST);
}

static void list_contains_is_exact(void)
{
    const char *list = "https://a.example,https://b.example:8443";
    CHECK(cv_origin_list_contains(list, "https://a.example"));
    CHECK(cv_origin_list_contains(list, "https://b.example:8443"));
    CHECK(!cv_origin_list_contains(list, "https://b.example"));
    CHECK(!cv_origin_list_contains(list, "https://a.exampl"));
    CHECK(!cv_origin_list_contains(list, "https://a.example,https://b.example:8443"));
    CHECK(!cv_origin_list_contains(list, ""));
    CHECK(!cv_origin_list_contains("", "https://a.example"));
}

static void from_host_builds_the_request_origin(void)
{
    char out[CV_ORIGIN_MAX + 1];
    CHECK(cv_origin_from_host(false, "127.0.0.1:8080", out) == CV_OK);
    CHECK(strcmp(out, "http://127.0.0.1:8080") == 0);
    CHECK(cv_origin_from_host(true, "Vault.Example:443", out) == CV_OK);
    CHECK(strcmp(out, "https://vault.example") == 0);
    CHECK(cv_origin_from_host(true, NULL, out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_from_host(true, "", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_from_host(true, "vault.example/x", out) == CV_ERR_BAD_REQUEST);
    CHECK(cv_origin_from_host(true, "a@vault.example", out) == CV_ERR_BAD_REQUEST);
}

int main(void)
{
    RUN(normalize_lowercases_scheme_and_host);
    RUN(normalize_drops_default_ports_only);
    RUN(normalize_accepts_ip_literals);
    RUN(normalize_refuses_anything_past_the_authority);
    RUN(normalize_refuses_other_schemes_and_shapes);
    RUN(normalize_refuses_bad_ports);
    RUN(normalize_refuses_bad_hosts);
    RUN(normalize_refuses_overlong_origin);
    RUN(normalize_reads_only_len_bytes);
    RUN(canonical_means_already_normalized);
    RUN(bindable_is_https_or_loopback_http);
    RUN(list_parse_normalizes_and_dedups);
    RUN(list_parse_refuses_bad_items);
    RUN(list_parse_caps_the_count);
    RUN(list_contains_is_exact);
    RUN(from_host_builds_the_request_origin);
    return check_summary("origin");
}
