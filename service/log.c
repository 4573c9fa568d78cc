/* log.c: JSON-lines logging on stdout. Each line is assembled in a capped
 * struct cv_buf, its strings written by cv_buf_append_json_string (so a line
 * is valid UTF-8 JSON whatever bytes a client put in a method or a path),
 * and written with one fwrite under a lock so concurrent request threads
 * never interleave. This module formats only what it is given; the callers
 * are responsible for never handing it card data. */
#include "cardvault/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cardvault/buf.h"

/* A line longer than this is replaced by a short warning line. */
#define LINE_MAX_BYTES 4096

static enum cv_log_level min_level = CV_LOG_INFO;
static bool to_stderr;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

static cv_status put_string(struct cv_buf *b, const char *s)
{
    if (s == NULL)
        return cv_buf_append_str(b, "null");
    return cv_buf_append_json_string(b, s, strlen(s));
}

static cv_status put_field(struct cv_buf *b, const struct cv_log_field *f)
{
    CV_TRY(cv_buf_append_char(b, ','));
    CV_TRY(put_string(b, f->key));
    CV_TRY(cv_buf_append_char(b, ':'));
    switch (f->kind) {
    case CV_LOG_KIND_STR:
        return put_string(b, f->s);
    case CV_LOG_KIND_INT:
        return cv_buf_appendf(b, "%lld", f->i);
    case CV_LOG_KIND_DBL:
        return cv_buf_appendf(b, "%.3f", f->d);
    case CV_LOG_KIND_BOOL:
        return cv_buf_append_str(b, f->i ? "true" : "false");
    }
    return CV_ERR_INTERNAL;
}

/* The whole line, newline included. CV_ERR_BODY_TOO_LARGE past the cap. */
static cv_status put_line(struct cv_buf *b, const char *ts, const char *level, const char *event,
                          const struct cv_log_field *fields, size_t n)
{
    CV_TRY(cv_buf_appendf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", ts, level));
    CV_TRY(put_string(b, event));
    for (size_t i = 0; i < n; i++)
        CV_TRY(put_field(b, &fields[i]));
    return cv_buf_append(b, "}\n", 2);
}

void cv_log_to_stderr(bool yes)
{
    to_stderr = yes;
}

void cv_log_set_level(enum cv_log_level level)
{
    min_level = level;
}

void cv_log_fields(enum cv_log_level level, const char *event, const struct cv_log_field *fields,
                   size_t n)
{
    if (level < min_level)
        return;
    struct timespec ts;
    struct tm tm;
    char tbuf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t tl = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + tl, sizeof(tbuf) - tl, ".%03ldZ", ts.tv_nsec / 1000000L);

    struct cv_buf b;
    cv_buf_init(&b, LINE_MAX_BYTES);
    if (put_line(&b, tbuf, level_names[level], event, fields, n) != CV_OK) {
        /* A cut field would make invalid JSON: drop the tail, say so. */
        cv_buf_reset(&b);
        if (put_line(&b, tbuf, "warn", "log_line_too_long", NULL, 0) != CV_OK) {
            cv_buf_cleanup(&b);
            return;
        }
    }
    FILE *out = to_stderr ? stderr : stdout;
    pthread_mutex_lock(&out_lock);
    fwrite(b.data, 1, b.len, out);
    fflush(out);
    pthread_mutex_unlock(&out_lock);
    cv_buf_cleanup(&b);
}
