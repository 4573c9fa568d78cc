/* cli.c: helpers shared by the command-line files (main.c, cli_*.c): one-line
 * failures on stderr, usage errors with exit code 2, opening the store, and
 * printing JSON objects. Every JSON result a command prints is built with
 * jansson and written here, never assembled with printf, so a name or a
 * reason with a quote in it cannot break the output. Kept out of main.c so
 * every cli_*.c links into the test binaries too. */
#include "cardvault/cli.h"

#include <stdio.h>

#include <jansson.h>

#include "cardvault/json_codec.h"

void cv_cli_fail(const char *msg)
{
    fprintf(stderr, "cardvault: %s\n", msg);
}

int cv_cli_usage_error(const char *msg)
{
    fprintf(stderr, "cardvault: %s (see cardvault --help)\n", msg);
    return CV_EXIT_USAGE;
}

cv_status cv_cli_open_store(const struct cv_config *cfg, struct cv_store **store)
{
    char why[256];
    if (cv_config_require(cfg, true, false, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return CV_ERR_CONFIG;
    }
    char reason[200] = "";
    cv_status st = cv_store_open(cfg->database_url, 2, store, reason, sizeof(reason));
    if (st != CV_OK) {
        snprintf(why, sizeof(why), "cannot connect to CARDVAULT_DATABASE_URL: %s", reason);
        cv_cli_fail(why);
    }
    return st;
}

void cv_cli_print_pairs(const char *const *pairs, size_t n)
{
    size_t len = 0;
    char *s = cv_json_encode_pairs(pairs, n, &len);
    fwrite(s, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cv_json_free(s); /* wiped: it may hold API keys */
}

cv_status cv_cli_print_json(json_t *obj)
{
    if (obj == NULL) {
        cv_cli_fail("cannot build the JSON result");
        return CV_ERR_INTERNAL;
    }
    cv_status st = CV_OK;
    /* JSON_COMPACT: one line, no blanks, the format jq and SIEMs read */
    if (json_dumpf(obj, stdout, JSON_COMPACT) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0)
        st = CV_ERR_IO;
    json_decref(obj);
    return st;
}
