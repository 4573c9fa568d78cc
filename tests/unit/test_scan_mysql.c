/* test_scan_mysql.c: the MySQL/MariaDB connection URL of `cardvault scan
 * --mysql` (scan_mysql.c): every part parsed and percent-decoded (user,
 * password, bracketed IPv6 host, port, database, socket), defaults when parts
 * are missing; and each malformation refused with a reason that never quotes
 * the URL (it may hold a password): another scheme, a bad port, a bad
 * escape, a NUL or control character, an unknown parameter, a relative
 * socket, a slash in the database name, an over-long part. The database side
 * is covered by tests/scenarios/scan-mysql.sh on a real server. */
#include "cardvault/scan_mysql.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static char why[256];

static cv_status parse(const char *url, struct cv_scan_mysql_url *u)
{
    return cv_scan_mysql_parse_url(url, strlen(url), u, why, sizeof(why));
}

static void parses_every_part(void)
{
    struct cv_scan_mysql_url u;
    CHECK_EQ_INT(parse("mysql://auditor:p%40ss%3Aw%2Frd%25@db.shop.internal:3307/shop", &u), CV_OK);
    CHECK(strcmp(u.user, "auditor") == 0);
    CHECK(u.has_password && strcmp(u.password, "p@ss:w/rd%") == 0);
    CHECK(strcmp(u.host, "db.shop.internal") == 0);
    CHECK_EQ_INT(u.port, 3307);
    CHECK(strcmp(u.database, "shop") == 0);
    CHECK(u.socket[0] == '\0');
    CHECK(why[0] == '\0');
}

static void parses_ipv6_socket_and_defaults(void)
{
    struct cv_scan_mysql_url u;
    CHECK_EQ_INT(parse("mariadb://[::1]:3306/shop", &u), CV_OK);
    CHECK(strcmp(u.host, "::1") == 0);
    CHECK_EQ_INT(u.port, 3306);
    CHECK_EQ_INT(parse("mysql://root@/shop?socket=%2Frun%2Fmysqld%2Fmysqld.sock", &u), CV_OK);
    CHECK(strcmp(u.user, "root") == 0 && !u.has_password && u.host[0] == '\0');
    CHECK(strcmp(u.socket, "/run/mysqld/mysqld.sock") == 0);
    CHECK_EQ_INT(parse("mysql://db", &u), CV_OK);
    CHECK(strcmp(u.host, "db") == 0 && u.port == 0 && u.database[0] == '\0' && u.user[0] == '\0');
    CHECK_EQ_INT(parse("mysql://u:@h/", &u), CV_OK);
    CHECK(u.has_password && u.password[0] == '\0');
}

/* The last '@' ends the user part: a password with an unescaped '@'. */
static void last_at_ends_the_user(void)
{
    struct cv_scan_mysql_url u;
    CHECK_EQ_INT(parse("mysql://u:a@b@h/d", &u), CV_OK);
    CHECK(strcmp(u.password, "a@b") == 0 && strcmp(u.host, "h") == 0);
}

static void refuses_without_quoting(void)
{
    static const char *const bad[] = {
        "postgresql://u:hunter2@h/d",  "mysql:/h/d",
        "mysql://u:hunter2@h:0/d",     "mysql://u:hunter2@h:65536/d",
        "mysql://u:hunter2@h:33x/d",   "mysql://u:hunter2@h:/d",
        "mysql://u:hunter2%4@h/d",     "mysql://u:hunter2%zz@h/d",
        "mysql://u:hunter2%00@h/d",    "mysql://u:hunter2%0a@h/d",
        "mysql://u:hunter2@h/d?ssl=1", "mysql://u:hunter2@h/d?socket=rel/sock",
        "mysql://u:hunter2@h/a%2Fb",   "mysql://u:hunter2@h/a/b",
        "mysql://u:hunter2@[::1/d",    "mysql://u:hunter2@[::1]x/d",
        "mysql://u:hunter2@h;x/d",     "mysql://u:hunter2@h%20x/d",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cv_scan_mysql_url u;
        memset(&u, 0x55, sizeof(u));
        cv_status st = parse(bad[i], &u);
        if (st != CV_ERR_CONFIG)
            fprintf(stderr, "  accepted: case %zu\n", i);
        CHECK_EQ_INT(st, CV_ERR_CONFIG);
        CHECK(why[0] != '\0');
        CHECK(strstr(why, "hunter2") == NULL);
        /* A refused URL leaves no password behind. */
        CHECK(strstr(u.password, "hunter2") == NULL);
    }
}

static void refuses_overlong_parts(void)
{
    char url[1200];
    struct cv_scan_mysql_url u;
    memset(url, 0, sizeof(url));
    snprintf(url, sizeof(url), "mysql://u:");
    memset(url + strlen(url), 'p', 300);
    memcpy(url + strlen(url), "@h/d", 5);
    CHECK_EQ_INT(parse(url, &u), CV_ERR_CONFIG);
    CHECK(strstr(why, "password") != NULL);
    /* Exactly the field size minus its NUL fits. */
    snprintf(url, sizeof(url), "mysql://h/");
    memset(url + strlen(url), 'd', CV_SCAN_MYSQL_FIELD_MAX - 1);
    url[10 + CV_SCAN_MYSQL_FIELD_MAX - 1] = '\0';
    CHECK_EQ_INT(parse(url, &u), CV_OK);
    CHECK_EQ_INT(strlen(u.database), CV_SCAN_MYSQL_FIELD_MAX - 1);
}

/* The length is the bound, not a NUL: bytes past len are never read. */
static void reads_only_len_bytes(void)
{
    struct cv_scan_mysql_url u;
    const char *url = "mysql://h/shop:garbage";
    CHECK_EQ_INT(cv_scan_mysql_parse_url(url, 14, &u, why, sizeof(why)), CV_OK);
    CHECK(strcmp(u.database, "shop") == 0);
}

int main(void)
{
    RUN(parses_every_part);
    RUN(parses_ipv6_socket_and_defaults);
    RUN(last_at_ends_the_user);
    RUN(refuses_without_quoting);
    RUN(refuses_overlong_parts);
    RUN(reads_only_len_bytes);
    return check_summary("test_scan_mysql");
}
