/* relay_client.c: the relay's outbound HTTPS request (relay_client.h). */
#include "cardvault/relay_client.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"

/* The answer as it arrives: grown by copying into a new block and wiping the
 * old one (realloc could leave an unwiped copy of an echoed card behind). */
struct sink {
    char *data;
    size_t len, cap, max;
    bool too_large;
    struct cv_relay_answer *ans; /* headers collected here */
};

static bool sink_grow(struct sink *s, size_t need)
{
    size_t cap = s->cap == 0 ? 4096 : s->cap;
    while (cap < need)
        cap *= 2;
    if (cap > s->max + 1)
        cap = s->max + 1;
    char *p = malloc(cap);
    if (p == NULL)
        return false;
    if (s->data != NULL) {
        memcpy(p, s->data, s->len);
        cv_wipe(s->data, s->cap);
        free(s->data);
    }
    s->data = p;
    s->cap = cap;
    return true;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (n > s->max - s->len) {
        s->too_large = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap && !sink_grow(s, s->len + n + 1))
        return 0;
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* One "Name: value" line of the final answer's head. A 1xx or 3xx head
 * before it starts a new set. */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    struct cv_relay_answer *a = s->ans;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0) {
        for (size_t i = 0; i < a->n_headers; i++) {
            cv_wipe(a->headers[i].name, strlen(a->headers[i].name));
            free(a->headers[i].name);
            cv_wipe(a->headers[i].value, strlen(a->headers[i].value));
            free(a->headers[i].value);
        }
        a->n_headers = 0;
        return n;
    }
    const char *colon = memchr(ptr, ':', n);
    if (colon == NULL || colon == ptr || a->n_headers >= CV_RELAY_ANSWER_HEADERS_MAX)
        return n;
    size_t nl = (size_t)(colon - ptr);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    struct cv_relay_header *h = &a->headers[a->n_headers];
    h->name = cv_xmalloc(nl + 1);
    for (size_t i = 0; i < nl; i++)
        h->name[i] = (char)((ptr[i] >= 'A' && ptr[i] <= 'Z') ? ptr[i] + 32 : ptr[i]);
    h->name[nl] = '\0';
    h->value = cv_xmalloc(vl + 1);
    memcpy(h->value, v, vl);
    h->value[vl] = '\0';
    a->n_headers++;
    return n;
}

/* libcurl's allocations go through these: its request buffer holds the
 * rendered body (a small POST is sent in one buffer with the head), its
 * receive buffer the processor's answer; each block is wiped when freed.
 * A block carries its size in a 16-byte prefix (keeps malloc's alignment). */
#define HDR 16

static void *wiping_malloc(size_t n)
{
    if (n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = malloc(n + HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &n, sizeof(n));
    return p + HDR;
}

static size_t block_size(void *ptr)
{
    size_t n = 0;
    memcpy(&n, (unsigned char *)ptr - HDR, sizeof(n));
    return n;
}

static void wiping_free(void *ptr)
{
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    cv_wipe(p, block_size(ptr) + HDR);
    free(p);
}

static void *wiping_realloc(void *ptr, size_t n)
{
    if (ptr == NULL)
        return wiping_malloc(n);
    void *q = wiping_malloc(n);
    if (q == NULL)
        return NULL;
    size_t old = block_size(ptr);
    memcpy(q, ptr, old < n ? old : n);
    wiping_free(ptr);
    return q;
}

static void *wiping_calloc(size_t nmemb, size_t size)
{
    if (size != 0 && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = wiping_malloc(nmemb * size);
    if (p != NULL)
        memset(p, 0, nmemb * size);
    return p;
}

static char *wiping_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = wiping_malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

cv_status cv_relay_client_init(void)
{
    return curl_global_init_mem(CURL_GLOBAL_DEFAULT, wiping_malloc, wiping_free, wiping_realloc,
                                wiping_strdup, wiping_calloc) == CURLE_OK
               ? CV_OK
               : CV_ERR_INTERNAL;
}

void cv_relay_client_shutdown(void)
{
    curl_global_cleanup();
}

#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:"     \
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"

/* Failures before the request could leave: nothing was sent. */
static bool before_send(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CIPHER:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return true;
    default:
        return false;
    }
}

static cv_status status_of(CURLcode rc, const struct sink *s)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return CV_ERR_RELAY_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CIPHER:
        return CV_ERR_RELAY_TLS;
    case CURLE_OPERATION_TIMEDOUT:
        return CV_ERR_RELAY_TIMEOUT;
    case CURLE_WRITE_ERROR:
        return s->too_large ? CV_ERR_RELAY_ANSWER_TOO_LARGE : CV_ERR_INTERNAL;
    case CURLE_FILESIZE_EXCEEDED:
        return CV_ERR_RELAY_ANSWER_TOO_LARGE;
    default:
        return CV_ERR_RELAY_UPSTREAM;
    }
}

/* The server's TLS alerts that end a handshake it refused (libcurl's error
 * text names OpenSSL's reason). */
static bool handshake_refused(const char *err)
{
    static const char *const alerts[] = {"alert certificate required", "alert bad certificate",
                                         "alert unknown ca", "alert handshake failure",
                                         "alert certificate unknown"};
    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++)
        if (strstr(err, alerts[i]) != NULL)
            return true;
    return false;
}

/* The request's own headers, then the ones the vault sets. A header list
 * node holds a copy of the line; each line is wiped after the transfer. */
static struct curl_slist *header_list(const struct cv_relay_outbound *req, char **lines,
                                      size_t *n_lines)
{
    struct curl_slist *list = NULL;
    *n_lines = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        size_t len = strlen(req->headers[i].name) + 2 + strlen(req->headers[i].value) + 1;
        char *line = cv_xmalloc(len);
        snprintf(line, len, "%s: %s", req->headers[i].name, req->headers[i].value);
        lines[(*n_lines)++] = line;
        struct curl_slist *next = curl_slist_append(list, line);
        if (next == NULL)
            return list;
        list = next;
    }
    /* No "Expect: 100-continue" round trip; no compressed answers (the
     * redaction reads the bytes as sent). */
    static const char *const fixed[] = {"Expect:", "Accept-Encoding: identity"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        struct curl_slist *next = curl_slist_append(list, fixed[i]);
        if (next != NULL)
            list = next;
    }
    return list;
}

cv_status cv_relay_client_send(const struct cv_relay_destination *d,
                               const struct cv_relay_outbound *req, struct cv_relay_answer *ans,
                               bool *maybe_sent)
{
    memset(ans, 0, sizeof(*ans));
    *maybe_sent = false;
    if (cv_relay_destination_allows(d, req->method, req->path) != CV_OK)
        return CV_ERR_RELAY_NOT_ALLOWED;
    if (req->body_len > d->max_request_bytes)
        return CV_ERR_BODY_TOO_LARGE;
    CURL *h = curl_easy_init();
    if (h == NULL)
        return CV_ERR_INTERNAL;

    size_t url_len = strlen(d->url) + strlen(req->path) + 1;
    char *url = cv_xmalloc(url_len);
    snprintf(url, url_len, "%s%s", d->url, req->path);
    char resolve_line[CV_RELAY_URL_MAX + 80] = "";
    struct curl_slist *resolve = NULL;
    if (d->resolve != NULL) {
        snprintf(resolve_line, sizeof(resolve_line), "%s:%u:%s", d->host, d->port, d->resolve);
        resolve = curl_slist_append(NULL, resolve_line);
    }
    char *lines[CV_RELAY_HEADERS_MAX] = {0};
    size_t n_lines = 0;
    struct curl_slist *headers = header_list(req, lines, &n_lines);
    struct sink sink = {.max = d->max_answer_bytes, .ans = ans};

    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    /* TLS 1.2 suites: ECDHE key exchange with an AEAD cipher only, the
     * same set the vault's own listener offers (PCI DSS 4.2.1: strong
     * cryptography, no fallback to CBC or static RSA). TLS 1.3's suites are
     * all AEAD. */
    curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, TLS12_CIPHERS);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (d->ca_file != NULL)
        curl_easy_setopt(h, CURLOPT_CAINFO, d->ca_file);
    if (d->pin != NULL)
        curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, d->pin);
    if (d->client_cert != NULL) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, d->client_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, d->client_key);
    }
    if (resolve != NULL)
        curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)d->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)d->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)d->max_answer_bytes);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    /* HTTP/1.1 only: with HTTP/2 the body would also pass through nghttp2's
     * frame buffers, which libcurl's wiping allocator does not reach. */
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "cardvault-relay");
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    if (strcmp(req->method, "GET") == 0)
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    else {
        /* The body from the caller's (wiped) buffer: POSTFIELDS, never
         * COPYPOSTFIELDS, so libcurl keeps no copy of the card. */
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body != NULL ? (const char *)req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &sink);

    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_off_t pretransfer = 0;
    curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    long request_bytes = 0; /* the bytes of the request head written so far */
    curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_bytes);

    cv_status st = CV_OK;
    /* A refused handshake, the request never read:
     *  - TLS 1.3 ends the client's handshake before the server has checked
     *    the client certificate: the request may have been written, but a
     *    server that then refused the handshake (its alert names why) never
     *    read it;
     *  - or the processor ended the connection after the TLS handshake and
     *    before a byte of the request was written: how that refusal looks
     *    when its alert is lost to the reset (nothing was sent, so nothing
     *    can have been acted on). */
    bool refused = rc != CURLE_OK && handshake_refused(errbuf);
    bool closed_before_request =
        (rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR) && request_bytes == 0;
    if (refused || closed_before_request) {
        st = CV_ERR_RELAY_TLS;
    } else if (rc != CURLE_OK) {
        st = status_of(rc, &sink);
        *maybe_sent = !before_send(rc) && pretransfer > 0 && request_bytes > 0;
    } else if (code >= 300 && code < 400) {
        st = CV_ERR_RELAY_REDIRECT;
        *maybe_sent = true;
    } else if (code < 100 || code > 599) {
        st = CV_ERR_RELAY_UPSTREAM;
        *maybe_sent = true;
    }

    curl_easy_cleanup(h);
    for (struct curl_slist *node = headers; node != NULL; node = node->next)
        cv_wipe(node->data, strlen(node->data));
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    for (size_t i = 0; i < n_lines; i++) {
        cv_wipe(lines[i], strlen(lines[i]));
        free(lines[i]);
    }
    cv_wipe(url, url_len);
    free(url);

    if (st != CV_OK) {
        if (sink.data != NULL) {
            cv_wipe(sink.data, sink.cap);
            free(sink.data);
        }
        cv_relay_answer_cleanup(ans);
        return st;
    }
    ans->status = (int)code;
    ans->body = sink.data;
    ans->body_len = sink.len;
    return CV_OK;
}
