#ifndef CV_LOG_H
#define CV_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* Structured logging: one JSON object per line on stdout, with "ts",
 * "level" and "event". Callers pass typed fields; this module escapes them
 * (cv_buf_append_json_string), so every line is valid UTF-8 JSON whatever
 * bytes a string field holds: invalid UTF-8 becomes U+FFFD.
 * Never pass a PAN, a CVC, a key or a request body as a field. */

enum cv_log_level { CV_LOG_DEBUG = 0, CV_LOG_INFO, CV_LOG_WARN, CV_LOG_ERROR };

enum cv_log_kind { CV_LOG_KIND_STR, CV_LOG_KIND_INT, CV_LOG_KIND_DBL, CV_LOG_KIND_BOOL };

struct cv_log_field {
    const char *key;
    enum cv_log_kind kind;
    const char *s;
    long long i;
    double d;
};

#define CV_LS(k, v) ((struct cv_log_field){.key = (k), .kind = CV_LOG_KIND_STR, .s = (v)})
#define CV_LI(k, v)                                                                                \
    ((struct cv_log_field){.key = (k), .kind = CV_LOG_KIND_INT, .i = (long long)(v)})
#define CV_LD(k, v) ((struct cv_log_field){.key = (k), .kind = CV_LOG_KIND_DBL, .d = (double)(v)})
#define CV_LB(k, v) ((struct cv_log_field){.key = (k), .kind = CV_LOG_KIND_BOOL, .i = (v) ? 1 : 0})

/* Where lines go: stdout (default, the service) or stderr (operator
 * commands, whose stdout carries their JSON result). */
void cv_log_to_stderr(bool yes);
/* Lines below min_level are dropped. Default: CV_LOG_INFO. */
void cv_log_set_level(enum cv_log_level min_level);
/* Writes one line atomically (one write under a lock). A NULL string field is written as null. */
void cv_log_fields(enum cv_log_level level, const char *event, const struct cv_log_field *fields,
                   size_t n);

#define cv_log(level, event, ...)                                                                  \
    do {                                                                                           \
        const struct cv_log_field cv_log_f_[] = {__VA_ARGS__};                                     \
        cv_log_fields((level), (event), cv_log_f_, sizeof(cv_log_f_) / sizeof(cv_log_f_[0]));      \
    } while (0)

#define cv_log_plain(level, event) cv_log_fields((level), (event), NULL, 0)

#endif
