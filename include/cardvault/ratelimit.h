#ifndef CV_RATELIMIT_H
#define CV_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

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

/* The per-client-address budget of failed authentications, applied to one
 * outcome auth_st of cv_auth_authenticate. Only failures count, and only
 * failures are throttled: CV_OK passes untouched (a valid key is never
 * refused because others failed from the same address, which behind a
 * proxy is every client); CV_ERR_UNAUTHENTICATED takes a token and stays
 * CV_ERR_UNAUTHENTICATED (401), or becomes CV_ERR_RATE_LIMITED (429, with
 * *retry_after_s) when the bucket is empty; any other status (a stale key
 * cache's CV_ERR_DB_UNAVAILABLE, an internal error) is the vault's fault,
 * not the client's: returned as is, bucket untouched. */
CV_MUST_USE cv_status cv_ratelimit_auth_outcome(struct cv_ratelimit *failures, const char *client,
                                                cv_status auth_st, unsigned *retry_after_s);

#endif
