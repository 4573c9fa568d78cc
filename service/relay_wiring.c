/* relay_wiring.c: the relay's production table (relay_wiring.h). */
#include "cardvault/relay_wiring.h"

#include "cardvault/cvc_hold.h"
#include "cardvault/relay_client.h"
#include "cardvault/relay_dest.h"

/* The relay's production table: the operator's destinations, the libcurl
 * client, the security-code holds. */
static cv_status relay_allowed(void *ctx, const char *destination, const char *method,
                               const char *path)
{
    const struct cv_relay_wiring *w = ctx;
    const struct cv_relay_destination *d = cv_relay_destinations_find(w->destinations, destination);
    if (d == NULL)
        return CV_ERR_RELAY_DESTINATION_UNKNOWN;
    return cv_relay_destination_allows(d, method, path);
}

static cv_status relay_send(void *ctx, const struct cv_relay_outbound *req,
                            struct cv_relay_answer *ans, bool *maybe_sent)
{
    const struct cv_relay_wiring *w = ctx;
    *maybe_sent = false;
    const struct cv_relay_destination *d =
        cv_relay_destinations_find(w->destinations, req->destination);
    if (d == NULL)
        return CV_ERR_RELAY_DESTINATION_UNKNOWN;
    return cv_relay_client_send(d, req, ans, maybe_sent);
}

static cv_status relay_hold_take(void *ctx, const char *merchant_id, const char *token,
                                 const char *hold_id, char cvc[5])
{
    const struct cv_relay_wiring *w = ctx;
    if (w->holds == NULL)
        return CV_ERR_HOLD_GONE;
    return cv_holds_take(w->holds, merchant_id, token, hold_id, cvc);
}

static const struct cv_relay_ops relay_ops = {relay_allowed, relay_send, relay_hold_take};

void cv_relay_wiring_install(struct cv_handler_deps *deps, struct cv_relay_wiring *wiring)
{
    deps->relay_ops = &relay_ops;
    deps->relay_ctx = wiring;
    deps->holds = wiring->holds;
}
