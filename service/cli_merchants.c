/* cli_merchants.c: `cardvault merchant create` and `cardvault key
 * create|revoke`, the operator commands that onboard a merchant and manage
 * its API keys, each with its --help text beside it. Every action is
 * recorded in the audit trail. The API keys a create command makes are the
 * only secrets this file ever prints, once, in its JSON result on stdout;
 * they are wiped from memory afterwards and never appear in an error line
 * or an audit event (only their public 12-character prefix does). */
#include "cardvault/cli.h"

#include <stdio.h>
#include <string.h>

#include "cardvault/api_elements.h"
#include "cardvault/auth.h"
#include "cardvault/origin.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

const char cv_cli_merchant_usage[] =
    "usage: cardvault merchant create NAME [--database-url-file PATH]\n"
    "\n"
    "The database URL comes from CARDVAULT_DATABASE_URL, CARDVAULT_DATABASE_URL_FILE or\n"
    "--database-url-file PATH; --database-url URL also works but shows the URL (and its\n"
    "password) to every local user in /proc/PID/cmdline.\n"
    "\n"
    "Creates a merchant and prints one JSON object with its id and four keys:\n"
    "publishable (pk_, tokenize), secret (sk_, tokenize+read+delete),\n"
    "detokenize (dk_, detokenize only) and relay (rk_, relay only: POST\n"
    "/v1/relay/{destination}, docs/relay.md). The keys are shown once; store them safely.\n"
    "Needs the KEK (CARDVAULT_KEK_FILE or CARDVAULT_KEK_PKCS11_*): its audit events are\n"
    "MAC-chained under the audit key the KEK protects.\n";

const char cv_cli_key_usage[] =
    "usage: cardvault key create --merchant ID --scopes LIST [--allowed-origin ORIGIN]...\n"
    "                            [--database-url-file PATH]\n"
    "       cardvault key revoke PREFIX [--database-url-file PATH]\n"
    "       cardvault key origins PREFIX [--set ORIGIN[,ORIGIN...]] [--database-url-file PATH]\n"
    "\n"
    "The database URL comes from CARDVAULT_DATABASE_URL, CARDVAULT_DATABASE_URL_FILE or\n"
    "--database-url-file PATH; --database-url URL also works but shows the URL (and its\n"
    "password) to every local user in /proc/PID/cmdline.\n"
    "\n"
    "create: prints {\"merchant_id\",\"key\",\"prefix\",\"scopes\"}. A key with exactly\n"
    "the tokenize scope is pk_, exactly detokenize is dk_, exactly relay is rk_,\n"
    "anything else sk_. The relay scope is given only alone: a relay key can\n"
    "send a card to an operator-listed destination and do nothing else.\n"
    "--allowed-origin (repeatable, or a comma list) binds a publishable key to the\n"
    "web origins whose pages may show its card frame (docs/elements.md); it is\n"
    "refused unless --scopes is exactly tokenize.\n"
    "revoke: takes the 12-character prefix; running services refuse the key\n"
    "within CARDVAULT_AUTH_REFRESH_MS (1 s by default, 5 s at most).\n"
    "origins: prints {\"prefix\",\"allowed_origins\"}; with --set, replaces the list\n"
    "first ('' empties it). An origin is scheme://host[:port]: https, or http for\n"
    "loopback hosts only; at most 8. Only a key with exactly the tokenize scope\n"
    "may have origins. Running services apply the change within\n"
    "CARDVAULT_AUTH_REFRESH_MS.\n"
    "create, revoke and origins --set need the KEK (CARDVAULT_KEK_FILE or\n"
    "CARDVAULT_KEK_PKCS11_*): their audit events are MAC-chained under the audit\n"
    "key the KEK protects.\n";

const char cv_cli_elements_sri_usage[] =
    "usage: cardvault elements-sri\n"
    "\n"
    "Prints the Subresource Integrity value (sha384-...) of the /elements.js this\n"
    "build serves, for the integrity attribute of a shop's <script> tag. It\n"
    "changes only with a new cardvault build.\n";

/* Sets key to a comma list as an array of strings. */
static void set_list(struct json_t *obj, const char *key, const char *csv)
{
    bool ok = true;
    struct json_t *arr = cv_cli_json_array();
    for (const char *p = csv; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char item[CV_ORIGIN_MAX + 1];
        snprintf(item, sizeof(item), "%.*s", (int)n, p);
        if (cv_cli_json_append_str(arr, item) != CV_OK)
            ok = false;
        p += n + (p[n] == ',' ? 1 : 0);
    }
    cv_cli_json_set(obj, key, arr);
    if (!ok)
        cv_cli_json_set(obj, key, NULL); /* marks the result failed */
}

/* Joins the --allowed-origin arguments and parses them into one normalized
 * list; a usage error (exit code in *rc) when an origin is refused. */
static bool origins_from_args(const struct cv_cli *cli, char out[CV_ORIGIN_LIST_MAX + 1], int *rc)
{
    char joined[CV_CLI_ORIGIN_ARGS_MAX * (CV_ORIGIN_MAX + 2) + 1] = "";
    size_t w = 0;
    for (int i = 0; i < cli->n_origin_args; i++) {
        size_t n = strlen(cli->origin_args[i]);
        if (n == 0 || w + n + 2 > sizeof(joined)) {
            *rc = cv_cli_usage_error("--allowed-origin takes a non-empty origin list");
            return false;
        }
        if (w > 0)
            joined[w++] = ',';
        memcpy(joined + w, cli->origin_args[i], n + 1);
        w += n;
    }
    if (cv_origin_list_parse(joined, out) != CV_OK) {
        *rc = cv_cli_usage_error(
            "an origin is scheme://host[:port] with nothing after it: https, or http on a "
            "loopback host (localhost, 127.x.x.x, [::1]); at most 8");
        return false;
    }
    return true;
}

/* Sets key to the scope names of a bit set as an array (["tokenize","read"]). */
static void set_scopes(struct json_t *obj, const char *key, unsigned scopes)
{
    char csv[64];
    bool ok = true;
    struct json_t *arr = cv_cli_json_array();
    cv_auth_format_scopes(scopes, csv);
    for (const char *p = csv; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)n, p);
        if (cv_cli_json_append_str(arr, name) != CV_OK)
            ok = false;
        p += n + (comma != NULL ? 1 : 0);
    }
    cv_cli_json_set(obj, key, arr);
    if (!ok)
        cv_cli_json_set(obj, key, NULL); /* marks the result failed */
}

/* The start of every command here: process hardening (they print or take API
 * keys, and hold the database password), the store, and, when the command
 * appends an audit event, the keyring that seals it under the audit key.
 * Prints why on failure; on success the caller closes both. */
static bool open_for(struct cv_cli *cli, bool audits, struct cv_store **store,
                     struct cv_keyprovider **kp, struct cv_keyring **kr)
{
    if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK ||
        cv_cli_open_store(&cli->cfg, store) != CV_OK)
        return false;
    if (audits && cv_cli_open_keyring(&cli->cfg, *store, kp, kr) != CV_OK) {
        cv_store_close(*store);
        *store = NULL;
        return false;
    }
    return true;
}

/* One audit event for a command run by the operator. */
static cv_status audit_cli(struct cv_store *store, const char *actor, const char *merchant_id,
                           const char *action, const char *detail)
{
    struct cv_audit_event ev = {actor, merchant_id, NULL, NULL, action, "success", detail};
    return cv_store_audit_append(store, &ev);
}

int cv_cli_merchant(struct cv_cli *cli)
{
    if (cli->argc < 1 || strcmp(cli->argv[0], "create") != 0)
        return cv_cli_usage_error("expected: merchant create NAME");
    if (cli->argc != 2 || cli->argv[1][0] == '\0' || strlen(cli->argv[1]) > 200)
        return cv_cli_usage_error("merchant create takes one NAME of 1-200 characters");
    const char *name = cli->argv[1];
    struct cv_store *store = NULL;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    /* It prints three API keys. */
    if (!open_for(cli, true, &store, &kp, &kr))
        return 1;
    char mid[CV_MERCHANT_ID_LEN + 1];
    char pk[CV_APIKEY_LEN + 1] = "", sk[CV_APIKEY_LEN + 1] = "", dk[CV_APIKEY_LEN + 1] = "";
    char rk[CV_APIKEY_LEN + 1] = "";
    char prefix[CV_APIKEY_PREFIX_LEN + 1];
    const char *const made[] = {pk, sk, dk, rk};
    cv_status st;
    if ((st = cv_token_merchant_id(mid)) != CV_OK ||
        (st = cv_store_insert_merchant(store, mid, name)) != CV_OK)
        goto out;
    if ((st = cv_auth_create_key(store, mid, CV_SCOPE_TOKENIZE, NULL, pk, prefix)) != CV_OK ||
        (st = cv_auth_create_key(store, mid, CV_SCOPE_TOKENIZE | CV_SCOPE_READ | CV_SCOPE_DELETE,
                                 NULL, sk, prefix)) != CV_OK ||
        (st = cv_auth_create_key(store, mid, CV_SCOPE_DETOKENIZE, NULL, dk, prefix)) != CV_OK ||
        (st = cv_auth_create_key(store, mid, CV_SCOPE_RELAY, NULL, rk, prefix)) != CV_OK)
        goto out;
    if ((st = audit_cli(store, "cli:merchant-create", mid, "merchant.create", NULL)) != CV_OK)
        goto out;
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        char pfx[CV_APIKEY_PREFIX_LEN + 1];
        snprintf(pfx, sizeof(pfx), "%s", made[i]); /* the public prefix only */
        if ((st = audit_cli(store, "cli:merchant-create", mid, "api_key.create", pfx)) != CV_OK)
            goto out;
    }
    const char *const pairs[] = {"merchant_id", mid, "name",           name, "publishable_key", pk,
                                 "secret_key",  sk,  "detokenize_key", dk,   "relay_key",       rk};
    cv_cli_print_pairs(pairs, 6);
out:
    if (st != CV_OK)
        fprintf(stderr, "cardvault: cannot create the merchant (%s)\n", cv_status_name(st));
    cv_wipe(pk, sizeof(pk));
    cv_wipe(sk, sizeof(sk));
    cv_wipe(dk, sizeof(dk));
    cv_wipe(rk, sizeof(rk));
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return st == CV_OK ? 0 : 1;
}

static int key_create(struct cv_cli *cli)
{
    unsigned scopes = 0;
    if (cli->argc != 1 || cli->merchant == NULL || cli->scopes == NULL)
        return cv_cli_usage_error("key create needs --merchant ID and --scopes LIST");
    if (cv_auth_parse_scopes(cli->scopes, &scopes) != CV_OK)
        return cv_cli_usage_error(
            "--scopes takes a comma list of tokenize, read, delete, detokenize, relay");
    if ((scopes & CV_SCOPE_RELAY) != 0 && scopes != CV_SCOPE_RELAY)
        return cv_cli_usage_error("--scopes relay stands alone: a relay key (rk_) relays and can "
                                  "do nothing else");
    if (cli->set_origins != NULL)
        return cv_cli_usage_error("--set belongs to key origins");
    char origins[CV_ORIGIN_LIST_MAX + 1] = "";
    int rc = 0;
    if (cli->n_origin_args > 0) {
        if (scopes != CV_SCOPE_TOKENIZE)
            return cv_cli_usage_error("--allowed-origin needs --scopes tokenize exactly: a key "
                                      "that can read, delete or detokenize must never be put "
                                      "on a page");
        if (!origins_from_args(cli, origins, &rc))
            return rc;
    }
    struct cv_store *store = NULL;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    /* It prints an API key. */
    if (!open_for(cli, true, &store, &kp, &kr))
        return 1;
    char key[CV_APIKEY_LEN + 1] = "", prefix[CV_APIKEY_PREFIX_LEN + 1];
    cv_status st = cv_auth_create_key(store, cli->merchant, scopes, origins, key, prefix);
    if (st == CV_ERR_NOT_FOUND) {
        cv_cli_fail("no such merchant");
        goto out;
    }
    if (st != CV_OK || (st = audit_cli(store, "cli:key-create", cli->merchant, "api_key.create",
                                       prefix)) != CV_OK) {
        fprintf(stderr, "cardvault: cannot create the key (%s)\n", cv_status_name(st));
        goto out;
    }
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "merchant_id", cli->merchant);
    cv_cli_json_set_str(out, "key", key);
    cv_cli_json_set_str(out, "prefix", prefix);
    set_scopes(out, "scopes", scopes);
    if (scopes == CV_SCOPE_TOKENIZE)
        set_list(out, "allowed_origins", origins);
    st = cv_cli_print_json(out);
out:
    cv_wipe(key, sizeof(key));
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return st == CV_OK ? 0 : 1;
}

static int key_revoke(struct cv_cli *cli)
{
    if (cli->argc != 2)
        return cv_cli_usage_error("key revoke takes one PREFIX");
    if (cli->set_origins != NULL || cli->n_origin_args > 0)
        return cv_cli_usage_error("--set and --allowed-origin do not apply to key revoke");
    const char *arg = cli->argv[1];
    if (!cv_token_api_key_is_valid(arg, strlen(arg)) && strlen(arg) != CV_APIKEY_PREFIX_LEN)
        return cv_cli_usage_error("PREFIX is the first 12 characters of a key, e.g. sk_AbCdEfGhI");
    char prefix[CV_APIKEY_PREFIX_LEN + 1];
    snprintf(prefix, sizeof(prefix), "%s", arg); /* a full key works too */
    struct cv_store *store = NULL;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    /* It may be handed a full key, and holds the database password. */
    if (!open_for(cli, true, &store, &kp, &kr))
        return 1;
    char mid[CV_MERCHANT_ID_LEN + 1];
    cv_status st = cv_store_revoke_api_key(store, prefix, mid);
    if (st == CV_ERR_NOT_FOUND) {
        cv_cli_fail("no active key with that prefix");
        goto out;
    }
    if (st != CV_OK ||
        (st = audit_cli(store, "cli:key-revoke", mid, "api_key.revoke", prefix)) != CV_OK) {
        fprintf(stderr, "cardvault: cannot revoke the key (%s)\n", cv_status_name(st));
        goto out;
    }
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "prefix", prefix);
    cv_cli_json_set_bool(out, "revoked", true);
    st = cv_cli_print_json(out);
out:
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return st == CV_OK ? 0 : 1;
}

static int key_origins(struct cv_cli *cli)
{
    if (cli->argc != 2)
        return cv_cli_usage_error("key origins takes one PREFIX");
    if (cli->merchant != NULL || cli->scopes != NULL || cli->n_origin_args > 0)
        return cv_cli_usage_error("key origins takes only PREFIX and --set");
    const char *arg = cli->argv[1];
    if (strncmp(arg, "pk_", 3) != 0 ||
        (!cv_token_api_key_is_valid(arg, strlen(arg)) && strlen(arg) != CV_APIKEY_PREFIX_LEN))
        return cv_cli_usage_error("PREFIX is the first 12 characters of a publishable key, e.g. "
                                  "pk_AbCdEfGhI");
    char prefix[CV_APIKEY_PREFIX_LEN + 1];
    snprintf(prefix, sizeof(prefix), "%s", arg); /* a full key works too */
    char origins[CV_ORIGIN_LIST_MAX + 1] = "";
    if (cli->set_origins != NULL && cv_origin_list_parse(cli->set_origins, origins) != CV_OK)
        return cv_cli_usage_error(
            "--set takes a comma list of origins, scheme://host[:port] with nothing after it: "
            "https, or http on a loopback host (localhost, 127.x.x.x, [::1]); at most 8");
    struct cv_store *store = NULL;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    /* A change is an audit event, MAC-chained under the audit key the KEK
     * protects; reading the list needs no KEK. */
    if (!open_for(cli, cli->set_origins != NULL, &store, &kp, &kr))
        return 1;
    char mid[CV_MERCHANT_ID_LEN + 1];
    bool publishable = false;
    char current[CV_ORIGIN_LIST_MAX + 1] = "";
    cv_status st =
        cv_store_get_key_origins(store, prefix, mid, &publishable, current, sizeof(current));
    if (st == CV_ERR_NOT_FOUND) {
        cv_cli_fail("no active key with that prefix");
        goto out;
    }
    if (st == CV_OK && !publishable) {
        cv_cli_fail("that key has more than the tokenize scope: it must never be put on a page");
        st = CV_ERR_FORBIDDEN;
        goto out;
    }
    if (st == CV_OK && cli->set_origins != NULL) {
        char detail[CV_APIKEY_PREFIX_LEN + CV_ORIGIN_LIST_MAX + 4];
        snprintf(detail, sizeof(detail), "%s %s", prefix, origins);
        if ((st = cv_store_set_key_origins(store, prefix, origins, mid)) == CV_OK)
            st = audit_cli(store, "cli:key-origins", mid, "api_key.origins", detail);
        snprintf(current, sizeof(current), "%s", origins);
    }
    if (st != CV_OK) {
        fprintf(stderr, "cardvault: cannot %s the key's origins (%s)\n",
                cli->set_origins != NULL ? "set" : "read", cv_status_name(st));
        goto out;
    }
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "prefix", prefix);
    cv_cli_json_set_str(out, "merchant_id", mid);
    set_list(out, "allowed_origins", current);
    st = cv_cli_print_json(out);
out:
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return st == CV_OK ? 0 : 1;
}

int cv_cli_elements_sri(struct cv_cli *cli)
{
    char sri[CV_ELEMENTS_SRI_LEN + 1];
    if (cli->argc != 0)
        return cv_cli_usage_error("elements-sri takes no arguments");
    if (cv_elements_sri(sri) != CV_OK) {
        cv_cli_fail("cannot hash elements.js");
        return 1;
    }
    return printf("%s\n", sri) < 0 ? 1 : 0;
}

int cv_cli_key(struct cv_cli *cli)
{
    if (cli->argc >= 1 && strcmp(cli->argv[0], "create") == 0)
        return key_create(cli);
    if (cli->argc >= 1 && strcmp(cli->argv[0], "revoke") == 0)
        return key_revoke(cli);
    if (cli->argc >= 1 && strcmp(cli->argv[0], "origins") == 0)
        return key_origins(cli);
    return cv_cli_usage_error("expected: key create|revoke|origins");
}
