/* secret_file.c: reads a small owner-only file holding a secret (a KEK, a
 * PIN) into secure memory, under the one rule documented in secret_file.h.
 * It interprets nothing: decoding is the caller's job. It must never put a
 * byte of the file into an error reason, and never leave a partial copy of
 * the secret behind on failure. */
#include "cardvault/secret_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* strerror is not thread-safe and KEK files are reread by the keyring's
 * refresh thread: the XSI strerror_r writes into the caller's buffer. */
static const char *error_text(int err, char *buf, size_t cap)
{
    if (strerror_r(err, buf, cap) != 0)
        snprintf(buf, cap, "errno %d", err);
    return buf;
}

/* True when path resolves to a file inside $CREDENTIALS_DIRECTORY, the
 * private read-only folder systemd's LoadCredential= fills for this service
 * alone. There the file is root-owned 0400 plus an ACL entry for the
 * service's uid, and stat reports the ACL mask as group-read (0440). */
static bool in_credentials_directory(const char *path, const struct stat *opened)
{
    const char *env = getenv("CREDENTIALS_DIRECTORY");
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat sb;
    if (env == NULL || env[0] != '/' || realpath(env, dir) == NULL || realpath(path, file) == NULL)
        return false;
    size_t n = strlen(dir);
    /* The resolved path must still be the file that was opened. */
    return strncmp(file, dir, n) == 0 && file[n] == '/' && stat(file, &sb) == 0 &&
           sb.st_dev == opened->st_dev && sb.st_ino == opened->st_ino;
}

cv_status cv_secret_file_read(const char *path, const char *what, const char *content,
                              size_t max_bytes, struct cv_secbuf **out, char *why, size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    struct cv_secbuf *buf = NULL;
    struct stat sb;
    char err[128];
    /* No O_NOFOLLOW: links are followed on purpose (see the header); the
     * checks below look at what was opened, not at the path. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open %s %s: %s", what, path,
                 error_text(errno, err, sizeof(err)));
        goto out;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, why_len, "%s %s is not a regular file", what, path);
        goto out;
    }
    /* Owned by the user we run as (or by root, who can read anything
     * anyway): a file another account owns could be rewritten or re-moded
     * by that account, a custodian we did not choose. */
    if (sb.st_uid != geteuid() && sb.st_uid != 0) {
        snprintf(why, why_len, "%s %s is owned by uid %ld, not by the service's uid %ld (or root)",
                 what, path, (long)sb.st_uid, (long)geteuid());
        goto out;
    }
    /* The one exception: group-read on a systemd credential (see above). */
    mode_t loose = (sb.st_mode & 077) == 040 && in_credentials_directory(path, &sb) ? 037 : 077;
    if ((sb.st_mode & loose) != 0) {
        snprintf(why, why_len, "%s %s must not be accessible to group or others (chmod 600)", what,
                 path);
        goto out;
    }
    if (sb.st_size < 0 || (unsigned long long)sb.st_size > max_bytes) {
        snprintf(why, why_len, "%s %s must hold %s (it is longer)", what, path, content);
        goto out;
    }
    /* One byte past the limit: a file that grew since fstat is still caught. */
    buf = cv_secbuf_new(max_bytes + 1);
    for (;;) {
        ssize_t n = read(fd, buf->data + buf->len, buf->cap - buf->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(why, why_len, "cannot read %s %s: %s", what, path,
                     error_text(errno, err, sizeof(err)));
            goto out;
        }
        if (n == 0)
            break;
        buf->len += (size_t)n;
        if (buf->len > max_bytes) {
            snprintf(why, why_len, "%s %s must hold %s (it is longer)", what, path, content);
            goto out;
        }
    }
    *out = buf;
    buf = NULL;
    st = CV_OK;
out:
    cv_secbuf_free(buf); /* wipes whatever was read */
    if (fd >= 0)
        close(fd);
    return st;
}
