#ifndef CV_MIGRATIONS_EMBEDDED_H
#define CV_MIGRATIONS_EMBEDDED_H

#include <stddef.h>

/* The files of migrations/ compiled in at build time by service/migrations_embed.sh,
 * in version order; private to migrate.c. Each text is followed by a NUL
 * that len does not count. */
struct cv_migration_embedded {
    const char *name; /* NNNN_name.sql */
    const char *text;
    size_t len;
};

extern const struct cv_migration_embedded cv_migrations_embedded[];
extern const size_t cv_migrations_embedded_count;

#endif
