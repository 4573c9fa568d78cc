/* cli_import.c: `cardvault import`, which moves the cards a shop already
 * stores into the vault. It reads a CSV file (RFC 4180, columns by header
 * name) or a read-only query on the shop's own PostgreSQL database, checks
 * each card as tokenize does (card.c: digits, length, Luhn, expiry, name),
 * fingerprints and seals it through the keyring and writes it with the
 * store's own token insert, in batches. Each batch's tokens and its mapping
 * rows (import_rows: source row id -> token) commit in one transaction, so a
 * run killed at any point and started again with the same --job skips
 * exactly the rows already committed. Cards whose number the merchant's
 * vault already holds (same keyed fingerprint) are merged: the row maps to
 * the existing token.
 *
 * It must never print, log or write a card number or a security code: the
 * mapping file and the report carry row ids, tokens, brand, last 4 and
 * expiry only; errors name a line or row number and a reason. A column named
 * like a security code is never copied out of the reader's buffer: it is
 * counted and reported as data to purge (PCI DSS 3.3.1.2). Every buffer that
 * held a card is wiped (cv_wipe: OPENSSL_cleanse). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cardvault/card.h"
#include "cardvault/cli.h"
#include "cardvault/csv.h"
#include "cardvault/keyprovider.h"
#include "cardvault/keyring.h"
#include "cardvault/pan_scan.h"
#include "cardvault/secbuf.h"
#include "cardvault/secret_file.h"
#include "cardvault/store.h"
#include "cardvault/token.h"

#define CSV_RECORD_MAX  (1024 * 1024) /* a longer line is malformed input */
#define ROW_ID_MAX      200
#define REFUSALS_LISTED 1000 /* the report lists this many refusals one by one */
#define SOURCE_URL_MAX  4096

enum opt {
    O_JOB,
    O_CSV,
    O_SOURCE_URL_FILE,
    O_QUERY,
    O_ID_COL,
    O_PAN_COL,
    O_EXP_COL,
    O_EXP_MONTH_COL,
    O_EXP_YEAR_COL,
    O_NAME_COL,
    O_MAPPING,
    O_RESUME,
};

const struct cv_cli_optdef cv_cli_import_opts[] = {
    {"job", 1, O_JOB},
    {"csv", 1, O_CSV},
    {"source-url-file", 1, O_SOURCE_URL_FILE},
    {"query", 1, O_QUERY},
    {"id-col", 1, O_ID_COL},
    {"pan-col", 1, O_PAN_COL},
    {"exp-col", 1, O_EXP_COL},
    {"exp-month-col", 1, O_EXP_MONTH_COL},
    {"exp-year-col", 1, O_EXP_YEAR_COL},
    {"name-col", 1, O_NAME_COL},
    {"mapping", 1, O_MAPPING},
    {"resume", 0, O_RESUME},
    {NULL, 0, 0},
};

const char cv_cli_import_usage[] =
    "usage: cardvault import --merchant ID --job JOB --mapping FILE [--resume] [--batch N]\n"
    "         (--csv FILE | --query SQL [--source-url-file PATH])\n"
    "         --pan-col NAME (--exp-col NAME | --exp-month-col NAME --exp-year-col NAME)\n"
    "         [--id-col NAME] [--name-col NAME]\n"
    "\n"
    "Moves a shop's stored cards into the vault for merchant ID, through the same\n"
    "checks, keys and token table as POST /v1/tokens, N rows per transaction\n"
    "(default and most 128).\n"
    "Source: a CSV file (RFC 4180, a header row, columns by name), or a query on\n"
    "the shop's own PostgreSQL database, run READ ONLY through a cursor; its\n"
    "connection string comes from --source-url-file PATH (mode 0600) or\n"
    "CARDVAULT_IMPORT_SOURCE_URL.\n"
    "Columns: --id-col (the shop's row id; default: the CSV line or query row\n"
    "number), --pan-col, --exp-col (MM/YY, MM/YYYY or YYYY-MM) or --exp-month-col\n"
    "and --exp-year-col, --name-col (cardholder name, optional).\n"
    "A column named like a security code (cvc, cvv, cid, csc, ...) is never read as\n"
    "card data: the report lists it as data to purge.\n"
    "--mapping FILE: written at the end (mode 0600), one line per imported row:\n"
    "row_id,token,brand,last4,exp_month,exp_year,merged. Never a card number.\n"
    "An existing FILE is refused unless --resume.\n"
    "--job JOB (letters, digits, . _ -): resumable. Rows are recorded with their\n"
    "tokens in the same transaction; after an interruption, run the same command\n"
    "with --resume: rows already imported are skipped, none is imported twice,\n"
    "and the mapping covers the whole job.\n"
    "Cards already in the vault for this merchant (same fingerprint) are merged:\n"
    "the row maps to the existing token (merged=1).\n"
    "Output: progress on stderr (a line on a terminal, JSON lines otherwise), then\n"
    "a JSON report on stdout: rows read, imported, merged, skipped (already\n"
    "imported), refused by reason with line or row numbers, security-code columns.\n"
    "Exit 0 when the whole source was read, 1 on an error (rows committed before it\n"
    "stay imported: fix the input and rerun with --resume), 2 on usage errors.\n";

/* ------------------------------------------------------------ id set */

/* The row ids of this job: those committed before (resume) and those seen
 * in this run. Open addressing, grown at half full. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

struct idset {
    char **v;
    size_t cap, n;
};

/* Places id (taken over) in a set with room for it. */
static void idset_place(struct idset *set, char *id)
{
    size_t i = hash_str(id) & (set->cap - 1);
    while (set->v[i] != NULL)
        i = (i + 1) & (set->cap - 1);
    set->v[i] = id;
    set->n++;
}

static bool idset_has(const struct idset *set, const char *id)
{
    if (set->cap == 0)
        return false;
    for (size_t i = hash_str(id) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (set->v[i] == NULL)
            return false;
        if (strcmp(set->v[i], id) == 0)
            return true;
    }
}

static void idset_grow(struct idset *set)
{
    struct idset bigger = {cv_xcalloc(set->cap ? 2 * set->cap : 1024, sizeof(char *)),
                           set->cap ? 2 * set->cap : 1024, 0};
    for (size_t i = 0; i < set->cap; i++)
        if (set->v[i] != NULL)
            idset_place(&bigger, set->v[i]);
    free(set->v);
    *set = bigger;
}

static void idset_put(struct idset *set, const char *id)
{
    if (2 * (set->n + 1) > set->cap)
        idset_grow(set);
    size_t i = hash_str(id) & (set->cap - 1);
    while (set->v[i] != NULL) {
        if (strcmp(set->v[i], id) == 0)
            return;
        i = (i + 1) & (set->cap - 1);
    }
    set->v[i] = cv_xstrdup(id);
    set->n++;
}

static void idset_free(struct idset *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->v[i]);
    free(set->v);
}

static void put_done(void *ctx, const char *row_id)
{
    idset_put(ctx, row_id);
}

/* ---------------------------------------------------------- the import */

struct pending {
    char row_id[ROW_ID_MAX + 1];
    struct cv_card_plain card; /* wiped after the batch */
    char fingerprint[CV_FINGERPRINT_LEN + 1];
    char brand[16];
    char last4[5];
    char token[CV_TOKEN_LEN + 1];
    bool merged;
};

/* Resolved column positions in the source (-1: not there). */
struct columns {
    long id, pan, exp, exp_month, exp_year, name;
    size_t ncols;
    bool resolved;
    long cvc[16];
    char *cvc_name[16];
    uint64_t cvc_values[16];
    size_t ncvc;
};

struct import {
    struct cv_cli *cli;
    struct cv_store *store;
    struct cv_keyring *kr;
    const char *merchant;
    const char *job;
    struct columns col;
    struct idset done; /* committed by earlier runs of the job */
    struct idset seen; /* taken in this run */
    struct pending *batch;
    size_t nbatch, batch_max;
    int now_month, now_year;
    /* counts */
    uint64_t read, imported, merged, skipped, refused;
    uint64_t by_reason[16];
    struct json_t *refusals;
    uint64_t listed;
    /* progress */
    bool tty;
    struct timespec t0, last;
    cv_status fatal; /* a store or key failure: stop */
    char error[640]; /* the reason the run stopped, for the report */
};

static const char *const reasons[] = {"wrong_column_count",
                                      "invalid_utf8",
                                      "missing_row_id",
                                      "row_id_too_long",
                                      "row_id_is_card_number",
                                      "duplicate_row_id",
                                      "invalid_pan",
                                      "too_short",
                                      "too_long",
                                      "luhn",
                                      "invalid_expiry",
                                      "expired",
                                      "invalid_name",
                                      NULL};

static double secs_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void progress(struct import *im, bool final)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!final && secs_between(&im->last, &now) < 1.0)
        return;
    im->last = now;
    double el = secs_between(&im->t0, &now);
    double rate = el > 0 ? (double)(im->imported + im->merged) / el : 0;
    if (im->tty) {
        fprintf(stderr,
                "\rimport: %" PRIu64 " rows read, %" PRIu64 " imported, %" PRIu64
                " merged, %" PRIu64 " skipped, %" PRIu64 " refused, %.0f rows/s%s",
                im->read, im->imported, im->merged, im->skipped, im->refused, rate,
                final ? "\n" : "");
    } else {
        fprintf(stderr,
                "{\"event\":\"import_progress\",\"rows_read\":%" PRIu64 ",\"imported\":%" PRIu64
                ",\"merged\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"refused\":%" PRIu64
                ",\"rows_per_s\":%.0f}\n",
                im->read, im->imported, im->merged, im->skipped, im->refused, rate);
    }
    fflush(stderr);
}

/* Counts a refusal; lists it (line or row number, reason, and the row id
 * when it is one) in the report's first REFUSALS_LISTED. */
static void refuse(struct import *im, uint64_t where, const char *row_id, const char *reason)
{
    im->refused++;
    for (size_t i = 0; reasons[i] != NULL; i++)
        if (strcmp(reasons[i], reason) == 0)
            im->by_reason[i]++;
    if (im->listed++ >= REFUSALS_LISTED)
        return;
    struct json_t *one = cv_cli_json_object();
    cv_cli_json_set_int(one, im->cli->x[O_CSV] != NULL ? "line" : "row", (long long)where);
    cv_cli_json_set_str(one, "row_id", row_id);
    cv_cli_json_set_str(one, "reason", reason);
    if (cv_cli_json_append(im->refusals, one) != CV_OK)
        im->listed = REFUSALS_LISTED + 1; /* reported as truncated */
}

/* Why a PAN field is refused, or NULL when it normalizes; out gets the
 * digits (wiped by the caller). */
static const char *check_pan(const char *s, size_t len, char out[CV_PAN_MAX_DIGITS + 1])
{
    size_t digits = 0;
    bool shape_ok = len > 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] != ' ' && s[i] != '-')
            shape_ok = false;
    }
    if (!shape_ok || digits == 0)
        return "invalid_pan";
    if (digits > CV_PAN_MAX_DIGITS)
        return "too_long";
    if (digits < CV_PAN_MIN_DIGITS)
        return "too_short";
    size_t n = 0;
    if (cv_card_normalize_pan(s, len, out, &n) == CV_OK)
        return NULL;
    /* The digits fit: either the check digit or the separators are wrong. */
    char d[CV_PAN_MAX_DIGITS];
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] >= '0' && s[i] <= '9')
            d[k++] = s[i];
    bool luhn = cv_card_luhn_ok(d, k);
    cv_wipe(d, sizeof(d));
    return luhn ? "invalid_pan" : "luhn";
}

/* A row id the mapping may carry: 1-200 bytes, no control bytes, and no
 * run of digits a scanner would take for a card number. */
static const char *check_row_id(const char *s, size_t len)
{
    if (len == 0)
        return "missing_row_id";
    if (len > ROW_ID_MAX)
        return "row_id_too_long";
    struct cv_pan_scan_summary sum;
    memset(&sum, 0, sizeof(sum));
    cv_pan_scan_value(s, len, CV_PAN_SCAN_TEXT, &sum);
    if (sum.matches > 0)
        return "row_id_is_card_number";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return "missing_row_id";
    return NULL;
}

/* Seals, merges and commits the pending rows, then wipes them. */
static cv_status flush_batch(struct import *im)
{
    size_t n = im->nbatch;
    struct cv_token_row *rows = NULL;
    const struct cv_token_row *newp[CV_IMPORT_BATCH_MAX];
    struct cv_import_row *map = NULL;
    const char **fps = NULL;
    char(*existing)[CV_TOKEN_LEN + 1] = NULL;
    cv_status st = CV_OK;
    if (n == 0)
        return CV_OK;
    rows = cv_xcalloc(n, sizeof(*rows));
    map = cv_xcalloc(n, sizeof(*map));
    fps = cv_xcalloc(n, sizeof(*fps));
    existing = cv_xcalloc(n, CV_TOKEN_LEN + 1);
    for (size_t i = 0; i < n; i++)
        fps[i] = im->batch[i].fingerprint;
    if ((st = cv_store_import_existing(im->store, im->merchant, fps, n, existing)) != CV_OK)
        goto out;
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    size_t nnew = 0;
    for (size_t i = 0; i < n; i++) {
        struct pending *p = &im->batch[i];
        p->merged = false;
        if (existing[i][0] != '\0') {
            memcpy(p->token, existing[i], sizeof(p->token));
            p->merged = true;
        } else {
            for (size_t j = 0; j < i; j++)
                if (strcmp(im->batch[j].fingerprint, p->fingerprint) == 0) {
                    memcpy(p->token, im->batch[j].token, sizeof(p->token));
                    p->merged = true;
                    break;
                }
        }
        if (!p->merged) {
            struct cv_token_row *r = &rows[nnew];
            snprintf(r->merchant_id, sizeof(r->merchant_id), "%s", im->merchant);
            snprintf(r->brand, sizeof(r->brand), "%s", p->brand);
            memcpy(r->bin, p->card.pan, 6);
            memcpy(r->last4, p->last4, 5);
            memcpy(r->fingerprint, p->fingerprint, sizeof(r->fingerprint));
            memcpy(r->created_at, created, sizeof(created));
            if ((st = cv_token_generate(r->token)) != CV_OK)
                goto out;
            if ((st = cv_keyring_seal(im->kr, &p->card, r)) != CV_OK)
                goto out;
            memcpy(p->token, r->token, sizeof(p->token));
            newp[nnew++] = r;
        }
        map[i] = (struct cv_import_row){p->row_id,         p->token,         p->brand, p->last4,
                                        p->card.exp_month, p->card.exp_year, p->merged};
    }
    st = cv_store_import_commit(im->store, im->merchant, im->job, newp, nnew, map, n);
    if (st == CV_OK) {
        im->imported += nnew;
        im->merged += n - nnew;
    }
out:
    for (size_t i = 0; i < n; i++) {
        cv_token_row_cleanup(&rows[i]);
        cv_wipe(&im->batch[i], sizeof(im->batch[i]));
    }
    im->nbatch = 0;
    free(rows);
    free(map);
    free(fps);
    free(existing);
    if (st != CV_OK) {
        im->fatal = st;
        snprintf(im->error, sizeof(im->error),
                 st == CV_ERR_DUPLICATE
                     ? "a batch collided with rows another run of this job committed meanwhile; "
                       "nothing of it was written: run again with --resume"
                     : "cannot seal or commit a batch (%s); nothing of it was written: run again "
                       "with --resume",
                 cv_status_name(st));
    }
    progress(im, false);
    return st;
}

static long find_col(const char *const *names, const size_t *lens, size_t n, const char *want)
{
    if (want == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (strlen(want) == lens[i] && strncasecmp(names[i], want, lens[i]) == 0)
            return (long)i;
    return -2; /* asked for and missing */
}

/* Maps the option names to positions in the header (CSV) or the query's
 * columns; notes columns named like security codes. */
static cv_status resolve_columns(struct import *im, const char *const *names, const size_t *lens,
                                 size_t n)
{
    struct cv_cli *cli = im->cli;
    struct columns *c = &im->col;
    const char *want[] = {cli->x[O_ID_COL],        cli->x[O_PAN_COL],      cli->x[O_EXP_COL],
                          cli->x[O_EXP_MONTH_COL], cli->x[O_EXP_YEAR_COL], cli->x[O_NAME_COL]};
    long *slot[] = {&c->id, &c->pan, &c->exp, &c->exp_month, &c->exp_year, &c->name};
    for (size_t k = 0; k < 6; k++) {
        *slot[k] = find_col(names, lens, n, want[k]);
        if (*slot[k] == -2) {
            snprintf(im->error, sizeof(im->error), "column \"%.64s\" is not in the %s", want[k],
                     cli->x[O_CSV] != NULL ? "CSV header" : "query's result");
            return CV_ERR_BAD_REQUEST;
        }
    }
    c->ncols = n;
    for (size_t i = 0; i < n && c->ncvc < 16; i++) {
        if (!cv_pan_scan_is_cvc_name(names[i], lens[i]))
            continue;
        for (size_t k = 0; k < 6; k++)
            if (*slot[k] == (long)i) {
                snprintf(im->error, sizeof(im->error),
                         "column \"%.64s\" is named like a card security code: it cannot be "
                         "imported as card data",
                         names[i]);
                return CV_ERR_BAD_REQUEST;
            }
        c->cvc_name[c->ncvc] = cv_xmalloc(lens[i] + 1);
        memcpy(c->cvc_name[c->ncvc], names[i], lens[i]);
        c->cvc_name[c->ncvc][lens[i]] = '\0';
        c->cvc[c->ncvc++] = (long)i;
    }
    c->resolved = true;
    return CV_OK;
}

/* One source row: checks it and queues it, or refuses it. Fields are
 * borrowed from the reader; the card is copied into the batch only. */
static cv_status take_row(struct import *im, uint64_t where, const char *const *f,
                          const size_t *len, size_t nf)
{
    struct columns *c = &im->col;
    char rowno[32];
    const char *id = rowno;
    size_t id_len;
    im->read++;
    for (size_t k = 0; k < c->ncvc; k++) /* counted, never copied */
        if ((size_t)c->cvc[k] < nf && f[c->cvc[k]] != NULL && len[c->cvc[k]] > 0)
            c->cvc_values[k]++;
    if (nf != c->ncols) {
        refuse(im, where, NULL, "wrong_column_count");
        return CV_OK;
    }
    if (c->id >= 0) {
        id = f[c->id] != NULL ? f[c->id] : "";
        id_len = len[c->id];
    } else {
        snprintf(rowno, sizeof(rowno), "%" PRIu64, where);
        id_len = strlen(rowno);
    }
    const char *why = check_row_id(id, id_len);
    if (why != NULL) {
        refuse(im, where, NULL, why);
        return CV_OK;
    }
    if (idset_has(&im->seen, id)) {
        refuse(im, where, id, "duplicate_row_id");
        return CV_OK;
    }
    if (idset_has(&im->done, id)) { /* committed by an earlier run of the job */
        idset_put(&im->seen, id);
        im->skipped++;
        return CV_OK;
    }
    struct pending *p = &im->batch[im->nbatch];
    memset(p, 0, sizeof(*p));
    const char *pan = f[c->pan] != NULL ? f[c->pan] : "";
    why = check_pan(pan, len[c->pan], p->card.pan);
    int m = 0, y = 0;
    if (why == NULL) {
        cv_status es;
        if (c->exp >= 0)
            es = cv_card_parse_expiry(f[c->exp] != NULL ? f[c->exp] : "", len[c->exp], &m, &y);
        else if (c->exp_month >= 0 && c->exp_year >= 0)
            es = cv_card_parse_month(f[c->exp_month] != NULL ? f[c->exp_month] : "",
                                     len[c->exp_month], &m) != CV_OK
                     ? CV_ERR_INVALID_EXPIRY
                     : cv_card_parse_year(f[c->exp_year] != NULL ? f[c->exp_year] : "",
                                          len[c->exp_year], &y);
        else
            es = CV_ERR_INVALID_EXPIRY;
        if (es != CV_OK)
            why = "invalid_expiry";
        else if (cv_card_check_expiry(m, y, im->now_month, im->now_year) != CV_OK)
            why = (y < im->now_year || (y == im->now_year && m < im->now_month)) ? "expired"
                                                                                 : "invalid_expiry";
    }
    if (why == NULL && c->name >= 0 && f[c->name] != NULL && len[c->name] > 0) {
        if (cv_card_check_name(f[c->name], len[c->name]) != CV_OK)
            why = "invalid_name";
        else {
            memcpy(p->card.name, f[c->name], len[c->name]);
            p->card.name[len[c->name]] = '\0';
            p->card.has_name = 1;
        }
    }
    if (why != NULL) {
        cv_wipe(p, sizeof(*p));
        refuse(im, where, id, why);
        return CV_OK;
    }
    size_t pan_len = strlen(p->card.pan);
    p->card.exp_month = m;
    p->card.exp_year = y;
    memcpy(p->row_id, id, id_len);
    p->row_id[id_len] = '\0';
    snprintf(p->brand, sizeof(p->brand), "%s",
             cv_card_brand_name(cv_card_brand_of(p->card.pan, pan_len)));
    memcpy(p->last4, p->card.pan + pan_len - 4, 4);
    p->last4[4] = '\0';
    cv_status st = cv_keyring_fingerprint(im->kr, im->merchant, p->card.pan, p->fingerprint);
    if (st != CV_OK) {
        cv_wipe(p, sizeof(*p));
        im->fatal = st;
        snprintf(im->error, sizeof(im->error), "cannot fingerprint a card (%s)",
                 cv_status_name(st));
        return st;
    }
    idset_put(&im->seen, p->row_id);
    if (++im->nbatch == im->batch_max)
        return flush_batch(im);
    return CV_OK;
}

/* ------------------------------------------------------------- sources */

struct fd_src {
    int fd;
};

static long read_fd(void *ctx, void *buf, size_t cap)
{
    struct fd_src *s = ctx;
    for (;;) {
        ssize_t n = read(s->fd, buf, cap);
        if (n >= 0)
            return (long)n;
        if (errno != EINTR)
            return -1;
    }
}

static cv_status import_csv(struct import *im)
{
    const char *path = im->cli->x[O_CSV];
    struct fd_src src = {open(path, O_RDONLY | O_CLOEXEC)};
    if (src.fd < 0) {
        char err[128];
        snprintf(im->error, sizeof(im->error), "cannot open %.200s: %s", path,
                 cv_cli_errno_text(errno, err, sizeof(err)));
        return CV_ERR_IO;
    }
    struct cv_csv *r = cv_csv_new(read_fd, &src, CSV_RECORD_MAX);
    struct cv_csv_record rec;
    char why[200];
    cv_status st = cv_csv_next(r, &rec, why, sizeof(why));
    if (st == CV_OK && rec.utf8_invalid) {
        snprintf(im->error, sizeof(im->error), "line %" PRIu64 ": the header is not valid UTF-8",
                 rec.line);
        st = CV_ERR_BAD_REQUEST;
    } else if (st == CV_OK) {
        st = resolve_columns(im, (const char *const *)rec.fields, rec.len, rec.nfields);
    } else if (st == CV_ERR_NOT_FOUND) {
        snprintf(im->error, sizeof(im->error), "%.200s is empty: no header row", path);
        st = CV_ERR_BAD_REQUEST;
    } else {
        snprintf(im->error, sizeof(im->error), "%s", why);
    }
    while (st == CV_OK) {
        st = cv_csv_next(r, &rec, why, sizeof(why));
        if (st == CV_ERR_NOT_FOUND) {
            st = CV_OK;
            break;
        }
        if (st != CV_OK) {
            snprintf(im->error, sizeof(im->error), "%s", why);
            break;
        }
        if (rec.utf8_invalid) {
            im->read++;
            refuse(im, rec.line, NULL, "invalid_utf8");
            continue;
        }
        st = take_row(im, rec.line, (const char *const *)rec.fields, rec.len, rec.nfields);
    }
    cv_csv_free(r); /* wipes the records */
    close(src.fd);
    return st;
}

static cv_status take_source_row(void *ctx, const struct cv_source_row *row)
{
    struct import *im = ctx;
    if (!im->col.resolved) {
        size_t *lens = cv_xcalloc(row->ncols + 1, sizeof(*lens));
        for (size_t i = 0; i < row->ncols; i++)
            lens[i] = strlen(row->names[i]);
        cv_status st = resolve_columns(im, row->names, lens, row->ncols);
        free(lens);
        if (st != CV_OK)
            return st;
    }
    return take_row(im, im->read + 1, row->values, row->lens, row->ncols);
}

/* The shop database's connection string: --source-url-file (owner-only
 * file) or CARDVAULT_IMPORT_SOURCE_URL. Heap; the caller wipes and frees. */
static char *source_url(struct cv_cli *cli, char *why, size_t why_len)
{
    const char *file = cli->x[O_SOURCE_URL_FILE];
    if (file == NULL) {
        /* NOLINTNEXTLINE(concurrency-mt-unsafe): read once, before any thread */
        const char *env = getenv("CARDVAULT_IMPORT_SOURCE_URL");
        if (env == NULL || *env == '\0') {
            snprintf(why, why_len,
                     "--query needs the source database: --source-url-file PATH or "
                     "CARDVAULT_IMPORT_SOURCE_URL");
            return NULL;
        }
        return cv_xstrdup(env);
    }
    struct cv_secbuf *buf = NULL;
    if (cv_secret_file_read(file, "source database URL file", "one libpq connection string",
                            SOURCE_URL_MAX, &buf, why, why_len) != CV_OK)
        return NULL;
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

static cv_status import_query(struct import *im)
{
    char why[512];
    char *url = source_url(im->cli, why, sizeof(why));
    if (url == NULL) {
        snprintf(im->error, sizeof(im->error), "%s", why);
        return CV_ERR_CONFIG;
    }
    why[0] = '\0';
    cv_status st = cv_store_source_query(url, im->cli->x[O_QUERY], 1000, take_source_row, im, why,
                                         sizeof(why));
    cv_wipe(url, strlen(url));
    free(url);
    if (st != CV_OK && im->error[0] == '\0')
        snprintf(im->error, sizeof(im->error), "%s",
                 why[0] != '\0' ? why : "the source query failed");
    return st;
}

/* ------------------------------------------------------------- mapping */

struct map_out {
    FILE *f;
    uint64_t rows;
};

static bool needs_quotes(const char *s)
{
    return strpbrk(s, ",\"\r\n") != NULL;
}

static cv_status write_map_row(void *ctx, const struct cv_import_row *row)
{
    struct map_out *m = ctx;
    if (needs_quotes(row->row_id)) {
        fputc('"', m->f);
        for (const char *p = row->row_id; *p != '\0'; p++) {
            if (*p == '"')
                fputc('"', m->f);
            fputc(*p, m->f);
        }
        fputc('"', m->f);
    } else {
        fputs(row->row_id, m->f);
    }
    fprintf(m->f, ",%s,%s,%s,%d,%d,%d\n", row->token, row->brand, row->last4, row->exp_month,
            row->exp_year, row->merged ? 1 : 0);
    m->rows++;
    return ferror(m->f) ? CV_ERR_IO : CV_OK;
}

/* Writes the job's whole mapping from the database to PATH.tmp (0600, new),
 * then renames it over PATH: a reader never sees half a file. */
static cv_status write_mapping(struct import *im, uint64_t *rows)
{
    const char *path = im->cli->x[O_MAPPING];
    size_t n = strlen(path) + 5;
    char *tmp = cv_xmalloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    (void)unlink(tmp); /* left by a run killed while writing it */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    cv_status st = CV_ERR_IO;
    struct map_out m = {fd >= 0 ? fdopen(fd, "w") : NULL, 0};
    if (m.f == NULL) {
        char err[128];
        snprintf(im->error, sizeof(im->error), "cannot create %.200s: %s", tmp,
                 cv_cli_errno_text(errno, err, sizeof(err)));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    fputs("row_id,token,brand,last4,exp_month,exp_year,merged\n", m.f);
    st = cv_store_import_mapping(im->store, im->merchant, im->job, write_map_row, &m);
    if (fflush(m.f) != 0 || fsync(fileno(m.f)) != 0)
        st = CV_ERR_IO;
    if (fclose(m.f) != 0)
        st = CV_ERR_IO;
    if (st == CV_OK && rename(tmp, path) != 0)
        st = CV_ERR_IO;
    if (st != CV_OK) {
        snprintf(im->error, sizeof(im->error), "cannot write the mapping file %.200s (%s)", path,
                 cv_status_name(st));
        (void)unlink(tmp);
    }
    *rows = m.rows;
out:
    free(tmp);
    return st;
}

/* ---------------------------------------------------------------- main */

static bool valid_job(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool valid_merchant(const char *s)
{
    if (strlen(s) != CV_MERCHANT_ID_LEN || strncmp(s, "mer_", 4) != 0)
        return false;
    for (size_t i = 4; i < CV_MERCHANT_ID_LEN; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static int check_usage(struct cv_cli *cli, int *batch)
{
    const char *const *x = cli->x;
    if (cli->argc != 0)
        return cv_cli_usage_error("import takes no positional arguments");
    if (cli->merchant == NULL || !valid_merchant(cli->merchant))
        return cv_cli_usage_error("--merchant ID is required (mer_ and 20 letters or digits)");
    if (x[O_JOB] == NULL || !valid_job(x[O_JOB]))
        return cv_cli_usage_error("--job JOB is required: 1-64 letters, digits, '.', '_', '-'");
    if ((x[O_CSV] == NULL) == (x[O_QUERY] == NULL))
        return cv_cli_usage_error("give exactly one source: --csv FILE or --query SQL");
    if (x[O_CSV] != NULL && x[O_SOURCE_URL_FILE] != NULL)
        return cv_cli_usage_error("--source-url-file goes with --query, not --csv");
    if (x[O_PAN_COL] == NULL)
        return cv_cli_usage_error("--pan-col NAME is required");
    bool split = x[O_EXP_MONTH_COL] != NULL || x[O_EXP_YEAR_COL] != NULL;
    if ((x[O_EXP_COL] != NULL) == split ||
        (split && (x[O_EXP_MONTH_COL] == NULL || x[O_EXP_YEAR_COL] == NULL)))
        return cv_cli_usage_error(
            "give the expiry as --exp-col NAME, or as --exp-month-col and --exp-year-col");
    if (x[O_MAPPING] == NULL)
        return cv_cli_usage_error("--mapping FILE is required");
    *batch = CV_IMPORT_BATCH_MAX;
    if (cli->batch != NULL) {
        char *end = NULL;
        long v = strtol(cli->batch, &end, 10);
        if (end == cli->batch || *end != '\0' || v < 1 || v > CV_IMPORT_BATCH_MAX)
            return cv_cli_usage_error("--batch takes 1 to 128");
        *batch = (int)v;
    }
    struct stat sb;
    if (x[O_RESUME] == NULL && lstat(x[O_MAPPING], &sb) == 0) {
        cv_cli_fail("the mapping file exists; give --resume to continue that job (the file is "
                    "rewritten whole), or another path");
        return 1;
    }
    return -1;
}

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

static void audit(struct import *im, const char *action, const char *outcome)
{
    char detail[300], user[64];
    os_user(user, sizeof(user));
    snprintf(detail, sizeof(detail),
             "job=%s source=%s read=%" PRIu64 " imported=%" PRIu64 " merged=%" PRIu64
             " skipped=%" PRIu64 " refused=%" PRIu64 " os_user=%s",
             im->job, im->cli->x[O_CSV] != NULL ? "csv" : "query", im->read, im->imported,
             im->merged, im->skipped, im->refused, user);
    struct cv_audit_event ev = {"cli:import", im->merchant, NULL, NULL, action, outcome, detail};
    if (cv_store_audit_append(im->store, &ev) != CV_OK)
        cv_cli_fail("warning: could not record this import in the audit trail");
}

static int report(struct import *im, bool ok, bool mapping_written, uint64_t mapped)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = secs_between(&im->t0, &now);
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "event", "import_report");
    cv_cli_json_set_bool(out, "ok", ok);
    cv_cli_json_set_str(out, "merchant_id", im->merchant);
    cv_cli_json_set_str(out, "job", im->job);
    cv_cli_json_set_int(out, "rows_read", (long long)im->read);
    cv_cli_json_set_int(out, "imported", (long long)im->imported);
    cv_cli_json_set_int(out, "merged", (long long)im->merged);
    cv_cli_json_set_int(out, "skipped", (long long)im->skipped);
    cv_cli_json_set_int(out, "refused", (long long)im->refused);
    struct json_t *by = cv_cli_json_object();
    for (size_t i = 0; reasons[i] != NULL; i++)
        if (im->by_reason[i] > 0)
            cv_cli_json_set_int(by, reasons[i], (long long)im->by_reason[i]);
    cv_cli_json_set(out, "refused_by_reason", by);
    cv_cli_json_set(out, "refusals", im->refusals);
    im->refusals = NULL;
    cv_cli_json_set_bool(out, "refusals_truncated", im->listed > REFUSALS_LISTED);
    struct json_t *cvc = cv_cli_json_array();
    for (size_t k = 0; k < im->col.ncvc; k++) {
        struct json_t *one = cv_cli_json_object();
        cv_cli_json_set_str(one, "kind", "security_code_column");
        cv_cli_json_set_str(one, "column", im->col.cvc_name[k]);
        cv_cli_json_set_int(one, "values", (long long)im->col.cvc_values[k]);
        cv_cli_json_set_str(one, "action",
                            "never imported: purge this column and every copy of it (PCI DSS "
                            "3.3.1.2)");
        if (cv_cli_json_append(cvc, one) != CV_OK)
            cv_cli_json_set(out, "findings", NULL);
    }
    cv_cli_json_set(out, "findings", cvc);
    cv_cli_json_set_int(out, "mapping_rows", (long long)mapped);
    cv_cli_json_set_str(out, "mapping", mapping_written ? im->cli->x[O_MAPPING] : NULL);
    cv_cli_json_set_int(out, "seconds_x1000", (long long)(el * 1000));
    cv_cli_json_set_int(out, "rows_per_s",
                        el > 0 ? (long long)((double)(im->imported + im->merged) / el) : 0);
    cv_cli_json_set_str(out, "error", im->error[0] != '\0' ? im->error : NULL);
    return cv_cli_print_json(out) == CV_OK && ok ? 0 : 1;
}

int cv_cli_import(struct cv_cli *cli)
{
    int batch_max = 0;
    int rc = check_usage(cli, &batch_max);
    if (rc != -1)
        return rc;
    struct import im;
    memset(&im, 0, sizeof(im));
    im.cli = cli;
    im.merchant = cli->merchant;
    im.job = cli->x[O_JOB];
    im.batch_max = (size_t)batch_max;
    im.tty = isatty(STDERR_FILENO) == 1;
    im.refusals = cv_cli_json_array();
    struct cv_keyprovider *kp = NULL;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    im.now_month = tm.tm_mon + 1;
    im.now_year = tm.tm_year + 1900;
    clock_gettime(CLOCK_MONOTONIC, &im.t0);
    im.last = im.t0;
    rc = 1;
    /* The process holds card numbers from here on. */
    if (cv_cli_harden(&cli->cfg, CV_CLI_SECURE_HEAP_BYTES) != CV_OK ||
        cv_cli_open_store(&cli->cfg, &im.store) != CV_OK)
        goto out;
    if (cv_cli_open_keyring(&cli->cfg, im.store, &kp, &im.kr) != CV_OK)
        goto out;
    if (cv_store_import_done(im.store, im.merchant, im.job, put_done, &im.done) != CV_OK) {
        cv_cli_fail("cannot read the job's progress from the vault database (is it migrated?)");
        goto out;
    }
    if (im.done.n > 0 && cli->x[O_RESUME] == NULL) {
        cv_cli_fail("this job already imported rows: give --resume to continue it, or use a new "
                    "--job");
        goto out;
    }
    im.batch = cv_xcalloc(im.batch_max, sizeof(*im.batch));
    audit(&im, "import.start", "started");
    cv_status st = cli->x[O_CSV] != NULL ? import_csv(&im) : import_query(&im);
    /* Rows read before an input error are whole records: commit them. */
    if (im.fatal == CV_OK && flush_batch(&im) != CV_OK && st == CV_OK)
        st = im.fatal;
    if (im.fatal != CV_OK)
        st = im.fatal;
    progress(&im, true);
    uint64_t mapped = 0;
    char saved[sizeof(im.error)];
    memcpy(saved, im.error, sizeof(saved));
    im.error[0] = '\0';
    /* Whatever stopped the run, the mapping covers what was committed. */
    cv_status mst = CV_OK;
    bool written = false;
    if (st == CV_OK || im.imported + im.merged > 0 || cli->x[O_RESUME] != NULL) {
        mst = write_mapping(&im, &mapped);
        written = mst == CV_OK;
    }
    if (saved[0] != '\0')
        memcpy(im.error, saved, sizeof(saved));
    bool ok = st == CV_OK && mst == CV_OK;
    audit(&im, "import.finish", ok ? "success" : "error");
    if (!ok && im.error[0] != '\0')
        cv_cli_fail(im.error);
    rc = report(&im, ok, written, mapped);
out:
    if (im.batch != NULL) {
        cv_wipe(im.batch, im.batch_max * sizeof(*im.batch));
        free(im.batch);
    }
    idset_free(&im.done);
    idset_free(&im.seen);
    for (size_t k = 0; k < im.col.ncvc; k++)
        free(im.col.cvc_name[k]);
    cv_cli_json_free(im.refusals); /* when the report did not take it */
    cv_keyring_close(im.kr);
    cv_keyprovider_free(kp);
    cv_store_close(im.store);
    return rc;
}
