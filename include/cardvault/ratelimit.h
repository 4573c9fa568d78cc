#ifndef CV_RATELIMIT_H
#define CV_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

/* Token buckets keyed by short strings (an API key prefix, a client
 * address). A fixed table: memory does not grow with the number of keys an
 * attacker can invent; when it is full, the least recently used bucket of a
 * probe window is recycled. Thread-safe (striped locks). */

struct cv_ratelimit;

/* rate_per_s tokens per second, up to burst. rate_per_s 0 disables: take always succeeds. */
struct cv_ratelimit *cv_ratelimit_new(double rate_per_s, double burst, size_t slots);
void cv_ratelimit_free(struct cv_ratelimit *rl);
/* Takes one token when consume is true (otherwise only checks that one is
 * there). False when the bucket is empty; *retry_after_s is then the whole
 * seconds until a token is available (at least 1). */
bool cv_ratelimit_take(struct cv_ratelimit *rl, const char *key, bool consume,
                       unsigned *retry_after_s);

#endif
