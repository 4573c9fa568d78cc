/* test_router.c: the route table. Every route matches with its id and its
 * {token} segment; a known path with another method is a 405 naming the
 * methods it does take; near misses (trailing or doubled slashes, empty or
 * extra segments, other case) are 404s, because one resource has exactly
 * one URL; and a token segment longer than the caller's buffer is cut to
 * fit and NUL-terminated without a byte written past the end. */
#include "cardvault/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/token.h"
#include "check.h"

#define TOK "tok_4eC39HqLyjWDarjtT1zdp7"

/* The listeners the helpers below match for: both, except in the test of
 * which listener serves what. */
static unsigned listener = CV_LISTENER_API | CV_LISTENER_OPS;

/* Matches with a token buffer of cap bytes surrounded by canaries. */
static cv_status match(const char *method, const char *path, const struct cv_route **route,
                       char *token, size_t cap, const char **allow)
{
    *route = NULL;
    *allow = NULL;
    return cv_router_match(listener, method, path, route, token, cap, allow);
}

static void expect_route(const char *method, const char *path, enum cv_route_id id,
                         const char *token)
{
    const struct cv_route *route = NULL;
    const char *allow = NULL;
    char seg[CV_TOKEN_LEN + 8];
    memset(seg, 'Z', sizeof(seg));
    cv_status st = match(method, path, &route, seg, sizeof(seg), &allow);
    if (st != CV_OK)
        fprintf(stderr, "  %s %s: %s\n", method, path, cv_status_name(st));
    CHECK_EQ_INT(st, CV_OK);
    CHECK(route != NULL);
    if (route == NULL)
        return;
    CHECK_EQ_INT(route->id, id);
    CHECK(strcmp(route->method, method) == 0);
    CHECK(route->handler != NULL);
    if (token != NULL)
        CHECK(strcmp(seg, token) == 0);
}

static void expect_405(const char *method, const char *path, const char *want_allow)
{
    const struct cv_route *route = NULL;
    const char *allow = NULL;
    char seg[64];
    CHECK_EQ_INT(match(method, path, &route, seg, sizeof(seg), &allow), CV_ERR_METHOD_NOT_ALLOWED);
    CHECK(route == NULL);
    CHECK(allow != NULL && strcmp(allow, want_allow) == 0);
    if (allow != NULL && strcmp(allow, want_allow) != 0)
        fprintf(stderr, "  %s %s: Allow %s, want %s\n", method, path, allow, want_allow);
}

static void expect_404(const char *method, const char *path)
{
    const struct cv_route *route = NULL;
    const char *allow = NULL;
    char seg[64];
    cv_status st = match(method, path, &route, seg, sizeof(seg), &allow);
    if (st != CV_ERR_ROUTE_NOT_FOUND)
        fprintf(stderr, "  %s \"%s\": %s, want route_not_found\n", method, path,
                cv_status_name(st));
    CHECK_EQ_INT(st, CV_ERR_ROUTE_NOT_FOUND);
    CHECK(route == NULL);
    CHECK(allow == NULL);
}

static void every_route_matches_with_its_id(void)
{
    expect_route("POST", "/v1/tokens", CV_ROUTE_TOKENIZE, NULL);
    expect_route("GET", "/v1/tokens/" TOK, CV_ROUTE_READ, TOK);
    expect_route("DELETE", "/v1/tokens/" TOK, CV_ROUTE_DELETE, TOK);
    expect_route("POST", "/v1/tokens/" TOK "/detokenize", CV_ROUTE_DETOKENIZE, TOK);
    expect_route("GET", "/v1/tokens", CV_ROUTE_LIST, NULL);
    expect_route("PATCH", "/v1/tokens/" TOK, CV_ROUTE_UPDATE, TOK);
    expect_route("GET", "/healthz", CV_ROUTE_HEALTHZ, NULL);
    expect_route("GET", "/readyz", CV_ROUTE_READYZ, NULL);
    expect_route("GET", "/metrics", CV_ROUTE_METRICS, NULL);
}

static void token_segment_is_passed_verbatim_for_validation_later(void)
{
    /* The router does not judge token syntax (the handler does, answering
     * 404 like any unknown token); it only cuts out one segment. */
    expect_route("GET", "/v1/tokens/x", CV_ROUTE_READ, "x");
    expect_route("GET", "/v1/tokens/tok_%2F..%2F", CV_ROUTE_READ, "tok_%2F..%2F");
    expect_route("GET", "/v1/tokens/'%20OR%201=1--", CV_ROUTE_READ, "'%20OR%201=1--");
    expect_route("DELETE", "/v1/tokens/detokenize", CV_ROUTE_DELETE, "detokenize");
    expect_route("POST", "/v1/tokens/detokenize/detokenize", CV_ROUTE_DETOKENIZE, "detokenize");
}

static void routes_carry_their_scope_and_body_rules(void)
{
    const struct cv_route *r = NULL;
    const char *allow = NULL;
    char seg[64];
    CHECK_EQ_INT(match("POST", "/v1/tokens", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == CV_SCOPE_TOKENIZE && r->takes_json);
    CHECK_EQ_INT(match("GET", "/v1/tokens/" TOK, &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == CV_SCOPE_READ && !r->takes_json);
    CHECK_EQ_INT(match("DELETE", "/v1/tokens/" TOK, &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == CV_SCOPE_DELETE);
    CHECK_EQ_INT(match("POST", "/v1/tokens/" TOK "/detokenize", &r, seg, sizeof(seg), &allow),
                 CV_OK);
    CHECK(r != NULL && r->scope == CV_SCOPE_DETOKENIZE && r->audit_denied);
    /* The list reads; an update needs read and tokenize both (every bit). */
    CHECK_EQ_INT(match("GET", "/v1/tokens", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == CV_SCOPE_READ && r->body == CV_ROUTE_BODY_LIST_QUERY);
    CHECK_EQ_INT(match("PATCH", "/v1/tokens/" TOK, &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == (CV_SCOPE_READ | CV_SCOPE_TOKENIZE) && r->takes_json &&
          r->body == CV_ROUTE_BODY_UPDATE);
    /* Health and metrics need no key; nothing else is unauthenticated. */
    CHECK_EQ_INT(match("GET", "/healthz", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == 0);
    CHECK_EQ_INT(match("GET", "/readyz", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->scope == 0);
}

/* The body reaches a handler decoded: tokenize's object, detokenize's empty
 * one; every other route ignores its body. */
static void bodies_are_decoded_per_route(void)
{
    const struct cv_route *r = NULL;
    const char *allow = NULL;
    char seg[64];
    CHECK_EQ_INT(match("POST", "/v1/tokens", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->body == CV_ROUTE_BODY_TOKENIZE);
    CHECK_EQ_INT(match("POST", "/v1/tokens/" TOK "/detokenize", &r, seg, sizeof(seg), &allow),
                 CV_OK);
    CHECK(r != NULL && r->body == CV_ROUTE_BODY_EMPTY);
    const char *none[][2] = {{"GET", "/v1/tokens/" TOK},
                             {"DELETE", "/v1/tokens/" TOK},
                             {"GET", "/healthz"},
                             {"GET", "/readyz"},
                             {"GET", "/metrics"}};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        CHECK_EQ_INT(match(none[i][0], none[i][1], &r, seg, sizeof(seg), &allow), CV_OK);
        CHECK(r != NULL && r->body == CV_ROUTE_BODY_NONE && !r->takes_json);
    }
}

static void patterns_name_routes_for_metrics(void)
{
    CHECK(strcmp(cv_router_pattern(CV_ROUTE_TOKENIZE), "/v1/tokens") == 0);
    CHECK(strcmp(cv_router_pattern(CV_ROUTE_READ), "/v1/tokens/{token}") == 0);
    CHECK(strcmp(cv_router_pattern(CV_ROUTE_DETOKENIZE), "/v1/tokens/{token}/detokenize") == 0);
    CHECK(strcmp(cv_router_pattern(CV_ROUTE_UNMATCHED), "unmatched") == 0);
    CHECK(strcmp(cv_router_pattern((enum cv_route_id)9999), "unmatched") == 0);
}

/* The router's table and routes.c (which metrics and logs use) name each
 * route the same way. */
static void router_table_agrees_with_route_names(void)
{
    for (int id = 0; id < CV_ROUTE_COUNT; id++) {
        CHECK(strcmp(cv_router_pattern((enum cv_route_id)id),
                     cv_route_pattern((enum cv_route_id)id)) == 0);
        CHECK(strcmp(cv_router_method((enum cv_route_id)id),
                     cv_route_method((enum cv_route_id)id)) == 0);
    }
    CHECK(strcmp(cv_route_method((enum cv_route_id)9999), "other") == 0);
}

/* HEAD on an ops endpoint runs its GET route: same handler, same id. */
static void head_on_ops_endpoints_runs_their_get_route(void)
{
    const struct cv_route *r = NULL;
    const char *allow = NULL;
    char seg[64];
    static const struct {
        const char *path;
        enum cv_route_id id;
    } ops[] = {{"/healthz", CV_ROUTE_HEALTHZ},
               {"/readyz", CV_ROUTE_READYZ},
               {"/metrics", CV_ROUTE_METRICS}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        CHECK_EQ_INT(match("HEAD", ops[i].path, &r, seg, sizeof(seg), &allow), CV_OK);
        CHECK(r != NULL && r->id == ops[i].id && strcmp(r->method, "GET") == 0);
    }
    /* On the listener that serves them; /healthz on both. */
    r = NULL;
    CHECK_EQ_INT(cv_router_match(CV_LISTENER_OPS, "HEAD", "/readyz", &r, seg, sizeof(seg), &allow),
                 CV_OK);
    CHECK_EQ_INT(cv_router_match(CV_LISTENER_API, "HEAD", "/healthz", &r, seg, sizeof(seg), &allow),
                 CV_OK);
    CHECK_EQ_INT(cv_router_match(CV_LISTENER_API, "HEAD", "/metrics", &r, seg, sizeof(seg), &allow),
                 CV_ERR_ROUTE_NOT_FOUND);
}

static void wrong_method_is_405_with_allow(void)
{
    expect_405("PUT", "/v1/tokens", "GET, POST");
    expect_405("DELETE", "/v1/tokens", "GET, POST");
    expect_405("PATCH", "/v1/tokens", "GET, POST");
    expect_405("POST", "/v1/tokens/" TOK, "GET, DELETE, PATCH");
    expect_405("PUT", "/v1/tokens/" TOK, "GET, DELETE, PATCH");
    expect_405("GET", "/v1/tokens/" TOK "/detokenize", "POST");
    expect_405("DELETE", "/v1/tokens/" TOK "/detokenize", "POST");
    expect_405("POST", "/healthz", "GET, HEAD");
    expect_405("DELETE", "/readyz", "GET, HEAD");
    expect_405("POST", "/metrics", "GET, HEAD");
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
    expect_405("get", "/healthz", "GET, HEAD");
    expect_405("head", "/healthz", "GET, HEAD");
    expect_405("HEAD", "/elements.js", "GET"); /* HEAD only where monitoring asks it */
    expect_405("HEAD", "/v1/tokens/" TOK, "GET, DELETE, PATCH");
    expect_405("", "/v1/tokens", "GET, POST");
    expect_405("POST ", "/v1/tokens/" TOK, "GET, DELETE, PATCH");
}

static void unknown_paths_are_404(void)
{
    expect_404("GET", "/");
    expect_404("GET", "");
    expect_404("GET", "/v1");
    expect_404("GET", "/v1/");
    expect_404("GET", "/v2/tokens");
    expect_404("POST", "/v1/token");
    expect_404("POST", "/v1/tokenss");
    expect_404("GET", "/healthz/x");
    expect_404("GET", "/healthzz");
    expect_404("GET", "/HEALTHZ");
    expect_404("POST", "/V1/tokens");
    expect_404("GET", "healthz");
}

static void trailing_and_doubled_slashes_are_404(void)
{
    expect_404("POST", "/v1/tokens/");
    expect_404("GET", "/healthz/");
    expect_404("POST", "//v1/tokens");
    expect_404("POST", "/v1//tokens");
    expect_404("GET", "/v1/tokens//" TOK);
    expect_404("GET", "/v1/tokens/" TOK "/");
    expect_404("POST", "/v1/tokens/" TOK "//detokenize");
    expect_404("POST", "/v1/tokens/" TOK "/detokenize/");
}

static void empty_or_extra_token_segments_are_404(void)
{
    expect_404("GET", "/v1/tokens//");
    expect_404("POST", "/v1/tokens//detokenize");
    expect_404("GET", "/v1/tokens/a/b");
    expect_404("DELETE", "/v1/tokens/a/b");
    expect_404("POST", "/v1/tokens/a/b/detokenize");
    expect_404("POST", "/v1/tokens/" TOK "/detokenize/x");
    expect_404("POST", "/v1/tokens/" TOK "/Detokenize");
    expect_404("POST", "/v1/tokens/" TOK "/detokenizex");
}

static void long_token_segment_is_truncated_safely(void)
{
    /* 1 MiB token segment, then 1 MiB of path after it: the buffer gets
     * cap-1 bytes and a NUL; the canary after it is untouched. */
    size_t seg_len = 1u << 20;
    char *path = malloc(seg_len + 64);
    size_t n = (size_t)snprintf(path, seg_len + 64, "/v1/tokens/");
    memset(path + n, 'A', seg_len);
    n += seg_len;
    path[n] = '\0';

    const struct cv_route *route = NULL;
    const char *allow = NULL;
    struct {
        char seg[CV_TOKEN_LEN + 1];
        char canary[16];
    } buf;
    memset(&buf, 'C', sizeof(buf));
    CHECK_EQ_INT(match("GET", path, &route, buf.seg, sizeof(buf.seg), &allow), CV_OK);
    CHECK(route != NULL && route->id == CV_ROUTE_READ);
    CHECK_EQ_INT(strlen(buf.seg), CV_TOKEN_LEN);
    for (size_t i = 0; i < sizeof(buf.canary); i++)
        CHECK_EQ_INT(buf.canary[i], 'C');

    /* The same with the detokenize suffix. */
    snprintf(path + n, seg_len + 64 - n, "/detokenize");
    memset(&buf, 'C', sizeof(buf));
    CHECK_EQ_INT(match("POST", path, &route, buf.seg, sizeof(buf.seg), &allow), CV_OK);
    CHECK(route != NULL && route->id == CV_ROUTE_DETOKENIZE);
    CHECK_EQ_INT(strlen(buf.seg), CV_TOKEN_LEN);
    CHECK_EQ_INT(buf.canary[0], 'C');

    /* Tiny buffers: cap 1 gets an empty string, cap 0 and NULL get nothing. */
    char one = 'X';
    CHECK_EQ_INT(match("GET", "/v1/tokens/" TOK, &route, &one, 1, &allow), CV_OK);
    CHECK_EQ_INT(one, '\0');
    char none = 'X';
    CHECK_EQ_INT(match("GET", "/v1/tokens/" TOK, &route, &none, 0, &allow), CV_OK);
    CHECK_EQ_INT(none, 'X');
    CHECK_EQ_INT(match("GET", "/v1/tokens/" TOK, &route, NULL, 0, &allow), CV_OK);
    free(path);
}

static void very_long_unknown_paths_are_404(void)
{
    size_t len = 1u << 20;
    char *path = malloc(len + 1);
    memset(path, '/', len);
    path[len] = '\0';
    expect_404("GET", path);
    memset(path, 'a', len);
    path[0] = '/';
    expect_404("GET", path);
    /* "/v1/tokens" followed by a long tail of slashes. */
    memcpy(path, "/v1/tokens", 10);
    memset(path + 10, '/', len - 10);
    expect_404("POST", path);
    free(path);
}

/* The API listener faces merchants and has no readiness or metrics;
 * the ops listener has no token routes. /healthz is on both. */
static void each_listener_serves_only_its_routes(void)
{
    listener = CV_LISTENER_API;
    expect_route("POST", "/v1/tokens", CV_ROUTE_TOKENIZE, NULL);
    expect_route("GET", "/v1/tokens/" TOK, CV_ROUTE_READ, TOK);
    expect_route("GET", "/healthz", CV_ROUTE_HEALTHZ, NULL);
    expect_404("GET", "/readyz");
    expect_404("GET", "/metrics");
    expect_404("POST", "/metrics"); /* not a 405 that would reveal the path */
    listener = CV_LISTENER_OPS;
    expect_route("GET", "/healthz", CV_ROUTE_HEALTHZ, NULL);
    expect_route("GET", "/readyz", CV_ROUTE_READYZ, NULL);
    expect_route("GET", "/metrics", CV_ROUTE_METRICS, NULL);
    expect_405("POST", "/metrics", "GET, HEAD");
    expect_404("POST", "/v1/tokens");
    expect_404("GET", "/v1/tokens/" TOK);
    expect_404("POST", "/v1/tokens/" TOK "/detokenize");
    listener = CV_LISTENER_API | CV_LISTENER_OPS;
}

/* The card fields: static files and frame pages are GET only, need no
 * Authorization header, and only the frame pages read their query. */
static void elements_routes_are_public_gets(void)
{
    expect_route("GET", "/elements.js", CV_ROUTE_ELEMENTS_JS, NULL);
    expect_route("GET", "/elements/frame.js", CV_ROUTE_FRAME_JS, NULL);
    expect_route("GET", "/elements/frame.css", CV_ROUTE_FRAME_CSS, NULL);
    expect_route("GET", "/elements/card", CV_ROUTE_FRAME_CARD, NULL);
    expect_route("GET", "/elements/cvc", CV_ROUTE_FRAME_CVC, NULL);
    expect_405("POST", "/elements/card", "GET");
    expect_405("OPTIONS", "/elements.js", "GET");
    expect_405("OPTIONS", "/v1/tokens", "GET, POST");
    expect_404("GET", "/elements/");
    expect_404("GET", "/elements/card/");
    expect_404("GET", "/elements/Card");
    expect_404("GET", "/elements/other.js");
    const struct cv_route *r = NULL;
    const char *allow = NULL;
    char seg[64];
    static const char *const paths[] = {"/elements.js", "/elements/frame.js", "/elements/frame.css",
                                        "/elements/card", "/elements/cvc"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        CHECK_EQ_INT(match("GET", paths[i], &r, seg, sizeof(seg), &allow), CV_OK);
        if (r == NULL)
            continue;
        CHECK_EQ_INT(r->scope, 0);
        CHECK(!r->takes_json);
        CHECK_EQ_INT(r->query, i == 3   ? CV_ROUTE_QUERY_FRAME_CARD
                               : i == 4 ? CV_ROUTE_QUERY_FRAME_CVC
                                        : CV_ROUTE_QUERY_NONE);
    }
    CHECK_EQ_INT(match("POST", "/v1/tokens", &r, seg, sizeof(seg), &allow), CV_OK);
    CHECK(r != NULL && r->query == CV_ROUTE_QUERY_NONE);
}

int main(void)
{
    RUN(every_route_matches_with_its_id);
    RUN(token_segment_is_passed_verbatim_for_validation_later);
    RUN(routes_carry_their_scope_and_body_rules);
    RUN(bodies_are_decoded_per_route);
    RUN(patterns_name_routes_for_metrics);
    RUN(router_table_agrees_with_route_names);
    RUN(head_on_ops_endpoints_runs_their_get_route);
    RUN(wrong_method_is_405_with_allow);
    RUN(unknown_paths_are_404);
    RUN(trailing_and_doubled_slashes_are_404);
    RUN(empty_or_extra_token_segments_are_404);
    RUN(long_token_segment_is_truncated_safely);
    RUN(very_long_unknown_paths_are_404);
    RUN(each_listener_serves_only_its_routes);
    RUN(elements_routes_are_public_gets);
    return check_summary("router");
}
