/* conn_deadline.c: the per-request receive deadline (see conn_deadline.h).
 * One mutex guards the list of clocks; the HTTP threads take it for a few
 * instructions per request, the sweeper once per tick. The sweeper only
 * ever calls shutdown(2) on a descriptor that is still registered, under the
 * mutex, so it can never touch a descriptor number the kernel has already
 * handed to someone else. It must never read from or write to a socket. */
#include "cardvault/conn_deadline.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "cardvault/secbuf.h"

#define TICK_MAX_MS 100
#define TICK_MIN_MS 10

struct cv_conn_clock {
    struct cv_conn_deadline *owner;
    struct cv_conn_clock *prev, *next;
    int fd;
    bool running;
    bool expired;
    uint64_t started_ms;
};

struct cv_conn_deadline {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    struct cv_conn_clock *head;
    struct cv_metrics *metrics;
    unsigned deadline_ms;
    unsigned tick_ms;
    bool stopping;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One pass over the clocks; the caller holds the lock. */
static void sweep(struct cv_conn_deadline *d)
{
    uint64_t now = now_ms();
    for (struct cv_conn_clock *c = d->head; c != NULL; c = c->next) {
        if (!c->running || c->expired || now - c->started_ms < d->deadline_ms)
            continue;
        /* Both directions: the library's next poll sees the peer gone and
         * closes the connection on its own thread, freeing the slot. */
        (void)shutdown(c->fd, SHUT_RDWR);
        c->expired = true;
        cv_metrics_count_deadline_close(d->metrics);
    }
}

static void *run(void *arg)
{
    struct cv_conn_deadline *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        sweep(d);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)d->tick_ms * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&d->wake, &d->lock, &until);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

cv_status cv_conn_deadline_start(unsigned deadline_ms, struct cv_metrics *metrics,
                                 struct cv_conn_deadline **out)
{
    struct cv_conn_deadline *d = cv_xcalloc(1, sizeof(*d));
    d->deadline_ms = deadline_ms > 0 ? deadline_ms : 1;
    d->metrics = metrics;
    /* A tenth of the deadline, within 10-100 ms: a connection lives at most
     * one tick past its deadline. */
    d->tick_ms = d->deadline_ms / 10;
    if (d->tick_ms > TICK_MAX_MS)
        d->tick_ms = TICK_MAX_MS;
    if (d->tick_ms < TICK_MIN_MS)
        d->tick_ms = TICK_MIN_MS;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&d->thread, NULL, run, d) != 0) {
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->wake);
        free(d);
        return CV_ERR_INTERNAL;
    }
    *out = d;
    return CV_OK;
}

void cv_conn_deadline_stop(struct cv_conn_deadline *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    while (d->head != NULL) {
        struct cv_conn_clock *c = d->head;
        d->head = c->next;
        free(c);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
}

struct cv_conn_clock *cv_conn_deadline_watch(struct cv_conn_deadline *d, int fd)
{
    struct cv_conn_clock *c = cv_xcalloc(1, sizeof(*c));
    c->owner = d;
    c->fd = fd;
    c->running = true;
    c->started_ms = now_ms();
    pthread_mutex_lock(&d->lock);
    c->next = d->head;
    if (d->head != NULL)
        d->head->prev = c;
    d->head = c;
    pthread_mutex_unlock(&d->lock);
    return c;
}

void cv_conn_clock_pause(struct cv_conn_clock *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->owner->lock);
    c->running = false;
    pthread_mutex_unlock(&c->owner->lock);
}

void cv_conn_clock_restart(struct cv_conn_clock *c)
{
    if (c == NULL)
        return;
    uint64_t now = now_ms();
    pthread_mutex_lock(&c->owner->lock);
    c->running = true;
    c->started_ms = now;
    pthread_mutex_unlock(&c->owner->lock);
}

bool cv_conn_clock_expired(struct cv_conn_clock *c)
{
    if (c == NULL)
        return false;
    pthread_mutex_lock(&c->owner->lock);
    bool expired = c->expired;
    pthread_mutex_unlock(&c->owner->lock);
    return expired;
}

void cv_conn_clock_forget(struct cv_conn_clock *c)
{
    if (c == NULL)
        return;
    struct cv_conn_deadline *d = c->owner;
    pthread_mutex_lock(&d->lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        d->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&d->lock);
    free(c);
}
