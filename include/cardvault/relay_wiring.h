#ifndef CV_RELAY_WIRING_H
#define CV_RELAY_WIRING_H

#include "cardvault/handler.h"

/* The relay's production table (struct cv_relay_ops in handler.h): the
 * operator's destinations (relay_dest.h; empty when there is no file), the
 * libcurl client (relay_client.h) and the security-code holds (cvc_hold.h).
 * A module of its own so that the handler contract stays below the modules
 * that implement it. Borrowed; outlives every request. */
struct cv_relay_destinations;
struct cv_relay_wiring {
    const struct cv_relay_destinations *destinations;
    struct cv_holds *holds;
};

/* Points deps->relay_ops and deps->holds at the wiring. */
void cv_relay_wiring_install(struct cv_handler_deps *deps, struct cv_relay_wiring *wiring);

#endif
