#ifndef CV_SECRET_FILE_H
#define CV_SECRET_FILE_H

#include <stddef.h>

#include "cardvault/secbuf.h"
#include "cardvault/status.h"

/* The one reader of owner-only secret files (the KEK file, the PKCS#11 PIN
 * file). Its rule, the same for every secret:
 *   - The path may be a symbolic link and is followed: Kubernetes and
 *     Docker present secret mounts through links (kek -> ..data/kek). Every
 *     check below applies to the file actually opened (fstat on the open
 *     descriptor, so the link cannot be swapped between check and read).
 *   - That file must be a regular file (not a directory, FIFO or device).
 *   - It must be owned by the process's effective uid, or by root; a file
 *     owned by any other user is refused.
 *   - Its mode must give group and others nothing (0600 or 0400): PCI DSS
 *     3.6.1, fewest custodians. One exception: a file inside
 *     $CREDENTIALS_DIRECTORY (systemd's LoadCredential=, a folder only this
 *     service sees) may show group-read (0440), the mask of the ACL entry
 *     systemd adds for the service's uid; never group-write, never others.
 *   - It must hold at most max_bytes; a longer file is refused, not cut.
 *   - It is read fully into secure memory; on every error path the bytes
 *     read so far are wiped.
 * Error reasons name the file and the problem, never its content. */

/* Reads the secret file at path into *out (a new secbuf, cap max_bytes + 1,
 * len the file's length; free with cv_secbuf_free). `what` names the file in
 * reasons ("KEK file"); `content` says what it must hold, for the reason
 * given when it is longer ("exactly 32 bytes as 64 hex characters").
 * CV_ERR_CONFIG with a one-line reason in why otherwise; *out untouched. */
CV_MUST_USE cv_status cv_secret_file_read(const char *path, const char *what, const char *content,
                                          size_t max_bytes, struct cv_secbuf **out, char *why,
                                          size_t why_len);

#endif
