/* test_secret_file.c: the one secret-file reader. A good owner-only file is
 * read whole; a symlink is followed but its target must pass the same checks;
 * files owned by another user, group/world-readable, oversized, missing and non-regular files are
 * refused with a one-line reason that never holds the file's content. */
#include "cardvault/secret_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define SECRET "s3cr3t-material-0042"

static char tmpdir[128];

static void write_file(const char *name, const char *text, size_t n, mode_t mode, char *path,
                       size_t cap)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, n) == (ssize_t)n);
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static void expect_refused(const char *path, size_t max, const char *mentions)
{
    struct cv_secbuf *out = NULL;
    char why[256] = "";
    CHECK_EQ_INT(
        cv_secret_file_read(path, "test file", "a test secret", max, &out, why, sizeof(why)),
        CV_ERR_CONFIG);
    CHECK(out == NULL);
    CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    CHECK(strstr(why, SECRET) == NULL);
    CHECK(strstr(why, "test file") != NULL);
    if (strstr(why, mentions) == NULL) {
        fprintf(stderr, "  reason \"%s\" does not mention \"%s\"\n", why, mentions);
        CHECK(0);
    }
    cv_secbuf_free(out);
}

static void expect_read(const char *path, size_t max, const char *want, size_t want_len)
{
    struct cv_secbuf *out = NULL;
    char why[256] = "";
    CHECK_EQ_INT(
        cv_secret_file_read(path, "test file", "a test secret", max, &out, why, sizeof(why)),
        CV_OK);
    CHECK(out != NULL);
    if (out != NULL) {
        CHECK_EQ_INT(out->len, want_len);
        CHECK(out->len == want_len && memcmp(out->data, want, want_len) == 0);
    }
    cv_secbuf_free(out);
}

static void reads_a_0600_and_a_0400_file_whole(void)
{
    char path[256];
    write_file("good", SECRET "\n", strlen(SECRET) + 1, 0600, path, sizeof(path));
    expect_read(path, 64, SECRET "\n", strlen(SECRET) + 1);
    write_file("ro", SECRET, strlen(SECRET), 0400, path, sizeof(path));
    expect_read(path, 64, SECRET, strlen(SECRET));
    write_file("empty", "", 0, 0600, path, sizeof(path));
    expect_read(path, 64, "", 0);
}

static void reads_a_file_of_exactly_max_bytes(void)
{
    char path[256];
    write_file("exact", SECRET, strlen(SECRET), 0600, path, sizeof(path));
    expect_read(path, strlen(SECRET), SECRET, strlen(SECRET));
}

static void refuses_group_or_world_access(void)
{
    char path[256];
    const mode_t modes[] = {0644, 0640, 0604, 0660, 0606, 0610, 0601};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file("loose", SECRET, strlen(SECRET), modes[i], path, sizeof(path));
        expect_refused(path, 64, "group or others");
    }
}

static void refuses_an_oversized_file(void)
{
    char path[256], big[5000];
    memset(big, 'a', sizeof(big));
    memcpy(big + 4000, SECRET, strlen(SECRET));
    write_file("big", big, sizeof(big), 0600, path, sizeof(path));
    expect_refused(path, 255, "it is longer");
    write_file("one-over", SECRET, strlen(SECRET), 0600, path, sizeof(path));
    expect_refused(path, strlen(SECRET) - 1, "a test secret");
}

static void follows_a_symlink_but_checks_its_target(void)
{
    char target[256], loose[256], link_path[256];
    write_file("target", SECRET, strlen(SECRET), 0600, target, sizeof(target));
    snprintf(link_path, sizeof(link_path), "%s/link", tmpdir);
    unlink(link_path);
    CHECK(symlink(target, link_path) == 0);
    expect_read(link_path, 64, SECRET, strlen(SECRET));

    /* A link is itself 0777: what counts is the file it reaches. */
    write_file("target-0644", SECRET, strlen(SECRET), 0644, loose, sizeof(loose));
    snprintf(link_path, sizeof(link_path), "%s/link-0644", tmpdir);
    unlink(link_path);
    CHECK(symlink(loose, link_path) == 0);
    expect_refused(link_path, 64, "group or others");

    snprintf(link_path, sizeof(link_path), "%s/link-dir", tmpdir);
    unlink(link_path);
    CHECK(symlink(tmpdir, link_path) == 0);
    expect_refused(link_path, 64, "not a regular file");

    snprintf(link_path, sizeof(link_path), "%s/link-dangling", tmpdir);
    unlink(link_path);
    CHECK(symlink("/nonexistent/cardvault-secret", link_path) == 0);
    expect_refused(link_path, 64, "cannot open");
}

/* The file must belong to the user the service runs as (or to root, who
 * could read it anyway). Changing a file's owner needs root: elsewhere the
 * check is skipped with a message, not passed silently. */
static void refuses_a_file_owned_by_another_user(void)
{
    char path[256], link_path[256];
    if (geteuid() != 0) {
        fprintf(stderr, "  skipped: changing a file's owner needs root\n");
        return;
    }
    write_file("other-owner", SECRET, strlen(SECRET), 0600, path, sizeof(path));
    CHECK(chown(path, 65534, 65534) == 0);
    expect_refused(path, 64, "owned by");

    /* Through a link as well: the owner checked is the opened file's. */
    snprintf(link_path, sizeof(link_path), "%s/link-other-owner", tmpdir);
    unlink(link_path);
    CHECK(symlink(path, link_path) == 0);
    expect_refused(link_path, 64, "owned by");

    /* A root-owned file is read by a root process (the euid matches). */
    CHECK(chown(path, 0, 0) == 0);
    expect_read(path, 64, SECRET, strlen(SECRET));
}

static void refuses_missing_directory_and_fifo(void)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/no-such-file", tmpdir);
    expect_refused(path, 64, "cannot open");
    expect_refused(tmpdir, 64, "not a regular file");
    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0);
    expect_refused(path, 64, "not a regular file"); /* and does not block */
    unlink(path);
}

static void reason_fits_a_small_buffer(void)
{
    char path[256], why[12];
    struct cv_secbuf *out = NULL;
    write_file("small-why", SECRET, strlen(SECRET), 0644, path, sizeof(path));
    CHECK_EQ_INT(cv_secret_file_read(path, "test file", "x", 64, &out, why, sizeof(why)),
                 CV_ERR_CONFIG);
    CHECK(strlen(why) < sizeof(why));
    CHECK(out == NULL);
}

/* The directory holds only files and links this test made: no recursion. */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (d == NULL)
        return;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    if (rmdir(tmpdir) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* systemd's LoadCredential= hands the file over as root-owned 0400 with an
 * ACL granting the service's uid read access, which stat shows as 0440 (the
 * ACL mask): group-read is tolerated there, and only there. */
static void tolerates_the_acl_mask_of_a_systemd_credential(void)
{
    char dir[192], path[256], outside[256];
    snprintf(dir, sizeof(dir), "%s/creds", tmpdir);
    CHECK(mkdir(dir, 0500) == 0);
    snprintf(path, sizeof(path), "%s/kek", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, SECRET, strlen(SECRET)) == (ssize_t)strlen(SECRET));
        CHECK(fchmod(fd, 0440) == 0);
        close(fd);
    }
    write_file("loose-credential", SECRET, strlen(SECRET), 0440, outside, sizeof(outside));
    CHECK(setenv("CREDENTIALS_DIRECTORY", dir, 1) == 0);
    expect_read(path, 64, SECRET, strlen(SECRET));
    expect_refused(outside, 64, "group or others"); /* 0440 outside the folder */
    CHECK(chmod(path, 0460) == 0);                  /* group write: never */
    expect_refused(path, 64, "group or others");
    CHECK(chmod(path, 0444) == 0); /* others: never */
    expect_refused(path, 64, "group or others");
    CHECK(unsetenv("CREDENTIALS_DIRECTORY") == 0);
    CHECK(chmod(path, 0440) == 0); /* the same file without systemd's variable */
    expect_refused(path, 64, "group or others");
    unlink(path);
    unlink(outside);
    rmdir(dir);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cv-secret-file-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(reads_a_0600_and_a_0400_file_whole);
    RUN(reads_a_file_of_exactly_max_bytes);
    RUN(refuses_group_or_world_access);
    RUN(refuses_an_oversized_file);
    RUN(follows_a_symlink_but_checks_its_target);
    RUN(refuses_a_file_owned_by_another_user);
    RUN(refuses_missing_directory_and_fifo);
    RUN(reason_fits_a_small_buffer);
    RUN(tolerates_the_acl_mask_of_a_systemd_credential);
    remove_tmpdir();
    return check_summary("secret_file");
}
