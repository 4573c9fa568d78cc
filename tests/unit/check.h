#ifndef CV_TEST_CHECK_H
#define CV_TEST_CHECK_H

/* A minimal test harness: CHECK records a failure and continues; RUN runs one
 * test function; check_summary prints "N passed, N failed" and returns the
 * exit code. Each test binary is one module's tests. */

#include <stdio.h>

static int check_failed_in_test;
static int check_tests_passed;
static int check_tests_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            check_failed_in_test = 1;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, #a, #b, \
                    check_a_, check_b_);                                                           \
            check_failed_in_test = 1;                                                              \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        check_failed_in_test = 0;                                                                  \
        fn();                                                                                      \
        if (check_failed_in_test) {                                                                \
            check_tests_failed++;                                                                  \
            fprintf(stderr, "not ok - %s\n", #fn);                                                 \
        } else {                                                                                   \
            check_tests_passed++;                                                                  \
        }                                                                                          \
    } while (0)

static inline int check_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, check_tests_passed, check_tests_failed);
    return check_tests_failed == 0 ? 0 : 1;
}

#endif
