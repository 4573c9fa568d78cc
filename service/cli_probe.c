/* cli_probe.c: `cardvault probe [healthz|readyz]`, a health check for
 * container engines and service managers that have no HTTP client at hand:
 * one plain-HTTP GET to the ops listener (CARDVAULT_OPS_LISTEN, or
 * --ops-url), exit 0 when it answers 200 within the timeout, 1 otherwise,
 * 2 on a usage error. A small socket client, no library: the request is one
 * fixed line and only the status line is read. It sends no key and reads no
 * card data; the ops endpoints have neither. */
#include "cardvault/cli_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cardvault/cli.h"

#define PROBE_TIMEOUT_MS 2000 /* connect, send and the status line together */
#define STATUS_LINE_MAX  512

enum { P_OPS_URL = 0 };

const struct cv_cli_optdef cv_cli_probe_opts[] = {
    {"ops-url", 1, P_OPS_URL},
    {NULL, 0, 0},
};

const char cv_cli_probe_usage[] =
    "usage: cardvault probe [--ops-url http://HOST:PORT] [healthz|readyz]\n"
    "\n"
    "Asks the ops listener for /healthz (the default: the process answers) or\n"
    "/readyz (database and KEK reachable, not draining) over plain HTTP and\n"
    "exits 0 when it answers 200 within 2 s, 1 otherwise (refused, timed out, any\n"
    "other status), 2 on a usage error. The address is CARDVAULT_OPS_LISTEN\n"
    "(default 127.0.0.1:9090; a wildcard 0.0.0.0 or [::] is probed on its\n"
    "loopback) unless --ops-url gives one: an IPv4 address, [IPv6] or localhost.\n"
    "For a container HEALTHCHECK: CMD [\"cardvault\", \"probe\", \"healthz\"].\n"
    "Prints one JSON line on success; the reason on stderr otherwise.\n";

static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* Copies a literal of n bytes into out->host and checks it for family. */
static bool set_host(struct cv_probe_target *out, const char *s, size_t n, int family)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (n == 0 || n > CV_PROBE_HOST_MAX || memchr(s, '\0', n) != NULL)
        return false;
    memcpy(out->host, s, n);
    out->host[n] = '\0';
    out->family = family;
    return inet_pton(family, out->host, addr) == 1;
}

cv_status cv_probe_parse_url(const char *url, size_t len, struct cv_probe_target *out, char *why,
                             size_t why_len)
{
    static const char scheme[] = "http://";
    const size_t sl = sizeof(scheme) - 1;
    memset(out, 0, sizeof(*out));
    out->port = 80;
    if (len > 0 && url[len - 1] == '/') /* "http://host:port/" */
        len--;
    if (len <= sl || memcmp(url, scheme, sl) != 0) {
        snprintf(why, why_len, "--ops-url must be http://HOST:PORT (plain HTTP, the ops listener)");
        return CV_ERR_CONFIG;
    }
    const char *h = url + sl;
    size_t rest = len - sl;
    const char *port = NULL;
    size_t host_len = 0;
    bool ok;
    if (h[0] == '[') {
        const char *close = memchr(h, ']', rest);
        host_len = close != NULL ? (size_t)(close - h - 1) : 0;
        ok = close != NULL && set_host(out, h + 1, host_len, AF_INET6);
        size_t after = close != NULL ? rest - (size_t)(close - h) - 1 : 0;
        if (ok && after > 0) {
            ok = close[1] == ':';
            port = close + 2;
        }
        if (ok && port != NULL)
            ok = parse_port(port, after - 1, &out->port);
    } else {
        const char *colon = memchr(h, ':', rest);
        host_len = colon != NULL ? (size_t)(colon - h) : rest;
        if (host_len == 9 && memcmp(h, "localhost", 9) == 0)
            ok = set_host(out, "127.0.0.1", 9, AF_INET);
        else
            ok = set_host(out, h, host_len, AF_INET);
        if (ok && colon != NULL)
            ok = parse_port(colon + 1, rest - host_len - 1, &out->port);
    }
    if (!ok) {
        snprintf(why, why_len,
                 "--ops-url must be http://HOST:PORT with HOST an IPv4 address, [IPv6] or "
                 "localhost, PORT 1-65535, and no path");
        memset(out, 0, sizeof(*out));
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

cv_status cv_probe_target_from_listen(const char *host, uint16_t port, struct cv_probe_target *out)
{
    memset(out, 0, sizeof(*out));
    out->port = port;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct in6_addr a;
        if (inet_pton(AF_INET6, host, &a) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a))
            host = "::1";
    }
    return set_host(out, host, strlen(host), v6 ? AF_INET6 : AF_INET) ? CV_OK : CV_ERR_CONFIG;
}

cv_status cv_probe_parse_status(const char *buf, size_t len, int *code)
{
    /* RFC 9112 4: HTTP-version SP status-code SP [reason-phrase] CRLF. */
    *code = 0;
    if (len < 13 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[7] < '0' || buf[7] > '9' ||
        buf[8] != ' ' || buf[12] != ' ')
        return CV_ERR_IO;
    int v = 0;
    for (size_t i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return CV_ERR_IO;
        v = v * 10 + (buf[i] - '0');
    }
    if (v < 100)
        return CV_ERR_IO;
    *code = v;
    return CV_OK;
}

static long remaining_ms(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(deadline->tv_sec - now.tv_sec) * 1000L +
           (deadline->tv_nsec - now.tv_nsec) / 1000000L;
}

/* Waits for fd to be ready for events before the deadline. */
static bool wait_fd(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        long ms = remaining_ms(deadline);
        if (ms <= 0)
            return false;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)ms);
        if (r > 0)
            return true;
        if (r == 0 || errno != EINTR)
            return false;
    }
}

/* One GET of path; the status code in *code, or a reason in why. */
static cv_status probe_once(const struct cv_probe_target *t, const char *path, int *code, char *why,
                            size_t why_len)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += PROBE_TIMEOUT_MS / 1000;
    deadline.tv_nsec += (long)(PROBE_TIMEOUT_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    const struct sockaddr *sa;
    socklen_t sa_len;
    if (t->family == AF_INET6) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(t->port);
        (void)inet_pton(AF_INET6, t->host, &a6.sin6_addr);
        sa = (const struct sockaddr *)(const void *)&a6;
        sa_len = sizeof(a6);
    } else {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(t->port);
        (void)inet_pton(AF_INET, t->host, &a4.sin_addr);
        sa = (const struct sockaddr *)(const void *)&a4;
        sa_len = sizeof(a4);
    }
    int fd = socket(t->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_len, "cannot create a socket");
        return CV_ERR_IO;
    }
    cv_status st = CV_ERR_IO;
    char errbuf[96];
    if (connect(fd, sa, sa_len) != 0) {
        int err = errno;
        if (err != EINPROGRESS) {
            snprintf(why, why_len, "cannot connect: %s",
                     cv_cli_errno_text(err, errbuf, sizeof(errbuf)));
            goto out;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (!wait_fd(fd, POLLOUT, &deadline)) {
            snprintf(why, why_len, "no connection within %d ms", PROBE_TIMEOUT_MS);
            goto out;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            snprintf(why, why_len, "cannot connect: %s",
                     cv_cli_errno_text(soerr, errbuf, sizeof(errbuf)));
            goto out;
        }
    }
    char req[160];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: cardvault-probe\r\n"
                     "Connection: close\r\n\r\n",
                     path, t->family == AF_INET6 ? "[" : "", t->host,
                     t->family == AF_INET6 ? "]" : "", (unsigned)t->port);
    for (size_t sent = 0; n > 0 && sent < (size_t)n;) {
        if (!wait_fd(fd, POLLOUT, &deadline)) {
            snprintf(why, why_len, "could not send the request within %d ms", PROBE_TIMEOUT_MS);
            goto out;
        }
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(why, why_len, "send failed: %s",
                     cv_cli_errno_text(errno, errbuf, sizeof(errbuf)));
            goto out;
        }
        if (w > 0)
            sent += (size_t)w;
    }
    char line[STATUS_LINE_MAX] = {0};
    size_t got = 0;
    while (got < sizeof(line) && memchr(line, '\n', got) == NULL) {
        if (!wait_fd(fd, POLLIN, &deadline)) {
            snprintf(why, why_len, "no answer within %d ms", PROBE_TIMEOUT_MS);
            goto out;
        }
        ssize_t r = recv(fd, line + got, sizeof(line) - got, 0);
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN && errno != EINTR) {
            snprintf(why, why_len, "receive failed: %s",
                     cv_cli_errno_text(errno, errbuf, sizeof(errbuf)));
            goto out;
        }
        if (r > 0)
            got += (size_t)r;
    }
    if (cv_probe_parse_status(line, got, code) != CV_OK) {
        snprintf(why, why_len, "the answer is not HTTP/1.x");
        goto out;
    }
    st = CV_OK;
out:
    close(fd);
    return st;
}

int cv_cli_probe(struct cv_cli *cli)
{
    const char *which = "healthz";
    if (cli->argc > 1)
        return cv_cli_usage_error("probe takes at most one argument: healthz or readyz");
    if (cli->argc == 1) {
        which = cli->argv[0];
        if (strcmp(which, "healthz") != 0 && strcmp(which, "readyz") != 0)
            return cv_cli_usage_error("probe checks healthz or readyz");
    }
    struct cv_probe_target t;
    char why[256];
    const char *url = cli->x[P_OPS_URL];
    if (url != NULL) {
        if (cv_probe_parse_url(url, strlen(url), &t, why, sizeof(why)) != CV_OK)
            return cv_cli_usage_error(why);
    } else if (cv_probe_target_from_listen(cli->cfg.ops_listen_host, cli->cfg.ops_listen_port,
                                           &t) != CV_OK) {
        return cv_cli_usage_error(
            "CARDVAULT_OPS_LISTEN's host is not an IP address: give --ops-url");
    }
    char path[16], shown[96];
    snprintf(path, sizeof(path), "/%s", which);
    snprintf(shown, sizeof(shown), "http://%s%s%s:%u%s", t.family == AF_INET6 ? "[" : "", t.host,
             t.family == AF_INET6 ? "]" : "", (unsigned)t.port, path);
    int code = 0;
    if (probe_once(&t, path, &code, why, sizeof(why)) != CV_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "probe %s: %s", shown, why);
        cv_cli_fail(msg);
        return 1;
    }
    if (code != 200) {
        char msg[160];
        snprintf(msg, sizeof(msg), "probe %s: HTTP %d", shown, code);
        cv_cli_fail(msg);
        return 1;
    }
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "event", "probe_ok");
    cv_cli_json_set_str(out, "url", shown);
    cv_cli_json_set_int(out, "http_status", code);
    return cv_cli_print_json(out) == CV_OK ? 0 : 1;
}
