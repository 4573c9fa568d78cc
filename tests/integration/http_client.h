#ifndef CV_ITEST_HTTP_CLIENT_H
#define CV_ITEST_HTTP_CLIENT_H

/* A small libcurl client for the integration suite: one blocking request,
 * the status, the few response headers the contract talks about, and the body
 * (raw and, when it parses, as a jansson tree). */

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define HTTP_HEADER_MAX 256

struct http_response {
    long status; /* 0 when the transfer itself failed */
    char *body;  /* NUL-terminated, owned; "" when empty */
    size_t body_len;
    json_t *json; /* owned; NULL unless the body parses as JSON */
    char request_id[HTTP_HEADER_MAX];
    char allow[HTTP_HEADER_MAX];
    char retry_after[HTTP_HEADER_MAX];
    char content_type[HTTP_HEADER_MAX];
    char cache_control[HTTP_HEADER_MAX];
    char nosniff[HTTP_HEADER_MAX];  /* X-Content-Type-Options */
    char replayed[HTTP_HEADER_MAX]; /* Idempotent-Replayed */
    char violations[16384];         /* Prism's sl-violations header, if any */
    bool has_request_id, has_allow, has_content_type, has_cache_control, has_violations;
    char transport_error[256];
};

/* Sets the base URL ("http://127.0.0.1:18080") and initialises libcurl once. */
void http_client_init(const char *base_url);
void http_client_cleanup(void);
/* Sends the following requests to another base URL (the ops listener). */
void http_client_set_base(const char *base_url);

/* Sends METHOD base_url+path. bearer_key adds "Authorization: Bearer KEY";
 * content_type NULL sends no Content-Type at all; body NULL sends no body.
 * Fills *out (free with http_response_free). Returns the status, 0 on a
 * transport failure. */
long http_request(const char *method, const char *path, const char *bearer_key,
                  const char *content_type, const char *body, struct http_response *out);

/* Like http_request, but authorization is the raw Authorization header value
 * (e.g. "Basic abc", "Bearer"), or NULL for none; body_len lets a body carry
 * any bytes; extra_headers is a NULL-terminated list of "Name: value" lines
 * (or NULL). */
long http_request_raw(const char *method, const char *path, const char *authorization,
                      const char *content_type, const char *body, size_t body_len,
                      const char *const *extra_headers, struct http_response *out);

void http_response_free(struct http_response *r);

#endif
