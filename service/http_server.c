/* http_server.c: libmicrohttpd glue. Owns one struct request per HTTP
 * exchange (made on MHD's first call, freed in the completion callback),
 * enforces the 8 KiB body cap and the JSON content type, refuses API keys in
 * query strings, authenticates, checks the Idempotency-Key header, decodes
 * the body into the handler contract's structs (handler.h), dispatches, and
 * is the one place that maps a handler's result kind or cv_status to an HTTP
 * status, headers and a stable JSON error. It runs two listeners with the
 * same glue: the API and the ops listener (health and metrics), each serving
 * the routes the router gives it, each connection under the request deadline
 * of conn_deadline.c. It never logs a body, a query string or an
 * Authorization header, and request bodies are wiped when freed. */
#include "cardvault/http_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <microhttpd.h>

#include "cardvault/api_elements.h"
#include "cardvault/api_cvc_hold.h"
#include "cardvault/api_relay.h"
#include "cardvault/api_tokens.h"
#include "cardvault/api_errors.h"
#include "cardvault/client_addr.h"
#include "cardvault/conn_deadline.h"
#include "cardvault/json_codec.h"
#include "cardvault/list_query.h"
#include "cardvault/log.h"
#include "cardvault/origin.h"
#include "cardvault/ratelimit.h"
#include "cardvault/router.h"
#include "cardvault/secbuf.h"
#include "cardvault/tls_pair.h"
#include "cardvault/token.h"

#define TOKEN_SEGMENT_MAX   64
#define RETRY_AFTER_SECONDS 2 /* on 429 and 503 unless a rate limiter knows better */
#define TLS_FILE_MAX_BYTES  (64 * 1024)
#define RETIRED_MAX         8    /* daemons replaced by TLS reloads, still finishing connections */
#define OPS_MAX_CONNECTIONS 64   /* scrapers and probes: a handful at a time */
#define STOP_ANSWER_MS      2000 /* stop: time for answers resumed at the last moment */

/* libmicrohttpd keeps each connection's raw request (the Authorization
 * header, the body with its PAN and CVC) in a per-connection memory pool and
 * frees it without wiping. libmicrohttpd 0.9.75 (MHD_pool_create) takes a
 * pool of at most 32 KiB (its default) from malloc, where the freed bytes
 * stay in the heap; a larger one it maps with mmap(MAP_PRIVATE |
 * MAP_ANONYMOUS) and returns with munmap when the connection closes, so the
 * kernel takes the pages back and no later allocation can read them. 64 KiB
 * is above that line; only the pages a request touches are ever committed. */
#define CONNECTION_POOL_BYTES (64 * 1024)

/* TLS 1.2 and 1.3 only, AEAD ciphers only (GCM, ChaCha20-Poly1305), forward-
 * secret key exchange only, over the elliptic-curve groups X25519, P-256 and
 * P-384 (TLS 1.3 would otherwise negotiate finite-field DH with a client that
 * offers only that): PCI DSS 4.2.1 and NIST SP 800-52r2. GnuTLS priority
 * syntax, since Debian's libmicrohttpd uses GnuTLS. */
static const char tls_priorities[] =
    "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-GROUP-ALL:+GROUP-X25519:"
    "+GROUP-SECP256R1:+GROUP-SECP384R1:%SAFE_RENEGOTIATION";

struct cv_http_server {
    struct MHD_Daemon *daemon;
    struct cv_app *app;
    unsigned listener; /* CV_LISTENER_API or CV_LISTENER_OPS: the routes served */
    bool tls;
    struct cv_conn_deadline *deadline;
    atomic_int in_flight;
    struct cv_ratelimit *per_key;       /* requests per API key */
    struct cv_ratelimit *auth_failures; /* bad keys per client address */
    char *tls_cert;
    char *tls_key;
    bool quiesced;
    atomic_bool closing; /* the drain grace ended: new requests get 503 */
    bool suspend;        /* the epoll pool: a request waiting on its handler is suspended */
    atomic_int waiting;  /* suspended requests whose handler has not finished */
    /* What a daemon of this listener is started with, kept for a TLS
     * reload, which starts a new daemon on the same listening socket. */
    unsigned flags;
    unsigned max_connections, per_ip_connections;
    /* Daemons a reload replaced: they accept nothing and finish the
     * connections they have; stopped with the listener (or, once idle, at
     * the next reload), with the PEM they were started with. */
    struct retired_daemon {
        struct MHD_Daemon *daemon;
        char *tls_cert, *tls_key;
    } retired[RETIRED_MAX];
    size_t n_retired;
};

struct request {
    char request_id[CV_REQUEST_ID_LEN + 1];
    char quota_origin[CV_ORIGIN_MAX + 1]; /* the shop origin a frame's tokenize counts against */
    struct timespec start;
    const struct cv_route *route;
    char token[TOKEN_SEGMENT_MAX + 1];
    struct cv_principal who;
    bool authenticated;
    char *body; /* CV_HTTP_BODY_MAX_BYTES + 1, wiped on free */
    size_t body_len;
    int http_status; /* what was queued, for the access log */
    cv_status status;
    const char *method;
    unsigned retry_after_s;
    char client[CV_CLIENT_ADDR_LEN];
    /* The handler's side: what it was called with and what it finished with.
     * Everything here lives until on_completed, so a handler may finish
     * after it returned (see handler.h). */
    struct cv_tokenize_req tokenize;  /* the decoded body; wiped when the handler finishes */
    struct cv_cvc_hold_req cvc_hold;  /* a cvc-hold body; wiped likewise */
    struct cv_relay_req relay;        /* a relay's decoded body; wiped likewise */
    char hold[CV_RELAY_HOLD_MAX + 1]; /* a relay's CardVault-Hold header; "" when absent */
    struct cv_frame_req frame;        /* a frame page's decoded query */
    struct cv_list_req list;          /* GET /v1/tokens: the decoded query */
    struct cv_update_req update;      /* PATCH /v1/tokens/{token}: the decoded body */
    struct cv_call call;
    struct cv_completion done;
    struct cv_result result;
    /* A handler that finishes after it returned (handler.h) does so on
     * another thread. lock orders that finish against the connection's
     * thread: finished, suspended and the resume are read and written under
     * it, so a finish that comes before the suspension is seen, and one that
     * comes after resumes the connection exactly once. Thread per
     * connection: the connection's own thread waits on cond instead. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cv_http_server *srv;
    struct MHD_Connection *conn; /* set while suspended */
    bool dispatched;             /* the handler was called */
    bool suspended;
    bool finished;
};

/* X-Request-Id, the content type, and the headers of the answer's web
 * policy (api_elements.c writes their values; an API answer gets no-store
 * and nosniff and no CORS header of any kind). */
static void add_common_headers(struct MHD_Response *resp, const struct request *rq,
                               const char *content_type, enum cv_web_policy web,
                               const char *frame_ancestor)
{
    struct cv_web_header h[CV_WEB_HEADERS_MAX];
    char scratch[CV_WEB_SCRATCH_MAX];
    MHD_add_response_header(resp, "X-Request-Id", rq->request_id);
    size_t n = cv_elements_web_headers(web, frame_ancestor, h, scratch, sizeof(scratch));
    for (size_t i = 0; i < n; i++)
        MHD_add_response_header(resp, h[i].name, h[i].value);
    if (content_type != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
}

/* The request-deadline clock of a connection (set when MHD accepted it). */
static struct cv_conn_clock *clock_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static bool route_is_frame(const struct request *rq)
{
    return rq->route != NULL && rq->route->query != CV_ROUTE_QUERY_NONE;
}

/* Every answer leaves through here: the status for the access log, and
 * Retry-After on 429 and 503 (a rate limiter's own wait, else the default). */
static enum MHD_Result send_response(struct MHD_Connection *conn, struct request *rq, int http,
                                     cv_status st, struct MHD_Response *resp)
{
    if (http == 503 || http == 429) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u",
                 rq->retry_after_s > 0 ? rq->retry_after_s : RETRY_AFTER_SECONDS);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    rq->http_status = http;
    rq->status = st;
    /* The request is decided: what remains is the answer, which the
     * request deadline does not cover (the idle timeout does). */
    cv_conn_clock_pause(clock_of(conn));
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)http, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result queue_error(struct MHD_Connection *conn, struct request *rq, cv_status st,
                                   const char *param, const char *allow)
{
    struct cv_api_error m = cv_api_error_of(st);
    size_t len = 0;
    struct MHD_Response *resp;
    if (route_is_frame(rq)) {
        /* A frame page is shown inside the shop's page: its refusals are a
         * small HTML page with the same fixed text, never JSON. */
        char *page = cv_elements_refusal_page(m.http, cv_api_error_of(st).code, m.message,
                                              rq->request_id, &len);
        resp = page != NULL ? MHD_create_response_from_buffer_with_free_callback(len, page, free)
                            : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        add_common_headers(resp, rq, "text/html; charset=utf-8", CV_WEB_FRAME_REFUSAL, NULL);
        if (allow != NULL)
            MHD_add_response_header(resp, "Allow", allow);
        return send_response(conn, rq, m.http, st, resp);
    }
    char *body = cv_json_encode_error(m.type, cv_api_error_of(st).code, m.message, param,
                                      rq->request_id, &len);
    resp = MHD_create_response_from_buffer_with_free_callback(len, body, cv_json_free);
    add_common_headers(resp, rq, "application/json", CV_WEB_API, NULL);
    if (allow != NULL)
        MHD_add_response_header(resp, "Allow", allow);
    return send_response(conn, rq, m.http, st, resp);
}

/* The single mapping from a result kind to an HTTP status. */
static int http_of_kind(enum cv_result_kind kind)
{
    switch (kind) {
    case CV_RESULT_CREATED:
        return 201;
    case CV_RESULT_DELETED:
        return 204;
    case CV_RESULT_NOT_READY:
        return 503;
    case CV_RESULT_OK:
    default:
        return 200;
    }
}

static const char *content_type_of(enum cv_body_type type)
{
    switch (type) {
    case CV_BODY_METRICS:
        return "text/plain; version=0.0.4; charset=utf-8";
    case CV_BODY_HTML:
        return "text/html; charset=utf-8";
    case CV_BODY_JAVASCRIPT:
        return "text/javascript; charset=utf-8";
    case CV_BODY_CSS:
        return "text/css; charset=utf-8";
    case CV_BODY_JSON:
    default:
        return "application/json";
    }
}

/* Queues what the handler finished with; the response takes its body over. */
static enum MHD_Result queue_result(struct MHD_Connection *conn, struct request *rq)
{
    struct cv_result *res = &rq->result;
    if (res->status != CV_OK) {
        if (res->retry_after_s > 0) /* a quota's own wait */
            rq->retry_after_s = res->retry_after_s;
        return queue_error(conn, rq, res->status, res->error_param, NULL);
    }
    struct MHD_Response *resp;
    if (res->body != NULL) {
        resp = MHD_create_response_from_buffer_with_free_callback(res->body_len, res->body,
                                                                  res->free_body);
        res->body = NULL;
        add_common_headers(resp, rq, content_type_of(res->body_type), res->web,
                           res->frame_ancestor);
    } else if (res->static_body != NULL) {
        /* Compiled-in bytes: with MHD_RESPMEM_PERSISTENT, MHD reads them in
         * place and never writes or frees them (its API is older than const). */
        resp = MHD_create_response_from_buffer(res->body_len, (void *)(uintptr_t)res->static_body,
                                               MHD_RESPMEM_PERSISTENT);
        add_common_headers(resp, rq, content_type_of(res->body_type), res->web,
                           res->frame_ancestor);
    } else {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        add_common_headers(resp, rq, NULL, res->web, res->frame_ancestor);
    }
    if (res->replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    return send_response(conn, rq, http_of_kind(res->kind), CV_OK, resp);
}

/* The request's cv_completion: keeps the result for queue_result and drops
 * the decoded card data at once, since the handler is done with it. */
static void on_handler_finished(struct cv_completion *self, struct cv_result *result)
{
    struct request *rq = (struct request *)(void *)((char *)self - offsetof(struct request, done));
    struct cv_http_server *srv = rq->srv;
    rq->result = *result;
    memset(result, 0, sizeof(*result));
    cv_tokenize_req_cleanup(&rq->tokenize);
    cv_cvc_hold_req_cleanup(&rq->cvc_hold);
    cv_relay_req_cleanup(&rq->relay);
    cv_wipe(rq->hold, sizeof(rq->hold));
    cv_update_req_cleanup(&rq->update);
    pthread_mutex_lock(&rq->lock);
    assert(!rq->finished); /* exactly once */
    rq->finished = true;
    bool was_suspended = rq->suspended;
    if (was_suspended) {
        /* From any thread (MHD's ITC wakes the connection's poll); MHD then
         * calls on_request again, which queues the result. */
        rq->suspended = false;
        MHD_resume_connection(rq->conn);
    }
    pthread_cond_signal(&rq->cond);
    pthread_mutex_unlock(&rq->lock);
    /* rq may be gone from here on; srv is not (stop waits for this count). */
    if (was_suspended)
        atomic_fetch_sub(&srv->waiting, 1);
}

/* After the handler returned: queue its result now when it finished, else
 * wait for the finish without holding a thread of the pool (suspend), or,
 * with a thread per connection, on that connection's own thread. */
static enum MHD_Result answer_or_wait(struct cv_http_server *srv, struct MHD_Connection *conn,
                                      struct request *rq)
{
    pthread_mutex_lock(&rq->lock);
    if (!rq->finished && srv->suspend) {
        rq->conn = conn;
        rq->suspended = true;
        atomic_fetch_add(&srv->waiting, 1);
        MHD_suspend_connection(conn); /* only here, in the access handler */
        pthread_mutex_unlock(&rq->lock);
        return MHD_YES;
    }
    while (!rq->finished)
        pthread_cond_wait(&rq->cond, &rq->lock);
    pthread_mutex_unlock(&rq->lock);
    return queue_result(conn, rq);
}

static enum MHD_Result add_list_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    (void)cv_list_query_add(cls, key, value); /* the first error is kept in the query */
    return MHD_YES;
}

/* Header and body checks that belong to a route's decoded request: the
 * Idempotency-Key format, then the body itself (param names a bad field). */
static cv_status decode_request(struct MHD_Connection *conn, struct request *rq,
                                const char **idempotency_key, struct cv_json_param *param)
{
    const char *body = rq->body != NULL ? rq->body : "";
    *idempotency_key = NULL;
    param->name[0] = '\0';
    switch (rq->route->body) {
    case CV_ROUTE_BODY_TOKENIZE: {
        const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key != NULL && !cv_token_idempotency_key_is_valid(key, strlen(key)))
            return CV_ERR_INVALID_IDEMPOTENCY_KEY;
        CV_TRY(cv_json_decode_tokenize(body, rq->body_len, &rq->tokenize, param));
        *idempotency_key = key;
        return CV_OK;
    }
    case CV_ROUTE_BODY_EMPTY:
        return cv_json_decode_empty(body, rq->body_len, param);
    case CV_ROUTE_BODY_CVC_HOLD:
        return cv_json_decode_cvc_hold(body, rq->body_len, &rq->cvc_hold, param);
    case CV_ROUTE_BODY_RELAY: {
        const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key != NULL && !cv_token_idempotency_key_is_valid(key, strlen(key)))
            return CV_ERR_INVALID_IDEMPOTENCY_KEY;
        const char *hold = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "CardVault-Hold");
        if (hold != NULL) {
            if (strlen(hold) > CV_RELAY_HOLD_MAX || hold[0] == '\0') {
                snprintf(param->name, sizeof(param->name), "CardVault-Hold");
                return CV_ERR_BAD_REQUEST;
            }
            snprintf(rq->hold, sizeof(rq->hold), "%s", hold);
        }
        CV_TRY(cv_json_decode_relay(body, rq->body_len, &rq->relay, param));
        *idempotency_key = key;
        return CV_OK;
    }
    case CV_ROUTE_BODY_UPDATE: {
        const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (key != NULL && !cv_token_idempotency_key_is_valid(key, strlen(key)))
            return CV_ERR_INVALID_IDEMPOTENCY_KEY;
        CV_TRY(cv_json_decode_update(body, rq->body_len, &rq->update, param));
        *idempotency_key = key;
        return CV_OK;
    }
    case CV_ROUTE_BODY_LIST_QUERY:
        /* No body is read; the query is this route's input. */
        cv_list_query_init(&rq->list);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_list_arg, &rq->list);
        return cv_list_query_finish(&rq->list);
    case CV_ROUTE_BODY_NONE:
    default:
        return CV_OK;
    }
}

/* A query parameter that carries an API key: the key is now exposed in
 * proxy and server logs. Refuse the request (and never log the value). */
static enum MHD_Result find_key_in_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    bool *found = cls;
    (void)kind;
    static const char *const names[] = {"api_key",   "apikey",     "key",          "access_token",
                                        "token_key", "secret_key", "authorization"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (key != NULL && strcasecmp(key, names[i]) == 0)
            *found = true;
    if (value != NULL && (cv_token_api_key_kind_is(value) || strncasecmp(value, "Bearer", 6) == 0))
        *found = true;
    if (key != NULL && cv_token_api_key_kind_is(key))
        *found = true;
    return MHD_YES;
}

static bool content_type_is_json(struct MHD_Connection *conn)
{
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (ct == NULL)
        return false;
    size_t n = strlen("application/json");
    if (strncasecmp(ct, "application/json", n) != 0)
        return false;
    const char *rest = ct + n;
    while (*rest == ' ')
        rest++;
    return *rest == '\0' || *rest == ';';
}

static double elapsed_s(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

struct last_header {
    const char *name;
    const char *value;
};

/* Keeps the value of the last header called name: a proxy appends to the
 * right, and a second header line is to the right of the first. */
static enum MHD_Result find_last_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct last_header *h = cls;
    (void)kind;
    if (key != NULL && value != NULL && strcasecmp(key, h->name) == 0)
        h->value = value;
    return MHD_YES;
}

/* The TCP peer, or the client a trusted proxy reports (client_addr.c). */
static void client_address(const struct cv_http_server *srv, struct MHD_Connection *conn,
                           char out[CV_CLIENT_ADDR_LEN])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char peer[CV_CLIENT_ADDR_LEN] = "unknown";
    if (ci != NULL && ci->client_addr != NULL && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_addr,
                  peer, sizeof(peer));
    else if (ci != NULL && ci->client_addr != NULL && ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6,
                  &((const struct sockaddr_in6 *)(const void *)ci->client_addr)->sin6_addr, peer,
                  sizeof(peer));
    const struct cv_config *cfg = srv->app->config;
    struct last_header fwd = {
        cfg->forward_header == CV_FORWARD_FORWARDED ? "Forwarded" : "X-Forwarded-For", NULL};
    if (cfg->trusted_proxies.n > 0 && cv_client_addr_is_trusted(&cfg->trusted_proxies, peer))
        MHD_get_connection_values(conn, MHD_HEADER_KIND, find_last_header, &fwd);
    cv_client_addr_resolve(&cfg->trusted_proxies, cfg->forward_header, peer, fwd.value, out);
}

static struct request *request_new(struct cv_http_server *srv, const char *method)
{
    struct request *rq = cv_xcalloc(1, sizeof(*rq));
    clock_gettime(CLOCK_MONOTONIC, &rq->start);
    if (cv_token_request_id(rq->request_id) != CV_OK)
        snprintf(rq->request_id, sizeof(rq->request_id), "req_00000000000000000000");
    rq->method = method;
    rq->srv = srv;
    pthread_mutex_init(&rq->lock, NULL);
    pthread_cond_init(&rq->cond, NULL);
    atomic_fetch_add(&srv->in_flight, 1);
    return rq;
}

/* True when the request may call /v1: it has no Origin header (a server,
 * curl, an SDK), or its Origin is the vault's own (the card frame's fetch).
 * The vault's origin is CARDVAULT_PUBLIC_ORIGIN, else the Host header under
 * the scheme this listener serves (docs/elements.md). */
static bool origin_is_own(const struct cv_http_server *srv, struct MHD_Connection *conn)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (origin == NULL)
        return true;
    char theirs[CV_ORIGIN_MAX + 1], ours[CV_ORIGIN_MAX + 1];
    if (cv_origin_normalize(origin, strlen(origin), theirs) != CV_OK)
        return false; /* "null" (sandboxed or opaque), or garbage */
    const struct cv_config *cfg = srv->app->config;
    if (cfg->public_origin != NULL) {
        snprintf(ours, sizeof(ours), "%s", cfg->public_origin);
    } else {
        bool tls = cfg->tls_cert_file != NULL && cfg->tls_cert_file[0] != '\0';
        const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
        if (cv_origin_from_host(tls, host, ours) != CV_OK)
            return false;
    }
    return strcmp(theirs, ours) == 0;
}

/* The per-origin tokenize quota counts a shop's checkout pages, not the
 * vault: a browser's tokenize comes only from the card frame, whose Origin
 * is the vault's own (any other was refused with cross_origin_refused). So
 * the frame names the page it is mounted in (CardVault-Frame-Origin, the
 * `origin` its URL was served for), and that origin must be on the key's
 * list, like the frame page itself. A request without an Origin header
 * (a server) has no origin quota; its key's quota still applies. A frame's
 * cvc-hold is held to the same rule (it has no origin quota). */
static cv_status frame_quota_origin(struct MHD_Connection *conn, struct request *rq)
{
    rq->quota_origin[0] = '\0';
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin") == NULL)
        return CV_OK;
    const char *parent =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "CardVault-Frame-Origin");
    if (parent == NULL)
        return CV_ERR_FRAME_ORIGIN;
    if (cv_origin_normalize(parent, strlen(parent), rq->quota_origin) != CV_OK ||
        !cv_origin_list_contains(rq->who.origins, rq->quota_origin)) {
        rq->quota_origin[0] = '\0';
        return CV_ERR_FRAME_ORIGIN;
    }
    return CV_OK;
}

static enum MHD_Result add_frame_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)cv_frame_query_add(cls, key, value); /* the first error is kept in the request */
    return MHD_YES;
}

static enum MHD_Result find_non_iframe_dest(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    bool *navigation = cls;
    (void)kind;
    if (key != NULL && strcasecmp(key, "Sec-Fetch-Dest") == 0 &&
        (value == NULL || strcmp(value, "iframe") != 0))
        *navigation = true;
    return MHD_YES;
}

/* A frame page (docs/elements.md, in this order): not a top-level
 * navigation; a well-formed query; a known publishable key, looked up from
 * `key` as an Authorization header would be, under the same failure and
 * per-key budgets. The handler then checks the key's scope and origins. */
static enum MHD_Result on_frame_headers(struct cv_http_server *srv, struct MHD_Connection *conn,
                                        struct request *rq)
{
    /* Sec-Fetch-Dest is set by the browser, not by page script. Absent: an
     * older browser or not a browser; frame-ancestors still applies. Every
     * copy of the header must say iframe. */
    bool navigation = false;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, find_non_iframe_dest, &navigation);
    if (navigation)
        return queue_error(conn, rq, CV_ERR_FRAME_NAVIGATION, NULL, NULL);
    cv_frame_query_init(&rq->frame, rq->route->query == CV_ROUTE_QUERY_FRAME_CVC ? CV_FRAME_CVC
                                                                                 : CV_FRAME_CARD);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_frame_arg, &rq->frame);
    cv_status st = cv_frame_query_finish(&rq->frame);
    if (st == CV_ERR_KEY_IN_QUERY || st == CV_ERR_FRAME_KEY_NOT_PUBLISHABLE)
        cv_log(CV_LOG_WARN, "api_key_in_query", CV_LS("request_id", rq->request_id),
               CV_LS("route", rq->route->pattern));
    if (st != CV_OK)
        return queue_error(conn, rq, st, NULL, NULL);
    if (atomic_load(&srv->app->draining))
        return queue_error(conn, rq, CV_ERR_SHUTTING_DOWN, NULL, NULL);
    if (!cv_ratelimit_take(srv->auth_failures, rq->client, false, &rq->retry_after_s))
        return queue_error(conn, rq, CV_ERR_RATE_LIMITED, NULL, NULL);
    st = cv_auth_authenticate_key(srv->app->auth, rq->frame.key, strlen(rq->frame.key), &rq->who);
    if (st != CV_OK) {
        cv_metrics_count_auth_failure(srv->app->metrics);
        (void)cv_ratelimit_take(srv->auth_failures, rq->client, true, NULL);
        cv_log(CV_LOG_WARN, "auth_failed", CV_LS("request_id", rq->request_id),
               CV_LS("client", rq->client), CV_LS("route", rq->route->pattern),
               CV_LB("header_present", false));
        return queue_error(conn, rq, st == CV_ERR_UNAUTHENTICATED ? CV_ERR_FRAME_KEY_REFUSED : st,
                           NULL, NULL);
    }
    rq->authenticated = true;
    if (!cv_ratelimit_take(srv->per_key, rq->who.key_prefix, true, &rq->retry_after_s))
        return queue_error(conn, rq, CV_ERR_RATE_LIMITED, NULL, NULL);
    return MHD_YES;
}

/* First call for a request: everything decidable from the headers alone. */
static enum MHD_Result on_headers(struct cv_http_server *srv, struct MHD_Connection *conn,
                                  struct request *rq, const char *method, const char *url)
{
    const char *allow = NULL;
    cv_status st = cv_router_match(srv->listener, method, url, &rq->route, rq->token,
                                   sizeof(rq->token), &allow);
    /* A CORS preflight gets a plain refusal and no Access-Control-* header,
     * so a cross-origin fetch from a shop's page fails in the browser. */
    if (st == CV_ERR_METHOD_NOT_ALLOWED && strcmp(method, "OPTIONS") == 0)
        st = CV_ERR_CORS_NOT_SUPPORTED;
    if (st != CV_OK)
        return queue_error(conn, rq, st, NULL, allow);
    if (rq->route->query != CV_ROUTE_QUERY_NONE)
        return on_frame_headers(srv, conn, rq);

    bool key_in_query = false;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, find_key_in_query, &key_in_query);
    if (key_in_query) {
        cv_log(CV_LOG_WARN, "api_key_in_query", CV_LS("request_id", rq->request_id),
               CV_LS("route", rq->route->pattern));
        return queue_error(conn, rq, CV_ERR_KEY_IN_QUERY, NULL, NULL);
    }
    /* During the drain grace (app->draining: /readyz fails) requests are
     * still served, so a load balancer that has not noticed yet causes no
     * errors; only once the listener closes do late requests on kept-alive
     * connections get 503. */
    if (atomic_load(&srv->closing) && rq->route->scope != 0)
        return queue_error(conn, rq, CV_ERR_SHUTTING_DOWN, NULL, NULL);
    /* Only the vault's own frame calls the API from a browser; refused
     * before any key is looked at. */
    if (rq->route->scope != 0 && !origin_is_own(srv, conn))
        return queue_error(conn, rq, CV_ERR_CROSS_ORIGIN, NULL, NULL);

    if (rq->route->scope != 0) {
        /* Every key is looked up (a hash and an in-memory probe, no
         * database); then a client address that keeps failing is slowed
         * down on its failures only (PCI DSS 8.3.4): a valid key from the
         * same address, e.g. another merchant behind the same proxy, is
         * still served (ratelimit.h, cv_ratelimit_auth_outcome). */
        const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        st = cv_auth_authenticate(srv->app->auth, authz, &rq->who);
        st = cv_ratelimit_auth_outcome(srv->auth_failures, rq->client, st, &rq->retry_after_s);
        if (st == CV_ERR_UNAUTHENTICATED) {
            cv_metrics_count_auth_failure(srv->app->metrics);
            cv_log(CV_LOG_WARN, "auth_failed", CV_LS("request_id", rq->request_id),
                   CV_LS("client", rq->client), CV_LS("route", rq->route->pattern),
                   CV_LB("header_present", authz != NULL));
        }
        if (st != CV_OK)
            return queue_error(conn, rq, st, NULL, NULL);
        rq->authenticated = true;
        /* Per-key budget: bounds what a leaked key, or a script guessing
         * tokens with a valid key, can do per second. */
        if (!cv_ratelimit_take(srv->per_key, rq->who.key_prefix, true, &rq->retry_after_s))
            return queue_error(conn, rq, CV_ERR_RATE_LIMITED, NULL, NULL);
        /* Every scope bit the route names (an update needs read and tokenize). */
        if ((rq->who.scopes & rq->route->scope) != rq->route->scope) {
            if (rq->route->audit_denied) {
                struct cv_call call = {
                    .request_id = rq->request_id, .who = &rq->who, .token = rq->token};
                cv_api_audit_denied(&srv->app->handlers, rq->route->audit_action, &call);
            }
            return queue_error(conn, rq, CV_ERR_FORBIDDEN, NULL, NULL);
        }
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    unsigned long long declared = cl != NULL ? strtoull(cl, NULL, 10) : 0;
    if (declared > CV_HTTP_BODY_MAX_BYTES)
        return queue_error(conn, rq, CV_ERR_BODY_TOO_LARGE, NULL, NULL);
    bool has_body = declared > 0 ||
                    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL;
    /* A body must be JSON; tokenize needs one, so it always needs the type. */
    if (rq->route->takes_json &&
        (has_body || rq->route->id == CV_ROUTE_TOKENIZE || rq->route->id == CV_ROUTE_UPDATE) &&
        !content_type_is_json(conn))
        return queue_error(conn, rq, CV_ERR_UNSUPPORTED_MEDIA, NULL, NULL);
    return MHD_YES;
}

/* Percent-decodes the path and query arguments in place, as MHD would, but
 * leaves an escape that stands for a control byte (%00-%1F, %7F) as it was:
 * a decoded NUL would end the C string early ("/v1/tokens/tok_X%00" would
 * reach the router as the token tok_X), and no route or token has a control
 * byte, so the undecoded text simply matches nothing. */
static size_t unescape_path(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r != '\0';) {
        int hi = r[0] == '%' ? cv_hex_value((unsigned char)r[1]) : -1;
        int lo = hi >= 0 ? cv_hex_value((unsigned char)r[2]) : -1;
        int byte = hi >= 0 && lo >= 0 ? hi * 16 + lo : -1;
        if (byte >= 0x20 && byte != 0x7F) {
            *w++ = (char)byte;
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* A chunked body that has grown past the cap, in the middle of the body.
 * libmicrohttpd 0.9.75 queues a response only once the whole body has been
 * read (MHD_queue_response refuses in between, even on a suspended
 * connection), and reading the rest is what must not happen. So on a plain
 * connection the same 413 JSON error is written on the socket here, with
 * "Connection: close", the write side is shut down, and returning MHD_NO
 * makes MHD close the connection without reading another byte. Nothing else
 * writes to this socket now: no response is queued, and this is the
 * connection's own thread. On TLS the bytes would have to go through the
 * TLS session MHD owns, so the connection is only closed. */
static enum MHD_Result refuse_oversized_body(struct cv_http_server *srv,
                                             struct MHD_Connection *conn, struct request *rq)
{
    struct cv_api_error m = cv_api_error_of(CV_ERR_BODY_TOO_LARGE);
    rq->http_status = m.http;
    rq->status = CV_ERR_BODY_TOO_LARGE;
    cv_conn_clock_pause(clock_of(conn));
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (srv->tls || ci == NULL)
        return MHD_NO;
    size_t body_len = 0;
    char *body = cv_json_encode_error(m.type, cv_api_error_of(CV_ERR_BODY_TOO_LARGE).code,
                                      m.message, NULL, rq->request_id, &body_len);
    char date[40] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) != NULL)
        (void)strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char head[384];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nDate: %s\r\n"
                      "X-Request-Id: %s\r\nCache-Control: no-store\r\n"
                      "X-Content-Type-Options: nosniff\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      date, rq->request_id, body_len);
    int fd = ci->connect_fd;
    if (hn > 0 && (size_t)hn < sizeof(head) &&
        send(fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)hn)
        (void)send(fd, body, body_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)shutdown(fd, SHUT_WR);
    cv_json_free(body);
    return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct cv_http_server *srv = cls;
    struct request *rq = *con_cls;
    (void)version;

    if (rq == NULL) {
        rq = request_new(srv, method);
        client_address(srv, conn, rq->client);
        *con_cls = rq;
        return on_headers(srv, conn, rq, method, url);
    }
    if (rq->http_status != 0) {
        /* An error was queued on the headers: discard whatever body follows. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->dispatched) {
        /* Resumed: its handler finished after returning. The lock waits
         * for the finishing thread to let go of the request. */
        pthread_mutex_lock(&rq->lock);
        assert(rq->finished);
        pthread_mutex_unlock(&rq->lock);
        return queue_result(conn, rq);
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        if (rq->body_len + n > CV_HTTP_BODY_MAX_BYTES) {
            /* A chunked body past the cap: answer now, read no more. */
            return refuse_oversized_body(srv, conn, rq);
        } else {
            if (rq->body == NULL)
                rq->body = cv_xmalloc(CV_HTTP_BODY_MAX_BYTES + 1);
            memcpy(rq->body + rq->body_len, upload_data, n);
            rq->body_len += n;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* The whole request is here: the deadline stops counting. */
    cv_conn_clock_pause(clock_of(conn));
    if (rq->body != NULL)
        rq->body[rq->body_len] = '\0';

    const char *idempotency_key = NULL;
    struct cv_json_param param;
    cv_status st = decode_request(conn, rq, &idempotency_key, &param);
    /* The security-code frame's hold is a browser call of the same key as
     * its tokenize: the same rule for the page it names. */
    if (st == CV_OK &&
        (rq->route->body == CV_ROUTE_BODY_TOKENIZE || rq->route->body == CV_ROUTE_BODY_CVC_HOLD))
        st = frame_quota_origin(conn, rq);
    cv_wipe_stack(); /* the parser's frames held the body */
    if (st != CV_OK)
        return queue_error(conn, rq, st, param.name[0] != '\0' ? param.name : NULL, NULL);
    rq->call = (struct cv_call){
        .request_id = rq->request_id,
        .who = rq->authenticated ? &rq->who : NULL,
        .token = rq->route->id == CV_ROUTE_TOKENIZE || rq->route->id == CV_ROUTE_RELAY ||
                         rq->route->id == CV_ROUTE_LIST
                     ? NULL
                     : rq->token,
        .idempotency_key = idempotency_key,
        .tokenize = rq->route->body == CV_ROUTE_BODY_TOKENIZE ? &rq->tokenize : NULL,
        .cvc_hold = rq->route->body == CV_ROUTE_BODY_CVC_HOLD ? &rq->cvc_hold : NULL,
        .frame = rq->route->query != CV_ROUTE_QUERY_NONE ? &rq->frame : NULL,
        .origin = rq->quota_origin[0] != '\0' ? rq->quota_origin : NULL,
        .relay = rq->route->body == CV_ROUTE_BODY_RELAY ? &rq->relay : NULL,
        .destination = rq->route->id == CV_ROUTE_RELAY ? rq->token : NULL,
        .hold = rq->hold[0] != '\0' ? rq->hold : NULL,
        .list = rq->route->body == CV_ROUTE_BODY_LIST_QUERY ? &rq->list : NULL,
        .update = rq->route->body == CV_ROUTE_BODY_UPDATE ? &rq->update : NULL,
    };
    rq->done.finish = on_handler_finished;
    rq->dispatched = true;
    rq->route->handler(&srv->app->handlers, &rq->call, &rq->done);
    cv_wipe_stack(); /* the handler's frames held the card */
    /* A handler waiting on a batched commit returns unfinished and finishes
     * later on a batch writer thread (handler.h). */
    return answer_or_wait(srv, conn, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct cv_http_server *srv = cls;
    struct request *rq = *con_cls;
    /* Answered (or abandoned): the next request on this connection has the
     * whole deadline again. */
    cv_conn_clock_restart(clock_of(conn));
    if (rq == NULL)
        return;
    double secs = elapsed_s(&rq->start);
    enum cv_route_id rid = rq->route != NULL ? rq->route->id : CV_ROUTE_UNMATCHED;
    if (rq->http_status == 404 && rq->status == CV_ERR_ROUTE_NOT_FOUND)
        rid = CV_ROUTE_UNMATCHED;
    cv_metrics_observe_request(srv->app->metrics, rid, rq->http_status, rq->status, secs);
    if (rid != CV_ROUTE_METRICS && rid != CV_ROUTE_HEALTHZ && rid != CV_ROUTE_READYZ) {
        cv_log(CV_LOG_INFO, "http_request", CV_LS("request_id", rq->request_id),
               CV_LS("merchant_id", rq->authenticated ? rq->who.merchant_id : NULL),
               CV_LS("key_prefix", rq->authenticated ? rq->who.key_prefix : NULL),
               CV_LS("method", rq->method), CV_LS("route", cv_router_pattern(rid)),
               CV_LI("status", rq->http_status),
               CV_LS("error", rq->status != CV_OK ? cv_api_error_of(rq->status).code : NULL),
               CV_LD("duration_ms", secs * 1000.0),
               CV_LB("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
    }
    if (rq->body != NULL) {
        cv_wipe(rq->body, CV_HTTP_BODY_MAX_BYTES + 1);
        free(rq->body);
    }
    cv_tokenize_req_cleanup(&rq->tokenize); /* a handler that never ran */
    cv_cvc_hold_req_cleanup(&rq->cvc_hold);
    cv_relay_req_cleanup(&rq->relay);
    cv_update_req_cleanup(&rq->update);
    cv_result_cleanup(&rq->result); /* an answer that was never queued */
    pthread_mutex_destroy(&rq->lock);
    pthread_cond_destroy(&rq->cond);
    cv_wipe(rq, sizeof(*rq));
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    cv_log(CV_LOG_WARN, "http_library", CV_LS("message", line));
}

/* Each accepted connection gets its deadline clock, dropped before MHD
 * closes the socket (MHD notifies "closed" first), so the sweeper never
 * shuts down a descriptor number that was reused. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct cv_http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci != NULL ? cv_conn_deadline_watch(srv->deadline, ci->connect_fd) : NULL;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        cv_conn_clock_forget(*socket_context);
        *socket_context = NULL;
    }
}

static void pem_free(char *cert, char *key)
{
    if (key != NULL) {
        cv_wipe(key, strlen(key));
        free(key);
    }
    free(cert);
}

static void server_free(struct cv_http_server *srv)
{
    cv_conn_deadline_stop(srv->deadline);
    cv_ratelimit_free(srv->per_key);
    cv_ratelimit_free(srv->auth_failures);
    pem_free(srv->tls_cert, srv->tls_key);
    free(srv);
}

/* Starts a daemon of this listener with its current PEM: on addr, or, for a
 * reload, on an already listening socket (listen_fd >= 0). */
static struct MHD_Daemon *start_daemon(struct cv_http_server *srv, const struct sockaddr *addr,
                                       int listen_fd)
{
    const struct cv_config *cfg = srv->app->config;
    /* Options that depend on the mode go in an array; MHD_OPTION_END ends it early. */
    struct MHD_OptionItem mode_opts[6];
    size_t k = 0;
    if (listen_fd >= 0)
        mode_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    else
        mode_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)(uintptr_t)addr};
    if (srv->suspend)
        mode_opts[k++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->http_threads, NULL};
    if (srv->tls) {
        mode_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert};
        mode_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key};
        mode_opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                                 (void *)(uintptr_t)tls_priorities};
    }
    mode_opts[k] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(
        srv->flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_CONNECTION_LIMIT, srv->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        srv->per_ip_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->conn_timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_POOL_BYTES,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_UNESCAPE_CALLBACK, unescape_path, NULL,
        MHD_OPTION_ARRAY, mode_opts, MHD_OPTION_END);
}

/* Reads a PEM file into a NUL-terminated heap string (MHD wants memory). */
static cv_status read_pem(const char *path, char **out, char *why, size_t why_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, why_len, "cannot open TLS file %s", path);
        return CV_ERR_CONFIG;
    }
    char *buf = cv_xmalloc(TLS_FILE_MAX_BYTES + 1);
    size_t n = fread(buf, 1, TLS_FILE_MAX_BYTES, f);
    bool complete = feof(f) != 0;
    fclose(f);
    if (!complete || n == 0) {
        cv_wipe(buf, TLS_FILE_MAX_BYTES);
        free(buf);
        snprintf(why, why_len, "TLS file %s is empty or larger than 64 KiB", path);
        return CV_ERR_CONFIG;
    }
    buf[n] = '\0';
    *out = buf;
    return CV_OK;
}

/* What differs between the two listeners. */
struct listener_spec {
    unsigned listener; /* CV_LISTENER_* */
    const char *name;  /* the variable that sets the address, for errors */
    const char *host;
    uint16_t port;
    bool tls_allowed;
    unsigned max_connections;
    unsigned per_ip_connections;
};

static cv_status start_listener(struct cv_app *app, const struct listener_spec *spec,
                                struct cv_http_server **out, char *why, size_t why_len)
{
    const struct cv_config *cfg = app->config;
    /* An IPv4 address, or an IPv6 one (config.c took it out of its
     * brackets): [::] is every address of both families (MHD's dual stack),
     * any other IPv6 address that address alone. */
    struct sockaddr_in addr4;
    struct sockaddr_in6 addr6;
    memset(&addr4, 0, sizeof(addr4));
    memset(&addr6, 0, sizeof(addr6));
    const char *host = strcmp(spec->host, "localhost") == 0 ? "127.0.0.1" : spec->host;
    bool v6 = strchr(host, ':') != NULL;
    bool loopback = false, any6 = false;
    if (v6) {
        addr6.sin6_family = AF_INET6;
        addr6.sin6_port = htons(spec->port);
        if (inet_pton(AF_INET6, host, &addr6.sin6_addr) != 1) {
            snprintf(why, why_len,
                     "%s host must be an IPv4 or IPv6 address, e.g. 127.0.0.1 or "
                     "[::1]",
                     spec->name);
            return CV_ERR_CONFIG;
        }
        loopback = IN6_IS_ADDR_LOOPBACK(&addr6.sin6_addr);
        any6 = IN6_IS_ADDR_UNSPECIFIED(&addr6.sin6_addr);
    } else {
        addr4.sin_family = AF_INET;
        addr4.sin_port = htons(spec->port);
        if (inet_pton(AF_INET, host, &addr4.sin_addr) != 1) {
            snprintf(why, why_len,
                     "%s host must be an IPv4 or IPv6 address, e.g. 127.0.0.1 or [::1]",
                     spec->name);
            return CV_ERR_CONFIG;
        }
        loopback = (ntohl(addr4.sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr *addr = v6 ? (const struct sockaddr *)(const void *)&addr6
                                     : (const struct sockaddr *)(const void *)&addr4;
    bool tls = spec->tls_allowed && cfg->tls_cert_file != NULL && cfg->tls_cert_file[0] != '\0';
    if (!tls && !loopback && !cfg->allow_plaintext) {
        snprintf(why, why_len,
                 spec->tls_allowed
                     ? "refusing plain HTTP on non-loopback address %s: set CARDVAULT_TLS_CERT "
                       "and CARDVAULT_TLS_KEY, or CARDVAULT_ALLOW_PLAINTEXT=1 behind a "
                       "TLS-terminating proxy"
                     : "refusing the plain-HTTP ops listener on non-loopback address %s: keep "
                       "CARDVAULT_OPS_LISTEN on 127.0.0.1, or set CARDVAULT_ALLOW_PLAINTEXT=1 "
                       "on a private network",
                 spec->host);
        return CV_ERR_CONFIG;
    }
    struct cv_http_server *srv = cv_xcalloc(1, sizeof(*srv));
    srv->app = app;
    srv->listener = spec->listener;
    srv->tls = tls;
    atomic_init(&srv->in_flight, 0);
    atomic_init(&srv->closing, false);
    srv->per_key = cv_ratelimit_new(cfg->rate_limit_rps, cfg->rate_limit_burst, 4096);
    srv->auth_failures =
        cv_ratelimit_new(cfg->auth_failures_per_min / 60.0, cfg->auth_failures_per_min, 4096);
    if (cv_conn_deadline_start(cfg->request_deadline_ms, app->metrics, &srv->deadline) != CV_OK) {
        snprintf(why, why_len, "cannot start the request-deadline thread");
        server_free(srv);
        return CV_ERR_INTERNAL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (v6) /* MHD needs the flag for an IPv6 socket even when given the address */
        flags |= any6 ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    bool pool = spec->listener == CV_LISTENER_API && cfg->http_threads > 0;
    flags |= pool ? MHD_USE_EPOLL : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
    /* The pool suspends a request whose handler finishes later, so a few
     * threads serve every connection while their writes wait for a batch;
     * MHD_resume_connection may come from any thread, and MHD_USE_ITC makes
     * it wake the pool thread's poll. A thread per connection waits on its
     * own thread instead: MHD 0.9.75 parks every suspended connection's
     * thread on the one daemon ITC, so each resume would wake them all. */
    if (pool)
        flags |= MHD_ALLOW_SUSPEND_RESUME;
    srv->suspend = pool;
    atomic_init(&srv->waiting, 0);
    if (tls) {
        if (read_pem(cfg->tls_cert_file, &srv->tls_cert, why, why_len) != CV_OK ||
            read_pem(cfg->tls_key_file, &srv->tls_key, why, why_len) != CV_OK) {
            server_free(srv);
            return CV_ERR_CONFIG;
        }
        struct cv_tls_pair_info pair;
        char reason[160];
        if (cv_tls_pair_check(srv->tls_cert, strlen(srv->tls_cert), srv->tls_key,
                              strlen(srv->tls_key), time(NULL), &pair, reason,
                              sizeof(reason)) != CV_OK) {
            snprintf(why, why_len, "CARDVAULT_TLS_CERT / CARDVAULT_TLS_KEY: %s", reason);
            server_free(srv);
            return CV_ERR_CONFIG;
        }
        cv_metrics_tls_cert(app->metrics, (int64_t)pair.not_after);
        flags |= MHD_USE_TLS;
    }
    srv->flags = flags;
    srv->max_connections = spec->max_connections;
    srv->per_ip_connections = spec->per_ip_connections;
    srv->daemon = start_daemon(srv, addr, -1);
    if (srv->daemon == NULL) {
        snprintf(why, why_len,
                 tls ? "cannot start HTTPS on %s%s%s:%u (address in use, or unusable "
                       "certificate/key)"
                     : "cannot listen on %s%s%s:%u (%s: address in use or not permitted)",
                 v6 ? "[" : "", spec->host, v6 ? "]" : "", (unsigned)spec->port, spec->name);
        server_free(srv);
        return CV_ERR_CONFIG;
    }
    if (spec->listener == CV_LISTENER_OPS)
        cv_log(CV_LOG_INFO, "ops_listener", CV_LS("host", spec->host), CV_LI("port", spec->port),
               CV_LS("serves", "/healthz /readyz /metrics"));
    else if (!tls)
        cv_log(CV_LOG_WARN, "plaintext_http",
               CV_LS("detail", loopback ? "listening on loopback without TLS"
                                        : "CARDVAULT_ALLOW_PLAINTEXT=1: plain HTTP beyond "
                                          "loopback; TLS must terminate in front of cardvault"));
    else
        cv_log(CV_LOG_INFO, "tls_enabled", CV_LS("protocols", "TLS1.2,TLS1.3"),
               CV_LS("ciphers", "AEAD only"));
    *out = srv;
    return CV_OK;
}

cv_status cv_http_server_start(struct cv_app *app, struct cv_http_server **out, char *why,
                               size_t why_len)
{
    const struct cv_config *cfg = app->config;
    struct listener_spec spec = {
        CV_LISTENER_API,      "CARDVAULT_LISTEN",     cfg->listen_host, cfg->listen_port, true,
        cfg->max_connections, cfg->per_ip_connections};
    return start_listener(app, &spec, out, why, why_len);
}

cv_status cv_http_server_start_ops(struct cv_app *app, struct cv_http_server **out, char *why,
                                   size_t why_len)
{
    const struct cv_config *cfg = app->config;
    struct listener_spec spec = {
        CV_LISTENER_OPS, "CARDVAULT_OPS_LISTEN", cfg->ops_listen_host, cfg->ops_listen_port,
        false,           OPS_MAX_CONNECTIONS,    OPS_MAX_CONNECTIONS};
    return start_listener(app, &spec, out, why, why_len);
}

bool cv_http_server_drain(struct cv_http_server *srv, unsigned drain_ms)
{
    /* Stop accepting; requests already on a connection run to completion. */
    atomic_store(&srv->closing, true);
    if (!srv->quiesced) {
        MHD_socket ls = MHD_quiesce_daemon(srv->daemon);
        if (ls != MHD_INVALID_SOCKET)
            close(ls);
        srv->quiesced = true;
    }
    for (unsigned waited = 0; waited < drain_ms && atomic_load(&srv->in_flight) > 0; waited += 10)
        usleep(10 * 1000);
    int left = atomic_load(&srv->in_flight);
    if (left > 0)
        cv_log(CV_LOG_WARN, "shutdown_drain_timeout", CV_LI("requests_in_flight", left));
    return left == 0;
}

void cv_http_server_stop(struct cv_http_server *srv)
{
    if (srv == NULL)
        return;
    /* MHD must not be stopped with a connection suspended. A suspended
     * request is waiting for its batch, which the writers still run (the
     * store closes after this): wait for each to finish and resume, as a
     * thread blocked on its batch would be joined, then give the resumed
     * answers a moment to be written. */
    bool had_waiting = atomic_load(&srv->waiting) > 0;
    for (unsigned waited = 0; atomic_load(&srv->waiting) > 0; waited += 10) {
        if (waited % 5000 == 0)
            cv_log(CV_LOG_WARN, "shutdown_waiting_for_batches",
                   CV_LI("requests_suspended", atomic_load(&srv->waiting)));
        usleep(10 * 1000);
    }
    for (unsigned waited = 0;
         had_waiting && waited < STOP_ANSWER_MS && atomic_load(&srv->in_flight) > 0; waited += 10)
        usleep(10 * 1000);
    for (size_t i = 0; i < srv->n_retired; i++) {
        MHD_stop_daemon(srv->retired[i].daemon);
        pem_free(srv->retired[i].tls_cert, srv->retired[i].tls_key);
    }
    MHD_stop_daemon(srv->daemon);
    server_free(srv);
}

/* Stops the replaced daemons that have no connection left. */
static void reap_retired(struct cv_http_server *srv)
{
    size_t kept = 0;
    for (size_t i = 0; i < srv->n_retired; i++) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(srv->retired[i].daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (info != NULL && info->num_connections == 0) {
            MHD_stop_daemon(srv->retired[i].daemon);
            pem_free(srv->retired[i].tls_cert, srv->retired[i].tls_key);
        } else {
            srv->retired[kept++] = srv->retired[i];
        }
    }
    srv->n_retired = kept;
}

cv_status cv_http_server_reload_tls(struct cv_http_server *srv, struct cv_tls_pair_info *pair,
                                    char *why, size_t why_len)
{
    const struct cv_config *cfg = srv->app->config;
    char *cert = NULL, *key = NULL;
    cv_status st = CV_ERR_CONFIG;
    if (!srv->tls) {
        snprintf(why, why_len, "this listener does not serve TLS");
        return CV_ERR_CONFIG;
    }
    reap_retired(srv);
    if (srv->quiesced || srv->n_retired == RETIRED_MAX) {
        snprintf(why, why_len,
                 srv->quiesced ? "the listener is shutting down"
                               : "earlier reloads still have connections open");
        return CV_ERR_CONFIG;
    }
    /* The new pair is judged before anything changes. */
    if (read_pem(cfg->tls_cert_file, &cert, why, why_len) != CV_OK ||
        read_pem(cfg->tls_key_file, &key, why, why_len) != CV_OK)
        goto out;
    if (cv_tls_pair_check(cert, strlen(cert), key, strlen(key), time(NULL), pair, why, why_len) !=
        CV_OK)
        goto out;
    /* A new daemon on a second descriptor of the same listening socket
     * starts accepting beside the old one; only once it runs does the old
     * one stop accepting. No connection is refused in between, and a pair
     * GnuTLS refuses changes nothing. */
    const union MHD_DaemonInfo *li = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    int fd = li != NULL ? fcntl(li->listen_fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0) {
        snprintf(why, why_len, "cannot share the listening socket");
        goto out;
    }
    char *old_cert = srv->tls_cert, *old_key = srv->tls_key;
    srv->tls_cert = cert;
    srv->tls_key = key;
    struct MHD_Daemon *fresh = start_daemon(srv, NULL, fd);
    if (fresh == NULL) {
        srv->tls_cert = old_cert;
        srv->tls_key = old_key;
        close(fd);
        snprintf(why, why_len, "the TLS library refused the certificate or key");
        goto out;
    }
    cert = key = NULL; /* the listener's now */
    struct MHD_Daemon *old = srv->daemon;
    srv->daemon = fresh;
    MHD_socket ls = MHD_quiesce_daemon(old);
    if (ls != MHD_INVALID_SOCKET)
        close(ls); /* the old descriptor; the socket stays open through fd */
    srv->retired[srv->n_retired++] = (struct retired_daemon){old, old_cert, old_key};
    cv_metrics_tls_cert(srv->app->metrics, (int64_t)pair->not_after);
    st = CV_OK;
out:
    pem_free(cert, key);
    return st;
}

const char *cv_http_server_library_version(void)
{
    const char *v = MHD_get_version();
    return v != NULL ? v : "unknown";
}
