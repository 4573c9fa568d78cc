/* test_csv.c: the CSV reader (RFC 4180) on well-formed input (quotes,
 * doubled quotes, line breaks inside quotes, CRLF, a BOM, blank lines, no
 * final newline) and on every malformation it must name by line without
 * quoting the input: a quote inside an unquoted field, text after a closing
 * quote, a quoted field never closed, a record past the size limit, invalid
 * UTF-8; and the same records whatever the read chunk size. */
#include "cardvault/csv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct src {
    const char *data;
    size_t len, pos, step;
};

static long read_src(void *ctx, void *buf, size_t cap)
{
    struct src *s = ctx;
    size_t n = s->len - s->pos;
    if (n > cap)
        n = cap;
    if (n > s->step)
        n = s->step;
    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (long)n;
}

/* Reads all records; returns the count, the status of the last call in *st. */
static size_t read_all(const char *data, size_t step, size_t max, char *joined, size_t cap,
                       cv_status *st, char *why, uint64_t *lines)
{
    struct src s = {data, strlen(data), 0, step};
    struct cv_csv *r = cv_csv_new(read_src, &s, max);
    struct cv_csv_record rec;
    size_t n = 0;
    joined[0] = '\0';
    while ((*st = cv_csv_next(r, &rec, why, 200)) == CV_OK) {
        if (lines != NULL)
            lines[n] = rec.line;
        n++;
        for (size_t i = 0; i < rec.nfields; i++) {
            strncat(joined, rec.fields[i], cap - strlen(joined) - 1);
            strncat(joined, i + 1 < rec.nfields ? "|" : ";", cap - strlen(joined) - 1);
        }
    }
    cv_csv_free(r);
    return n;
}

static void reads_quoted_fields_crlf_bom_and_blank_lines(void)
{
    const char *in = "\xEF\xBB\xBFid,pan,note\r\n1,\"4111 1111\",\"a, \"\"b\"\"\"\r\n\r\n"
                     "2,,\"two\nlines\"\n3,x,";
    for (size_t step = 1; step <= 64; step *= 2) {
        char out[512], why[200];
        cv_status st = CV_OK;
        uint64_t lines[8];
        size_t n = read_all(in, step, 1 << 20, out, sizeof(out), &st, why, lines);
        CHECK_EQ_INT(n, 4);
        CHECK_EQ_INT(st, CV_ERR_NOT_FOUND);
        CHECK(strcmp(out, "id|pan|note;1|4111 1111|a, \"b\";2||two\nlines;3|x|;") == 0);
        CHECK_EQ_INT(lines[0], 1);
        CHECK_EQ_INT(lines[1], 2);
        CHECK_EQ_INT(lines[2], 4);
        CHECK_EQ_INT(lines[3], 6);
    }
}

static void malformed_input_is_named_by_line_never_quoted(void)
{
    struct {
        const char *in;
        const char *reason;
    } cases[] = {
        {"id,pan\n1,41\"11111111111111\n", "line 2: a double quote inside an unquoted field"},
        {"id,pan\n1,\"4111111111111111\"x\n", "line 2: text after the closing quote"},
        {"id,pan\n1,\"4111111111111111\n2,3\n", "line 2: a quoted field is never closed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[512], why[200];
        cv_status st = CV_OK;
        size_t n = read_all(cases[i].in, 7, 1 << 20, out, sizeof(out), &st, why, NULL);
        CHECK_EQ_INT(n, 1); /* the header came through */
        CHECK_EQ_INT(st, CV_ERR_BAD_REQUEST);
        if (strncmp(why, cases[i].reason, strlen(cases[i].reason)) != 0)
            fprintf(stderr, "  case %zu: %s\n", i, why);
        CHECK(strncmp(why, cases[i].reason, strlen(cases[i].reason)) == 0);
        CHECK(strstr(why, "4111") == NULL);
    }
}

static void a_record_past_the_limit_is_an_error(void)
{
    size_t big = 3000;
    char *in = malloc(big + 32);
    memcpy(in, "a,b\n1,", 6);
    memset(in + 6, '7', big);
    memcpy(in + 6 + big, "\n2,x\n", 6);
    char out[64], why[200];
    cv_status st = CV_OK;
    size_t n = read_all(in, 512, 1024, out, sizeof(out), &st, why, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(st, CV_ERR_BAD_REQUEST);
    CHECK(strncmp(why, "line 2: the record is longer", 28) == 0);
    /* exactly at the limit is fine */
    n = read_all("1,22\n", 1, 4, out, sizeof(out), &st, why, NULL);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(st, CV_ERR_NOT_FOUND);
    free(in);
}

static void invalid_utf8_is_flagged_per_record(void)
{
    struct src s = {"a,b\n1,\xff\xfe\n2,ok\n", 0, 0, 100};
    s.len = strlen(s.data);
    struct cv_csv *r = cv_csv_new(read_src, &s, 1024);
    struct cv_csv_record rec;
    char why[200];
    CHECK_EQ_INT(cv_csv_next(r, &rec, why, sizeof(why)), CV_OK);
    CHECK(!rec.utf8_invalid);
    CHECK_EQ_INT(cv_csv_next(r, &rec, why, sizeof(why)), CV_OK);
    CHECK(rec.utf8_invalid);
    CHECK_EQ_INT(rec.line, 2);
    CHECK_EQ_INT(cv_csv_next(r, &rec, why, sizeof(why)), CV_OK);
    CHECK(!rec.utf8_invalid);
    CHECK_EQ_INT(cv_csv_next(r, &rec, why, sizeof(why)), CV_ERR_NOT_FOUND);
    cv_csv_free(r);
}

static void empty_input_has_no_records(void)
{
    char out[64], why[200];
    cv_status st = CV_OK;
    CHECK_EQ_INT(read_all("", 1, 64, out, sizeof(out), &st, why, NULL), 0);
    CHECK_EQ_INT(st, CV_ERR_NOT_FOUND);
    CHECK_EQ_INT(read_all("\xEF\xBB\xBF\n\n", 1, 64, out, sizeof(out), &st, why, NULL), 0);
}

int main(void)
{
    RUN(reads_quoted_fields_crlf_bom_and_blank_lines);
    RUN(malformed_input_is_named_by_line_never_quoted);
    RUN(a_record_past_the_limit_is_an_error);
    RUN(invalid_utf8_is_flagged_per_record);
    RUN(empty_input_has_no_records);
    return check_summary("test_csv");
}
