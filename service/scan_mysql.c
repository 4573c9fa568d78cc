/* scan_mysql.c: the MySQL/MariaDB side of `cardvault scan`, on MariaDB
 * Connector/C (libmariadb). It parses the connection URL, opens one
 * read-only connection in one consistent-snapshot transaction, lists the
 * columns of every base table from information_schema (prepared statements:
 * the database and table names travel as parameters), and streams each
 * table's rows (mysql_use_result: the server sends rows as they are read,
 * one row is in memory at a time), handing every cell to the caller's
 * callback, the one cli_scan.c gives the PostgreSQL scan too.
 *
 * It must never put a value into SQL (only identifiers, quoted with
 * backticks, a backtick inside doubled), never write, and never put a cell,
 * a URL or a password into an error reason: reasons carry the library's
 * connection message or an error number and SQLSTATE. Every cell is wiped
 * once the callback has seen it, and so is every copy of the password. */
#include "cardvault/scan_mysql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#include "cardvault/buf.h"
#include "cardvault/secbuf.h"

#define SQL_MAX   (1024u * 1024u)
#define NAME_MAX_ 256 /* information_schema names: 64 characters, 4 bytes each */
#define LOC_MAX   512

/* ------------------------------------------------------------------ URL */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (cap bytes, NUL-terminated). A NUL byte,
 * a bad escape or a result that does not fit is an error. */
static bool decode(const char *s, size_t n, char *out, size_t cap, const char *what, char *why,
                   size_t why_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                snprintf(why, why_len, "the %s has a bad %%-escape", what);
                return false;
            }
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || (unsigned char)c < 0x20 || c == 0x7f) {
            snprintf(why, why_len, "the %s holds a control character", what);
            return false;
        }
        if (o + 1 >= cap) {
            snprintf(why, why_len, "the %s is longer than %zu bytes", what, cap - 1);
            return false;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

static const char *mem_find(const char *s, size_t n, char c)
{
    return n > 0 ? memchr(s, c, n) : NULL;
}

/* The last occurrence of c in s[0..n). */
static const char *mem_find_last(const char *s, size_t n, char c)
{
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == c)
            return s + i - 1;
    return NULL;
}

static bool parse_port(const char *s, size_t n, unsigned *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = v;
    return true;
}

static bool parse_hostport(const char *s, size_t n, struct cv_scan_mysql_url *u, char *why,
                           size_t why_len)
{
    const char *host = s;
    size_t hlen = n;
    const char *rest = NULL;
    size_t rlen = 0;
    if (n > 0 && s[0] == '[') {
        const char *close = mem_find(s, n, ']');
        if (close == NULL) {
            snprintf(why, why_len, "the IPv6 host has no closing bracket");
            return false;
        }
        host = s + 1;
        hlen = (size_t)(close - s) - 1;
        rest = close + 1;
        rlen = n - (size_t)(rest - s);
        if (rlen > 0 && rest[0] != ':') {
            snprintf(why, why_len, "text after the IPv6 host");
            return false;
        }
    } else {
        const char *colon = mem_find(s, n, ':');
        if (colon != NULL) {
            hlen = (size_t)(colon - s);
            rest = colon;
            rlen = n - hlen;
        }
    }
    if (rlen > 0 && !parse_port(rest + 1, rlen - 1, &u->port)) {
        snprintf(why, why_len, "the port is not a number from 1 to 65535");
        return false;
    }
    for (size_t i = 0; i < hlen; i++) {
        char c = host[i];
        bool okc = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '-' || c == '_' || c == ':';
        if (!okc) {
            snprintf(why, why_len, "the host holds a character a host name cannot");
            return false;
        }
    }
    return decode(host, hlen, u->host, sizeof(u->host), "host", why, why_len);
}

static bool parse_query(const char *s, size_t n, struct cv_scan_mysql_url *u, char *why,
                        size_t why_len)
{
    while (n > 0) {
        const char *amp = mem_find(s, n, '&');
        size_t plen = amp != NULL ? (size_t)(amp - s) : n;
        const char *eq = mem_find(s, plen, '=');
        if (eq == NULL || (size_t)(eq - s) != 6 || memcmp(s, "socket", 6) != 0) {
            snprintf(why, why_len, "the only parameter a URL may carry is socket=PATH");
            return false;
        }
        if (!decode(eq + 1, plen - 7, u->socket, sizeof(u->socket), "socket path", why, why_len))
            return false;
        if (u->socket[0] != '/') {
            snprintf(why, why_len, "the socket path is not absolute");
            return false;
        }
        s += plen;
        n -= plen;
        if (n > 0) { /* the '&' */
            s++;
            n--;
        }
    }
    return true;
}

cv_status cv_scan_mysql_parse_url(const char *url, size_t len, struct cv_scan_mysql_url *u,
                                  char *why, size_t why_len)
{
    static const char *const schemes[] = {"mysql://", "mariadb://"};
    memset(u, 0, sizeof(*u));
    const char *p = NULL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t sl = strlen(schemes[i]);
        if (len >= sl && memcmp(url, schemes[i], sl) == 0) {
            p = url + sl;
            break;
        }
    }
    if (p == NULL) {
        snprintf(why, why_len, "the URL does not start with mysql:// or mariadb://");
        return CV_ERR_CONFIG;
    }
    size_t n = len - (size_t)(p - url);
    /* authority [/database] [?query] */
    const char *q = mem_find(p, n, '?');
    size_t before_q = q != NULL ? (size_t)(q - p) : n;
    const char *slash = mem_find(p, before_q, '/');
    size_t alen = slash != NULL ? (size_t)(slash - p) : before_q;
    const char *at = mem_find_last(p, alen, '@');
    bool good = true;
    if (at != NULL) {
        size_t ulen = (size_t)(at - p);
        const char *colon = mem_find(p, ulen, ':');
        size_t name_len = colon != NULL ? (size_t)(colon - p) : ulen;
        good = decode(p, name_len, u->user, sizeof(u->user), "user", why, why_len);
        if (good && colon != NULL) {
            u->has_password = true;
            good = decode(colon + 1, ulen - name_len - 1, u->password, sizeof(u->password),
                          "password", why, why_len);
        }
    }
    const char *hp = at != NULL ? at + 1 : p;
    if (good)
        good = parse_hostport(hp, alen - (size_t)(hp - p), u, why, why_len);
    if (good && slash != NULL) {
        size_t dlen = before_q - alen - 1;
        good = decode(slash + 1, dlen, u->database, sizeof(u->database), "database", why, why_len);
        if (good && strchr(u->database, '/') != NULL) {
            snprintf(why, why_len, "the database name holds a slash");
            good = false;
        }
    }
    if (good && q != NULL)
        good = parse_query(q + 1, n - before_q - 1, u, why, why_len);
    if (!good) {
        cv_wipe(u, sizeof(*u));
        return CV_ERR_CONFIG;
    }
    why[0] = '\0';
    return CV_OK;
}

/* ----------------------------------------------------------- connection */

struct cv_scan_mysql {
    MYSQL *conn;
    char database[CV_SCAN_MYSQL_FIELD_MAX];
};

static void db_reason(MYSQL *conn, const char *what, char *why, size_t why_len)
{
    /* Error number and SQLSTATE only: a message may quote part of a row. */
    snprintf(why, why_len, "%s: MySQL error %u (SQLSTATE %s)", what, mysql_errno(conn),
             mysql_sqlstate(conn));
}

static void stmt_reason(MYSQL_STMT *st, const char *what, char *why, size_t why_len)
{
    snprintf(why, why_len, "%s: MySQL error %u (SQLSTATE %s)", what, mysql_stmt_errno(st),
             mysql_stmt_sqlstate(st));
}

cv_status cv_scan_mysql_open(const struct cv_scan_mysql_url *url, struct cv_scan_mysql **out,
                             char *why, size_t why_len)
{
    *out = NULL;
    MYSQL *conn = mysql_init(NULL);
    if (conn == NULL) {
        snprintf(why, why_len, "cannot start the MariaDB client library");
        return CV_ERR_DB_UNAVAILABLE;
    }
    unsigned timeout_s = 10;
    /* Never LOAD DATA LOCAL: the server could ask for any local file. */
    unsigned no_local = 0;
    if (mysql_optionsv(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4") != 0 ||
        mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s) != 0 ||
        mysql_optionsv(conn, MYSQL_OPT_LOCAL_INFILE, &no_local) != 0) {
        snprintf(why, why_len, "cannot set the connection options");
        mysql_close(conn);
        return CV_ERR_DB_UNAVAILABLE;
    }
    const char *host = url->host[0] != '\0' ? url->host : NULL;
    if (host == NULL && url->socket[0] == '\0')
        host = "localhost";
    if (mysql_real_connect(conn, host, url->user[0] != '\0' ? url->user : NULL,
                           url->has_password ? url->password : NULL,
                           url->database[0] != '\0' ? url->database : NULL, url->port,
                           url->socket[0] != '\0' ? url->socket : NULL, 0) == NULL) {
        /* The connection message names the user and host, never a password. */
        snprintf(why, why_len, "%s", mysql_error(conn));
        mysql_close(conn);
        return CV_ERR_DB_UNAVAILABLE;
    }
    static const char *const setup[] = {
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        /* A streamed table is sent as fast as the scanner reads it; give a
         * slow disk room before the server gives up on the client. */
        "SET SESSION net_write_timeout = 600",
        "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++) {
        if (mysql_real_query(conn, setup[i], strlen(setup[i])) != 0) {
            db_reason(conn, "cannot start a read-only transaction", why, why_len);
            mysql_close(conn);
            return CV_ERR_DB_UNAVAILABLE;
        }
    }
    struct cv_scan_mysql *db = cv_xcalloc(1, sizeof(*db));
    db->conn = conn;
    snprintf(db->database, sizeof(db->database), "%s", url->database);
    *out = db;
    return CV_OK;
}

void cv_scan_mysql_close(struct cv_scan_mysql *db)
{
    if (db == NULL)
        return;
    /* Read-only: ending it either way changes nothing. */
    (void)mysql_real_query(db->conn, "ROLLBACK", 8);
    mysql_close(db->conn);
    free(db);
    mysql_library_end();
}

/* ------------------------------------------------------------- catalog */

/* Runs a prepared statement with string parameters params[0..np) and
 * string results; calls row_fn with each row's columns (NUL-terminated,
 * NULL for SQL NULL). */
static cv_status run_stmt(MYSQL *conn, const char *sql, const char *const *params, size_t np,
                          size_t ncols, void (*row_fn)(void *ctx, char *const *cols), void *ctx,
                          char *why, size_t why_len)
{
    cv_status st = CV_ERR_DB;
    MYSQL_BIND pb[4], rb[8];
    unsigned long plen[4], rlen[8];
    my_bool rnull[8], rerr[8];
    char bufs[8][NAME_MAX_];
    char *vals[8];
    if (np > 4 || ncols > 8)
        return CV_ERR_INTERNAL;
    MYSQL_STMT *s = mysql_stmt_init(conn);
    if (s == NULL) {
        db_reason(conn, "cannot prepare a catalog query", why, why_len);
        return CV_ERR_DB;
    }
    if (mysql_stmt_prepare(s, sql, strlen(sql)) != 0) {
        stmt_reason(s, "cannot prepare a catalog query", why, why_len);
        goto out;
    }
    memset(pb, 0, sizeof(pb));
    for (size_t i = 0; i < np; i++) {
        plen[i] = (unsigned long)strlen(params[i]);
        pb[i].buffer_type = MYSQL_TYPE_STRING;
        pb[i].buffer = (void *)(uintptr_t)params[i]; /* only read by the library */
        pb[i].buffer_length = plen[i];
        pb[i].length = &plen[i];
    }
    memset(rb, 0, sizeof(rb));
    for (size_t i = 0; i < ncols; i++) {
        rb[i].buffer_type = MYSQL_TYPE_STRING;
        rb[i].buffer = bufs[i];
        rb[i].buffer_length = NAME_MAX_;
        rb[i].length = &rlen[i];
        rb[i].is_null = &rnull[i];
        rb[i].error = &rerr[i];
    }
    if ((np > 0 && mysql_stmt_bind_param(s, pb) != 0) || mysql_stmt_execute(s) != 0 ||
        mysql_stmt_bind_result(s, rb) != 0) {
        stmt_reason(s, "catalog query failed", why, why_len);
        goto out;
    }
    for (;;) {
        int r = mysql_stmt_fetch(s);
        if (r == MYSQL_NO_DATA)
            break;
        if (r == MYSQL_DATA_TRUNCATED) {
            snprintf(why, why_len, "catalog query: a name longer than %d bytes", NAME_MAX_ - 1);
            goto out;
        }
        if (r != 0) {
            stmt_reason(s, "catalog query failed", why, why_len);
            goto out;
        }
        for (size_t i = 0; i < ncols; i++) {
            if (rnull[i]) {
                vals[i] = NULL;
                continue;
            }
            bufs[i][rlen[i] < NAME_MAX_ ? rlen[i] : NAME_MAX_ - 1] = '\0';
            vals[i] = bufs[i];
        }
        row_fn(ctx, vals);
    }
    st = CV_OK;
out:
    mysql_stmt_close(s);
    return st;
}

static const char *const text_types[] = {
    "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json", "enum",
    "set",  "decimal", "bigint",   "int",  "mediumint",  "smallint", NULL,
};
static const char *const byte_types[] = {
    "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", NULL,
};

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

struct col_list {
    struct cv_audit_column *cols;
    size_t n, cap;
};

static void add_column(void *ctx, char *const *v)
{
    struct col_list *l = ctx;
    if (v[0] == NULL || v[1] == NULL || v[2] == NULL || v[3] == NULL)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 64 : l->cap * 2;
        struct cv_audit_column *c = cv_xcalloc(cap, sizeof(*c));
        if (l->n > 0)
            memcpy(c, l->cols, l->n * sizeof(*c));
        free(l->cols);
        l->cols = c;
        l->cap = cap;
    }
    struct cv_audit_column *c = &l->cols[l->n++];
    c->schema = cv_xstrdup(v[0]);
    c->table = cv_xstrdup(v[1]);
    c->column = cv_xstrdup(v[2]);
    c->type = cv_xstrdup(v[3]);
    c->kind = in_list(text_types, v[3])   ? CV_AUDIT_COL_TEXT
              : in_list(byte_types, v[3]) ? CV_AUDIT_COL_BYTEA
                                          : CV_AUDIT_COL_SKIPPED;
}

/* Base tables (and MariaDB's system-versioned ones); views repeat their
 * tables' data. With no database named, every database but the server's. */
static const char columns_sql[] =
    "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, LOWER(c.DATA_TYPE) "
    "FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
    "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
    "WHERE t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
    "AND (c.TABLE_SCHEMA = ? OR (? = '' AND c.TABLE_SCHEMA NOT IN "
    "('mysql', 'information_schema', 'performance_schema', 'sys'))) "
    "ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION";

static const char pk_sql[] = "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                             "WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? "
                             "AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION";

cv_status cv_scan_mysql_columns(struct cv_scan_mysql *db, struct cv_audit_column **cols, size_t *n,
                                char *why, size_t why_len)
{
    struct col_list l = {NULL, 0, 0};
    const char *params[2] = {db->database, db->database};
    *cols = NULL;
    *n = 0;
    cv_status st = run_stmt(db->conn, columns_sql, params, 2, 4, add_column, &l, why, why_len);
    if (st != CV_OK) {
        cv_audit_columns_free(l.cols, l.n);
        return st;
    }
    *cols = l.cols != NULL ? l.cols : cv_xcalloc(1, sizeof(**cols));
    *n = l.n;
    return CV_OK;
}

struct name_list {
    char **names;
    size_t n;
};

static void add_name(void *ctx, char *const *v)
{
    struct name_list *l = ctx;
    if (v[0] == NULL)
        return;
    char **names = cv_xcalloc(l->n + 2, sizeof(*names));
    if (l->n > 0)
        memcpy(names, l->names, l->n * sizeof(*names));
    free(l->names);
    l->names = names;
    l->names[l->n++] = cv_xstrdup(v[0]);
}

/* ------------------------------------------------------------------ rows */

static cv_status append_ident(struct cv_buf *sql, const char *name)
{
    CV_TRY(cv_buf_append_char(sql, '`'));
    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '`')
            CV_TRY(cv_buf_append_char(sql, '`'));
        CV_TRY(cv_buf_append_char(sql, *p));
    }
    return cv_buf_append_char(sql, '`');
}

static cv_status select_sql(const struct cv_audit_column *cols, size_t n, char *const *keys,
                            size_t nkeys, uint64_t limit, struct cv_buf *sql)
{
    CV_TRY(cv_buf_append_str(sql, "SELECT "));
    for (size_t i = 0; i < nkeys + n; i++) {
        if (i > 0)
            CV_TRY(cv_buf_append_str(sql, ", "));
        CV_TRY(append_ident(sql, i < nkeys ? keys[i] : cols[i - nkeys].column));
    }
    CV_TRY(cv_buf_append_str(sql, " FROM "));
    CV_TRY(append_ident(sql, cols[0].schema));
    CV_TRY(cv_buf_append_char(sql, '.'));
    CV_TRY(append_ident(sql, cols[0].table));
    if (limit > 0)
        CV_TRY(cv_buf_appendf(sql, " LIMIT %llu", (unsigned long long)limit));
    return CV_OK;
}

static bool printable(const char *s, unsigned long len)
{
    for (unsigned long i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* "k1=v1, k2=v2" into loc; false when a key value is not printable ASCII or
 * the whole does not fit (the row is then named by its position). */
static bool key_location(MYSQL_ROW row, const unsigned long *lens, char *const *keys, size_t nkeys,
                         char *loc, size_t cap)
{
    size_t used = 0;
    for (size_t k = 0; k < nkeys; k++) {
        const char *v = row[k] != NULL ? row[k] : "NULL";
        unsigned long vl = row[k] != NULL ? lens[k] : 4;
        if (!printable(v, vl))
            return false;
        int w =
            snprintf(loc + used, cap - used, "%s%s=%.*s", k > 0 ? ", " : "", keys[k], (int)vl, v);
        if (w < 0 || (size_t)w >= cap - used)
            return false;
        used += (size_t)w;
    }
    return nkeys > 0;
}

cv_status cv_scan_mysql_rows(struct cv_scan_mysql *db, const struct cv_audit_column *cols, size_t n,
                             const struct cv_audit_scan_opts *opts, cv_audit_cell_fn fn, void *ctx,
                             uint64_t *rows, char *why, size_t why_len)
{
    struct name_list keys = {NULL, 0};
    struct cv_buf sql;
    MYSQL_RES *res = NULL;
    char loc[LOC_MAX], pos[48];
    cv_status st = CV_OK;
    *rows = 0;
    if (n == 0)
        return CV_OK;
    cv_buf_init(&sql, SQL_MAX);
    const char *params[2] = {cols[0].schema, cols[0].table};
    if (opts->row_locations &&
        (st = run_stmt(db->conn, pk_sql, params, 2, 1, add_name, &keys, why, why_len)) != CV_OK)
        goto out;
    if (select_sql(cols, n, keys.names, keys.n, opts->max_rows, &sql) != CV_OK) {
        snprintf(why, why_len, "the query for this table is longer than %u bytes", SQL_MAX);
        st = CV_ERR_DB;
        goto out;
    }
    if (mysql_real_query(db->conn, sql.data, (unsigned long)sql.len) != 0 ||
        (res = mysql_use_result(db->conn)) == NULL) {
        db_reason(db->conn, "cannot read the table", why, why_len);
        st = CV_ERR_DB;
        goto out;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        unsigned long *lens = mysql_fetch_lengths(res);
        (*rows)++;
        snprintf(pos, sizeof(pos), "row=%llu", (unsigned long long)*rows);
        const char *where = NULL;
        if (opts->row_locations)
            where = key_location(row, lens, keys.names, keys.n, loc, sizeof(loc)) ? loc : pos;
        for (size_t k = 0; k < n; k++) {
            size_t c = keys.n + k;
            if (row[c] == NULL)
                continue;
            fn(ctx, k, (const unsigned char *)row[c], (size_t)lens[c], where,
               opts->row_locations ? pos : NULL);
            /* The value may be the very card number the scan looks for. */
            cv_wipe(row[c], (size_t)lens[c]);
        }
        for (size_t k = 0; k < keys.n; k++)
            if (row[k] != NULL)
                cv_wipe(row[k], (size_t)lens[k]);
        cv_wipe(loc, sizeof(loc));
    }
    if (mysql_errno(db->conn) != 0) {
        db_reason(db->conn, "reading the table stopped", why, why_len);
        st = CV_ERR_DB;
    }
out:
    if (res != NULL)
        mysql_free_result(res); /* reads and drops what the server still sends */
    cv_buf_cleanup(&sql);
    for (size_t i = 0; i < keys.n; i++)
        free(keys.names[i]);
    free(keys.names);
    return st;
}
