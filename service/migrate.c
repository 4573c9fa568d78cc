/* migrate.c: applies migrations/NNNN_name.sql in order. Each file runs in
 * its own transaction together with its schema_migrations row, so a failed
 * file leaves no trace and the next run retries it. A session advisory lock
 * serializes concurrent runs (two containers starting at once). Migration
 * files are static SQL shipped with the binary: they carry no client data,
 * so running them as scripts (pg.c's CV_PG_SCRIPT) is not an injection
 * surface. Every statement goes through pg.c; failures are reported by
 * step and SQLSTATE, never by the server's message. */
#include "cardvault/migrate.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cardvault/cli.h"
#include "cardvault/secbuf.h"
#include "migrations_embedded.h"
#include "pg.h"

#define MAX_MIGRATIONS      256
#define MIGRATION_MAX_BYTES (1024 * 1024)
/* pg_advisory_lock key: fixed, arbitrary, documented ("cardvault" in ASCII, truncated). */
#define ADVISORY_KEY "7233172018651476"

int cv_migrate_required_version(void)
{
    return CV_SCHEMA_VERSION;
}

const char *cv_migrate_default_dir(void)
{
    const char *env = getenv("CARDVAULT_MIGRATIONS_DIR");
    if (env != NULL && *env != '\0')
        return env;
    return NULL;
}

struct migration {
    int version;
    char name[256];
    const char *text; /* the compiled-in text, or NULL: read name from the folder */
};

/* Parses NNNN_name.sql; returns the version or -1. */
static int version_of(const char *name, size_t cap)
{
    size_t len = strlen(name);
    if (len < 9 || len >= cap || strcmp(name + len - 4, ".sql") != 0 || name[4] != '_')
        return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

/* The compiled-in set (service/migrations_embed.sh), already in order. */
static int list_embedded(struct migration *out, int max)
{
    int n = 0;
    for (size_t i = 0; i < cv_migrations_embedded_count && n < max; i++) {
        int v = version_of(cv_migrations_embedded[i].name, sizeof(out[0].name));
        if (v < 0)
            continue;
        out[n].version = v;
        snprintf(out[n].name, sizeof(out[n].name), "%s", cv_migrations_embedded[i].name);
        out[n].text = cv_migrations_embedded[i].text;
        n++;
    }
    return n;
}

static int by_version(const void *a, const void *b)
{
    return ((const struct migration *)a)->version - ((const struct migration *)b)->version;
}

static int list_files(const char *dir, struct migration *out, int max)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        int v = version_of(e->d_name, sizeof(out[0].name));
        if (v < 0)
            continue;
        out[n].version = v;
        snprintf(out[n].name, sizeof(out[n].name), "%s", e->d_name);
        out[n].text = NULL;
        n++;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof(*out), by_version);
    return n;
}

static char *read_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = cv_xmalloc(MIGRATION_MAX_BYTES + 1);
    size_t n = fread(buf, 1, MIGRATION_MAX_BYTES, f);
    bool too_big = !feof(f);
    fclose(f);
    if (too_big) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static const struct cv_pg_stmt session_setup = {
    "session setup", "SET client_min_messages = warning", 0, CV_PG_ONE_OFF, false, false};
static const struct cv_pg_stmt lock = {
    "advisory lock", "SELECT pg_advisory_lock(" ADVISORY_KEY ")", 0, CV_PG_ONE_OFF, false, false};
static const struct cv_pg_stmt unlock = {"advisory unlock",
                                         "SELECT pg_advisory_unlock(" ADVISORY_KEY ")",
                                         0,
                                         CV_PG_ONE_OFF,
                                         false,
                                         false};
static const struct cv_pg_stmt create_table = {"creating schema_migrations",
                                               "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                               "version integer PRIMARY KEY, name text NOT NULL, "
                                               "applied_at timestamptz NOT NULL DEFAULT now())",
                                               0,
                                               CV_PG_ONE_OFF,
                                               false,
                                               false};
static const struct cv_pg_stmt is_applied = {"reading schema_migrations",
                                             "SELECT 1 FROM schema_migrations WHERE version = $1",
                                             1,
                                             CV_PG_ONE_OFF,
                                             false,
                                             false};
static const struct cv_pg_stmt record = {
    "recording the migration",
    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
    2,
    CV_PG_ONE_OFF,
    false,
    false};

/* Runs s; on failure writes "<step>: SQLSTATE xxxxx" to why. */
static cv_status step(struct cv_pg_conn *c, const struct cv_pg_stmt *s,
                      const struct cv_pg_params *p, PGresult **res, const char *what, char *why,
                      size_t why_len)
{
    cv_status st = cv_pg_run(c, s, p, res);
    if (st != CV_OK)
        snprintf(why, why_len, "%s: failed (SQLSTATE %s)", what,
                 cv_pg_last_sqlstate(c)[0] != '\0' ? cv_pg_last_sqlstate(c) : "none");
    return st;
}

/* Applies one file and its schema_migrations row in one transaction. */
static cv_status apply(struct cv_pg_conn *c, const char *dir, const struct migration *m, char *why,
                       size_t why_len)
{
    char *sql = NULL;
    if (m->text == NULL && (sql = read_file(dir, m->name)) == NULL) {
        snprintf(why, why_len, "cannot read %s/%s", dir, m->name);
        return CV_ERR_IO;
    }
    const struct cv_pg_stmt script = {m->name, sql != NULL ? sql : m->text, 0, CV_PG_SCRIPT, false,
                                      false};
    const struct cv_pg_stmt begin = {m->name, "BEGIN", 0, CV_PG_ONE_OFF, false, false};
    const struct cv_pg_stmt commit = {m->name, "COMMIT", 0, CV_PG_ONE_OFF, false, false};
    struct cv_pg_params p;
    cv_pg_params_init(&p);
    cv_pg_param_int(&p, m->version);
    cv_pg_param_text(&p, m->name);
    cv_status st = step(c, &begin, NULL, NULL, m->name, why, why_len);
    if (st != CV_OK)
        goto out;
    if ((st = step(c, &script, NULL, NULL, m->name, why, why_len)) != CV_OK)
        goto out;
    if ((st = step(c, &record, &p, NULL, m->name, why, why_len)) != CV_OK)
        goto out;
    st = step(c, &commit, NULL, NULL, m->name, why, why_len);
out:
    if (st != CV_OK)
        cv_pg_rollback(c);
    free(sql);
    return st;
}

/* One JSON line per applied file on stdout. */
static void print_applied(const struct migration *m)
{
    json_t *line = json_pack("{s:s, s:i, s:s}", "event", "migration_applied", "version", m->version,
                             "file", m->name);
    cv_status st = cv_cli_print_json(line); /* a failure is reported on stderr */
    (void)st;
}

/* Applies every file not yet recorded, in order; the caller holds the lock. */
static cv_status apply_missing(struct cv_pg_conn *c, const char *dir, const struct migration *files,
                               int n, int *applied, char *why, size_t why_len)
{
    CV_TRY(step(c, &create_table, NULL, NULL, create_table.name, why, why_len));
    for (int i = 0; i < n; i++) {
        struct cv_pg_params p;
        PGresult *r = NULL;
        cv_pg_params_init(&p);
        cv_pg_param_int(&p, files[i].version);
        if (cv_pg_run(c, &is_applied, &p, &r) != CV_OK) {
            snprintf(why, why_len, "cannot read schema_migrations");
            return CV_ERR_DB;
        }
        bool done = PQntuples(r) == 1;
        PQclear(r);
        if (done)
            continue;
        CV_TRY(apply(c, dir, &files[i], why, why_len));
        print_applied(&files[i]);
        (*applied)++;
    }
    return CV_OK;
}

cv_status cv_migrate_run(const char *conninfo, const char *dir, int *applied, char *why,
                         size_t why_len)
{
    struct migration files[MAX_MIGRATIONS];
    struct cv_pg_pool *pool = NULL;
    struct cv_pg_conn *c = NULL;
    char reason[256];
    *applied = 0;
    int n =
        dir != NULL ? list_files(dir, files, MAX_MIGRATIONS) : list_embedded(files, MAX_MIGRATIONS);
    if (n <= 0) {
        snprintf(why, why_len, "no migrations found in %s",
                 dir != NULL ? dir : "the compiled-in set");
        return CV_ERR_CONFIG;
    }
    if (cv_pg_pool_open(conninfo, 1, &pool, reason, sizeof(reason)) != CV_OK) {
        snprintf(why, why_len, "cannot connect to the database: %s", reason);
        return CV_ERR_DB_UNAVAILABLE;
    }
    cv_status st = cv_pg_acquire(pool, &c);
    if (st != CV_OK) {
        snprintf(why, why_len, "cannot connect to the database");
        goto out;
    }
    if ((st = step(c, &session_setup, NULL, NULL, session_setup.name, why, why_len)) != CV_OK)
        goto out;
    if ((st = step(c, &lock, NULL, NULL, lock.name, why, why_len)) != CV_OK)
        goto out;
    st = apply_missing(c, dir, files, n, applied, why, why_len);
    /* A failed unlock only matters to this session, which ends now. */
    if (cv_pg_run(c, &unlock, NULL, NULL) != CV_OK)
        cv_pg_rollback(c);
out:
    cv_pg_release(c);
    cv_pg_pool_close(pool);
    return st == CV_OK ? CV_OK : CV_ERR_DB;
}
