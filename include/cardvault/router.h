#ifndef CV_ROUTER_H
#define CV_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/auth.h"
#include "cardvault/status.h"

/* Method + path -> route. One static table lists every route, its scope and
 * its handler; http_server.c asks the router and never matches paths itself. */

struct cv_app;

/* What a handler receives: already authenticated, body within limits. */
struct cv_call {
    const char *request_id;
    const struct cv_principal *who; /* NULL on unauthenticated routes */
    const char *token;              /* the {token} path segment, or NULL */
    const char *body;
    size_t body_len;
    const char *idempotency_key; /* Idempotency-Key header, or NULL */
};

/* What a handler returns. On CV_OK: http_status and body (heap, freed with
 * free_body). On an error status: error_param may name the faulty field. */
struct cv_reply {
    int http_status;
    char *body;
    size_t body_len;
    void (*free_body)(void *);
    const char *content_type; /* default application/json */
    const char *error_param;
    const char *error_message; /* optional override of the default message */
    bool replayed;             /* an idempotent replay: Idempotent-Replayed: true */
};

typedef cv_status (*cv_handler)(struct cv_app *app, const struct cv_call *call,
                                struct cv_reply *reply);

enum cv_route_id {
    CV_ROUTE_TOKENIZE = 0,
    CV_ROUTE_READ,
    CV_ROUTE_DELETE,
    CV_ROUTE_DETOKENIZE,
    CV_ROUTE_HEALTHZ,
    CV_ROUTE_READYZ,
    CV_ROUTE_METRICS,
    CV_ROUTE_UNMATCHED, /* 404/405 and requests refused before routing */
    CV_ROUTE_COUNT
};

struct cv_route {
    enum cv_route_id id;
    const char *method;
    const char *pattern; /* for logs and metrics: "/v1/tokens/{token}" */
    unsigned scope;      /* 0: no authentication */
    bool takes_json;     /* request body must be application/json */
    bool audit_denied;   /* a 403 on this route is an audit event */
    const char *audit_action;
    cv_handler handler;
};

/* Finds the route for (method, path). On CV_OK *route is set and, for token
 * routes, the segment is copied to token_out (NUL-terminated, at most cap-1
 * bytes; longer segments are truncated and will not validate). On
 * CV_ERR_METHOD_NOT_ALLOWED *allow lists the methods the path accepts. */
CV_MUST_USE cv_status cv_router_match(const char *method, const char *path,
                                      const struct cv_route **route, char *token_out, size_t cap,
                                      const char **allow);
/* The pattern of a route id, for logs and metrics labels. */
const char *cv_router_pattern(enum cv_route_id id);
/* The method of a route id ("other" for CV_ROUTE_UNMATCHED): with the
 * pattern, a unique metrics label pair. */
const char *cv_router_method(enum cv_route_id id);

#endif
