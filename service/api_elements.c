/* api_elements.c: the card fields (docs/elements.md). It serves the loader
 * and the frame's script and style from memory, parses a frame page's query
 * strictly, renders the frame page for a publishable key and an origin on
 * that key's list, and writes the header values of every web policy in one
 * place. A frame page carries no card data and no secret: only the public
 * pk_ key, the parent origin and a nonce, HTML-escaped. It must never render
 * anything the shop sent except as escaped text, and never pick an HTTP code.
 */
#include "cardvault/api_elements.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cardvault/buf.h"
#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"
#include "elements_assets.h"

#define PAGE_MAX_BYTES (16 * 1024)

/* ---- query ------------------------------------------------------------------------------- */

enum param {
    P_KEY = 1u << 0,
    P_ORIGIN = 1u << 1,
    P_NONCE = 1u << 2,
    P_TITLE = 1u << 3,
    P_LANG = 1u << 4,
    P_TOKEN = 1u << 5,
    P_BRAND = 1u << 6,
};

static const char *const brands[] = {"visa", "mastercard", "amex",    "discover",
                                     "jcb",  "diners",     "unionpay"};

void cv_frame_query_init(struct cv_frame_req *req, enum cv_frame_kind kind)
{
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->error = CV_OK;
}

static cv_status fail(struct cv_frame_req *req, cv_status st)
{
    if (req->error == CV_OK)
        req->error = st;
    return st;
}

static bool in_set(char c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr(extra, c) != NULL);
}

/* 1..max bytes of UTF-8 (shortest forms, no surrogates), with no C0 or C1
 * control character and no DEL. */
static bool text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        unsigned cp;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + k >= n) /* the continuation bytes are i+1 .. i+k */
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += k + 1;
    }
    return true;
}

/* A language tag as <html lang> takes it: 2-8 letters, then parts of 1-8
 * letters or digits after '-'. */
static bool lang_ok(const char *s)
{
    size_t n = strlen(s), part = 0, i = 0;
    if (n < 2 || n > CV_FRAME_LANG_MAX)
        return false;
    for (; i < n && s[i] != '-'; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    if (i < 2 || i > 8)
        return false;
    for (; i < n; i++) {
        if (s[i] == '-') {
            if (i + 1 == n || (i > 0 && s[i - 1] == '-'))
                return false;
            part = 0;
            continue;
        }
        if (!in_set(s[i], "") || ++part > 8)
            return false;
    }
    return true;
}

static bool looks_secret(const char *v)
{
    return strncmp(v, "sk_", 3) == 0 || strncmp(v, "dk_", 3) == 0 || strncmp(v, "rk_", 3) == 0 ||
           strncasecmp(v, "Bearer", 6) == 0;
}

static cv_status copy_param(struct cv_frame_req *req, char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    memcpy(dst, v, n + 1);
    return CV_OK;
}

cv_status cv_frame_query_add(struct cv_frame_req *req, const char *name, const char *value)
{
    static const struct {
        const char *name;
        enum param bit;
        bool cvc_only;
    } known[] = {{"key", P_KEY, false},     {"origin", P_ORIGIN, false}, {"nonce", P_NONCE, false},
                 {"title", P_TITLE, false}, {"lang", P_LANG, false},     {"token", P_TOKEN, true},
                 {"brand", P_BRAND, true}};
    enum param bit = 0;
    if (name == NULL)
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(name, known[i].name) == 0 && (!known[i].cvc_only || req->kind == CV_FRAME_CVC))
            bit = known[i].bit;
    if (value != NULL && bit != P_KEY && looks_secret(value))
        return fail(req, CV_ERR_KEY_IN_QUERY);
    if (bit == 0 || value == NULL || value[0] == '\0' || (req->seen & bit) != 0)
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    req->seen |= bit;
    size_t n = strlen(value);
    switch (bit) {
    case P_KEY:
        if (cv_token_api_key_is_valid(value, n) && strncmp(value, "pk_", 3) != 0)
            return fail(req, CV_ERR_FRAME_KEY_NOT_PUBLISHABLE);
        if (looks_secret(value))
            return fail(req, CV_ERR_KEY_IN_QUERY);
        if (!cv_token_api_key_is_valid(value, n))
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->key, sizeof(req->key), value);
    case P_ORIGIN:
        /* Exactly as the browser serializes it: the frame posts to this
         * string and compares event.origin with it, byte for byte. */
        if (!cv_origin_is_canonical(value, n))
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->origin, sizeof(req->origin), value);
    case P_NONCE:
        if (n < CV_FRAME_NONCE_MIN || n > CV_FRAME_NONCE_MAX)
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        for (size_t i = 0; i < n; i++)
            if (!in_set(value[i], "_-"))
                return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->nonce, sizeof(req->nonce), value);
    case P_TITLE:
        if (!text_ok(value, CV_FRAME_TITLE_MAX))
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->title, sizeof(req->title), value);
    case P_LANG:
        if (!lang_ok(value))
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->lang, sizeof(req->lang), value);
    case P_TOKEN:
        if (!cv_token_is_valid(value, n))
            return fail(req, CV_ERR_FRAME_BAD_REQUEST);
        return copy_param(req, req->token, sizeof(req->token), value);
    case P_BRAND:
        for (size_t i = 0; i < sizeof(brands) / sizeof(brands[0]); i++)
            if (strcmp(value, brands[i]) == 0)
                return copy_param(req, req->brand, sizeof(req->brand), value);
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    default:
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    }
}

cv_status cv_frame_query_finish(struct cv_frame_req *req)
{
    unsigned need = P_KEY | P_ORIGIN | P_NONCE | (req->kind == CV_FRAME_CVC ? P_TOKEN : 0);
    if (req->error != CV_OK)
        return req->error;
    if ((req->seen & need) != need)
        return fail(req, CV_ERR_FRAME_BAD_REQUEST);
    return CV_OK;
}

/* ---- headers ----------------------------------------------------------------------------- */

/* The frame page: nothing but its own script, style and API; no form
 * submission, no <base>, and framed by the one origin its key allows. */
static const char frame_csp_head[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors ";
/* A refusal page has no script and no input: it may show inside the shop's
 * iframe, so the developer sees why. */
static const char refusal_csp[] =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors *";

size_t cv_elements_web_headers(enum cv_web_policy policy, const char *frame_ancestor,
                               struct cv_web_header out[CV_WEB_HEADERS_MAX], char *scratch,
                               size_t scratch_cap)
{
    size_t n = 0;
    out[n++] = (struct cv_web_header){"X-Content-Type-Options", "nosniff"};
    switch (policy) {
    case CV_WEB_PUBLIC_SCRIPT:
        /* <script integrity=... crossorigin="anonymous"> on any shop needs
         * CORS; the file is public and the same for everyone. */
        out[n++] = (struct cv_web_header){"Cache-Control", "public, max-age=300"};
        out[n++] = (struct cv_web_header){"Access-Control-Allow-Origin", "*"};
        out[n++] = (struct cv_web_header){"Cross-Origin-Resource-Policy", "cross-origin"};
        break;
    case CV_WEB_FRAME_ASSET:
        out[n++] = (struct cv_web_header){"Cache-Control", "public, max-age=300"};
        out[n++] = (struct cv_web_header){"Cross-Origin-Resource-Policy", "same-origin"};
        break;
    case CV_WEB_FRAME_PAGE: {
        const char *anc = "'none'";
        if (frame_ancestor != NULL &&
            cv_origin_is_canonical(frame_ancestor, strlen(frame_ancestor)))
            anc = frame_ancestor;
        int w = snprintf(scratch, scratch_cap, "%s%s", frame_csp_head, anc);
        if (w < 0 || (size_t)w >= scratch_cap)
            snprintf(scratch, scratch_cap, "default-src 'none'; frame-ancestors 'none'");
        out[n++] = (struct cv_web_header){"Content-Security-Policy", scratch};
        out[n++] = (struct cv_web_header){"Cache-Control", "no-store"};
        out[n++] = (struct cv_web_header){"Referrer-Policy", "no-referrer"};
        out[n++] = (struct cv_web_header){"Cross-Origin-Resource-Policy", "same-origin"};
        break;
    }
    case CV_WEB_FRAME_REFUSAL:
        out[n++] = (struct cv_web_header){"Content-Security-Policy", refusal_csp};
        out[n++] = (struct cv_web_header){"Cache-Control", "no-store"};
        out[n++] = (struct cv_web_header){"Referrer-Policy", "no-referrer"};
        break;
    case CV_WEB_API:
    default:
        out[n++] = (struct cv_web_header){"Cache-Control", "no-store"};
        break;
    }
    return n;
}

/* ---- pages ------------------------------------------------------------------------------- */

static cv_status append_escaped(struct cv_buf *b, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '&':
            CV_TRY(cv_buf_append_str(b, "&amp;"));
            break;
        case '<':
            CV_TRY(cv_buf_append_str(b, "&lt;"));
            break;
        case '>':
            CV_TRY(cv_buf_append_str(b, "&gt;"));
            break;
        case '"':
            CV_TRY(cv_buf_append_str(b, "&quot;"));
            break;
        case '\'':
            CV_TRY(cv_buf_append_str(b, "&#39;"));
            break;
        default:
            CV_TRY(cv_buf_append_char(b, *s));
        }
    }
    return CV_OK;
}

/* Appends to a page. cv_buf's errors are sticky: a page that outgrew its
 * cap comes back NULL from cv_buf_take, checked once at the end. */
static void put_n(struct cv_buf *b, const char *s, size_t n)
{
    cv_status st = cv_buf_append(b, s, n);
    (void)st;
}

static void put(struct cv_buf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

/* Appends a template, replacing each "{}" with the next value, escaped. */
static void emit(struct cv_buf *b, const char *tpl, const char *const *vals, size_t n_vals)
{
    size_t k = 0;
    for (const char *p = tpl; *p != '\0';) {
        const char *hole = strstr(p, "{}");
        if (hole == NULL || k == n_vals) {
            put(b, p);
            return;
        }
        put_n(b, p, (size_t)(hole - p));
        cv_status st = append_escaped(b, vals[k++]);
        (void)st;
        p = hole + 2;
    }
}

struct labels {
    const char *card_title, *cvc_title, *name, *number, *exp, *cvc, *exp_placeholder, *cvc_hint;
};
static const struct labels labels_en = {
    "Card details", "Security code",
    "Name on card", "Card number",
    "Expiry date",  "Security code",
    "MM / YY",      "Type the security code printed on your card: browsers do not fill it in."};
static const struct labels labels_ja = {
    "カード情報", "セキュリティコード",
    "カード名義", "カード番号",
    "有効期限",   "セキュリティコード",
    "MM / YY",    "カードに記載のセキュリティコードを入力してください（自動入力されません）。"};

static const char page_head[] = "<!doctype html>\n<html lang=\"{}\">\n<head>\n"
                                "<meta charset=\"utf-8\">\n"
                                "<meta name=\"viewport\" content=\"width=device-width, "
                                "initial-scale=1\">\n"
                                "<title>{}</title>\n"
                                "<link rel=\"stylesheet\" href=\"/elements/frame.css\">\n"
                                "<script src=\"/elements/frame.js\" defer></script>\n"
                                "</head>\n";

static const char field_name[] =
    "<div class=\"cv-field cv-field-name\">\n"
    "<label for=\"cv-name\">{}</label>\n"
    "<input id=\"cv-name\" name=\"ccname\" type=\"text\" autocomplete=\"cc-name\" "
    "autocapitalize=\"characters\" autocorrect=\"off\" spellcheck=\"false\" maxlength=\"128\" "
    "aria-describedby=\"cv-name-error\" aria-invalid=\"false\">\n"
    "<p id=\"cv-name-error\" class=\"cv-error\" role=\"alert\" aria-live=\"polite\"></p>\n"
    "</div>\n";
static const char field_number[] =
    "<div class=\"cv-field cv-field-number\">\n"
    "<label for=\"cv-number\">{}</label>\n"
    "<div class=\"cv-with-brand\">\n"
    "<input id=\"cv-number\" name=\"cardnumber\" type=\"text\" inputmode=\"numeric\" "
    "autocomplete=\"cc-number\" autocorrect=\"off\" spellcheck=\"false\" maxlength=\"23\" "
    "aria-describedby=\"cv-number-error cv-brand\" aria-invalid=\"false\">\n"
    "<span id=\"cv-brand\" class=\"cv-brand\" data-brand=\"unknown\"></span>\n"
    "</div>\n"
    "<p id=\"cv-number-error\" class=\"cv-error\" role=\"alert\" aria-live=\"polite\"></p>\n"
    "</div>\n";
static const char field_exp[] =
    "<div class=\"cv-field cv-field-exp\">\n"
    "<label for=\"cv-exp\">{}</label>\n"
    "<input id=\"cv-exp\" name=\"cc-exp\" type=\"text\" inputmode=\"numeric\" "
    "autocomplete=\"cc-exp\" autocorrect=\"off\" spellcheck=\"false\" placeholder=\"{}\" "
    "maxlength=\"9\" aria-describedby=\"cv-exp-error\" aria-invalid=\"false\">\n"
    "<p id=\"cv-exp-error\" class=\"cv-error\" role=\"alert\" aria-live=\"polite\"></p>\n"
    "</div>\n";
static const char field_cvc[] =
    "<div class=\"cv-field cv-field-cvc\">\n"
    "<label for=\"cv-cvc\">{}</label>\n"
    "<input id=\"cv-cvc\" name=\"cvc\" type=\"text\" inputmode=\"numeric\" "
    "autocomplete=\"cc-csc\" autocorrect=\"off\" spellcheck=\"false\" maxlength=\"4\" "
    "aria-describedby=\"cv-cvc-error cv-cvc-hint\" aria-invalid=\"false\">\n"
    "<p id=\"cv-cvc-error\" class=\"cv-error\" role=\"alert\" aria-live=\"polite\"></p>\n"
    "</div>\n";
static const char cvc_hint[] =
    "<p id=\"cv-cvc-hint\" class=\"cv-hint\" aria-live=\"polite\" hidden>{}</p>\n";

cv_status cv_elements_render_frame(const struct cv_frame_req *req, char **page, size_t *len)
{
    struct cv_buf b;
    const char *lang = req->lang[0] != '\0' ? req->lang : "en";
    bool ja = (lang[0] == 'j' || lang[0] == 'J') && (lang[1] == 'a' || lang[1] == 'A') &&
              (lang[2] == '\0' || lang[2] == '-');
    const struct labels *l = ja ? &labels_ja : &labels_en;
    bool cvc_only = req->kind == CV_FRAME_CVC;
    const char *title = req->title[0] != '\0' ? req->title
                        : cvc_only            ? l->cvc_title
                                              : l->card_title;
    cv_buf_init(&b, PAGE_MAX_BYTES);
    const char *head[] = {lang, title};
    emit(&b, page_head, head, 2);
    const char *body[] = {cvc_only ? "cvc" : "card", req->key, req->origin, req->nonce,
                          ja ? "ja" : "en"};
    emit(&b,
         "<body data-mode=\"{}\" data-key=\"{}\" data-origin=\"{}\" data-nonce=\"{}\" "
         "data-labels=\"{}\"",
         body, 5);
    if (cvc_only) {
        const char *saved[] = {req->token, req->brand[0] != '\0' ? req->brand : "unknown"};
        emit(&b, " data-token=\"{}\" data-brand=\"{}\"", saved, 2);
    }
    put(&b, ">\n<form id=\"cv-form\" novalidate autocomplete=\"on\">\n");
    if (cvc_only) {
        const char *brand[] = {req->brand[0] != '\0' ? req->brand : "unknown"};
        emit(&b, "<span id=\"cv-brand\" class=\"cv-brand\" data-brand=\"{}\"></span>\n", brand, 1);
        emit(&b, field_cvc, &l->cvc, 1);
    } else {
        emit(&b, field_name, &l->name, 1);
        emit(&b, field_number, &l->number, 1);
        put(&b, "<div class=\"cv-row\">\n");
        const char *exp[] = {l->exp, l->exp_placeholder};
        emit(&b, field_exp, exp, 2);
        emit(&b, field_cvc, &l->cvc, 1);
        put(&b, "</div>\n");
        emit(&b, cvc_hint, &l->cvc_hint, 1);
    }
    put(&b, "</form>\n</body>\n</html>\n");
    *page = cv_buf_take(&b, len);
    return *page != NULL ? CV_OK : CV_ERR_INTERNAL;
}

char *cv_elements_refusal_page(int http_status, const char *code, const char *message,
                               const char *request_id, size_t *len)
{
    struct cv_buf b;
    char status[16];
    snprintf(status, sizeof(status), "%d", http_status);
    cv_buf_init(&b, PAGE_MAX_BYTES);
    const char *vals[] = {status, message, code, request_id != NULL ? request_id : "-"};
    emit(&b,
         "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<title>Card fields unavailable</title>\n</head>\n<body>\n"
         "<h1>Card fields unavailable ({})</h1>\n<p id=\"cv-refusal-message\">{}</p>\n"
         "<p>Error code: <code id=\"cv-refusal-code\">{}</code>. Request: <code>{}</code>.</p>\n"
         "</body>\n</html>\n",
         vals, 4);
    return cv_buf_take(&b, len);
}

/* ---- integrity --------------------------------------------------------------------------- */

void cv_elements_base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[w++] = tab[(v >> 18) & 63];
        out[w++] = tab[(v >> 12) & 63];
        out[w++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[w++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[w] = '\0';
}

cv_status cv_elements_sri(char out[CV_ELEMENTS_SRI_LEN + 1])
{
    unsigned char digest[48];
    CV_TRY(cv_envelope_sha384(cv_asset_elements_js, cv_asset_elements_js_len, digest));
    char b64[65];
    cv_elements_base64(digest, sizeof(digest), b64);
    snprintf(out, CV_ELEMENTS_SRI_LEN + 1, "sha384-%s", b64);
    return CV_OK;
}

/* ---- handlers ---------------------------------------------------------------------------- */

static void finish_static(struct cv_completion *done, const unsigned char *data, size_t len,
                          enum cv_body_type type, enum cv_web_policy web)
{
    struct cv_result res;
    memset(&res, 0, sizeof(res));
    res.status = CV_OK;
    res.kind = CV_RESULT_OK;
    res.static_body = (const char *)data;
    res.body_len = len;
    res.body_type = type;
    res.web = web;
    cv_completion_finish(done, &res);
}

void cv_api_elements_js(const struct cv_handler_deps *deps, const struct cv_call *call,
                        struct cv_completion *done)
{
    (void)deps;
    (void)call;
    finish_static(done, cv_asset_elements_js, cv_asset_elements_js_len, CV_BODY_JAVASCRIPT,
                  CV_WEB_PUBLIC_SCRIPT);
}

void cv_api_frame_js(const struct cv_handler_deps *deps, const struct cv_call *call,
                     struct cv_completion *done)
{
    (void)deps;
    (void)call;
    finish_static(done, cv_asset_frame_js, cv_asset_frame_js_len, CV_BODY_JAVASCRIPT,
                  CV_WEB_FRAME_ASSET);
}

void cv_api_frame_css(const struct cv_handler_deps *deps, const struct cv_call *call,
                      struct cv_completion *done)
{
    (void)deps;
    (void)call;
    finish_static(done, cv_asset_frame_css, cv_asset_frame_css_len, CV_BODY_CSS,
                  CV_WEB_FRAME_ASSET);
}

void cv_api_frame_page(const struct cv_handler_deps *deps, const struct cv_call *call,
                       struct cv_completion *done)
{
    struct cv_result res;
    (void)deps;
    memset(&res, 0, sizeof(res));
    const struct cv_frame_req *req = call->frame;
    if (req == NULL || call->who == NULL) {
        res.status = CV_ERR_INTERNAL;
    } else if (call->who->scopes != CV_SCOPE_TOKENIZE || strncmp(req->key, "pk_", 3) != 0) {
        /* A key that can read, delete or detokenize must never be on a page. */
        res.status = CV_ERR_FRAME_KEY_REFUSED;
    } else if (!cv_origin_list_contains(call->who->origins, req->origin)) {
        res.status = CV_ERR_FRAME_ORIGIN;
    } else {
        res.status = cv_elements_render_frame(req, &res.body, &res.body_len);
        res.free_body = free;
        res.kind = CV_RESULT_OK;
        res.body_type = CV_BODY_HTML;
        res.web = CV_WEB_FRAME_PAGE;
        snprintf(res.frame_ancestor, sizeof(res.frame_ancestor), "%s", req->origin);
    }
    cv_completion_finish(done, &res);
}
