#ifndef CV_CLI_H
#define CV_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/config.h"
#include "cardvault/status.h"
#include "cardvault/store.h"

/* Shared pieces of the command line. main.c parses the options common to
 * every command and dispatches; each command family lives in its own file
 * (cli_*.c) and exposes one `int cv_cli_<family>(struct cv_cli *)` returning
 * the process exit code: 0 success, 1 failure, 2 usage error. */

#define CV_EXIT_USAGE 2
/* The operator commands' secure heap (serve sizes its own). */
#define CV_CLI_SECURE_HEAP_BYTES (1u << 20)
/* --allowed-origin may be given this many times (each may be a comma list). */
#define CV_CLI_ORIGIN_ARGS_MAX 16

/* A command's own options (import, scan): main.c parses them beside the
 * common ones and stores the argument (or "1" for an option without one) in
 * cli->x[index]. A table ends with a NULL name. */
#define CV_CLI_EXTRA_MAX 32
struct cv_cli_optdef {
    const char *name;
    int has_arg; /* 1: --name VALUE; 0: --name */
    int index;   /* into cv_cli.x */
};

struct cv_cli {
    struct cv_config cfg;
    const char *dir;                                 /* --dir */
    const char *merchant;                            /* --merchant */
    const char *scopes;                              /* --scopes */
    const char *since;                               /* --since */
    const char *new_kek_file;                        /* --new-kek-file */
    const char *from_dek;                            /* --from-dek */
    const char *batch;                               /* --batch */
    bool confirm;                                    /* --confirm */
    const char *expect;                              /* --expect SEQ:HASH (audit verify) */
    const char *origin_args[CV_CLI_ORIGIN_ARGS_MAX]; /* --allowed-origin, as given */
    int n_origin_args;
    const char *set_origins;         /* --set LIST (key origins); NULL when not given */
    const char *x[CV_CLI_EXTRA_MAX]; /* a command's own options (struct cv_cli_optdef) */
    int argc;                        /* positional arguments after the command word */
    char **argv;
};

/* errno's text in buf (XSI strerror_r: thread-safe); returns buf. */
const char *cv_cli_errno_text(int err, char *buf, size_t cap);
/* Prints "cardvault: msg" on stderr. */
void cv_cli_fail(const char *msg);
/* Prints a usage error and returns CV_EXIT_USAGE. */
int cv_cli_usage_error(const char *msg);
/* Opens a 2-connection store from cfg, printing one line on failure. */
CV_MUST_USE cv_status cv_cli_open_store(const struct cv_config *cfg, struct cv_store **store);
struct cv_keyprovider;
struct cv_keyring;
/* Opens the configured KEK (CARDVAULT_KEK_FILE or CARDVAULT_KEK_PKCS11_*)
 * and a keyring over it on store: every command that appends audit events
 * needs it, since each event is MAC-chained under the audit key the KEK
 * protects (the keyring creates that key when the vault has none). Prints
 * one line and returns CV_ERR_CONFIG on failure (nothing to free). */
CV_MUST_USE cv_status cv_cli_open_keyring(const struct cv_config *cfg, struct cv_store *store,
                                          struct cv_keyprovider **kp, struct cv_keyring **kr);
/* Closes what cv_cli_open_keyring opened (the keyring first). Accepts NULLs. */
void cv_cli_close_keyring(struct cv_keyprovider *kp, struct cv_keyring *kr);
/* When cfg->database_url_file is set (CARDVAULT_DATABASE_URL_FILE or
 * --database-url-file), reads the database URL from it into
 * cfg->database_url, under the secret-file rule (secret_file.h: owned by us
 * or root, mode 0600/0400, at most 4096 bytes). Surrounding blanks and the
 * final newline are dropped; an empty file or one with a control character
 * inside (two lines) is refused. Unlike --database-url, the URL and its
 * password never appear in /proc/PID/cmdline. CV_ERR_CONFIG with one line
 * printed on failure. */
CV_MUST_USE cv_status cv_cli_read_database_url_file(struct cv_config *cfg);
/* The process hardening of every command that handles secrets (API keys it
 * prints, card numbers found in storage, working keys, the database
 * password), the same as serve's: in production (not CARDVAULT_DEV=1) no
 * core file and not dumpable (CV_ERR_CONFIG, with one line printed, if the
 * kernel refuses); then OpenSSL's secure heap of heap_bytes for secret
 * buffers (a warning, not a failure, when it cannot be had or locked).
 * Call before opening the store. */
CV_MUST_USE cv_status cv_cli_harden(const struct cv_config *cfg, size_t heap_bytes);
/* Logs the secure_heap_not_locked warning (cv_secbuf_init_secure_heap said
 * mlock was refused); serve and the keys commands share it. */
void cv_cli_warn_heap_not_locked(void);
/* Prints a JSON object of string pairs on stdout and wipes the text. */
void cv_cli_print_pairs(const char *const *pairs, size_t n_pairs);
/* JSON results on stdout. A result is built with jansson's value type,
 * named here without including jansson.h (only cli.c does): the cv_cli_json_*
 * calls create and fill objects and arrays; setters and appends take over
 * the value they are given. A value that cannot be built (out of memory, a
 * string that is not UTF-8) marks the object, and cv_cli_print_json then
 * refuses it. */
struct json_t;
struct json_t *cv_cli_json_object(void);
struct json_t *cv_cli_json_array(void);
/* Sets key to val (taken over; NULL marks the object failed). */
void cv_cli_json_set(struct json_t *obj, const char *key, struct json_t *val);
/* Sets key to a string (NULL: JSON null), an integer or a boolean. */
void cv_cli_json_set_str(struct json_t *obj, const char *key, const char *val);
void cv_cli_json_set_int(struct json_t *obj, const char *key, long long val);
void cv_cli_json_set_bool(struct json_t *obj, const char *key, bool val);
/* Appends val (taken over) or a string to an array; CV_ERR_INTERNAL if it cannot. */
CV_MUST_USE cv_status cv_cli_json_append(struct json_t *arr, struct json_t *val);
CV_MUST_USE cv_status cv_cli_json_append_str(struct json_t *arr, const char *s);
/* Releases a value nobody took over; accepts NULL. */
void cv_cli_json_free(struct json_t *val);
/* Prints obj as one compact JSON line on stdout and releases it (one
 * json_decref). CV_ERR_INTERNAL when obj is NULL or marked failed (nothing
 * printed, one line on stderr), CV_ERR_IO when stdout cannot be written. */
CV_MUST_USE cv_status cv_cli_print_json(struct json_t *obj);

/* Each command family: its entry point and its --help text (printed by
 * main.c for `cardvault COMMAND --help`), side by side in its own file. */

/* cardvault tokens purge-expired (cli_tokens.c). */
int cv_cli_tokens(struct cv_cli *cli);
extern const char cv_cli_tokens_usage[];
/* cardvault merchant create (cli_merchants.c). */
int cv_cli_merchant(struct cv_cli *cli);
extern const char cv_cli_merchant_usage[];
/* cardvault key create|revoke (cli_merchants.c). */
int cv_cli_key(struct cv_cli *cli);
extern const char cv_cli_key_usage[];
/* cardvault elements-sri (cli_merchants.c): the integrity value of elements.js. */
int cv_cli_elements_sri(struct cv_cli *cli);
/* `cardvault errors`: the HTTP API's error catalogue as JSON (api_errors.h). */
int cv_cli_errors(struct cv_cli *cli);
extern const char cv_cli_errors_usage[];
extern const char cv_cli_elements_sri_usage[];
/* cardvault keys status|rotate-dek|rotate-kek|reencrypt|destroy-dek (cli_keys.c). */
int cv_cli_keys(struct cv_cli *cli);
extern const char cv_cli_keys_usage[];
/* cardvault import (cli_import.c). */
int cv_cli_import(struct cv_cli *cli);
extern const char cv_cli_import_usage[];
extern const struct cv_cli_optdef cv_cli_import_opts[];
/* cardvault scan (cli_scan.c). */
int cv_cli_scan(struct cv_cli *cli);
extern const char cv_cli_scan_usage[];
extern const struct cv_cli_optdef cv_cli_scan_opts[];
/* cardvault probe [healthz|readyz] (cli_probe.c). */
int cv_cli_probe(struct cv_cli *cli);
extern const char cv_cli_probe_usage[];
extern const struct cv_cli_optdef cv_cli_probe_opts[];
/* cardvault audit verify|export|storage (cli_audit.c). */
int cv_cli_audit(struct cv_cli *cli);
extern const char cv_cli_audit_usage[];

#endif
