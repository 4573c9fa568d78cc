#ifndef CV_ROUTER_H
#define CV_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/handler.h"
#include "cardvault/routes.h"
#include "cardvault/status.h"

/* Method + path -> route. One static table lists every route, its scope and
 * its handler; http_server.c asks the router and never matches paths itself.
 * The handler contract (cv_call, cv_result, cv_handler) is handler.h's. */

/* Which listener serves a route (a bit set). The API listener faces
 * merchants; the ops listener (loopback by default) serves health and
 * metrics to operators, load balancers and the metrics scraper. */
enum cv_listener {
    CV_LISTENER_API = 1u << 0,
    CV_LISTENER_OPS = 1u << 1,
};

/* The request body a route takes, decoded before its handler runs. */
enum cv_route_body {
    CV_ROUTE_BODY_NONE = 0,   /* ignored */
    CV_ROUTE_BODY_TOKENIZE,   /* a tokenize object: cv_call.tokenize */
    CV_ROUTE_BODY_EMPTY,      /* empty, or "{}" */
    CV_ROUTE_BODY_RELAY,      /* a relay object: cv_call.relay (docs/relay.md) */
    CV_ROUTE_BODY_CVC_HOLD,   /* a security code to hold: cv_call.cvc_hold */
    CV_ROUTE_BODY_UPDATE,     /* a token update object: cv_call.update */
    CV_ROUTE_BODY_LIST_QUERY, /* no body; the query string is a token list's: cv_call.list */
};

/* What a route reads from the query string. Everywhere else a query
 * parameter that looks like an API key is refused; a frame page takes its
 * publishable key there (it is public: the shop's page holds it anyway). */
enum cv_route_query {
    CV_ROUTE_QUERY_NONE = 0,   /* ignored, but an API key in it is refused */
    CV_ROUTE_QUERY_FRAME_CARD, /* a card frame's query: cv_call.frame, key from `key` */
    CV_ROUTE_QUERY_FRAME_CVC,  /* a security-code frame's query: the same, plus the token */
};

struct cv_route {
    enum cv_route_id id;
    const char *method;
    const char *pattern;     /* for logs and metrics: "/v1/tokens/{token}" */
    unsigned scope;          /* 0: no authentication */
    bool takes_json;         /* request body must be application/json */
    enum cv_route_body body; /* how http_server decodes the body before the handler */
    bool audit_denied;       /* a 403 on this route is an audit event */
    const char *audit_action;
    cv_handler handler;
    enum cv_route_query query; /* frame pages also answer their errors as HTML */
    unsigned listeners;        /* enum cv_listener bits */
};

/* Finds the route for (method, path) among the routes `listener` serves
 * (one enum cv_listener value; a route of the other listener is
 * CV_ERR_ROUTE_NOT_FOUND). On CV_OK *route is set and, for token routes, the
 * segment is copied to token_out (NUL-terminated, at most cap-1 bytes;
 * longer segments are truncated and will not validate). On
 * CV_ERR_METHOD_NOT_ALLOWED *allow lists the methods the path accepts.
 * HEAD on /healthz, /readyz and /metrics gives their GET route. */
CV_MUST_USE cv_status cv_router_match(unsigned listener, const char *method, const char *path,
                                      const struct cv_route **route, char *token_out, size_t cap,
                                      const char **allow);
/* The pattern of a route id, for logs and metrics labels. */
const char *cv_router_pattern(enum cv_route_id id);
/* The method of a route id ("other" for CV_ROUTE_UNMATCHED): with the
 * pattern, a unique metrics label pair. */
const char *cv_router_method(enum cv_route_id id);

#endif
