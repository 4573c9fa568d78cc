/* api_health.c: the unauthenticated operational endpoints, served on the ops
 * listener: liveness, readiness (database and KEK reachable, not draining;
 * the probe is shared through readiness.c) and the Prometheus metrics text.
 * Handlers of the contract in handler.h, like the token flows; they never
 * touch card data, and never pick an HTTP code. */
#include "cardvault/api_health.h"

#include <stdlib.h>
#include <string.h>

#include "cardvault/json_codec.h"
#include "cardvault/metrics.h"
#include "cardvault/readiness.h"

static void finish_json(struct cv_completion *done, enum cv_result_kind kind, char *body,
                        size_t len)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    res.status = CV_OK;
    res.kind = kind;
    res.body = body;
    res.body_len = len;
    res.free_body = cv_json_free;
    res.body_type = CV_BODY_JSON;
    cv_completion_finish(done, &res);
}

void cv_api_healthz(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done)
{
    (void)deps;
    (void)call;
    size_t len = 0;
    char *body = cv_json_encode_health("ok", NULL, 0, &len);
    finish_json(done, CV_RESULT_OK, body, len);
}

/* The costly part of readiness: a database round trip and the KEK check. */
static void probe_dependencies(const void *ctx, struct cv_readiness_report *out)
{
    const struct cv_handler_deps *deps = ctx;
    out->database_ok = deps->store_ops->ping(deps->store) == CV_OK;
    out->kek_ok = deps->keyring != NULL && deps->keyring_ops->kek_ok(deps->keyring);
    out->replication = CV_REPLICATION_NOT_CHECKED;
    bool named = false;
    int senders = 0;
    if (deps->expect_sync_standby && deps->store_ops->replication != NULL &&
        deps->store_ops->replication(deps->store, &named, &senders) == CV_OK)
        out->replication = !named         ? CV_REPLICATION_NO_STANDBY
                           : senders == 0 ? CV_REPLICATION_NOT_CONNECTED
                                          : CV_REPLICATION_OK;
}

/* The shared report (or a fresh probe without a cache); draining asks nothing. */
static void current_report(const struct cv_handler_deps *deps, bool draining,
                           struct cv_readiness_report *rep)
{
    memset(rep, 0, sizeof(*rep));
    if (draining)
        return; /* the instance is leaving */
    if (deps->readiness != NULL)
        cv_readiness_check(deps->readiness, probe_dependencies, deps, rep);
    else
        probe_dependencies(deps, rep);
}

static const char *replication_text(enum cv_replication_state s)
{
    switch (s) {
    case CV_REPLICATION_OK:
        return "ok";
    case CV_REPLICATION_NO_STANDBY:
        /* a second failure now would lose acknowledged writes */
        return "degraded: no synchronous standby";
    case CV_REPLICATION_NOT_CONNECTED:
        return "degraded: synchronous standby not connected";
    case CV_REPLICATION_NOT_CHECKED:
        break;
    }
    return NULL;
}

void cv_api_readyz(const struct cv_handler_deps *deps, const struct cv_call *call,
                   struct cv_completion *done)
{
    (void)call;
    bool draining = atomic_load(deps->draining);
    struct cv_readiness_report rep;
    current_report(deps, draining, &rep);
    const char *repl = replication_text(rep.replication);
    const char *const pairs[] = {"database",    rep.database_ok ? "ok" : "unavailable",
                                 "kek",         rep.kek_ok ? "ok" : "unavailable",
                                 "replication", repl};
    /* A primary without its standby still serves: the degraded state is
     * told, in the checks and the metrics, not acted on. */
    bool ready = rep.database_ok && rep.kek_ok && !draining;
    size_t len = 0;
    char *body =
        cv_json_encode_health(ready ? "ready" : "unavailable", pairs, repl != NULL ? 3 : 2, &len);
    finish_json(done, ready ? CV_RESULT_OK : CV_RESULT_NOT_READY, body, len);
}

void cv_api_metrics(const struct cv_handler_deps *deps, const struct cv_call *call,
                    struct cv_completion *done)
{
    (void)call;
    struct cv_result res;
    struct cv_metrics_gauges g = {0};
    memset(&res, 0, sizeof(res));
    deps->store_ops->pool_usage(deps->store, &g.db_pool_in_use, &g.db_pool_size);
    g.dek_rotations = deps->keyring_ops->rotations(deps->keyring);
    g.ready = !atomic_load(deps->draining);
    if (deps->expect_sync_standby) {
        struct cv_readiness_report rep;
        current_report(deps, !g.ready, &rep);
        g.sync_standby_known = rep.replication != CV_REPLICATION_NOT_CHECKED;
        g.sync_standby = rep.replication == CV_REPLICATION_OK;
    }
    size_t len = 0;
    res.body = cv_metrics_render(deps->metrics, &g, &len);
    res.body_len = len;
    res.free_body = free;
    res.kind = CV_RESULT_OK;
    res.body_type = CV_BODY_METRICS;
    cv_completion_finish(done, &res);
}
