/* test_conn_deadline.c: the request deadline on a socket pair. A running
 * clock past the deadline gets its socket shut down (the peer reads EOF) and
 * is counted; a paused clock is left alone however long it waits; a
 * restarted clock gets the whole deadline again; forgetting a clock before
 * its deadline means its descriptor is never touched. */
#include "cardvault/conn_deadline.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define DEADLINE_MS 100

/* True when the peer of sv[0] sees it shut down (EOF), within wait_ms. */
static bool peer_sees_eof(int fd, unsigned wait_ms)
{
    struct timeval tv = {0, (suseconds_t)wait_ms * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    return recv(fd, &c, 1, 0) == 0;
}

static void running_clock_past_the_deadline_is_shut_down(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cv_metrics *m = cv_metrics_new();
    struct cv_conn_deadline *d = NULL;
    CHECK_EQ_INT(cv_conn_deadline_start(DEADLINE_MS, m, &d), CV_OK);
    struct cv_conn_clock *c = cv_conn_deadline_watch(d, sv[0]);
    CHECK(!peer_sees_eof(sv[1], DEADLINE_MS / 2)); /* not before */
    CHECK(peer_sees_eof(sv[1], 3 * DEADLINE_MS));
    CHECK(cv_conn_clock_expired(c));
    size_t len = 0;
    struct cv_metrics_gauges g = {0};
    char *text = cv_metrics_render(m, &g, &len);
    CHECK(strstr(text, "\ncardvault_http_deadline_closed_total 1\n") != NULL);
    free(text);
    cv_conn_clock_forget(c);
    cv_conn_deadline_stop(d);
    cv_metrics_free(m);
    close(sv[0]);
    close(sv[1]);
}

static void paused_clock_is_left_alone(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cv_conn_deadline *d = NULL;
    CHECK_EQ_INT(cv_conn_deadline_start(DEADLINE_MS, NULL, &d), CV_OK);
    struct cv_conn_clock *c = cv_conn_deadline_watch(d, sv[0]);
    cv_conn_clock_pause(c); /* the whole request arrived: the handler may take long */
    CHECK(!peer_sees_eof(sv[1], 3 * DEADLINE_MS));
    CHECK(!cv_conn_clock_expired(c));
    /* Answered: the next request has the whole deadline, then no more. */
    cv_conn_clock_restart(c);
    CHECK(!peer_sees_eof(sv[1], DEADLINE_MS / 2));
    CHECK(peer_sees_eof(sv[1], 3 * DEADLINE_MS));
    cv_conn_clock_forget(c);
    cv_conn_deadline_stop(d);
    close(sv[0]);
    close(sv[1]);
}

static void forgotten_clock_never_touches_its_descriptor(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct cv_conn_deadline *d = NULL;
    CHECK_EQ_INT(cv_conn_deadline_start(DEADLINE_MS, NULL, &d), CV_OK);
    struct cv_conn_clock *a = cv_conn_deadline_watch(d, sv[0]);
    struct cv_conn_clock *b = cv_conn_deadline_watch(d, sv[0]);
    cv_conn_clock_forget(a); /* closed by the HTTP layer before its deadline */
    cv_conn_clock_pause(b);
    CHECK(!peer_sees_eof(sv[1], 3 * DEADLINE_MS));
    cv_conn_clock_forget(b);
    /* NULL is accepted everywhere a clock is. */
    cv_conn_clock_pause(NULL);
    cv_conn_clock_restart(NULL);
    cv_conn_clock_forget(NULL);
    CHECK(!cv_conn_clock_expired(NULL));
    cv_conn_deadline_stop(d);
    cv_conn_deadline_stop(NULL);
    close(sv[0]);
    close(sv[1]);
}

int main(void)
{
    RUN(running_clock_past_the_deadline_is_shut_down);
    RUN(paused_clock_is_left_alone);
    RUN(forgotten_clock_never_touches_its_descriptor);
    return check_summary("conn_deadline");
}
