/* json_codec.c: the only module that includes jansson. Decoding is strict
 * (duplicate keys, unknown fields, wrong types are errors) because a lenient
 * decoder lets typos pass silently, such as "cvv" instead of "cvc". jansson's
 * own error text quotes the input near the error, which may be a PAN: we never
 * log it or return it, only its line and column. */
#include "cardvault/card.h"
#include "cardvault/json_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cardvault/card.h"

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

enum field_kind { F_STRING, F_INTEGER, F_BOOLEAN };

struct field {
    const char *name;
    enum field_kind kind;
};

static const struct field tokenize_fields[] = {
    {"pan", F_STRING}, {"exp_month", F_INTEGER},      {"exp_year", F_INTEGER},
    {"cvc", F_STRING}, {"cardholder_name", F_STRING}, {"reuse_existing", F_BOOLEAN},
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

char *cv_json_encode_token(const struct cv_token_view *v, size_t *len)
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
    return dump(o, len);
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
