/* router.c: the route table. Adding an endpoint means one line here, one
 * handler, and its description in openapi.yaml. Paths are matched exactly:
 * no trailing-slash or case folding, so one resource has one URL. */
#include "cardvault/router.h"

#include <string.h>

#include "cardvault/api_elements.h"
#include "cardvault/api_health.h"
#include "cardvault/api_cvc_hold.h"
#include "cardvault/api_relay.h"
#include "cardvault/api_tokens.h"
#include "cardvault/api_tokens_manage.h"

#define API  CV_LISTENER_API
#define OPS  CV_LISTENER_OPS
#define BOTH (CV_LISTENER_API | CV_LISTENER_OPS)

/* /readyz and /metrics answer on the ops listener only: unauthenticated, and
 * /readyz costs database round trips. /healthz stays on both: it touches
 * nothing, answers a constant, and is what a TCP-level check of the API
 * port can ask. */
static const struct cv_route routes[] = {
    {CV_ROUTE_TOKENIZE, "POST", "/v1/tokens", CV_SCOPE_TOKENIZE, true, CV_ROUTE_BODY_TOKENIZE,
     false, NULL, cv_api_tokenize, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_LIST, "GET", "/v1/tokens", CV_SCOPE_READ, false, CV_ROUTE_BODY_LIST_QUERY, false,
     NULL, cv_api_list, CV_ROUTE_QUERY_NONE, API},
    /* An update changes a card and returns it: read and tokenize, both. */
    {CV_ROUTE_UPDATE, "PATCH", "/v1/tokens/{token}", CV_SCOPE_READ | CV_SCOPE_TOKENIZE, true,
     CV_ROUTE_BODY_UPDATE, false, NULL, cv_api_update, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_READ, "GET", "/v1/tokens/{token}", CV_SCOPE_READ, false, CV_ROUTE_BODY_NONE, false,
     NULL, cv_api_read, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_DELETE, "DELETE", "/v1/tokens/{token}", CV_SCOPE_DELETE, false, CV_ROUTE_BODY_NONE,
     false, NULL, cv_api_delete, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_DETOKENIZE, "POST", "/v1/tokens/{token}/detokenize", CV_SCOPE_DETOKENIZE, true,
     CV_ROUTE_BODY_EMPTY, true, "token.detokenize", cv_api_detokenize, CV_ROUTE_QUERY_NONE, API},
    /* The relay (docs/relay.md): a relay key (rk_) alone has its scope. */
    {CV_ROUTE_CVC_HOLD, "POST", "/v1/tokens/{token}/cvc-hold", CV_SCOPE_TOKENIZE, true,
     CV_ROUTE_BODY_CVC_HOLD, false, NULL, cv_api_cvc_hold, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_RELAY, "POST", "/v1/relay/{destination}", CV_SCOPE_RELAY, true, CV_ROUTE_BODY_RELAY,
     true, "relay.send", cv_api_relay, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_HEALTHZ, "GET", "/healthz", 0, false, CV_ROUTE_BODY_NONE, false, NULL, cv_api_healthz,
     CV_ROUTE_QUERY_NONE, BOTH},
    {CV_ROUTE_READYZ, "GET", "/readyz", 0, false, CV_ROUTE_BODY_NONE, false, NULL, cv_api_readyz,
     CV_ROUTE_QUERY_NONE, OPS},
    {CV_ROUTE_METRICS, "GET", "/metrics", 0, false, CV_ROUTE_BODY_NONE, false, NULL, cv_api_metrics,
     CV_ROUTE_QUERY_NONE, OPS},
    /* The card fields (docs/elements.md). The frame pages need no
     * Authorization header: http_server.c looks their `key` up. */
    {CV_ROUTE_ELEMENTS_JS, "GET", "/elements.js", 0, false, CV_ROUTE_BODY_NONE, false, NULL,
     cv_api_elements_js, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_FRAME_JS, "GET", "/elements/frame.js", 0, false, CV_ROUTE_BODY_NONE, false, NULL,
     cv_api_frame_js, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_FRAME_CSS, "GET", "/elements/frame.css", 0, false, CV_ROUTE_BODY_NONE, false, NULL,
     cv_api_frame_css, CV_ROUTE_QUERY_NONE, API},
    {CV_ROUTE_FRAME_CARD, "GET", "/elements/card", 0, false, CV_ROUTE_BODY_NONE, false, NULL,
     cv_api_frame_page, CV_ROUTE_QUERY_FRAME_CARD, API},
    {CV_ROUTE_FRAME_CVC, "GET", "/elements/cvc", 0, false, CV_ROUTE_BODY_NONE, false, NULL,
     cv_api_frame_page, CV_ROUTE_QUERY_FRAME_CVC, API},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

/* HEAD is answered where monitoring asks it: the ops endpoints. A HEAD
 * request runs the GET route (same handler, status and headers; the HTTP
 * layer sends no body, RFC 9110 9.3.2) and is counted under it. */
static bool answers_head(const struct cv_route *r)
{
    return r->id == CV_ROUTE_HEALTHZ || r->id == CV_ROUTE_READYZ || r->id == CV_ROUTE_METRICS;
}

/* Allow header values per distinct pattern. */
static const char *allow_for(const char *pattern)
{
    if (strcmp(pattern, "/healthz") == 0 || strcmp(pattern, "/readyz") == 0 ||
        strcmp(pattern, "/metrics") == 0)
        return "GET, HEAD";
    if (strcmp(pattern, "/v1/tokens") == 0)
        return "GET, POST";
    if (strcmp(pattern, "/v1/tokens/{token}") == 0)
        return "GET, DELETE, PATCH";
    if (strcmp(pattern, "/v1/tokens/{token}/detokenize") == 0 ||
        strcmp(pattern, "/v1/relay/{destination}") == 0)
        return "POST";
    return "GET";
}

/* Matches path against pattern; a "{token}" segment matches one non-empty
 * segment without '/', copied to seg. */
static bool path_matches(const char *pattern, const char *path, char *seg, size_t cap)
{
    const char *brace = strchr(pattern, '{');
    if (brace == NULL)
        return strcmp(pattern, path) == 0;
    size_t head = (size_t)(brace - pattern);
    if (strncmp(pattern, path, head) != 0)
        return false;
    const char *tail = strchr(brace, '}') + 1;
    const char *p = path + head;
    size_t n = strcspn(p, "/");
    if (n == 0 || strcmp(p + n, tail) != 0)
        return false;
    if (seg != NULL && cap > 0) {
        size_t c = n < cap - 1 ? n : cap - 1;
        memcpy(seg, p, c);
        seg[c] = '\0';
    }
    return true;
}

cv_status cv_router_match(unsigned listener, const char *method, const char *path,
                          const struct cv_route **route, char *token_out, size_t cap,
                          const char **allow)
{
    const char *path_allow = NULL;
    for (size_t i = 0; i < N_ROUTES; i++) {
        if ((routes[i].listeners & listener) == 0 ||
            !path_matches(routes[i].pattern, path, NULL, 0))
            continue;
        path_allow = allow_for(routes[i].pattern);
        if (strcmp(routes[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && answers_head(&routes[i]))) {
            (void)path_matches(routes[i].pattern, path, token_out, cap);
            *route = &routes[i];
            return CV_OK;
        }
    }
    if (path_allow != NULL) {
        *allow = path_allow;
        return CV_ERR_METHOD_NOT_ALLOWED;
    }
    return CV_ERR_ROUTE_NOT_FOUND;
}

const char *cv_router_method(enum cv_route_id id)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (routes[i].id == id)
            return routes[i].method;
    return "other";
}

const char *cv_router_pattern(enum cv_route_id id)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (routes[i].id == id)
            return routes[i].pattern;
    return "unmatched";
}
