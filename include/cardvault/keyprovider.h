#ifndef CV_KEYPROVIDER_H
#define CV_KEYPROVIDER_H

#include <stddef.h>

#include "cardvault/secbuf.h"
#include "cardvault/status.h"

/* KEK custody behind a small vtable. A provider wraps and unwraps data keys
 * (AES-256 key wrap with padding, RFC 5649) and computes a key check value;
 * where the KEK lives (a 0600 file now, a PKCS#11 token later) is its own
 * business. The KEK itself never leaves its provider. */

#define CV_KCV_BYTES 8

struct cv_keyprovider;

struct cv_keyprovider_ops {
    const char *name; /* "file", "pkcs11" */
    cv_status (*wrap)(struct cv_keyprovider *kp, const struct cv_secbuf *key, unsigned char **out,
                      size_t *out_len);
    cv_status (*unwrap)(struct cv_keyprovider *kp, const unsigned char *in, size_t in_len,
                        struct cv_secbuf **out);
    cv_status (*check_value)(struct cv_keyprovider *kp, unsigned char out[CV_KCV_BYTES]);
    void (*destroy)(struct cv_keyprovider *kp);
};

struct cv_keyprovider {
    const struct cv_keyprovider_ops *ops;
    void *state;
};

/* Opens a file KEK: 32 bytes as 64 hex characters or 44 base64 characters
 * (surrounding whitespace ignored), read under secret_file.h's rule (a link
 * is followed; the file reached must be regular and owner-only). Refuses
 * anything else with a one-line reason in why. */
CV_MUST_USE cv_status cv_keyprovider_file_open(const char *path, struct cv_keyprovider **out,
                                               char *why, size_t why_len);

/* Opens a KEK held in a PKCS#11 token: loads module_path, logs in to the token
 * labelled token_label with the PIN in pin_file (read under secret_file.h's
 * rule: owner-only), and finds the AES-256 secret key labelled key_label, which
 * must be sensitive and unextractable. Self-tests RFC 5649 wrapping in the
 * token; wraps keys of a multiple of 8 bytes. CV_ERR_CONFIG with a one-line
 * reason in why; free with cv_keyprovider_free. */
CV_MUST_USE cv_status cv_keyprovider_pkcs11_open(const char *module_path, const char *token_label,
                                                 const char *key_label, const char *pin_file,
                                                 struct cv_keyprovider **out, char *why,
                                                 size_t why_len);

/* Wraps key under the KEK; *out is heap (free()), not secret. */
CV_MUST_USE cv_status cv_keyprovider_wrap(struct cv_keyprovider *kp, const struct cv_secbuf *key,
                                          unsigned char **out, size_t *out_len);
/* Unwraps into a new secure buffer; CV_ERR_INTEGRITY when the wrapping does
 * not verify (wrong KEK or tampered). */
CV_MUST_USE cv_status cv_keyprovider_unwrap(struct cv_keyprovider *kp, const unsigned char *in,
                                            size_t in_len, struct cv_secbuf **out);
/* The KEK's check value: first 8 bytes of AES-256-ECB(KEK, 0^128). */
CV_MUST_USE cv_status cv_keyprovider_check_value(struct cv_keyprovider *kp,
                                                 unsigned char out[CV_KCV_BYTES]);
const char *cv_keyprovider_name(const struct cv_keyprovider *kp);
/* Wipes the KEK and frees; accepts NULL. */
void cv_keyprovider_free(struct cv_keyprovider *kp);

/* AES-256-WRAP-PAD and KCV with a KEK held in memory: shared by providers
 * that load the key into the process (file) and by tests. */
CV_MUST_USE cv_status cv_kek_wrap_raw(const struct cv_secbuf *kek, const struct cv_secbuf *key,
                                      unsigned char **out, size_t *out_len);
CV_MUST_USE cv_status cv_kek_unwrap_raw(const struct cv_secbuf *kek, const unsigned char *in,
                                        size_t in_len, struct cv_secbuf **out);
CV_MUST_USE cv_status cv_kek_check_value_raw(const struct cv_secbuf *kek,
                                             unsigned char out[CV_KCV_BYTES]);
/* A provider over a KEK already in memory (takes ownership of kek). */
struct cv_keyprovider *cv_keyprovider_memory_take(struct cv_secbuf *kek);

#endif
