/* cli_audit.c: `cardvault audit verify|export|storage`, the commands a
 * security reviewer runs to check cardvault's claims instead of trusting them.
 *   verify   walks audit_events in seq order and recomputes the hash chain
 *            in C, independently of the SQL that wrote it; exit 1 at the
 *            first broken link.
 *   export   prints events as JSON lines for a SIEM (--since T).
 *   storage  scans every column of the database for card numbers; exit 1 if
 *            any is found. Findings are printed masked, never in full.
 * Each run is itself recorded in the audit trail (PCI DSS 10.2.1.3: access
 * to audit logs; 10.2.1.2: administrative actions), best effort: a reviewer
 * on a read-only replica still gets an answer, with a warning on stderr.
 * Output: JSON on stdout (the service's log lines, if any, are JSON objects
 * with an "event" key); exit 0 clean, 1 failure or finding, 2 usage. */
#include "cardvault/audit.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardvault/cli.h"
#include "cardvault/secbuf.h"
#include "cardvault/store.h"

#define PAGE_ROWS  1000 /* audit events per query */
#define BATCH_ROWS 1000 /* rows per FETCH in the storage scan */

/* Who ran the command, as far as this host can tell (PCI DSS 10.2.2 asks for
 * user identification; the database role is in the server's own log). */
static void os_user(char *out, size_t cap)
{
    const struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL && pw->pw_name != NULL)
        snprintf(out, cap, "%s", pw->pw_name);
    else
        snprintf(out, cap, "uid %ld", (long)geteuid());
}

static void record_run(struct cv_store *store, const char *actor, const char *action,
                       const char *outcome, const char *detail)
{
    struct cv_audit_event ev = {actor, NULL, NULL, NULL, action, outcome, detail};
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

static int cmd_verify(struct cv_cli *cli, struct cv_store *store)
{
    (void)cli;
    struct cv_audit_verifier v;
    struct cv_audit_head head;
    cv_audit_verify_init(&v);
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
    if (v.broken) {
        char *reason = cv_audit_json_quote(v.reason);
        printf("{\"ok\":false,\"events_verified\":%" PRIu64 ",\"first_broken_seq\":%" PRId64
               ",\"reason\":%s}\n",
               v.events, v.first_broken_seq, reason);
        free(reason);
        snprintf(detail, sizeof(detail), "first_broken_seq=%" PRId64 " os_user=%s",
                 v.first_broken_seq, user);
    } else {
        char hex[2 * CV_AUDIT_HASH_BYTES + 1];
        cv_audit_hex(head.hash, CV_AUDIT_HASH_BYTES, hex);
        /* The head hash is what to write down elsewhere: a later run showing
         * the same seq with another hash means the chain was rewritten. */
        printf("{\"ok\":true,\"events\":%" PRIu64 ",\"head_seq\":%" PRId64
               ",\"head_hash\":\"%s\"}\n",
               v.events, head.seq, hex);
        snprintf(detail, sizeof(detail), "events=%" PRIu64 " os_user=%s", v.events, user);
    }
    fflush(stdout);
    record_run(store, "cli:audit-verify", "audit.verify", v.broken ? "broken" : "success", detail);
    return v.broken ? 1 : 0;
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
    if (fwrite(line, 1, len, stdout) != len || fputc('\n', stdout) == EOF)
        x->write_failed = true;
    free(line);
    x->lines++;
    return x->write_failed ? CV_ERR_IO : CV_OK;
}

static int cmd_export(struct cv_cli *cli, struct cv_store *store)
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
    record_run(store, "cli:audit-export", "audit.export", ok ? "success" : "error", detail);
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

struct col_stats {
    uint64_t values;
    uint64_t bytes;
    uint64_t values_with_hits;
    struct cv_audit_scan_result hits; /* summed matches, first masked sample */
};

struct scan_ctx {
    const struct cv_audit_column *cols; /* the scannable columns of one table */
    struct col_stats *stats;            /* parallel to cols */
};

static void scan_cell(void *vctx, size_t col, const unsigned char *bytes, size_t len)
{
    struct scan_ctx *ctx = vctx;
    struct col_stats *cs = &ctx->stats[col];
    struct cv_audit_scan_result one;
    memset(&one, 0, sizeof(one));
    enum cv_audit_scan_kind kind =
        ctx->cols[col].kind == CV_AUDIT_COL_TEXT ? CV_AUDIT_SCAN_TEXT : CV_AUDIT_SCAN_BYTES;
    cv_audit_scan_value(bytes, len, kind, &one);
    cs->values++;
    cs->bytes += len;
    if (one.matches > 0) {
        cs->values_with_hits++;
        cs->hits.matches += one.matches;
        if (cs->hits.sample[0] == '\0') {
            memcpy(cs->hits.sample, one.sample, sizeof(one.sample));
            cs->hits.sample_encoding = one.sample_encoding;
        }
    }
}

static void print_qualified(const char *schema, const char *table, const char *column)
{
    size_t n = strlen(schema) + strlen(table) + 2 + (column != NULL ? strlen(column) + 1 : 0);
    char *name = cv_xmalloc(n);
    if (column != NULL)
        snprintf(name, n, "%s.%s.%s", schema, table, column);
    else
        snprintf(name, n, "%s.%s", schema, table);
    char *q = cv_audit_json_quote(name);
    fputs(q, stdout);
    free(q);
    free(name);
}

static void print_finding(const struct cv_audit_column *c, const struct col_stats *cs)
{
    char *col = cv_audit_json_quote(c->column), *type = cv_audit_json_quote(c->type);
    fputs("{\"finding\":true,\"table\":", stdout);
    print_qualified(c->schema, c->table, NULL);
    printf(",\"column\":%s,\"type\":%s,\"rows\":%" PRIu64 ",\"matches\":%" PRIu64
           ",\"sample\":\"%s\",\"encoding\":\"%s\"}\n",
           col, type, cs->values_with_hits, cs->hits.matches, cs->hits.sample,
           cs->hits.sample_encoding != NULL ? cs->hits.sample_encoding : "");
    free(col);
    free(type);
}

static int cmd_storage(struct cv_cli *cli, struct cv_store *store)
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
    struct cv_audit_column *batch = cv_xcalloc(ncols > 0 ? ncols : 1, sizeof(*batch));
    struct col_stats *stats = cv_xcalloc(ncols > 0 ? ncols : 1, sizeof(*stats));
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
            fputs("{\"finding\":false,\"error\":\"cannot read table\",\"table\":", stdout);
            print_qualified(cols[i].schema, cols[i].table, NULL);
            printf(",\"status\":\"%s\"}\n", cv_status_name(st));
        }
        rows += trows;
        scanned_cols += nb;
        for (size_t k = 0; k < nb; k++) {
            values += stats[k].values;
            bytes += stats[k].bytes;
            if (stats[k].values_with_hits > 0) {
                findings++;
                print_finding(&batch[k], &stats[k]);
            }
        }
        i = j;
    }
    bool clean = findings == 0 && errors == 0;
    printf("{\"ok\":%s,\"tables\":%" PRIu64 ",\"columns_scanned\":%" PRIu64
           ",\"columns_skipped\":%" PRIu64 ",\"rows\":%" PRIu64 ",\"values\":%" PRIu64
           ",\"bytes\":%" PRIu64 ",\"findings\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"skipped\":[",
           clean ? "true" : "false", tables, scanned_cols, (uint64_t)ncols - scanned_cols, rows,
           values, bytes, findings, errors);
    bool first = true;
    for (size_t k = 0; k < ncols; k++) {
        if (cols[k].kind != CV_AUDIT_COL_SKIPPED)
            continue;
        char *type = cv_audit_json_quote(cols[k].type);
        fputs(first ? "{\"column\":" : ",{\"column\":", stdout);
        print_qualified(cols[k].schema, cols[k].table, cols[k].column);
        printf(",\"type\":%s}", type);
        free(type);
        first = false;
    }
    printf("]}\n");
    fflush(stdout);
    char user[64], detail[200];
    os_user(user, sizeof(user));
    snprintf(detail, sizeof(detail),
             "tables=%" PRIu64 " columns=%" PRIu64 " findings=%" PRIu64 " errors=%" PRIu64
             " os_user=%s",
             tables, scanned_cols, findings, errors, user);
    record_run(store, "cli:audit-storage", "audit.storage_scan",
               errors > 0     ? "error"
               : findings > 0 ? "found"
                              : "clean",
               detail);
    free(batch);
    free(stats);
    cv_audit_columns_free(cols, ncols);
    return clean ? 0 : 1;
}

int cv_cli_audit(struct cv_cli *cli)
{
    if (cli->argc != 1)
        return cv_cli_usage_error("expected: audit verify|export|storage");
    const char *sub = cli->argv[0];
    int (*run)(struct cv_cli *, struct cv_store *) = NULL;
    int64_t since = 0;
    if (strcmp(sub, "export") == 0) {
        if (cli->since != NULL && cv_audit_parse_since(cli->since, &since) != CV_OK)
            return cv_cli_usage_error("--since takes YYYY-MM-DD or an RFC 3339 time such as "
                                      "2026-01-02T03:04:05Z");
        run = cmd_export;
    } else if (cli->since != NULL && (strcmp(sub, "verify") == 0 || strcmp(sub, "storage") == 0)) {
        return cv_cli_usage_error("--since applies to audit export only");
    } else if (strcmp(sub, "verify") == 0) {
        run = cmd_verify;
    } else if (strcmp(sub, "storage") == 0) {
        run = cmd_storage;
    } else {
        return cv_cli_usage_error("expected: audit verify|export|storage");
    }
    struct cv_store *store = NULL;
    if (cv_cli_open_store(&cli->cfg, &store) != CV_OK)
        return 1;
    int rc = run(cli, store);
    cv_store_close(store);
    return rc;
}
