/* json_codec.c: the only module that includes jansson. Decoding is strict
 * (duplicate keys, unknown fields, wrong types are errors) because a lenient
 * decoder lets typos pass silently, such as "cvv" instead of "cvc". jansson's
 * own error text quotes the input near the error, which may be a PAN: we never
 * log it or return it, only its line and column. */
#include "cardvault/json_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cardvault/buf.h"
#include "cardvault/card.h"
#include "cardvault/metadata.h"

/* Size-prefixed blocks so free can wipe exactly what was allocated. */
#define HDR 16

static void *wiping_malloc(size_t n)
{
    unsigned char *p = malloc(n + HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &n, sizeof(n));
    return p + HDR;
}

static void wiping_free(void *ptr)
{
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t n = 0;
    memcpy(&n, p, sizeof(n));
    OPENSSL_cleanse(p, n + HDR);
    free(p);
}

void cv_json_init(void)
{
    json_set_alloc_funcs(wiping_malloc, wiping_free);
}

void cv_json_free(void *p)
{
    wiping_free(p);
}

static struct cv_secbuf *secbuf_from_string(const json_t *s)
{
    size_t n = json_string_length(s);
    struct cv_secbuf *b = cv_secbuf_new(n + 1);
    memcpy(b->data, json_string_value(s), n);
    b->data[n] = '\0';
    b->len = n;
    return b;
}

enum field_kind { F_STRING, F_INTEGER, F_BOOLEAN, F_OBJECT };

struct field {
    const char *name;
    enum field_kind kind;
};

static const struct field tokenize_fields[] = {
    {"pan", F_STRING},      {"exp_month", F_INTEGER},      {"exp_year", F_INTEGER},
    {"cvc", F_STRING},      {"cardholder_name", F_STRING}, {"reuse_existing", F_BOOLEAN},
    {"metadata", F_OBJECT}, {"ttl_seconds", F_INTEGER},
};
#define N_TOKENIZE_FIELDS (sizeof(tokenize_fields) / sizeof(tokenize_fields[0]))

/* The longest text each card field can have and still be valid: a PAN of
 * CV_PAN_MAX_DIGITS digits with a space or hyphen between every two, a CVC
 * of 4 digits, a name of CV_NAME_MAX_BYTES bytes. Longer is refused with the
 * field's own validation error. */
static const struct {
    const char *name;
    size_t max_bytes;
    cv_status status;
} card_limits[] = {
    {"pan", 2 * CV_PAN_MAX_DIGITS - 1, CV_ERR_INVALID_PAN},
    {"cvc", 4, CV_ERR_INVALID_CVC},
    {"cardholder_name", CV_NAME_MAX_BYTES, CV_ERR_INVALID_NAME},
};
#define N_CARD_LIMITS (sizeof(card_limits) / sizeof(card_limits[0]))

static bool kind_ok(const json_t *v, enum field_kind k)
{
    switch (k) {
    case F_STRING:
        return json_is_string(v);
    case F_INTEGER:
        return json_is_integer(v);
    case F_BOOLEAN:
        return json_is_boolean(v);
    case F_OBJECT:
        return json_is_object(v);
    }
    return false;
}

bool cv_json_param_is_echoable(const char *name, size_t len)
{
    if (len == 0 || len > CV_JSON_PARAM_MAX)
        return false;
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
            return false;
    }
    return digits < 6;
}

static void param_set(struct cv_json_param *param, const char *name, size_t len)
{
    memcpy(param->name, name, len);
    param->name[len] = '\0';
}

/* Names an unknown field in *param when its name is safe to echo; leaves
 * it "" otherwise. The key's own length, not strlen: a key with an embedded
 * NUL (refused at parse, JSON_ALLOW_NUL being unset) is never named. */
static void param_set_unknown(struct cv_json_param *param, const char *key)
{
    size_t len = json_object_iter_key_len(json_object_key_to_iter(key));
    if (len == strlen(key) && cv_json_param_is_echoable(key, len))
        param_set(param, key, len);
}

static cv_status parse_object(const char *body, size_t len, json_t **out)
{
    json_error_t err;
    /* JSON_REJECT_DUPLICATES: {"pan":"a","pan":"b"} is ambiguous, so refused. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    cv_wipe(&err, sizeof(err)); /* err.text may quote the body */
    if (root == NULL)
        return CV_ERR_INVALID_JSON;
    if (!json_is_object(root)) {
        json_decref(root);
        return CV_ERR_INVALID_JSON;
    }
    *out = root;
    return CV_OK;
}

/* A metadata object: each key and value checked (metadata.h); in a patch
 * (allow_null) a null value stands for "delete this key". *out gets the
 * object's canonical text (sorted keys, compact) on the plain heap. */
static cv_status decode_metadata(json_t *obj, bool allow_null, char **out)
{
    const char *key;
    json_t *value;
    *out = NULL;
    if (!allow_null && json_object_size(obj) > CV_META_KEYS_MAX)
        return CV_ERR_INVALID_METADATA;
    if (json_object_size(obj) > 2 * CV_META_KEYS_MAX) /* a patch sets or deletes at most that */
        return CV_ERR_INVALID_METADATA;
    json_object_foreach(obj, key, value)
    {
        /* The key's own length: an embedded NUL is never a valid key. */
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        if (klen != strlen(key))
            return CV_ERR_INVALID_METADATA;
        CV_TRY(cv_metadata_check_key(key, klen));
        if (allow_null && json_is_null(value))
            continue;
        if (!json_is_string(value))
            return CV_ERR_INVALID_METADATA;
        CV_TRY(cv_metadata_check_value(json_string_value(value), json_string_length(value)));
    }
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        abort(); /* only fails on allocation failure */
    *out = cv_xstrdup(text);
    wiping_free(text);
    return CV_OK;
}

static cv_status decode_ttl(const json_t *v, long long *ttl)
{
    long long t = json_integer_value(v);
    if (t < CV_TTL_MIN_S || t > CV_TTL_MAX_S)
        return CV_ERR_INVALID_TTL;
    *ttl = t;
    return CV_OK;
}

/* The token's own fields of a tokenize body: metadata and ttl_seconds
 * (their types were checked with the other fields). */
static cv_status decode_lifecycle(json_t *root, struct cv_json_param *param, char **metadata,
                                  bool *has_ttl, long long *ttl)
{
    json_t *value;
    if ((value = json_object_get(root, "metadata")) != NULL) {
        param_set(param, "metadata", strlen("metadata"));
        CV_TRY(decode_metadata(value, false, metadata));
    }
    if ((value = json_object_get(root, "ttl_seconds")) != NULL) {
        param_set(param, "ttl_seconds", strlen("ttl_seconds"));
        CV_TRY(decode_ttl(value, ttl));
        *has_ttl = true;
    }
    param->name[0] = '\0';
    return CV_OK;
}

cv_status cv_json_decode_tokenize(const char *body, size_t len, struct cv_tokenize_req *out,
                                  struct cv_json_param *param)
{
    json_t *root = NULL;
    const char *key;
    json_t *value;
    cv_status st = CV_OK;

    memset(out, 0, sizeof(*out));
    param->name[0] = '\0';
    CV_TRY(parse_object(body, len, &root));
    json_object_foreach(root, key, value)
    {
        const struct field *f = NULL;
        for (size_t i = 0; i < N_TOKENIZE_FIELDS; i++)
            if (strcmp(key, tokenize_fields[i].name) == 0)
                f = &tokenize_fields[i];
        if (f == NULL) {
            /* The unknown key is client text: named only when it cannot
             * carry card data (cv_json_param_is_echoable). */
            param_set_unknown(param, key);
            st = CV_ERR_UNKNOWN_FIELD;
            goto out;
        }
        if (!kind_ok(value, f->kind)) {
            param_set(param, f->name, strlen(f->name));
            st = CV_ERR_INVALID_TYPE;
            goto out;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        if (json_object_get(root, tokenize_fields[i].name) == NULL) {
            param_set(param, tokenize_fields[i].name, strlen(tokenize_fields[i].name));
            st = CV_ERR_MISSING_FIELD;
            goto out;
        }
    }
    /* The token's own fields (metadata, ttl_seconds) before the card's, as
     * documented (docs/api-conventions.md, validation order). */
    if ((st = decode_lifecycle(root, param, &out->metadata, &out->has_ttl, &out->ttl_seconds)) !=
        CV_OK)
        goto out;
    /* Sizes first: a field that cannot be valid is refused before it is
     * copied into the secure heap, which is small and locked. */
    for (size_t i = 0; i < N_CARD_LIMITS; i++) {
        value = json_object_get(root, card_limits[i].name);
        if (value != NULL && json_string_length(value) > card_limits[i].max_bytes) {
            param_set(param, card_limits[i].name, strlen(card_limits[i].name));
            st = card_limits[i].status;
            goto out;
        }
    }
    out->pan = secbuf_from_string(json_object_get(root, "pan"));
    out->exp_month = json_integer_value(json_object_get(root, "exp_month"));
    out->exp_year = json_integer_value(json_object_get(root, "exp_year"));
    if ((value = json_object_get(root, "cvc")) != NULL)
        out->cvc = secbuf_from_string(value);
    if ((value = json_object_get(root, "cardholder_name")) != NULL)
        out->name = secbuf_from_string(value);
    if ((value = json_object_get(root, "reuse_existing")) != NULL)
        out->reuse_existing = json_is_true(value);
out:
    json_decref(root); /* the tree's strings are wiped by wiping_free */
    if (st != CV_OK)
        cv_tokenize_req_cleanup(out);
    return st;
}

static const struct field cvc_hold_fields[] = {
    {"cvc", F_STRING},
    {"uses", F_INTEGER},
    {"ttl_seconds", F_INTEGER},
};
#define N_CVC_HOLD_FIELDS (sizeof(cvc_hold_fields) / sizeof(cvc_hold_fields[0]))

cv_status cv_json_decode_cvc_hold(const char *body, size_t len, struct cv_cvc_hold_req *out,
                                  struct cv_json_param *param)
{
    json_t *root = NULL;
    const char *key;
    json_t *value;
    cv_status st = CV_OK;

    memset(out, 0, sizeof(*out));
    param->name[0] = '\0';
    CV_TRY(parse_object(body, len, &root));
    json_object_foreach(root, key, value)
    {
        const struct field *f = NULL;
        for (size_t i = 0; i < N_CVC_HOLD_FIELDS; i++)
            if (strcmp(key, cvc_hold_fields[i].name) == 0)
                f = &cvc_hold_fields[i];
        if (f == NULL) {
            param_set_unknown(param, key);
            st = CV_ERR_UNKNOWN_FIELD;
            goto out;
        }
        if (!kind_ok(value, f->kind)) {
            param_set(param, f->name, strlen(f->name));
            st = CV_ERR_INVALID_TYPE;
            goto out;
        }
    }
    value = json_object_get(root, "cvc");
    if (value == NULL) {
        param_set(param, "cvc", 3);
        st = CV_ERR_MISSING_FIELD;
        goto out;
    }
    if (json_string_length(value) > 4) {
        param_set(param, "cvc", 3);
        st = CV_ERR_INVALID_CVC;
        goto out;
    }
    /* Bounds: 0 means the default; the operator's caps are the holds'. */
    static const char *const counts[] = {"uses", "ttl_seconds"};
    long long n[2] = {0, 0};
    for (size_t i = 0; i < 2; i++) {
        json_t *c = json_object_get(root, counts[i]);
        if (c == NULL)
            continue;
        n[i] = json_integer_value(c);
        if (n[i] < 1 || n[i] > 86400) {
            param_set(param, counts[i], strlen(counts[i]));
            st = CV_ERR_BAD_REQUEST;
            goto out;
        }
    }
    out->uses = (unsigned)n[0];
    out->ttl_s = (unsigned)n[1];
    out->cvc = secbuf_from_string(value);
out:
    json_decref(root);
    if (st != CV_OK)
        cv_cvc_hold_req_cleanup(out);
    return st;
}

cv_status cv_json_decode_empty(const char *body, size_t len, struct cv_json_param *param)
{
    param->name[0] = '\0';
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        i++;
    if (i == len)
        return CV_OK;
    json_t *root = NULL;
    CV_TRY(parse_object(body, len, &root));
    cv_status st = CV_OK;
    void *it = json_object_iter(root);
    if (it != NULL) {
        param_set_unknown(param, json_object_iter_key(it));
        st = CV_ERR_UNKNOWN_FIELD;
    }
    json_decref(root);
    return st;
}

/* ---- the relay request (docs/relay.md) ---- */

static const struct field relay_fields[] = {
    {"method", F_STRING}, {"path", F_STRING},   {"headers", F_OBJECT},
    {"body", F_STRING},   {"tokens", F_OBJECT},
};
#define N_RELAY_FIELDS (sizeof(relay_fields) / sizeof(relay_fields[0]))

/* Headers the vault or its HTTP client sets, or that would change how the
 * connection is used (RFC 9110 7.6.1 connection options, RFC 9112 framing),
 * and the vault's own namespace. */
static const char *const relay_headers_refused[] = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "http2-settings",
    NULL,
};

/* RFC 9110 5.6.2 token characters. */
static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool relay_header_name_ok(const char *n, size_t len)
{
    if (len == 0 || len > CV_RELAY_HEADER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!tchar(n[i]))
            return false;
    for (size_t i = 0; relay_headers_refused[i] != NULL; i++)
        if (strlen(relay_headers_refused[i]) == len &&
            strncasecmp(relay_headers_refused[i], n, len) == 0)
            return false;
    return !(len >= 10 && strncasecmp(n, "cardvault-", 10) == 0);
}

/* Visible ASCII and space: no CR or LF (no header injection), no tab, no
 * obs-text. */
static bool relay_header_value_ok(const char *v, size_t len)
{
    if (len > CV_RELAY_HEADER_VALUE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

static bool relay_path_ok(const char *p, size_t len)
{
    if (len == 0 || len > CV_RELAY_PATH_MAX || p[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return false;
    }
    return true;
}

static bool relay_method_ok(const char *m)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(m, methods[i]) == 0)
            return true;
    return false;
}

static bool relay_alias_ok(const char *a, size_t len)
{
    if (len == 0 || len > CV_RELAY_ALIAS_MAX || !(a[0] >= 'a' && a[0] <= 'z'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9') || a[i] == '_'))
            return false;
    return true;
}

static char *heap_copy(const char *s, size_t n)
{
    char *p = cv_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

#define RELAY_FAIL(status, name)                                                                   \
    do {                                                                                           \
        param_set(param, name, strlen(name));                                                      \
        st = (status);                                                                             \
        goto out;                                                                                  \
    } while (0)

cv_status cv_json_decode_relay(const char *body, size_t len, struct cv_relay_req *out,
                               struct cv_json_param *param)
{
    json_t *root = NULL;
    const char *key;
    json_t *value;
    cv_status st = CV_OK;

    memset(out, 0, sizeof(*out));
    param->name[0] = '\0';
    CV_TRY(parse_object(body, len, &root));
    json_object_foreach(root, key, value)
    {
        const struct field *f = NULL;
        for (size_t i = 0; i < N_RELAY_FIELDS; i++)
            if (strcmp(key, relay_fields[i].name) == 0)
                f = &relay_fields[i];
        if (f == NULL) {
            param_set_unknown(param, key);
            st = CV_ERR_UNKNOWN_FIELD;
            goto out;
        }
        if (!kind_ok(value, f->kind))
            RELAY_FAIL(CV_ERR_INVALID_TYPE, f->name);
    }
    static const char *const required[] = {"method", "path", "tokens"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (json_object_get(root, required[i]) == NULL)
            RELAY_FAIL(CV_ERR_MISSING_FIELD, required[i]);

    value = json_object_get(root, "method");
    if (json_string_length(value) > CV_RELAY_METHOD_MAX ||
        !relay_method_ok(json_string_value(value)))
        RELAY_FAIL(CV_ERR_BAD_REQUEST, "method");
    memcpy(out->method, json_string_value(value), json_string_length(value) + 1);

    value = json_object_get(root, "path");
    if (!relay_path_ok(json_string_value(value), json_string_length(value)))
        RELAY_FAIL(CV_ERR_BAD_REQUEST, "path");
    out->path = heap_copy(json_string_value(value), json_string_length(value));

    json_t *headers = json_object_get(root, "headers");
    if (headers != NULL) {
        if (json_object_size(headers) > CV_RELAY_HEADERS_MAX)
            RELAY_FAIL(CV_ERR_BAD_REQUEST, "headers");
        json_object_foreach(headers, key, value)
        {
            size_t kn = json_object_iter_key_len(json_object_key_to_iter(key));
            if (!json_is_string(value))
                RELAY_FAIL(CV_ERR_INVALID_TYPE, "headers");
            if (kn != strlen(key) || !relay_header_name_ok(key, kn) ||
                !relay_header_value_ok(json_string_value(value), json_string_length(value)))
                RELAY_FAIL(CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers");
            /* Header names are case-insensitive (RFC 9110 5.1): one name, once. */
            for (size_t i = 0; i < out->n_headers; i++)
                if (strcasecmp(out->headers[i].name, key) == 0)
                    RELAY_FAIL(CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers");
            struct cv_relay_header *h = &out->headers[out->n_headers++];
            h->name = heap_copy(key, kn);
            h->value = heap_copy(json_string_value(value), json_string_length(value));
        }
    }

    value = json_object_get(root, "body");
    if (value != NULL) {
        out->body_len = json_string_length(value);
        out->body = heap_copy(json_string_value(value), out->body_len);
    }

    json_t *tokens = json_object_get(root, "tokens");
    size_t nt = json_object_size(tokens);
    if (nt == 0 || nt > CV_RELAY_TOKENS_MAX)
        RELAY_FAIL(CV_ERR_BAD_REQUEST, "tokens");
    json_object_foreach(tokens, key, value)
    {
        size_t kn = json_object_iter_key_len(json_object_key_to_iter(key));
        if (!json_is_string(value))
            RELAY_FAIL(CV_ERR_INVALID_TYPE, "tokens");
        if (kn != strlen(key) || !relay_alias_ok(key, kn) ||
            json_string_length(value) > CV_RELAY_DEST_MAX)
            RELAY_FAIL(CV_ERR_BAD_REQUEST, "tokens");
        memcpy(out->aliases[out->n_tokens], key, kn + 1);
        memcpy(out->tokens[out->n_tokens], json_string_value(value), json_string_length(value) + 1);
        out->n_tokens++;
    }
out:
    json_decref(root);
    if (st != CV_OK)
        cv_relay_req_cleanup(out);
    return st;
}

char *cv_json_encode_relay_answer(int status, const struct cv_relay_header *headers,
                                  size_t n_headers, const char *body, size_t body_len,
                                  long long duration_ms, size_t max_bytes, size_t *len)
{
    /* Written with cv_buf rather than jansson: jansson refuses a string
     * that is not UTF-8, and a processor may answer in any bytes. The body
     * is redacted already: nothing here is card data. */
    struct cv_buf b;
    cv_buf_init(&b, max_bytes);
    cv_status st = cv_buf_appendf(&b, "{\"status\":%d,\"headers\":{", status);
    for (size_t i = 0; i < n_headers && st == CV_OK; i++) {
        if (i > 0)
            st = cv_buf_append_char(&b, ',');
        if (st == CV_OK)
            st = cv_buf_append_json_string(&b, headers[i].name, strlen(headers[i].name));
        if (st == CV_OK)
            st = cv_buf_append_char(&b, ':');
        if (st == CV_OK)
            st = cv_buf_append_json_string(&b, headers[i].value, strlen(headers[i].value));
    }
    if (st == CV_OK)
        st = cv_buf_append_str(&b, "},\"body\":");
    if (st == CV_OK)
        st = cv_buf_append_json_string(&b, body != NULL ? body : "", body != NULL ? body_len : 0);
    if (st == CV_OK)
        st = cv_buf_appendf(&b, ",\"duration_ms\":%lld}", duration_ms);
    size_t n = 0;
    char *text = st == CV_OK ? cv_buf_take(&b, &n) : NULL;
    *len = 0;
    if (text == NULL) {
        cv_buf_cleanup(&b);
        return NULL;
    }
    /* Callers free with cv_json_free (a size-prefixed block): copy over. */
    char *out = wiping_malloc(n + 1);
    if (out == NULL)
        abort();
    memcpy(out, text, n + 1);
    free(text);
    *len = n;
    return out;
}

static char *dump(json_t *obj, size_t *len)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s == NULL)
        abort(); /* only fails on allocation failure */
    *len = strlen(s);
    return s;
}

static json_t *token_object(const struct cv_token_view *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "token", json_string(v->token));
    json_object_set_new(o, "brand", json_string(v->brand));
    json_object_set_new(o, "bin", json_string(v->bin));
    json_object_set_new(o, "last4", json_string(v->last4));
    json_object_set_new(o, "exp_month", json_integer(v->exp_month));
    json_object_set_new(o, "exp_year", json_integer(v->exp_year));
    if (v->fingerprint != NULL) /* NULL: omitted (tokenize answers to keys without read scope) */
        json_object_set_new(o, "fingerprint", json_string(v->fingerprint));
    json_object_set_new(o, "created_at", json_string(v->created_at));
    if (v->pan != NULL)
        json_object_set_new(o, "pan", json_string(v->pan));
    if (v->include_name)
        json_object_set_new(o, "cardholder_name",
                            v->name != NULL ? json_string(v->name) : json_null());
    /* The token's own data (migration 0008): its metadata, as stored (this
     * service wrote it), and its lifetime. */
    json_error_t err;
    json_t *meta = v->metadata != NULL ? json_loads(v->metadata, 0, &err) : NULL;
    if (meta == NULL || !json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    json_object_set_new(o, "metadata", meta);
    json_object_set_new(o, "expires_at",
                        v->expires_at != NULL && v->expires_at[0] != '\0'
                            ? json_string(v->expires_at)
                            : json_null());
    return o;
}

char *cv_json_encode_token(const struct cv_token_view *v, size_t *len)
{
    return dump(token_object(v), len);
}

char *cv_json_encode_error(const char *type, const char *code, const char *message,
                           const char *param, const char *request_id, size_t *len)
{
    json_t *e = json_object();
    json_object_set_new(e, "type", json_string(type));
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(message));
    if (param != NULL)
        json_object_set_new(e, "param", json_string(param));
    json_t *o = json_object();
    json_object_set_new(o, "error", e);
    json_object_set_new(o, "request_id", json_string(request_id));
    return dump(o, len);
}

char *cv_json_encode_health(const char *status, const char *const *checks, size_t n_pairs,
                            size_t *len)
{
    json_t *c = json_object();
    for (size_t i = 0; i < n_pairs; i++)
        json_object_set_new(c, checks[2 * i], json_string(checks[2 * i + 1]));
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(status));
    if (n_pairs > 0)
        json_object_set_new(o, "checks", c);
    else
        json_decref(c);
    return dump(o, len);
}

char *cv_json_encode_pairs(const char *const *pairs, size_t n_pairs, size_t *len)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n_pairs; i++)
        json_object_set_new(o, pairs[2 * i], json_string(pairs[2 * i + 1]));
    return dump(o, len);
}

/* PATCH /v1/tokens/{token}: what each field may be. */
static const struct {
    const char *name;
    enum field_kind kind;
    bool nullable;
} update_fields[] = {
    {"exp_month", F_INTEGER, false},     {"exp_year", F_INTEGER, false},
    {"cardholder_name", F_STRING, true}, {"metadata", F_OBJECT, false},
    {"ttl_seconds", F_INTEGER, true},
};
#define N_UPDATE_FIELDS (sizeof(update_fields) / sizeof(update_fields[0]))

cv_status cv_json_decode_update(const char *body, size_t len, struct cv_update_req *out,
                                struct cv_json_param *param)
{
    json_t *root = NULL;
    const char *key;
    json_t *value;
    cv_status st = CV_OK;

    memset(out, 0, sizeof(*out));
    param->name[0] = '\0';
    CV_TRY(parse_object(body, len, &root));
    json_object_foreach(root, key, value)
    {
        size_t f = N_UPDATE_FIELDS;
        for (size_t i = 0; i < N_UPDATE_FIELDS; i++)
            if (strcmp(key, update_fields[i].name) == 0)
                f = i;
        if (f == N_UPDATE_FIELDS) {
            param_set_unknown(param, key);
            st = CV_ERR_UNKNOWN_FIELD;
            goto out;
        }
        if (!kind_ok(value, update_fields[f].kind) &&
            !(update_fields[f].nullable && json_is_null(value))) {
            param_set(param, update_fields[f].name, strlen(update_fields[f].name));
            st = CV_ERR_INVALID_TYPE;
            goto out;
        }
    }
    /* The expiry is one value: both halves or neither. */
    json_t *m = json_object_get(root, "exp_month"), *y = json_object_get(root, "exp_year");
    if ((m == NULL) != (y == NULL)) {
        const char *missing = m == NULL ? "exp_month" : "exp_year";
        param_set(param, missing, strlen(missing));
        st = CV_ERR_MISSING_FIELD;
        goto out;
    }
    if (m != NULL) {
        out->has_expiry = true;
        out->exp_month = json_integer_value(m);
        out->exp_year = json_integer_value(y);
    }
    if ((value = json_object_get(root, "cardholder_name")) != NULL) {
        out->has_name = true;
        if (json_is_string(value)) {
            if (json_string_length(value) > CV_NAME_MAX_BYTES) {
                param_set(param, "cardholder_name", strlen("cardholder_name"));
                st = CV_ERR_INVALID_NAME;
                goto out;
            }
            out->name = secbuf_from_string(value);
        }
    }
    if ((value = json_object_get(root, "metadata")) != NULL) {
        param_set(param, "metadata", strlen("metadata"));
        if ((st = decode_metadata(value, true, &out->metadata_patch)) != CV_OK)
            goto out;
    }
    if ((value = json_object_get(root, "ttl_seconds")) != NULL) {
        out->has_ttl = true;
        param_set(param, "ttl_seconds", strlen("ttl_seconds"));
        if (json_is_null(value))
            out->clear_ttl = true;
        else if ((st = decode_ttl(value, &out->ttl_seconds)) != CV_OK)
            goto out;
    }
    param->name[0] = '\0';
out:
    json_decref(root);
    if (st != CV_OK)
        cv_update_req_cleanup(out);
    return st;
}

cv_status cv_json_metadata_merge(const char *current, const char *patch, char **out)
{
    json_error_t err;
    cv_status st = CV_OK;
    *out = NULL;
    json_t *cur = json_loads(current != NULL ? current : "{}", 0, &err);
    json_t *p = json_loads(patch, 0, &err);
    if (cur == NULL || p == NULL || !json_is_object(cur) || !json_is_object(p)) {
        st = CV_ERR_INTERNAL; /* both were written by this service */
        goto out;
    }
    const char *key;
    json_t *value;
    /* RFC 7396 (JSON Merge Patch) on one level: a string sets, null deletes. */
    json_object_foreach(p, key, value)
    {
        if (json_is_null(value))
            json_object_del(cur, key);
        else
            json_object_set(cur, key, value);
    }
    if (json_object_size(cur) > CV_META_KEYS_MAX) {
        st = CV_ERR_INVALID_METADATA;
        goto out;
    }
    char *text = json_dumps(cur, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        abort();
    *out = cv_xstrdup(text);
    wiping_free(text);
out:
    json_decref(cur);
    json_decref(p);
    return st;
}

char *cv_json_encode_token_list(const struct cv_token_view *views, size_t n, bool has_more,
                                const char *next_cursor, size_t *len)
{
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, token_object(&views[i]));
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    json_object_set_new(o, "has_more", json_boolean(has_more));
    json_object_set_new(o, "next_cursor",
                        next_cursor != NULL ? json_string(next_cursor) : json_null());
    return dump(o, len);
}

char *cv_json_encode_cvc_hold(const char *id, const char *token, const char *expires_at,
                              unsigned uses, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("cvc_hold"));
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "token", json_string(token));
    json_object_set_new(o, "expires_at", json_string(expires_at));
    json_object_set_new(o, "uses", json_integer(uses));
    return dump(o, len);
}
