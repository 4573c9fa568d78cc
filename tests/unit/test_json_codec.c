/* test_json_codec.c: strict decoding of tokenize bodies and the encoders.
 * A lenient decoder is how a typo ("cvv") or a smuggled second "pan" gets
 * through, so every relaxation a JSON library might allow is tried here:
 * duplicate keys, trailing garbage, non-object roots, NUL inside strings,
 * invalid UTF-8, wrong types for every field, bodies that are not
 * NUL-terminated. Encoders are checked by parsing what they produce. */
#include "cardvault/json_codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"

#define GOOD_BODY                                                                                  \
    "{\"pan\":\"4242 4242 4242 4242\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\","         \
    "\"cardholder_name\":\"HANAKO YAMADA\"}"

/* The field the last decode named; *param points here (or is NULL). */
static struct cv_json_param last_param;

/* Decodes body from an exact-size heap copy (no NUL after it: any read past
 * len is an ASan report) and returns the status; param is reported out
 * (NULL when the decoder named no field). */
static cv_status decode(const char *body, size_t len, struct cv_tokenize_req *req,
                        const char **param)
{
    char *copy = malloc(len == 0 ? 1 : len);
    memcpy(copy, body, len);
    memcpy(last_param.name, "sentinel", sizeof("sentinel"));
    cv_status st = cv_json_decode_tokenize(copy, len, req, &last_param);
    *param = last_param.name[0] != '\0' ? last_param.name : NULL;
    free(copy);
    return st;
}

/* cv_json_decode_empty, reported like decode. */
static cv_status decode_empty(const char *body, size_t len, const char **param)
{
    memcpy(last_param.name, "sentinel", sizeof("sentinel"));
    cv_status st = cv_json_decode_empty(body, len, &last_param);
    *param = last_param.name[0] != '\0' ? last_param.name : NULL;
    return st;
}

static cv_status decode_s(const char *body, struct cv_tokenize_req *req, const char **param)
{
    return decode(body, strlen(body), req, param);
}

/* Expects status st and param (NULL for none); the request must be empty. */
static void expect(const char *body, size_t len, cv_status st, const char *param)
{
    struct cv_tokenize_req req;
    const char *got = NULL;
    cv_status s = decode(body, len, &req, &got);
    if (s != st)
        fprintf(stderr, "  body %.60s: %s, want %s\n", body, cv_status_name(s), cv_status_name(st));
    CHECK_EQ_INT(s, st);
    if (param == NULL) {
        CHECK(got == NULL);
    } else {
        CHECK(got != NULL && strcmp(got, param) == 0);
    }
    /* A refused body leaves nothing behind to free. */
    CHECK(req.pan == NULL && req.cvc == NULL && req.name == NULL);
    cv_tokenize_req_cleanup(&req);
}

static void expect_s(const char *body, cv_status st, const char *param)
{
    expect(body, strlen(body), st, param);
}

static bool secbuf_is(const struct cv_secbuf *b, const char *s)
{
    return b != NULL && b->len == strlen(s) && memcmp(b->data, s, b->len) == 0 &&
           b->data[b->len] == '\0';
}

/* Parses encoder output with jansson; the caller decrefs. */
static json_t *parse(const char *text, size_t len)
{
    json_error_t err;
    CHECK_EQ_INT(strlen(text), len);
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    CHECK(v != NULL && json_is_object(v));
    return v;
}

static bool has_string(const json_t *o, const char *key, const char *value)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) && strcmp(json_string_value(v), value) == 0;
}

/* ---- tokenize: happy paths --------------------------------------------------------- */

static void decodes_a_full_tokenize_body(void)
{
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK_EQ_INT(decode_s(GOOD_BODY, &req, &param), CV_OK);
    CHECK(param == NULL);
    CHECK(secbuf_is(req.pan, "4242 4242 4242 4242")); /* separators are card.c's business */
    CHECK(secbuf_is(req.cvc, "123"));
    CHECK(secbuf_is(req.name, "HANAKO YAMADA"));
    CHECK_EQ_INT(req.exp_month, 12);
    CHECK_EQ_INT(req.exp_year, 2030);
    CHECK(!req.reuse_existing);
    cv_tokenize_req_cleanup(&req);
    CHECK(req.pan == NULL && req.cvc == NULL && req.name == NULL);
}

static void decodes_the_minimal_body_and_optional_fields(void)
{
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK_EQ_INT(
        decode_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031}", &req, &param),
        CV_OK);
    CHECK(secbuf_is(req.pan, "4242424242424242"));
    CHECK(req.cvc == NULL && req.name == NULL && !req.reuse_existing);
    cv_tokenize_req_cleanup(&req);

    CHECK_EQ_INT(decode_s(" \n{ \"exp_year\" : 2031 , \"reuse_existing\" : true ,\n"
                          "\"exp_month\":1, \"pan\":\"4242424242424242\" }\n ",
                          &req, &param),
                 CV_OK);
    CHECK(req.reuse_existing);
    cv_tokenize_req_cleanup(&req);

    CHECK_EQ_INT(decode_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
                          "\"reuse_existing\":false}",
                          &req, &param),
                 CV_OK);
    CHECK(!req.reuse_existing);
    cv_tokenize_req_cleanup(&req);
}

static void decodes_escaped_and_non_ascii_strings(void)
{
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK_EQ_INT(
        decode_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
                 "\"cardholder_name\":\"Jos\\u00e9 \\\"Pep\\\" \xe5\xb1\xb1\xe7\x94\xb0\"}",
                 &req, &param),
        CV_OK);
    CHECK(secbuf_is(req.name, "Jos\xc3\xa9 \"Pep\" \xe5\xb1\xb1\xe7\x94\xb0"));
    cv_tokenize_req_cleanup(&req);
}

static void decodes_a_body_that_is_not_nul_terminated(void)
{
    /* The HTTP layer hands over a length, not a C string: bytes after len
     * (here a second object) must never be looked at. */
    const char body[] = GOOD_BODY "{\"pan\":1}";
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK_EQ_INT(decode(body, strlen(GOOD_BODY), &req, &param), CV_OK);
    cv_tokenize_req_cleanup(&req);
}

/* ---- tokenize: hostile twins ------------------------------------------------------------- */

static void invalid_json_for_syntax_errors(void)
{
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031", CV_ERR_INVALID_JSON,
             NULL);
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{'pan':'4242424242424242'}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{pan:\"4242424242424242\"}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\":\"4242\n4242\"}", CV_ERR_INVALID_JSON, NULL); /* raw control char */
    expect_s("{\"exp_month\":01,\"pan\":\"4\",\"exp_year\":2031}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"exp_month\":NaN,\"pan\":\"4\",\"exp_year\":2031}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\":\"\\x41\"}", CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\":\"\\ud800\"}", CV_ERR_INVALID_JSON, NULL);  /* lone surrogate */
    expect_s("{\"pan\":\"\xff\xfe\"}", CV_ERR_INVALID_JSON, NULL); /* invalid UTF-8 */
    expect_s("{\"pan\":\"\xc0\xb4\"}", CV_ERR_INVALID_JSON, NULL); /* overlong '4' */
    expect_s("\xef\xbb\xbf" GOOD_BODY, CV_ERR_INVALID_JSON, NULL); /* byte-order mark */
    /* An integer jansson cannot hold is a syntax error there, not a wrap-around. */
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":99999999999999999999,\"exp_year\":2031}",
             CV_ERR_INVALID_JSON, NULL);
}

static void invalid_json_for_trailing_garbage(void)
{
    expect_s(GOOD_BODY "x", CV_ERR_INVALID_JSON, NULL);
    expect_s(GOOD_BODY "{}", CV_ERR_INVALID_JSON, NULL);
    expect_s(GOOD_BODY GOOD_BODY, CV_ERR_INVALID_JSON, NULL);
    expect_s(GOOD_BODY ",", CV_ERR_INVALID_JSON, NULL);
    /* A NUL byte and then more: the length says the body goes on. */
    const char with_nul[] = GOOD_BODY "\0{}";
    expect(with_nul, sizeof(with_nul) - 1, CV_ERR_INVALID_JSON, NULL);
}

static void invalid_json_for_non_object_roots(void)
{
    expect_s("[" GOOD_BODY "]", CV_ERR_INVALID_JSON, NULL);
    expect_s("[]", CV_ERR_INVALID_JSON, NULL);
    expect_s("\"4242424242424242\"", CV_ERR_INVALID_JSON, NULL);
    expect_s("4242424242424242", CV_ERR_INVALID_JSON, NULL);
    expect_s("3.5", CV_ERR_INVALID_JSON, NULL);
    expect_s("true", CV_ERR_INVALID_JSON, NULL);
    expect_s("null", CV_ERR_INVALID_JSON, NULL);
}

static void invalid_json_for_duplicate_keys(void)
{
    expect_s("{\"pan\":\"4242424242424242\",\"pan\":\"5555555555554444\",\"exp_month\":1,"
             "\"exp_year\":2031}",
             CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"exp_month\":2}",
             CV_ERR_INVALID_JSON, NULL);
    /* The same key spelled with an escape is still the same key. */
    expect_s("{\"pan\":\"4242424242424242\",\"p\\u0061n\":\"5555555555554444\",\"exp_month\":1,"
             "\"exp_year\":2031}",
             CV_ERR_INVALID_JSON, NULL);
}

static void invalid_json_for_empty_and_blank_bodies(void)
{
    expect("", 0, CV_ERR_INVALID_JSON, NULL);
    expect_s("   \n", CV_ERR_INVALID_JSON, NULL);
    expect_s("{", CV_ERR_INVALID_JSON, NULL);
}

static void nul_inside_a_string_is_rejected(void)
{
    /* "4242424242424242\u0000" would survive a strlen-based check and
     * smuggle bytes past every validator that stops at NUL. */
    expect_s("{\"pan\":\"4242424242424242\\u0000\",\"exp_month\":1,\"exp_year\":2031}",
             CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
             "\"cardholder_name\":\"A\\u0000B\"}",
             CV_ERR_INVALID_JSON, NULL);
    expect_s("{\"pan\\u0000\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031}",
             CV_ERR_INVALID_JSON, NULL);
    const char raw[] = "{\"pan\":\"4242\0\",\"exp_month\":1,\"exp_year\":2031}";
    expect(raw, sizeof(raw) - 1, CV_ERR_INVALID_JSON, NULL);
}

static void unknown_field_is_named_when_safe_to_echo(void)
{
    /* A name of ASCII letters, digits and '_' (at most 64 bytes, fewer
     * than 6 digits) is named, so the client sees its typo. */
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"cvv\":\"123\"}",
             CV_ERR_UNKNOWN_FIELD, "cvv");
    expect_s("{\"PAN\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031}",
             CV_ERR_UNKNOWN_FIELD, "PAN");
    expect_s("{\"pan\":\"4242424242424242\",\"card_2\":1}", CV_ERR_UNKNOWN_FIELD, "card_2");
    expect_s("{\"a12345\":1}", CV_ERR_UNKNOWN_FIELD, "a12345"); /* 5 digits */
    char key64[65];
    memset(key64, 'k', 64);
    key64[64] = '\0';
    char body[160];
    snprintf(body, sizeof(body), "{\"%s\":1}", key64);
    expect_s(body, CV_ERR_UNKNOWN_FIELD, key64);
    /* The first unknown field in document order is the one named. */
    expect_s("{\"zz\":1,\"yy\":2}", CV_ERR_UNKNOWN_FIELD, "zz");
}

static void unknown_field_is_not_named_when_it_could_carry_card_data(void)
{
    /* Anything else is client text that could hold card data: no param. */
    expect_s("{\"pan \":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031}",
             CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
             "\"4242424242424242\":true}",
             CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"a123456\":1}", CV_ERR_UNKNOWN_FIELD, NULL);      /* 6 digits */
    expect_s("{\"4a2b4c2d4e2f\":1}", CV_ERR_UNKNOWN_FIELD, NULL); /* 6 digits, spread */
    expect_s("{\"card-number\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"cv c\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"caf\u00e9\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"a\\\"b\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    expect_s("{\"x\\u0001\":1}", CV_ERR_UNKNOWN_FIELD, NULL);
    char key65[66];
    memset(key65, 'k', 65);
    key65[65] = '\0';
    char body[160];
    snprintf(body, sizeof(body), "{\"%s\":1}", key65);
    expect_s(body, CV_ERR_UNKNOWN_FIELD, NULL);
}

static void param_echo_rule(void)
{
    CHECK(cv_json_param_is_echoable("cvv", 3));
    CHECK(cv_json_param_is_echoable("Card_Number_12345", 17));
    CHECK(!cv_json_param_is_echoable("Card_Number_123456", 18));
    CHECK(!cv_json_param_is_echoable("", 0));
    CHECK(!cv_json_param_is_echoable("a.b", 3));
    CHECK(!cv_json_param_is_echoable("a\0b", 3));
    CHECK(!cv_json_param_is_echoable("\xc3\xa9", 2));
}

static void missing_field_names_the_field(void)
{
    expect_s("{\"exp_month\":1,\"exp_year\":2031}", CV_ERR_MISSING_FIELD, "pan");
    expect_s("{\"pan\":\"4242424242424242\",\"exp_year\":2031}", CV_ERR_MISSING_FIELD, "exp_month");
    expect_s("{\"pan\":\"4242424242424242\",\"exp_month\":1}", CV_ERR_MISSING_FIELD, "exp_year");
    expect_s("{\"cvc\":\"123\"}", CV_ERR_MISSING_FIELD, "pan");
    expect_s("{}", CV_ERR_MISSING_FIELD, "pan");
}

static void invalid_type_names_the_field(void)
{
    static const struct {
        const char *body;
        const char *param;
    } cases[] = {
        {"{\"pan\":4242424242424242,\"exp_month\":1,\"exp_year\":2031}", "pan"},
        {"{\"pan\":[\"4242424242424242\"],\"exp_month\":1,\"exp_year\":2031}", "pan"},
        {"{\"pan\":{\"n\":\"4242424242424242\"},\"exp_month\":1,\"exp_year\":2031}", "pan"},
        {"{\"pan\":null,\"exp_month\":1,\"exp_year\":2031}", "pan"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":\"12\",\"exp_year\":2031}", "exp_month"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":12.0,\"exp_year\":2031}", "exp_month"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1e1,\"exp_year\":2031}", "exp_month"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":null,\"exp_year\":2031}", "exp_month"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":true,\"exp_year\":2031}", "exp_month"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":\"2031\"}", "exp_year"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031.5}", "exp_year"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":null}", "exp_year"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"cvc\":true}", "cvc"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"cvc\":123}", "cvc"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,\"cvc\":null}", "cvc"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
         "\"cardholder_name\":null}",
         "cardholder_name"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
         "\"cardholder_name\":[]}",
         "cardholder_name"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
         "\"reuse_existing\":\"true\"}",
         "reuse_existing"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
         "\"reuse_existing\":1}",
         "reuse_existing"},
        {"{\"pan\":\"4242424242424242\",\"exp_month\":1,\"exp_year\":2031,"
         "\"reuse_existing\":null}",
         "reuse_existing"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_s(cases[i].body, CV_ERR_INVALID_TYPE, cases[i].param);
}

static void integers_pass_through_for_card_validation_to_judge(void)
{
    /* Range checks belong to card.c (with the right error code): the codec
     * passes any integer through unchanged, including hostile extremes. */
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK_EQ_INT(decode_s("{\"pan\":\"x\",\"exp_month\":-9223372036854775808,"
                          "\"exp_year\":9223372036854775807}",
                          &req, &param),
                 CV_OK);
    CHECK(req.exp_month == (-9223372036854775807LL - 1));
    CHECK(req.exp_year == 9223372036854775807LL);
    cv_tokenize_req_cleanup(&req);
}

static void deeply_nested_values_are_refused_without_crashing(void)
{
    /* Recursion depth is jansson's to bound; the answer must be an error. */
    size_t depth = 100000;
    char *body = malloc(2 * depth + 64);
    size_t n = (size_t)snprintf(body, 2 * depth + 64, "{\"pan\":");
    memset(body + n, '[', depth);
    n += depth;
    memset(body + n, ']', depth);
    n += depth;
    n += (size_t)snprintf(body + n, 2 * depth + 64 - n, "}");
    struct cv_tokenize_req req;
    const char *param = NULL;
    CHECK(decode(body, n, &req, &param) != CV_OK);
    free(body);
}

static void cleanup_accepts_a_zeroed_request_twice(void)
{
    struct cv_tokenize_req req;
    memset(&req, 0, sizeof(req));
    cv_tokenize_req_cleanup(&req);
    cv_tokenize_req_cleanup(&req);
    CHECK(req.pan == NULL);
}

/* ---- empty bodies (detokenize) --------------------------------------------------------------- */

static void decode_empty_accepts_nothing_blank_and_empty_object(void)
{
    const char *bodies[] = {"", "  ", "\r\n\t ", "{}", " { } \n"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        const char *param = "sentinel";
        CHECK_EQ_INT(decode_empty(bodies[i], strlen(bodies[i]), &param), CV_OK);
        CHECK(param == NULL);
    }
}

static void decode_empty_names_a_safe_unknown_field(void)
{
    const char *param = NULL;
    const char *pan = "{\"pan\":\"4242424242424242\"}";
    CHECK_EQ_INT(decode_empty(pan, strlen(pan), &param), CV_ERR_UNKNOWN_FIELD);
    CHECK(param != NULL && strcmp(param, "pan") == 0);
    const char *two = "{\"reason\":1,\"x\":2}";
    CHECK_EQ_INT(decode_empty(two, strlen(two), &param), CV_ERR_UNKNOWN_FIELD);
    CHECK(param != NULL && strcmp(param, "reason") == 0);
}

static void decode_empty_rejects_fields_and_garbage(void)
{
    static const struct {
        const char *body;
        cv_status st;
    } cases[] = {
        {"{\"a-b\":1}", CV_ERR_UNKNOWN_FIELD},
        {"{\"4242424242424242\":\"4242424242424242\"}", CV_ERR_UNKNOWN_FIELD},
        {"{}x", CV_ERR_INVALID_JSON},
        {"{} {}", CV_ERR_INVALID_JSON},
        {"[]", CV_ERR_INVALID_JSON},
        {"null", CV_ERR_INVALID_JSON},
        {"0", CV_ERR_INVALID_JSON},
        {"garbage", CV_ERR_INVALID_JSON},
        {"{\"a\":1,\"a\":1}", CV_ERR_INVALID_JSON},
        {"\v", CV_ERR_INVALID_JSON}, /* not JSON whitespace */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *param = "sentinel";
        size_t len = strlen(cases[i].body);
        char *copy = malloc(len);
        memcpy(copy, cases[i].body, len);
        CHECK_EQ_INT(decode_empty(copy, len, &param), cases[i].st);
        CHECK(param == NULL);
        free(copy);
    }
    const char nul[] = "{}\0";
    const char *param = NULL;
    CHECK_EQ_INT(decode_empty(nul, 3, &param), CV_ERR_INVALID_JSON);
}

/* ---- encoders ----------------------------------------------------------------------------------
 */

static struct cv_token_view sample_view(void)
{
    struct cv_token_view v;
    memset(&v, 0, sizeof(v));
    v.token = "tok_4eC39HqLyjWDarjtT1zdp7";
    v.brand = "visa";
    v.bin = "424242";
    v.last4 = "4242";
    v.exp_month = 12;
    v.exp_year = 2030;
    v.fingerprint = "fp_0000000000000000000001";
    v.created_at = "2025-01-02T03:04:05Z";
    return v;
}

static void token_encoder_omits_pan_and_name_unless_asked(void)
{
    struct cv_token_view v = sample_view();
    size_t len = 0;
    char *text = cv_json_encode_token(&v, &len);
    json_t *o = parse(text, len);
    CHECK(has_string(o, "token", v.token) && has_string(o, "brand", "visa") &&
          has_string(o, "bin", "424242") && has_string(o, "last4", "4242") &&
          has_string(o, "fingerprint", v.fingerprint) && has_string(o, "created_at", v.created_at));
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "exp_month")), 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "exp_year")), 2030);
    CHECK(json_object_get(o, "pan") == NULL);
    CHECK(json_object_get(o, "cardholder_name") == NULL);
    /* the eight card members, then metadata ({}) and expires_at (null) */
    CHECK(json_is_object(json_object_get(o, "metadata")) &&
          json_object_size(json_object_get(o, "metadata")) == 0);
    CHECK(json_is_null(json_object_get(o, "expires_at")));
    CHECK_EQ_INT(json_object_size(o), 10);
    CHECK(strstr(text, "4242424242424242") == NULL);
    json_decref(o);
    cv_json_free(text);
}

static void token_encoder_includes_pan_and_name_for_detokenize(void)
{
    struct cv_token_view v = sample_view();
    size_t len = 0;
    v.pan = "4242424242424242";
    v.include_name = true;
    v.name = "HANAKO \"H\" YAMADA\\"; /* quotes and backslashes must be escaped */
    char *text = cv_json_encode_token(&v, &len);
    json_t *o = parse(text, len);
    CHECK(has_string(o, "pan", "4242424242424242"));
    CHECK(has_string(o, "cardholder_name", v.name));
    json_decref(o);
    cv_json_free(text);

    /* include_name with no name on file: an explicit null. */
    v.name = NULL;
    text = cv_json_encode_token(&v, &len);
    o = parse(text, len);
    CHECK(json_is_null(json_object_get(o, "cardholder_name")));
    json_decref(o);
    cv_json_free(text);
}

static void error_encoder_includes_param_only_when_given(void)
{
    size_t len = 0;
    char *text = cv_json_encode_error("invalid_request_error", "invalid_pan", "The PAN is invalid.",
                                      "pan", "req_00000000000000000001", &len);
    json_t *o = parse(text, len);
    json_t *e = json_object_get(o, "error");
    CHECK(json_is_object(e));
    CHECK(has_string(e, "type", "invalid_request_error") && has_string(e, "code", "invalid_pan") &&
          has_string(e, "message", "The PAN is invalid.") && has_string(e, "param", "pan"));
    CHECK(has_string(o, "request_id", "req_00000000000000000001"));
    CHECK_EQ_INT(json_object_size(o), 2);
    json_decref(o);
    cv_json_free(text);

    text = cv_json_encode_error("api_error", "internal", "Something went wrong.", NULL,
                                "req_00000000000000000002", &len);
    o = parse(text, len);
    e = json_object_get(o, "error");
    CHECK(json_object_get(e, "param") == NULL);
    CHECK_EQ_INT(json_object_size(e), 3);
    CHECK(strstr(text, "param") == NULL);
    json_decref(o);
    cv_json_free(text);
}

static void error_encoder_escapes_hostile_text(void)
{
    /* Whatever reaches a message (control characters, quotes, a fake second
     * field) comes out as one string value, never as structure. */
    size_t len = 0;
    const char *msg = "a\"},\"injected\":{\"x\":\"\n\t\x01";
    char *text = cv_json_encode_error("t", "c", msg, "p\"q", "req_x", &len);
    json_t *o = parse(text, len);
    json_t *e = json_object_get(o, "error");
    CHECK(has_string(e, "message", msg) && has_string(e, "param", "p\"q"));
    CHECK(json_object_get(o, "injected") == NULL && json_object_get(e, "injected") == NULL);
    CHECK(memchr(text, '\n', len) == NULL);
    json_decref(o);
    cv_json_free(text);
}

static void health_and_pairs_encoders_produce_objects(void)
{
    size_t len = 0;
    const char *checks[] = {"database", "ok", "kek", "loaded"};
    char *text = cv_json_encode_health("ok", checks, 2, &len);
    json_t *o = parse(text, len);
    CHECK(has_string(o, "status", "ok"));
    CHECK(has_string(json_object_get(o, "checks"), "database", "ok"));
    CHECK(has_string(json_object_get(o, "checks"), "kek", "loaded"));
    json_decref(o);
    cv_json_free(text);

    /* With no checks (/healthz) the member is left out. */
    text = cv_json_encode_health("ok", NULL, 0, &len);
    o = parse(text, len);
    CHECK(has_string(o, "status", "ok"));
    CHECK(json_object_get(o, "checks") == NULL);
    json_decref(o);
    cv_json_free(text);

    const char *pairs[] = {"merchant_id", "mer_1", "secret_key", "sk_\"quoted\""};
    text = cv_json_encode_pairs(pairs, 2, &len);
    o = parse(text, len);
    CHECK(has_string(o, "merchant_id", "mer_1") && has_string(o, "secret_key", "sk_\"quoted\""));
    json_decref(o);
    cv_json_free(text);
}

/* Oversized card fields are refused by the decoder, before anything is
 * copied into (locked, bounded) secure memory. */
static void oversized_card_fields_are_refused_before_copying(void)
{
    static const struct {
        const char *field;
        size_t len;
        cv_status want;
    } cases[] = {
        {"pan", 4000, CV_ERR_INVALID_PAN},
        {"cvc", 4000, CV_ERR_INVALID_CVC},
        {"cardholder_name", 4000, CV_ERR_INVALID_NAME},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t cap = cases[i].len + 256;
        char *body = malloc(cap);
        const char *pan = strcmp(cases[i].field, "pan") == 0 ? NULL : "4242424242424242";
        size_t n = (size_t)snprintf(body, cap, "{\"exp_month\":12,\"exp_year\":2030,");
        if (pan != NULL)
            n += (size_t)snprintf(body + n, cap - n, "\"pan\":\"%s\",", pan);
        n += (size_t)snprintf(body + n, cap - n, "\"%s\":\"", cases[i].field);
        memset(body + n, '4', cases[i].len);
        n += cases[i].len;
        n += (size_t)snprintf(body + n, cap - n, "\"}");
        struct cv_tokenize_req req;
        const char *param = NULL;
        CHECK_EQ_INT(decode(body, n, &req, &param), cases[i].want);
        CHECK(param != NULL && strcmp(param, cases[i].field) == 0);
        CHECK(req.pan == NULL && req.cvc == NULL && req.name == NULL);
        free(body);
    }
}

/* ---- the relay request ---- */

static cv_status relay_decode(const char *j, struct cv_relay_req *q, struct cv_json_param *param)
{
    return cv_json_decode_relay(j, strlen(j), q, param);
}

static void relay_decodes_a_full_request(void)
{
    struct cv_relay_req q;
    struct cv_json_param param;
    const char *j =
        "{\"method\":\"POST\",\"path\":\"/v1/charges?x=1\",\"headers\":{\"Content-Type\":"
        "\"application/json\",\"Authorization\":\"Bearer s\"},\"body\":\"{}\","
        "\"tokens\":{\"card\":\"tok_aaaaaaaaaaaaaaaaaaaaaa\",\"b2\":\"tok_x\"}}";
    CHECK_EQ_INT(relay_decode(j, &q, &param), CV_OK);
    CHECK(strcmp(q.method, "POST") == 0);
    CHECK(strcmp(q.path, "/v1/charges?x=1") == 0);
    CHECK_EQ_INT(q.n_headers, 2);
    CHECK_EQ_INT(q.body_len, 2);
    CHECK_EQ_INT(q.n_tokens, 2);
    CHECK(strcmp(q.aliases[1], "b2") == 0 && strcmp(q.tokens[1], "tok_x") == 0);
    cv_relay_req_cleanup(&q);
    cv_relay_req_cleanup(&q); /* twice is safe */
    CHECK_EQ_INT(
        relay_decode("{\"method\":\"GET\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}", &q, &param),
        CV_OK);
    CHECK(q.body == NULL && q.n_headers == 0);
    cv_relay_req_cleanup(&q);
}

static void relay_refuses_shape_errors_with_the_field(void)
{
    static const struct {
        const char *json;
        cv_status st;
        const char *param;
    } cases[] = {
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"},\"extra\":1}",
         CV_ERR_UNKNOWN_FIELD, "extra"},
        {"{\"method\":\"POST\",\"method\":\"GET\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}",
         CV_ERR_INVALID_JSON, ""},
        {"{\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_MISSING_FIELD, "method"},
        {"{\"method\":\"POST\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_MISSING_FIELD, "path"},
        {"{\"method\":\"POST\",\"path\":\"/\"}", CV_ERR_MISSING_FIELD, "tokens"},
        {"{\"method\":1,\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_INVALID_TYPE,
         "method"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":[\"t\"]}", CV_ERR_INVALID_TYPE, "tokens"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"body\":{},\"tokens\":{\"card\":\"t\"}}",
         CV_ERR_INVALID_TYPE, "body"},
        {"{\"method\":\"post\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "method"},
        {"{\"method\":\"CONNECT\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "method"},
        {"{\"method\":\"POST\",\"path\":\"v1\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "path"},
        {"{\"method\":\"POST\",\"path\":\"/a b\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "path"},
        {"{\"method\":\"POST\",\"path\":\"/a#f\",\"tokens\":{\"card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "path"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{}}", CV_ERR_BAD_REQUEST, "tokens"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{\"a\":\"t\",\"b\":\"t\",\"c\":\"t\","
         "\"d\":\"t\",\"e\":\"t\"}}",
         CV_ERR_BAD_REQUEST, "tokens"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{\"Card\":\"t\"}}", CV_ERR_BAD_REQUEST,
         "tokens"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{\"card\":1}}", CV_ERR_INVALID_TYPE,
         "tokens"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"Host\":\"evil\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"content-length\":\"1\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"CardVault-Hold\":\"h\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"X-A\":\"a\\r\\nX-B: b\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"X A\":\"a\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"X-A\":\"a\",\"x-a\":\"b\"},\"tokens\":"
         "{\"card\":\"t\"}}",
         CV_ERR_RELAY_HEADER_NOT_ALLOWED, "headers"},
        {"{\"method\":\"POST\",\"path\":\"/\",\"headers\":{\"X-A\":1},\"tokens\":{\"card\":\"t\"}}",
         CV_ERR_INVALID_TYPE, "headers"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_relay_req q;
        struct cv_json_param param;
        cv_status st = relay_decode(cases[i].json, &q, &param);
        if (st != cases[i].st || strcmp(param.name, cases[i].param) != 0)
            fprintf(stderr, "  case %zu: %s param '%s'\n", i, cv_status_name(st), param.name);
        CHECK_EQ_INT(st, cases[i].st);
        CHECK(strcmp(param.name, cases[i].param) == 0);
        CHECK(q.path == NULL && q.n_headers == 0 && q.body == NULL); /* nothing left behind */
    }
}

static void relay_refuses_oversized_parts(void)
{
    char j[8192];
    char path[CV_RELAY_PATH_MAX + 2];
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    snprintf(j, sizeof(j), "{\"method\":\"POST\",\"path\":\"%s\",\"tokens\":{\"card\":\"t\"}}",
             path);
    struct cv_relay_req q;
    struct cv_json_param param;
    CHECK_EQ_INT(relay_decode(j, &q, &param), CV_ERR_BAD_REQUEST);
    char many[2048] =
        "{\"method\":\"POST\",\"path\":\"/\",\"tokens\":{\"card\":\"t\"},\"headers\":{";
    for (int i = 0; i <= CV_RELAY_HEADERS_MAX; i++) {
        char h[32];
        snprintf(h, sizeof(h), "%s\"X-%d\":\"v\"", i > 0 ? "," : "", i);
        strncat(many, h, sizeof(many) - strlen(many) - 1);
    }
    strncat(many, "}}", sizeof(many) - strlen(many) - 1);
    CHECK_EQ_INT(relay_decode(many, &q, &param), CV_ERR_BAD_REQUEST);
    CHECK(strcmp(param.name, "headers") == 0);
}

static void relay_answer_is_valid_json_whatever_the_bytes(void)
{
    char name[] = "content-type", value[] = "text/plain";
    struct cv_relay_header h[1] = {{name, value}};
    size_t len = 0;
    char *out = cv_json_encode_relay_answer(402, h, 1, "a\"b\xff\n", 5, 12, 4096, &len);
    CHECK(out != NULL);
    json_error_t err;
    json_t *v = out != NULL ? json_loadb(out, len, 0, &err) : NULL;
    CHECK(v != NULL);
    CHECK(v != NULL && json_integer_value(json_object_get(v, "status")) == 402);
    CHECK(v != NULL &&
          strcmp(json_string_value(json_object_get(v, "body")), "a\"b\xef\xbf\xbd\n") == 0);
    CHECK(v != NULL && json_integer_value(json_object_get(v, "duration_ms")) == 12);
    json_decref(v);
    cv_json_free(out);
    CHECK(cv_json_encode_relay_answer(200, h, 1, "x", 1, 1, 10, &len) == NULL);
    CHECK_EQ_INT(len, 0);
}

/* ---- metadata, ttl_seconds (tokenize) and the update body
 * ------------------------------------ */

#define CARD_FIELDS "\"pan\":\"4242424242424242\",\"exp_month\":12,\"exp_year\":2030"

static void tokenize_takes_metadata_and_ttl_in_canonical_form(void)
{
    struct cv_tokenize_req req;
    const char *param = NULL;
    const char *body = "{" CARD_FIELDS ",\"metadata\":{\"b\":\"2\",\"a\":\"caf\\u00e9\"},"
                       "\"ttl_seconds\":3600}";
    CHECK_EQ_INT(decode_s(body, &req, &param), CV_OK);
    CHECK(param == NULL);
    /* sorted keys, compact: the same text whatever the client's spelling */
    CHECK(req.metadata != NULL && strcmp(req.metadata, "{\"a\":\"caf\xc3\xa9\",\"b\":\"2\"}") == 0);
    CHECK(req.has_ttl && req.ttl_seconds == 3600);
    cv_tokenize_req_cleanup(&req);
    CHECK(req.metadata == NULL);
    CHECK_EQ_INT(decode_s("{" CARD_FIELDS ",\"metadata\":{}}", &req, &param), CV_OK);
    CHECK(req.metadata != NULL && strcmp(req.metadata, "{}") == 0 && !req.has_ttl);
    cv_tokenize_req_cleanup(&req);
}

static void tokenize_refuses_bad_metadata_and_ttl(void)
{
    static const struct {
        const char *body;
        cv_status st;
        const char *param;
    } cases[] = {
        {"{" CARD_FIELDS ",\"metadata\":[]}", CV_ERR_INVALID_TYPE, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":\"x\"}", CV_ERR_INVALID_TYPE, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"a\":1}}", CV_ERR_INVALID_METADATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"a\":null}}", CV_ERR_INVALID_METADATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"a\":{\"b\":\"c\"}}}", CV_ERR_INVALID_METADATA,
         "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"a b\":\"c\"}}", CV_ERR_INVALID_METADATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"\":\"c\"}}", CV_ERR_INVALID_METADATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"a\":\"1\",\"a\":\"2\"}}", CV_ERR_INVALID_JSON, NULL},
        {"{" CARD_FIELDS ",\"metadata\":{\"note\":\"4242 4242 4242 4242\"}}",
         CV_ERR_METADATA_CARD_DATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"cvv\":\"x\"}}", CV_ERR_METADATA_CARD_DATA, "metadata"},
        {"{" CARD_FIELDS ",\"metadata\":{\"4242424242424242\":\"x\"}}", CV_ERR_METADATA_CARD_DATA,
         "metadata"},
        {"{" CARD_FIELDS ",\"ttl_seconds\":0}", CV_ERR_INVALID_TTL, "ttl_seconds"},
        {"{" CARD_FIELDS ",\"ttl_seconds\":-5}", CV_ERR_INVALID_TTL, "ttl_seconds"},
        {"{" CARD_FIELDS ",\"ttl_seconds\":315360001}", CV_ERR_INVALID_TTL, "ttl_seconds"},
        {"{" CARD_FIELDS ",\"ttl_seconds\":1.5}", CV_ERR_INVALID_TYPE, "ttl_seconds"},
        {"{" CARD_FIELDS ",\"ttl_seconds\":\"60\"}", CV_ERR_INVALID_TYPE, "ttl_seconds"},
        {"{" CARD_FIELDS ",\"expires_at\":\"2030-01-01T00:00:00Z\"}", CV_ERR_UNKNOWN_FIELD,
         "expires_at"},
        /* the documented order: metadata and ttl_seconds before the card fields */
        {"{\"pan\":\"4242424242424242424242424242424242424242\",\"exp_month\":1,"
         "\"exp_year\":2030,\"metadata\":{\"a\":1}}",
         CV_ERR_INVALID_METADATA, "metadata"},
        {"{\"pan\":\"4242\",\"exp_month\":1,\"exp_year\":2030,\"ttl_seconds\":0}",
         CV_ERR_INVALID_TTL, "ttl_seconds"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_s(cases[i].body, cases[i].st, cases[i].param);
}

static void metadata_limits_are_exact(void)
{
    char body[16384];
    struct cv_tokenize_req req;
    const char *param = NULL;
    /* 20 keys pass, 21 do not */
    for (int keys = 20; keys <= 21; keys++) {
        size_t n = (size_t)snprintf(body, sizeof(body), "{" CARD_FIELDS ",\"metadata\":{");
        for (int k = 0; k < keys; k++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"k%d\":\"v\"", k ? "," : "", k);
        snprintf(body + n, sizeof(body) - n, "}}");
        CHECK_EQ_INT(decode_s(body, &req, &param), keys == 20 ? CV_OK : CV_ERR_INVALID_METADATA);
        cv_tokenize_req_cleanup(&req);
    }
    /* a key of 40 bytes passes, 41 does not; a value of 500 bytes passes, 501 does not */
    char key[42], val[502];
    for (size_t klen = 40; klen <= 41; klen++) {
        memset(key, 'k', klen);
        key[klen] = '\0';
        snprintf(body, sizeof(body), "{" CARD_FIELDS ",\"metadata\":{\"%s\":\"v\"}}", key);
        CHECK_EQ_INT(decode_s(body, &req, &param), klen == 40 ? CV_OK : CV_ERR_INVALID_METADATA);
        cv_tokenize_req_cleanup(&req);
    }
    for (size_t vlen = 500; vlen <= 501; vlen++) {
        memset(val, 'v', vlen);
        val[vlen] = '\0';
        snprintf(body, sizeof(body), "{" CARD_FIELDS ",\"metadata\":{\"k\":\"%s\"}}", val);
        CHECK_EQ_INT(decode_s(body, &req, &param), vlen == 500 ? CV_OK : CV_ERR_INVALID_METADATA);
        cv_tokenize_req_cleanup(&req);
    }
}

static cv_status decode_update_s(const char *body, struct cv_update_req *req, const char **param)
{
    size_t len = strlen(body);
    char *copy = malloc(len == 0 ? 1 : len);
    memcpy(copy, body, len);
    memcpy(last_param.name, "sentinel", sizeof("sentinel"));
    cv_status st = cv_json_decode_update(copy, len, req, &last_param);
    *param = last_param.name[0] != '\0' ? last_param.name : NULL;
    free(copy);
    return st;
}

static void update_body_decodes_each_field(void)
{
    struct cv_update_req req;
    const char *param = NULL;
    CHECK_EQ_INT(decode_update_s("{\"exp_month\":3,\"exp_year\":2032,\"cardholder_name\":\"A B\","
                                 "\"metadata\":{\"z\":null,\"a\":\"1\"},\"ttl_seconds\":60}",
                                 &req, &param),
                 CV_OK);
    CHECK(param == NULL);
    CHECK(req.has_expiry && req.exp_month == 3 && req.exp_year == 2032);
    CHECK(req.has_name && secbuf_is(req.name, "A B"));
    CHECK(req.metadata_patch != NULL &&
          strcmp(req.metadata_patch, "{\"a\":\"1\",\"z\":null}") == 0);
    CHECK(req.has_ttl && !req.clear_ttl && req.ttl_seconds == 60);
    cv_update_req_cleanup(&req);
    CHECK(req.name == NULL && req.metadata_patch == NULL);
    /* null removes the name and the lifetime */
    CHECK_EQ_INT(decode_update_s("{\"cardholder_name\":null,\"ttl_seconds\":null}", &req, &param),
                 CV_OK);
    CHECK(req.has_name && req.name == NULL && req.has_ttl && req.clear_ttl && !req.has_expiry);
    cv_update_req_cleanup(&req);
    CHECK_EQ_INT(decode_update_s("{}", &req, &param), CV_OK);
    CHECK(!req.has_name && !req.has_expiry && !req.has_ttl && req.metadata_patch == NULL);
    cv_update_req_cleanup(&req);
}

static void update_body_is_strict(void)
{
    static const struct {
        const char *body;
        cv_status st;
        const char *param;
    } cases[] = {
        {"{\"pan\":\"4242424242424242\"}", CV_ERR_UNKNOWN_FIELD, "pan"},
        {"{\"cvc\":\"123\"}", CV_ERR_UNKNOWN_FIELD, "cvc"},
        {"{\"4242424242424242\":1}", CV_ERR_UNKNOWN_FIELD, NULL},
        {"{\"exp_month\":3}", CV_ERR_MISSING_FIELD, "exp_year"},
        {"{\"exp_year\":2031}", CV_ERR_MISSING_FIELD, "exp_month"},
        {"{\"exp_month\":\"3\",\"exp_year\":2031}", CV_ERR_INVALID_TYPE, "exp_month"},
        {"{\"exp_month\":null,\"exp_year\":2031}", CV_ERR_INVALID_TYPE, "exp_month"},
        {"{\"metadata\":null}", CV_ERR_INVALID_TYPE, "metadata"},
        {"{\"cardholder_name\":5}", CV_ERR_INVALID_TYPE, "cardholder_name"},
        {"{\"ttl_seconds\":true}", CV_ERR_INVALID_TYPE, "ttl_seconds"},
        {"{\"ttl_seconds\":0}", CV_ERR_INVALID_TTL, "ttl_seconds"},
        {"{\"metadata\":{\"k\":\"5555 5555 5555 4444\"}}", CV_ERR_METADATA_CARD_DATA, "metadata"},
        {"{\"metadata\":{\"security_code\":null}}", CV_ERR_METADATA_CARD_DATA, "metadata"},
        {"{\"metadata\":{\"k\":7}}", CV_ERR_INVALID_METADATA, "metadata"},
        {"{\"ttl_seconds\":1,\"ttl_seconds\":2}", CV_ERR_INVALID_JSON, NULL},
        {"", CV_ERR_INVALID_JSON, NULL},
        {"[]", CV_ERR_INVALID_JSON, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_update_req req;
        const char *param = NULL;
        cv_status st = decode_update_s(cases[i].body, &req, &param);
        if (st != cases[i].st)
            fprintf(stderr, "  update %s: %s\n", cases[i].body, cv_status_name(st));
        CHECK_EQ_INT(st, cases[i].st);
        CHECK(cases[i].param == NULL ? param == NULL
                                     : param != NULL && strcmp(param, cases[i].param) == 0);
        CHECK(req.name == NULL && req.metadata_patch == NULL); /* nothing left behind */
    }
}

static void metadata_merge_sets_deletes_and_bounds(void)
{
    char *out = NULL;
    CHECK_EQ_INT(
        cv_json_metadata_merge("{\"a\": \"1\", \"b\": \"2\"}", "{\"b\":null,\"c\":\"3\"}", &out),
        CV_OK);
    CHECK(out != NULL && strcmp(out, "{\"a\":\"1\",\"c\":\"3\"}") == 0);
    free(out);
    CHECK_EQ_INT(cv_json_metadata_merge(NULL, "{\"x\":\"y\"}", &out), CV_OK);
    CHECK(out != NULL && strcmp(out, "{\"x\":\"y\"}") == 0);
    free(out);
    /* 20 stored + 1 new is 21: refused, nothing returned */
    char cur[1024];
    size_t n = (size_t)snprintf(cur, sizeof(cur), "{");
    for (int k = 0; k < 20; k++)
        n += (size_t)snprintf(cur + n, sizeof(cur) - n, "%s\"k%d\":\"v\"", k ? "," : "", k);
    snprintf(cur + n, sizeof(cur) - n, "}");
    out = NULL;
    CHECK_EQ_INT(cv_json_metadata_merge(cur, "{\"new\":\"v\"}", &out), CV_ERR_INVALID_METADATA);
    CHECK(out == NULL);
    /* replacing one of the 20 is fine */
    CHECK_EQ_INT(cv_json_metadata_merge(cur, "{\"k3\":\"w\",\"k4\":null}", &out), CV_OK);
    free(out);
}

static void token_list_encodes_page_and_cursor(void)
{
    struct cv_token_view v[2];
    memset(v, 0, sizeof(v));
    for (int i = 0; i < 2; i++) {
        v[i].token = i ? "tok_4eC39HqLyjWDarjtT1zdp8" : "tok_4eC39HqLyjWDarjtT1zdp7";
        v[i].brand = "visa";
        v[i].bin = "424242";
        v[i].last4 = "4242";
        v[i].fingerprint = "fp_0000000000000000000001";
        v[i].created_at = "2025-01-02T03:04:05Z";
        v[i].metadata = "{\"a\": \"b\"}";
        v[i].expires_at = i ? "2026-01-01T00:00:00Z" : "";
    }
    size_t len = 0;
    char *text = cv_json_encode_token_list(v, 2, true, "cur_x", &len);
    json_t *o = parse(text, len);
    CHECK(has_string(o, "object", "list") && has_string(o, "next_cursor", "cur_x"));
    CHECK(json_is_true(json_object_get(o, "has_more")));
    json_t *data = json_object_get(o, "data");
    CHECK(json_array_size(data) == 2);
    CHECK(has_string(json_object_get(json_array_get(data, 0), "metadata"), "a", "b"));
    CHECK(json_is_null(json_object_get(json_array_get(data, 0), "expires_at")));
    CHECK(has_string(json_array_get(data, 1), "expires_at", "2026-01-01T00:00:00Z"));
    CHECK(json_object_get(json_array_get(data, 0), "pan") == NULL);
    json_decref(o);
    cv_json_free(text);
    text = cv_json_encode_token_list(v, 0, false, NULL, &len);
    o = parse(text, len);
    CHECK(json_is_null(json_object_get(o, "next_cursor")) &&
          json_array_size(json_object_get(o, "data")) == 0);
    json_decref(o);
    cv_json_free(text);
}

int main(void)
{
    cv_json_init();
    RUN(decodes_a_full_tokenize_body);
    RUN(relay_decodes_a_full_request);
    RUN(relay_refuses_shape_errors_with_the_field);
    RUN(relay_refuses_oversized_parts);
    RUN(relay_answer_is_valid_json_whatever_the_bytes);
    RUN(decodes_the_minimal_body_and_optional_fields);
    RUN(decodes_escaped_and_non_ascii_strings);
    RUN(decodes_a_body_that_is_not_nul_terminated);
    RUN(invalid_json_for_syntax_errors);
    RUN(invalid_json_for_trailing_garbage);
    RUN(invalid_json_for_non_object_roots);
    RUN(invalid_json_for_duplicate_keys);
    RUN(invalid_json_for_empty_and_blank_bodies);
    RUN(nul_inside_a_string_is_rejected);
    RUN(unknown_field_is_named_when_safe_to_echo);
    RUN(unknown_field_is_not_named_when_it_could_carry_card_data);
    RUN(param_echo_rule);
    RUN(missing_field_names_the_field);
    RUN(invalid_type_names_the_field);
    RUN(integers_pass_through_for_card_validation_to_judge);
    RUN(deeply_nested_values_are_refused_without_crashing);
    RUN(cleanup_accepts_a_zeroed_request_twice);
    RUN(tokenize_takes_metadata_and_ttl_in_canonical_form);
    RUN(tokenize_refuses_bad_metadata_and_ttl);
    RUN(metadata_limits_are_exact);
    RUN(update_body_decodes_each_field);
    RUN(update_body_is_strict);
    RUN(metadata_merge_sets_deletes_and_bounds);
    RUN(token_list_encodes_page_and_cursor);
    RUN(decode_empty_accepts_nothing_blank_and_empty_object);
    RUN(decode_empty_rejects_fields_and_garbage);
    RUN(decode_empty_names_a_safe_unknown_field);
    RUN(token_encoder_omits_pan_and_name_unless_asked);
    RUN(token_encoder_includes_pan_and_name_for_detokenize);
    RUN(error_encoder_includes_param_only_when_given);
    RUN(error_encoder_escapes_hostile_text);
    RUN(health_and_pairs_encoders_produce_objects);
    RUN(oversized_card_fields_are_refused_before_copying);
    return check_summary("json_codec");
}
