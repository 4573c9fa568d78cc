/* status.c: names of cv_status values. Names are stable: logs, metrics and
 * dashboards key on them. */
#include "cardvault/status.h"

#include <stddef.h>

static const char *const names[CV_STATUS_COUNT] = {
    [CV_OK] = "ok",
    [CV_ERR_INVALID_JSON] = "invalid_json",
    [CV_ERR_UNKNOWN_FIELD] = "unknown_field",
    [CV_ERR_MISSING_FIELD] = "missing_field",
    [CV_ERR_INVALID_TYPE] = "invalid_type",
    [CV_ERR_INVALID_PAN] = "invalid_pan",
    [CV_ERR_INVALID_EXPIRY] = "invalid_expiry",
    [CV_ERR_INVALID_CVC] = "invalid_cvc",
    [CV_ERR_INVALID_NAME] = "invalid_name",
    [CV_ERR_BAD_REQUEST] = "bad_request",
    [CV_ERR_INVALID_IDEMPOTENCY_KEY] = "invalid_idempotency_key",
    [CV_ERR_KEY_IN_QUERY] = "api_key_in_query",
    [CV_ERR_INVALID_METADATA] = "invalid_metadata",
    [CV_ERR_METADATA_CARD_DATA] = "metadata_card_data",
    [CV_ERR_INVALID_TTL] = "invalid_ttl",
    [CV_ERR_INVALID_LIST_QUERY] = "invalid_query",
    [CV_ERR_INVALID_CURSOR] = "invalid_cursor",
    [CV_ERR_UNAUTHENTICATED] = "invalid_api_key",
    [CV_ERR_FORBIDDEN] = "insufficient_scope",
    [CV_ERR_NOT_FOUND] = "token_not_found",
    [CV_ERR_ROUTE_NOT_FOUND] = "route_not_found",
    [CV_ERR_METHOD_NOT_ALLOWED] = "method_not_allowed",
    [CV_ERR_BODY_TOO_LARGE] = "body_too_large",
    [CV_ERR_UNSUPPORTED_MEDIA] = "unsupported_media_type",
    [CV_ERR_IDEMPOTENCY_REUSED] = "idempotency_key_reused",
    [CV_ERR_IDEMPOTENCY_IN_USE] = "idempotency_key_in_use",
    [CV_ERR_TOKEN_DESTROYED] = "token_destroyed",
    [CV_ERR_RATE_LIMITED] = "rate_limited",
    [CV_ERR_FRAME_BAD_REQUEST] = "frame_bad_request",
    [CV_ERR_FRAME_KEY_NOT_PUBLISHABLE] = "frame_key_not_publishable",
    [CV_ERR_FRAME_KEY_REFUSED] = "frame_key_refused",
    [CV_ERR_FRAME_ORIGIN] = "frame_origin_not_allowed",
    [CV_ERR_FRAME_NAVIGATION] = "frame_navigation_refused",
    [CV_ERR_CROSS_ORIGIN] = "cross_origin_refused",
    [CV_ERR_CORS_NOT_SUPPORTED] = "cors_not_supported",
    [CV_ERR_QUOTA_EXCEEDED] = "tokenize_quota_exceeded",
    [CV_ERR_RELAY_PLACEHOLDER_UNKNOWN] = "relay_placeholder_unknown",
    [CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED] = "relay_placeholder_unterminated",
    [CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED] = "relay_placeholder_not_allowed",
    [CV_ERR_RELAY_CONTENT_TYPE] = "relay_content_type_unsupported",
    [CV_ERR_RELAY_HOLD_REQUIRED] = "relay_hold_required",
    [CV_ERR_RELAY_HOLD_UNUSED] = "relay_hold_unused",
    [CV_ERR_RELAY_HEADER_NOT_ALLOWED] = "relay_header_not_allowed",
    [CV_ERR_RELAY_DESTINATION_UNKNOWN] = "relay_destination_unknown",
    [CV_ERR_RELAY_NOT_ALLOWED] = "relay_not_allowed",
    [CV_ERR_RELAY_CONNECT] = "relay_connect_failed",
    [CV_ERR_RELAY_TLS] = "relay_tls_failed",
    [CV_ERR_RELAY_REDIRECT] = "relay_redirect_refused",
    [CV_ERR_RELAY_TIMEOUT] = "relay_timeout",
    [CV_ERR_RELAY_ANSWER_TOO_LARGE] = "relay_answer_too_large",
    [CV_ERR_RELAY_UPSTREAM] = "relay_upstream_failed",
    [CV_ERR_HOLD_GONE] = "cvc_hold_gone",
    [CV_ERR_HOLDS_FULL] = "cvc_holds_full",
    [CV_ERR_DUPLICATE] = "duplicate",
    [CV_ERR_DB_UNAVAILABLE] = "service_unavailable",
    [CV_ERR_COMMIT_UNCONFIRMED] = "commit_unconfirmed",
    [CV_ERR_DB] = "database_error",
    [CV_ERR_CRYPTO] = "crypto_error",
    [CV_ERR_INTEGRITY] = "integrity_error",
    [CV_ERR_CONFIG] = "config_error",
    [CV_ERR_IO] = "io_error",
    [CV_ERR_SHUTTING_DOWN] = "shutting_down",
    [CV_ERR_INTERNAL] = "internal_error",
};

const char *cv_status_name(cv_status st)
{
    if ((unsigned)st >= CV_STATUS_COUNT || names[st] == NULL)
        return "internal_error";
    return names[st];
}
