/* cli_audit.c: `cardvault audit verify|export|storage`, the commands a
 * security reviewer runs to check cardvault's claims instead of trusting them.
 *   verify   walks audit_events in seq order and recomputes the SHA-256
 *            chain and, from the first keyed event on, the HMAC chain under
 *            the audit key (unwrapped with the KEK), in C; exit 1 at the
 *            first broken link.
 *   export   prints events as JSON lines for a SIEM (--since T).
 *   storage  scans every column of the database for card numbers; exit 1 if
 *            any is found. Findings are printed masked, never in full.
 * Each run is itself recorded in the audit trail (PCI DSS 10.2.1.3: access
 * to audit logs; 10.2.1.2: administrative actions), best effort: a reviewer
 * on a read-only replica still gets an answer, with a warning on stderr.
 * Output: JSON on stdout, built and printed by cli.c's cv_cli_json_* calls
 * (the service's log lines, if any, are JSON objects with an "event" key);
 * exit 0 clean, 1 failure or finding, 2 usage. */
#include "cardvault/audit.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardvault/cli.h"
#include "cardvault/keyring.h"
#include "cardvault/pan_scan.h"
#include "cardvault/secbuf.h"
#include "cardvault/store.h"

#define PAGE_ROWS  1000 /* audit events per query */
#define BATCH_ROWS 1000 /* rows per FETCH in the storage scan */

const char cv_cli_audit_usage[] =
    "usage: cardvault audit verify [--expect SEQ:HASH] [--database-url-file PATH]\n"
    "       cardvault audit export [--since T] [--database-url-file PATH]\n"
    "       cardvault audit storage [--database-url-file PATH]\n"
    "\n"
    "The database URL comes from CARDVAULT_DATABASE_URL, CARDVAULT_DATABASE_URL_FILE or\n"
    "--database-url-file PATH; --database-url URL also works but shows the URL (and its\n"
    "password) to every local user in /proc/PID/cmdline.\n"
    "\n"
    "verify: recomputes the SHA-256 chain of audit_events in seq order and, from the\n"
    "first keyed event on, each event's HMAC-SHA-256 under the audit key, and checks\n"
    "the chain ends at audit_head (hash and MAC). Events written before migration 5\n"
    "are unkeyed; an unkeyed event after a keyed one, a wrong MAC, or a vault whose\n"
    "audit key exists while no event is keyed, all fail. Needs the KEK\n"
    "(CARDVAULT_KEK_FILE or CARDVAULT_KEK_PKCS11_*), which unwraps the audit key.\n"
    "Prints {\"ok\":true,\"events\":N,\"keyed_from_seq\":S,\"keyed_events\":N,\n"
    "\"head_seq\":N,\"head_hash\":H}, or {\"ok\":false,\"first_broken_seq\":S,\n"
    "\"reason\":...} and exits 1.\n"
    "--expect SEQ:HASH: an anchor kept outside the database (serve logs one,\n"
    "event audit_anchor, at start and every CARDVAULT_AUDIT_ANCHOR_INTERVAL_S);\n"
    "verify fails unless event SEQ exists with exactly that hash, so a cut tail or\n"
    "a rewritten chain is caught even if audit_head was moved to match.\n"
    "export: prints events as JSON lines for a SIEM; --since T takes YYYY-MM-DD\n"
    "(midnight UTC) or an RFC 3339 time (2026-01-02T03:04:05Z).\n"
    "storage: scans every column of every table for 12-19 digit Luhn-valid runs\n"
    "(text, numbers, json, arrays; bytea as raw bytes and UTF-16), prints one line\n"
    "per column with findings (masked sample) and a summary; exits 1 if any.\n"
    "Each run is recorded in the audit trail when the KEK is configured (export and\n"
    "storage still run without it, with a warning that the run was not recorded).\n";

/* Who ran the command, as far as this host can tell (PCI DSS 10.2.2 asks for
 * user identification; the database role is in the server's own log). */
static void os_user(char *out, size_t cap)
{
    struct passwd pwd, *pw = NULL;
    char buf[1024];
    if (getpwuid_r(geteuid(), &pwd, buf, sizeof(buf), &pw) == 0 && pw != NULL &&
        pw->pw_name != NULL)
        snprintf(out, cap, "%s", pw->pw_name);
    else
        snprintf(out, cap, "uid %ld", (long)geteuid());
}

/* kr: the keyring holding the audit key, NULL when no KEK is configured
 * (export and storage run without it; the run then goes unrecorded: an
 * unkeyed event would break the keyed chain). */
static void record_run(struct cv_store *store, const struct cv_keyring *kr, const char *actor,
                       const char *action, const char *outcome, const char *detail)
{
    struct cv_audit_event ev = {actor, NULL, NULL, NULL, action, outcome, detail};
    if (kr == NULL) {
        cv_cli_fail("warning: this run was not recorded in the audit trail (no KEK configured: "
                    "audit events are MAC-chained under the key it protects)");
        return;
    }
    if (cv_store_audit_append(store, &ev) != CV_OK)
        cv_cli_fail("warning: could not record this run in the audit trail (read-only "
                    "database?)");
}

/* ---------------------------------------------------------------- verify */

static cv_status verify_row(void *ctx, const struct cv_audit_row *row)
{
    struct cv_audit_verifier *v = ctx;
    /* Stop at the first break: everything after it is unanchored anyway. */
    return cv_audit_verify_row(v, row) ? CV_OK : CV_ERR_INTEGRITY;
}

static int cmd_verify(struct cv_cli *cli, struct cv_store *store, struct cv_keyring *kr)
{
    struct cv_audit_verifier v;
    struct cv_audit_head head;
    cv_audit_verify_init(&v);
    cv_audit_verify_set_key(&v, cv_keyring_audit_seal, kr);
    if (cli->expect != NULL) {
        int64_t seq = 0;
        unsigned char hash[CV_AUDIT_HASH_BYTES];
        if (cv_audit_parse_anchor(cli->expect, &seq, hash) != CV_OK)
            return 1; /* checked before the store was opened */
        cv_audit_verify_expect(&v, seq, hash);
    }
    cv_status st = cv_store_audit_walk(store, INT64_MIN, PAGE_ROWS, &head, verify_row, &v);
    if (st == CV_ERR_NOT_FOUND) {
        /* audit_head has no row: the chain has no anchor */
        v.broken = true;
        v.first_broken_seq = 1;
        v.reason = "audit_head row is missing";
        st = CV_OK;
    }
    if (st != CV_OK && st != CV_ERR_INTEGRITY) {
        fprintf(stderr, "cardvault: cannot read the audit trail (%s)\n", cv_status_name(st));
        return 1;
    }
    if (!v.broken)
        cv_audit_verify_finish(&v, &head);
    char user[64], detail[160];
    os_user(user, sizeof(user));
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_bool(out, "ok", !v.broken);
    if (v.broken) {
        cv_cli_json_set_int(out, "events_verified", (long long)v.events);
        cv_cli_json_set_int(out, "first_broken_seq", v.first_broken_seq);
        cv_cli_json_set_str(out, "reason", v.reason);
        snprintf(detail, sizeof(detail), "first_broken_seq=%" PRId64 " os_user=%s",
                 v.first_broken_seq, user);
    } else {
        char hex[2 * CV_AUDIT_HASH_BYTES + 1];
        cv_audit_hex(head.hash, CV_AUDIT_HASH_BYTES, hex);
        /* The head hash is what to write down elsewhere: a later run showing
         * the same seq with another hash means the chain was rewritten. */
        cv_cli_json_set_int(out, "events", (long long)v.events);
        /* Events before it were written before migration 5 (SHA-256 only). */
        cv_cli_json_set_int(out, "keyed_from_seq", v.keyed_from);
        cv_cli_json_set_int(out, "keyed_events", (long long)v.keyed_events);
        cv_cli_json_set_int(out, "head_seq", head.seq);
        cv_cli_json_set_str(out, "head_hash", hex);
        if (v.expect_set)
            cv_cli_json_set_int(out, "anchor_seq", v.expect_seq); /* met, with its hash */
        snprintf(detail, sizeof(detail), "events=%" PRIu64 " os_user=%s", v.events, user);
    }
    bool printed = cv_cli_print_json(out) == CV_OK;
    record_run(store, kr, "cli:audit-verify", "audit.verify", v.broken ? "broken" : "success",
               detail);
    return v.broken || !printed ? 1 : 0;
}

/* ---------------------------------------------------------------- export */

struct export_ctx {
    uint64_t lines;
    bool write_failed;
};

static cv_status export_row(void *ctx, const struct cv_audit_row *row)
{
    struct export_ctx *x = ctx;
    size_t len = 0;
    char *line = cv_audit_export_line(row, &len);
    if (line == NULL || fwrite(line, 1, len, stdout) != len || fputc('\n', stdout) == EOF)
        x->write_failed = true;
    free(line);
    x->lines++;
    return x->write_failed ? CV_ERR_IO : CV_OK;
}

static int cmd_export(struct cv_cli *cli, struct cv_store *store, struct cv_keyring *kr)
{
    int64_t since = INT64_MIN;
    if (cli->since != NULL && cv_audit_parse_since(cli->since, &since) != CV_OK)
        return CV_EXIT_USAGE; /* checked before connecting, in cv_cli_audit */
    struct export_ctx x = {0, false};
    struct cv_audit_head head;
    cv_status st = cv_store_audit_walk(store, since, PAGE_ROWS, &head, export_row, &x);
    if (fflush(stdout) != 0)
        x.write_failed = true;
    char user[64], detail[200];
    os_user(user, sizeof(user));
    snprintf(detail, sizeof(detail), "since=%.40s lines=%" PRIu64 " os_user=%s",
             cli->since != NULL ? cli->since : "all", x.lines, user);
    bool ok = st == CV_OK && !x.write_failed;
    record_run(store, kr, "cli:audit-export", "audit.export", ok ? "success" : "error", detail);
    if (x.write_failed) {
        cv_cli_fail("cannot write the export to stdout");
        return 1;
    }
    if (st != CV_OK) {
        fprintf(stderr, "cardvault: cannot read the audit trail (%s)\n", cv_status_name(st));
        return 1;
    }
    return 0;
}

/* --------------------------------------------------------------- storage */

struct scan_ctx {
    const struct cv_audit_column *cols; /* the scannable columns of one table */
    struct cv_pan_scan_column *stats;   /* parallel to cols */
};

static void scan_cell(void *vctx, size_t col, const unsigned char *bytes, size_t len)
{
    struct scan_ctx *ctx = vctx;
    unsigned mode = ctx->cols[col].kind == CV_AUDIT_COL_TEXT ? CV_PAN_SCAN_TEXT : CV_PAN_SCAN_BYTES;
    (void)cv_pan_scan_column_add(&ctx->stats[col], bytes, len, mode);
}

/* Sets key to "schema.table" or "schema.table.column". */
static void set_qualified(struct json_t *obj, const char *key, const char *schema,
                          const char *table, const char *column)
{
    size_t n = strlen(schema) + strlen(table) + 2 + (column != NULL ? strlen(column) + 1 : 0);
    char *name = cv_xmalloc(n);
    if (column != NULL)
        snprintf(name, n, "%s.%s.%s", schema, table, column);
    else
        snprintf(name, n, "%s.%s", schema, table);
    cv_cli_json_set_str(obj, key, name);
    free(name);
}

static cv_status print_finding(const struct cv_audit_column *c, const struct cv_pan_scan_column *cs)
{
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_bool(out, "finding", true);
    set_qualified(out, "table", c->schema, c->table, NULL);
    cv_cli_json_set_str(out, "column", c->column);
    cv_cli_json_set_str(out, "type", c->type);
    cv_cli_json_set_int(out, "rows", (long long)cs->values_with_hits);
    cv_cli_json_set_int(out, "matches", (long long)cs->hits.matches);
    cv_cli_json_set_str(out, "sample", cs->hits.sample);
    cv_cli_json_set_str(out, "encoding",
                        cs->hits.sample_encoding != NULL ? cs->hits.sample_encoding : "");
    return cv_cli_print_json(out);
}

static int cmd_storage(struct cv_cli *cli, struct cv_store *store, struct cv_keyring *kr)
{
    (void)cli;
    struct cv_audit_column *cols = NULL;
    size_t ncols = 0;
    if (cv_store_audit_columns(store, &cols, &ncols) != CV_OK) {
        cv_cli_fail("cannot list the database's columns from the catalog");
        return 1;
    }
    uint64_t tables = 0, scanned_cols = 0, rows = 0, values = 0, bytes = 0, findings = 0;
    uint64_t errors = 0;
    bool printed = true;
    struct cv_audit_column *batch = cv_xcalloc(ncols > 0 ? ncols : 1, sizeof(*batch));
    struct cv_pan_scan_column *stats = cv_xcalloc(ncols > 0 ? ncols : 1, sizeof(*stats));
    size_t i = 0;
    while (i < ncols) {
        /* the columns of one table are adjacent (ordered by schema, table) */
        size_t j = i, nb = 0;
        while (j < ncols && strcmp(cols[j].schema, cols[i].schema) == 0 &&
               strcmp(cols[j].table, cols[i].table) == 0) {
            if (cols[j].kind != CV_AUDIT_COL_SKIPPED)
                batch[nb++] = cols[j];
            j++;
        }
        tables++;
        memset(stats, 0, nb * sizeof(*stats));
        struct scan_ctx ctx = {batch, stats};
        uint64_t trows = 0;
        cv_status st =
            cv_store_audit_scan_table(store, batch, nb, BATCH_ROWS, scan_cell, &ctx, &trows);
        if (st != CV_OK) {
            /* Fail closed: a table we could not read is not a clean table. */
            errors++;
            struct json_t *out = cv_cli_json_object();
            cv_cli_json_set_bool(out, "finding", false);
            cv_cli_json_set_str(out, "error", "cannot read table");
            set_qualified(out, "table", cols[i].schema, cols[i].table, NULL);
            cv_cli_json_set_str(out, "status", cv_status_name(st));
            if (cv_cli_print_json(out) != CV_OK)
                printed = false;
        }
        rows += trows;
        scanned_cols += nb;
        for (size_t k = 0; k < nb; k++) {
            values += stats[k].values;
            bytes += stats[k].bytes;
            if (stats[k].values_with_hits > 0) {
                findings++;
                if (print_finding(&batch[k], &stats[k]) != CV_OK)
                    printed = false;
            }
        }
        i = j;
    }
    bool clean = findings == 0 && errors == 0;
    struct json_t *sum = cv_cli_json_object(), *skipped = cv_cli_json_array();
    cv_cli_json_set_bool(sum, "ok", clean);
    cv_cli_json_set_int(sum, "tables", (long long)tables);
    cv_cli_json_set_int(sum, "columns_scanned", (long long)scanned_cols);
    cv_cli_json_set_int(sum, "columns_skipped", (long long)(ncols - scanned_cols));
    cv_cli_json_set_int(sum, "rows", (long long)rows);
    cv_cli_json_set_int(sum, "values", (long long)values);
    cv_cli_json_set_int(sum, "bytes", (long long)bytes);
    cv_cli_json_set_int(sum, "findings", (long long)findings);
    cv_cli_json_set_int(sum, "errors", (long long)errors);
    for (size_t k = 0; k < ncols; k++) {
        if (cols[k].kind != CV_AUDIT_COL_SKIPPED)
            continue;
        struct json_t *one = cv_cli_json_object();
        set_qualified(one, "column", cols[k].schema, cols[k].table, cols[k].column);
        cv_cli_json_set_str(one, "type", cols[k].type);
        if (cv_cli_json_append(skipped, one) != CV_OK)
            cv_cli_json_set(sum, "skipped", NULL); /* marks the summary failed */
    }
    cv_cli_json_set(sum, "skipped", skipped);
    if (cv_cli_print_json(sum) != CV_OK)
        printed = false;
    char user[64], detail[200];
    os_user(user, sizeof(user));
    snprintf(detail, sizeof(detail),
             "tables=%" PRIu64 " columns=%" PRIu64 " findings=%" PRIu64 " errors=%" PRIu64
             " os_user=%s",
             tables, scanned_cols, findings, errors, user);
    record_run(store, kr, "cli:audit-storage", "audit.storage_scan",
               errors > 0     ? "error"
               : findings > 0 ? "found"
                              : "clean",
               detail);
    free(batch);
    free(stats);
    cv_audit_columns_free(cols, ncols);
    return clean && printed ? 0 : 1;
}

int cv_cli_audit(struct cv_cli *cli)
{
    if (cli->argc != 1)
        return cv_cli_usage_error("expected: audit verify|export|storage");
    const char *sub = cli->argv[0];
    int (*run)(struct cv_cli *, struct cv_store *, struct cv_keyring *) = NULL;
    int64_t since = 0;
    if (strcmp(sub, "export") == 0) {
        if (cli->since != NULL && cv_audit_parse_since(cli->since, &since) != CV_OK)
            return cv_cli_usage_error("--since takes YYYY-MM-DD or an RFC 3339 time such as "
                                      "2026-01-02T03:04:05Z");
        run = cmd_export;
    } else if (cli->since != NULL && (strcmp(sub, "verify") == 0 || strcmp(sub, "storage") == 0)) {
        return cv_cli_usage_error("--since applies to audit export only");
    } else if (cli->expect != NULL && strcmp(sub, "verify") != 0) {
        return cv_cli_usage_error("--expect applies to audit verify only");
    } else if (strcmp(sub, "verify") == 0) {
        int64_t seq = 0;
        unsigned char hash[CV_AUDIT_HASH_BYTES];
        if (cli->expect != NULL && cv_audit_parse_anchor(cli->expect, &seq, hash) != CV_OK)
            return cv_cli_usage_error("--expect takes SEQ:HASH, as in serve's audit_anchor log "
                                      "line (hash: 64 hex digits)");
        run = cmd_verify;
    } else if (strcmp(sub, "storage") == 0) {
        run = cmd_storage;
    } else {
        return cv_cli_usage_error("expected: audit verify|export|storage");
    }
    struct cv_store *store = NULL;
    /* The storage scan may read a card number in clear out of a column;
     * every subcommand holds the database password. */
    if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK ||
        cv_cli_open_store(&cli->cfg, &store) != CV_OK)
        return 1;
    /* verify needs the audit key to check the MACs; export and storage only
     * to record their run, so they go on without a KEK configured. */
    struct cv_keyprovider *kp = NULL;
    struct cv_keyring *kr = NULL;
    char why[256];
    bool need_key = run == cmd_verify;
    if ((need_key || cv_config_require(&cli->cfg, true, true, why, sizeof(why)) == CV_OK) &&
        cv_cli_open_keyring(&cli->cfg, store, &kp, &kr) != CV_OK) {
        cv_store_close(store);
        return 1;
    }
    int rc = run(cli, store, kr);
    cv_cli_close_keyring(kp, kr);
    cv_store_close(store);
    return rc;
}
