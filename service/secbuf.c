/* secbuf.c: memory that held a secret. Every buffer that held a PAN, a CVC,
 * a key or a plaintext is wiped with OPENSSL_cleanse before it goes back to
 * the allocator; secure buffers are also locked in RAM and kept out of core
 * dumps. This module must never log the content of what it holds. */
#include "cardvault/secbuf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

static void die_oom(size_t n)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"event\":\"out_of_memory\",\"bytes\":%zu}\n", n);
    abort();
}

void *cv_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL)
        die_oom(n);
    return p;
}

void *cv_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
    if (p == NULL)
        die_oom(count * size);
    return p;
}

char *cv_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cv_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void cv_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        OPENSSL_cleanse(p, len);
}

/* Not inlined, so that its array lies below the caller's frame, where the
 * callee frames were, and not inside the caller's own frame. A thread's
 * stack is cached by glibc and reused by the next thread: nothing else ever
 * clears it. 32 KiB is several times what a request's handler path uses
 * below http_server.c's callback and costs a few microseconds. */
__attribute__((noinline)) void cv_wipe_stack(void)
{
    unsigned char area[CV_WIPE_STACK_BYTES];
    OPENSSL_cleanse(area, sizeof(area));
}

bool cv_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

cv_status cv_random_bytes(void *buf, size_t len)
{
    if (len > (size_t)INT32_MAX || RAND_bytes(buf, (int)len) != 1)
        return CV_ERR_CRYPTO;
    return CV_OK;
}

cv_status cv_secbuf_init_secure_heap(size_t bytes, bool *locked)
{
    *locked = true;
    /* OpenSSL's secure heap is mmap'd, mlock'd, guarded and MADV_DONTDUMP:
     * exactly the home unwrapped DEKs and card plaintext need. It must be
     * created before any thread allocates from it. */
    if (CRYPTO_secure_malloc_initialized())
        return CV_OK;
    /* 1: ready; 2: ready but mlock was refused (RLIMIT_MEMLOCK): still
     * guarded and excluded from core dumps, so usable. */
    int rc = CRYPTO_secure_malloc_init(bytes, 16);
    *locked = rc == 1;
    return rc == 1 || rc == 2 ? CV_OK : CV_ERR_CONFIG;
}

static atomic_ullong fallbacks;

unsigned long long cv_secbuf_fallbacks(void)
{
    return atomic_load(&fallbacks);
}

struct cv_secbuf *cv_secbuf_new(size_t cap)
{
    struct cv_secbuf *b = cv_xcalloc(1, sizeof(*b));
    b->cap = cap == 0 ? 1 : cap;
    /* Without a secure heap (unit tests) OpenSSL serves this from the
     * ordinary heap itself. With one that is full it returns NULL: then take
     * the ordinary heap too rather than abort the vault. Either way the free
     * below wipes (OPENSSL_secure_clear_free cleanses a pointer that is not
     * its own before it frees it). */
    b->data = OPENSSL_secure_zalloc(b->cap);
    if (b->data == NULL) {
        atomic_fetch_add(&fallbacks, 1);
        b->data = OPENSSL_zalloc(b->cap);
    }
    if (b->data == NULL)
        die_oom(b->cap);
    return b;
}

void cv_secbuf_free(struct cv_secbuf *b)
{
    if (b == NULL)
        return;
    OPENSSL_secure_clear_free(b->data, b->cap);
    free(b);
}

cv_status cv_secbuf_set(struct cv_secbuf *b, const void *src, size_t len)
{
    if (len > b->cap)
        return CV_ERR_INTERNAL;
    OPENSSL_cleanse(b->data, b->cap);
    memcpy(b->data, src, len);
    b->len = len;
    return CV_OK;
}

cv_status cv_secbuf_harden_process(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0)
        return CV_ERR_CONFIG;
    /* Non-dumpable: no core file, and /proc/PID/mem and ptrace attach are
     * refused to other processes of the same user. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return CV_ERR_CONFIG;
    return CV_OK;
}

const char *cv_secbuf_openssl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION_STRING);
}
