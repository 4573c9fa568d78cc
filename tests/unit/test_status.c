/* test_status.c: status.c's names. Logs, metrics and dashboards key on them,
 * and http_server.c sends some as the public error code: every status has a
 * distinct lower_snake name, and an out-of-range value never yields NULL. */
#include "cardvault/status.h"

#include <string.h>

#include "check.h"

static int lower_snake(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static void every_status_has_a_distinct_lower_snake_name(void)
{
    for (int i = 0; i < CV_STATUS_COUNT; i++) {
        const char *n = cv_status_name((cv_status)i);
        CHECK(n != NULL && lower_snake(n));
        for (int j = 0; j < i; j++)
            CHECK(strcmp(n, cv_status_name((cv_status)j)) != 0);
    }
}

static void public_codes_are_stable(void)
{
    CHECK(strcmp(cv_status_name(CV_OK), "ok") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_UNAUTHENTICATED), "invalid_api_key") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_NOT_FOUND), "token_not_found") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_RATE_LIMITED), "rate_limited") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_DB_UNAVAILABLE), "service_unavailable") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_COMMIT_UNCONFIRMED), "commit_unconfirmed") == 0);
    CHECK(strcmp(cv_status_name(CV_ERR_DUPLICATE), "duplicate") == 0);
}

static void out_of_range_is_internal_error(void)
{
    CHECK(strcmp(cv_status_name(CV_STATUS_COUNT), "internal_error") == 0);
    CHECK(strcmp(cv_status_name((cv_status)-1), "internal_error") == 0);
    CHECK(strcmp(cv_status_name((cv_status)1000), "internal_error") == 0);
}

int main(void)
{
    RUN(every_status_has_a_distinct_lower_snake_name);
    RUN(public_codes_are_stable);
    RUN(out_of_range_is_internal_error);
    return check_summary("status");
}
