/* fuzz_router.c: cv_router_match on the (method, path) pairs a client can
 * send. Input: one flag byte, the method up to the first '\n', the path
 * after it. Flags choose whether the path is first percent-decoded with
 * libmicrohttpd's own MHD_http_unescape (what the HTTP layer hands the
 * router: "%2F" becomes '/', "%00" ends the string), how many times the path
 * body is repeated (very long paths, up to 128 copies), and the size of the
 * token buffer (the real one, 1, 8 or none). The route handlers are stubs:
 * only the table and the matcher are under test. Invariants: a match names
 * the requested method and, for token routes, rebuilds to the exact path; a
 * 405 carries one of the known Allow values; nothing else is returned; the
 * token buffer is never overrun and always NUL-terminated. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "cardvault/api_health.h"
#include "cardvault/api_tokens.h"
#include "cardvault/api_tokens_manage.h"
#include "cardvault/router.h"
#include "cardvault/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define METHOD_MAX 16
#define REPEAT_MAX 128

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_router invariant broken: %s\n", why);
    abort();
}

/* Handler stubs: the router links against these instead of api_tokens.c and
 * api_health.c (and api_relay.c). */
static void stub(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done)
{
    (void)deps;
    (void)call;
    struct cv_result res = {.status = CV_ERR_INTERNAL};
    cv_completion_finish(done, &res);
}
void cv_api_tokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_read(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_detokenize(const struct cv_handler_deps *deps, const struct cv_call *call,
                       struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_delete(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_relay(const struct cv_handler_deps *deps, const struct cv_call *call,
                  struct cv_completion *done);
void cv_api_relay(const struct cv_handler_deps *deps, const struct cv_call *call,
                  struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_cvc_hold(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done);
void cv_api_cvc_hold(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_list(const struct cv_handler_deps *deps, const struct cv_call *call,
                 struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_update(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_healthz(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_readyz(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    stub(deps, call, done);
}
void cv_api_metrics(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done)
{
    stub(deps, call, done);
}

static void check_match(const char *method, const char *path, size_t cap)
{
    const struct cv_route *route = NULL;
    const char *allow = NULL;
    /* Exact-size heap buffer (or none): one byte too many is an ASan report. */
    char *tok = cap > 0 ? malloc(cap) : NULL;
    if (tok != NULL)
        memset(tok, 'Q', cap);
    cv_status st =
        cv_router_match(CV_LISTENER_API | CV_LISTENER_OPS, method, path, &route, tok, cap, &allow);
    switch (st) {
    case CV_OK: {
        /* HEAD runs the GET route of an ops endpoint (router.c). */
        bool head_as_get = strcmp(method, "HEAD") == 0 && route != NULL &&
                           strcmp(route->method, "GET") == 0 && route->scope == 0;
        if (route == NULL || (strcmp(route->method, method) != 0 && !head_as_get) ||
            route->handler == NULL)
            fail("match without the requested method");
        const char *brace = strchr(route->pattern, '{');
        if (brace == NULL) {
            if (strcmp(route->pattern, path) != 0)
                fail("fixed route matched another path");
            if (tok != NULL && tok[0] != 'Q')
                fail("fixed route wrote a token");
            break;
        }
        if (tok == NULL)
            break;
        size_t tl = strnlen(tok, cap);
        if (tl == cap)
            fail("token buffer not NUL-terminated");
        if (tl == 0 && cap > 1)
            fail("empty token segment matched");
        /* Rebuild: head + segment + tail must be the path (when not truncated). */
        size_t head = (size_t)(brace - route->pattern);
        const char *tail = strchr(brace, '}') + 1;
        if (strncmp(path, route->pattern, head) != 0 || strncmp(path + head, tok, tl) != 0)
            fail("token is not the path segment");
        const char *seg_end = path + head + strcspn(path + head, "/");
        if (tl < cap - 1 && (size_t)(seg_end - (path + head)) != tl)
            fail("short token differs from the segment");
        if (strcmp(seg_end, tail) != 0)
            fail("path does not end with the pattern's tail");
        break;
    }
    case CV_ERR_METHOD_NOT_ALLOWED:
        if (route != NULL || allow == NULL ||
            (strcmp(allow, "POST") != 0 && strcmp(allow, "GET") != 0 &&
             strcmp(allow, "GET, POST") != 0 && strcmp(allow, "GET, DELETE, PATCH") != 0 &&
             strcmp(allow, "GET, HEAD") != 0))
            fail("405 without a known Allow value");
        break;
    case CV_ERR_ROUTE_NOT_FOUND:
        if (route != NULL || allow != NULL)
            fail("404 set outputs");
        break;
    default:
        fail("unexpected status");
    }
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = {CV_TOKEN_LEN + 1, 1, 8, 0};
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    const uint8_t *nl = memchr(rest, '\n', n);
    size_t ml = nl != NULL ? (size_t)(nl - rest) : 0;
    if (ml > METHOD_MAX)
        ml = METHOD_MAX;
    char method[METHOD_MAX + 1];
    memcpy(method, rest, ml);
    method[ml] = '\0';
    const uint8_t *body = nl != NULL ? nl + 1 : rest;
    size_t bl = n - (size_t)(body - rest);

    size_t repeat = (size_t)1 << ((flags >> 1) & 7); /* 1..128 copies */
    if (repeat > REPEAT_MAX)
        repeat = REPEAT_MAX;
    char *path = malloc(bl * repeat + 1);
    for (size_t r = 0; r < repeat; r++)
        memcpy(path + r * bl, body, bl);
    path[bl * repeat] = '\0';
    if (flags & 1)
        (void)MHD_http_unescape(path);
    check_match(method, path, caps[(flags >> 4) & 3]);
    free(path);
    return 0;
}
