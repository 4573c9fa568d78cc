#ifndef CV_TLS_PAIR_H
#define CV_TLS_PAIR_H

/* The HTTPS certificate and key, checked with OpenSSL before the listener
 * takes them: at start, and on every reload (SIGHUP). A pair that fails is
 * refused with a one-line reason and the listener keeps what it has. */

#include <stddef.h>
#include <time.h>

#include "cardvault/status.h"

struct cv_tls_pair_info {
    char subject[256];    /* the leaf's subject, one line (RFC 2253) */
    char fingerprint[65]; /* SHA-256 of the leaf, lowercase hex */
    time_t not_after;     /* the leaf's expiry, Unix time */
};

/* cert_pem: the leaf first, then any intermediates; key_pem: its private
 * key. CV_OK when both parse, the key is the leaf's, and the leaf is valid
 * at now; CV_ERR_CONFIG with the reason in why otherwise (never key
 * material). */
CV_MUST_USE cv_status cv_tls_pair_check(const char *cert_pem, size_t cert_len, const char *key_pem,
                                        size_t key_len, time_t now, struct cv_tls_pair_info *info,
                                        char *why, size_t why_len);

#endif
