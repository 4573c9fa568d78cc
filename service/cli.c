/* cli.c: helpers shared by the command-line files (main.c, cli_*.c): one-line
 * failures on stderr, usage errors with exit code 2, opening the store, and
 * printing JSON objects. Every JSON result a command prints is built with
 * the cv_cli_json_* calls below (jansson underneath; this is the one CLI
 * file that includes jansson.h) and written by cv_cli_print_json, never
 * assembled with printf, so a name or a reason with a quote in it cannot
 * break the output. Kept out of main.c so every cli_*.c links into the test
 * binaries too. */
#include "cardvault/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cardvault/api_errors.h"
#include "cardvault/json_codec.h"
#include "cardvault/kek.h"
#include "cardvault/keyring.h"
#include "cardvault/log.h"
#include "cardvault/secbuf.h"
#include "cardvault/secret_file.h"

const char *cv_cli_errno_text(int err, char *buf, size_t cap)
{
    if (strerror_r(err, buf, cap) != 0)
        snprintf(buf, cap, "errno %d", err);
    return buf;
}

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

cv_status cv_cli_open_keyring(const struct cv_config *cfg, struct cv_store *store,
                              struct cv_keyprovider **kp, struct cv_keyring **kr)
{
    char why[512];
    *kp = NULL;
    *kr = NULL;
    if (cv_config_require(cfg, true, true, why, sizeof(why)) != CV_OK ||
        cv_kek_open_configured(cfg, kp, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return CV_ERR_CONFIG;
    }
    struct cv_keyring_limits limits = {cfg->dek_max_age_s, cfg->dek_max_uses};
    if (cv_keyring_open(store, *kp, &limits, NULL, NULL, kr, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        cv_keyprovider_free(*kp);
        *kp = NULL;
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

void cv_cli_close_keyring(struct cv_keyprovider *kp, struct cv_keyring *kr)
{
    cv_keyring_close(kr);
    cv_keyprovider_free(kp);
}

#define DATABASE_URL_MAX_BYTES 4096

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

cv_status cv_cli_read_database_url_file(struct cv_config *cfg)
{
    if (cfg->database_url_file == NULL)
        return CV_OK;
    char why[512];
    struct cv_secbuf *buf = NULL;
    if (cv_secret_file_read(cfg->database_url_file, "database URL file",
                            "one libpq connection string or URI (at most 4096 bytes)",
                            DATABASE_URL_MAX_BYTES, &buf, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return CV_ERR_CONFIG;
    }
    size_t start = 0, end = buf->len;
    while (start < end && is_blank(buf->data[start]))
        start++;
    while (end > start && is_blank(buf->data[end - 1]))
        end--;
    bool ok = end > start;
    for (size_t i = start; i < end; i++)
        if (buf->data[i] < 0x20 || buf->data[i] == 0x7f)
            ok = false;
    if (!ok) {
        snprintf(why, sizeof(why),
                 "database URL file %s must hold one libpq connection string or URI on one line",
                 cfg->database_url_file);
        cv_cli_fail(why);
        cv_secbuf_free(buf);
        return CV_ERR_CONFIG;
    }
    if (cfg->database_url != NULL)
        cv_wipe(cfg->database_url, strlen(cfg->database_url));
    free(cfg->database_url);
    cfg->database_url = cv_xmalloc(end - start + 1);
    memcpy(cfg->database_url, buf->data + start, end - start);
    cfg->database_url[end - start] = '\0';
    cv_secbuf_free(buf); /* wipes the file's bytes */
    return CV_OK;
}

cv_status cv_cli_harden(const struct cv_config *cfg, size_t heap_bytes)
{
    if (cfg->production && cv_secbuf_harden_process() != CV_OK) {
        cv_cli_fail("cannot disable core dumps (setrlimit/prctl refused)");
        return CV_ERR_CONFIG;
    }
    bool heap_locked = false;
    if (cv_secbuf_init_secure_heap(heap_bytes, &heap_locked) != CV_OK)
        cv_cli_fail("warning: no secure heap; secrets use the ordinary heap (still wiped)");
    else if (!heap_locked)
        cv_cli_warn_heap_not_locked();
    return CV_OK;
}

void cv_cli_warn_heap_not_locked(void)
{
    cv_log(CV_LOG_WARN, "secure_heap_not_locked",
           CV_LS("effect", "secrets may be swapped out; raise RLIMIT_MEMLOCK (ulimit -l)"));
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

/* The builders below stay quiet on failure: a value jansson refuses (out of
 * memory, a string that is not UTF-8) is left out, json_pack-style, and the
 * object is marked so that cv_cli_print_json refuses to print half a result. */
static const char failed_key[] = "\x01cv-failed";

static void mark_failed(json_t *obj)
{
    if (json_is_object(obj))
        json_object_set_new_nocheck(obj, failed_key, json_true());
}

json_t *cv_cli_json_object(void)
{
    return json_object();
}

json_t *cv_cli_json_array(void)
{
    return json_array();
}

void cv_cli_json_set(json_t *obj, const char *key, json_t *val)
{
    if (val == NULL || json_object_set_new(obj, key, val) != 0)
        mark_failed(obj);
}

void cv_cli_json_set_str(json_t *obj, const char *key, const char *val)
{
    cv_cli_json_set(obj, key, val != NULL ? json_string(val) : json_null());
}

void cv_cli_json_set_int(json_t *obj, const char *key, long long val)
{
    cv_cli_json_set(obj, key, json_integer((json_int_t)val));
}

void cv_cli_json_set_bool(json_t *obj, const char *key, bool val)
{
    cv_cli_json_set(obj, key, json_boolean(val));
}

cv_status cv_cli_json_append(json_t *arr, json_t *val)
{
    if (val == NULL)
        return CV_ERR_INTERNAL;
    return json_array_append_new(arr, val) == 0 ? CV_OK : CV_ERR_INTERNAL;
}

cv_status cv_cli_json_append_str(json_t *arr, const char *s)
{
    return cv_cli_json_append(arr, json_string(s));
}

void cv_cli_json_free(json_t *val)
{
    json_decref(val);
}

cv_status cv_cli_print_json(json_t *obj)
{
    if (obj == NULL || json_object_get(obj, failed_key) != NULL) {
        cv_cli_fail("cannot build the JSON result");
        json_decref(obj);
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

const char cv_cli_errors_usage[] =
    "usage: cardvault errors\n"
    "\n"
    "Prints every error the HTTP API can answer, one JSON object per code in an\n"
    "array: {\"status\",\"type\",\"code\",\"message\"}, with the exact message text\n"
    "the service sends. openapi.yaml's examples are tested against this list.\n"
    "Every 500 is internal_error and every 503 service_unavailable: their causes\n"
    "are logged, never told to the client.\n";

int cv_cli_errors(struct cv_cli *cli)
{
    if (cli->argc != 0)
        return cv_cli_usage_error("errors takes no arguments");
    json_t *out = cv_cli_json_array();
    bool ok = out != NULL;
    for (int s = CV_OK + 1; ok && s < CV_STATUS_COUNT; s++) {
        struct cv_api_error e = cv_api_error_of((cv_status)s);
        bool seen = false; /* several statuses share internal_error and service_unavailable */
        for (int t = CV_OK + 1; t < s && !seen; t++)
            seen = strcmp(cv_api_error_of((cv_status)t).code, e.code) == 0;
        if (seen)
            continue;
        json_t *one = cv_cli_json_object();
        cv_cli_json_set_int(one, "status", e.http);
        cv_cli_json_set_str(one, "type", e.type);
        cv_cli_json_set_str(one, "code", e.code);
        cv_cli_json_set_str(one, "message", e.message);
        ok = cv_cli_json_append(out, one) == CV_OK;
    }
    if (!ok) {
        json_decref(out);
        cv_cli_fail("out of memory");
        return 1;
    }
    return cv_cli_print_json(out) == CV_OK ? 0 : 1;
}
