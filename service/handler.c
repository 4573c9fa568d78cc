/* handler.c: the handler contract's few functions and its production wiring:
 * the tables that point handlers at the real store, keyring and clock. It
 * holds no flow logic and must never speak HTTP. */
#include "cardvault/handler.h"

#include <stdlib.h>
#include <string.h>

#include "cardvault/keyring.h"

void cv_tokenize_req_cleanup(struct cv_tokenize_req *req)
{
    cv_secbuf_free(req->pan);
    cv_secbuf_free(req->cvc);
    cv_secbuf_free(req->name);
    free(req->metadata);
    memset(req, 0, sizeof(*req));
}

void cv_update_req_cleanup(struct cv_update_req *req)
{
    cv_secbuf_free(req->name);
    free(req->metadata_patch);
    memset(req, 0, sizeof(*req));
}

static void headers_free(struct cv_relay_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name != NULL) {
            cv_wipe(h[i].name, strlen(h[i].name));
            free(h[i].name);
        }
        if (h[i].value != NULL) {
            cv_wipe(h[i].value, strlen(h[i].value));
            free(h[i].value);
        }
    }
}

void cv_cvc_hold_req_cleanup(struct cv_cvc_hold_req *req)
{
    cv_secbuf_free(req->cvc);
    memset(req, 0, sizeof(*req));
}

void cv_relay_req_cleanup(struct cv_relay_req *req)
{
    if (req->path != NULL) {
        cv_wipe(req->path, strlen(req->path));
        free(req->path);
    }
    headers_free(req->headers, req->n_headers);
    if (req->body != NULL) {
        cv_wipe(req->body, req->body_len);
        free(req->body);
    }
    cv_wipe(req, sizeof(*req));
}

void cv_relay_answer_cleanup(struct cv_relay_answer *a)
{
    headers_free(a->headers, a->n_headers);
    if (a->body != NULL) {
        cv_wipe(a->body, a->body_len);
        free(a->body);
    }
    cv_wipe(a, sizeof(*a));
}

void cv_result_cleanup(struct cv_result *r)
{
    if (r->body != NULL && r->free_body != NULL)
        r->free_body(r->body);
    memset(r, 0, sizeof(*r));
}

void cv_completion_finish(struct cv_completion *done, struct cv_result *result)
{
    done->finish(done, result);
}

/* The store retries a record released between its claim and its read
 * itself (and answers CV_ERR_IDEMPOTENCY_IN_USE if that keeps happening), so
 * this adapter only turns its bool into the contract's outcome. */
static cv_status idem_claim(struct cv_store *store, const char *merchant_id,
                            const unsigned char key_hash[32], const unsigned char request_hash[32],
                            int64_t ttl_s, int64_t stale_s, bool durable,
                            enum cv_idem_claim *outcome, struct cv_idem_record *existing)
{
    bool claimed = false;
    cv_status st = cv_store_idem_claim(store, merchant_id, key_hash, request_hash, ttl_s, stale_s,
                                       durable, &claimed, existing);
    *outcome = claimed ? CV_IDEM_CLAIMED : CV_IDEM_TAKEN;
    return st;
}

static const struct cv_store_ops store_ops = {
    .get_token = cv_store_get_token,
    .find_by_fingerprint = cv_store_find_by_fingerprint,
    .insert_token = cv_store_insert_token,
    .delete_token = cv_store_delete_token,
    .audit_append = cv_store_audit_append,
    .idem_claim = idem_claim,
    .idem_complete = cv_store_idem_complete,
    .idem_release = cv_store_idem_release,
    .list_tokens = cv_store_list_tokens,
    .update_token = cv_store_update_token,
    .ping = cv_store_ping,
    .replication = cv_store_replication,
    .pool_usage = cv_store_pool_usage,
    .insert_token_async = cv_store_insert_token_async,
    .get_token_async = cv_store_get_token_async,
    .audit_append_async = cv_store_audit_append_async,
};

static const struct cv_keyring_ops keyring_ops = {
    .seal = cv_keyring_seal,
    .open_row = cv_keyring_open_row,
    .fingerprint = cv_keyring_fingerprint,
    .mac = cv_keyring_mac,
    .kek_ok = cv_keyring_kek_ok,
    .rotations = cv_keyring_rotations,
};

static time_t system_now(void *ctx)
{
    (void)ctx;
    return time(NULL);
}

static void system_sleep_ms(void *ctx, unsigned ms)
{
    (void)ctx;
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

void cv_handler_deps_init(struct cv_handler_deps *deps, struct cv_store *store,
                          struct cv_keyring *keyring, struct cv_metrics *metrics,
                          atomic_bool *draining, int64_t idempotency_ttl_s)
{
    memset(deps, 0, sizeof(*deps));
    deps->store = store;
    deps->store_ops = &store_ops;
    deps->keyring = keyring;
    deps->keyring_ops = &keyring_ops;
    deps->clock = (struct cv_clock){system_now, system_sleep_ms, NULL};
    deps->metrics = metrics;
    deps->draining = draining;
    deps->idempotency_ttl_s = idempotency_ttl_s;
}
