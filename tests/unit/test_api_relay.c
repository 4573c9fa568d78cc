/* test_api_relay.c: the relay flow (api_relay.c) against a fake store,
 * keyring, destination list, relay client and hold table. The processor
 * gets the exact card; the shop's answer holds neither the number nor the
 * code even when the processor echoes them; another merchant's token is a
 * 404 like a missing one; a hold is taken only when the template uses the
 * code and only after every check passed; refusals send nothing; an
 * Idempotency-Key sends at most once (replays, failures that may have
 * reached the processor, requests refused before sending); every relay is
 * one relay.send audit event without card data, headers or the hold id. */
#include "cardvault/api_relay.h"

#include <stdlib.h>
#include <string.h>

#include "cardvault/json_codec.h"
#include "cardvault/metrics.h"
#include "check.h"
#include "test_helpers.h"

#define MERCHANT_A "mer_aaaaaaaaaaaaaaaaaaaa"
#define MERCHANT_B "mer_bbbbbbbbbbbbbbbbbbbb"
#define TOK_A      "tok_aaaaaaaaaaaaaaaaaaaaaa"
#define TOK_A2     "tok_cccccccccccccccccccccc"
#define TOK_B      "tok_bbbbbbbbbbbbbbbbbbbbbb"
#define PAN        "4242424242424242"
#define PAN2       "5555555555554444"
#define CVC        "987"
#define HOLD       "hold_a_abcdefghijklmnopqrstuvwx"
#define SECRET     "Bearer proc_secret_credential"

/* ---- fakes ---- */

struct fake {
    struct cv_token_row rows[4];
    size_t n_rows;
    struct {
        bool used, done;
        char merchant[CV_MERCHANT_ID_LEN + 1];
        unsigned char key[32], req[32];
        int code;
        char *body;
    } idem[4];
    char audit_outcome[8][48];
    char audit_detail[8][512];
    size_t n_audit;
    int get_token_calls;
    int claims, lazy_claims; /* idempotency claims seen, and those not asked to be durable */
    /* the relay side */
    bool dest_refused;
    int sends;
    char sent_body[1024];
    char sent_path[128];
    size_t sent_headers;
    cv_status send_fails;
    bool send_maybe_sent;
    const char *answer_body;
    int hold_takes;
    cv_status hold_status;
    char hold_token[CV_TOKEN_LEN + 1];
};
static struct fake F;

static void add_row(const char *merchant, const char *token, const char *pan)
{
    struct cv_token_row *r = &F.rows[F.n_rows++];
    memset(r, 0, sizeof(*r));
    snprintf(r->merchant_id, sizeof(r->merchant_id), "%s", merchant);
    snprintf(r->token, sizeof(r->token), "%s", token);
    struct cv_card_plain c = test_card(pan, 3, 2031, "Ada \"Quote\" Lovelace");
    r->ciphertext_len = sizeof(c);
    r->ciphertext = malloc(sizeof(c));
    memcpy(r->ciphertext, &c, sizeof(c));
}

static cv_status get_token(struct cv_store *st, const char *m, const char *t,
                           struct cv_token_row *out)
{
    (void)st;
    F.get_token_calls++;
    for (size_t i = 0; i < F.n_rows; i++)
        if (strcmp(F.rows[i].merchant_id, m) == 0 && strcmp(F.rows[i].token, t) == 0) {
            *out = F.rows[i];
            out->ciphertext = malloc(F.rows[i].ciphertext_len);
            memcpy(out->ciphertext, F.rows[i].ciphertext, F.rows[i].ciphertext_len);
            return CV_OK;
        }
    return CV_ERR_NOT_FOUND;
}

static cv_status open_row(struct cv_keyring *kr, const struct cv_token_row *row,
                          struct cv_card_plain *card)
{
    (void)kr;
    memcpy(card, row->ciphertext, sizeof(*card));
    return CV_OK;
}

static cv_status mac(struct cv_keyring *kr, const char *label, const char *m, const void *data,
                     size_t len, unsigned char out[32])
{
    (void)kr;
    unsigned long long h = 1469598103934665603ULL;
    const unsigned char *parts[3] = {(const unsigned char *)label, (const unsigned char *)m, data};
    size_t lens[3] = {strlen(label), strlen(m), len};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < lens[p]; i++)
            h = (h ^ parts[p][i]) * 1099511628211ULL;
    for (size_t i = 0; i < 32; i++) {
        h = (h ^ i) * 1099511628211ULL;
        out[i] = (unsigned char)(h >> 24);
    }
    return CV_OK;
}

static cv_status audit_append(struct cv_store *st, const struct cv_audit_event *ev)
{
    (void)st;
    if (F.n_audit < 8) {
        snprintf(F.audit_outcome[F.n_audit], 48, "%s:%s", ev->action, ev->outcome);
        snprintf(F.audit_detail[F.n_audit], 512, "%s|%s", ev->detail ? ev->detail : "",
                 ev->token ? ev->token : "");
        F.n_audit++;
    }
    return CV_OK;
}

static int find_idem(const char *m, const unsigned char key[32])
{
    for (int i = 0; i < 4; i++)
        if (F.idem[i].used && strcmp(F.idem[i].merchant, m) == 0 &&
            memcmp(F.idem[i].key, key, 32) == 0)
            return i;
    return -1;
}

static cv_status idem_claim(struct cv_store *st, const char *m, const unsigned char key[32],
                            const unsigned char req[32], int64_t ttl, int64_t stale, bool durable,
                            enum cv_idem_claim *outcome, struct cv_idem_record *rec)
{
    (void)st;
    (void)ttl;
    (void)stale;
    F.claims++;
    F.lazy_claims += durable ? 0 : 1;
    memset(rec, 0, sizeof(*rec));
    int i = find_idem(m, key);
    if (i >= 0) {
        *outcome = CV_IDEM_TAKEN;
        rec->done = F.idem[i].done;
        memcpy(rec->request_hash, F.idem[i].req, 32);
        rec->status_code = F.idem[i].code;
        rec->response_body = F.idem[i].body != NULL ? strdup(F.idem[i].body) : NULL;
        return CV_OK;
    }
    for (i = 0; i < 4 && F.idem[i].used; i++)
        ;
    if (i == 4)
        return CV_ERR_DB;
    F.idem[i].used = true;
    snprintf(F.idem[i].merchant, sizeof(F.idem[i].merchant), "%s", m);
    memcpy(F.idem[i].key, key, 32);
    memcpy(F.idem[i].req, req, 32);
    *outcome = CV_IDEM_CLAIMED;
    return CV_OK;
}

static cv_status idem_complete(struct cv_store *st, const char *m, const unsigned char key[32],
                               int code, const char *body)
{
    (void)st;
    int i = find_idem(m, key);
    if (i < 0)
        return CV_ERR_NOT_FOUND;
    F.idem[i].done = true;
    F.idem[i].code = code;
    F.idem[i].body = strdup(body);
    return CV_OK;
}

static cv_status idem_release(struct cv_store *st, const char *m, const unsigned char key[32])
{
    (void)st;
    int i = find_idem(m, key);
    if (i >= 0 && !F.idem[i].done)
        memset(&F.idem[i], 0, sizeof(F.idem[i]));
    return CV_OK;
}

static const struct cv_store_ops store_ops = {
    .get_token = get_token,
    .audit_append = audit_append,
    .idem_claim = idem_claim,
    .idem_complete = idem_complete,
    .idem_release = idem_release,
};
static const struct cv_keyring_ops keyring_ops = {.open_row = open_row, .mac = mac};

static cv_status allowed(void *ctx, const char *dest, const char *method, const char *path)
{
    (void)ctx;
    (void)method;
    (void)path;
    return F.dest_refused || strcmp(dest, "acme") != 0 ? CV_ERR_RELAY_DESTINATION_UNKNOWN : CV_OK;
}

static cv_status send(void *ctx, const struct cv_relay_outbound *req, struct cv_relay_answer *ans,
                      bool *maybe_sent)
{
    (void)ctx;
    F.sends++;
    snprintf(F.sent_body, sizeof(F.sent_body), "%.*s", (int)req->body_len,
             req->body != NULL ? (const char *)req->body : "");
    snprintf(F.sent_path, sizeof(F.sent_path), "%s", req->path);
    F.sent_headers = req->n_headers;
    *maybe_sent = F.send_maybe_sent;
    if (F.send_fails != CV_OK)
        return F.send_fails;
    ans->status = 201;
    ans->headers[0] = (struct cv_relay_header){strdup("Content-Type"), strdup("application/json")};
    ans->headers[1] = (struct cv_relay_header){strdup("Set-Cookie"), strdup("sid=" PAN)};
    ans->headers[2] = (struct cv_relay_header){strdup("X-Request-Id"), strdup("echo " PAN)};
    ans->n_headers = 3;
    const char *b = F.answer_body != NULL ? F.answer_body : "{\"ok\":true}";
    ans->body = strdup(b);
    ans->body_len = strlen(b);
    return CV_OK;
}

static cv_status hold_take(void *ctx, const char *m, const char *token, const char *hold,
                           char cvc[5])
{
    (void)ctx;
    F.hold_takes++;
    snprintf(F.hold_token, sizeof(F.hold_token), "%s", token);
    if (F.hold_status != CV_OK || strcmp(m, MERCHANT_A) != 0 || strcmp(hold, HOLD) != 0)
        return F.hold_status != CV_OK ? F.hold_status : CV_ERR_NOT_FOUND;
    memcpy(cvc, CVC, 4);
    return CV_OK;
}

static const struct cv_relay_ops relay_ops = {allowed, send, hold_take};

static void sleep_ms(void *ctx, unsigned ms)
{
    (void)ctx;
    (void)ms;
}

static time_t now(void *ctx)
{
    (void)ctx;
    return 1781524800;
}

static void reset(void)
{
    for (size_t i = 0; i < F.n_rows; i++)
        free(F.rows[i].ciphertext);
    for (int i = 0; i < 4; i++)
        free(F.idem[i].body);
    memset(&F, 0, sizeof(F));
    add_row(MERCHANT_A, TOK_A, PAN);
    add_row(MERCHANT_A, TOK_A2, PAN2);
    add_row(MERCHANT_B, TOK_B, "4000056655665556");
}

/* ---- driving ---- */

struct captured {
    struct cv_completion done;
    struct cv_result res;
    int calls;
};

static void capture(struct cv_completion *self, struct cv_result *r)
{
    struct captured *c = (struct captured *)(void *)self;
    c->res = *r;
    memset(r, 0, sizeof(*r));
    c->calls++;
}

static bool no_relay_client; /* deps without relay_ops: no destinations file */

static const struct cv_principal who_a = {MERCHANT_A, "rk_aaaaaaaaa", CV_SCOPE_RELAY, ""};

static struct cv_result run_as(const struct cv_principal *who, const char *dest, const char *hold,
                               const char *idem, const char *json)
{
    struct cv_handler_deps d;
    memset(&d, 0, sizeof(d));
    d.store_ops = &store_ops;
    d.keyring_ops = &keyring_ops;
    d.clock = (struct cv_clock){now, sleep_ms, NULL};
    d.idempotency_ttl_s = 86400;
    d.relay_ops = no_relay_client ? NULL : &relay_ops;
    struct cv_relay_req req;
    struct cv_json_param param;
    cv_status st = cv_json_decode_relay(json, strlen(json), &req, &param);
    if (st != CV_OK) {
        fprintf(stderr, "  test body does not decode (%s)\n", cv_status_name(st));
        abort();
    }
    struct cv_call call = {.request_id = "req_testtesttesttesttest",
                           .who = who,
                           .idempotency_key = idem,
                           .relay = &req,
                           .destination = dest,
                           .hold = hold};
    struct captured c;
    memset(&c, 0, sizeof(c));
    c.done.finish = capture;
    cv_api_relay(&d, &call, &c.done);
    CHECK_EQ_INT(c.calls, 1);
    cv_relay_req_cleanup(&req);
    return c.res;
}

static struct cv_result run(const char *hold, const char *idem, const char *json)
{
    return run_as(&who_a, "acme", hold, idem, json);
}

static bool has(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

#define CHARGE                                                                                     \
    "{\"method\":\"POST\",\"path\":\"/v1/charges\",\"headers\":{\"Content-Type\":"                 \
    "\"application/json\",\"Authorization\":\"" SECRET "\"},\"body\":\"{\\\"number\\\":"           \
    "\\\"{{card.number}}\\\",\\\"exp\\\":\\\"{{card.exp_month}}/{{card.exp_year2}}\\\","           \
    "\\\"cvc\\\":\\\"{{card.cvc}}\\\",\\\"name\\\":\\\"{{card.name}}\\\"}\",\"tokens\":{\"card\":" \
    "\"" TOK_A "\"}}"

#define NO_CVC                                                                                     \
    "{\"method\":\"POST\",\"path\":\"/v1/charges\",\"headers\":{\"Content-Type\":"                 \
    "\"application/x-www-form-urlencoded\"},\"body\":\"n={{card.number}}&y={{card.exp_year}}\","   \
    "\"tokens\":{\"card\":\"" TOK_A "\"}}"

static void audit_is_clean(void)
{
    for (size_t i = 0; i < F.n_audit; i++) {
        size_t n = strlen(F.audit_detail[i]);
        CHECK(!has(F.audit_detail[i], n, PAN));
        CHECK(!has(F.audit_detail[i], n, CVC));
        CHECK(!has(F.audit_detail[i], n, "hold_"));
        CHECK(!has(F.audit_detail[i], n, "proc_secret"));
        CHECK(!has(F.audit_detail[i], n, "/v1/charges"));
    }
}

static void relay_sends_the_card_and_redacts_the_echo(void)
{
    reset();
    F.answer_body = "{\"id\":\"ch_1\",\"card\":\"" PAN "\",\"cvc\":\"" CVC "\",\"amount\":1000}";
    struct cv_result r = run(HOLD, NULL, CHARGE);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK_EQ_INT(F.sends, 1);
    CHECK(strcmp(F.sent_body, "{\"number\":\"" PAN "\",\"exp\":\"03/31\",\"cvc\":\"" CVC
                              "\",\"name\":\"Ada \\\"Quote\\\" Lovelace\"}") == 0);
    CHECK(strcmp(F.sent_path, "/v1/charges") == 0);
    CHECK_EQ_INT(F.sent_headers, 2);
    CHECK_EQ_INT(F.hold_takes, 1);
    CHECK(strcmp(F.hold_token, TOK_A) == 0);
    CHECK(r.body != NULL && !has(r.body, r.body_len, PAN) && !has(r.body, r.body_len, CVC));
    CHECK(r.body != NULL && has(r.body, r.body_len, "\"status\":201"));
    CHECK(r.body != NULL && has(r.body, r.body_len, "\"content-type\":\"application/json\""));
    CHECK(r.body != NULL && has(r.body, r.body_len, "\"x-request-id\":\"echo ****"));
    CHECK(r.body != NULL && !has(r.body, r.body_len, "sid="));
    CHECK(r.body != NULL && has(r.body, r.body_len, "\\\"amount\\\":1000"));
    CHECK_EQ_INT(F.n_audit, 1);
    CHECK(strcmp(F.audit_outcome[0], "relay.send:success") == 0);
    CHECK(has(F.audit_detail[0], strlen(F.audit_detail[0]), "destination=acme"));
    CHECK(has(F.audit_detail[0], strlen(F.audit_detail[0]), "upstream_status=201"));
    CHECK(has(F.audit_detail[0], strlen(F.audit_detail[0]), "card:" TOK_A));
    audit_is_clean();
    cv_result_cleanup(&r);
}

static void other_merchants_token_is_not_found_and_nothing_is_sent(void)
{
    reset();
    const char *j = "{\"method\":\"POST\",\"path\":\"/x\",\"headers\":{\"Content-Type\":"
                    "\"application/json\"},\"body\":\"{\\\"n\\\":\\\"{{card.number}}\\\"}\","
                    "\"tokens\":{\"card\":\"" TOK_B "\"}}";
    struct cv_result r = run(NULL, NULL, j);
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    CHECK_EQ_INT(F.sends, 0);
    const char *missing = "{\"method\":\"POST\",\"path\":\"/x\",\"tokens\":{\"card\":"
                          "\"tok_zzzzzzzzzzzzzzzzzzzzzz\"}}";
    struct cv_result r2 = run(NULL, NULL, missing);
    CHECK_EQ_INT(r2.status, CV_ERR_NOT_FOUND);
    const char *malformed = "{\"method\":\"POST\",\"path\":\"/x\",\"tokens\":{\"card\":\"x\"}}";
    struct cv_result r3 = run(NULL, NULL, malformed);
    CHECK_EQ_INT(r3.status, CV_ERR_NOT_FOUND);
    CHECK_EQ_INT(F.sends, 0);
    CHECK_EQ_INT(F.n_audit, 3);
    CHECK(strcmp(F.audit_outcome[0], "relay.send:token_not_found") == 0);
    audit_is_clean();
}

static void cvc_placeholder_needs_a_hold_and_a_hold_needs_one(void)
{
    reset();
    struct cv_result r = run(NULL, NULL, CHARGE);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_HOLD_REQUIRED);
    CHECK(r.error_param != NULL && strcmp(r.error_param, "CardVault-Hold") == 0);
    r = run(HOLD, NULL, NO_CVC);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_HOLD_UNUSED);
    r = run("hold with spaces", NULL, CHARGE);
    CHECK_EQ_INT(r.status, CV_ERR_BAD_REQUEST);
    CHECK_EQ_INT(F.hold_takes, 0);
    CHECK_EQ_INT(F.get_token_calls, 0);
    CHECK_EQ_INT(F.sends, 0);
}

static void hold_gone_sends_nothing(void)
{
    reset();
    F.hold_status = CV_ERR_IDEMPOTENCY_IN_USE; /* any status the hold table answers */
    struct cv_result r = run(HOLD, NULL, CHARGE);
    CHECK_EQ_INT(r.status, CV_ERR_IDEMPOTENCY_IN_USE);
    CHECK_EQ_INT(F.sends, 0);
    /* a hold is bound to its merchant: another one's key finds nothing */
    reset();
    const struct cv_principal who_b = {MERCHANT_B, "rk_bbbbbbbbb", CV_SCOPE_RELAY, ""};
    const char *j = "{\"method\":\"POST\",\"path\":\"/x\",\"headers\":{\"Content-Type\":"
                    "\"application/json\"},\"body\":\"{\\\"c\\\":\\\"{{card.cvc}}\\\"}\","
                    "\"tokens\":{\"card\":\"" TOK_B "\"}}";
    r = run_as(&who_b, "acme", HOLD, NULL, j);
    CHECK_EQ_INT(r.status, CV_ERR_NOT_FOUND);
    CHECK_EQ_INT(F.sends, 0);
}

static void placeholders_outside_the_body_are_refused(void)
{
    reset();
    const char *in_path = "{\"method\":\"POST\",\"path\":\"/v1/{{card.number}}\",\"tokens\":"
                          "{\"card\":\"" TOK_A "\"}}";
    struct cv_result r = run(NULL, NULL, in_path);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED);
    CHECK(r.error_param != NULL && strcmp(r.error_param, "path") == 0);
    const char *in_header = "{\"method\":\"POST\",\"path\":\"/v1\",\"headers\":{\"X-Card\":"
                            "\"{{card.number}}\"},\"tokens\":{\"card\":\"" TOK_A "\"}}";
    r = run(NULL, NULL, in_header);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED);
    CHECK(r.error_param != NULL && strcmp(r.error_param, "headers") == 0);
    const char *unknown = "{\"method\":\"POST\",\"path\":\"/v1\",\"headers\":{\"Content-Type\":"
                          "\"application/json\"},\"body\":\"{\\\"n\\\":\\\"{{card.nummer}}\\\"}\","
                          "\"tokens\":{\"card\":\"" TOK_A "\"}}";
    r = run(NULL, NULL, unknown);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK(r.error_param != NULL && strcmp(r.error_param, "card.nummer") == 0);
    const char *xml = "{\"method\":\"POST\",\"path\":\"/v1\",\"headers\":{\"Content-Type\":"
                      "\"text/xml\"},\"body\":\"<n>{{card.number}}</n>\",\"tokens\":{\"card\":"
                      "\"" TOK_A "\"}}";
    r = run(NULL, NULL, xml);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_CONTENT_TYPE);
    const char *two_cvc =
        "{\"method\":\"POST\",\"path\":\"/v1\",\"headers\":{\"Content-Type\":"
        "\"application/json\"},\"body\":\"{\\\"a\\\":\\\"{{card.cvc}}\\\","
        "\\\"b\\\":\\\"{{b.cvc}}\\\"}\",\"tokens\":{\"card\":\"" TOK_A "\",\"b\":\"" TOK_A2 "\"}}";
    r = run(HOLD, NULL, two_cvc);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED);
    CHECK_EQ_INT(F.sends, 0);
    CHECK_EQ_INT(F.get_token_calls, 0);
    CHECK_EQ_INT(F.hold_takes, 0);
}

static void unlisted_destination_opens_no_token(void)
{
    reset();
    struct cv_result r = run_as(&who_a, "evil", NULL, NULL, NO_CVC);
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_DESTINATION_UNKNOWN);
    CHECK_EQ_INT(F.get_token_calls, 0);
    CHECK_EQ_INT(F.sends, 0);
    CHECK_EQ_INT(F.n_audit, 1);
    CHECK(has(F.audit_detail[0], strlen(F.audit_detail[0]), "(not listed)"));
}

static void without_destinations_every_relay_is_unknown(void)
{
    reset();
    no_relay_client = true;
    struct cv_result r = run(NULL, NULL, NO_CVC);
    no_relay_client = false;
    CHECK_EQ_INT(r.status, CV_ERR_RELAY_DESTINATION_UNKNOWN);
    CHECK_EQ_INT(F.get_token_calls, 0);
    CHECK_EQ_INT(F.sends, 0);
}

static void two_tokens_by_alias(void)
{
    reset();
    const char *j =
        "{\"method\":\"POST\",\"path\":\"/v1\",\"headers\":{\"Content-Type\":"
        "\"application/x-www-form-urlencoded\"},\"body\":\"a={{card.number}}&b="
        "{{backup.number}}\",\"tokens\":{\"card\":\"" TOK_A "\",\"backup\":\"" TOK_A2 "\"}}";
    F.answer_body = "echo " PAN " and " PAN2;
    struct cv_result r = run(NULL, NULL, j);
    CHECK_EQ_INT(r.status, CV_OK);
    CHECK(strcmp(F.sent_body, "a=" PAN "&b=" PAN2) == 0);
    CHECK(r.body != NULL && !has(r.body, r.body_len, PAN) && !has(r.body, r.body_len, PAN2));
    CHECK(has(F.audit_detail[0], strlen(F.audit_detail[0]), "backup:" TOK_A2));
    cv_result_cleanup(&r);
}

static void idempotency_key_sends_once_and_replays(void)
{
    reset();
    F.answer_body = "{\"card\":\"" PAN "\"}";
    struct cv_result r1 = run(HOLD, "order-1", CHARGE);
    struct cv_result r2 = run(HOLD, "order-1", CHARGE);
    CHECK_EQ_INT(r1.status, CV_OK);
    CHECK_EQ_INT(r2.status, CV_OK);
    CHECK(r2.replayed);
    CHECK_EQ_INT(F.sends, 1);
    /* the claim that guards the outbound call is on disk before it goes */
    CHECK(F.claims >= 2 && F.lazy_claims == 0);
    CHECK_EQ_INT(F.hold_takes, 1); /* a replay takes no hold */
    CHECK_EQ_INT(F.n_audit, 1);    /* and adds no audit event */
    CHECK(r1.body != NULL && r2.body != NULL && strcmp(r1.body, r2.body) == 0);
    CHECK(F.idem[0].body != NULL && !has(F.idem[0].body, strlen(F.idem[0].body), PAN));
    /* the same key with another request */
    struct cv_result r3 = run(NULL, "order-1", NO_CVC);
    CHECK_EQ_INT(r3.status, CV_ERR_IDEMPOTENCY_REUSED);
    CHECK_EQ_INT(F.sends, 1);
    cv_result_cleanup(&r1);
    cv_result_cleanup(&r2);
}

static void failure_that_may_have_reached_the_processor_never_sends_again(void)
{
    reset();
    F.send_fails = CV_ERR_IO;
    F.send_maybe_sent = true;
    struct cv_result r1 = run(NULL, "order-2", NO_CVC);
    CHECK_EQ_INT(r1.status, CV_ERR_IO);
    F.send_fails = CV_OK;
    struct cv_result r2 = run(NULL, "order-2", NO_CVC);
    CHECK_EQ_INT(r2.status, CV_ERR_IO);
    CHECK_EQ_INT(F.sends, 1);
    CHECK(strcmp(F.audit_outcome[0], "relay.send:io_error") == 0);
    CHECK_EQ_INT(F.n_audit, 1); /* the replay of the failure is no new relay */
}

static void failure_before_any_byte_left_frees_the_key(void)
{
    reset();
    F.send_fails = CV_ERR_IO;
    F.send_maybe_sent = false;
    struct cv_result r1 = run(NULL, "order-3", NO_CVC);
    CHECK_EQ_INT(r1.status, CV_ERR_IO);
    F.send_fails = CV_OK;
    struct cv_result r2 = run(NULL, "order-3", NO_CVC);
    CHECK_EQ_INT(r2.status, CV_OK);
    CHECK_EQ_INT(F.sends, 2);
    cv_result_cleanup(&r2);
    /* a refusal before sending (a missing token) releases the key too */
    const char *missing = "{\"method\":\"POST\",\"path\":\"/x\",\"tokens\":{\"card\":"
                          "\"tok_zzzzzzzzzzzzzzzzzzzzzz\"}}";
    struct cv_result r3 = run(NULL, "order-4", missing);
    CHECK_EQ_INT(r3.status, CV_ERR_NOT_FOUND);
    CHECK(find_idem(MERCHANT_A, F.idem[0].key) >= 0); /* order-3's record stays */
    int live = 0;
    for (int i = 0; i < 4; i++)
        live += F.idem[i].used ? 1 : 0;
    CHECK_EQ_INT(live, 1);
}

static void answer_headers_pass_only_the_safe_few(void)
{
    CHECK(cv_api_relay_header_passes("Content-Type"));
    CHECK(cv_api_relay_header_passes("date"));
    CHECK(cv_api_relay_header_passes("Retry-After"));
    CHECK(!cv_api_relay_header_passes("Set-Cookie"));
    CHECK(!cv_api_relay_header_passes("Location"));
    CHECK(!cv_api_relay_header_passes("Authorization"));
}

int main(void)
{
    RUN(relay_sends_the_card_and_redacts_the_echo);
    RUN(other_merchants_token_is_not_found_and_nothing_is_sent);
    RUN(cvc_placeholder_needs_a_hold_and_a_hold_needs_one);
    RUN(hold_gone_sends_nothing);
    RUN(placeholders_outside_the_body_are_refused);
    RUN(unlisted_destination_opens_no_token);
    RUN(without_destinations_every_relay_is_unknown);
    RUN(two_tokens_by_alias);
    RUN(idempotency_key_sends_once_and_replays);
    RUN(failure_that_may_have_reached_the_processor_never_sends_again);
    RUN(failure_before_any_byte_left_frees_the_key);
    RUN(answer_headers_pass_only_the_safe_few);
    reset();
    for (size_t i = 0; i < F.n_rows; i++)
        free(F.rows[i].ciphertext);
    return check_summary("api_relay");
}
