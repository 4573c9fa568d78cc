/* cli_tokens.c: `cardvault tokens purge-expired`, the operator's way to run
 * the expired-token purge the service's housekeeping thread runs every
 * minute (before a backup, or with the service stopped). Each batch deletes
 * at most PURGE_BATCH rows and appends one audit event with their count, in
 * one transaction; it never reads or prints card data. */
#include "cardvault/cli.h"

#include <stdio.h>
#include <string.h>

#include "cardvault/store.h"

#define PURGE_BATCH 100

const char cv_cli_tokens_usage[] =
    "usage: cardvault tokens purge-expired [--database-url-file PATH]\n"
    "\n"
    "Deletes every token whose lifetime (ttl_seconds) has ended, in batches of 100 rows,\n"
    "each batch with one token.purge_expired audit event per merchant (its count,\n"
    "never card data), and prints {\"purged\":N,\"batches\":B}. The running service\n"
    "does the same every 60 s. The KEK must be configured: audit events are sealed\n"
    "under the audit key.\n"
    "See docs/storage-policy.md for what PostgreSQL and backups keep after a purge.\n";

int cv_cli_tokens(struct cv_cli *cli)
{
    if (cli->argc != 1 || strcmp(cli->argv[0], "purge-expired") != 0)
        return cv_cli_usage_error("expected: tokens purge-expired");
    struct cv_store *store = NULL;
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK ||
        cv_cli_open_store(&cli->cfg, &store) != CV_OK)
        return 1;
    if (cv_cli_open_keyring(&cli->cfg, store, &kp, &kr) != CV_OK) {
        cv_store_close(store);
        return 1;
    }
    long long total = 0, batches = 0;
    int64_t n = 0;
    cv_status st = CV_OK;
    do {
        st = cv_store_purge_expired(store, PURGE_BATCH, &n);
        if (st == CV_OK && n > 0) {
            total += n;
            batches++;
        }
    } while (st == CV_OK && n == PURGE_BATCH);
    int rc = 0;
    if (st != CV_OK) {
        cv_cli_fail("the purge failed; batches already committed stay purged");
        rc = 1;
    } else {
        struct json_t *out = cv_cli_json_object();
        cv_cli_json_set_int(out, "purged", total);
        cv_cli_json_set_int(out, "batches", batches);
        rc = cv_cli_print_json(out) == CV_OK ? 0 : 1;
    }
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return rc;
}
