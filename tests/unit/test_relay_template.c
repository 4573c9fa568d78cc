/* test_relay_template.c: the relay's body template: every placeholder, both
 * escapings (JSON string, form), every refusal (unknown, unterminated,
 * outside a JSON string, unsupported content type), the content-type
 * reader, and the echo rule for placeholder names in errors. */
#include "cardvault/relay_template.h"

#include <string.h>

#include "check.h"

static const char *const one_alias[] = {"card"};

static const struct cv_relay_card visa = {
    .alias = "card",
    .pan = "4111111111111111",
    .exp_month = 3,
    .exp_year = 2031,
    .name = "Ada Lovelace",
    .cvc = "123",
};

/* Renders tmpl with visa under content; the result text or NULL, into out. */
static cv_status render(const char *tmpl, enum cv_relay_content content,
                        const struct cv_relay_card *cards, size_t n, char *out, size_t cap)
{
    struct cv_secbuf *b = NULL;
    cv_status st = cv_relay_template_render(tmpl, strlen(tmpl), content, cards, n, 65536, &b);
    out[0] = '\0';
    if (st == CV_OK) {
        CHECK(b->len < cap);
        CHECK_EQ_INT(b->data[b->len], '\0');
        memcpy(out, b->data, b->len + 1 < cap ? b->len + 1 : cap);
        out[cap - 1] = '\0';
    }
    cv_secbuf_free(b);
    return st;
}

static cv_status check(const char *tmpl, enum cv_relay_content content,
                       struct cv_relay_template_use *use, char param[CV_RELAY_PARAM_MAX])
{
    return cv_relay_template_check(tmpl, strlen(tmpl), content, one_alias, 1, use, param);
}

static void render_fills_every_placeholder_in_json(void)
{
    char out[512];
    const char *t =
        "{\"n\":\"{{card.number}}\",\"m\":\"{{card.exp_month}}\",\"y\":\"{{card.exp_year}}"
        "\",\"y2\":\"{{card.exp_year2}}\",\"h\":\"{{card.name}}\",\"c\":\"{{card.cvc}}\"}";
    CHECK_EQ_INT(render(t, CV_RELAY_CONTENT_JSON, &visa, 1, out, sizeof(out)), CV_OK);
    CHECK(strcmp(out, "{\"n\":\"4111111111111111\",\"m\":\"03\",\"y\":\"2031\",\"y2\":\"31\","
                      "\"h\":\"Ada Lovelace\",\"c\":\"123\"}") == 0);
}

static void check_reports_what_is_used(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("{\"n\":\"{{card.number}}\",\"c\":\"{{card.cvc}}\"}", CV_RELAY_CONTENT_JSON,
                       &use, param),
                 CV_OK);
    CHECK(use.uses_cvc);
    CHECK_EQ_INT(use.placeholders, 2);
    CHECK_EQ_INT(use.used[0], (1u << CV_RELAY_FIELD_NUMBER) | (1u << CV_RELAY_FIELD_CVC));
    CHECK_EQ_INT(check("{\"n\":\"{{card.number}}\"}", CV_RELAY_CONTENT_JSON, &use, param), CV_OK);
    CHECK(!use.uses_cvc);
    CHECK_EQ_INT(check("no placeholder at all", CV_RELAY_CONTENT_OTHER, &use, param), CV_OK);
    CHECK_EQ_INT(use.placeholders, 0);
}

static void render_fills_every_placeholder_in_a_form(void)
{
    char out[512];
    const char *t = "number={{card.number}}&exp={{card.exp_month}}%2F{{card.exp_year2}}"
                    "&year={{card.exp_year}}&name={{card.name}}&cvc={{card.cvc}}";
    CHECK_EQ_INT(render(t, CV_RELAY_CONTENT_FORM, &visa, 1, out, sizeof(out)), CV_OK);
    CHECK(strcmp(out, "number=4111111111111111&exp=03%2F31&year=2031&name=Ada+Lovelace&cvc=123") ==
          0);
}

static void json_escaping_keeps_the_document_valid(void)
{
    struct cv_relay_card c = visa;
    c.name = "O\"Brien \\ \x01\n\xc3\xa9"; /* quote, backslash, controls, UTF-8 */
    char out[256];
    CHECK_EQ_INT(
        render("{\"h\":\"{{card.name}}\"}", CV_RELAY_CONTENT_JSON, &c, 1, out, sizeof(out)), CV_OK);
    CHECK(strcmp(out, "{\"h\":\"O\\\"Brien \\\\ \\u0001\\u000a\xc3\xa9\"}") == 0);
}

static void form_escaping_encodes_every_reserved_byte(void)
{
    struct cv_relay_card c = visa;
    c.name = "A&B=C+D %/\xc3\xa9*-._~";
    char out[256];
    CHECK_EQ_INT(render("name={{card.name}}", CV_RELAY_CONTENT_FORM, &c, 1, out, sizeof(out)),
                 CV_OK);
    CHECK(strcmp(out, "name=A%26B%3DC%2BD+%25%2F%C3%A9*-._%7E") == 0);
}

static void name_absent_renders_empty(void)
{
    struct cv_relay_card c = visa;
    c.name = NULL;
    char out[64];
    CHECK_EQ_INT(
        render("{\"h\":\"{{card.name}}\"}", CV_RELAY_CONTENT_JSON, &c, 1, out, sizeof(out)), CV_OK);
    CHECK(strcmp(out, "{\"h\":\"\"}") == 0);
}

static void two_aliases_render_their_own_cards(void)
{
    struct cv_relay_card cards[2] = {visa, visa};
    cards[1].alias = "backup";
    cards[1].pan = "5555555555554444";
    cards[1].exp_month = 12;
    cards[1].exp_year = 2029;
    char out[256];
    CHECK_EQ_INT(render("a={{card.number}}&b={{backup.number}}&m={{backup.exp_month}}",
                        CV_RELAY_CONTENT_FORM, cards, 2, out, sizeof(out)),
                 CV_OK);
    CHECK(strcmp(out, "a=4111111111111111&b=5555555555554444&m=12") == 0);
    const char *const both[] = {"card", "backup"};
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    const char *t = "{\"x\":\"{{backup.cvc}}\"}";
    CHECK_EQ_INT(cv_relay_template_check(t, strlen(t), CV_RELAY_CONTENT_JSON, both, 2, &use, param),
                 CV_OK);
    CHECK_EQ_INT(use.used[0], 0);
    CHECK_EQ_INT(use.used[1], 1u << CV_RELAY_FIELD_CVC);
}

static void unknown_field_or_alias_is_refused_and_named(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("{\"n\":\"{{card.nmber}}\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK(strcmp(param, "card.nmber") == 0);
    CHECK_EQ_INT(check("{\"n\":\"{{other.number}}\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK(strcmp(param, "other.number") == 0);
    const char *bad[] = {
        "{\"n\":\"{{card}}\"}",          "{\"n\":\"{{ card.number }}\"}", "{\"n\":\"{{.number}}\"}",
        "{\"n\":\"{{card.}}\"}",         "{\"n\":\"{{Card.number}}\"}",   "{\"n\":\"{{}}\"}",
        "{\"n\":\"{{{card.number}}}\"}", "{\"n\":\"{{card.number.x}}\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(check(bad[i], CV_RELAY_CONTENT_JSON, &use, param),
                     CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK_EQ_INT(use.placeholders, 0);
}

static void card_digits_in_a_placeholder_are_never_echoed(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("{\"n\":\"{{4111111111111111}}\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK_EQ_INT(param[0], '\0');
    CHECK_EQ_INT(check("{\"n\":\"{{card.4111 1111}}\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNKNOWN);
    CHECK_EQ_INT(param[0], '\0');
    CHECK_EQ_INT(check("{\"n\":\"{{4111111111111111", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED);
    CHECK_EQ_INT(param[0], '\0');
    CHECK(cv_relay_placeholder_echoable("card.number", 11));
    CHECK(!cv_relay_placeholder_echoable("card.123456", 11));
    CHECK(!cv_relay_placeholder_echoable("card number", 11));
    CHECK(!cv_relay_placeholder_echoable("", 0));
}

static void unterminated_placeholder_is_refused(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("{\"n\":\"{{card.number\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED);
    CHECK(strcmp(param, "card.number") == 0);
    CHECK_EQ_INT(check("x={{card.number}", CV_RELAY_CONTENT_FORM, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED);
    CHECK_EQ_INT(check("x={{", CV_RELAY_CONTENT_FORM, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED);
    /* "}}" further than the longest placeholder counts as unterminated */
    char far[128];
    memset(far, 'a', sizeof(far));
    memcpy(far, "x={{", 4);
    memcpy(far + sizeof(far) - 3, "}}", 3);
    CHECK_EQ_INT(check(far, CV_RELAY_CONTENT_FORM, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED);
}

static void placeholder_outside_a_json_string_is_refused(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("{\"m\":{{card.exp_month}}}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED);
    CHECK(strcmp(param, "card.exp_month") == 0);
    /* an escaped quote does not end the string */
    CHECK_EQ_INT(check("{\"m\":\"a\\\"{{card.number}}\"}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_OK);
    CHECK_EQ_INT(check("{\"m\":\"a\\\\\"{{card.number}}}", CV_RELAY_CONTENT_JSON, &use, param),
                 CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED);
    /* in a key it is inside a string: allowed */
    CHECK_EQ_INT(check("{\"{{card.exp_year2}}\":1}", CV_RELAY_CONTENT_JSON, &use, param), CV_OK);
}

static void other_content_types_take_no_placeholder(void)
{
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    CHECK_EQ_INT(check("<n>{{card.number}}</n>", CV_RELAY_CONTENT_OTHER, &use, param),
                 CV_ERR_RELAY_CONTENT_TYPE);
    CHECK_EQ_INT(check("<n>4111</n>", CV_RELAY_CONTENT_OTHER, &use, param), CV_OK);
    char out[64];
    CHECK_EQ_INT(render("<n>x</n>", CV_RELAY_CONTENT_OTHER, &visa, 1, out, sizeof(out)), CV_OK);
    CHECK(strcmp(out, "<n>x</n>") == 0);
}

static void content_type_is_read_case_insensitively_with_parameters(void)
{
    CHECK_EQ_INT(cv_relay_content_of("application/json"), CV_RELAY_CONTENT_JSON);
    CHECK_EQ_INT(cv_relay_content_of("Application/JSON; charset=utf-8"), CV_RELAY_CONTENT_JSON);
    CHECK_EQ_INT(cv_relay_content_of("application/vnd.api+json"), CV_RELAY_CONTENT_JSON);
    CHECK_EQ_INT(cv_relay_content_of(" application/x-www-form-urlencoded;charset=UTF-8"),
                 CV_RELAY_CONTENT_FORM);
    CHECK_EQ_INT(cv_relay_content_of("text/plain"), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of("application/jsonx"), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of("application/+json"), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of("application/a/b+json"), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of("text/json"), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of(""), CV_RELAY_CONTENT_OTHER);
    CHECK_EQ_INT(cv_relay_content_of(NULL), CV_RELAY_CONTENT_OTHER);
}

static void has_placeholder_finds_double_braces(void)
{
    CHECK(cv_relay_has_placeholder("Bearer {{card.number}}", 22));
    CHECK(cv_relay_has_placeholder("/v1/{{", 6));
    CHECK(!cv_relay_has_placeholder("/v1/{x}/}}", 10));
    CHECK(!cv_relay_has_placeholder("{", 1));
}

static void render_refuses_an_oversized_result_and_a_missing_cvc(void)
{
    struct cv_secbuf *b = NULL;
    const char *t = "{\"n\":\"{{card.number}}\"}";
    CHECK_EQ_INT(cv_relay_template_render(t, strlen(t), CV_RELAY_CONTENT_JSON, &visa, 1, 20, &b),
                 CV_ERR_BODY_TOO_LARGE);
    CHECK(b == NULL);
    struct cv_relay_card c = visa;
    c.cvc = NULL;
    const char *tc = "{\"c\":\"{{card.cvc}}\"}";
    CHECK_EQ_INT(cv_relay_template_render(tc, strlen(tc), CV_RELAY_CONTENT_JSON, &c, 1, 4096, &b),
                 CV_ERR_INTERNAL);
    CHECK(b == NULL);
}

int main(void)
{
    RUN(render_fills_every_placeholder_in_json);
    RUN(check_reports_what_is_used);
    RUN(render_fills_every_placeholder_in_a_form);
    RUN(json_escaping_keeps_the_document_valid);
    RUN(form_escaping_encodes_every_reserved_byte);
    RUN(name_absent_renders_empty);
    RUN(two_aliases_render_their_own_cards);
    RUN(unknown_field_or_alias_is_refused_and_named);
    RUN(card_digits_in_a_placeholder_are_never_echoed);
    RUN(unterminated_placeholder_is_refused);
    RUN(placeholder_outside_a_json_string_is_refused);
    RUN(other_content_types_take_no_placeholder);
    RUN(content_type_is_read_case_insensitively_with_parameters);
    RUN(has_placeholder_finds_double_braces);
    RUN(render_refuses_an_oversized_result_and_a_missing_cvc);
    return check_summary("relay_template");
}
