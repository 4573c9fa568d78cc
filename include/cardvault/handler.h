#ifndef CV_HANDLER_H
#define CV_HANDLER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cardvault/auth.h"
#include "cardvault/origin.h"
#include "cardvault/relay_template.h"
#include "cardvault/secbuf.h"
#include "cardvault/status.h"
#include "cardvault/store.h"

/* The handler contract: what the HTTP layer hands a flow and what it gets
 * back. A handler sees decoded request structs, never bytes or headers, and
 * answers with a result kind or a cv_status, never an HTTP code: turning
 * results into HTTP (codes, headers, error bodies) is http_server.c's job
 * alone. A handler reaches the rest of the service only through the narrow
 * cv_handler_deps below, so its flows can run against fakes in unit tests.
 *
 * Lifecycle: the server calls handler(deps, call, done). The handler calls
 * cv_completion_finish(done, &result) exactly once, either before it returns
 * or later from any thread: tokenize, read and detokenize finish on a batch writer thread once
 * their batched write or read is done (the store_ops _async members), and the HTTP layer suspends
 * the connection meanwhile. `call`, and everything it points to, stays valid
 * until then; after finishing the handler must not touch `call` or `done`. */

struct cv_card_testing;
struct cv_holds;
struct cv_keyring;
struct cv_metrics;
struct cv_readiness;

/* POST /v1/tokens, decoded (json_codec.c). The buffers are wiped on cleanup. */
struct cv_tokenize_req {
    struct cv_secbuf *pan;  /* as sent, NUL-terminated; separators not yet removed */
    struct cv_secbuf *cvc;  /* NULL when absent */
    struct cv_secbuf *name; /* NULL when absent */
    long long exp_month;
    long long exp_year;
    bool reuse_existing;
    char *metadata;        /* checked, canonical JSON object text (heap), or NULL when absent */
    long long ttl_seconds; /* with has_ttl: the token expires this long after it is made */
    bool has_ttl;
};
/* Frees (wiping) the buffers and zeroes req; safe to call twice. */
void cv_tokenize_req_cleanup(struct cv_tokenize_req *req);

/* POST /v1/relay/{destination}, decoded (json_codec.c; docs/relay.md). The
 * request the shop wants sent on: method, path, headers, the body template
 * and the tokens it names by alias. Strings are heap, NUL-terminated, wiped
 * and freed on cleanup (a header may carry the shop's processor credential). */
#define CV_RELAY_METHOD_MAX       7 /* "DELETE" */
#define CV_RELAY_PATH_MAX         2048
#define CV_RELAY_HEADERS_MAX      16
#define CV_RELAY_HEADER_NAME_MAX  64
#define CV_RELAY_HEADER_VALUE_MAX 2048
#define CV_RELAY_DEST_MAX         64 /* the {destination} path segment */
#define CV_RELAY_HOLD_MAX         64 /* the CardVault-Hold header */
struct cv_relay_header {
    char *name;
    char *value;
};
struct cv_relay_req {
    char method[CV_RELAY_METHOD_MAX + 1];
    char *path;
    struct cv_relay_header headers[CV_RELAY_HEADERS_MAX];
    size_t n_headers;
    char *body; /* the template; NULL when absent (no body) */
    size_t body_len;
    size_t n_tokens; /* 1..CV_RELAY_TOKENS_MAX */
    char aliases[CV_RELAY_TOKENS_MAX][CV_RELAY_ALIAS_MAX + 1];
    char tokens[CV_RELAY_TOKENS_MAX][CV_RELAY_DEST_MAX + 1]; /* as sent; checked by the flow */
};
/* Wipes and frees the strings and zeroes req; safe to call twice. */
void cv_relay_req_cleanup(struct cv_relay_req *req);

/* POST /v1/tokens/{token}/cvc-hold, decoded (json_codec.c). */
struct cv_cvc_hold_req {
    struct cv_secbuf *cvc; /* as sent, NUL-terminated; wiped on cleanup */
    unsigned uses;         /* 0: the default */
    unsigned ttl_s;        /* 0: the default */
};
void cv_cvc_hold_req_cleanup(struct cv_cvc_hold_req *req);
/* The bounds of a token's lifetime (ttl_seconds): 1 s to 10 years. */
#define CV_TTL_MIN_S 1LL
#define CV_TTL_MAX_S 315360000LL

/* PATCH /v1/tokens/{token}, decoded (json_codec.c). Each has_ flag says the
 * field was sent; what it sets is beside it. */
struct cv_update_req {
    bool has_expiry; /* exp_month and exp_year come together */
    long long exp_month;
    long long exp_year;
    bool has_name;
    struct cv_secbuf *name; /* NULL with has_name: remove the cardholder name */
    char *metadata_patch;   /* checked JSON object text (heap): keys to set, null deletes */
    bool has_ttl;
    bool clear_ttl; /* ttl_seconds: null, the token no longer expires */
    long long ttl_seconds;
};
/* Frees (wiping) what req holds and zeroes it; safe to call twice. */
void cv_update_req_cleanup(struct cv_update_req *req);

/* GET /v1/tokens: the query, parsed and checked by cv_list_query_add/_finish
 * (list_query.h). Strings are NUL-terminated; "" when absent. */
#define CV_LIST_LIMIT_DEFAULT 10
#define CV_LIST_LIMIT_MAX     100
struct cv_list_req {
    unsigned limit;
    bool has_cursor;
    int64_t after_created_us;
    char after_token[CV_TOKEN_LEN + 1];
    char fingerprint[CV_FINGERPRINT_LEN + 1];
    bool has_created_gte, has_created_lt;
    int64_t created_gte, created_lt;
    char meta_key[CV_META_KEY_MAX + 1];
    char meta_value[CV_META_VALUE_MAX + 1];
    unsigned seen;   /* parameters met so far (a repeat is an error) */
    cv_status error; /* the first error met, CV_OK if none */
};

/* GET /elements/card and /elements/cvc: the frame page's query, decoded and
 * checked for shape by cv_frame_query_add/_finish (api_elements.h). Strings
 * are NUL-terminated; an optional parameter that was absent is "". */
#define CV_FRAME_NONCE_MIN 16
#define CV_FRAME_NONCE_MAX 128
#define CV_FRAME_TITLE_MAX 120 /* bytes of UTF-8 */
#define CV_FRAME_LANG_MAX  35
#define CV_FRAME_BRAND_MAX 15
enum cv_frame_kind {
    CV_FRAME_CARD = 0, /* name, number, expiry, security code */
    CV_FRAME_CVC,      /* the security code of a saved card */
};
struct cv_frame_req {
    enum cv_frame_kind kind;
    char key[CV_APIKEY_LEN + 1];    /* a publishable key, pk_ */
    char origin[CV_ORIGIN_MAX + 1]; /* the parent page's origin, canonical */
    char nonce[CV_FRAME_NONCE_MAX + 1];
    char title[CV_FRAME_TITLE_MAX + 1];
    char lang[CV_FRAME_LANG_MAX + 1];
    char token[CV_TOKEN_LEN + 1];       /* CV_FRAME_CVC only */
    char brand[CV_FRAME_BRAND_MAX + 1]; /* CV_FRAME_CVC only, optional */
    unsigned seen;                      /* parameters met so far (a repeat is an error) */
    cv_status error;                    /* the first error met, CV_OK if none */
};

/* What a handler receives: authenticated, headers checked, body decoded. */
struct cv_call {
    const char *request_id;
    const struct cv_principal *who;         /* NULL on unauthenticated routes */
    const char *token;                      /* the {token} path segment, or NULL */
    const char *idempotency_key;            /* well-formed Idempotency-Key, or NULL */
    const struct cv_tokenize_req *tokenize; /* the decoded body of POST /v1/tokens, else NULL */
    const struct cv_cvc_hold_req *cvc_hold; /* the decoded body of .../cvc-hold, else NULL */
    const struct cv_frame_req *frame;       /* the decoded query of a frame page, else NULL */
    const char *origin;                 /* POST /v1/tokens: the Origin header as sent, or NULL */
    const struct cv_relay_req *relay;   /* the decoded body of a relay, else NULL */
    const char *destination;            /* the relay's {destination} path segment */
    const char *hold;                   /* the CardVault-Hold header (relay), or NULL */
    const struct cv_list_req *list;     /* GET /v1/tokens: the decoded query, else NULL */
    const struct cv_update_req *update; /* PATCH /v1/tokens/{token}: the decoded body, else NULL */
};

/* How a request succeeded. Failures are a cv_status instead. */
enum cv_result_kind {
    CV_RESULT_OK = 0,    /* the resource or report asked for */
    CV_RESULT_CREATED,   /* a new token */
    CV_RESULT_DELETED,   /* the token is gone; no body */
    CV_RESULT_NOT_READY, /* a readiness report saying "not ready" (the body is the report) */
};

enum cv_body_type {
    CV_BODY_JSON = 0,
    CV_BODY_METRICS,    /* Prometheus text exposition format */
    CV_BODY_HTML,       /* a card frame page */
    CV_BODY_JAVASCRIPT, /* elements.js, frame.js */
    CV_BODY_CSS,        /* frame.css */
};

/* How browsers may use an answer: which caching, framing, cross-origin and
 * content-security headers go with it. The header values are written once,
 * in cv_elements_web_headers (api_elements.h); http_server.c adds them. */
enum cv_web_policy {
    CV_WEB_API = 0,       /* every API answer: no-store, nosniff, nothing cross-origin */
    CV_WEB_PUBLIC_SCRIPT, /* elements.js: any site may load it (CORS *, CORP cross-origin) */
    CV_WEB_FRAME_ASSET,   /* frame.js, frame.css: the vault's own pages only */
    CV_WEB_FRAME_PAGE,    /* a frame page: CSP, frameable by frame_ancestor alone */
    CV_WEB_FRAME_REFUSAL, /* a frame page's HTML error: no script, no referrer, no cache */
};

/* What a handler answers. status CV_OK: kind says how, body (heap, released
 * with free_body) or static_body (static storage, never freed) is the
 * answer. Otherwise status says why the request failed and error_param may
 * name the faulty field (static storage). */
struct cv_result {
    cv_status status;
    enum cv_result_kind kind;
    bool replayed; /* the stored answer of an earlier request with this Idempotency-Key */
    char *body;
    size_t body_len;
    void (*free_body)(void *);
    const char *static_body; /* compiled-in assets; body_len is its length */
    enum cv_body_type body_type;
    enum cv_web_policy web;
    char
        frame_ancestor[CV_ORIGIN_MAX + 1]; /* CV_WEB_FRAME_PAGE: the one origin that may frame it */
    const char *error_param;
    unsigned retry_after_s; /* CV_ERR_QUOTA_EXCEEDED: whole seconds until a retry can succeed */
};
/* Releases the body; accepts a zeroed result. */
void cv_result_cleanup(struct cv_result *r);

/* The one way a request finishes. finish takes the result (and its body)
 * over; see the lifecycle above. */
struct cv_completion {
    void (*finish)(struct cv_completion *self, struct cv_result *result);
};
void cv_completion_finish(struct cv_completion *done, struct cv_result *result);

/* How an Idempotency-Key claim went. */
enum cv_idem_claim {
    CV_IDEM_CLAIMED,  /* the key is ours now: complete or release it */
    CV_IDEM_TAKEN,    /* another request holds it: *existing describes its record */
    CV_IDEM_VANISHED, /* its record was released between claim and read: ask again */
};

/* Persistence the flows need. The production table is the cv_store_*
 * functions of store.h (idem_claim adapted to the outcome above); a test
 * passes its own table and handle. */
struct cv_store_ops {
    cv_status (*get_token)(struct cv_store *st, const char *merchant_id, const char *token,
                           struct cv_token_row *out);
    cv_status (*find_by_fingerprint)(struct cv_store *st, const char *merchant_id,
                                     const char *fingerprint, struct cv_token_row *rows, size_t max,
                                     size_t *count);
    cv_status (*insert_token)(struct cv_store *st, const struct cv_token_row *row,
                              const unsigned char *idem_key_hash, const char *response_body,
                              const struct cv_audit_event *ev);
    cv_status (*delete_token)(struct cv_store *st, const char *merchant_id, const char *token,
                              const struct cv_audit_event *ev);
    cv_status (*audit_append)(struct cv_store *st, const struct cv_audit_event *ev);
    /* durable: as cv_store_idem_claim's (a relay's claim must be on disk
     * before its outbound call; a token write's is made durable by the
     * write itself) */
    cv_status (*idem_claim)(struct cv_store *st, const char *merchant_id,
                            const unsigned char key_hash[32], const unsigned char request_hash[32],
                            int64_t ttl_s, int64_t stale_s, bool durable,
                            enum cv_idem_claim *outcome, struct cv_idem_record *existing);
    cv_status (*idem_complete)(struct cv_store *st, const char *merchant_id,
                               const unsigned char key_hash[32], int status_code,
                               const char *response_body);
    cv_status (*idem_release)(struct cv_store *st, const char *merchant_id,
                              const unsigned char key_hash[32]);
    cv_status (*ping)(struct cv_store *st);
    /* store.h's cv_store_replication; NULL: not checked */
    cv_status (*replication)(struct cv_store *st, bool *standby_named, int *senders);
    void (*pool_usage)(struct cv_store *st, unsigned *in_use, unsigned *size);
    /* GET /v1/tokens and PATCH /v1/tokens/{token} (NULL in a table that
     * serves neither: the handlers answer CV_ERR_INTERNAL) */
    cv_status (*list_tokens)(struct cv_store *st, const struct cv_token_list_query *q,
                             struct cv_token_row *rows, size_t max, size_t *count);
    cv_status (*update_token)(struct cv_store *st, const struct cv_token_row *row,
                              const unsigned char old_nonce[CV_GCM_NONCE_BYTES],
                              const struct cv_audit_event *ev);
    /* insert_token, get_token and audit_append without waiting (store.h's
     * _async calls: CV_OK, then done(ctx, status) exactly once, on any
     * thread). NULL in a table without them: the flows then wait. */
    cv_status (*insert_token_async)(struct cv_store *st, const struct cv_token_row *row,
                                    const unsigned char *idem_key_hash, const char *response_body,
                                    const struct cv_audit_event *ev, cv_store_done_fn done,
                                    void *ctx);
    cv_status (*get_token_async)(struct cv_store *st, const char *merchant_id, const char *token,
                                 struct cv_token_row *out, cv_store_done_fn done, void *ctx);
    cv_status (*audit_append_async)(struct cv_store *st, const struct cv_audit_event *ev,
                                    cv_store_done_fn done, void *ctx);
};

/* Key operations the flows need; the production table is keyring.h's. */
struct cv_keyring_ops {
    cv_status (*seal)(struct cv_keyring *kr, const struct cv_card_plain *card,
                      struct cv_token_row *row);
    cv_status (*open_row)(struct cv_keyring *kr, const struct cv_token_row *row,
                          struct cv_card_plain *card);
    cv_status (*fingerprint)(struct cv_keyring *kr, const char *merchant_id, const char *pan,
                             char out[CV_FINGERPRINT_LEN + 1]);
    cv_status (*mac)(struct cv_keyring *kr, const char *label, const char *merchant_id,
                     const void *data, size_t len, unsigned char out[32]);
    bool (*kek_ok)(struct cv_keyring *kr);
    uint64_t (*rotations)(struct cv_keyring *kr);
};

/* One outbound relay request, rendered: what the relay client sends. */
struct cv_relay_outbound {
    const char *destination;
    const char *method;
    const char *path;
    const struct cv_relay_header *headers;
    size_t n_headers;
    const unsigned char *body; /* the rendered body (holds the card); NULL when none */
    size_t body_len;
    const char *request_id;
};

/* The processor's answer. Free with cv_relay_answer_cleanup (wipes: the body
 * and headers may echo the card until redacted). */
#define CV_RELAY_ANSWER_HEADERS_MAX 32
struct cv_relay_answer {
    int status;
    struct cv_relay_header headers[CV_RELAY_ANSWER_HEADERS_MAX];
    size_t n_headers;
    char *body; /* NUL-terminated; NULL when empty */
    size_t body_len;
};
void cv_relay_answer_cleanup(struct cv_relay_answer *a);

/* What the relay flow needs from outside the vault: the operator's
 * destination list, the outbound client and the CVC holds. The production
 * table wires relay_dest.h, relay_client.h and cvc_hold.h; tests pass fakes.
 * allowed: may this method and path be sent to this destination (before any
 * token is opened). send: one request; *maybe_sent tells, on failure,
 * whether any byte of the request may have left (a retry could then charge
 * twice). hold_take: one use of the hold bound to (merchant, token); cvc gets
 * the code, NUL-terminated. */
struct cv_relay_ops {
    cv_status (*allowed)(void *ctx, const char *destination, const char *method, const char *path);
    cv_status (*send)(void *ctx, const struct cv_relay_outbound *req, struct cv_relay_answer *ans,
                      bool *maybe_sent);
    cv_status (*hold_take)(void *ctx, const char *merchant_id, const char *token,
                           const char *hold_id, char cvc[5]);
};

/* Wall-clock time, and waiting (the Idempotency-Key poll). */
struct cv_clock {
    time_t (*now)(void *ctx);
    void (*sleep_ms)(void *ctx, unsigned ms);
    void *ctx;
};

/* Everything a handler may use; borrowed, it outlives every request. */
struct cv_handler_deps {
    struct cv_store *store;
    const struct cv_store_ops *store_ops;
    struct cv_keyring *keyring; /* NULL: key operations unavailable */
    const struct cv_keyring_ops *keyring_ops;
    struct cv_clock clock;
    struct cv_metrics *metrics;     /* GET /metrics */
    atomic_bool *draining;          /* shutting down: readiness answers "not ready" */
    struct cv_readiness *readiness; /* shares one probe among /readyz callers; NULL: probe
                                       on every call (set by the caller after init) */
    int64_t idempotency_ttl_s;
    struct cv_card_testing *card_testing; /* tokenize quotas and detector; NULL: none */
    const struct cv_relay_ops *relay_ops; /* NULL: no relay (no destinations) */
    void *relay_ctx;
    struct cv_holds *holds;   /* security-code holds (cvc_hold.h); NULL: none */
    bool expect_sync_standby; /* readiness reports a primary running without one */
};

/* The production wiring: store.h's and keyring.h's functions, the system clock. */
void cv_handler_deps_init(struct cv_handler_deps *deps, struct cv_store *store,
                          struct cv_keyring *keyring, struct cv_metrics *metrics,
                          atomic_bool *draining, int64_t idempotency_ttl_s);

/* A route's flow; see the lifecycle above. */
typedef void (*cv_handler)(const struct cv_handler_deps *deps, const struct cv_call *call,
                           struct cv_completion *done);

#endif
