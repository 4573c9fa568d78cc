#ifndef CV_SCAN_MYSQL_H
#define CV_SCAN_MYSQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/audit.h"
#include "cardvault/status.h"

/* `cardvault scan`'s read-only reader of a MySQL or MariaDB database
 * (scan_mysql.c, the only file that speaks the MariaDB client protocol):
 * the catalog walk and a streamed read of every row, handing each cell to
 * the same callback as the PostgreSQL scan (audit.h). */

/* A connection URL:
 *   mysql://[USER[:PASSWORD]@][HOST][:PORT][/DATABASE][?socket=PATH]
 * (mariadb:// too). USER, PASSWORD, DATABASE and PATH are percent-decoded;
 * HOST may be a [bracketed] IPv6 address. No host and no socket: localhost
 * (the server's default unix socket). No database: every database but the
 * server's own (mysql, information_schema, performance_schema, sys). */
#define CV_SCAN_MYSQL_FIELD_MAX 256
struct cv_scan_mysql_url {
    char user[CV_SCAN_MYSQL_FIELD_MAX];
    char password[CV_SCAN_MYSQL_FIELD_MAX];
    char host[CV_SCAN_MYSQL_FIELD_MAX];
    char database[CV_SCAN_MYSQL_FIELD_MAX];
    char socket[CV_SCAN_MYSQL_FIELD_MAX];
    unsigned port; /* 0: the library's default (3306) */
    bool has_password;
};

/* Parses url[0..len) into *out. CV_ERR_CONFIG with a one-line reason in why
 * (never a piece of the URL: it may hold a password) when it is not one.
 * *out may hold a password either way: wipe it (cv_wipe) after use. */
CV_MUST_USE cv_status cv_scan_mysql_parse_url(const char *url, size_t len,
                                              struct cv_scan_mysql_url *out, char *why,
                                              size_t why_len);

/* One read-only connection, in one REPEATABLE READ READ ONLY transaction with
 * a consistent snapshot (InnoDB) for every table it reads. */
struct cv_scan_mysql;

/* Connects with utf8mb4 results. CV_ERR_DB_UNAVAILABLE with the server's or
 * the library's reason in why on failure. Close with cv_scan_mysql_close. */
CV_MUST_USE cv_status cv_scan_mysql_open(const struct cv_scan_mysql_url *url,
                                         struct cv_scan_mysql **out, char *why, size_t why_len);
/* Ends the transaction and the connection; accepts NULL. */
void cv_scan_mysql_close(struct cv_scan_mysql *db);

/* Every column of every base table of the URL's database (or of every user
 * database), from information_schema through a prepared statement, ordered
 * by schema, table and position. Kinds: text for the character, JSON,
 * ENUM/SET and integer/decimal types, bytes (CV_AUDIT_COL_BYTEA) for
 * BINARY/VARBINARY/BLOB, skipped for the rest. Free with
 * cv_audit_columns_free. CV_ERR_DB with a reason in why on failure. */
CV_MUST_USE cv_status cv_scan_mysql_columns(struct cv_scan_mysql *db, struct cv_audit_column **cols,
                                            size_t *n, char *why, size_t why_len);

/* Reads the cells of cols[0..n-1] (one table) row by row, streamed from the
 * server (mysql_use_result: one row in memory at a time), at most
 * opts->max_rows rows (0: all). fn gets each non-NULL cell; row_key names
 * the row by its primary key ("id=42"), or "row=N" (its position in this
 * read) for a table without one or a key that is not printable; the last
 * argument is always "row=N". Identifiers are quoted with backticks (a
 * backtick doubled); no value ever enters SQL. Every cell is wiped after fn.
 * *rows gets the row count. CV_ERR_DB with the error number and SQLSTATE in
 * why on failure. */
CV_MUST_USE cv_status cv_scan_mysql_rows(struct cv_scan_mysql *db,
                                         const struct cv_audit_column *cols, size_t n,
                                         const struct cv_audit_scan_opts *opts, cv_audit_cell_fn fn,
                                         void *ctx, uint64_t *rows, char *why, size_t why_len);

#endif
