/*
 * The HTTP API's error catalogue (see api_errors.h).
 */
#include "cardvault/api_errors.h"

#include <stddef.h>

static struct cv_api_error lookup(cv_status st)
{
    switch (st) {
    case CV_ERR_INVALID_JSON:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The request body is not a valid JSON object (duplicate keys "
                                     "are not allowed).",
                                     NULL};
    case CV_ERR_UNKNOWN_FIELD:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The request body has a field this endpoint does not accept.",
                                     NULL};
    case CV_ERR_MISSING_FIELD:
        return (struct cv_api_error){400, "invalid_request_error", "A required field is missing.",
                                     NULL};
    case CV_ERR_INVALID_TYPE:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A field has the wrong JSON type.", NULL};
    case CV_ERR_INVALID_PAN:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The card number must be 12 to 19 digits and pass the Luhn "
                                     "check.",
                                     NULL};
    case CV_ERR_INVALID_EXPIRY:
        return (struct cv_api_error){
            400, "invalid_request_error",
            "The expiry must be a month 1-12 and a four-digit year, not in "
            "the past and at most 20 years ahead.",
            NULL};
    case CV_ERR_INVALID_CVC:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The security code must be 3 digits (4 for American Express).",
                                     NULL};
    case CV_ERR_INVALID_NAME:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The cardholder name must be 1-128 bytes of printable UTF-8 "
                                     "and must not contain a card number.",
                                     NULL};
    case CV_ERR_BAD_REQUEST:
        return (struct cv_api_error){400, "invalid_request_error", "The request is malformed.",
                                     NULL};
    case CV_ERR_INVALID_IDEMPOTENCY_KEY:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "Idempotency-Key must be 1-255 printable ASCII characters.",
                                     NULL};
    case CV_ERR_KEY_IN_QUERY:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "API keys are accepted only in the Authorization header; this "
                                     "key must be considered exposed and should be rolled.",
                                     NULL};
    case CV_ERR_INVALID_METADATA:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "metadata must be an object of at most 20 keys: each key 1-40 "
                                     "characters of A-Z, a-z, 0-9, '_', '.' or '-', each value a "
                                     "string of at most 500 bytes.",
                                     NULL};
    case CV_ERR_METADATA_CARD_DATA:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "metadata must not hold card data: a key or value reads as a "
                                     "card number or a security code.",
                                     NULL};
    case CV_ERR_INVALID_TTL:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "ttl_seconds must be an integer from 1 to 315360000 (10 "
                                     "years), or null to remove the token's expiry.",
                                     NULL};
    case CV_ERR_INVALID_LIST_QUERY:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The query string has an unknown, repeated or malformed "
                                     "parameter.",
                                     NULL};
    case CV_ERR_INVALID_CURSOR:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "cursor must be a next_cursor value from an earlier list "
                                     "answer.",
                                     NULL};
    case CV_ERR_UNAUTHENTICATED:
        return (struct cv_api_error){401, "authentication_error",
                                     "Provide a valid API key as 'Authorization: Bearer <key>'.",
                                     NULL};
    case CV_ERR_FORBIDDEN:
        return (struct cv_api_error){403, "permission_error",
                                     "This API key does not have the scope this request needs.",
                                     NULL};
    case CV_ERR_NOT_FOUND:
        return (struct cv_api_error){404, "invalid_request_error", "No such token.", NULL};
    case CV_ERR_ROUTE_NOT_FOUND:
        return (struct cv_api_error){404, "invalid_request_error", "No such endpoint.", NULL};
    case CV_ERR_METHOD_NOT_ALLOWED:
        return (struct cv_api_error){405, "invalid_request_error",
                                     "This endpoint does not support this method; see Allow.",
                                     NULL};
    case CV_ERR_IDEMPOTENCY_REUSED:
        return (struct cv_api_error){409, "idempotency_error",
                                     "This Idempotency-Key was used with a different request body.",
                                     NULL};
    case CV_ERR_IDEMPOTENCY_IN_USE:
        return (struct cv_api_error){409, "idempotency_error",
                                     "A request with this Idempotency-Key is still in progress.",
                                     NULL};
    case CV_ERR_TOKEN_DESTROYED:
        return (struct cv_api_error){410, "invalid_request_error",
                                     "This token's data key was destroyed; the card is "
                                     "unrecoverable.",
                                     NULL};
    case CV_ERR_BODY_TOO_LARGE:
        return (struct cv_api_error){413, "invalid_request_error",
                                     "The request body is larger than 8192 bytes.", NULL};
    case CV_ERR_UNSUPPORTED_MEDIA:
        return (struct cv_api_error){415, "invalid_request_error",
                                     "The request body must be sent as application/json.", NULL};
    case CV_ERR_RATE_LIMITED:
        return (struct cv_api_error){429, "rate_limit_error", "Too many requests; see Retry-After.",
                                     NULL};
    case CV_ERR_FRAME_BAD_REQUEST:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The card frame's URL has an unknown, repeated, missing or "
                                     "malformed parameter (see docs/elements.md).",
                                     NULL};
    case CV_ERR_FRAME_KEY_NOT_PUBLISHABLE:
        return (struct cv_api_error){403, "permission_error",
                                     "Only a publishable key (pk_) may be used in a card frame. A "
                                     "secret or detokenize key was exposed in a URL: revoke it.",
                                     NULL};
    case CV_ERR_FRAME_KEY_REFUSED:
        return (struct cv_api_error){
            403, "permission_error",
            "This publishable key is unknown, revoked, or has more than the "
            "tokenize scope.",
            NULL};
    case CV_ERR_FRAME_ORIGIN:
        return (struct cv_api_error){403, "permission_error",
                                     "This page's origin is not on the publishable key's allowed "
                                     "origins (cardvault key origins).",
                                     NULL};
    case CV_ERR_FRAME_NAVIGATION:
        return (struct cv_api_error){403, "permission_error",
                                     "The card frame can only be shown inside an iframe.", NULL};
    case CV_ERR_CROSS_ORIGIN:
        return (struct cv_api_error){
            403, "permission_error",
            "The API does not accept calls from web pages of other origins; "
            "collect cards with the card frame (/elements.js).",
            NULL};
    case CV_ERR_CORS_NOT_SUPPORTED:
        return (struct cv_api_error){
            405, "invalid_request_error",
            "The API answers no CORS preflight: web pages of other origins "
            "cannot call it; collect cards with the card frame "
            "(/elements.js).",
            NULL};
    case CV_ERR_QUOTA_EXCEEDED:
        return (struct cv_api_error){429, "rate_limit_error",
                                     "This API key or origin has used its tokenize quota for now; "
                                     "see Retry-After.",
                                     NULL};
    /* The relay request (docs/relay.md). */
    case CV_ERR_RELAY_PLACEHOLDER_UNKNOWN:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A placeholder is not {{ALIAS.FIELD}} with an alias of "
                                     "\"tokens\" and a field of number, exp_month, exp_year, "
                                     "exp_year2, name, cvc.",
                                     NULL};
    case CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A placeholder opened with {{ is not closed with }}.", NULL};
    case CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "Placeholders are allowed only in the body, and in a JSON "
                                     "body only inside a string.",
                                     NULL};
    case CV_ERR_RELAY_CONTENT_TYPE:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A body with placeholders must be application/json or "
                                     "application/x-www-form-urlencoded.",
                                     NULL};
    case CV_ERR_RELAY_HOLD_REQUIRED:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "The body uses {{ALIAS.cvc}}: send the CardVault-Hold header.",
                                     NULL};
    case CV_ERR_RELAY_HOLD_UNUSED:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A CardVault-Hold header was sent but the body uses no "
                                     "{{ALIAS.cvc}}.",
                                     NULL};
    case CV_ERR_RELAY_HEADER_NOT_ALLOWED:
        return (struct cv_api_error){400, "invalid_request_error",
                                     "A relay header is malformed or one the vault sets itself.",
                                     NULL};
    case CV_ERR_RELAY_DESTINATION_UNKNOWN:
        return (struct cv_api_error){404, "invalid_request_error",
                                     "No such relay destination: the operator's list does not "
                                     "name it.",
                                     NULL};
    case CV_ERR_RELAY_NOT_ALLOWED:
        return (struct cv_api_error){403, "permission_error",
                                     "The relay destination does not allow this method or path.",
                                     NULL};
    case CV_ERR_RELAY_CONNECT:
        return (struct cv_api_error){502, "api_error",
                                     "The relay could not connect to the destination; nothing "
                                     "was sent.",
                                     NULL};
    case CV_ERR_RELAY_TLS:
        return (struct cv_api_error){502, "api_error",
                                     "The destination's TLS could not be verified (certificate, "
                                     "host name, pin or client certificate); nothing was sent.",
                                     NULL};
    case CV_ERR_RELAY_REDIRECT:
        return (struct cv_api_error){502, "api_error",
                                     "The destination answered with a redirect, which the relay "
                                     "never follows.",
                                     NULL};
    case CV_ERR_RELAY_TIMEOUT:
        return (struct cv_api_error){504, "api_error",
                                     "The destination did not answer in time; the request may "
                                     "have reached it.",
                                     NULL};
    case CV_ERR_RELAY_ANSWER_TOO_LARGE:
        return (struct cv_api_error){
            502, "api_error", "The destination's answer is larger than the relay accepts.", NULL};
    case CV_ERR_RELAY_UPSTREAM:
        return (struct cv_api_error){502, "api_error",
                                     "The connection to the destination failed mid-exchange; the "
                                     "request may have reached it.",
                                     NULL};
    case CV_ERR_HOLD_GONE:
        return (struct cv_api_error){409, "invalid_request_error",
                                     "The security-code hold has expired, been used up or is not "
                                     "held here; ask the buyer for the code again.",
                                     NULL};
    /* The write committed on the primary but its standby never confirmed it:
     * it may be lost in a failover. Not a success; the client retries with
     * the same Idempotency-Key (docs/operations.md, synchronous replication). */
    case CV_ERR_COMMIT_UNCONFIRMED:
        return (struct cv_api_error){503, "api_error",
                                     "The write was not confirmed by the database's synchronous "
                                     "standby, so its outcome is unknown; retry with the same "
                                     "Idempotency-Key.",
                                     NULL};
    case CV_ERR_DB_UNAVAILABLE:
    case CV_ERR_SHUTTING_DOWN:
    /* Every hold slot taken: one 503 code has one message (service_unavailable). */
    case CV_ERR_HOLDS_FULL:
        return (struct cv_api_error){503, "api_error",
                                     "The vault is temporarily unavailable; retry later.", NULL};
    default:
        return (struct cv_api_error){500, "api_error", "An internal error occurred.", NULL};
    }
}

struct cv_api_error cv_api_error_of(cv_status st)
{
    struct cv_api_error e = lookup(st);
    if (e.http == 500)
        e.code = "internal_error";
    else if (e.http == 503 && st != CV_ERR_COMMIT_UNCONFIRMED)
        e.code = "service_unavailable";
    else
        e.code = cv_status_name(st);
    return e;
}
