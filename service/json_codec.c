/* json_codec.c: the only module that includes jansson. Decoding is strict
 * (duplicate keys, unknown fields, wrong types are errors) because a lenient
 * decoder lets typos pass silently, such as "cvv" instead of "cvc". jansson's
 * own error text quotes the input near the error, which may be a PAN: we never
 * log it or return it, only its line and column. */
#include "cardvault/json_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

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
