/* test_client_addr.c: client_addr.c. The trusted-proxy list: addresses and
 * CIDR blocks of both families, refused when empty, malformed, too long,
 * with host bits set or /0. The resolver: a peer that is not trusted is the
 * client whatever the headers say; behind a trusted peer the right-most
 * untrusted address of X-Forwarded-For or Forwarded is the client, never a
 * spoofed left part; malformed, "unknown" and obfuscated entries stop the
 * walk at the last trusted hop; output is always canonical address text. */
#include "cardvault/client_addr.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static struct cv_proxy_list list_of(const char *text)
{
    struct cv_proxy_list l;
    char why[256];
    if (cv_client_addr_parse_proxies(text, &l, why, sizeof(why)) != CV_OK) {
        fprintf(stderr, "  cannot parse %s: %s\n", text, why);
        memset(&l, 0, sizeof(l));
    }
    return l;
}

static const char *resolve(const char *trusted, enum cv_forward_header kind, const char *peer,
                           const char *header)
{
    static char out[CV_CLIENT_ADDR_LEN];
    struct cv_proxy_list l = list_of(trusted);
    cv_client_addr_resolve(&l, kind, peer, header, out);
    return out;
}

#define XFF CV_FORWARD_X_FORWARDED_FOR
#define FWD CV_FORWARD_FORWARDED

static void list_accepts_addresses_and_blocks(void)
{
    struct cv_proxy_list l =
        list_of("10.0.0.1, 192.168.0.0/16 ,fd00::/8,2001:db8::1,\t172.16.0.0/12");
    CHECK_EQ_INT(l.n, 5);
    CHECK(cv_client_addr_is_trusted(&l, "10.0.0.1"));
    CHECK(!cv_client_addr_is_trusted(&l, "10.0.0.2"));
    CHECK(cv_client_addr_is_trusted(&l, "192.168.255.7"));
    CHECK(!cv_client_addr_is_trusted(&l, "192.169.0.1"));
    CHECK(cv_client_addr_is_trusted(&l, "172.31.255.255"));
    CHECK(!cv_client_addr_is_trusted(&l, "172.32.0.0"));
    CHECK(cv_client_addr_is_trusted(&l, "fd12:3456::1"));
    CHECK(!cv_client_addr_is_trusted(&l, "fe80::1"));
    CHECK(cv_client_addr_is_trusted(&l, "2001:db8::1"));
    CHECK(cv_client_addr_is_trusted(&l, "::ffff:10.0.0.1")); /* IPv4-mapped is IPv4 */
    CHECK(!cv_client_addr_is_trusted(&l, "garbage"));
    CHECK(!cv_client_addr_is_trusted(&l, NULL));
    l = list_of("::ffff:10.0.0.0/104");
    CHECK_EQ_INT(l.n, 1);
    CHECK(cv_client_addr_is_trusted(&l, "10.200.0.1"));
    l = list_of("");
    CHECK_EQ_INT(l.n, 0);
    CHECK(!cv_client_addr_is_trusted(&l, "10.0.0.1"));
}

static void list_refuses_what_is_not_strictly_a_block(void)
{
    static const char *const bad[] = {",",
                                      "10.0.0.1,",
                                      ",10.0.0.1",
                                      "10.0.0.1,,10.0.0.2",
                                      " ",
                                      "10.0.0.1/8",
                                      "10.0.0.0/33",
                                      "10.0.0.0/0",
                                      "::/0",
                                      "fd00::/129",
                                      "10.0.0.0/",
                                      "10.0.0.0/08",
                                      "10.0.0.0/ 8",
                                      "10.0.0.0/8x",
                                      "10.0.0",
                                      "10.0.0.256",
                                      "010.0.0.1",
                                      "localhost",
                                      "10.0.0.1 10.0.0.2",
                                      "fd00::1/-1",
                                      "[fd00::1]",
                                      "10.0.0.1:80",
                                      "::ffff:1.2.3.4/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cv_proxy_list l;
        char why[256] = "";
        cv_status st = cv_client_addr_parse_proxies(bad[i], &l, why, sizeof(why));
        if (st != CV_ERR_CONFIG)
            fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
        CHECK_EQ_INT(st, CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_TRUSTED_PROXIES") != NULL);
    }
}

static void list_refuses_too_many_or_too_long(void)
{
    char text[CV_TRUSTED_PROXIES_TEXT + 64];
    size_t n = 0;
    for (int i = 0; i < CV_TRUSTED_PROXIES_MAX + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s10.0.%d.1", i ? "," : "", i);
    struct cv_proxy_list l;
    char why[256];
    CHECK_EQ_INT(cv_client_addr_parse_proxies(text, &l, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "more than") != NULL);
    memset(text, ' ', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    memcpy(text, "10.0.0.1", 8);
    CHECK_EQ_INT(cv_client_addr_parse_proxies(text, &l, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "longer than") != NULL);
}

static void untrusted_peer_is_the_client_whatever_the_header(void)
{
    CHECK(strcmp(resolve("10.0.0.1", XFF, "127.0.0.2", "198.51.100.1"), "127.0.0.2") == 0);
    CHECK(strcmp(resolve("", XFF, "127.0.0.1", "198.51.100.1"), "127.0.0.1") == 0);
    CHECK(strcmp(resolve("10.0.0.1", FWD, "127.0.0.2", "for=198.51.100.1"), "127.0.0.2") == 0);
    CHECK(strcmp(resolve("10.0.0.1", XFF, "127.0.0.2", NULL), "127.0.0.2") == 0);
}

static void trusted_peer_names_the_right_most_untrusted_address(void)
{
    const char *t = "127.0.0.1, 10.0.0.0/8";
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "198.51.100.1"), "198.51.100.1") == 0);
    /* the left part is what the client claimed: never used */
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "1.1.1.1, 198.51.100.1"), "198.51.100.1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "1.1.1.1,198.51.100.1, 10.1.2.3 , 10.9.9.9"),
                 "198.51.100.1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "2001:DB8::0001"), "2001:db8::1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "[2001:db8::1]:443"), "2001:db8::1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "198.51.100.1:5555"), "198.51.100.1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "::ffff:198.51.100.1"), "198.51.100.1") == 0);
    /* every hop trusted: the left-most of them */
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "10.0.0.5, 10.0.0.6"), "10.0.0.5") == 0);
    /* no header, empty header: the peer */
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", NULL), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", ""), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "  "), "127.0.0.1") == 0);
}

static void malformed_entry_stops_at_the_last_trusted_hop(void)
{
    const char *t = "127.0.0.1, 10.0.0.0/8";
    static const char *const bad[] = {
        "garbage",        "unknown",          "_hidden",          "198.51.100.1,",
        "198.51.100.256", "1.2.3.4:",         "1.2.3.4:99999999", "[1.2.3.4]",
        "[::1",           "\"198.51.100.1\"", "198.51.100.1 x",   "1.2.3.4:80:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *got = resolve(t, XFF, "127.0.0.1", bad[i]);
        if (strcmp(got, "127.0.0.1") != 0)
            fprintf(stderr, "  \"%s\" gave %s\n", bad[i], got);
        CHECK(strcmp(got, "127.0.0.1") == 0);
    }
    /* behind two proxies, a malformed entry stops at the second */
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "evil, 10.0.0.7"), "10.0.0.7") == 0);
    CHECK(strcmp(resolve(t, XFF, "127.0.0.1", "198.51.100.1, junk, 10.0.0.7"), "10.0.0.7") == 0);
}

static void forwarded_header_reads_for_nodes(void)
{
    const char *t = "127.0.0.1, 10.0.0.0/8";
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43"),
                 "192.0.2.60") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "For=\"[2001:db8:cafe::17]:4711\""),
                 "2001:db8:cafe::17") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=1.1.1.1, for=192.0.2.43, for=10.0.0.9"),
                 "192.0.2.43") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "proto=https; for=192.0.2.44"), "192.0.2.44") == 0);
    /* a quoted comma does not split an element */
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=\"a,b\", for=192.0.2.45"), "192.0.2.45") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=\"a,b\""), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=unknown"), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=_hidden"), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "by=192.0.2.1"), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=\"192.0.2.1"), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for=\"192.0.2.\\1\""), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "for="), "127.0.0.1") == 0);
    CHECK(strcmp(resolve(t, FWD, "127.0.0.1", "192.0.2.1"), "127.0.0.1") == 0);
}

static void peer_text_is_kept_when_it_does_not_parse(void)
{
    CHECK(strcmp(resolve("127.0.0.1", XFF, "unknown", "198.51.100.1"), "unknown") == 0);
    CHECK(strcmp(resolve("127.0.0.1", XFF, NULL, "198.51.100.1"), "unknown") == 0);
}

int main(void)
{
    RUN(list_accepts_addresses_and_blocks);
    RUN(list_refuses_what_is_not_strictly_a_block);
    RUN(list_refuses_too_many_or_too_long);
    RUN(untrusted_peer_is_the_client_whatever_the_header);
    RUN(trusted_peer_names_the_right_most_untrusted_address);
    RUN(malformed_entry_stops_at_the_last_trusted_hop);
    RUN(forwarded_header_reads_for_nodes);
    RUN(peer_text_is_kept_when_it_does_not_parse);
    return check_summary("client_addr");
}
