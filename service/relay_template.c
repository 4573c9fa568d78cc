/* relay_template.c: the relay's body template (relay_template.h). One walker
 * reads the template for all three jobs (check, measure, write), so what the
 * checker accepts is exactly what the renderer fills in. The checker never
 * sees card data; the renderer writes card values only into the secret
 * buffer it returns, escaped for the body's content type, and wipes every
 * stack copy of a formatted value. Nothing here logs or allocates outside
 * that buffer. */
#include "cardvault/relay_template.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const field_names[CV_RELAY_FIELD_COUNT] = {
    [CV_RELAY_FIELD_NUMBER] = "number",     [CV_RELAY_FIELD_EXP_MONTH] = "exp_month",
    [CV_RELAY_FIELD_EXP_YEAR] = "exp_year", [CV_RELAY_FIELD_EXP_YEAR2] = "exp_year2",
    [CV_RELAY_FIELD_NAME] = "name",         [CV_RELAY_FIELD_CVC] = "cvc",
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

enum cv_relay_content cv_relay_content_of(const char *content_type)
{
    if (content_type == NULL)
        return CV_RELAY_CONTENT_OTHER;
    const char *p = content_type;
    while (is_space(*p))
        p++;
    size_t n = strcspn(p, "; \t");
    /* The media type is type "/" subtype, compared case-insensitively (RFC 9110 8.3.1). */
    static const char json[] = "application/json";
    static const char form[] = "application/x-www-form-urlencoded";
    static const char app[] = "application/";
    static const char plus_json[] = "+json";
    if (n == sizeof(json) - 1 && strncasecmp(p, json, n) == 0)
        return CV_RELAY_CONTENT_JSON;
    if (n == sizeof(form) - 1 && strncasecmp(p, form, n) == 0)
        return CV_RELAY_CONTENT_FORM;
    /* application/<x>+json (RFC 6839), e.g. application/vnd.api+json */
    if (n > sizeof(app) - 1 + sizeof(plus_json) - 1 && strncasecmp(p, app, sizeof(app) - 1) == 0 &&
        strncasecmp(p + n - (sizeof(plus_json) - 1), plus_json, sizeof(plus_json) - 1) == 0 &&
        memchr(p + sizeof(app) - 1, '/', n - (sizeof(app) - 1)) == NULL)
        return CV_RELAY_CONTENT_JSON;
    return CV_RELAY_CONTENT_OTHER;
}

bool cv_relay_has_placeholder(const char *s, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '{' && s[i + 1] == '{')
            return true;
    return false;
}

bool cv_relay_placeholder_echoable(const char *s, size_t len)
{
    if (len == 0 || len > CV_RELAY_PLACEHOLDER_MAX)
        return false;
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.'))
            return false;
    }
    /* six digits could be a BIN, or part of a card number typed in by mistake */
    return digits < 6;
}

static bool alias_char_ok(char c, bool first)
{
    if (c >= 'a' && c <= 'z')
        return true;
    return !first && ((c >= '0' && c <= '9') || c == '_');
}

/* One walk over a template: check (cards NULL), measure (out NULL) or write. */
struct walk {
    const char *t;
    size_t len;
    enum cv_relay_content content;
    const char *const *aliases;
    size_t n_aliases;
    const struct cv_relay_card *cards; /* NULL: check only */
    unsigned char *out;                /* NULL: count only */
    size_t w;                          /* bytes written (or counted) */
    size_t max_bytes;
    struct cv_relay_template_use *use;
    char *param;
};

static cv_status emit(struct walk *wk, const void *p, size_t n)
{
    if (n > wk->max_bytes || wk->w > wk->max_bytes - n)
        return CV_ERR_BODY_TOO_LARGE;
    if (wk->out != NULL)
        memcpy(wk->out + wk->w, p, n);
    wk->w += n;
    return CV_OK;
}

/* JSON string escaping (RFC 8259 7): quote, backslash and control bytes;
 * other bytes (UTF-8 included) as they are. */
static cv_status emit_json(struct walk *wk, const char *v, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        cv_status st;
        if (c == '"' || c == '\\') {
            e[1] = (char)c;
            st = emit(wk, e, 2);
        } else if (c < 0x20) {
            st = emit(wk, e, 6);
        } else {
            st = emit(wk, &v[i], 1);
        }
        cv_wipe(e, sizeof(e));
        if (st != CV_OK)
            return st;
    }
    return CV_OK;
}

/* application/x-www-form-urlencoded (WHATWG URL, "urlencoded serializer"):
 * alphanumerics and *-._ as they are, space as '+', every other byte %XX. */
static cv_status emit_form(struct walk *wk, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        char e[3] = {'%', hex[c >> 4], hex[c & 15]};
        cv_status st;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '*' || c == '-' || c == '.' || c == '_') {
            st = emit(wk, &v[i], 1);
        } else if (c == ' ') {
            st = emit(wk, "+", 1);
        } else {
            st = emit(wk, e, 3);
        }
        cv_wipe(e, sizeof(e));
        if (st != CV_OK)
            return st;
    }
    return CV_OK;
}

/* Writes one card field, escaped. */
static cv_status emit_value(struct walk *wk, const struct cv_relay_card *card,
                            enum cv_relay_field f)
{
    char num[8];
    const char *v = NULL;
    switch (f) {
    case CV_RELAY_FIELD_NUMBER:
        v = card->pan;
        break;
    case CV_RELAY_FIELD_EXP_MONTH:
        snprintf(num, sizeof(num), "%02d", card->exp_month % 100);
        v = num;
        break;
    case CV_RELAY_FIELD_EXP_YEAR:
        snprintf(num, sizeof(num), "%04d", card->exp_year % 10000);
        v = num;
        break;
    case CV_RELAY_FIELD_EXP_YEAR2:
        snprintf(num, sizeof(num), "%02d", card->exp_year % 100);
        v = num;
        break;
    case CV_RELAY_FIELD_NAME:
        v = card->name != NULL ? card->name : "";
        break;
    case CV_RELAY_FIELD_CVC:
        v = card->cvc;
        break;
    case CV_RELAY_FIELD_COUNT:
        break;
    }
    if (v == NULL || card->pan == NULL)
        return CV_ERR_INTERNAL; /* the caller checked use.uses_cvc and opened every token */
    cv_status st = wk->content == CV_RELAY_CONTENT_JSON ? emit_json(wk, v, strlen(v))
                                                        : emit_form(wk, v, strlen(v));
    cv_wipe(num, sizeof(num));
    return st;
}

static void set_param(struct walk *wk, const char *s, size_t n)
{
    if (wk->param == NULL)
        return;
    wk->param[0] = '\0';
    if (cv_relay_placeholder_echoable(s, n)) {
        memcpy(wk->param, s, n);
        wk->param[n] = '\0';
    }
}

/* The placeholder whose text (between the braces) is s[0..n): its alias
 * index and field, or CV_ERR_RELAY_PLACEHOLDER_UNKNOWN. */
static cv_status parse_placeholder(const struct walk *wk, const char *s, size_t n, size_t *alias,
                                   enum cv_relay_field *field)
{
    const char *dot = memchr(s, '.', n);
    if (dot == NULL)
        return CV_ERR_RELAY_PLACEHOLDER_UNKNOWN;
    size_t an = (size_t)(dot - s);
    if (an == 0 || an > CV_RELAY_ALIAS_MAX)
        return CV_ERR_RELAY_PLACEHOLDER_UNKNOWN;
    for (size_t i = 0; i < an; i++)
        if (!alias_char_ok(s[i], i == 0))
            return CV_ERR_RELAY_PLACEHOLDER_UNKNOWN;
    bool found = false;
    for (size_t i = 0; i < wk->n_aliases && !found; i++) {
        if (strlen(wk->aliases[i]) == an && memcmp(wk->aliases[i], s, an) == 0) {
            *alias = i;
            found = true;
        }
    }
    if (!found)
        return CV_ERR_RELAY_PLACEHOLDER_UNKNOWN;
    const char *fs = dot + 1;
    size_t fn = n - an - 1;
    for (int f = 0; f < CV_RELAY_FIELD_COUNT; f++) {
        if (strlen(field_names[f]) == fn && memcmp(field_names[f], fs, fn) == 0) {
            *field = (enum cv_relay_field)f;
            return CV_OK;
        }
    }
    return CV_ERR_RELAY_PLACEHOLDER_UNKNOWN;
}

/* Finds the card of alias index a (the renderer's cards are in any order). */
static const struct cv_relay_card *card_of(const struct walk *wk, size_t a)
{
    for (size_t i = 0; i < wk->n_aliases; i++)
        if (strcmp(wk->cards[i].alias, wk->aliases[a]) == 0)
            return &wk->cards[i];
    return NULL;
}

static cv_status run(struct walk *wk)
{
    bool in_string = false; /* JSON only: inside a string literal */
    size_t lit = 0;         /* start of the literal text not yet emitted */
    size_t i = 0;
    while (i < wk->len) {
        char c = wk->t[i];
        if (c == '{' && i + 1 < wk->len && wk->t[i + 1] == '{') {
            if (wk->content == CV_RELAY_CONTENT_OTHER) {
                set_param(wk, "", 0);
                return CV_ERR_RELAY_CONTENT_TYPE;
            }
            const char *s = wk->t + i + 2;
            size_t room = wk->len - i - 2;
            size_t scan = room < CV_RELAY_PLACEHOLDER_MAX + 2 ? room : CV_RELAY_PLACEHOLDER_MAX + 2;
            size_t n = 0;
            bool closed = false;
            for (; n + 1 < scan; n++) {
                if (s[n] == '}' && s[n + 1] == '}') {
                    closed = true;
                    break;
                }
            }
            if (!closed) {
                /* Name what there is up to the first byte no placeholder has. */
                size_t k = 0;
                while (k < scan && (alias_char_ok(s[k], false) || s[k] == '.'))
                    k++;
                set_param(wk, s, k);
                return CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED;
            }
            size_t alias = 0;
            enum cv_relay_field field = CV_RELAY_FIELD_NUMBER;
            cv_status st = parse_placeholder(wk, s, n, &alias, &field);
            if (st != CV_OK) {
                set_param(wk, s, n);
                return st;
            }
            if (wk->content == CV_RELAY_CONTENT_JSON && !in_string) {
                set_param(wk, s, n);
                return CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED;
            }
            CV_TRY(emit(wk, wk->t + lit, i - lit));
            if (wk->use != NULL) {
                wk->use->used[alias] |= 1u << field;
                wk->use->placeholders++;
                if (field == CV_RELAY_FIELD_CVC)
                    wk->use->uses_cvc = true;
            }
            if (wk->cards != NULL) {
                const struct cv_relay_card *card = card_of(wk, alias);
                if (card == NULL)
                    return CV_ERR_INTERNAL;
                CV_TRY(emit_value(wk, card, field));
            }
            i += 2 + n + 2;
            lit = i;
            continue;
        }
        if (wk->content == CV_RELAY_CONTENT_JSON) {
            if (in_string && c == '\\') {
                i += 2; /* the escaped byte cannot end the string */
                continue;
            }
            if (c == '"')
                in_string = !in_string;
        }
        i++;
    }
    if (lit < wk->len)
        CV_TRY(emit(wk, wk->t + lit, wk->len - lit));
    return CV_OK;
}

cv_status cv_relay_template_check(const char *tmpl, size_t len, enum cv_relay_content content,
                                  const char *const *aliases, size_t n_aliases,
                                  struct cv_relay_template_use *use, char param[CV_RELAY_PARAM_MAX])
{
    memset(use, 0, sizeof(*use));
    param[0] = '\0';
    if (n_aliases > CV_RELAY_TOKENS_MAX)
        return CV_ERR_INTERNAL;
    struct walk wk = {.t = tmpl,
                      .len = len,
                      .content = content,
                      .aliases = aliases,
                      .n_aliases = n_aliases,
                      .max_bytes = (size_t)-1,
                      .use = use,
                      .param = param};
    cv_status st = run(&wk);
    if (st != CV_OK)
        memset(use, 0, sizeof(*use));
    return st;
}

cv_status cv_relay_template_render(const char *tmpl, size_t len, enum cv_relay_content content,
                                   const struct cv_relay_card *cards, size_t n_cards,
                                   size_t max_bytes, struct cv_secbuf **out)
{
    const char *aliases[CV_RELAY_TOKENS_MAX];
    *out = NULL;
    if (n_cards > CV_RELAY_TOKENS_MAX)
        return CV_ERR_INTERNAL;
    for (size_t i = 0; i < n_cards; i++)
        aliases[i] = cards[i].alias;
    struct walk wk = {.t = tmpl,
                      .len = len,
                      .content = content,
                      .aliases = aliases,
                      .n_aliases = n_cards,
                      .cards = cards,
                      .max_bytes = max_bytes};
    /* First measure, then write into a buffer of exactly that size: a
     * growing buffer would leave copies of the card behind in the heap. */
    CV_TRY(run(&wk));
    struct cv_secbuf *b = cv_secbuf_new(wk.w + 1);
    wk.out = b->data;
    wk.w = 0;
    cv_status st = run(&wk);
    if (st != CV_OK) {
        cv_secbuf_free(b);
        return st;
    }
    b->data[wk.w] = '\0';
    b->len = wk.w;
    *out = b;
    return CV_OK;
}
