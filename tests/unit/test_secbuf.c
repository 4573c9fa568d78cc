/* test_secbuf.c: secbuf.c's secret buffers and helpers: a new buffer is
 * zeroed, set copies within the capacity and refuses beyond it, wipe zeroes,
 * the constant-time comparison agrees with memcmp, and the CSPRNG fills. */
#include "cardvault/secbuf.h"

#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "check.h"

static int all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != 0)
            return 0;
    return 1;
}

static void new_buffer_is_zeroed_and_empty(void)
{
    struct cv_secbuf *b = cv_secbuf_new(64);
    CHECK(b != NULL && b->data != NULL);
    CHECK_EQ_INT(b->len, 0);
    CHECK_EQ_INT(b->cap, 64);
    CHECK(all_zero(b->data, b->cap));
    cv_secbuf_free(b);
    cv_secbuf_free(NULL);
}

static void set_copies_within_capacity_and_refuses_beyond(void)
{
    struct cv_secbuf *b = cv_secbuf_new(8);
    CHECK(cv_secbuf_set(b, "abcdefgh", 8) == CV_OK);
    CHECK_EQ_INT(b->len, 8);
    CHECK(memcmp(b->data, "abcdefgh", 8) == 0);
    CHECK(cv_secbuf_set(b, "xy", 2) == CV_OK);
    CHECK_EQ_INT(b->len, 2);
    CHECK(memcmp(b->data, "xy", 2) == 0);
    CHECK(cv_secbuf_set(b, "123456789", 9) == CV_ERR_INTERNAL);
    cv_secbuf_free(b);
}

static void wipe_zeroes(void)
{
    unsigned char k[32];
    memset(k, 0xA5, sizeof(k));
    cv_wipe(k, sizeof(k));
    CHECK(all_zero(k, sizeof(k)));
    cv_wipe(NULL, 0);
}

static void ct_equal_agrees_with_memcmp(void)
{
    unsigned char a[16], b[16];
    memset(a, 7, sizeof(a));
    memcpy(b, a, sizeof(b));
    CHECK(cv_ct_equal(a, b, sizeof(a)));
    CHECK(cv_ct_equal(a, b, 0));
    b[15] ^= 1;
    CHECK(!cv_ct_equal(a, b, sizeof(a)));
    CHECK(cv_ct_equal(a, b, 15));
    b[15] ^= 1;
    b[0] ^= 0x80;
    CHECK(!cv_ct_equal(a, b, sizeof(a)));
}

static void random_bytes_fill(void)
{
    unsigned char r1[32] = {0}, r2[32] = {0};
    CHECK(cv_random_bytes(r1, sizeof(r1)) == CV_OK);
    CHECK(cv_random_bytes(r2, sizeof(r2)) == CV_OK);
    CHECK(!all_zero(r1, sizeof(r1)));
    CHECK(memcmp(r1, r2, sizeof(r1)) != 0);
}

static void xstrdup_copies(void)
{
    char *s = cv_xstrdup("merchant");
    CHECK(s != NULL && strcmp(s, "merchant") == 0);
    free(s);
    int *z = cv_xcalloc(4, sizeof(int));
    CHECK(all_zero(z, 4 * sizeof(int)));
    free(z);
}

/* An exhausted secure heap must not abort the process (a request whose
 * fields do not fit would otherwise kill the vault): the buffer comes from
 * the ordinary heap, is still wiped on free, and the fallback is counted. */
static void exhausted_secure_heap_falls_back_to_the_heap(void)
{
    bool locked = false;
    CHECK_EQ_INT(cv_secbuf_init_secure_heap(4096, &locked), CV_OK);
    unsigned long long before = cv_secbuf_fallbacks();
    struct cv_secbuf *b[4];
    for (size_t i = 0; i < 4; i++) {
        b[i] = cv_secbuf_new(2048);
        CHECK(b[i] != NULL && b[i]->data != NULL && b[i]->cap == 2048);
        CHECK_EQ_INT(cv_secbuf_set(b[i], "4242424242424242", 16), CV_OK);
    }
    CHECK(cv_secbuf_fallbacks() > before);
    for (size_t i = 0; i < 4; i++)
        cv_secbuf_free(b[i]);
}

int main(void)
{
    RUN(new_buffer_is_zeroed_and_empty);
    RUN(set_copies_within_capacity_and_refuses_beyond);
    RUN(wipe_zeroes);
    RUN(ct_equal_agrees_with_memcmp);
    RUN(random_bytes_fill);
    RUN(xstrdup_copies);
    /* last: it sets up the secure heap for the rest of the process */
    RUN(exhausted_secure_heap_falls_back_to_the_heap);
    return check_summary("secbuf");
}
