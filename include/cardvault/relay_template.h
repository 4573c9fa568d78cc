#ifndef CV_RELAY_TEMPLATE_H
#define CV_RELAY_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "cardvault/status.h"

/* The relay's body template (docs/relay.md): the request a shop wants sent to
 * its payment processor, with placeholders where the card goes. A
 * placeholder is "{{" ALIAS "." FIELD "}}", no blanks inside: ALIAS names
 * one token of the relay request ([a-z][a-z0-9_]{0,15}, "card" by custom)
 * and FIELD is one of
 *   number     the card number, digits only
 *   exp_month  the expiry month, two digits (MM)
 *   exp_year   the expiry year, four digits (YYYY)
 *   exp_year2  the expiry year, two digits (YY)
 *   name       the cardholder name ("" when the token has none)
 *   cvc        the security code taken from the CVC hold
 * "{{" always opens a placeholder: there is no escape for a literal "{{".
 * Each value is escaped for the body's content type: inside a JSON string of
 * an application/json (or +json) body, JSON string escaping; in an
 * application/x-www-form-urlencoded body, form percent-encoding. A body of
 * any other content type may carry no placeholder. In a JSON body a
 * placeholder outside a string literal is refused (a month "05" is no JSON
 * number, and a value outside quotes could change the document's shape).
 *
 * The checker reads only the template (no card data) and is run before any
 * token is opened; the renderer writes the card into a secret buffer it
 * sizes exactly, wiped when freed. Errors name the faulty placeholder only
 * when its text cannot carry card data (see cv_relay_placeholder_echoable). */

#define CV_RELAY_ALIAS_MAX       16 /* bytes of an alias */
#define CV_RELAY_TOKENS_MAX      4  /* tokens (aliases) in one relay */
#define CV_RELAY_PLACEHOLDER_MAX 48 /* bytes between "{{" and "}}" */

/* How a body is escaped. */
enum cv_relay_content {
    CV_RELAY_CONTENT_JSON = 0, /* application/json, application/<x>+json */
    CV_RELAY_CONTENT_FORM,     /* application/x-www-form-urlencoded */
    CV_RELAY_CONTENT_OTHER,    /* anything else (or none): no placeholder allowed */
};

enum cv_relay_field {
    CV_RELAY_FIELD_NUMBER = 0,
    CV_RELAY_FIELD_EXP_MONTH,
    CV_RELAY_FIELD_EXP_YEAR,
    CV_RELAY_FIELD_EXP_YEAR2,
    CV_RELAY_FIELD_NAME,
    CV_RELAY_FIELD_CVC,
    CV_RELAY_FIELD_COUNT
};

/* The media type of a Content-Type value (parameters such as charset are
 * ignored; case-insensitive). NULL or "" is CV_RELAY_CONTENT_OTHER. */
enum cv_relay_content cv_relay_content_of(const char *content_type);

/* What a template uses, from cv_relay_template_check. */
struct cv_relay_template_use {
    /* used[i]: bit set of (1u << enum cv_relay_field) for aliases[i] */
    unsigned used[CV_RELAY_TOKENS_MAX];
    size_t placeholders; /* how many placeholders in all */
    bool uses_cvc;       /* some alias's cvc field is used */
};

/* The longest placeholder name an error repeats, and its NUL. */
#define CV_RELAY_PARAM_MAX (CV_RELAY_PLACEHOLDER_MAX + 1)

/* Checks a template's placeholders against the request's aliases (n_aliases
 * <= CV_RELAY_TOKENS_MAX, each NUL-terminated) and fills *use. Statuses:
 * CV_ERR_RELAY_PLACEHOLDER_UNTERMINATED ("{{" without "}}" within
 * CV_RELAY_PLACEHOLDER_MAX bytes), CV_ERR_RELAY_PLACEHOLDER_UNKNOWN (bad
 * syntax, unknown alias or field), CV_ERR_RELAY_PLACEHOLDER_NOT_ALLOWED (in a
 * JSON body outside a string literal), CV_ERR_RELAY_CONTENT_TYPE (a
 * placeholder in a body that is neither JSON nor a form). param gets the
 * placeholder's text when echoable, else "". */
CV_MUST_USE cv_status cv_relay_template_check(const char *tmpl, size_t len,
                                              enum cv_relay_content content,
                                              const char *const *aliases, size_t n_aliases,
                                              struct cv_relay_template_use *use,
                                              char param[CV_RELAY_PARAM_MAX]);

/* True when s (len bytes) contains "{{": the test for header values and the
 * path, where no placeholder is allowed. */
bool cv_relay_has_placeholder(const char *s, size_t len);

/* True when a placeholder's text may be repeated in an error answer: 1 to
 * CV_RELAY_PLACEHOLDER_MAX bytes of [A-Za-z0-9_.] with fewer than 6 digits. */
bool cv_relay_placeholder_echoable(const char *s, size_t len);

/* One token's card, opened, for the renderer. pan: normalized digits; name
 * "" for none; cvc NULL when no hold was taken (a template using cvc then
 * fails with CV_ERR_INTERNAL: the caller checks use.uses_cvc first). */
struct cv_relay_card {
    const char *alias;
    const char *pan;
    int exp_month;
    int exp_year;
    const char *name;
    const char *cvc;
};

/* Renders a template that passed cv_relay_template_check with the same
 * aliases (cards[i].alias). *out (free with cv_secbuf_free: wiped) holds the
 * body, NUL-terminated, len excluding the NUL. CV_ERR_BODY_TOO_LARGE when the
 * result would pass max_bytes. */
CV_MUST_USE cv_status cv_relay_template_render(const char *tmpl, size_t len,
                                               enum cv_relay_content content,
                                               const struct cv_relay_card *cards, size_t n_cards,
                                               size_t max_bytes, struct cv_secbuf **out);

#endif
