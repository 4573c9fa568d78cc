/* api_relay.c: POST /v1/relay/{destination} (docs/relay.md). The shop's
 * server sends the request it wants made to its payment processor, with
 * placeholders where the card goes and the tokens that hold it; this flow
 * checks the destination and the template, opens the tokens (the merchant's
 * own only), takes the security code from its hold, renders the body into a
 * secret buffer, has the relay client send it, redacts the processor's
 * answer and hands it back. It must never put a card number, a security
 * code, a rendered body, a header value or a hold id into a log line, an
 * audit event, an error or the idempotency record, and it wipes every buffer
 * that held one. With an Idempotency-Key, at most one outbound request is
 * ever made for the key: the key is claimed before sending, and only the
 * redacted answer (or the failure's status name) is stored.
 *
 * A handler of the contract in handler.h: decoded structs in, a result kind
 * or a status out; it never picks an HTTP code. */
#include "cardvault/api_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cardvault/card.h"
#include "cardvault/json_codec.h"
#include "cardvault/log.h"
#include "cardvault/metrics.h"
#include "cardvault/relay_redact.h"
#include "cardvault/relay_template.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

/* The rendered body is at most this large (a template fits the 8 KiB
 * request cap; each placeholder grows by at most the name, 6x escaped). */
#define RENDERED_MAX_BYTES (64 * 1024)
/* The answer handed back: the processor's body (capped by the relay
 * client) escaped as a JSON string can grow 6x. */
#define ANSWER_JSON_MAX_BYTES (16u * 1024 * 1024)

/* The idempotency record of a relay: 200 with the answer handed back, or
 * IDEM_STORED_FAILED with the name of the failure's status (the request may
 * have reached the processor, so the key must never send again). */
#define IDEM_STORED_OK     200
#define IDEM_STORED_FAILED 502
/* A concurrent duplicate waits this long for the first to finish, then
 * answers "in use"; a claim is stale (its request died) only after
 * IDEM_STALE_S, longer than any relay may take. */
#define IDEM_WAIT_MS 5000
#define IDEM_POLL_MS 50
#define IDEM_STALE_S 300

bool cv_api_relay_header_passes(const char *name)
{
    static const char *const pass[] = {"content-type", "date", "retry-after", "request-id",
                                       "x-request-id"};
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
        if (strcasecmp(name, pass[i]) == 0)
            return true;
    return false;
}

/* Everything one relay holds; released (wiped) at its one exit. */
struct relay {
    struct cv_card_plain cards[CV_RELAY_TOKENS_MAX];
    struct cv_relay_card view[CV_RELAY_TOKENS_MAX];
    size_t opened;
    char cvc[5];
    bool have_cvc;
    struct cv_secbuf *rendered;
    struct cv_relay_answer answer;
    bool claimed;
    unsigned char key_hash[32];
    unsigned char request_hash[32];
    const char *listed; /* the destination when the operator's list has it */
    int upstream_status;
    long long duration_ms;
    bool replayed;  /* answered from the Idempotency-Key's record: nothing was sent */
    bool attempted; /* the relay client was asked to send */
    bool sent;      /* the processor answered */
};

static void relay_cleanup(struct relay *r)
{
    cv_secbuf_free(r->rendered);
    cv_relay_answer_cleanup(&r->answer);
    cv_wipe(r, sizeof(*r));
}

static long long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* The request's identity for its Idempotency-Key: a keyed MAC of what the
 * shop asked to send (destination, method, path, headers, body template,
 * tokens), never of the card or the hold. Each part is length-prefixed so
 * that no two requests share an encoding. */
static cv_status request_identity(const struct cv_handler_deps *d, const struct cv_call *call,
                                  unsigned char out[32])
{
    const struct cv_relay_req *q = call->relay;
    /* Every part is a size_t length and its bytes: 3 + 2 per header + 1 +
     * 2 per token parts in all. */
    size_t parts = 4 + 2 * q->n_headers + 2 * q->n_tokens;
    size_t cap = parts * sizeof(size_t) + strlen(call->destination) + strlen(q->method) +
                 strlen(q->path) + q->body_len;
    for (size_t i = 0; i < q->n_headers; i++)
        cap += strlen(q->headers[i].name) + strlen(q->headers[i].value);
    for (size_t i = 0; i < q->n_tokens; i++)
        cap += strlen(q->aliases[i]) + strlen(q->tokens[i]);
    unsigned char *buf = cv_xmalloc(cap);
    size_t n = 0;
#define PUT(p, len)                                                                                \
    do {                                                                                           \
        size_t l_ = (len);                                                                         \
        memcpy(buf + n, &l_, sizeof(l_));                                                          \
        n += sizeof(l_);                                                                           \
        memcpy(buf + n, (p), l_);                                                                  \
        n += l_;                                                                                   \
    } while (0)
    PUT(call->destination, strlen(call->destination));
    PUT(q->method, strlen(q->method));
    PUT(q->path, strlen(q->path));
    for (size_t i = 0; i < q->n_headers; i++) {
        PUT(q->headers[i].name, strlen(q->headers[i].name));
        PUT(q->headers[i].value, strlen(q->headers[i].value));
    }
    PUT(q->body != NULL ? q->body : "", q->body_len);
    for (size_t i = 0; i < q->n_tokens; i++) {
        PUT(q->aliases[i], strlen(q->aliases[i]));
        PUT(q->tokens[i], strlen(q->tokens[i]));
    }
#undef PUT
    cv_status st =
        d->keyring_ops->mac(d->keyring, "relay-request-v1", call->who->merchant_id, buf, n, out);
    cv_wipe(buf, cap);
    free(buf);
    return st;
}

/* The status whose name a failed relay's record keeps. */
static cv_status status_named(const char *name)
{
    for (int s = 1; s < CV_STATUS_COUNT; s++)
        if (strcmp(cv_status_name((cv_status)s), name) == 0)
            return (cv_status)s;
    return CV_ERR_INTERNAL;
}

/* Claims the key (*answered false), or answers from its record: the stored
 * answer (*answered true, res filled), the stored failure,
 * CV_ERR_IDEMPOTENCY_REUSED for another request under the key, or
 * CV_ERR_IDEMPOTENCY_IN_USE while the first is still running. */
static cv_status idem_begin(const struct cv_handler_deps *d, const struct cv_call *call,
                            struct relay *r, struct cv_result *res, bool *answered)
{
    const char *m = call->who->merchant_id;
    *answered = false;
    CV_TRY(d->keyring_ops->mac(d->keyring, "idempotency-key", m, call->idempotency_key,
                               strlen(call->idempotency_key), r->key_hash));
    CV_TRY(request_identity(d, call, r->request_hash));
    for (int waited = 0; waited <= IDEM_WAIT_MS; waited += IDEM_POLL_MS) {
        struct cv_idem_record rec;
        enum cv_idem_claim outcome = CV_IDEM_VANISHED;
        memset(&rec, 0, sizeof(rec));
        /* durable: the claim is what stops a second outbound call under
         * the key, so it must be on disk before the first one goes out */
        cv_status st =
            d->store_ops->idem_claim(d->store, m, r->key_hash, r->request_hash,
                                     d->idempotency_ttl_s, IDEM_STALE_S, true, &outcome, &rec);
        if (st != CV_OK) {
            cv_idem_record_cleanup(&rec);
            return st;
        }
        if (outcome == CV_IDEM_CLAIMED) {
            r->claimed = true;
            return CV_OK;
        }
        if (outcome == CV_IDEM_TAKEN && !cv_ct_equal(rec.request_hash, r->request_hash, 32)) {
            cv_idem_record_cleanup(&rec);
            return CV_ERR_IDEMPOTENCY_REUSED;
        }
        if (outcome == CV_IDEM_TAKEN && rec.done) {
            r->replayed = true;
            if (rec.status_code != IDEM_STORED_OK) {
                st = status_named(rec.response_body != NULL ? rec.response_body : "");
                cv_idem_record_cleanup(&rec);
                return st;
            }
            res->kind = CV_RESULT_OK;
            res->body = rec.response_body;
            res->body_len = strlen(rec.response_body);
            res->free_body = free;
            res->body_type = CV_BODY_JSON;
            res->replayed = true;
            rec.response_body = NULL;
            *answered = true;
            return CV_OK;
        }
        cv_idem_record_cleanup(&rec);
        d->clock.sleep_ms(d->clock.ctx, IDEM_POLL_MS);
    }
    return CV_ERR_IDEMPOTENCY_IN_USE;
}

static void idem_release(const struct cv_handler_deps *d, const struct cv_call *call,
                         struct relay *r)
{
    if (r->claimed &&
        d->store_ops->idem_release(d->store, call->who->merchant_id, r->key_hash) != CV_OK)
        cv_log(CV_LOG_WARN, "idempotency_release_failed", CV_LS("request_id", call->request_id),
               CV_LS("effect", "retries with this key wait until the claim goes stale (300 s)"));
    r->claimed = false;
}

static void idem_complete(const struct cv_handler_deps *d, const struct cv_call *call,
                          struct relay *r, int code, const char *body)
{
    if (!r->claimed)
        return;
    if (d->store_ops->idem_complete(d->store, call->who->merchant_id, r->key_hash, code, body) !=
        CV_OK)
        cv_log(CV_LOG_ERROR, "idempotency_complete_failed", CV_LS("request_id", call->request_id),
               CV_LS("effect", "the key stays claimed: retries answer in use, never send again"));
    r->claimed = false;
}

/* Placeholders belong to the body alone: a card in a URL or a header ends
 * up in the processor's access logs. */
static cv_status check_no_placeholder_outside_body(const struct cv_relay_req *q, const char **param)
{
    if (cv_relay_has_placeholder(q->path, strlen(q->path))) {
        *param = "path";
        return CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED;
    }
    for (size_t i = 0; i < q->n_headers; i++) {
        if (cv_relay_has_placeholder(q->headers[i].value, strlen(q->headers[i].value)) ||
            cv_relay_has_placeholder(q->headers[i].name, strlen(q->headers[i].name))) {
            *param = "headers";
            return CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED;
        }
    }
    return CV_OK;
}

static const char *content_type_of(const struct cv_relay_req *q)
{
    for (size_t i = 0; i < q->n_headers; i++)
        if (strcasecmp(q->headers[i].name, "content-type") == 0)
            return q->headers[i].value;
    return NULL;
}

/* A hold id is what cvc_hold.c hands out: printable, short; anything else
 * is refused before it is looked up. */
static bool hold_shape_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > CV_RELAY_HOLD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!cv_base62_char_ok(h[i]) && h[i] != '_')
            return false;
    return true;
}

/* The template and the hold header agree: which alias (if any) takes the
 * security code, in *cvc_alias (or -1). */
static cv_status check_template(const struct cv_call *call, struct cv_relay_template_use *use,
                                char param[CV_RELAY_PARAM_MAX], int *cvc_alias,
                                const char **error_param)
{
    const struct cv_relay_req *q = call->relay;
    const char *aliases[CV_RELAY_TOKENS_MAX];
    for (size_t i = 0; i < q->n_tokens; i++)
        aliases[i] = q->aliases[i];
    *cvc_alias = -1;
    memset(use, 0, sizeof(*use));
    if (q->body != NULL) {
        cv_status st =
            cv_relay_template_check(q->body, q->body_len, cv_relay_content_of(content_type_of(q)),
                                    aliases, q->n_tokens, use, param);
        if (st != CV_OK) {
            *error_param = param[0] != '\0' ? param : "body";
            return st;
        }
    }
    for (size_t i = 0; i < q->n_tokens; i++) {
        if ((use->used[i] & (1u << CV_RELAY_FIELD_CVC)) == 0)
            continue;
        if (*cvc_alias >= 0) {
            /* One hold per relay, bound to one token. */
            snprintf(param, CV_RELAY_PARAM_MAX, "%s.cvc", q->aliases[i]);
            *error_param = param;
            return CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED;
        }
        *cvc_alias = (int)i;
    }
    if (*cvc_alias >= 0 && call->hold == NULL) {
        *error_param = "CardVault-Hold";
        return CV_ERR_RELAY_HOLD_REQUIRED;
    }
    if (*cvc_alias < 0 && call->hold != NULL) {
        *error_param = "CardVault-Hold";
        return CV_ERR_RELAY_HOLD_UNUSED;
    }
    if (call->hold != NULL && !hold_shape_ok(call->hold)) {
        *error_param = "CardVault-Hold";
        return CV_ERR_BAD_REQUEST;
    }
    return CV_OK;
}

/* Opens every token of the request (the caller's merchant only: another
 * merchant's token, a malformed and a missing one are all
 * CV_ERR_NOT_FOUND). */
static cv_status open_tokens(const struct cv_handler_deps *d, const struct cv_call *call,
                             struct relay *r)
{
    const struct cv_relay_req *q = call->relay;
    for (size_t i = 0; i < q->n_tokens; i++) {
        const char *tok = q->tokens[i];
        if (!cv_token_is_valid(tok, strlen(tok)))
            return CV_ERR_NOT_FOUND;
        struct cv_token_row row;
        memset(&row, 0, sizeof(row));
        cv_status st = d->store_ops->get_token(d->store, call->who->merchant_id, tok, &row);
        if (st == CV_OK)
            st = d->keyring_ops->open_row(d->keyring, &row, &r->cards[i]);
        if (st == CV_ERR_INTEGRITY)
            cv_log(CV_LOG_ERROR, "integrity_error", CV_LS("request_id", call->request_id),
                   CV_LS("merchant_id", call->who->merchant_id), CV_LS("token", row.token),
                   CV_LI("dek_id", row.dek_id));
        cv_token_row_cleanup(&row);
        if (st != CV_OK)
            return st;
        r->view[i] = (struct cv_relay_card){
            .alias = q->aliases[i],
            .pan = r->cards[i].pan,
            .exp_month = r->cards[i].exp_month,
            .exp_year = r->cards[i].exp_year,
            .name = r->cards[i].has_name ? r->cards[i].name : "",
            .cvc = NULL,
        };
        r->opened = i + 1;
    }
    return CV_OK;
}

/* The answer's headers the shop may see, each value redacted too. */
static void pass_headers(struct cv_relay_answer *a, const struct cv_relay_sent *sent,
                         struct cv_relay_header *out, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < a->n_headers; i++) {
        if (a->headers[i].name == NULL || a->headers[i].value == NULL ||
            !cv_api_relay_header_passes(a->headers[i].name))
            continue;
        for (char *p = a->headers[i].name; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        (void)cv_relay_redact(a->headers[i].value, strlen(a->headers[i].value), sent);
        out[(*n)++] = a->headers[i];
    }
}

/* The relay.send audit event: destination, tokens, upstream status or
 * failure, duration, request id. Never a body, a header, a path or a hold. */
static void audit(const struct cv_handler_deps *d, const struct cv_call *call,
                  const struct relay *r, cv_status st)
{
    const struct cv_relay_req *q = call->relay;
    char detail[512];
    size_t w = 0;
    int k = snprintf(detail, sizeof(detail), "destination=%s method=%s",
                     r->listed != NULL ? r->listed : "(not listed)", q->method);
    w = k > 0 && (size_t)k < sizeof(detail) ? (size_t)k : 0;
    if (r->sent)
        k = snprintf(detail + w, sizeof(detail) - w, " upstream_status=%d", r->upstream_status);
    else
        k = snprintf(detail + w, sizeof(detail) - w, " failure=%s", cv_status_name(st));
    w += k > 0 && (size_t)k < sizeof(detail) - w ? (size_t)k : 0;
    k = snprintf(detail + w, sizeof(detail) - w, " duration_ms=%lld tokens=", r->duration_ms);
    w += k > 0 && (size_t)k < sizeof(detail) - w ? (size_t)k : 0;
    for (size_t i = 0; i < q->n_tokens; i++) {
        bool ok = cv_token_is_valid(q->tokens[i], strlen(q->tokens[i]));
        k = snprintf(detail + w, sizeof(detail) - w, "%s%s:%s", i > 0 ? "," : "", q->aliases[i],
                     ok ? q->tokens[i] : "(malformed)");
        w += k > 0 && (size_t)k < sizeof(detail) - w ? (size_t)k : 0;
    }
    const char *first = q->n_tokens > 0 && cv_token_is_valid(q->tokens[0], strlen(q->tokens[0]))
                            ? q->tokens[0]
                            : NULL;
    struct cv_audit_event ev = {
        .actor = call->who->key_prefix,
        .merchant_id = call->who->merchant_id,
        .token = first,
        .request_id = call->request_id,
        .action = "relay.send",
        .outcome = st == CV_OK ? "success" : cv_status_name(st),
        .detail = detail,
    };
    if (d->store_ops->audit_append(d->store, &ev) != CV_OK)
        cv_log(CV_LOG_ERROR, "audit_append_failed", CV_LS("request_id", call->request_id),
               CV_LS("action", "relay.send"));
}

static cv_status relay(const struct cv_handler_deps *d, const struct cv_call *call, struct relay *r,
                       struct cv_result *res)
{
    const struct cv_relay_req *q = call->relay;
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    int cvc_alias = -1;
    bool answered = false;
    cv_status st;

    if (q == NULL || call->destination == NULL)
        return CV_ERR_INTERNAL;
    /* Everything decidable without a token, a hold or a claim comes first:
     * a bad request is answered the same way every time and costs nothing. */
    CV_TRY(check_no_placeholder_outside_body(q, &res->error_param));
    /* No relay client (no destinations file): no destination exists. */
    if (d->relay_ops == NULL)
        return CV_ERR_RELAY_DESTINATION_UNKNOWN;
    CV_TRY(d->relay_ops->allowed(d->relay_ctx, call->destination, q->method, q->path));
    r->listed = call->destination;
    /* The placeholder an error names must outlive this frame (error_param
     * is static storage by contract): a per-thread copy serves, because the
     * answer is queued on this thread before it runs another handler. It
     * holds only an echoable placeholder name, never card data. */
    st = check_template(call, &use, param, &cvc_alias, &res->error_param);
    if (st != CV_OK) {
        static _Thread_local char named[CV_RELAY_PARAM_MAX];
        if (res->error_param == param) {
            memcpy(named, param, sizeof(named));
            res->error_param = named;
        }
        return st;
    }
    if (call->idempotency_key != NULL) {
        CV_TRY(idem_begin(d, call, r, res, &answered));
        if (answered)
            return CV_OK;
    }
    st = open_tokens(d, call, r);
    if (st != CV_OK)
        goto refused;
    if (cvc_alias >= 0) {
        st = d->relay_ops->hold_take(d->relay_ctx, call->who->merchant_id, q->tokens[cvc_alias],
                                     call->hold, r->cvc);
        if (st != CV_OK)
            goto refused;
        r->have_cvc = true;
        r->view[cvc_alias].cvc = r->cvc;
    }
    if (q->body != NULL) {
        st = cv_relay_template_render(q->body, q->body_len, cv_relay_content_of(content_type_of(q)),
                                      r->view, r->opened, RENDERED_MAX_BYTES, &r->rendered);
        if (st != CV_OK)
            goto refused;
    }
    struct cv_relay_outbound out = {
        .destination = call->destination,
        .method = q->method,
        .path = q->path,
        .headers = q->headers,
        .n_headers = q->n_headers,
        .body = r->rendered != NULL ? r->rendered->data : NULL,
        .body_len = r->rendered != NULL ? r->rendered->len : 0,
        .request_id = call->request_id,
    };
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool maybe_sent = false;
    r->attempted = true;
    st = d->relay_ops->send(d->relay_ctx, &out, &r->answer, &maybe_sent);
    r->duration_ms = elapsed_ms(&t0);
    /* The card is on its way or refused: the rendered copy goes now. */
    cv_secbuf_free(r->rendered);
    r->rendered = NULL;
    if (st != CV_OK) {
        if (maybe_sent)
            idem_complete(d, call, r, IDEM_STORED_FAILED, cv_status_name(st));
        return st;
    }
    r->sent = true;
    r->upstream_status = r->answer.status;

    /* Redact before anything else reads the answer. */
    struct cv_relay_sent sent;
    memset(&sent, 0, sizeof(sent));
    for (size_t i = 0; i < r->opened && i < CV_RELAY_REDACT_MAX; i++)
        sent.pans[sent.n_pans++] = r->cards[i].pan;
    if (r->have_cvc)
        sent.cvcs[sent.n_cvcs++] = r->cvc;
    if (r->answer.body != NULL)
        (void)cv_relay_redact(r->answer.body, r->answer.body_len, &sent);
    struct cv_relay_header shown[CV_RELAY_ANSWER_HEADERS_MAX];
    size_t n_shown = 0;
    pass_headers(&r->answer, &sent, shown, &n_shown);
    cv_wipe(&sent, sizeof(sent));
    size_t len = 0;
    char *body = cv_json_encode_relay_answer(r->answer.status, shown, n_shown, r->answer.body,
                                             r->answer.body_len, r->duration_ms,
                                             ANSWER_JSON_MAX_BYTES, &len);
    if (body == NULL) {
        idem_complete(d, call, r, IDEM_STORED_FAILED, cv_status_name(CV_ERR_INTERNAL));
        return CV_ERR_INTERNAL;
    }
    idem_complete(d, call, r, IDEM_STORED_OK, body);
    res->kind = CV_RESULT_OK;
    res->body = body;
    res->body_len = len;
    res->free_body = cv_json_free;
    res->body_type = CV_BODY_JSON;
    return CV_OK;
refused:
    /* Nothing left the vault: the key may be used again. */
    idem_release(d, call, r);
    return st;
}

void cv_api_relay(const struct cv_handler_deps *deps, const struct cv_call *call,
                  struct cv_completion *done)
{
    struct cv_result res;
    struct relay r;
    memset(&res, 0, sizeof(res));
    memset(&r, 0, sizeof(r));
    cv_status st = relay(deps, call, &r, &res);
    /* A replay is not a relay: the first request's event and count stand. */
    if (!r.replayed && call->relay != NULL && call->who != NULL) {
        audit(deps, call, &r, st);
        enum cv_metrics_relay_outcome o = r.sent        ? CV_METRICS_RELAY_ANSWERED
                                          : r.attempted ? CV_METRICS_RELAY_FAILED
                                                        : CV_METRICS_RELAY_REFUSED;
        cv_metrics_count_relay(deps->metrics, r.listed, o, (double)r.duration_ms / 1000.0);
    }
    if (r.claimed) /* a path that neither completed nor released: release */
        idem_release(deps, call, &r);
    relay_cleanup(&r);
    if (st != CV_OK) {
        const char *param = res.error_param;
        cv_result_cleanup(&res);
        res.error_param = param;
    }
    res.status = st;
    cv_completion_finish(done, &res);
}
