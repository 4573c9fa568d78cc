#ifndef CV_STATUS_H
#define CV_STATUS_H

/* One status enum for the whole service. Fallible functions return it;
 * http_server.c alone maps it to an HTTP status and a stable error code. */

#define CV_MUST_USE __attribute__((warn_unused_result))

typedef enum cv_status {
    CV_OK = 0,
    /* request validation (400) */
    CV_ERR_INVALID_JSON,
    CV_ERR_UNKNOWN_FIELD,
    CV_ERR_MISSING_FIELD,
    CV_ERR_INVALID_TYPE,
    CV_ERR_INVALID_PAN,
    CV_ERR_INVALID_EXPIRY,
    CV_ERR_INVALID_CVC,
    CV_ERR_INVALID_NAME,
    CV_ERR_BAD_REQUEST,
    CV_ERR_INVALID_IDEMPOTENCY_KEY,
    CV_ERR_KEY_IN_QUERY,
    /* token metadata, lifetimes and the token list (400) */
    CV_ERR_INVALID_METADATA,   /* a key or value breaks the metadata limits */
    CV_ERR_METADATA_CARD_DATA, /* a metadata value or key reads as card data */
    CV_ERR_INVALID_TTL,        /* ttl_seconds out of range */
    CV_ERR_INVALID_LIST_QUERY, /* GET /v1/tokens: unknown, repeated or malformed parameter */
    CV_ERR_INVALID_CURSOR,     /* GET /v1/tokens: a cursor this service did not write */
    /* protocol */
    CV_ERR_UNAUTHENTICATED,
    CV_ERR_FORBIDDEN,
    CV_ERR_NOT_FOUND,
    CV_ERR_ROUTE_NOT_FOUND,
    CV_ERR_METHOD_NOT_ALLOWED,
    CV_ERR_BODY_TOO_LARGE,
    CV_ERR_UNSUPPORTED_MEDIA,
    CV_ERR_IDEMPOTENCY_REUSED,
    CV_ERR_IDEMPOTENCY_IN_USE,
    CV_ERR_TOKEN_DESTROYED,
    CV_ERR_RATE_LIMITED,
    /* browsers: the card frames and the API's refusal of cross-origin calls */
    CV_ERR_FRAME_BAD_REQUEST,         /* a frame page's query is malformed (400) */
    CV_ERR_FRAME_KEY_NOT_PUBLISHABLE, /* a sk_ or dk_ key in a frame URL (403) */
    CV_ERR_FRAME_KEY_REFUSED,         /* unknown, revoked, or more than tokenize (403) */
    CV_ERR_FRAME_ORIGIN,              /* the parent origin is not on the key's list (403) */
    CV_ERR_FRAME_NAVIGATION,          /* a frame page opened other than in an iframe (403) */
    CV_ERR_CROSS_ORIGIN,              /* a /v1 call with a foreign Origin header (403) */
    CV_ERR_CORS_NOT_SUPPORTED,        /* a CORS preflight (OPTIONS): never answered (405) */
    CV_ERR_QUOTA_EXCEEDED, /* a tokenize quota (per key, per origin) or a card-testing block: 429 */
    /* the relay request (api_relay.c, relay_template.c): 400 */
    CV_ERR_RELAY_PLACEHOLDER_UNKNOWN,      /* bad syntax, unknown alias or field */
    CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED, /* "{{" without "}}" */
    CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED,  /* in a header, the path, or outside a JSON string */
    CV_ERR_RELAY_CONTENT_TYPE,             /* placeholders in a body neither JSON nor a form */
    CV_ERR_RELAY_HOLD_REQUIRED,            /* {{alias.cvc}} without a CardVault-Hold header */
    CV_ERR_RELAY_HOLD_UNUSED,              /* a CardVault-Hold header but no {{alias.cvc}} */
    CV_ERR_RELAY_HEADER_NOT_ALLOWED,       /* a header the vault sets or that is malformed */
    CV_ERR_RELAY_DESTINATION_UNKNOWN,      /* not on the operator's list (404) */
    /* the relay's outbound request (relay_dest.c, relay_client.c) and its hold */
    CV_ERR_RELAY_NOT_ALLOWED,      /* a method or path the destination does not list (403) */
    CV_ERR_RELAY_CONNECT,          /* no TCP connection to the processor (502) */
    CV_ERR_RELAY_TLS,              /* TLS failed: certificate, host name, pin, client cert (502) */
    CV_ERR_RELAY_REDIRECT,         /* the processor answered 3xx; never followed (502) */
    CV_ERR_RELAY_TIMEOUT,          /* no whole answer within the destination's timeout (504) */
    CV_ERR_RELAY_ANSWER_TOO_LARGE, /* the answer passed the destination's cap (502) */
    CV_ERR_RELAY_UPSTREAM,         /* connection reset, or an answer that is not HTTP (502) */
    CV_ERR_HOLD_GONE,              /* the CVC hold expired, was used up or never existed (409) */
    CV_ERR_HOLDS_FULL,             /* every CVC hold slot is taken (503) */
    /* infrastructure */
    CV_ERR_DUPLICATE,          /* unique violation, and nothing else: the row already exists */
    CV_ERR_DB_UNAVAILABLE,     /* connection lost or database refusing writes: 503 */
    CV_ERR_COMMIT_UNCONFIRMED, /* committed locally, but the wait for the synchronous
                                * standby was cancelled: the outcome is unknown (503) */
    CV_ERR_DB,                 /* unexpected database error: 500 */
    CV_ERR_CRYPTO,
    CV_ERR_INTEGRITY, /* AEAD open failed (tampered or misplaced ciphertext), or a row's
                       * clear columns do not match its card (row_check.h) */
    CV_ERR_CONFIG,
    CV_ERR_IO,
    CV_ERR_SHUTTING_DOWN,
    CV_ERR_INTERNAL,
    CV_STATUS_COUNT
} cv_status;

#define CV_TRY(expr)                                                                               \
    do {                                                                                           \
        cv_status cv_try_st_ = (expr);                                                             \
        if (cv_try_st_ != CV_OK)                                                                   \
            return cv_try_st_;                                                                     \
    } while (0)

/* Stable lower_snake name of a status, for logs and metrics. Never NULL. */
const char *cv_status_name(cv_status st);

#endif
