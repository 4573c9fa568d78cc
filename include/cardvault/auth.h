#ifndef CV_AUTH_H
#define CV_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/origin.h"
#include "cardvault/status.h"
#include "cardvault/store.h"
#include "cardvault/token.h"

/* API keys -> merchant and scopes. Keys are 256-bit CSPRNG strings; only
 * their SHA-256 and a 12-character display prefix are stored. Lookups go
 * through an in-memory table refreshed from the database every
 * auth_refresh_ms, so a request costs no query and a revocation takes effect
 * within one refresh (default 1 s, at most 5 s). While refreshes fail the
 * table keeps serving for a bounded time (default max(30 s, 10 refresh
 * intervals)); past that every key is refused with CV_ERR_DB_UNAVAILABLE
 * until a refresh succeeds: revocation fails closed. Hashes are compared in
 * constant time. */

enum cv_scope {
    CV_SCOPE_TOKENIZE = 1u << 0,
    CV_SCOPE_READ = 1u << 1,
    CV_SCOPE_DELETE = 1u << 2,
    CV_SCOPE_DETOKENIZE = 1u << 3,
    /* POST /v1/relay/{destination}; a key with it has no other scope (rk_) */
    CV_SCOPE_RELAY = 1u << 4,
};
#define CV_SCOPES_ALL 0x1fu

struct cv_principal {
    char merchant_id[CV_MERCHANT_ID_LEN + 1];
    char key_prefix[CV_APIKEY_PREFIX_LEN + 1];
    unsigned scopes;
    /* The web origins a publishable key may be framed by (origin.h: a
     * comma-joined list of normalized origins; "" for none). */
    char origins[CV_ORIGIN_LIST_MAX + 1];
};

struct cv_auth;

/* Where the key table comes from, and the clock that dates each refresh.
 * Production reads the store (cv_auth_open); tests pass a fake. */
struct cv_auth_source {
    /* Calls fn for every key changed at or after since_us (microseconds since
     * the epoch) and sets *max_changed_us to the newest change seen; any
     * status but CV_OK counts as a failed refresh. */
    cv_status (*scan)(void *ctx, int64_t since_us, int64_t *max_changed_us,
                      void (*fn)(void *fn_ctx, const char *merchant_id, const char *prefix,
                                 const unsigned char hash[32], const char *scopes,
                                 const char *origins, bool revoked),
                      void *fn_ctx);
    /* Monotonic milliseconds; NULL: CLOCK_MONOTONIC. */
    int64_t (*now_ms)(void *ctx);
    void *ctx;
};

/* Loads every key now, then refreshes from store every refresh_ms in a
 * background thread. */
CV_MUST_USE cv_status cv_auth_open(struct cv_store *store, unsigned refresh_ms,
                                   struct cv_auth **out);
/* The same with an explicit staleness bound (CARDVAULT_AUTH_STALE_MAX_MS;
 * 0: the default, see cv_auth_stale_max_ms). */
CV_MUST_USE cv_status cv_auth_open_bounded(struct cv_store *store, unsigned refresh_ms,
                                           unsigned stale_max_ms, struct cv_auth **out);
/* The same over any source (copied), with no background thread when
 * background is false: the caller drives cv_auth_refresh (tests). */
CV_MUST_USE cv_status cv_auth_open_source(const struct cv_auth_source *src, unsigned refresh_ms,
                                          unsigned stale_max_ms, bool background,
                                          struct cv_auth **out);
/* The bound in effect: configured_ms if not 0, else max(30 s, 10 x refresh_ms). */
unsigned cv_auth_stale_max_ms(unsigned refresh_ms, unsigned configured_ms);
void cv_auth_close(struct cv_auth *auth);
/* Resolves an Authorization header value ("Bearer <key>"). CV_ERR_UNAUTHENTICATED
 * for a missing, malformed, unknown or revoked key; CV_ERR_DB_UNAVAILABLE for
 * any well-formed key while the table is stale (no good refresh for longer
 * than the bound: revocations might be missing), until a refresh succeeds. */
CV_MUST_USE cv_status cv_auth_authenticate(struct cv_auth *auth, const char *authorization,
                                           struct cv_principal *out);
/* The same for a bare key (the card frame's `key` query parameter): key is
 * len bytes, not necessarily NUL-terminated. */
CV_MUST_USE cv_status cv_auth_authenticate_key(struct cv_auth *auth, const char *key, size_t len,
                                               struct cv_principal *out);
/* Pure: extracts the key from "Bearer <key>" (scheme case-insensitive) and
 * checks its format. CV_ERR_UNAUTHENTICATED when absent or malformed. */
CV_MUST_USE cv_status cv_auth_parse_bearer(const char *authorization, const char **key,
                                           size_t *len);
/* True while keys are being refused because no refresh succeeded within the
 * bound (for a gauge or a readiness check). */
bool cv_auth_is_stale(struct cv_auth *auth);
/* Re-reads changed keys now (tests and the refresher). */
CV_MUST_USE cv_status cv_auth_refresh(struct cv_auth *auth);

/* "tokenize,read" -> bit set; CV_ERR_BAD_REQUEST on an unknown or empty scope. */
CV_MUST_USE cv_status cv_auth_parse_scopes(const char *csv, unsigned *scopes);
/* Bit set -> "tokenize,read,..." in canonical order, into out[64]. */
void cv_auth_format_scopes(unsigned scopes, char out[64]);
/* Creates a key for merchant_id: writes the full key (shown once) and its
 * prefix. origins (a normalized comma list from cv_origin_list_parse, or
 * NULL/"" for none) is allowed only when scopes is exactly tokenize, and the
 * relay scope only alone (an rk_ key): CV_ERR_BAD_REQUEST otherwise. */
CV_MUST_USE cv_status cv_auth_create_key(struct cv_store *store, const char *merchant_id,
                                         unsigned scopes, const char *origins,
                                         char key[CV_APIKEY_LEN + 1],
                                         char prefix[CV_APIKEY_PREFIX_LEN + 1]);

#endif
