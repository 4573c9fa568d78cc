#ifndef CV_ROUTES_H
#define CV_ROUTES_H

/* The identity of every route: an id, its method and its path pattern.
 * A leaf module, so that metrics and logs can name routes without
 * depending on the router (whose table points at the handlers, which use
 * metrics). The router's table must agree with these names: a unit test
 * holds them together. */

enum cv_route_id {
    CV_ROUTE_TOKENIZE = 0,
    CV_ROUTE_READ,
    CV_ROUTE_DELETE,
    CV_ROUTE_DETOKENIZE,
    CV_ROUTE_HEALTHZ,
    CV_ROUTE_READYZ,
    CV_ROUTE_METRICS,
    CV_ROUTE_ELEMENTS_JS,
    CV_ROUTE_FRAME_JS,
    CV_ROUTE_FRAME_CSS,
    CV_ROUTE_FRAME_CARD,
    CV_ROUTE_FRAME_CVC,
    CV_ROUTE_RELAY,
    CV_ROUTE_CVC_HOLD,
    CV_ROUTE_LIST,      /* GET /v1/tokens */
    CV_ROUTE_UPDATE,    /* PATCH /v1/tokens/{token} */
    CV_ROUTE_UNMATCHED, /* 404/405 and requests refused before routing */
    CV_ROUTE_COUNT
};

/* The pattern of a route id, for logs and metrics labels ("unmatched" for
 * CV_ROUTE_UNMATCHED and unknown ids). Never NULL. */
const char *cv_route_pattern(enum cv_route_id id);
/* The method of a route id ("other" for CV_ROUTE_UNMATCHED): with the
 * pattern, a unique metrics label pair. Never NULL. */
const char *cv_route_method(enum cv_route_id id);

#endif
