#ifndef CV_JSON_CODEC_H
#define CV_JSON_CODEC_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/handler.h"
#include "cardvault/status.h"

/* Request bytes -> structs and structs -> response bytes. Decoding is strict:
 * duplicate keys, unknown fields and wrong types are errors. Card fields are
 * copied out of the JSON tree into secure buffers at once, and the tree's own
 * memory is wiped when freed (wiping allocators installed by cv_json_init).
 * Error messages never quote the input. */

/* What a token answer shows. pan/name are set only for detokenize. */
struct cv_token_view {
    const char *token;
    const char *brand;
    const char *bin;
    const char *last4;
    int exp_month;
    int exp_year;
    const char *fingerprint; /* NULL: omitted (keys without read scope) */
    const char *created_at;
    const char *pan;  /* NULL: omitted */
    const char *name; /* with include_name: NULL is written as null */
    bool include_name;
    const char *metadata;   /* JSON object text; NULL is written as {} */
    const char *expires_at; /* RFC 3339; NULL or "" is written as null */
};

/* Installs jansson allocators that wipe every block on free. Call once at startup. */
void cv_json_init(void);
/* Frees memory returned by the encoders (wiped). */
void cv_json_free(void *p);

/* The longest field name an error answer repeats in its "param" member. */
#define CV_JSON_PARAM_MAX 64

/* The body field a decoding error is about; name is "" when there is none to
 * name. An unknown field's own name is copied in only when it is safe to echo
 * (cv_json_param_is_echoable); a known field is named from our own table. */
struct cv_json_param {
    char name[CV_JSON_PARAM_MAX + 1];
};

/* True when a client-sent field name may be repeated in an error answer:
 * 1 to CV_JSON_PARAM_MAX bytes of ASCII letters, digits and '_', with fewer
 * than 6 digits in all (a name with more could carry part of a card number). */
bool cv_json_param_is_echoable(const char *name, size_t len);

/* Decodes a tokenize body into the contract struct (handler.h). On error returns the status and
 * names the offending field in *param (name "" when none). */
CV_MUST_USE cv_status cv_json_decode_tokenize(const char *body, size_t len,
                                              struct cv_tokenize_req *out,
                                              struct cv_json_param *param);
/* Accepts an empty body or "{}" (detokenize takes no parameters); a field is
 * unknown_field, named in *param like cv_json_decode_tokenize does. */
CV_MUST_USE cv_status cv_json_decode_empty(const char *body, size_t len,
                                           struct cv_json_param *param);

/* Decodes POST /v1/tokens/{token}/cvc-hold: {"cvc", "uses"?, "ttl_seconds"?}
 * (strict like tokenize; uses and ttl_seconds 1..86400, absent = 0 = the
 * default; the holds apply the operator's caps). */
CV_MUST_USE cv_status cv_json_decode_cvc_hold(const char *body, size_t len,
                                              struct cv_cvc_hold_req *out,
                                              struct cv_json_param *param);
/* {"object": "cvc_hold", "id", "token", "expires_at", "uses"}. */
char *cv_json_encode_cvc_hold(const char *id, const char *token, const char *expires_at,
                              unsigned uses, size_t *len);

/* Decodes a relay body (POST /v1/relay/{destination}, docs/relay.md) into
 * the contract struct (handler.h): method, path, headers, body, tokens.
 * Shape only: placeholders and destinations are the flow's to check. On
 * error returns the status (CV_ERR_RELAY_HEADER_NOT_ALLOWED for a header
 * the vault sets, a malformed or repeated one) and names the field. */
CV_MUST_USE cv_status cv_json_decode_relay(const char *body, size_t len, struct cv_relay_req *out,
                                           struct cv_json_param *param);

/* The relay's answer: {"status","headers","body","duration_ms"}. body is
 * the processor's answer already redacted; bytes that are not UTF-8 become
 * U+FFFD. NULL (with *len 0) past max_bytes. Free with cv_json_free. */
char *cv_json_encode_relay_answer(int status, const struct cv_relay_header *headers,
                                  size_t n_headers, const char *body, size_t body_len,
                                  long long duration_ms, size_t max_bytes, size_t *len);
/* Decodes a PATCH /v1/tokens/{token} body: exp_month and exp_year
 * (together), cardholder_name (string, or null to remove it), metadata (an
 * object: a string sets a key, null deletes it; checked by metadata.h) and
 * ttl_seconds (CV_TTL_MIN_S..CV_TTL_MAX_S, or null: no expiry). Errors as
 * cv_json_decode_tokenize, plus CV_ERR_INVALID_METADATA,
 * CV_ERR_METADATA_CARD_DATA and CV_ERR_INVALID_TTL. */
CV_MUST_USE cv_status cv_json_decode_update(const char *body, size_t len, struct cv_update_req *out,
                                            struct cv_json_param *param);
/* Applies a metadata patch (a decoded PATCH's metadata_patch) to the stored
 * object text current (NULL: {}); *out (plain heap, free) gets the result's
 * canonical text. CV_ERR_INVALID_METADATA when the result would have more
 * than CV_META_KEYS_MAX keys. */
CV_MUST_USE cv_status cv_json_metadata_merge(const char *current, const char *patch, char **out);

/* Encoders return NUL-terminated heap text (free with cv_json_free) and its length. */
char *cv_json_encode_token(const struct cv_token_view *v, size_t *len);
/* {"object":"list","data":[token objects],"has_more":...,"next_cursor":string|null} */
char *cv_json_encode_token_list(const struct cv_token_view *views, size_t n, bool has_more,
                                const char *next_cursor, size_t *len);
char *cv_json_encode_error(const char *type, const char *code, const char *message,
                           const char *param, const char *request_id, size_t *len);
/* {"status":status,"checks":{name:value,...}} for health endpoints; names/values
 * in pairs; no "checks" member when n_pairs is 0. */
char *cv_json_encode_health(const char *status, const char *const *checks, size_t n_pairs,
                            size_t *len);
/* Any string-keyed object of strings (CLI output). */
char *cv_json_encode_pairs(const char *const *pairs, size_t n_pairs, size_t *len);

#endif
