/* test_buf.c: buf.c's capped buffer (growth, the hard cap and its sticky
 * failure, take and reset) and its JSON string writer, which must give valid
 * UTF-8 JSON for any bytes a client can send. */
#include "cardvault/buf.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static void append_grows_past_the_first_block(void)
{
    struct cv_buf b;
    cv_buf_init(&b, 100000);
    for (int i = 0; i < 1000; i++)
        CHECK(cv_buf_appendf(&b, "%03d,", i % 1000) == CV_OK);
    size_t len = 0;
    char *s = cv_buf_take(&b, &len);
    CHECK(s != NULL);
    CHECK_EQ_INT(len, 4000);
    CHECK(strncmp(s, "000,001,002,", 12) == 0);
    CHECK_EQ_INT(strlen(s), 4000);
    free(s);
    CHECK(b.data == NULL && b.len == 0);
}

static void append_refuses_past_the_cap_and_stays_failed(void)
{
    struct cv_buf b;
    cv_buf_init(&b, 8);
    CHECK(cv_buf_append_str(&b, "12345678") == CV_OK);
    CHECK(cv_buf_append_char(&b, '9') == CV_ERR_BODY_TOO_LARGE);
    CHECK(cv_buf_failed(&b));
    /* sticky: even an empty append fails now */
    CHECK(cv_buf_append(&b, "", 0) == CV_ERR_BODY_TOO_LARGE);
    CHECK(cv_buf_appendf(&b, "%d", 1) == CV_ERR_BODY_TOO_LARGE);
    size_t len = 99;
    CHECK(cv_buf_take(&b, &len) == NULL);
    CHECK_EQ_INT(len, 0);
    CHECK(b.data == NULL);
}

static void appendf_refuses_a_format_longer_than_the_cap(void)
{
    struct cv_buf b;
    cv_buf_init(&b, 4);
    CHECK(cv_buf_appendf(&b, "%s", "hello") == CV_ERR_BODY_TOO_LARGE);
    cv_buf_cleanup(&b);
}

static void take_of_an_empty_buffer_is_an_empty_string(void)
{
    struct cv_buf b;
    cv_buf_init(&b, 16);
    char *s = cv_buf_take(&b, NULL);
    CHECK(s != NULL && s[0] == '\0');
    free(s);
}

static void reset_keeps_memory_and_clears_failure(void)
{
    struct cv_buf b;
    cv_buf_init(&b, 4);
    CHECK(cv_buf_append_str(&b, "abcdef") == CV_ERR_BODY_TOO_LARGE);
    cv_buf_reset(&b);
    CHECK(!cv_buf_failed(&b));
    CHECK(cv_buf_append_str(&b, "ab") == CV_OK);
    CHECK(strcmp(b.data, "ab") == 0);
    cv_buf_cleanup(&b);
    cv_buf_cleanup(NULL);
}

static char *json_of(const char *s, size_t n)
{
    struct cv_buf b;
    cv_buf_init(&b, 1024);
    if (cv_buf_append_json_string(&b, s, n) != CV_OK) {
        cv_buf_cleanup(&b);
        return NULL;
    }
    return cv_buf_take(&b, NULL);
}

static void json_string_escapes_quotes_backslashes_and_controls(void)
{
    char *s = json_of("a\"b\\c\n\x01\x7f", 8);
    CHECK(s != NULL && strcmp(s, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\"") == 0);
    free(s);
}

static void json_string_keeps_valid_utf8(void)
{
    const char in[] = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x92\xB3";
    char *s = json_of(in, sizeof in - 1);
    CHECK(s != NULL && strlen(s) == sizeof in - 1 + 2);
    CHECK(s != NULL && memcmp(s + 1, in, sizeof in - 1) == 0);
    free(s);
}

static void json_string_replaces_invalid_utf8(void)
{
    /* a lone 0xFF, an overlong '/', a UTF-16 surrogate, a truncated sequence */
    const char in[] = "G\xFF"
                      "T\xC0\xAF"
                      "\xED\xA0\x80"
                      "\xE6\x97";
    char *s = json_of(in, sizeof in - 1);
    CHECK(s != NULL);
    if (s != NULL) {
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
            CHECK(*p != 0xFF && *p != 0xC0 && *p != 0xED);
        CHECK(strncmp(s, "\"G\xEF\xBF\xBDT", 6) == 0);
    }
    free(s);
}

static void json_string_with_embedded_nul_is_escaped(void)
{
    char *s = json_of("a\0b", 3);
    CHECK(s != NULL && strcmp(s, "\"a\\u0000b\"") == 0);
    free(s);
}

int main(void)
{
    RUN(append_grows_past_the_first_block);
    RUN(append_refuses_past_the_cap_and_stays_failed);
    RUN(appendf_refuses_a_format_longer_than_the_cap);
    RUN(take_of_an_empty_buffer_is_an_empty_string);
    RUN(reset_keeps_memory_and_clears_failure);
    RUN(json_string_escapes_quotes_backslashes_and_controls);
    RUN(json_string_keeps_valid_utf8);
    RUN(json_string_replaces_invalid_utf8);
    RUN(json_string_with_embedded_nul_is_escaped);
    return check_summary("buf");
}
