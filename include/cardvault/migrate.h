#ifndef CV_MIGRATE_H
#define CV_MIGRATE_H

#include <stddef.h>

#include "cardvault/status.h"

/* Schema migrations: migrations/NNNN_name.sql applied in order, each once,
 * each in its own transaction, recorded in schema_migrations, under a
 * session advisory lock so concurrent runs wait for each other instead of
 * racing. CV_SCHEMA_VERSION (set by the Makefile from the newest file) is
 * the version this binary needs. */

#ifndef CV_SCHEMA_VERSION
#error "CV_SCHEMA_VERSION must be defined by the build"
#endif

/* Default folder: $CARDVAULT_MIGRATIONS_DIR, else NULL: the migrations
 * compiled into the binary (the migrations/ it was built from). */
const char *cv_migrate_default_dir(void);
/* Applies what is missing from dir, or from the compiled-in set when dir is
 * NULL; prints one line per applied file to stdout. On failure writes a
 * one-line reason to why. */
CV_MUST_USE cv_status cv_migrate_run(const char *conninfo, const char *dir, int *applied, char *why,
                                     size_t why_len);
/* The schema version this build requires. */
int cv_migrate_required_version(void);

#endif
