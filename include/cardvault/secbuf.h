#ifndef CV_SECBUF_H
#define CV_SECBUF_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* A heap buffer for secrets (PANs, keys, plaintext). It comes from OpenSSL's
 * secure heap when that is set up (locked, excluded from core dumps) and is
 * wiped over its whole capacity before it is released. */
struct cv_secbuf {
    unsigned char *data;
    size_t len;
    size_t cap;
};

/* Creates the locked, dump-excluded heap secure buffers come from (call once,
 * before threads start). CV_ERR_CONFIG if the OS refuses. *locked is false
 * when the heap is ready but mlock was refused (RLIMIT_MEMLOCK): still
 * guarded and excluded from core dumps, but it may be swapped out. This
 * module does not log (log.c builds on it): the caller warns. */
CV_MUST_USE cv_status cv_secbuf_init_secure_heap(size_t bytes, bool *locked);
/* Allocates cap bytes of zeroed secure memory. When the secure heap is not
 * set up or is exhausted, the bytes come from the ordinary heap instead (still
 * wiped on free; counted by cv_secbuf_fallbacks): a full secure heap must not
 * abort the vault. Aborts only when no memory at all is left. Free with
 * cv_secbuf_free. */
struct cv_secbuf *cv_secbuf_new(size_t cap);
/* How many buffers came from the ordinary heap although the secure heap was
 * set up (for metrics and tests). */
unsigned long long cv_secbuf_fallbacks(void);
/* Wipes and frees; accepts NULL. */
void cv_secbuf_free(struct cv_secbuf *b);
/* Replaces the content with a copy of src (len <= cap), or CV_ERR_INTERNAL. */
CV_MUST_USE cv_status cv_secbuf_set(struct cv_secbuf *b, const void *src, size_t len);

/* Wipes any caller memory that held a secret. */
void cv_wipe(void *p, size_t len);
/* Overwrites CV_WIPE_STACK_BYTES of the calling thread's stack just below the
 * caller's frame: where the frames of the functions it called (a JSON
 * parser, a cipher, a formatter) left copies of what they worked on. Call it
 * after a call tree that handled card data or a key. */
#define CV_WIPE_STACK_BYTES (32 * 1024)
void cv_wipe_stack(void);
/* Constant-time equality of two equal-length buffers. */
bool cv_ct_equal(const void *a, const void *b, size_t len);

/* malloc/calloc that log and abort() on out-of-memory. */
void *cv_xmalloc(size_t n);
void *cv_xcalloc(size_t count, size_t size);
char *cv_xstrdup(const char *s);

/* Fills buf with bytes from the OpenSSL CSPRNG; CV_ERR_CRYPTO if it cannot. */
CV_MUST_USE cv_status cv_random_bytes(void *buf, size_t len);

/* Marks the process non-dumpable and sets RLIMIT_CORE to 0 (production mode). */
CV_MUST_USE cv_status cv_secbuf_harden_process(void);

/* The version of the OpenSSL library the process runs with (not the one it
 * was compiled against), e.g. "3.0.11". Static storage; never NULL. */
const char *cv_secbuf_openssl_version(void);

#endif
