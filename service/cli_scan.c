/* cli_scan.c: `cardvault scan`, which searches a shop's own systems for card
 * data left behind: a PostgreSQL database (every column of every table of
 * every user schema, streamed through a cursor, optionally sampled), a
 * MySQL/MariaDB database (the same, streamed by scan_mysql.c), directories (recursively, .gz files
 * decompressed with zlib) and single files (CSV files, SQL dumps, logs). The finding itself is
 * pan_scan.c's, the scanner `cardvault audit storage` uses, here with its issuer check (a run must
 * start with a known issuer prefix and have that brand's length), base64 decoding and security-code
 * keys; a column named like a security code holding 3-4 digit values is a finding too, in a table,
 * a CSV file or a COPY block of a dump.
 *
 * It must never print a card number or a security code: findings carry
 * where (table, column, primary key, ctid or row position; file and line),
 * how many, and masked samples (BIN and last 4 at most, PCI DSS 3.4.1). A
 * primary key value that itself looks like card data is replaced by the
 * row's ctid (PostgreSQL) or position (MySQL).
 * Every buffer that held scanned data is wiped. Exit 0 clean, 1 found, 2
 * error (the scan is then incomplete, whatever it found). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "cardvault/audit.h"
#include "cardvault/cli.h"
#include "cardvault/csv.h"
#include "cardvault/pan_scan.h"
#include "cardvault/scan_mysql.h"
#include "cardvault/secbuf.h"
#include "cardvault/secret_file.h"
#include "cardvault/store.h"

#define SAMPLES       3
#define LOCATIONS     5
#define LOC_LEN       96
#define CHUNK         65536
#define LINE_MAX_KEEP 65536 /* COPY lines longer than this are scanned, not parsed */
#define FETCH_ROWS    1000
#define URL_MAX       4096
#define EXIT_FOUND    1
#define EXIT_ERROR    2

enum opt {
    S_SOURCE_URL_FILE,
    S_SAMPLE,
    S_JSON,
    S_ANY_LUHN,
    S_DB,
    S_MYSQL,
    S_MYSQL_URL,
    S_MYSQL_URL_FILE
};

const struct cv_cli_optdef cv_cli_scan_opts[] = {
    {"source-url-file", 1, S_SOURCE_URL_FILE},
    {"sample", 1, S_SAMPLE},
    {"json", 0, S_JSON},
    {"any-luhn", 0, S_ANY_LUHN},
    {"db", 0, S_DB},
    {"mysql", 0, S_MYSQL},
    {"mysql-url", 1, S_MYSQL_URL},
    {"mysql-url-file", 1, S_MYSQL_URL_FILE},
    {NULL, 0, 0},
};

const char cv_cli_scan_usage[] =
    "usage: cardvault scan [--db [--source-url-file PATH]]\n"
    "                      [--mysql | --mysql-url URL | --mysql-url-file PATH]\n"
    "                      [--sample N] [--json] [--any-luhn] [PATH...]\n"
    "\n"
    "Searches a shop's own systems for card data left behind (docs/migrating.md).\n"
    "--db: a PostgreSQL database: every table of every user schema, every column\n"
    "  that can hold text (text, varchar, json, jsonb, numeric, arrays, ...) or bytes\n"
    "  (bytea), read through a cursor in a READ ONLY transaction. Its connection\n"
    "  string comes from --source-url-file PATH (mode 0600) or\n"
    "  CARDVAULT_SCAN_SOURCE_URL. --sample N: at most N rows per table (the first\n"
    "  N the server returns, not a random sample; with --mysql too).\n"
    "--mysql: a MySQL or MariaDB database: every base table, every character,\n"
    "  JSON, ENUM/SET, integer and decimal column (as text) and BINARY/BLOB column\n"
    "  (as bytes), streamed row by row in a READ ONLY transaction. Its URL,\n"
    "  mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?socket=PATH] (no DATABASE:\n"
    "  every database but the server's own), comes from --mysql-url-file PATH\n"
    "  (mode 0600), CARDVAULT_SCAN_MYSQL_URL, or --mysql-url URL, which must not\n"
    "  hold a password (the command line is visible to every local user): the\n"
    "  password then comes from MYSQL_PWD.\n"
    "PATH: files and directories (recursive; symbolic links are not followed;\n"
    "  .gz files are decompressed).\n"
    "Finds card numbers (12-19 digits, Luhn-valid, with a known issuer prefix and\n"
    "  that brand's length; --any-luhn drops the issuer check) written plain or with\n"
    "  spaces, dashes or dots, in JSON (escapes too), URL-encoded, base64-encoded\n"
    "  and in UTF-16; and security codes: 3-4 digit values in a column, CSV column\n"
    "  or dump COPY column named like one (cvc, cvv, cvv2, cid, csc,\n"
    "  security_code, ...), or after such a key (\"cvv\": \"123\", cvc=123).\n"
    "Output: one line per finding (where: table, column and rows by primary key;\n"
    "  file and line; how many; masked samples: BIN and last 4\n"
    "  at most; never a full number or a code), then a summary; --json: the same as\n"
    "  JSON lines.\n"
    "Exit 0 clean, 1 card data found, 2 an error (the scan is incomplete).\n";

struct tally {
    uint64_t values, hits, pans, cvcs;
    char samples[SAMPLES][CV_PAN_SCAN_SAMPLE_LEN];
    const char *encodings[SAMPLES];
    size_t nsamples;
    char locs[LOCATIONS][LOC_LEN];
    size_t nlocs;
    char cvc_locs[LOCATIONS][LOC_LEN];
    size_t ncvc_locs;
    uint64_t cvc_values; /* 3-4 digit values in a column named like a security code */
};

struct scan {
    struct cv_cli *cli;
    bool json;
    unsigned text_mode, bytes_mode;
    struct cv_pan_scan *text, *bytes; /* reused for every value */
    struct tally *cur;                /* where the hit callback counts */
    char loc[LOC_LEN];                /* the location of the value being fed */
    struct tally file;                /* the file being scanned */
    uint64_t findings, pans, cvcs, errors;
    uint64_t tables, rows, files, bytes_read;
};

/* ------------------------------------------------------------- tallies */

static void add_loc(char locs[LOCATIONS][LOC_LEN], size_t *n, const char *loc)
{
    if (loc == NULL || *n >= LOCATIONS)
        return;
    if (*n > 0 && strcmp(locs[*n - 1], loc) == 0)
        return;
    snprintf(locs[(*n)++], LOC_LEN, "%s", loc);
}

static void on_hit(void *ctx, const struct cv_pan_hit *hit)
{
    struct scan *sc = ctx;
    struct tally *t = sc->cur;
    t->hits++;
    if (hit->kind == CV_PAN_HIT_CVC) {
        t->cvcs++;
        add_loc(t->cvc_locs, &t->ncvc_locs, sc->loc);
        return;
    }
    t->pans++;
    add_loc(t->locs, &t->nlocs, sc->loc);
    for (size_t i = 0; i < t->nsamples; i++)
        if (strcmp(t->samples[i], hit->masked) == 0)
            return;
    if (t->nsamples < SAMPLES) {
        memcpy(t->samples[t->nsamples], hit->masked, CV_PAN_SCAN_SAMPLE_LEN);
        t->encodings[t->nsamples++] = hit->encoding;
    }
}

static void print_locs(struct json_t *out, const char *key, const struct tally *t, bool codes)
{
    size_t n = codes ? t->ncvc_locs : t->nlocs;
    struct json_t *arr = cv_cli_json_array();
    for (size_t i = 0; i < n; i++)
        if (cv_cli_json_append_str(arr, codes ? t->cvc_locs[i] : t->locs[i]) != CV_OK)
            cv_cli_json_set(out, key, NULL);
    cv_cli_json_set(out, key, arr);
}

static void human_locs(const char *label, const struct tally *t, bool codes, uint64_t count)
{
    size_t n = codes ? t->ncvc_locs : t->nlocs;
    if (n == 0)
        return;
    printf("  %s", label);
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i > 0 ? "; " : " ", codes ? t->cvc_locs[i] : t->locs[i]);
    if (count > n)
        printf("; ...");
    printf("\n");
}

/* Prints what one column or file held, if anything; counts the finding. */
static void report(struct scan *sc, const char *source, const char *where, const char *column,
                   const struct tally *t)
{
    uint64_t cvcs = t->cvcs + t->cvc_values;
    if (t->pans == 0 && cvcs == 0)
        return;
    sc->findings++;
    sc->pans += t->pans;
    sc->cvcs += cvcs;
    if (sc->json) {
        struct json_t *out = cv_cli_json_object();
        cv_cli_json_set_bool(out, "finding", true);
        cv_cli_json_set_str(out, "source", source);
        cv_cli_json_set_str(out, strcmp(source, "file") == 0 ? "path" : "table", where);
        if (column != NULL)
            cv_cli_json_set_str(out, "column", column);
        cv_cli_json_set_int(out, "card_numbers", (long long)t->pans);
        cv_cli_json_set_int(out, "security_codes", (long long)cvcs);
        cv_cli_json_set_int(out, "security_code_column_values", (long long)t->cvc_values);
        struct json_t *samples = cv_cli_json_array(), *enc = cv_cli_json_array();
        for (size_t i = 0; i < t->nsamples; i++)
            if (cv_cli_json_append_str(samples, t->samples[i]) != CV_OK ||
                cv_cli_json_append_str(enc, t->encodings[i]) != CV_OK)
                cv_cli_json_set(out, "samples", NULL);
        cv_cli_json_set(out, "samples", samples);
        cv_cli_json_set(out, "encodings", enc);
        print_locs(out, "locations", t, false);
        print_locs(out, "security_code_locations", t, true);
        if (cv_cli_print_json(out) != CV_OK)
            sc->errors++;
        return;
    }
    printf("FOUND %s %s%s%s:", source, where, column != NULL ? " column " : "",
           column != NULL ? column : "");
    if (t->pans > 0) {
        printf(" %" PRIu64 " card number%s (", t->pans, t->pans == 1 ? "" : "s");
        for (size_t i = 0; i < t->nsamples; i++)
            printf("%s%s %s", i > 0 ? ", " : "", t->samples[i], t->encodings[i]);
        printf(")");
    }
    if (cvcs > 0)
        printf("%s %" PRIu64 " security code%s", t->pans > 0 ? ";" : "", cvcs,
               cvcs == 1 ? "" : "s");
    printf("\n");
    human_locs("card numbers at", t, false, t->pans);
    human_locs("security codes at", t, true, cvcs);
}

static void error_line(struct scan *sc, const char *what, const char *where, const char *reason)
{
    sc->errors++;
    if (sc->json) {
        struct json_t *out = cv_cli_json_object();
        cv_cli_json_set_bool(out, "finding", false);
        cv_cli_json_set_str(out, "error", what);
        cv_cli_json_set_str(out, "where", where);
        cv_cli_json_set_str(out, "reason", reason);
        if (cv_cli_print_json(out) != CV_OK)
            fputs("cardvault: cannot print an error line\n", stderr);
    } else {
        printf("ERROR %s %s: %s\n", what, where, reason);
    }
}

/* ------------------------------------------------------------ database */

struct table_ctx {
    struct scan *sc;
    const struct cv_audit_column *cols;
    struct tally *t;
    bool *cvc_named;
    const char *alt_prefix; /* before the alternative location: "ctid=" or "" */
};

static void scan_cell(void *vctx, size_t col, const unsigned char *bytes, size_t len,
                      const char *row_key, const char *ctid)
{
    struct table_ctx *tc = vctx;
    struct scan *sc = tc->sc;
    char *loc = sc->loc;
    /* A key that itself holds card data is not printed: the row's ctid (or
     * position) is. */
    struct cv_pan_scan_summary ks;
    memset(&ks, 0, sizeof(ks));
    if (row_key != NULL)
        cv_pan_scan_value(row_key, strlen(row_key), CV_PAN_SCAN_TEXT, &ks);
    snprintf(loc, LOC_LEN, "%s", ks.matches > 0 || row_key == NULL ? "" : row_key);
    if ((ks.matches > 0 || strlen(row_key != NULL ? row_key : "") >= LOC_LEN) && ctid != NULL)
        snprintf(loc, LOC_LEN, "%s%s", tc->alt_prefix, ctid);
    struct tally *t = &tc->t[col];
    t->values++;
    sc->cur = t;
    struct cv_pan_scan *s = tc->cols[col].kind == CV_AUDIT_COL_TEXT ? sc->text : sc->bytes;
    cv_pan_scan_feed(s, bytes, len);
    cv_pan_scan_finish(s);
    if (tc->cvc_named[col] && cv_pan_scan_is_cvc_value(bytes, len)) {
        t->cvc_values++;
        add_loc(t->cvc_locs, &t->ncvc_locs, loc);
    }
    cv_wipe(loc, LOC_LEN);
}

/* The connection string from file (owner-only) or the environment variable
 * env_name; NULL with an error line when neither holds one. */
static char *read_url(struct scan *sc, const char *file, const char *env_name, const char *option,
                      const char *what, const char *missing)
{
    char why[512];
    if (file == NULL) {
        /* NOLINTNEXTLINE(concurrency-mt-unsafe): read once, before any thread */
        const char *env = getenv(env_name);
        if (env == NULL || *env == '\0') {
            error_line(sc, "configuration", option, missing);
            return NULL;
        }
        return cv_xstrdup(env);
    }
    struct cv_secbuf *buf = NULL;
    if (cv_secret_file_read(file, what, "one connection string", URL_MAX, &buf, why, sizeof(why)) !=
        CV_OK) {
        error_line(sc, "configuration", file, why);
        return NULL;
    }
    size_t n = buf->len;
    while (n > 0 &&
           (buf->data[n - 1] == '\n' || buf->data[n - 1] == '\r' || buf->data[n - 1] == ' '))
        n--;
    char *s = cv_xmalloc(n + 1);
    memcpy(s, buf->data, n);
    s[n] = '\0';
    cv_secbuf_free(buf);
    return s;
}

/* Reads the rows of one table's scannable columns; the PostgreSQL and the
 * MySQL reader behind one shape. */
typedef cv_status (*rows_fn)(void *src, const struct cv_audit_column *cols, size_t n,
                             const struct cv_audit_scan_opts *opts, struct table_ctx *tc,
                             uint64_t *rows, char *why, size_t why_len);

/* Scans every table of cols (ordered by schema and table) through read_rows
 * and reports each column with findings under source. */
static void scan_tables(struct scan *sc, const char *source, const char *alt_prefix,
                        const struct cv_audit_column *cols, size_t ncols, uint64_t sample,
                        rows_fn read_rows, void *src)
{
    char why[256];
    struct cv_audit_column *batch = cv_xcalloc(ncols + 1, sizeof(*batch));
    struct tally *t = cv_xcalloc(ncols + 1, sizeof(*t));
    bool *named = cv_xcalloc(ncols + 1, sizeof(*named));
    for (size_t i = 0; i < ncols;) {
        size_t j = i, nb = 0;
        while (j < ncols && strcmp(cols[j].schema, cols[i].schema) == 0 &&
               strcmp(cols[j].table, cols[i].table) == 0) {
            if (cols[j].kind != CV_AUDIT_COL_SKIPPED) {
                named[nb] = cv_pan_scan_is_cvc_name(cols[j].column, strlen(cols[j].column));
                batch[nb++] = cols[j];
            }
            j++;
        }
        memset(t, 0, (nb + 1) * sizeof(*t));
        struct table_ctx tc = {sc, batch, t, named, alt_prefix};
        struct cv_audit_scan_opts opts = {FETCH_ROWS, sample, true};
        uint64_t rows = 0;
        size_t qn = strlen(cols[i].schema) + strlen(cols[i].table) + 2;
        char *qual = cv_xmalloc(qn);
        snprintf(qual, qn, "%s.%s", cols[i].schema, cols[i].table);
        sc->tables++;
        why[0] = '\0';
        cv_status st = read_rows(src, batch, nb, &opts, &tc, &rows, why, sizeof(why));
        if (st != CV_OK)
            error_line(sc, "cannot read table", qual, why[0] != '\0' ? why : cv_status_name(st));
        sc->rows += rows;
        for (size_t k = 0; k < nb; k++)
            report(sc, source, qual, batch[k].column, &t[k]);
        free(qual);
        i = j;
    }
    cv_wipe(t, (ncols + 1) * sizeof(*t));
    free(t);
    free(named);
    free(batch);
}

static cv_status pg_rows(void *src, const struct cv_audit_column *cols, size_t n,
                         const struct cv_audit_scan_opts *opts, struct table_ctx *tc,
                         uint64_t *rows, char *why, size_t why_len)
{
    (void)why;
    (void)why_len;
    return cv_store_audit_scan_rows(src, cols, n, opts, scan_cell, tc, rows);
}

static void scan_database(struct scan *sc, uint64_t sample)
{
    char why[256] = "";
    struct cv_store *store = NULL;
    struct cv_audit_column *cols = NULL;
    size_t ncols = 0;
    char *url = read_url(sc, sc->cli->x[S_SOURCE_URL_FILE], "CARDVAULT_SCAN_SOURCE_URL", "--db",
                         "source database URL file",
                         "the database to scan: --source-url-file PATH or "
                         "CARDVAULT_SCAN_SOURCE_URL");
    if (url == NULL)
        return;
    cv_status st = cv_store_open(url, 1, &store, why, sizeof(why));
    cv_wipe(url, strlen(url));
    free(url);
    if (st != CV_OK) {
        error_line(sc, "cannot connect", "database", why);
        return;
    }
    if (cv_store_audit_columns(store, &cols, &ncols) != CV_OK) {
        error_line(sc, "cannot list columns", "database", "catalog query failed");
        cv_store_close(store);
        return;
    }
    scan_tables(sc, "database", "ctid=", cols, ncols, sample, pg_rows, store);
    cv_audit_columns_free(cols, ncols);
    cv_store_close(store);
}

static cv_status mysql_rows(void *src, const struct cv_audit_column *cols, size_t n,
                            const struct cv_audit_scan_opts *opts, struct table_ctx *tc,
                            uint64_t *rows, char *why, size_t why_len)
{
    return cv_scan_mysql_rows(src, cols, n, opts, scan_cell, tc, rows, why, why_len);
}

static void scan_mysql(struct scan *sc, uint64_t sample)
{
    char why[512] = "";
    struct cv_scan_mysql_url url;
    struct cv_scan_mysql *db = NULL;
    struct cv_audit_column *cols = NULL;
    size_t ncols = 0;
    const char *argv_url = sc->cli->x[S_MYSQL_URL];
    char *text = argv_url != NULL
                     ? cv_xstrdup(argv_url)
                     : read_url(sc, sc->cli->x[S_MYSQL_URL_FILE], "CARDVAULT_SCAN_MYSQL_URL",
                                "--mysql", "MySQL URL file",
                                "the MySQL database to scan: --mysql-url-file PATH, "
                                "CARDVAULT_SCAN_MYSQL_URL or --mysql-url URL");
    if (text == NULL)
        return;
    cv_status st = cv_scan_mysql_parse_url(text, strlen(text), &url, why, sizeof(why));
    cv_wipe(text, strlen(text));
    free(text);
    if (st != CV_OK) {
        error_line(sc, "configuration", "mysql", why);
        return;
    }
    st = cv_scan_mysql_open(&url, &db, why, sizeof(why));
    cv_wipe(&url, sizeof(url));
    if (st != CV_OK) {
        error_line(sc, "cannot connect", "mysql", why);
        return;
    }
    if (cv_scan_mysql_columns(db, &cols, &ncols, why, sizeof(why)) != CV_OK) {
        error_line(sc, "cannot list columns", "mysql", why);
        cv_scan_mysql_close(db);
        return;
    }
    scan_tables(sc, "mysql", "", cols, ncols, sample, mysql_rows, db);
    cv_audit_columns_free(cols, ncols);
    cv_scan_mysql_close(db);
}

/* --------------------------------------------------------------- files */

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A file's bytes, plain or gzip-decompressed. */
struct reader {
    int fd;
    gzFile gz;
};

static bool reader_open(struct reader *r, const char *path)
{
    r->gz = NULL;
    r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (r->fd < 0)
        return false;
    if (ends_with(path, ".gz")) {
        r->gz = gzdopen(r->fd, "rb");
        if (r->gz == NULL) {
            close(r->fd);
            return false;
        }
        r->fd = -1; /* gzclose closes it */
    }
    return true;
}

static long reader_read(void *ctx, void *buf, size_t cap)
{
    struct reader *r = ctx;
    if (r->gz != NULL) {
        int n = gzread(r->gz, buf, (unsigned)(cap > INT32_MAX ? INT32_MAX : cap));
        return n < 0 ? -1 : n;
    }
    for (;;) {
        ssize_t n = read(r->fd, buf, cap);
        if (n >= 0 || errno != EINTR)
            return (long)n;
    }
}

static void reader_close(struct reader *r)
{
    if (r->gz != NULL)
        gzclose(r->gz);
    else if (r->fd >= 0)
        close(r->fd);
}

/* A COPY block of a pg_dump: "COPY t (a, b, cvv) FROM stdin;", then rows of
 * tab-separated values up to "\.". */
struct copy_state {
    bool in_copy;
    long cvc_cols[16];
    size_t ncvc;
};

static void copy_header(struct copy_state *cs, const char *line, size_t len)
{
    cs->ncvc = 0;
    const char *open_p = memchr(line, '(', len);
    const char *close_p =
        open_p != NULL ? memchr(open_p, ')', len - (size_t)(open_p - line)) : NULL;
    cs->in_copy = true;
    if (open_p == NULL || close_p == NULL)
        return;
    long idx = 0;
    const char *p = open_p + 1;
    while (p < close_p) {
        while (p < close_p && (*p == ' ' || *p == ','))
            p++;
        const char *start = p;
        while (p < close_p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && end[-1] == ' ')
            end--;
        if (end > start && (*start == '"'))
            start++, end--;
        if (end > start && cv_pan_scan_is_cvc_name(start, (size_t)(end - start)) && cs->ncvc < 16)
            cs->cvc_cols[cs->ncvc++] = idx;
        idx++;
    }
}

static void copy_row(struct copy_state *cs, const char *line, size_t len, struct tally *t,
                     const char *loc)
{
    long idx = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && line[i] != '\t')
            continue;
        for (size_t k = 0; k < cs->ncvc; k++)
            if (cs->cvc_cols[k] == idx && cv_pan_scan_is_cvc_value(line + start, i - start)) {
                t->cvc_values++;
                add_loc(t->cvc_locs, &t->ncvc_locs, loc);
            }
        idx++;
        start = i + 1;
    }
}

static void line_done(struct copy_state *cs, char *line, size_t len, bool whole, struct tally *t,
                      const char *loc)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (!whole)
        return;
    if (cs->in_copy) {
        if (len == 2 && line[0] == '\\' && line[1] == '.')
            cs->in_copy = false;
        else if (cs->ncvc > 0)
            copy_row(cs, line, len, t, loc);
    } else if (len > 5 && memcmp(line, "COPY ", 5) == 0 && len >= 11 &&
               memcmp(line + len - 11, "FROM stdin;", 11) == 0) {
        copy_header(cs, line, len);
    }
}

/* Security-code columns of a CSV file, by its header, through the RFC 4180
 * reader (a second pass, only when the header names one). */
static void csv_codes(struct scan *sc, const char *path, struct tally *t)
{
    struct reader r;
    if (!reader_open(&r, path))
        return;
    struct cv_csv *csv = cv_csv_new(reader_read, &r, 1024 * 1024);
    struct cv_csv_record rec;
    char why[200];
    long cols[16];
    size_t ncols = 0;
    if (cv_csv_next(csv, &rec, why, sizeof(why)) == CV_OK)
        for (size_t i = 0; i < rec.nfields && ncols < 16; i++)
            if (cv_pan_scan_is_cvc_name(rec.fields[i], rec.len[i]))
                cols[ncols++] = (long)i;
    while (ncols > 0 && cv_csv_next(csv, &rec, why, sizeof(why)) == CV_OK) {
        for (size_t k = 0; k < ncols; k++) {
            size_t c = (size_t)cols[k];
            if (c < rec.nfields && cv_pan_scan_is_cvc_value(rec.fields[c], rec.len[c])) {
                char loc[LOC_LEN];
                snprintf(loc, sizeof(loc), "line %" PRIu64, rec.line);
                t->cvc_values++;
                add_loc(t->cvc_locs, &t->ncvc_locs, loc);
            }
        }
    }
    (void)sc;
    cv_csv_free(csv);
    reader_close(&r);
}

static void scan_file(struct scan *sc, const char *path)
{
    char err[128];
    struct reader r;
    struct tally *t = &sc->file; /* where on_hit counts this file */
    memset(t, 0, sizeof(*t));
    if (!reader_open(&r, path)) {
        error_line(sc, "cannot open", path, cv_cli_errno_text(errno, err, sizeof(err)));
        return;
    }
    sc->files++;
    unsigned char *buf = cv_xmalloc(CHUNK);
    char *line = cv_xmalloc(LINE_MAX_KEEP);
    size_t line_len = 0;
    bool line_whole = true;
    uint64_t lineno = 1;
    char *loc = sc->loc;
    struct copy_state cs;
    memset(&cs, 0, sizeof(cs));
    snprintf(loc, LOC_LEN, "line 1");
    sc->cur = t;
    /* Bytes mode: a file may be UTF-16 (a Windows export); UTF-16 hits are
     * reported when the file ends, at the last line. */
    struct cv_pan_scan *s = sc->bytes;
    long n;
    bool failed = false;
    while ((n = reader_read(&r, buf, CHUNK)) > 0) {
        sc->bytes_read += (uint64_t)n;
        size_t from = 0;
        for (size_t i = 0; i < (size_t)n; i++) {
            if (buf[i] != '\n')
                continue;
            /* Feed through the newline: every hit of this line is reported
             * by then (a newline ends every run the scanner follows). */
            cv_pan_scan_feed(s, buf + from, i + 1 - from);
            if (line_len + (i - from) <= LINE_MAX_KEEP) {
                memcpy(line + line_len, buf + from, i - from);
                line_len += i - from;
            } else {
                line_whole = false;
            }
            line_done(&cs, line, line_len, line_whole, t, loc);
            cv_wipe(line, line_len);
            line_len = 0;
            line_whole = true;
            from = i + 1;
            snprintf(loc, LOC_LEN, "line %" PRIu64, ++lineno);
        }
        cv_pan_scan_feed(s, buf + from, (size_t)n - from);
        if (line_len + ((size_t)n - from) <= LINE_MAX_KEEP) {
            memcpy(line + line_len, buf + from, (size_t)n - from);
            line_len += (size_t)n - from;
        } else {
            line_whole = false;
        }
        cv_wipe(buf, (size_t)n);
    }
    if (n < 0)
        failed = true;
    cv_pan_scan_finish(s);
    line_done(&cs, line, line_len, line_whole, t, loc);
    cv_wipe(line, LINE_MAX_KEEP);
    free(line);
    free(buf);
    reader_close(&r);
    if (ends_with(path, ".csv") || ends_with(path, ".csv.gz"))
        csv_codes(sc, path, t);
    if (failed)
        error_line(sc, "cannot read", path,
                   ends_with(path, ".gz") ? "read or gzip error" : "read error");
    report(sc, "file", path, NULL, t);
    cv_wipe(t, sizeof(*t));
}

/* Recursion is bounded: at most 64 directory levels. */
/* NOLINTNEXTLINE(misc-no-recursion) */
static void scan_path(struct scan *sc, const char *path, int depth)
{
    char err[128];
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        error_line(sc, "cannot stat", path, cv_cli_errno_text(errno, err, sizeof(err)));
        return;
    }
    if (S_ISREG(sb.st_mode)) {
        scan_file(sc, path);
        return;
    }
    if (!S_ISDIR(sb.st_mode))
        return; /* symbolic links, devices, sockets: not followed */
    if (depth > 64) {
        error_line(sc, "too deep", path, "more than 64 directory levels");
        return;
    }
    DIR *d = opendir(path);
    if (d == NULL) {
        error_line(sc, "cannot open directory", path, cv_cli_errno_text(errno, err, sizeof(err)));
        return;
    }
    /* Sorted, so two scans of the same tree print in the same order. */
    struct dirent **names = NULL;
    int count = scandir(path, &names, NULL, alphasort);
    closedir(d);
    if (count < 0) {
        error_line(sc, "cannot list directory", path, cv_cli_errno_text(errno, err, sizeof(err)));
        return;
    }
    for (int i = 0; i < count; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") != 0 && strcmp(nm, "..") != 0) {
            size_t len = strlen(path) + strlen(nm) + 2;
            char *child = cv_xmalloc(len);
            snprintf(child, len, "%s/%s", path, nm);
            scan_path(sc, child, depth + 1);
            free(child);
        }
        free(names[i]);
    }
    free(names);
}

/* ---------------------------------------------------------------- main */

/* Whether a --mysql-url argument carries a password (user:password@). A URL
 * that does not parse is refused later, when the scan starts. */
static bool mysql_url_has_password(const char *text)
{
    char why[160];
    struct cv_scan_mysql_url url;
    bool has = cv_scan_mysql_parse_url(text, strlen(text), &url, why, sizeof(why)) == CV_OK &&
               url.has_password;
    cv_wipe(&url, sizeof(url));
    return has;
}

int cv_cli_scan(struct cv_cli *cli)
{
    struct scan sc;
    memset(&sc, 0, sizeof(sc));
    sc.cli = cli;
    sc.json = cli->x[S_JSON] != NULL;
    uint64_t sample = 0;
    if (cli->x[S_SAMPLE] != NULL) {
        char *end = NULL;
        unsigned long long v = strtoull(cli->x[S_SAMPLE], &end, 10);
        if (end == cli->x[S_SAMPLE] || *end != '\0' || v == 0 || cli->x[S_SAMPLE][0] == '-')
            return cv_cli_usage_error("--sample takes a positive number of rows");
        sample = v;
    }
    bool db = cli->x[S_DB] != NULL;
    bool mysql =
        cli->x[S_MYSQL] != NULL || cli->x[S_MYSQL_URL] != NULL || cli->x[S_MYSQL_URL_FILE] != NULL;
    if (!db && cli->x[S_SOURCE_URL_FILE] != NULL)
        return cv_cli_usage_error("--source-url-file goes with --db");
    if (!db && !mysql && sample > 0)
        return cv_cli_usage_error("--sample goes with --db or --mysql");
    if (cli->x[S_MYSQL_URL] != NULL && cli->x[S_MYSQL_URL_FILE] != NULL)
        return cv_cli_usage_error("give --mysql-url or --mysql-url-file, not both");
    if (cli->x[S_MYSQL_URL] != NULL && mysql_url_has_password(cli->x[S_MYSQL_URL]))
        return cv_cli_usage_error("--mysql-url must not hold a password (every local user can "
                                  "read a command line): put the URL in --mysql-url-file PATH "
                                  "or CARDVAULT_SCAN_MYSQL_URL, or the password in MYSQL_PWD");
    if (!db && !mysql && cli->argc == 0)
        return cv_cli_usage_error(
            "nothing to scan: give --db, --mysql and/or files or directories");
    unsigned opts = CV_PAN_SCAN_BASE64 | CV_PAN_SCAN_CVC_KEYS |
                    (cli->x[S_ANY_LUHN] != NULL ? 0u : CV_PAN_SCAN_ISSUER);
    /* What is scanned may be card data: no core file, secure heap. */
    if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK)
        return EXIT_ERROR;
    sc.text = cv_pan_scan_new(CV_PAN_SCAN_TEXT | opts, on_hit, &sc);
    sc.bytes = cv_pan_scan_new(CV_PAN_SCAN_BYTES | opts, on_hit, &sc);
    if (db)
        scan_database(&sc, sample);
    if (mysql)
        scan_mysql(&sc, sample);
    for (int i = 0; i < cli->argc; i++)
        scan_path(&sc, cli->argv[i], 0);
    if (sc.json) {
        struct json_t *sum = cv_cli_json_object();
        cv_cli_json_set_bool(sum, "ok", sc.findings == 0 && sc.errors == 0);
        cv_cli_json_set_int(sum, "findings", (long long)sc.findings);
        cv_cli_json_set_int(sum, "card_numbers", (long long)sc.pans);
        cv_cli_json_set_int(sum, "security_codes", (long long)sc.cvcs);
        cv_cli_json_set_int(sum, "tables", (long long)sc.tables);
        cv_cli_json_set_int(sum, "rows", (long long)sc.rows);
        cv_cli_json_set_int(sum, "files", (long long)sc.files);
        cv_cli_json_set_int(sum, "bytes", (long long)sc.bytes_read);
        cv_cli_json_set_int(sum, "errors", (long long)sc.errors);
        cv_cli_json_set_int(sum, "sample_rows", (long long)sample);
        if (cv_cli_print_json(sum) != CV_OK)
            sc.errors++;
    } else {
        printf("%s: %" PRIu64 " finding%s (%" PRIu64 " card numbers, %" PRIu64
               " security codes) in %" PRIu64 " tables (%" PRIu64 " rows%s) and %" PRIu64
               " files (%" PRIu64 " bytes); %" PRIu64 " error%s\n",
               sc.errors > 0     ? "INCOMPLETE"
               : sc.findings > 0 ? "FOUND"
                                 : "CLEAN",
               sc.findings, sc.findings == 1 ? "" : "s", sc.pans, sc.cvcs, sc.tables, sc.rows,
               sample > 0 ? ", sampled" : "", sc.files, sc.bytes_read, sc.errors,
               sc.errors == 1 ? "" : "s");
        fflush(stdout);
    }
    cv_pan_scan_free(sc.text);
    cv_pan_scan_free(sc.bytes);
    return sc.errors > 0 ? EXIT_ERROR : sc.findings > 0 ? EXIT_FOUND : 0;
}
