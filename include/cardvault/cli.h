#ifndef CV_CLI_H
#define CV_CLI_H

#include <stdbool.h>

#include "cardvault/config.h"
#include "cardvault/status.h"
#include "cardvault/store.h"

/* Shared pieces of the command line. main.c parses the options common to
 * every command and dispatches; each command family lives in its own file
 * (cli_*.c) and exposes one `int cv_cli_<family>(struct cv_cli *)` returning
 * the process exit code: 0 success, 1 failure, 2 usage error. */

#define CV_EXIT_USAGE 2

struct cv_cli {
    struct cv_config cfg;
    const char *dir;          /* --dir */
    const char *merchant;     /* --merchant */
    const char *scopes;       /* --scopes */
    const char *since;        /* --since */
    const char *new_kek_file; /* --new-kek-file */
    const char *from_dek;     /* --from-dek */
    const char *batch;        /* --batch */
    bool confirm;             /* --confirm */
    int argc;                 /* positional arguments after the command word */
    char **argv;
};

/* Prints "cardvault: msg" on stderr. */
void cv_cli_fail(const char *msg);
/* Prints a usage error and returns CV_EXIT_USAGE. */
int cv_cli_usage_error(const char *msg);
/* Opens a 2-connection store from cfg, printing one line on failure. */
CV_MUST_USE cv_status cv_cli_open_store(const struct cv_config *cfg, struct cv_store **store);
/* Prints a JSON object of string pairs on stdout and wipes the text. */
void cv_cli_print_pairs(const char *const *pairs, size_t n_pairs);
/* jansson's value type, named without including jansson.h here (cli_*.c
 * build their results with jansson; nothing else needs to see it). */
struct json_t;
/* Prints obj as one compact JSON line on stdout and releases it (one
 * json_decref, so `cv_cli_print_json(json_pack(...))` is complete).
 * CV_ERR_INTERNAL when obj is NULL (json_pack failed), CV_ERR_IO when stdout
 * cannot be written. */
CV_MUST_USE cv_status cv_cli_print_json(struct json_t *obj);

/* cardvault keys status|rotate-dek|rotate-kek|reencrypt|destroy-dek (cli_keys.c). */
int cv_cli_keys(struct cv_cli *cli);
/* cardvault audit verify|export|storage (cli_audit.c). */
int cv_cli_audit(struct cv_cli *cli);

#endif
