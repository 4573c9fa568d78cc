/* migrate.c: applies migrations/NNNN_name.sql in order. Each file runs in
 * its own transaction together with its schema_migrations row, so a failed
 * file leaves no trace and the next run retries it. A session advisory lock
 * serializes concurrent runs (two containers starting at once). Migration
 * files are static SQL shipped with the binary: they carry no client data,
 * so running them with PQexec is not an injection surface. */
#include "cardvault/migrate.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "cardvault/secbuf.h"

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
    struct stat sb;
    if (env != NULL && *env != '\0')
        return env;
    if (stat("migrations", &sb) == 0 && S_ISDIR(sb.st_mode))
        return "migrations";
    return "/usr/share/cardvault/migrations";
}

struct migration {
    int version;
    char name[256];
};

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
        size_t len = strlen(e->d_name);
        if (len < 9 || len >= sizeof(out[0].name) || strcmp(e->d_name + len - 4, ".sql") != 0 ||
            e->d_name[4] != '_')
            continue;
        int v = 0;
        bool digits = true;
        for (int i = 0; i < 4; i++) {
            if (e->d_name[i] < '0' || e->d_name[i] > '9')
                digits = false;
            else
                v = v * 10 + (e->d_name[i] - '0');
        }
        if (!digits)
            continue;
        out[n].version = v;
        snprintf(out[n].name, sizeof(out[n].name), "%s", e->d_name);
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

static bool exec_ok(PGconn *pg, const char *sql, char *why, size_t why_len, const char *what)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) {
        const char *msg = PQresultErrorMessage(r);
        snprintf(why, why_len, "%s: %s", what, msg != NULL ? msg : "unknown error");
        why[strcspn(why, "\n")] = '\0';
    }
    PQclear(r);
    return ok;
}

static bool is_applied(PGconn *pg, int version, bool *applied)
{
    char v[16];
    snprintf(v, sizeof(v), "%d", version);
    const char *params[1] = {v};
    PGresult *r = PQexecParams(pg, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL,
                               params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    *applied = ok && PQntuples(r) == 1;
    PQclear(r);
    return ok;
}

static bool record(PGconn *pg, const struct migration *m)
{
    char v[16];
    snprintf(v, sizeof(v), "%d", m->version);
    const char *params[2] = {v, m->name};
    PGresult *r = PQexecParams(pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                               2, NULL, params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
}

cv_status cv_migrate_run(const char *conninfo, const char *dir, int *applied, char *why,
                         size_t why_len)
{
    struct migration files[MAX_MIGRATIONS];
    cv_status st = CV_ERR_DB;
    *applied = 0;
    int n = list_files(dir, files, MAX_MIGRATIONS);
    if (n <= 0) {
        snprintf(why, why_len, "no migrations found in %s", dir);
        return CV_ERR_CONFIG;
    }
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(why, why_len, "cannot connect to the database: %s", PQerrorMessage(pg));
        why[strcspn(why, "\n")] = '\0';
        PQfinish(pg);
        return CV_ERR_DB_UNAVAILABLE;
    }
    if (!exec_ok(pg, "SET client_min_messages = warning", why, why_len, "session setup") ||
        !exec_ok(pg, "SELECT pg_advisory_lock(" ADVISORY_KEY ")", why, why_len, "advisory lock"))
        goto out;
    if (!exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "version integer PRIMARY KEY, name text NOT NULL, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 why, why_len, "creating schema_migrations"))
        goto unlock;
    for (int i = 0; i < n; i++) {
        bool done = false;
        if (!is_applied(pg, files[i].version, &done)) {
            snprintf(why, why_len, "cannot read schema_migrations");
            goto unlock;
        }
        if (done)
            continue;
        char *sql = read_file(dir, files[i].name);
        if (sql == NULL) {
            snprintf(why, why_len, "cannot read %s/%s", dir, files[i].name);
            goto unlock;
        }
        bool ok = exec_ok(pg, "BEGIN", why, why_len, files[i].name) &&
                  exec_ok(pg, sql, why, why_len, files[i].name) && record(pg, &files[i]) &&
                  exec_ok(pg, "COMMIT", why, why_len, files[i].name);
        free(sql);
        if (!ok) {
            PGresult *r = PQexec(pg, "ROLLBACK");
            PQclear(r);
            goto unlock;
        }
        printf("{\"event\":\"migration_applied\",\"version\":%d,\"file\":\"%s\"}\n",
               files[i].version, files[i].name);
        (*applied)++;
    }
    st = CV_OK;
unlock:;
    PGresult *r = PQexec(pg, "SELECT pg_advisory_unlock(" ADVISORY_KEY ")");
    PQclear(r);
out:
    PQfinish(pg);
    return st;
}
