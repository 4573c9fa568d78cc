#ifndef CV_KEK_H
#define CV_KEK_H

#include <stddef.h>

#include "cardvault/config.h"
#include "cardvault/keyprovider.h"
#include "cardvault/status.h"

/* Which KEK provider the configuration names, and how to open it: a file
 * (CARDVAULT_KEK_FILE) or a PKCS#11 token (CARDVAULT_KEK_PKCS11_*). Also
 * parses the provider specifications operators give to `keys rotate-kek`. */

/* Opens the configured KEK. CV_ERR_CONFIG with a one-line reason. */
CV_MUST_USE cv_status cv_kek_open_configured(const struct cv_config *cfg,
                                             struct cv_keyprovider **out, char *why,
                                             size_t why_len);
/* Opens "module=PATH,token=LABEL,key=LABEL,pin-file=PATH" (a PKCS#11 KEK). */
CV_MUST_USE cv_status cv_kek_open_pkcs11_spec(const char *spec, struct cv_keyprovider **out,
                                              char *why, size_t why_len);
/* A short description for logs and `keys status`: "file:/path" or "pkcs11:TOKEN/KEY". */
void cv_kek_describe(const struct cv_config *cfg, char *out, size_t cap);

#endif
