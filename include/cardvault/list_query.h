#ifndef CV_LIST_QUERY_H
#define CV_LIST_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cardvault/handler.h"
#include "cardvault/status.h"

/* GET /v1/tokens: the strict parser of its query string and the list
 * cursor. Pure: no allocation, no I/O, no log. Parameters (each at most
 * once; anything else is CV_ERR_INVALID_LIST_QUERY):
 *   limit          1..CV_LIST_LIMIT_MAX, decimal without leading zeros
 *   cursor         a next_cursor from an earlier answer (else CV_ERR_INVALID_CURSOR)
 *   fingerprint    fp_ + 22 base62
 *   created[gte]   Unix seconds, 0..253402300799 (tokens made at or after)
 *   created[lt]    Unix seconds (tokens made before)
 *   metadata[KEY]  one metadata filter: KEY as metadata.h allows, a value of
 *                  at most CV_META_VALUE_MAX bytes (equality)
 * Values and names are never copied into an error. */

/* A cursor: "cur_" + 16 lowercase hex digits (the row's created time in
 * microseconds since 1970) + the 22 characters of its token after "tok_". */
#define CV_LIST_CURSOR_LEN (4 + 16 + CV_TOKEN_RANDOM_CHARS)

/* Starts a query: the default limit, nothing seen. */
void cv_list_query_init(struct cv_list_req *q);
/* Adds one parameter as MHD reports it (value NULL when the part had no
 * '='). Returns the first error so far, which is also kept in q->error;
 * after an error later parameters are ignored. */
cv_status cv_list_query_add(struct cv_list_req *q, const char *name, const char *value);
/* The query's verdict: CV_OK, or the first error met. */
CV_MUST_USE cv_status cv_list_query_finish(const struct cv_list_req *q);

/* Writes the cursor of the row (created_us, token) to out (NUL-terminated).
 * False when token is not a token or created_us is negative. */
bool cv_list_cursor_encode(int64_t created_us, const char *token, char out[CV_LIST_CURSOR_LEN + 1]);
/* Reads a cursor back; CV_ERR_INVALID_CURSOR unless it is exactly one that
 * cv_list_cursor_encode can write. */
CV_MUST_USE cv_status cv_list_cursor_decode(const char *s, size_t len, int64_t *created_us,
                                            char token[CV_TOKEN_LEN + 1]);

#endif
