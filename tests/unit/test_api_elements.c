/* test_api_elements.c: api_elements.c's frame query parser (every parameter,
 * its hostile twins: unknown, repeated, empty, valueless, overlong,
 * non-canonical origins, secret keys, bad UTF-8 titles, bad language tags,
 * token and brand on the card page), the headers of every web policy (CSP
 * text exact, CORS only on the loader), the page rendering (escaping, the
 * DOM ids and autocomplete tokens, no inline script), the refusal page, the
 * base64 of the integrity value, and the frame handler's scope and origin
 * checks with a principal made by hand. */
#include "cardvault/api_elements.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define KEY43 "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg"
#define PK    "pk_" KEY43
#define SK    "sk_" KEY43
#define DK    "dk_" KEY43
#define NONCE "n0nce-0123456789_abcdef"
#define TOK   "tok_AbCdEfGhIjKlMnOpQrStUv"

static void init_card(struct cv_frame_req *r)
{
    cv_frame_query_init(r, CV_FRAME_CARD);
}

/* A card query with the three required parameters, then `name=value`. */
static cv_status card_with(const char *name, const char *value)
{
    struct cv_frame_req r;
    init_card(&r);
    (void)cv_frame_query_add(&r, "key", PK);
    (void)cv_frame_query_add(&r, "origin", "https://shop.example");
    (void)cv_frame_query_add(&r, "nonce", NONCE);
    if (name != NULL)
        (void)cv_frame_query_add(&r, name, value);
    return cv_frame_query_finish(&r);
}

static void query_accepts_the_required_parameters(void)
{
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", PK), CV_OK);
    CHECK_EQ_INT(cv_frame_query_add(&r, "origin", "http://127.0.0.1:8081"), CV_OK);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", NONCE), CV_OK);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_OK);
    CHECK(strcmp(r.key, PK) == 0);
    CHECK(strcmp(r.origin, "http://127.0.0.1:8081") == 0);
    CHECK(strcmp(r.nonce, NONCE) == 0);
    CHECK(strcmp(r.title, "") == 0 && strcmp(r.lang, "") == 0);
}

static void query_accepts_optional_title_and_lang(void)
{
    CHECK_EQ_INT(card_with("title", "Card details"), CV_OK);
    CHECK_EQ_INT(card_with("title", "\xe3\x82\xab\xe3\x83\xbc\xe3\x83\x89"), CV_OK); /* カード */
    CHECK_EQ_INT(card_with("title", "<b>&'\""), CV_OK); /* text: escaped when rendered */
    CHECK_EQ_INT(card_with("lang", "ja"), CV_OK);
    CHECK_EQ_INT(card_with("lang", "en-GB"), CV_OK);
    CHECK_EQ_INT(card_with("lang", "zh-Hant-TW"), CV_OK);
}

static void query_refuses_missing_required_parameters(void)
{
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", PK), CV_OK);
    CHECK_EQ_INT(cv_frame_query_add(&r, "origin", "https://shop.example"), CV_OK);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_ERR_FRAME_BAD_REQUEST);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_ERR_FRAME_BAD_REQUEST);
}

static void query_refuses_unknown_repeated_empty_and_valueless(void)
{
    CHECK_EQ_INT(card_with("debug", "1"), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("Key", PK), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("key", PK), CV_ERR_FRAME_BAD_REQUEST);      /* repeated */
    CHECK_EQ_INT(card_with("nonce", NONCE), CV_ERR_FRAME_BAD_REQUEST); /* repeated */
    CHECK_EQ_INT(card_with("title", ""), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("title", NULL), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with(NULL, NULL), CV_OK);
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, NULL, "x"), CV_ERR_FRAME_BAD_REQUEST);
}

static void query_keeps_the_first_error(void)
{
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", SK), CV_ERR_FRAME_KEY_NOT_PUBLISHABLE);
    CHECK_EQ_INT(cv_frame_query_add(&r, "debug", "1"), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(cv_frame_query_add(&r, "origin", "https://shop.example"), CV_OK);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", NONCE), CV_OK);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_ERR_FRAME_KEY_NOT_PUBLISHABLE);
}

static void query_key_must_be_publishable(void)
{
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", SK), CV_ERR_FRAME_KEY_NOT_PUBLISHABLE);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", DK), CV_ERR_FRAME_KEY_NOT_PUBLISHABLE);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", "sk_short"), CV_ERR_KEY_IN_QUERY);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", "pk_short"), CV_ERR_FRAME_BAD_REQUEST);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", PK "x"), CV_ERR_FRAME_BAD_REQUEST);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "key", "xk_" KEY43), CV_ERR_FRAME_BAD_REQUEST);
    CHECK(strcmp(r.key, "") == 0);
}

static void query_refuses_secrets_in_other_parameters(void)
{
    CHECK_EQ_INT(card_with("title", SK), CV_ERR_KEY_IN_QUERY);
    CHECK_EQ_INT(card_with("title", "Bearer x"), CV_ERR_KEY_IN_QUERY);
    CHECK_EQ_INT(card_with("api_key", "x"), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("debug", DK), CV_ERR_KEY_IN_QUERY);
}

static void query_origin_must_be_canonical(void)
{
    static const char *const bad[] = {"https://Shop.example",
                                      "https://shop.example:443",
                                      "https://shop.example/",
                                      "shop.example",
                                      "null",
                                      "https://user@shop.example",
                                      "*",
                                      "javascript:alert(1)"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cv_frame_req r;
        init_card(&r);
        CHECK_EQ_INT(cv_frame_query_add(&r, "origin", bad[i]), CV_ERR_FRAME_BAD_REQUEST);
    }
}

static void query_nonce_charset_and_length(void)
{
    char n[CV_FRAME_NONCE_MAX + 2];
    CHECK_EQ_INT(card_with(NULL, NULL), CV_OK);
    struct cv_frame_req r;
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", "0123456789abcde"), CV_ERR_FRAME_BAD_REQUEST);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", "0123456789abcdef"), CV_OK);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", "0123456789abcde\""), CV_ERR_FRAME_BAD_REQUEST);
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", "0123456789abcde="), CV_ERR_FRAME_BAD_REQUEST);
    memset(n, 'a', CV_FRAME_NONCE_MAX);
    n[CV_FRAME_NONCE_MAX] = '\0';
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", n), CV_OK);
    n[CV_FRAME_NONCE_MAX] = 'a';
    n[CV_FRAME_NONCE_MAX + 1] = '\0';
    init_card(&r);
    CHECK_EQ_INT(cv_frame_query_add(&r, "nonce", n), CV_ERR_FRAME_BAD_REQUEST);
}

static void query_title_is_bounded_utf8_text(void)
{
    char t[CV_FRAME_TITLE_MAX + 2];
    memset(t, 'x', CV_FRAME_TITLE_MAX);
    t[CV_FRAME_TITLE_MAX] = '\0';
    CHECK_EQ_INT(card_with("title", t), CV_OK);
    t[CV_FRAME_TITLE_MAX] = 'x';
    t[CV_FRAME_TITLE_MAX + 1] = '\0';
    CHECK_EQ_INT(card_with("title", t), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("title", "a\nb"), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("title", "a\x7f"), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("title", "\xc2\x85"), CV_ERR_FRAME_BAD_REQUEST);         /* C1 NEL */
    CHECK_EQ_INT(card_with("title", "\xff"), CV_ERR_FRAME_BAD_REQUEST);             /* not UTF-8 */
    CHECK_EQ_INT(card_with("title", "\xc0\xaf"), CV_ERR_FRAME_BAD_REQUEST);         /* overlong */
    CHECK_EQ_INT(card_with("title", "\xed\xa0\x80"), CV_ERR_FRAME_BAD_REQUEST);     /* surrogate */
    CHECK_EQ_INT(card_with("title", "\xe3\x82"), CV_ERR_FRAME_BAD_REQUEST);         /* truncated */
    CHECK_EQ_INT(card_with("title", "\xf4\x90\x80\x80"), CV_ERR_FRAME_BAD_REQUEST); /* > U+10FFFF */
    CHECK_EQ_INT(card_with("title", "\xf0\x9f\x92\xb3"), CV_OK);                    /* U+1F4B3 */
}

static void query_lang_is_a_language_tag(void)
{
    static const char *const bad[] = {"j",      "ja_JP",     "ja-",          "-ja",  "ja--JP",
                                      "ja-JP-", "abcdefghi", "ja-123456789", "ja\"", "1a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(card_with("lang", bad[i]), CV_ERR_FRAME_BAD_REQUEST);
}

static void query_token_and_brand_belong_to_the_cvc_page(void)
{
    CHECK_EQ_INT(card_with("token", TOK), CV_ERR_FRAME_BAD_REQUEST);
    CHECK_EQ_INT(card_with("brand", "visa"), CV_ERR_FRAME_BAD_REQUEST);
    struct cv_frame_req r;
    cv_frame_query_init(&r, CV_FRAME_CVC);
    (void)cv_frame_query_add(&r, "key", PK);
    (void)cv_frame_query_add(&r, "origin", "https://shop.example");
    (void)cv_frame_query_add(&r, "nonce", NONCE);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_ERR_FRAME_BAD_REQUEST); /* token missing */
    r.error = CV_OK;
    CHECK_EQ_INT(cv_frame_query_add(&r, "token", TOK), CV_OK);
    CHECK_EQ_INT(cv_frame_query_add(&r, "brand", "amex"), CV_OK);
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_OK);
    CHECK(strcmp(r.token, TOK) == 0 && strcmp(r.brand, "amex") == 0);
    cv_frame_query_init(&r, CV_FRAME_CVC);
    CHECK_EQ_INT(cv_frame_query_add(&r, "token", "tok_short"), CV_ERR_FRAME_BAD_REQUEST);
    cv_frame_query_init(&r, CV_FRAME_CVC);
    CHECK_EQ_INT(cv_frame_query_add(&r, "brand", "maestro"), CV_ERR_FRAME_BAD_REQUEST);
    cv_frame_query_init(&r, CV_FRAME_CVC);
    CHECK_EQ_INT(cv_frame_query_add(&r, "brand", "VISA"), CV_ERR_FRAME_BAD_REQUEST);
}

/* ---- headers ---- */

static const char *header(const struct cv_web_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

static void headers_frame_page_csp_is_exact(void)
{
    struct cv_web_header h[CV_WEB_HEADERS_MAX];
    char scratch[CV_WEB_SCRATCH_MAX];
    size_t n = cv_elements_web_headers(CV_WEB_FRAME_PAGE, "https://shop.example:8443", h, scratch,
                                       sizeof(scratch));
    const char *csp = header(h, n, "Content-Security-Policy");
    CHECK(csp != NULL &&
          strcmp(csp, "default-src 'none'; script-src 'self'; style-src 'self'; connect-src "
                      "'self'; img-src 'self'; form-action 'none'; base-uri 'none'; "
                      "frame-ancestors https://shop.example:8443") == 0);
    CHECK(header(h, n, "Cache-Control") != NULL &&
          strcmp(header(h, n, "Cache-Control"), "no-store") == 0);
    CHECK(header(h, n, "Referrer-Policy") != NULL &&
          strcmp(header(h, n, "Referrer-Policy"), "no-referrer") == 0);
    CHECK(header(h, n, "X-Content-Type-Options") != NULL);
    CHECK(header(h, n, "Access-Control-Allow-Origin") == NULL);
}

static void headers_frame_page_never_frames_for_a_bad_ancestor(void)
{
    struct cv_web_header h[CV_WEB_HEADERS_MAX];
    char scratch[CV_WEB_SCRATCH_MAX];
    static const char *const bad[] = {
        NULL,    "", "*", "https://a.example https://b.example", "https://a.example; script-src *",
        "'self'"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = cv_elements_web_headers(CV_WEB_FRAME_PAGE, bad[i], h, scratch, sizeof(scratch));
        const char *csp = header(h, n, "Content-Security-Policy");
        CHECK(csp != NULL && strstr(csp, "frame-ancestors 'none'") != NULL);
        CHECK(csp != NULL && strchr(csp, '*') == NULL);
    }
}

static void headers_cors_only_on_the_loader(void)
{
    struct cv_web_header h[CV_WEB_HEADERS_MAX];
    char scratch[CV_WEB_SCRATCH_MAX];
    size_t n = cv_elements_web_headers(CV_WEB_PUBLIC_SCRIPT, NULL, h, scratch, sizeof(scratch));
    CHECK(header(h, n, "Access-Control-Allow-Origin") != NULL &&
          strcmp(header(h, n, "Access-Control-Allow-Origin"), "*") == 0);
    CHECK(strcmp(header(h, n, "Cross-Origin-Resource-Policy"), "cross-origin") == 0);
    CHECK(strcmp(header(h, n, "Cache-Control"), "public, max-age=300") == 0);
    const enum cv_web_policy others[] = {CV_WEB_API, CV_WEB_FRAME_ASSET, CV_WEB_FRAME_PAGE,
                                         CV_WEB_FRAME_REFUSAL};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        n = cv_elements_web_headers(others[i], "https://shop.example", h, scratch, sizeof(scratch));
        CHECK(n <= CV_WEB_HEADERS_MAX);
        CHECK(header(h, n, "Access-Control-Allow-Origin") == NULL);
        CHECK(strcmp(header(h, n, "X-Content-Type-Options"), "nosniff") == 0);
    }
    n = cv_elements_web_headers(CV_WEB_API, NULL, h, scratch, sizeof(scratch));
    CHECK(strcmp(header(h, n, "Cache-Control"), "no-store") == 0);
    n = cv_elements_web_headers(CV_WEB_FRAME_ASSET, NULL, h, scratch, sizeof(scratch));
    CHECK(strcmp(header(h, n, "Cross-Origin-Resource-Policy"), "same-origin") == 0);
    n = cv_elements_web_headers(CV_WEB_FRAME_REFUSAL, NULL, h, scratch, sizeof(scratch));
    CHECK(strcmp(header(h, n, "Content-Security-Policy"),
                 "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors *") ==
          0);
}

/* ---- pages ---- */

static struct cv_frame_req full_card(void)
{
    struct cv_frame_req r;
    init_card(&r);
    (void)cv_frame_query_add(&r, "key", PK);
    (void)cv_frame_query_add(&r, "origin", "https://shop.example");
    (void)cv_frame_query_add(&r, "nonce", NONCE);
    (void)cv_frame_query_add(&r, "title", "<script>alert('x')</script> & \"co\"");
    return r;
}

static void render_escapes_the_title_and_has_the_fields(void)
{
    struct cv_frame_req r = full_card();
    char *page = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cv_elements_render_frame(&r, &page, &len), CV_OK);
    if (page == NULL)
        return;
    CHECK(strlen(page) == len);
    CHECK(strstr(page, "<title>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; "
                       "&quot;co&quot;</title>") != NULL);
    CHECK(strstr(page, "<script>") == NULL);
    CHECK(strstr(page, "<html lang=\"en\">") != NULL);
    static const char *const need[] = {
        "id=\"cv-name\"",
        "autocomplete=\"cc-name\"",
        "id=\"cv-number\"",
        "autocomplete=\"cc-number\"",
        "inputmode=\"numeric\"",
        "id=\"cv-exp\"",
        "autocomplete=\"cc-exp\"",
        "placeholder=\"MM / YY\"",
        "id=\"cv-cvc\"",
        "autocomplete=\"cc-csc\"",
        "<label for=\"cv-name\">",
        "<label for=\"cv-cvc\">",
        "id=\"cv-cvc-error\" class=\"cv-error\" role=\"alert\" aria-live=\"polite\"",
        "aria-describedby=\"cv-number-error cv-brand\"",
        "id=\"cv-brand\"",
        "id=\"cv-cvc-hint\"",
        "data-key=\"" PK "\"",
        "data-origin=\"https://shop.example\"",
        "data-nonce=\"" NONCE "\"",
        "data-mode=\"card\""};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        if (strstr(page, need[i]) == NULL) {
            fprintf(stderr, "  missing %s\n", need[i]);
            CHECK(strstr(page, need[i]) != NULL);
        }
    }
    free(page);
}

static void render_cvc_page_and_japanese_labels(void)
{
    struct cv_frame_req r;
    cv_frame_query_init(&r, CV_FRAME_CVC);
    (void)cv_frame_query_add(&r, "key", PK);
    (void)cv_frame_query_add(&r, "origin", "https://shop.example");
    (void)cv_frame_query_add(&r, "nonce", NONCE);
    (void)cv_frame_query_add(&r, "token", TOK);
    (void)cv_frame_query_add(&r, "lang", "ja-JP");
    CHECK_EQ_INT(cv_frame_query_finish(&r), CV_OK);
    char *page = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cv_elements_render_frame(&r, &page, &len), CV_OK);
    if (page == NULL)
        return;
    CHECK(strstr(page, "<html lang=\"ja-JP\">") != NULL);
    CHECK(strstr(page, "data-mode=\"cvc\"") != NULL);
    CHECK(strstr(page, "data-token=\"" TOK "\" data-brand=\"unknown\"") != NULL);
    CHECK(strstr(page, "id=\"cv-number\"") == NULL);
    CHECK(strstr(page, "autocomplete=\"cc-csc\"") != NULL);
    CHECK(strstr(page, "<title>\xe3\x82\xbb") != NULL); /* セキュリティコード */
    free(page);
}

static void refusal_page_is_escaped_html(void)
{
    size_t len = 0;
    char *page =
        cv_elements_refusal_page(403, "frame_origin_not_allowed", "a <b> & c", "req_x", &len);
    CHECK(page != NULL);
    if (page == NULL)
        return;
    CHECK(strstr(page, "a &lt;b&gt; &amp; c") != NULL);
    CHECK(strstr(page, "id=\"cv-refusal-code\">frame_origin_not_allowed<") != NULL);
    CHECK(strstr(page, "(403)") != NULL);
    CHECK(strchr(page, '{') == NULL);
    free(page);
}

static void base64_matches_rfc4648_vectors(void)
{
    char out[16];
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},
             {"f", "Zg=="},
             {"fo", "Zm8="},
             {"foo", "Zm9v"},
             {"foob", "Zm9vYg=="},
             {"fooba", "Zm9vYmE="},
             {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        cv_elements_base64((const unsigned char *)v[i].in, strlen(v[i].in), out);
        CHECK(strcmp(out, v[i].out) == 0);
    }
}

static void sri_is_sha384_of_the_loader(void)
{
    char sri[CV_ELEMENTS_SRI_LEN + 1];
    CHECK_EQ_INT(cv_elements_sri(sri), CV_OK);
    CHECK(strncmp(sri, "sha384-", 7) == 0 && strlen(sri) == CV_ELEMENTS_SRI_LEN);
}

/* ---- the frame handler ---- */

struct completion_box {
    struct cv_completion done;
    struct cv_result res;
    int calls;
};
static void capture(struct cv_completion *self, struct cv_result *result)
{
    struct completion_box *box =
        (struct completion_box *)(void *)((char *)self - offsetof(struct completion_box, done));
    box->res = *result;
    box->calls++;
    memset(result, 0, sizeof(*result));
}

static struct cv_result run_page(const struct cv_frame_req *req, unsigned scopes,
                                 const char *origins)
{
    struct cv_principal who;
    memset(&who, 0, sizeof(who));
    who.scopes = scopes;
    snprintf(who.origins, sizeof(who.origins), "%s", origins);
    struct cv_call call;
    memset(&call, 0, sizeof(call));
    call.request_id = "req_test";
    call.who = &who;
    call.frame = req;
    struct completion_box box;
    memset(&box, 0, sizeof(box));
    box.done.finish = capture;
    cv_api_frame_page(NULL, &call, &box.done);
    CHECK_EQ_INT(box.calls, 1);
    return box.res;
}

static void frame_handler_checks_scope_then_origin(void)
{
    struct cv_frame_req r = full_card();
    struct cv_result res =
        run_page(&r, CV_SCOPE_TOKENIZE, "https://a.example,https://shop.example");
    CHECK_EQ_INT(res.status, CV_OK);
    CHECK_EQ_INT(res.web, CV_WEB_FRAME_PAGE);
    CHECK_EQ_INT(res.body_type, CV_BODY_HTML);
    CHECK(strcmp(res.frame_ancestor, "https://shop.example") == 0);
    CHECK(res.body != NULL && res.free_body != NULL);
    cv_result_cleanup(&res);
    res = run_page(&r, CV_SCOPE_TOKENIZE | CV_SCOPE_READ, "https://shop.example");
    CHECK_EQ_INT(res.status, CV_ERR_FRAME_KEY_REFUSED);
    CHECK(res.body == NULL);
    res = run_page(&r, CV_SCOPE_DETOKENIZE, "https://shop.example");
    CHECK_EQ_INT(res.status, CV_ERR_FRAME_KEY_REFUSED);
    res = run_page(&r, CV_SCOPE_TOKENIZE, "https://shop.example.evil");
    CHECK_EQ_INT(res.status, CV_ERR_FRAME_ORIGIN);
    res = run_page(&r, CV_SCOPE_TOKENIZE, "");
    CHECK_EQ_INT(res.status, CV_ERR_FRAME_ORIGIN);
}

int main(void)
{
    RUN(query_accepts_the_required_parameters);
    RUN(query_accepts_optional_title_and_lang);
    RUN(query_refuses_missing_required_parameters);
    RUN(query_refuses_unknown_repeated_empty_and_valueless);
    RUN(query_keeps_the_first_error);
    RUN(query_key_must_be_publishable);
    RUN(query_refuses_secrets_in_other_parameters);
    RUN(query_origin_must_be_canonical);
    RUN(query_nonce_charset_and_length);
    RUN(query_title_is_bounded_utf8_text);
    RUN(query_lang_is_a_language_tag);
    RUN(query_token_and_brand_belong_to_the_cvc_page);
    RUN(headers_frame_page_csp_is_exact);
    RUN(headers_frame_page_never_frames_for_a_bad_ancestor);
    RUN(headers_cors_only_on_the_loader);
    RUN(render_escapes_the_title_and_has_the_fields);
    RUN(render_cvc_page_and_japanese_labels);
    RUN(refusal_page_is_escaped_html);
    RUN(base64_matches_rfc4648_vectors);
    RUN(sri_is_sha384_of_the_loader);
    RUN(frame_handler_checks_scope_then_origin);
    return check_summary("api_elements");
}
