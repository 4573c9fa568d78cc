/* config.c: environment and flags into one validated struct cv_config.
 * A bad value stops the program with one clear line naming the variable;
 * values are never echoed when they might be secrets (the database URL may
 * hold a password). */
#include "cardvault/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "cardvault/origin.h"
#include "cardvault/secbuf.h"

void cv_config_set_str(char **field, const char *value)
{
    free(*field);
    *field = value != NULL ? cv_xstrdup(value) : NULL;
}

static cv_status parse_ll(const char *name, long long min, long long max, long long *out, char *why,
                          unsigned why_len)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return CV_OK;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < min || x > max) {
        snprintf(why, why_len, "%s must be an integer from %lld to %lld", name, min, max);
        return CV_ERR_CONFIG;
    }
    *out = x;
    return CV_OK;
}

static cv_status parse_uint(const char *name, unsigned min, unsigned max, unsigned *out, char *why,
                            unsigned why_len)
{
    long long x = *out;
    CV_TRY(parse_ll(name, min, max, &x, why, why_len));
    *out = (unsigned)x;
    return CV_OK;
}

/* Splits "host:port" or "[ipv6]:port" (RFC 3986's bracketed literal) for
 * the variable `name`; *host is heap, without brackets, the caller frees. */
static cv_status parse_hostport(const char *name, const char *hostport, char **host,
                                uint16_t *port_out, char *why, unsigned why_len)
{
    const char *colon = NULL;
    const char *host_start = hostport;
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        /* Inside the brackets: an IPv6 literal, so hex digits, ':' and '.'
         * (an embedded IPv4); the listener checks it is a valid address. */
        size_t inner = close != NULL ? (size_t)(close - hostport - 1) : 0;
        if (close == NULL || close[1] != ':' || inner == 0 ||
            strspn(hostport + 1, "0123456789abcdefABCDEF:.") != inner ||
            memchr(hostport + 1, ':', inner) == NULL) {
            snprintf(why, why_len, "%s must be host:port or [ipv6]:port, e.g. [::1]:8080", name);
            return CV_ERR_CONFIG;
        }
        host_start = hostport + 1;
        colon = close + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (colon != NULL && memchr(hostport, ':', (size_t)(colon - hostport)) != NULL) {
            snprintf(why, why_len, "%s: an IPv6 address goes in brackets, e.g. [::1]:8080", name);
            return CV_ERR_CONFIG;
        }
    }
    if (colon == NULL || colon == hostport || colon[1] == '\0') {
        snprintf(why, why_len, "%s must be host:port, e.g. 127.0.0.1:8080", name);
        return CV_ERR_CONFIG;
    }
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port < 1 || port > 65535) {
        snprintf(why, why_len, "%s port must be 1-65535", name);
        return CV_ERR_CONFIG;
    }
    size_t hl = (size_t)(colon - host_start) - (host_start != hostport ? 1 : 0);
    *host = cv_xmalloc(hl + 1);
    memcpy(*host, host_start, hl);
    (*host)[hl] = '\0';
    *port_out = (uint16_t)port;
    return CV_OK;
}

cv_status cv_config_set_listen(struct cv_config *cfg, const char *hostport, char *why,
                               unsigned why_len)
{
    char *host = NULL;
    uint16_t port = 0;
    CV_TRY(parse_hostport("CARDVAULT_LISTEN", hostport, &host, &port, why, why_len));
    free(cfg->listen_host);
    cfg->listen_host = host;
    cfg->listen_port = port;
    return CV_OK;
}

cv_status cv_config_set_ops_listen(struct cv_config *cfg, const char *hostport, char *why,
                                   unsigned why_len)
{
    char *host = NULL;
    uint16_t port = 0;
    CV_TRY(parse_hostport("CARDVAULT_OPS_LISTEN", hostport, &host, &port, why, why_len));
    free(cfg->ops_listen_host);
    cfg->ops_listen_host = host;
    cfg->ops_listen_port = port;
    return CV_OK;
}

cv_status cv_config_from_env(struct cv_config *cfg, char *why, unsigned why_len)
{
    memset(cfg, 0, sizeof(*cfg));
    /* An epoll pool: tokenize, read and detokenize no longer hold a thread
     * while their batch is written (the connection is suspended), and 2, 4
     * and 8 threads cost the same CPU per request, about half of a thread
     * per connection on reads (bench/README.md); 8 leaves room for the
     * routes that still hold a thread (relay, list, update, delete). */
    cfg->http_threads = 8;
    /* One writer and one reader thread take the largest batches; measured in
     * bench/README.md (1 beat 2 and 4 on every workload on 2 cores). */
    cfg->db_writers = 1;
    cfg->per_ip_connections = 128;
    cfg->db_pool_size = 8;
    cfg->max_connections = 512;
    cfg->conn_timeout_s = 30;
    cfg->drain_grace_ms = 5000;
    /* Headers plus an 8 KiB body take milliseconds on any real network; 10 s
     * bounds how long a client that trickles bytes holds a connection slot. */
    cfg->request_deadline_ms = 10000;
    cfg->dek_max_age_s = 30LL * 24 * 3600;
    /* NIST SP 800-38D 8.3: at most 2^32 random-nonce encryptions per key;
     * 2^24 keeps the nonce-collision probability below 2^-49. */
    cfg->dek_max_uses = 1LL << 24;
    cfg->auth_refresh_ms = 1000;
    cfg->idempotency_ttl_s = 24 * 3600;
    cfg->log_level = CV_LOG_INFO;
    cfg->rate_limit_rps = 500;
    cfg->auth_failures_per_min = 20;
    cfg->production = true;

    cv_config_set_str(&cfg->database_url, getenv("CARDVAULT_DATABASE_URL"));
    cv_config_set_str(&cfg->database_url_file, getenv("CARDVAULT_DATABASE_URL_FILE"));
    if (cfg->database_url_file != NULL && cfg->database_url_file[0] == '\0')
        cv_config_set_str(&cfg->database_url_file, NULL);
    if (cfg->database_url_file != NULL && cfg->database_url != NULL &&
        cfg->database_url[0] != '\0') {
        snprintf(why, why_len,
                 "set CARDVAULT_DATABASE_URL or CARDVAULT_DATABASE_URL_FILE, not both");
        return CV_ERR_CONFIG;
    }
    cv_config_set_str(&cfg->kek_file, getenv("CARDVAULT_KEK_FILE"));
    cv_config_set_str(&cfg->kek_pkcs11_module, getenv("CARDVAULT_KEK_PKCS11_MODULE"));
    cv_config_set_str(&cfg->kek_pkcs11_token, getenv("CARDVAULT_KEK_PKCS11_TOKEN"));
    cv_config_set_str(&cfg->kek_pkcs11_key, getenv("CARDVAULT_KEK_PKCS11_KEY_LABEL"));
    cv_config_set_str(&cfg->kek_pkcs11_pin_file, getenv("CARDVAULT_KEK_PKCS11_PIN_FILE"));
    const char *listen = getenv("CARDVAULT_LISTEN");
    CV_TRY(cv_config_set_listen(cfg, listen != NULL && *listen != '\0' ? listen : "127.0.0.1:8080",
                                why, why_len));
    const char *ops = getenv("CARDVAULT_OPS_LISTEN");
    CV_TRY(cv_config_set_ops_listen(cfg, ops != NULL && *ops != '\0' ? ops : "127.0.0.1:9090", why,
                                    why_len));
    CV_TRY(parse_uint("CARDVAULT_HTTP_THREADS", 0, 256, &cfg->http_threads, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_DB_WRITERS", 1, 8, &cfg->db_writers, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_MAX_CONNECTIONS_PER_IP", 1, 65536, &cfg->per_ip_connections, why,
                      why_len));
    CV_TRY(parse_uint("CARDVAULT_DRAIN_GRACE_MS", 0, 60000, &cfg->drain_grace_ms, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_DB_POOL_SIZE", 1, 256, &cfg->db_pool_size, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_MAX_CONNECTIONS", 1, 65536, &cfg->max_connections, why, why_len));
    CV_TRY(
        parse_uint("CARDVAULT_CONNECTION_TIMEOUT_S", 1, 3600, &cfg->conn_timeout_s, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_REQUEST_DEADLINE_MS", 500, 300000, &cfg->request_deadline_ms, why,
                      why_len));
    CV_TRY(parse_ll("CARDVAULT_DEK_MAX_AGE_S", 60, 10LL * 365 * 24 * 3600, &cfg->dek_max_age_s, why,
                    why_len));
    CV_TRY(parse_ll("CARDVAULT_DEK_MAX_USES", 1000, 1LL << 32, &cfg->dek_max_uses, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_AUTH_REFRESH_MS", 100, 5000, &cfg->auth_refresh_ms, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_AUTH_STALE_MAX_MS", 0, 3600000, &cfg->auth_stale_max_ms, why,
                      why_len));
    if (cfg->auth_stale_max_ms != 0 &&
        (cfg->auth_stale_max_ms < 1000 || cfg->auth_stale_max_ms < 2 * cfg->auth_refresh_ms)) {
        snprintf(why, why_len,
                 "CARDVAULT_AUTH_STALE_MAX_MS must be 0 (automatic) or at least 1000 and at "
                 "least twice CARDVAULT_AUTH_REFRESH_MS");
        return CV_ERR_CONFIG;
    }
    CV_TRY(parse_ll("CARDVAULT_IDEMPOTENCY_TTL_S", 60, 30LL * 24 * 3600, &cfg->idempotency_ttl_s,
                    why, why_len));

    CV_TRY(parse_uint("CARDVAULT_RATE_LIMIT_RPS", 0, 1000000, &cfg->rate_limit_rps, why, why_len));
    cfg->rate_limit_burst = cfg->rate_limit_rps * 2;
    CV_TRY(
        parse_uint("CARDVAULT_RATE_LIMIT_BURST", 1, 2000000, &cfg->rate_limit_burst, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_AUTH_FAILURES_PER_MIN", 0, 100000, &cfg->auth_failures_per_min,
                      why, why_len));
    CV_TRY(cv_client_addr_parse_proxies(getenv("CARDVAULT_TRUSTED_PROXIES"), &cfg->trusted_proxies,
                                        why, why_len));
    const char *fwd = getenv("CARDVAULT_TRUSTED_PROXY_HEADER");
    if (fwd != NULL && *fwd != '\0') {
        if (strcmp(fwd, "x-forwarded-for") == 0) {
            cfg->forward_header = CV_FORWARD_X_FORWARDED_FOR;
        } else if (strcmp(fwd, "forwarded") == 0) {
            cfg->forward_header = CV_FORWARD_FORWARDED;
        } else {
            snprintf(why, why_len,
                     "CARDVAULT_TRUSTED_PROXY_HEADER must be x-forwarded-for or forwarded");
            return CV_ERR_CONFIG;
        }
    }
    /* A small shop: a few hundred checkouts an hour at most through its
     * publishable key; its server's secret key may tokenize more (imports). */
    cfg->tokenize_quota_per_hour = 3600;
    cfg->tokenize_quota_publishable = 500;
    cfg->tokenize_quota_origin = 1000;
    cfg->card_testing_threshold = 10;
    cfg->card_testing_window_s = 3600;
    CV_TRY(parse_uint("CARDVAULT_TOKENIZE_QUOTA_PER_HOUR", 0, 10000000,
                      &cfg->tokenize_quota_per_hour, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE", 0, 10000000,
                      &cfg->tokenize_quota_publishable, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN", 0, 10000000,
                      &cfg->tokenize_quota_origin, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_CARD_TESTING_THRESHOLD", 0, 32, &cfg->card_testing_threshold, why,
                      why_len));
    if (cfg->card_testing_threshold == 1) {
        snprintf(why, why_len, "CARDVAULT_CARD_TESTING_THRESHOLD must be 0 (off) or 2 to 32");
        return CV_ERR_CONFIG;
    }
    CV_TRY(parse_uint("CARDVAULT_CARD_TESTING_WINDOW_S", 60, 86400, &cfg->card_testing_window_s,
                      why, why_len));
    const char *block = getenv("CARDVAULT_CARD_TESTING_BLOCK");
    if (block != NULL && *block != '\0' && strcmp(block, "0") != 0 && strcmp(block, "1") != 0) {
        snprintf(why, why_len, "CARDVAULT_CARD_TESTING_BLOCK must be 0 or 1");
        return CV_ERR_CONFIG;
    }
    cfg->card_testing_block = block == NULL || strcmp(block, "0") != 0;
    cv_config_set_str(&cfg->relay_destinations_file, getenv("CARDVAULT_RELAY_DESTINATIONS"));
    if (cfg->relay_destinations_file != NULL && cfg->relay_destinations_file[0] == '\0')
        cv_config_set_str(&cfg->relay_destinations_file, NULL);
    const char *instance = getenv("CARDVAULT_INSTANCE_ID");
    if (instance == NULL || instance[0] == '\0')
        instance = "a";
    if (strlen(instance) > 16 ||
        strspn(instance, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(instance)) {
        snprintf(why, why_len, "CARDVAULT_INSTANCE_ID must be 1 to 16 of a-z 0-9");
        return CV_ERR_CONFIG;
    }
    snprintf(cfg->instance_id, sizeof(cfg->instance_id), "%s", instance);
    cfg->cvc_hold_max_uses = 3;
    cfg->cvc_hold_max_ttl_s = 900;
    cfg->cvc_hold_capacity = 10000;
    CV_TRY(parse_uint("CARDVAULT_CVC_HOLD_MAX_USES", 1, 10, &cfg->cvc_hold_max_uses, why, why_len));
    CV_TRY(
        parse_uint("CARDVAULT_CVC_HOLD_MAX_TTL", 1, 3600, &cfg->cvc_hold_max_ttl_s, why, why_len));
    CV_TRY(parse_uint("CARDVAULT_CVC_HOLD_CAPACITY", 16, 1000000, &cfg->cvc_hold_capacity, why,
                      why_len));
    cv_config_set_str(&cfg->tls_cert_file, getenv("CARDVAULT_TLS_CERT"));
    cv_config_set_str(&cfg->tls_key_file, getenv("CARDVAULT_TLS_KEY"));
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        snprintf(why, why_len, "CARDVAULT_TLS_CERT and CARDVAULT_TLS_KEY must be set together");
        return CV_ERR_CONFIG;
    }
    const char *plain = getenv("CARDVAULT_ALLOW_PLAINTEXT");
    cfg->allow_plaintext = plain != NULL && strcmp(plain, "1") == 0;
    const char *public_origin = getenv("CARDVAULT_PUBLIC_ORIGIN");
    if (public_origin != NULL && public_origin[0] != '\0') {
        char norm[CV_ORIGIN_MAX + 1];
        if (cv_origin_normalize(public_origin, strlen(public_origin), norm) != CV_OK) {
            snprintf(why, why_len,
                     "CARDVAULT_PUBLIC_ORIGIN must be an origin, scheme://host[:port] with "
                     "nothing after it, e.g. https://vault.example");
            return CV_ERR_CONFIG;
        }
        cv_config_set_str(&cfg->public_origin, norm);
    }

    const char *owner = getenv("CARDVAULT_ALLOW_OWNER_ROLE");
    if (owner != NULL && *owner != '\0' && strcmp(owner, "0") != 0 && strcmp(owner, "1") != 0) {
        snprintf(why, why_len, "CARDVAULT_ALLOW_OWNER_ROLE must be 0 or 1");
        return CV_ERR_CONFIG;
    }
    cfg->allow_owner_role = owner != NULL && strcmp(owner, "1") == 0;
    const char *expect = getenv("CARDVAULT_EXPECT_SYNC_STANDBY");
    if (expect != NULL && *expect != '\0' && strcmp(expect, "0") != 0 && strcmp(expect, "1") != 0) {
        snprintf(why, why_len, "CARDVAULT_EXPECT_SYNC_STANDBY must be 0 or 1");
        return CV_ERR_CONFIG;
    }
    cfg->expect_sync_standby = expect != NULL && strcmp(expect, "1") == 0;
    cfg->audit_anchor_interval_s = 60;
    CV_TRY(parse_uint("CARDVAULT_AUDIT_ANCHOR_INTERVAL_S", 1, 86400, &cfg->audit_anchor_interval_s,
                      why, why_len));

    const char *lvl = getenv("CARDVAULT_LOG_LEVEL");
    if (lvl != NULL && *lvl != '\0') {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(lvl, names[i]) == 0)
                found = i;
        if (found < 0) {
            snprintf(why, why_len, "CARDVAULT_LOG_LEVEL must be debug, info, warn or error");
            return CV_ERR_CONFIG;
        }
        cfg->log_level = found;
    }
    const char *dev = getenv("CARDVAULT_DEV");
    cfg->production = !(dev != NULL && strcmp(dev, "1") == 0);
    return CV_OK;
}

cv_status cv_config_require(const struct cv_config *cfg, bool need_db, bool need_kek, char *why,
                            unsigned why_len)
{
    if (need_db && (cfg->database_url == NULL || cfg->database_url[0] == '\0')) {
        snprintf(why, why_len,
                 "CARDVAULT_DATABASE_URL is not set (a libpq connection string or URI)");
        return CV_ERR_CONFIG;
    }
    bool pkcs11 = cfg->kek_pkcs11_module != NULL && cfg->kek_pkcs11_module[0] != '\0';
    if (need_kek && pkcs11 &&
        (cfg->kek_pkcs11_token == NULL || cfg->kek_pkcs11_key == NULL ||
         cfg->kek_pkcs11_pin_file == NULL)) {
        snprintf(why, why_len,
                 "CARDVAULT_KEK_PKCS11_MODULE needs CARDVAULT_KEK_PKCS11_TOKEN, "
                 "CARDVAULT_KEK_PKCS11_KEY_LABEL and CARDVAULT_KEK_PKCS11_PIN_FILE");
        return CV_ERR_CONFIG;
    }
    if (need_kek && !pkcs11 && (cfg->kek_file == NULL || cfg->kek_file[0] == '\0')) {
        snprintf(why, why_len, "CARDVAULT_KEK_FILE is not set (path to a 0600 file, 32 bytes hex)");
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

void cv_config_cleanup(struct cv_config *cfg)
{
    if (cfg->database_url != NULL)
        cv_wipe(cfg->database_url, strlen(cfg->database_url));
    free(cfg->database_url);
    free(cfg->database_url_file);
    free(cfg->listen_host);
    free(cfg->ops_listen_host);
    free(cfg->kek_file);
    free(cfg->kek_pkcs11_module);
    free(cfg->kek_pkcs11_token);
    free(cfg->kek_pkcs11_key);
    free(cfg->kek_pkcs11_pin_file);
    free(cfg->tls_cert_file);
    free(cfg->public_origin);
    free(cfg->tls_key_file);
    free(cfg->relay_destinations_file);
    memset(cfg, 0, sizeof(*cfg));
}
