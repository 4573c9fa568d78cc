/* test_cli_probe.c: `cardvault probe`'s parsers. The ops URL: IPv4,
 * bracketed IPv6 and localhost with or without a port and a final slash;
 * hostile twins: https, user info, paths, queries, bad ports, unbracketed
 * IPv6, names, embedded NULs, over-long hosts. The listen address: wildcards
 * probed on loopback. The status line: HTTP/1.0 and 1.1; hostile twins:
 * truncated, HTTP/2, letters, no space. */
#include "cardvault/cli_probe.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"

static void url_accepts_literals_with_or_without_port(void)
{
    static const struct {
        const char *url;
        const char *host;
        unsigned port;
        int family;
    } good[] = {
        {"http://127.0.0.1:9090", "127.0.0.1", 9090, AF_INET},
        {"http://127.0.0.1:9090/", "127.0.0.1", 9090, AF_INET},
        {"http://10.1.2.3", "10.1.2.3", 80, AF_INET},
        {"http://localhost:1", "127.0.0.1", 1, AF_INET},
        {"http://[::1]:9090", "::1", 9090, AF_INET6},
        {"http://[::1]", "::1", 80, AF_INET6},
        {"http://[fd00::1:2]:65535/", "fd00::1:2", 65535, AF_INET6},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct cv_probe_target t;
        char why[200];
        cv_status st = cv_probe_parse_url(good[i].url, strlen(good[i].url), &t, why, sizeof(why));
        if (st != CV_OK)
            fprintf(stderr, "  refused %s\n", good[i].url);
        CHECK_EQ_INT(st, CV_OK);
        CHECK(strcmp(t.host, good[i].host) == 0);
        CHECK_EQ_INT(t.port, good[i].port);
        CHECK_EQ_INT(t.family, good[i].family);
    }
}

static void url_refuses_everything_else(void)
{
    static const char *const bad[] = {
        "",
        "http://",
        "https://127.0.0.1:9090",
        "HTTP://127.0.0.1:9090",
        "127.0.0.1:9090",
        "http://user@127.0.0.1:9090",
        "http://127.0.0.1:9090/healthz",
        "http://127.0.0.1:9090?x=1",
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:",
        "http://127.0.0.1:90a",
        "http://127.0.0.1:-1",
        "http://::1:9090",
        "http://[::1:9090",
        "http://[::1]9090",
        "http://[]:9090",
        "http://[127.0.0.1]:9090",
        "http://vault.example:9090",
        "http://999.0.0.1:9090",
        "http://127.0.0.1:9090//",
        "http://[0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cv_probe_target t;
        char why[200] = "";
        cv_status st = cv_probe_parse_url(bad[i], strlen(bad[i]), &t, why, sizeof(why));
        if (st == CV_OK)
            fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK_EQ_INT(st, CV_ERR_CONFIG);
        CHECK(strstr(why, "--ops-url") != NULL);
    }
    /* A NUL inside the given length is not the end of the host. */
    struct cv_probe_target t;
    char why[200];
    static const char nul[] = "http://127.0.0.1\0:9090";
    CHECK_EQ_INT(cv_probe_parse_url(nul, sizeof(nul) - 1, &t, why, sizeof(why)), CV_ERR_CONFIG);
    /* Only len bytes are read: a prefix of a good URL is judged alone. */
    static const char url[] = "http://127.0.0.1:9090";
    CHECK_EQ_INT(cv_probe_parse_url(url, strlen("http://127.0.0.1:9"), &t, why, sizeof(why)),
                 CV_OK);
    CHECK_EQ_INT(t.port, 9);
}

static void listen_wildcards_are_probed_on_loopback(void)
{
    struct cv_probe_target t;
    CHECK_EQ_INT(cv_probe_target_from_listen("0.0.0.0", 9090, &t), CV_OK);
    CHECK(strcmp(t.host, "127.0.0.1") == 0 && t.family == AF_INET && t.port == 9090);
    CHECK_EQ_INT(cv_probe_target_from_listen("::", 9091, &t), CV_OK);
    CHECK(strcmp(t.host, "::1") == 0 && t.family == AF_INET6 && t.port == 9091);
    CHECK_EQ_INT(cv_probe_target_from_listen("localhost", 1, &t), CV_OK);
    CHECK(strcmp(t.host, "127.0.0.1") == 0);
    CHECK_EQ_INT(cv_probe_target_from_listen("10.0.0.7", 1, &t), CV_OK);
    CHECK(strcmp(t.host, "10.0.0.7") == 0);
    CHECK_EQ_INT(cv_probe_target_from_listen("vault.internal", 1, &t), CV_ERR_CONFIG);
}

static void status_line_gives_the_code(void)
{
    int code = 0;
    const char *a = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n";
    CHECK_EQ_INT(cv_probe_parse_status(a, strlen(a), &code), CV_OK);
    CHECK_EQ_INT(code, 200);
    const char *b = "HTTP/1.0 503 Service Unavailable\r\n";
    CHECK_EQ_INT(cv_probe_parse_status(b, strlen(b), &code), CV_OK);
    CHECK_EQ_INT(code, 503);
    const char *c = "HTTP/1.1 204 \r\n"; /* empty reason phrase */
    CHECK_EQ_INT(cv_probe_parse_status(c, strlen(c), &code), CV_OK);
    CHECK_EQ_INT(code, 204);
}

static void status_line_refuses_garbage(void)
{
    static const char *const bad[] = {
        "",
        "HTTP/1.1 200",
        "HTTP/2 200 OK\r\n",
        "HTTP/1.1 20x OK\r\n",
        "HTTP/1.1  200 OK\r\n",
        "HTTP/1.1 099 X\r\n",
        "http/1.1 200 OK\r\n",
        "SSH-2.0-OpenSSH\r\n",
        "HTTP/1.1 2000 OK\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int code = -1;
        CHECK_EQ_INT(cv_probe_parse_status(bad[i], strlen(bad[i]), &code), CV_ERR_IO);
        CHECK_EQ_INT(code, 0);
    }
}

int main(void)
{
    RUN(url_accepts_literals_with_or_without_port);
    RUN(url_refuses_everything_else);
    RUN(listen_wildcards_are_probed_on_loopback);
    RUN(status_line_gives_the_code);
    RUN(status_line_refuses_garbage);
    return check_summary("cli_probe");
}
