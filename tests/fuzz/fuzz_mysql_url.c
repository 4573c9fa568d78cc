/* fuzz_mysql_url.c: the MySQL/MariaDB connection URL parser of `cardvault
 * scan --mysql` (scan_mysql.c) on raw bytes, from an exact-size copy (not
 * NUL-terminated: a read past len is an ASan report). Invariants: on success
 * every part is NUL-terminated within its field and free of control
 * characters, the port is 0 or 1-65535, a socket path is absolute, the
 * database has no slash, and the reason is empty; on failure the reason is a
 * non-empty line, the struct holds nothing (no password left behind), and
 * the reason never holds the input when the input is 8 bytes or more (but
 * for a piece of the scheme names the reason gives). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/scan_mysql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_mysql_url invariant broken: %s\n", why);
    abort();
}

static void check_field(const char *f)
{
    size_t n = strnlen(f, CV_SCAN_MYSQL_FIELD_MAX);
    if (n >= CV_SCAN_MYSQL_FIELD_MAX)
        fail("a field is not NUL-terminated");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)f[i] < 0x20 || f[i] == 0x7f)
            fail("a control character in a field");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    char why[256];
    struct cv_scan_mysql_url u;
    cv_status st = cv_scan_mysql_parse_url(copy, size, &u, why, sizeof(why));
    if (st == CV_OK) {
        check_field(u.user);
        check_field(u.password);
        check_field(u.host);
        check_field(u.database);
        check_field(u.socket);
        if (u.port > 65535)
            fail("port out of range");
        if (u.socket[0] != '\0' && u.socket[0] != '/')
            fail("relative socket path");
        if (strchr(u.database, '/') != NULL)
            fail("a slash in the database");
        if (why[0] != '\0')
            fail("a reason on success");
    } else {
        if (st != CV_ERR_CONFIG)
            fail("a status other than CV_ERR_CONFIG");
        if (why[0] == '\0' || strchr(why, '\n') != NULL)
            fail("the reason is not one line");
        static const struct cv_scan_mysql_url zero;
        if (memcmp(&u, &zero, sizeof(u)) != 0)
            fail("a refused URL left parts behind");
        char *z = calloc(size + 1, 1);
        if (z != NULL && size > 0)
            memcpy(z, data, size);
        /* (The scheme message names the schemes: an input that is a piece of
         * it is the message's own text, not a quote.) */
        if (z != NULL && size >= 8 && strlen(z) == size && strstr(why, z) != NULL &&
            strstr("the URL does not start with mysql:// or mariadb://", z) == NULL)
            fail("the reason quotes the input");
        free(z);
    }
    free(copy);
    return 0;
}
