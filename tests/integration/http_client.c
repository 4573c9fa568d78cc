/* libcurl client used by the integration suite. It reports what the server
 * sent and judges nothing: assertions live in itest.c. It never adds headers
 * the caller did not ask for (curl's default Content-Type and Expect are
 * suppressed), so a test can send exactly the request it describes. */

#include "http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static char base_url[512];

struct body_buf {
    char *data;
    size_t len;
};

void http_client_init(const char *url)
{
    snprintf(base_url, sizeof base_url, "%s", url);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void http_client_set_base(const char *url)
{
    snprintf(base_url, sizeof base_url, "%s", url);
}

void http_client_cleanup(void)
{
    curl_global_cleanup();
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body_buf *b = userdata;
    size_t n = size * nmemb;
    char *grown = realloc(b->data, b->len + n + 1);
    if (grown == NULL)
        return 0;
    b->data = grown;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* Copies the value of a "Name: value\r\n" line into dst when the name matches. */
static bool take_header(const char *line, size_t len, const char *name, char *dst, size_t dst_size)
{
    size_t nlen = strlen(name);
    if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen) != 0)
        return false;
    const char *v = line + nlen + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (vlen >= dst_size)
        vlen = dst_size - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
    return true;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata)
{
    struct http_response *r = userdata;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buffer, "HTTP/", 5) == 0) {
        /* A new status line (e.g. after 100 Continue): forget earlier headers. */
        r->has_request_id = r->has_allow = r->has_content_type = false;
        r->has_cache_control = r->has_violations = false;
        r->request_id[0] = r->allow[0] = r->retry_after[0] = '\0';
        r->content_type[0] = r->cache_control[0] = r->violations[0] = '\0';
        r->nosniff[0] = r->replayed[0] = '\0';
        return n;
    }
    if (take_header(buffer, n, "X-Request-Id", r->request_id, sizeof r->request_id))
        r->has_request_id = true;
    else if (take_header(buffer, n, "Allow", r->allow, sizeof r->allow))
        r->has_allow = true;
    else if (take_header(buffer, n, "Content-Type", r->content_type, sizeof r->content_type))
        r->has_content_type = true;
    else if (take_header(buffer, n, "Cache-Control", r->cache_control, sizeof r->cache_control))
        r->has_cache_control = true;
    else if (take_header(buffer, n, "sl-violations", r->violations, sizeof r->violations))
        r->has_violations = true;
    /* the rest only need their value */
    take_header(buffer, n, "Retry-After", r->retry_after, sizeof r->retry_after);
    take_header(buffer, n, "X-Content-Type-Options", r->nosniff, sizeof r->nosniff);
    take_header(buffer, n, "Idempotent-Replayed", r->replayed, sizeof r->replayed);
    return n;
}

long http_request_raw(const char *method, const char *path, const char *authorization,
                      const char *content_type, const char *body, size_t body_len,
                      const char *const *extra_headers, struct http_response *out)
{
    char url[2048];
    char line[1024];
    struct body_buf buf = {NULL, 0};
    struct curl_slist *headers = NULL;

    memset(out, 0, sizeof *out);
    snprintf(url, sizeof url, "%s%s", base_url, path);

    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(out->transport_error, sizeof out->transport_error, "curl_easy_init failed");
        out->body = calloc(1, 1);
        return 0;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 15L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROXY, "");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, out);

    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }

    if (authorization != NULL) {
        snprintf(line, sizeof line, "Authorization: %s", authorization);
        headers = curl_slist_append(headers, line);
    }
    if (content_type != NULL) {
        snprintf(line, sizeof line, "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, line);
    } else {
        headers = curl_slist_append(headers, "Content-Type:"); /* drop curl's default */
    }
    headers = curl_slist_append(headers, "Expect:");
    for (; extra_headers != NULL && *extra_headers != NULL; extra_headers++)
        headers = curl_slist_append(headers, *extra_headers);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        out->status = 0;
        snprintf(out->transport_error, sizeof out->transport_error, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);

    if (buf.data == NULL)
        buf.data = calloc(1, 1);
    out->body = buf.data;
    out->body_len = buf.len;
    if (out->body_len > 0)
        out->json = json_loadb(out->body, out->body_len, JSON_REJECT_DUPLICATES, NULL);
    return out->status;
}

long http_request(const char *method, const char *path, const char *bearer_key,
                  const char *content_type, const char *body, struct http_response *out)
{
    char auth[512];
    const char *authorization = NULL;
    if (bearer_key != NULL) {
        snprintf(auth, sizeof auth, "Bearer %s", bearer_key);
        authorization = auth;
    }
    return http_request_raw(method, path, authorization, content_type, body,
                            body != NULL ? strlen(body) : 0, NULL, out);
}

void http_response_free(struct http_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    json_decref(r->json);
    r->body = NULL;
    r->json = NULL;
}
