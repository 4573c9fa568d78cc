/* kek.c: picks and opens the KEK provider the configuration asks for. Kept
 * apart from keyprovider*.c so providers know nothing of configuration, and
 * from config.c so configuration knows nothing of cryptography. */
#include "cardvault/kek.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/secbuf.h"

cv_status cv_kek_open_configured(const struct cv_config *cfg, struct cv_keyprovider **out,
                                 char *why, size_t why_len)
{
    if (cfg->kek_pkcs11_module != NULL && cfg->kek_pkcs11_module[0] != '\0')
        return cv_keyprovider_pkcs11_open(cfg->kek_pkcs11_module, cfg->kek_pkcs11_token,
                                          cfg->kek_pkcs11_key, cfg->kek_pkcs11_pin_file, out, why,
                                          why_len);
    return cv_keyprovider_file_open(cfg->kek_file, out, why, why_len);
}

cv_status cv_kek_open_pkcs11_spec(const char *spec, struct cv_keyprovider **out, char *why,
                                  size_t why_len)
{
    char *copy = cv_xstrdup(spec);
    const char *module = NULL, *token = NULL, *key = NULL, *pin = NULL;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        if (strcmp(item, "module") == 0)
            module = eq + 1;
        else if (strcmp(item, "token") == 0)
            token = eq + 1;
        else if (strcmp(item, "key") == 0)
            key = eq + 1;
        else if (strcmp(item, "pin-file") == 0)
            pin = eq + 1;
    }
    cv_status st = CV_ERR_CONFIG;
    if (module == NULL || token == NULL || key == NULL || pin == NULL)
        snprintf(why, why_len,
                 "a PKCS#11 KEK is given as module=PATH,token=LABEL,key=LABEL,pin-file=PATH");
    else
        st = cv_keyprovider_pkcs11_open(module, token, key, pin, out, why, why_len);
    free(copy);
    return st;
}

void cv_kek_describe(const struct cv_config *cfg, char *out, size_t cap)
{
    if (cfg->kek_pkcs11_module != NULL && cfg->kek_pkcs11_module[0] != '\0')
        snprintf(out, cap, "pkcs11:%s/%s", cfg->kek_pkcs11_token ? cfg->kek_pkcs11_token : "?",
                 cfg->kek_pkcs11_key ? cfg->kek_pkcs11_key : "?");
    else
        snprintf(out, cap, "file:%s", cfg->kek_file ? cfg->kek_file : "?");
}
