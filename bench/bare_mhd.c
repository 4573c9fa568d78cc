/* bare_mhd.c: the HTTP limit for `make bench`. A libmicrohttpd daemon started
 * with the same flags and options as service/http_server.c
 * (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, and either a thread per
 * connection with poll() or an epoll thread pool, the same connection limits,
 * timeout and strictness) that does no work per request: it reads and discards the request body and
 * answers every request with a fixed JSON body of the size of a tokenize response, with the same
 * response headers the service sends. Whatever the service does on top of this is the cost of
 * cardvault itself.
 *
 * Keep the flags and options below in step with cv_http_server_start().
 *
 *   bare_mhd PORT [THREADS [BODY_BYTES [STATUS]]]
 *     PORT        TCP port on 127.0.0.1
 *     THREADS     as CARDVAULT_HTTP_THREADS: 0 = a thread per connection
 *                 (MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL), N = an epoll
 *                 pool of N threads (MHD_USE_EPOLL, MHD_OPTION_THREAD_POOL_SIZE);
 *                 default: $CARDVAULT_HTTP_THREADS, else 0 (bench/run.sh passes
 *                 the service's default)
 *     BODY_BYTES  size of the fixed response body (default 192)
 *     STATUS      HTTP status to answer (default 201)
 * The connection limits come from the service's own variables and defaults:
 * CARDVAULT_MAX_CONNECTIONS (512), CARDVAULT_MAX_CONNECTIONS_PER_IP (128),
 * CARDVAULT_CONNECTION_TIMEOUT_S (30). Runs until SIGINT or SIGTERM. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

static char *g_body;
static size_t g_body_len;
static unsigned g_status = 201;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* One byte per request as the per-request context: MHD calls back until the
 * body is consumed, then once more with *upload_data_size == 0. */
static char g_ctx_marker;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &g_ctx_marker;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(g_body_len, g_body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "X-Request-Id", "req_00000000000000000000");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result r = MHD_queue_response(conn, g_status, resp);
    MHD_destroy_response(resp);
    return r;
}

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static void make_body(size_t n)
{
    static const char head[] = "{\"token\":\"tok_0000000000000000000000\",\"pad\":\"";
    static const char tail[] = "\"}";
    size_t fixed = sizeof(head) - 1 + sizeof(tail) - 1;
    if (n < fixed)
        n = fixed;
    g_body = malloc(n + 1);
    if (g_body == NULL) {
        perror("malloc");
        exit(1);
    }
    memcpy(g_body, head, sizeof(head) - 1);
    memset(g_body + sizeof(head) - 1, 'x', n - fixed);
    memcpy(g_body + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    g_body[n] = '\0';
    g_body_len = n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [THREADS [BODY_BYTES [STATUS]]]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : env_uint("CARDVAULT_HTTP_THREADS", 0);
    size_t body_bytes = argc > 3 ? (size_t)atol(argv[3]) : 192;
    if (argc > 4)
        g_status = (unsigned)atoi(argv[4]);
    if (port < 1 || port > 65535 || threads > 256 || g_status < 100 || g_status > 599) {
        fprintf(stderr, "bare_mhd: bad arguments\n");
        return 2;
    }
    make_body(body_bytes);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Same as cv_http_server_start() in service/http_server.c. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    flags |= threads == 0 ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL : MHD_USE_EPOLL;
    struct MHD_OptionItem mode_opts[2];
    size_t k = 0;
    if (threads > 0)
        mode_opts[k++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL};
    mode_opts[k] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, env_uint("CARDVAULT_MAX_CONNECTIONS", 512),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, env_uint("CARDVAULT_MAX_CONNECTIONS_PER_IP", 128),
        MHD_OPTION_CONNECTION_TIMEOUT, env_uint("CARDVAULT_CONNECTION_TIMEOUT_S", 30),
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_ARRAY, mode_opts, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "bare_mhd: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "bare_mhd: listening on 127.0.0.1:%d, %s %u, %zu-byte body\n", port,
            threads == 0 ? "thread per connection" : "epoll pool of", threads, g_body_len);
    while (!g_stop)
        pause();
    MHD_stop_daemon(d);
    free(g_body);
    return 0;
}
