#ifndef CV_TEST_HELPERS_H
#define CV_TEST_HELPERS_H

/* Small builders shared by several unit-test binaries. Header-only and
 * static inline, so each binary takes what it uses. */

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cardvault/card.h"
#include "check.h"

/* A card as the decoder would hand it over; name may be NULL. */
static inline struct cv_card_plain test_card(const char *pan, int month, int year, const char *name)
{
    struct cv_card_plain c;
    memset(&c, 0, sizeof(c));
    snprintf(c.pan, sizeof(c.pan), "%s", pan);
    c.exp_month = month;
    c.exp_year = year;
    if (name != NULL) {
        snprintf(c.name, sizeof(c.name), "%s", name);
        c.has_name = 1;
    }
    return c;
}

/* Writes content to dir/name with exactly this mode (umask bypassed) and
 * puts the path in path. */
static inline void test_write_file(const char *dir, const char *name, const char *content,
                                   size_t len, mode_t mode, char *path, size_t path_cap)
{
    snprintf(path, path_cap, "%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, content, len) == (ssize_t)len);
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

#endif
