#ifndef CV_AUTH_H
#define CV_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"
#include "cardvault/store.h"
#include "cardvault/token.h"

/* API keys -> merchant and scopes. Keys are 256-bit CSPRNG strings; only
 * their SHA-256 and a 12-character display prefix are stored. Lookups go
 * through an in-memory table refreshed from the database every
 * auth_refresh_ms, so a request costs no query and a revocation takes effect
 * within one refresh (default 1 s, at most 5 s). Hashes are compared in
 * constant time. */

enum cv_scope {
    CV_SCOPE_TOKENIZE = 1u << 0,
    CV_SCOPE_READ = 1u << 1,
    CV_SCOPE_DELETE = 1u << 2,
    CV_SCOPE_DETOKENIZE = 1u << 3,
};
#define CV_SCOPES_ALL 0xfu

struct cv_principal {
    char merchant_id[CV_MERCHANT_ID_LEN + 1];
    char key_prefix[CV_APIKEY_PREFIX_LEN + 1];
    unsigned scopes;
};

struct cv_auth;

/* Loads every key now, then refreshes in a background thread. */
CV_MUST_USE cv_status cv_auth_open(struct cv_store *store, unsigned refresh_ms,
                                   struct cv_auth **out);
void cv_auth_close(struct cv_auth *auth);
/* Resolves an Authorization header value ("Bearer <key>"). CV_ERR_UNAUTHENTICATED
 * for a missing, malformed, unknown or revoked key. */
CV_MUST_USE cv_status cv_auth_authenticate(struct cv_auth *auth, const char *authorization,
                                           struct cv_principal *out);
/* Pure: extracts the key from "Bearer <key>" (scheme case-insensitive) and
 * checks its format. CV_ERR_UNAUTHENTICATED when absent or malformed. */
CV_MUST_USE cv_status cv_auth_parse_bearer(const char *authorization, const char **key,
                                           size_t *len);
/* Re-reads changed keys now (tests and the refresher). */
CV_MUST_USE cv_status cv_auth_refresh(struct cv_auth *auth);

/* "tokenize,read" -> bit set; CV_ERR_BAD_REQUEST on an unknown or empty scope. */
CV_MUST_USE cv_status cv_auth_parse_scopes(const char *csv, unsigned *scopes);
/* Bit set -> "tokenize,read,..." in canonical order, into out[64]. */
void cv_auth_format_scopes(unsigned scopes, char out[64]);
/* Creates a key for merchant_id: writes the full key (shown once) and its prefix. */
CV_MUST_USE cv_status cv_auth_create_key(struct cv_store *store, const char *merchant_id,
                                         unsigned scopes, char key[CV_APIKEY_LEN + 1],
                                         char prefix[CV_APIKEY_PREFIX_LEN + 1]);

#endif
