/* routes.c: route ids to their method and pattern. Pure data: it must not
 * learn about handlers, HTTP or metrics. */
#include "cardvault/routes.h"

#include <stddef.h>

static const struct {
    const char *method;
    const char *pattern;
} names[CV_ROUTE_COUNT] = {
    [CV_ROUTE_TOKENIZE] = {"POST", "/v1/tokens"},
    [CV_ROUTE_READ] = {"GET", "/v1/tokens/{token}"},
    [CV_ROUTE_DELETE] = {"DELETE", "/v1/tokens/{token}"},
    [CV_ROUTE_DETOKENIZE] = {"POST", "/v1/tokens/{token}/detokenize"},
    [CV_ROUTE_HEALTHZ] = {"GET", "/healthz"},
    [CV_ROUTE_READYZ] = {"GET", "/readyz"},
    [CV_ROUTE_METRICS] = {"GET", "/metrics"},
    [CV_ROUTE_ELEMENTS_JS] = {"GET", "/elements.js"},
    [CV_ROUTE_FRAME_JS] = {"GET", "/elements/frame.js"},
    [CV_ROUTE_FRAME_CSS] = {"GET", "/elements/frame.css"},
    [CV_ROUTE_FRAME_CARD] = {"GET", "/elements/card"},
    [CV_ROUTE_FRAME_CVC] = {"GET", "/elements/cvc"},
    [CV_ROUTE_RELAY] = {"POST", "/v1/relay/{destination}"},
    [CV_ROUTE_CVC_HOLD] = {"POST", "/v1/tokens/{token}/cvc-hold"},
    [CV_ROUTE_LIST] = {"GET", "/v1/tokens"},
    [CV_ROUTE_UPDATE] = {"PATCH", "/v1/tokens/{token}"},
    [CV_ROUTE_UNMATCHED] = {"other", "unmatched"},
};

const char *cv_route_pattern(enum cv_route_id id)
{
    if ((unsigned)id >= CV_ROUTE_COUNT)
        return names[CV_ROUTE_UNMATCHED].pattern;
    return names[id].pattern;
}

const char *cv_route_method(enum cv_route_id id)
{
    if ((unsigned)id >= CV_ROUTE_COUNT)
        return names[CV_ROUTE_UNMATCHED].method;
    return names[id].method;
}
