#ifndef CV_APP_H
#define CV_APP_H

#include <stdatomic.h>

#include "cardvault/auth.h"
#include "cardvault/config.h"
#include "cardvault/handler.h"
#include "cardvault/keyring.h"
#include "cardvault/metrics.h"
#include "cardvault/store.h"

/* The running service's parts, built by main.c in order and handed to the
 * HTTP layer. Handlers borrow them; nothing here is owned by a request. */
struct cv_app {
    const struct cv_config *config;
    struct cv_store *store;
    struct cv_keyring *keyring;
    struct cv_auth *auth;
    struct cv_metrics *metrics;
    atomic_bool draining; /* SIGTERM received: /readyz answers 503 */
    /* What the handlers see of all this (cv_handler_deps_init); they never
     * get the app itself. */
    struct cv_handler_deps handlers;
};

#endif
