/* test_cli_db_url.c: the database URL read from a file
 * (CARDVAULT_DATABASE_URL_FILE, --database-url-file), the way to give the
 * commands a password without putting it in /proc/PID/cmdline. A good
 * owner-only file gives the URL without its surrounding blanks; a loose,
 * empty, multi-line or missing file is refused with a line that never holds
 * the file's content. */
#include "cardvault/cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define URL "postgresql://vault:pw-s3cret-77@db.internal:5432/vault?sslmode=verify-full"

static char tmpdir[128];

static void write_file(const char *name, const char *text, mode_t mode, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

/* Runs the reader with stderr sent to a file, and returns what it printed. */
static cv_status read_url(const char *path, struct cv_config *cfg, char *printed, size_t cap)
{
    char err_path[256];
    snprintf(err_path, sizeof(err_path), "%s/stderr", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    memset(cfg, 0, sizeof(*cfg));
    cv_config_set_str(&cfg->database_url_file, path);
    cv_status st = cv_cli_read_database_url_file(cfg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(err_path, "r");
    size_t n = f != NULL ? fread(printed, 1, cap - 1, f) : 0;
    printed[n] = '\0';
    if (f != NULL)
        fclose(f);
    return st;
}

static void reads_the_url_without_surrounding_blanks(void)
{
    static const char *const texts[] = {URL, URL "\n", "  " URL " \r\n\n", "\t" URL "\t"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        char path[256], printed[512];
        struct cv_config cfg;
        write_file("url", texts[i], 0600, path, sizeof(path));
        CHECK_EQ_INT(read_url(path, &cfg, printed, sizeof(printed)), CV_OK);
        CHECK(cfg.database_url != NULL && strcmp(cfg.database_url, URL) == 0);
        CHECK(printed[0] == '\0');
        cv_config_cleanup(&cfg);
    }
}

static void no_file_leaves_the_url_alone(void)
{
    struct cv_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cv_config_set_str(&cfg.database_url, URL);
    CHECK_EQ_INT(cv_cli_read_database_url_file(&cfg), CV_OK);
    CHECK(strcmp(cfg.database_url, URL) == 0);
    cv_config_cleanup(&cfg);
}

static void refuses_bad_files_without_echoing_them(void)
{
    static const struct {
        const char *text;
        mode_t mode;
    } bad[] = {
        {URL "\n", 0644},                   /* readable by others */
        {"", 0600},                         /* empty */
        {" \n\n", 0600},                    /* blank */
        {URL "\nhost=elsewhere\n", 0600},   /* two lines */
        {"postgresql://a\x01@b/c\n", 0600}, /* a control byte inside */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256], printed[512];
        struct cv_config cfg;
        write_file("bad-url", bad[i].text, bad[i].mode, path, sizeof(path));
        CHECK_EQ_INT(read_url(path, &cfg, printed, sizeof(printed)), CV_ERR_CONFIG);
        CHECK(cfg.database_url == NULL);
        CHECK(strstr(printed, "database URL file") != NULL);
        CHECK(strstr(printed, "pw-s3cret") == NULL);
        cv_config_cleanup(&cfg);
    }
    char path[256], printed[512];
    struct cv_config cfg;
    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    CHECK_EQ_INT(read_url(path, &cfg, printed, sizeof(printed)), CV_ERR_CONFIG);
    CHECK(strstr(printed, "cannot open") != NULL);
    cv_config_cleanup(&cfg);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cv-db-url-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(reads_the_url_without_surrounding_blanks);
    RUN(no_file_leaves_the_url_alone);
    RUN(refuses_bad_files_without_echoing_them);
    char path[256];
    static const char *const made[] = {"url", "bad-url", "stderr"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, made[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return check_summary("cli_db_url");
}
