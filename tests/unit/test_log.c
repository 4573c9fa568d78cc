/* test_log.c: log.c writes one valid UTF-8 JSON object per line whatever
 * bytes a caller hands it (a request method or path is client data), keeps
 * typed fields typed, and replaces an oversized line with a short warning. */
#include "cardvault/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"

/* Runs one cv_log_fields call with stdout redirected to a temporary file and
 * returns what it wrote (heap, free()). */
static char *capture(enum cv_log_level level, const char *event, const struct cv_log_field *f,
                     size_t n)
{
    fflush(stdout);
    FILE *tmp = tmpfile();
    if (tmp == NULL)
        return NULL;
    int saved = dup(STDOUT_FILENO);
    dup2(fileno(tmp), STDOUT_FILENO);
    cv_log_to_stderr(false);
    cv_log_fields(level, event, f, n);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    long size = (long)lseek(fileno(tmp), 0, SEEK_END);
    char *out = calloc(1, (size_t)size + 1);
    if (out != NULL && size > 0) {
        lseek(fileno(tmp), 0, SEEK_SET);
        if (read(fileno(tmp), out, (size_t)size) != size)
            out[0] = '\0';
    }
    fclose(tmp);
    return out;
}

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing past U+10FFFF. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* Checks the captured text is exactly one line holding a JSON object. */
static json_t *parse_line(const char *text)
{
    CHECK(text != NULL);
    if (text == NULL)
        return NULL;
    size_t len = strlen(text);
    CHECK(len > 0 && text[len - 1] == '\n');
    CHECK(strchr(text, '\n') == text + len - 1);
    CHECK(valid_utf8((const unsigned char *)text, len));
    json_error_t err;
    json_t *o = json_loadb(text, len, 0, &err);
    CHECK(o != NULL && json_is_object(o));
    return o;
}

static void method_with_byte_ff_gives_valid_utf8_json(void)
{
    const char method[] = {'G', (char)0xFF, 'T', '\0'};
    const struct cv_log_field f[] = {CV_LS("method", method), CV_LS("path", "/v1/tokens")};
    char *text = capture(CV_LOG_INFO, "request", f, 2);
    json_t *o = parse_line(text);
    CHECK(text != NULL && memchr(text, 0xFF, strlen(text)) == NULL);
    const char *m = json_string_value(json_object_get(o, "method"));
    CHECK(m != NULL && strcmp(m, "G\xEF\xBF\xBDT") == 0); /* U+FFFD in its place */
    json_decref(o);
    free(text);
}

static void truncated_and_overlong_utf8_are_replaced(void)
{
    const char *bad[] = {"\xC3",  "\xE2\x82", "\xC0\xAF", "\xED\xA0\x80", "\xF8\x88\x80\x80\x80",
                         "a\x80z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct cv_log_field f[] = {CV_LS("path", bad[i])};
        char *text = capture(CV_LOG_WARN, "odd", f, 1);
        json_t *o = parse_line(text);
        json_decref(o);
        free(text);
    }
}

static void controls_quotes_and_valid_utf8_round_trip(void)
{
    const char *s = "a\"b\\c\n\t\x01\x7f caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x92\xB3";
    const struct cv_log_field f[] = {CV_LS("k\"ey", s)};
    char *text = capture(CV_LOG_INFO, "ev\n", f, 1);
    json_t *o = parse_line(text);
    CHECK(strcmp(json_string_value(json_object_get(o, "k\"ey")), s) == 0);
    CHECK(strcmp(json_string_value(json_object_get(o, "event")), "ev\n") == 0);
    json_decref(o);
    free(text);
}

static void typed_fields_keep_their_types(void)
{
    const struct cv_log_field f[] = {CV_LI("status", 201), CV_LD("ms", 1.5), CV_LB("ok", 1),
                                     CV_LS("none", NULL)};
    char *text = capture(CV_LOG_ERROR, "typed", f, 4);
    json_t *o = parse_line(text);
    CHECK(json_integer_value(json_object_get(o, "status")) == 201);
    CHECK(json_real_value(json_object_get(o, "ms")) == 1.5);
    CHECK(json_is_true(json_object_get(o, "ok")));
    CHECK(json_is_null(json_object_get(o, "none")));
    CHECK(strcmp(json_string_value(json_object_get(o, "level")), "error") == 0);
    CHECK(json_is_string(json_object_get(o, "ts")));
    json_decref(o);
    free(text);
}

static void oversized_line_becomes_a_warning(void)
{
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    const struct cv_log_field f[] = {CV_LS("path", big)};
    char *text = capture(CV_LOG_INFO, "request", f, 1);
    json_t *o = parse_line(text);
    CHECK(strcmp(json_string_value(json_object_get(o, "event")), "log_line_too_long") == 0);
    CHECK(strcmp(json_string_value(json_object_get(o, "level")), "warn") == 0);
    CHECK(json_object_get(o, "path") == NULL);
    json_decref(o);
    free(text);
    free(big);
}

static void lines_below_the_level_are_dropped(void)
{
    cv_log_set_level(CV_LOG_WARN);
    char *text = capture(CV_LOG_INFO, "quiet", NULL, 0);
    CHECK(text != NULL && text[0] == '\0');
    free(text);
    cv_log_set_level(CV_LOG_INFO);
}

int main(void)
{
    RUN(method_with_byte_ff_gives_valid_utf8_json);
    RUN(truncated_and_overlong_utf8_are_replaced);
    RUN(controls_quotes_and_valid_utf8_round_trip);
    RUN(typed_fields_keep_their_types);
    RUN(oversized_line_becomes_a_warning);
    RUN(lines_below_the_level_are_dropped);
    return check_summary("log");
}
