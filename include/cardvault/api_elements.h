#ifndef CV_API_ELEMENTS_H
#define CV_API_ELEMENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/handler.h"

/* The card fields served by the vault (docs/elements.md): the loader
 * /elements.js, the frame pages /elements/card and /elements/cvc, and their
 * script and style sheet, all compiled into the binary. Also the pure parts
 * the HTTP layer uses: the frame query parser, the header values of every
 * web policy, the refusal page, and the integrity value of elements.js. */

#define CV_ELEMENTS_SRI_LEN (7 + 64) /* "sha384-" + base64 of 48 bytes */
#define CV_WEB_HEADERS_MAX  8
#define CV_WEB_SCRATCH_MAX  512 /* room for the frame page's CSP */

/* Prepares req for a page of this kind: empty, no parameter seen. */
void cv_frame_query_init(struct cv_frame_req *req, enum cv_frame_kind kind);
/* Takes one query parameter (value NULL for "?name" without '='). Returns,
 * and records in req->error if it is the first, CV_ERR_FRAME_BAD_REQUEST for
 * an unknown, repeated, empty or malformed parameter,
 * CV_ERR_FRAME_KEY_NOT_PUBLISHABLE for a well-formed sk_ or dk_ key in `key`,
 * CV_ERR_KEY_IN_QUERY for a secret-looking value in another parameter. */
cv_status cv_frame_query_add(struct cv_frame_req *req, const char *name, const char *value);
/* After the last parameter: the first error recorded, or
 * CV_ERR_FRAME_BAD_REQUEST when a required parameter is missing. */
CV_MUST_USE cv_status cv_frame_query_finish(struct cv_frame_req *req);

/* One response header. Values point at static text or into scratch. */
struct cv_web_header {
    const char *name;
    const char *value;
};
/* The headers of a web policy, besides Content-Type and X-Request-Id:
 * writes at most CV_WEB_HEADERS_MAX into out and returns how many.
 * frame_ancestor (CV_WEB_FRAME_PAGE) must be a canonical origin; scratch
 * (CV_WEB_SCRATCH_MAX bytes) holds the policy text built from it. A frame
 * page whose ancestor is not canonical gets frame-ancestors 'none'. */
size_t cv_elements_web_headers(enum cv_web_policy policy, const char *frame_ancestor,
                               struct cv_web_header out[CV_WEB_HEADERS_MAX], char *scratch,
                               size_t scratch_cap);
/* The HTML page of a refused frame request: fixed text, HTML-escaped.
 * Heap, freed with free(); NULL when it cannot be built. */
char *cv_elements_refusal_page(int http_status, const char *code, const char *message,
                               const char *request_id, size_t *len);
/* Renders the frame page of a checked request (heap, freed with free()). */
CV_MUST_USE cv_status cv_elements_render_frame(const struct cv_frame_req *req, char **page,
                                               size_t *len);
/* "sha384-<base64>" of the elements.js this build serves. */
CV_MUST_USE cv_status cv_elements_sri(char out[CV_ELEMENTS_SRI_LEN + 1]);
/* Standard base64 with padding of in[0..n) into out (4 * ceil(n / 3) + 1 bytes). */
void cv_elements_base64(const unsigned char *in, size_t n, char *out);

/* Handlers (no API key; each finishes before it returns). The static ones
 * answer CV_RESULT_OK with a compiled-in body. */
void cv_api_elements_js(const struct cv_handler_deps *deps, const struct cv_call *call,
                        struct cv_completion *done);
void cv_api_frame_js(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done);
void cv_api_frame_css(const struct cv_handler_deps *deps, const struct cv_call *call,
                      struct cv_completion *done);
/* The frame pages: call->frame decoded and call->who set from its key by
 * http_server.c. CV_ERR_FRAME_KEY_REFUSED unless the key's scopes are
 * exactly tokenize, CV_ERR_FRAME_ORIGIN unless the origin is on its list;
 * else CV_RESULT_OK with the page (CV_WEB_FRAME_PAGE). */
void cv_api_frame_page(const struct cv_handler_deps *deps, const struct cv_call *call,
                       struct cv_completion *done);

#endif
