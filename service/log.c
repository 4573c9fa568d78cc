/* log.c: JSON-lines logging on stdout. Each line is assembled in a local
 * buffer and written with one fwrite under a lock so concurrent request
 * threads never interleave. This module formats only what it is given; the
 * callers are responsible for never handing it card data. */
#include "cardvault/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LINE_MAX_BYTES 4096

static enum cv_log_level min_level = CV_LOG_INFO;
static bool to_stderr;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

struct line {
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool truncated;
};

static void put(struct line *l, const char *s, size_t n)
{
    /* keep 3 bytes for the closing "}\n" and NUL */
    if (l->len + n + 3 > sizeof(l->buf)) {
        l->truncated = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void put_json_string(struct line *l, const char *s)
{
    if (s == NULL) {
        puts_raw(l, "null");
        return;
    }
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(l, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put(l, esc, 6);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
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
    struct line l = {.len = 0, .truncated = false};
    struct timespec ts;
    struct tm tm;
    char tbuf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t tl = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + tl, sizeof(tbuf) - tl, ".%03ldZ", ts.tv_nsec / 1000000L);

    puts_raw(&l, "{\"ts\":\"");
    puts_raw(&l, tbuf);
    puts_raw(&l, "\",\"level\":\"");
    puts_raw(&l, level_names[level]);
    puts_raw(&l, "\",\"event\":");
    put_json_string(&l, event);
    for (size_t i = 0; i < n; i++) {
        char num[64];
        put(&l, ",", 1);
        put_json_string(&l, fields[i].key);
        put(&l, ":", 1);
        switch (fields[i].kind) {
        case CV_LOG_KIND_STR:
            put_json_string(&l, fields[i].s);
            break;
        case CV_LOG_KIND_INT:
            snprintf(num, sizeof(num), "%lld", fields[i].i);
            puts_raw(&l, num);
            break;
        case CV_LOG_KIND_DBL:
            snprintf(num, sizeof(num), "%.3f", fields[i].d);
            puts_raw(&l, num);
            break;
        case CV_LOG_KIND_BOOL:
            puts_raw(&l, fields[i].i ? "true" : "false");
            break;
        }
    }
    if (l.truncated) {
        /* A truncated field would make invalid JSON: drop the tail, say so. */
        l.len = 0;
        puts_raw(&l, "{\"ts\":\"");
        puts_raw(&l, tbuf);
        puts_raw(&l, "\",\"level\":\"warn\",\"event\":\"log_line_too_long\"");
    }
    memcpy(l.buf + l.len, "}\n", 2);
    l.len += 2;
    FILE *out = to_stderr ? stderr : stdout;
    pthread_mutex_lock(&out_lock);
    fwrite(l.buf, 1, l.len, out);
    fflush(out);
    pthread_mutex_unlock(&out_lock);
}
