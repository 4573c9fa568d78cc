/* cli_keys.c: `cardvault keys ...`, the key lifecycle for operators, all
 * online: running services keep serving while these run. Each action is
 * recorded in the audit trail. Nothing here prints key material: only ids,
 * states, counts and the first bytes of the KEK check value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cardvault/cli.h"
#include "cardvault/kek.h"
#include "cardvault/keyring.h"
#include "cardvault/secbuf.h"
#include "cardvault/store_keys.h"

#define REENCRYPT_DEFAULT_BATCH 500
#define REENCRYPT_MAX_BATCH     10000

const char cv_cli_keys_usage[] =
    "usage: cardvault keys status\n"
    "       cardvault keys rotate-dek\n"
    "       cardvault keys rotate-kek --new-kek-file PATH\n"
    "       cardvault keys rotate-kek pkcs11:module=PATH,token=LABEL,key=LABEL,pin-file=PATH\n"
    "       cardvault keys reencrypt [--from-dek ID] [--batch N]\n"
    "       cardvault keys destroy-dek ID --confirm\n"
    "\n"
    "All online: running services keep serving. Every action is audited, its event\n"
    "MAC-chained under the audit key, so every subcommand but status needs the current\n"
    "KEK configured (CARDVAULT_KEK_FILE or CARDVAULT_KEK_PKCS11_*).\n"
    "status: KEK identity (provider, check value prefix) and every DEK with state,\n"
    "  age, reserved uses and the number of tokens it protects.\n"
    "rotate-dek: a new active DEK now; other active DEKs are retired (decrypt only);\n"
    "  every instance moves to the new key within 5 s.\n"
    "rotate-kek: re-wraps every DEK, the fingerprint key and the audit key under the\n"
    "  new KEK in one transaction (token rows untouched). Needs the current KEK\n"
    "  configured. Then\n"
    "  put the new KEK where CARDVAULT_KEK_FILE / CARDVAULT_KEK_PKCS11_* point:\n"
    "  running services load it without a restart; until then they keep serving\n"
    "  with the data keys they hold and refuse to create new ones (503).\n"
    "reencrypt: moves rows from retired DEKs to the active one in batches (default\n"
    "  500 rows per transaction); resumable; prints progress as JSON lines.\n"
    "destroy-dek: crypto-shreds a retired DEK: its rows answer 410 token_destroyed.\n"
    "Each command waits at most 2 s for a database lock (3 tries), so it never\n"
    "stalls traffic queued behind it; when a long transaction or pg_dump holds\n"
    "what it needs, it gives up, changing nothing: run it again later.\n";

/* What a key command says when its store call gave up on a lock or could not
 * reach the database (CV_ERR_DB_UNAVAILABLE: nothing changed either way). */
static const char lock_gave_up[] =
    "a database lock was not granted within 2 s (3 tries; a long transaction or pg_dump "
    "may hold it: see pg_stat_activity) or the database is unreachable; nothing changed, "
    "run it again later";

/* Prints one JSON document on its own line (jq reads it); the command's
 * exit status does not depend on stdout, as before. */
static void print_json(json_t *doc)
{
    cv_status st = cv_cli_print_json(doc); /* a failure is reported on stderr */
    (void)st;
}

static void add_dek(void *ctx, const struct cv_dek_status *d)
{
    json_array_append_new(ctx, json_pack("{s:I, s:s, s:I, s:I, s:I, s:I}", "dek_id",
                                         (json_int_t)d->dek_id, "state", d->state, "age_s",
                                         (json_int_t)d->age_s, "use_count",
                                         (json_int_t)d->use_count, "max_uses",
                                         (json_int_t)d->max_uses, "tokens", (json_int_t)d->tokens));
}

static int keys_status(struct cv_cli *cli, struct cv_store *store)
{
    char provider[32], rewrapped[32], described[512], kcv_prefix[8];
    unsigned char kcv[CV_KCV_BYTES];
    cv_status st = cv_store_meta_info(store, provider, kcv, rewrapped);
    if (st == CV_ERR_NOT_FOUND) {
        cv_cli_fail("this vault has no KEK bound yet (start `cardvault serve` once)");
        return 1;
    }
    if (st != CV_OK) {
        cv_cli_fail("cannot read the vault's key metadata");
        return 1;
    }
    cv_kek_describe(&cli->cfg, described, sizeof(described));
    /* Three bytes, as key check values are customarily shown. */
    snprintf(kcv_prefix, sizeof(kcv_prefix), "%02x%02x%02x", kcv[0], kcv[1], kcv[2]);
    json_t *deks = json_array();
    st = cv_store_list_deks(store, add_dek, deks);
    print_json(json_pack("{s:{s:s, s:s, s:s, s:o}, s:o}", "kek", "provider", provider, "configured",
                         described, "check_value_prefix", kcv_prefix, "rewrapped_at",
                         rewrapped[0] != '\0' ? json_string(rewrapped) : json_null(), "deks",
                         deks));
    return st == CV_OK ? 0 : 1;
}

/* A new active DEK, every other one retired. */
static cv_status rotate_and_retire(struct cv_keyring *kr, struct cv_store *store, int64_t *id)
{
    CV_TRY(cv_keyring_rotate(kr, id));
    return cv_store_retire_active_except(store, *id);
}

static int keys_rotate_dek(struct cv_cli *cli, struct cv_store *store)
{
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    int64_t id = 0;
    int rc = 1;
    if (cv_cli_open_keyring(&cli->cfg, store, &kp, &kr) != CV_OK)
        goto out;
    /* Every other active key is retired: instances notice when they renew
     * their use reservation (within 5 s) and move to the new key. */
    cv_status st = rotate_and_retire(kr, store, &id);
    char detail[64];
    snprintf(detail, sizeof(detail), "new active dek %lld", (long long)id);
    struct cv_audit_event ev = {"cli:keys-rotate-dek",
                                NULL,
                                NULL,
                                NULL,
                                "keys.rotate_dek",
                                st == CV_OK ? "success" : "error",
                                detail};
    if (cv_store_audit_append(store, &ev) != CV_OK && st == CV_OK)
        st = CV_ERR_DB;
    if (st != CV_OK) {
        fprintf(stderr, "cardvault: cannot rotate the data key (%s)%s%s\n", cv_status_name(st),
                st == CV_ERR_DB_UNAVAILABLE ? ": " : "",
                st == CV_ERR_DB_UNAVAILABLE ? lock_gave_up : "");
        goto out;
    }
    print_json(json_pack("{s:I, s:b}", "active_dek_id", (json_int_t)id, "others_retired", 1));
    rc = 0;
out:
    cv_keyring_close(kr);
    cv_keyprovider_free(kp);
    return rc;
}

static int keys_rotate_kek(struct cv_cli *cli, struct cv_store *store)
{
    char why[512];
    struct cv_keyprovider *old_kp = NULL, *new_kp = NULL;
    struct cv_keyring *kr = NULL;
    int rc = 1, n = 0;
    const char *pkcs11 = cli->argc == 2 ? cli->argv[1] : NULL;
    if ((cli->new_kek_file == NULL) == (pkcs11 == NULL))
        return cv_cli_usage_error("rotate-kek takes --new-kek-file PATH, or "
                                  "pkcs11:module=PATH,token=LABEL,key=LABEL,pin-file=PATH");
    if (cv_config_require(&cli->cfg, true, true, why, sizeof(why)) != CV_OK ||
        cv_kek_open_configured(&cli->cfg, &old_kp, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    /* The keyring over the current KEK holds the audit key that seals the
     * rotation's own event; the rotation re-wraps that key too. */
    struct cv_keyring_limits limits = {cli->cfg.dek_max_age_s, cli->cfg.dek_max_uses};
    if (cv_keyring_open(store, old_kp, &limits, NULL, NULL, &kr, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    cv_status st;
    if (pkcs11 != NULL) {
        if (strncmp(pkcs11, "pkcs11:", 7) != 0) {
            rc = cv_cli_usage_error(
                "the new KEK is pkcs11:module=...,token=...,key=...,pin-file=...");
            goto out;
        }
        st = cv_kek_open_pkcs11_spec(pkcs11 + 7, &new_kp, why, sizeof(why));
    } else {
        st = cv_keyprovider_file_open(cli->new_kek_file, &new_kp, why, sizeof(why));
    }
    if (st != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    struct cv_audit_event ev = {
        "cli:keys-rotate-kek",      NULL, NULL, NULL, "keys.rotate_kek", "success",
        cv_keyprovider_name(new_kp)};
    st = cv_keyring_rewrap_kek(store, old_kp, new_kp, &ev, &n);
    if (st == CV_ERR_CONFIG) {
        cv_cli_fail("the configured KEK is not the vault's current KEK: nothing changed");
        goto out;
    }
    if (st == CV_ERR_BAD_REQUEST) {
        cv_cli_fail("the new KEK is the same key as the current one: nothing changed");
        goto out;
    }
    if (st == CV_ERR_DB_UNAVAILABLE) {
        fprintf(stderr, "cardvault: KEK rotation not done: %s\n", lock_gave_up);
        goto out;
    }
    if (st != CV_OK) {
        fprintf(stderr, "cardvault: KEK rotation failed, nothing changed (%s)\n",
                cv_status_name(st));
        goto out;
    }
    print_json(json_pack(
        "{s:i, s:b, s:b, s:s, s:s}", "rewrapped_deks", n, "fingerprint_key_rewrapped", 1,
        "audit_key_rewrapped", 1, "new_provider", cv_keyprovider_name(new_kp), "next",
        "point CARDVAULT_KEK_FILE (or CARDVAULT_KEK_PKCS11_*) at the new KEK; running services "
        "pick it up without a restart when the configured location now holds it, and refuse DEK "
        "creation until then"));
    rc = 0;
out:
    cv_keyring_close(kr);
    cv_keyprovider_free(new_kp);
    cv_keyprovider_free(old_kp);
    return rc;
}

/* Opens row and seals its card again under the active DEK into fresh. */
static cv_status reseal(struct cv_keyring *kr, const struct cv_token_row *row,
                        struct cv_token_row *fresh)
{
    struct cv_card_plain card;
    memset(fresh, 0, sizeof(*fresh));
    memcpy(fresh->merchant_id, row->merchant_id, sizeof(fresh->merchant_id));
    memcpy(fresh->token, row->token, sizeof(fresh->token));
    cv_status st = cv_keyring_open_row(kr, row, &card);
    if (st != CV_OK)
        goto out;
    st = cv_keyring_seal(kr, &card, fresh);
out:
    cv_wipe(&card, sizeof(card)); /* card data: wiped on every path */
    return st;
}

static int keys_reencrypt(struct cv_cli *cli, struct cv_store *store)
{
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    struct cv_token_row *rows = NULL, *fresh = NULL;
    int64_t *old_ids = NULL;
    long long from = 0, batch = REENCRYPT_DEFAULT_BATCH;
    size_t moved = 0, failed = 0;
    int rc = 1;
    if (cli->from_dek != NULL && (from = strtoll(cli->from_dek, NULL, 10)) <= 0)
        return cv_cli_usage_error("--from-dek takes a DEK id (see keys status)");
    if (cli->batch != NULL &&
        ((batch = strtoll(cli->batch, NULL, 10)) <= 0 || batch > REENCRYPT_MAX_BATCH))
        return cv_cli_usage_error("--batch takes 1-10000");
    if (cv_cli_open_keyring(&cli->cfg, store, &kp, &kr) != CV_OK)
        goto out;
    rows = cv_xcalloc((size_t)batch, sizeof(*rows));
    fresh = cv_xcalloc((size_t)batch, sizeof(*fresh));
    old_ids = cv_xcalloc((size_t)batch, sizeof(*old_ids));
    for (;;) {
        size_t n = 0, m = 0, updated = 0;
        cv_status st = cv_store_tokens_to_reencrypt(store, from, (size_t)batch, rows, &n);
        if (st != CV_OK) {
            fprintf(stderr, "cardvault: cannot read rows to re-encrypt (%s)\n", cv_status_name(st));
            goto out;
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            st = reseal(kr, &rows[i], &fresh[m]);
            if (st == CV_OK) {
                old_ids[m++] = rows[i].dek_id;
            } else {
                failed++;
                fprintf(stderr, "cardvault: row %s cannot be re-encrypted (%s), skipped\n",
                        rows[i].token, cv_status_name(st));
            }
        }
        st = cv_store_update_ciphers(store, fresh, old_ids, m, &updated);
        for (size_t i = 0; i < n; i++)
            cv_token_row_cleanup(&rows[i]);
        for (size_t i = 0; i < m; i++)
            cv_token_row_cleanup(&fresh[i]);
        if (st != CV_OK) {
            fprintf(stderr,
                    "cardvault: batch failed, nothing of it changed (%s); rerun to resume\n",
                    cv_status_name(st));
            goto out;
        }
        moved += updated;
        print_json(json_pack("{s:s, s:I, s:I}", "event", "reencrypt_progress", "batch",
                             (json_int_t)updated, "moved_total", (json_int_t)moved));
        if (m == 0 || (failed > 0 && updated == 0))
            break; /* only unreadable rows are left: stop instead of looping */
    }
    char detail[96];
    snprintf(detail, sizeof(detail), "moved %zu rows, %zu unreadable", moved, failed);
    struct cv_audit_event ev = {"cli:keys-reencrypt",
                                NULL,
                                NULL,
                                NULL,
                                "keys.reencrypt",
                                failed == 0 ? "success" : "partial",
                                detail};
    if (cv_store_audit_append(store, &ev) != CV_OK)
        cv_cli_fail("could not record the re-encryption in the audit trail");
    print_json(
        json_pack("{s:I, s:I}", "moved", (json_int_t)moved, "unreadable", (json_int_t)failed));
    rc = failed == 0 ? 0 : 1;
out:
    free(rows);
    free(fresh);
    free(old_ids);
    cv_keyring_close(kr);
    cv_keyprovider_free(kp);
    return rc;
}

static int keys_destroy_dek(struct cv_cli *cli, struct cv_store *store)
{
    if (cli->argc != 2)
        return cv_cli_usage_error("destroy-dek takes one DEK id");
    long long id = strtoll(cli->argv[1], NULL, 10);
    if (id <= 0)
        return cv_cli_usage_error("destroy-dek takes one DEK id (see keys status)");
    if (!cli->confirm)
        return cv_cli_usage_error("destroy-dek makes every card under that key unrecoverable; "
                                  "add --confirm");
    char detail[64];
    snprintf(detail, sizeof(detail), "dek %lld", id);
    struct cv_audit_event ev = {"cli:keys-destroy-dek", NULL,      NULL,  NULL,
                                "keys.destroy_dek",     "success", detail};
    int64_t tokens = 0;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    /* Its audit event is MAC-chained under the audit key. */
    if (cv_cli_open_keyring(&cli->cfg, store, &kp, &kr) != CV_OK)
        return 1;
    cv_status st = cv_store_destroy_dek(store, id, &ev, &tokens);
    cv_cli_close_keyring(kp, kr);
    if (st == CV_ERR_NOT_FOUND) {
        cv_cli_fail("no DEK with that id retired at least 10 s ago (only retired keys can be "
                    "destroyed, once no instance can still be sealing under them; rotate first)");
        return 1;
    }
    if (st == CV_ERR_DB_UNAVAILABLE) {
        fprintf(stderr, "cardvault: data key not destroyed: %s\n", lock_gave_up);
        return 1;
    }
    if (st != CV_OK) {
        fprintf(stderr, "cardvault: cannot destroy the data key (%s)\n", cv_status_name(st));
        return 1;
    }
    print_json(json_pack("{s:I, s:I}", "destroyed_dek_id", (json_int_t)id,
                         "tokens_now_unrecoverable", (json_int_t)tokens));
    return 0;
}

int cv_cli_keys(struct cv_cli *cli)
{
    if (cli->argc < 1)
        return cv_cli_usage_error(
            "expected: keys status|rotate-dek|rotate-kek|reencrypt|destroy-dek");
    const char *sub = cli->argv[0];
    struct {
        const char *name;
        int (*run)(struct cv_cli *, struct cv_store *);
        int max_args;
    } const subs[] = {
        {"status", keys_status, 1},           {"rotate-dek", keys_rotate_dek, 1},
        {"rotate-kek", keys_rotate_kek, 2},   {"reencrypt", keys_reencrypt, 1},
        {"destroy-dek", keys_destroy_dek, 2},
    };
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (strcmp(sub, subs[i].name) != 0)
            continue;
        if (cli->argc > subs[i].max_args)
            return cv_cli_usage_error("too many arguments");
        /* These commands hold the KEK's working keys and, for reencrypt, card
         * plaintext: the same protections as `serve`. */
        if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK)
            return 1;
        struct cv_store *store = NULL;
        if (cv_cli_open_store(&cli->cfg, &store) != CV_OK)
            return 1;
        int rc = subs[i].run(cli, store);
        cv_store_close(store);
        return rc;
    }
    return cv_cli_usage_error("expected: keys status|rotate-dek|rotate-kek|reencrypt|destroy-dek");
}
