#ifndef CV_CONN_DEADLINE_H
#define CV_CONN_DEADLINE_H

#include <stdbool.h>

#include "cardvault/metrics.h"
#include "cardvault/status.h"

/* An absolute deadline for receiving each HTTP request. An idle timeout
 * only catches a silent client: one that trickles a header byte every few
 * seconds keeps its connection, and a few addresses doing so fill every
 * slot. Here each connection has a clock that starts when the connection is
 * accepted and again when a response has been sent (the next request may
 * follow); it pauses once the whole request has arrived (the handler and the
 * response do not count). A sweeper thread shuts down the socket of every
 * connection whose clock has run past the deadline, which makes the HTTP
 * library see the peer gone and release the connection on its own thread.
 *
 * The registry never closes a descriptor itself: it only calls shutdown(2)
 * on descriptors still registered, and the HTTP layer unregisters a
 * connection (cv_conn_clock_forget) before its descriptor is closed. */

struct cv_conn_deadline; /* the registry and its sweeper thread */
struct cv_conn_clock;    /* one connection's clock */

/* Starts the sweeper. deadline_ms > 0. metrics (may be NULL) counts every
 * connection closed at the deadline. CV_ERR_INTERNAL when the thread cannot
 * start. */
CV_MUST_USE cv_status cv_conn_deadline_start(unsigned deadline_ms, struct cv_metrics *metrics,
                                             struct cv_conn_deadline **out);
/* Stops and joins the sweeper, frees clocks still registered; accepts NULL. */
void cv_conn_deadline_stop(struct cv_conn_deadline *d);

/* Registers a new connection's socket; its clock runs from now. Freed by
 * cv_conn_clock_forget. */
struct cv_conn_clock *cv_conn_deadline_watch(struct cv_conn_deadline *d, int fd);
/* The whole request has arrived: stop the clock. Accepts NULL. */
void cv_conn_clock_pause(struct cv_conn_clock *c);
/* A response has been sent: the clock runs again for the next request.
 * Accepts NULL. */
void cv_conn_clock_restart(struct cv_conn_clock *c);
/* True once the sweeper shut this connection down. Accepts NULL. */
bool cv_conn_clock_expired(struct cv_conn_clock *c);
/* Unregisters and frees; call before the descriptor is closed. Accepts NULL. */
void cv_conn_clock_forget(struct cv_conn_clock *c);

#endif
