/* fuzz_relay_template.c: relay_template.c on raw bytes. The first byte
 * picks the content type (JSON, form, other) and how many aliases the
 * request has; the rest is the template, on an exact-size copy (a read past
 * len is an ASan report). Invariants: the checker and the renderer agree on
 * every template (same status); a placeholder name in an error is empty or
 * echoable (never 6 digits or more); a rendered body is NUL-terminated at
 * its length and no shorter than the template minus its placeholders; a
 * body of another content type is the template unchanged. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/relay_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_relay_template invariant broken: %s\n", why);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum cv_relay_content content = (enum cv_relay_content)(data[0] % 3);
    size_t n_aliases = 1 + (size_t)((data[0] >> 2) % CV_RELAY_TOKENS_MAX);
    size_t len = size - 1;
    char *t = malloc(len > 0 ? len : 1);
    if (t == NULL)
        return 0;
    if (len > 0)
        memcpy(t, data + 1, len);
    static const char *const aliases[CV_RELAY_TOKENS_MAX] = {"card", "b", "c2", "z_9"};
    struct cv_relay_card cards[CV_RELAY_TOKENS_MAX];
    for (size_t i = 0; i < CV_RELAY_TOKENS_MAX; i++)
        cards[i] = (struct cv_relay_card){aliases[i], "4111111111111111",         1 + (int)i,
                                          2030,       "\"Ann\\ &=+ \x01\xc3\xa9", "1234"};
    struct cv_relay_template_use use;
    char param[CV_RELAY_PARAM_MAX];
    cv_status checked = cv_relay_template_check(t, len, content, aliases, n_aliases, &use, param);
    if (param[0] != '\0' && !cv_relay_placeholder_echoable(param, strlen(param)))
        fail("an error names a placeholder that is not echoable");
    if (checked != CV_OK && use.placeholders != 0)
        fail("a refused template reports placeholders");
    struct cv_secbuf *out = NULL;
    cv_status rendered =
        cv_relay_template_render(t, len, content, cards, n_aliases, 1u << 20, &out);
    if (rendered != checked)
        fail("checker and renderer disagree");
    if (rendered == CV_OK) {
        if (out == NULL || out->data[out->len] != '\0')
            fail("body not NUL-terminated at its length");
        if (out->len + use.placeholders * (CV_RELAY_PLACEHOLDER_MAX + 4) < len)
            fail("body shorter than its literal text");
        if (content == CV_RELAY_CONTENT_OTHER &&
            (out->len != len || memcmp(out->data, t, len) != 0))
            fail("a body without placeholders changed");
    } else if (out != NULL) {
        fail("a refused render returned a body");
    }
    cv_secbuf_free(out);
    free(t);
    return 0;
}
