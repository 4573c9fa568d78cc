#ifndef CV_CONFIG_H
#define CV_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "cardvault/client_addr.h"
#include "cardvault/status.h"

/* Runtime configuration: read once from the environment (CARDVAULT_*),
 * optionally overridden by command-line flags, validated, then immutable. */

struct cv_config {
    char *database_url;        /* CARDVAULT_DATABASE_URL: libpq conninfo or URI */
    char *database_url_file;   /* CARDVAULT_DATABASE_URL_FILE: a secret file holding it (read
                                  by cv_cli_read_database_url_file) */
    char *listen_host;         /* from CARDVAULT_LISTEN host:port */
    uint16_t listen_port;      /* default 127.0.0.1:8080 */
    char *ops_listen_host;     /* from CARDVAULT_OPS_LISTEN host:port: health and metrics */
    uint16_t ops_listen_port;  /* default 127.0.0.1:9090 */
    char *kek_file;            /* CARDVAULT_KEK_FILE */
    char *kek_pkcs11_module;   /* CARDVAULT_KEK_PKCS11_MODULE: use a PKCS#11 token instead */
    char *kek_pkcs11_token;    /* CARDVAULT_KEK_PKCS11_TOKEN (token label) */
    char *kek_pkcs11_key;      /* CARDVAULT_KEK_PKCS11_KEY_LABEL */
    char *kek_pkcs11_pin_file; /* CARDVAULT_KEK_PKCS11_PIN_FILE (mode 0600) */
    unsigned http_threads;     /* CARDVAULT_HTTP_THREADS: 0 = a thread per connection (default),
                                  N = an epoll pool of N threads */
    unsigned
        db_writers; /* CARDVAULT_DB_WRITERS: batch writer and batch reader threads, default 1 */
    unsigned per_ip_connections; /* CARDVAULT_MAX_CONNECTIONS_PER_IP, default 128 */
    unsigned
        drain_grace_ms;    /* CARDVAULT_DRAIN_GRACE_MS: /readyz 503, still serving, default 5000 */
    unsigned db_pool_size; /* CARDVAULT_DB_POOL_SIZE, default 8 */
    unsigned max_connections;       /* CARDVAULT_MAX_CONNECTIONS, default 512 */
    unsigned conn_timeout_s;        /* CARDVAULT_CONNECTION_TIMEOUT_S, default 30 */
    unsigned request_deadline_ms;   /* CARDVAULT_REQUEST_DEADLINE_MS: a whole request (headers
                                       and body) must arrive within this, default 10000 */
    long long dek_max_age_s;        /* CARDVAULT_DEK_MAX_AGE_S, default 30 days */
    long long dek_max_uses;         /* CARDVAULT_DEK_MAX_USES, default 2^24 */
    unsigned auth_refresh_ms;       /* CARDVAULT_AUTH_REFRESH_MS, default 1000 */
    unsigned auth_stale_max_ms;     /* CARDVAULT_AUTH_STALE_MAX_MS: refuse API keys when no key
                                       refresh succeeded for this long; 0 (default) = max(30 s,
                                       10 x auth_refresh_ms) */
    long long idempotency_ttl_s;    /* CARDVAULT_IDEMPOTENCY_TTL_S, default 24 h */
    int log_level;                  /* CARDVAULT_LOG_LEVEL debug|info|warn|error */
    unsigned rate_limit_rps;        /* CARDVAULT_RATE_LIMIT_RPS per API key, default 500, 0 = off */
    unsigned rate_limit_burst;      /* CARDVAULT_RATE_LIMIT_BURST, default 2 x rps */
    unsigned auth_failures_per_min; /* CARDVAULT_AUTH_FAILURES_PER_MIN per client address, 20 */
    struct cv_proxy_list trusted_proxies;  /* CARDVAULT_TRUSTED_PROXIES: peers whose forwarding
                                              header names the client; empty by default */
    enum cv_forward_header forward_header; /* CARDVAULT_TRUSTED_PROXY_HEADER: x-forwarded-for
                                              (default) or forwarded */
    /* Tokenize quotas (card_testing.c), token buckets per instance that
     * refill over an hour; 0 = off. */
    unsigned tokenize_quota_per_hour;    /* CARDVAULT_TOKENIZE_QUOTA_PER_HOUR: per key with the read
                                            scope (sk_), default 3600 */
    unsigned tokenize_quota_publishable; /* CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE: per key
                                            without it (pk_), default 500 */
    unsigned tokenize_quota_origin;  /* CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN: per shop origin
                                        header value, default 1000 */
    unsigned card_testing_threshold; /* CARDVAULT_CARD_TESTING_THRESHOLD: distinct cards per key
                                        and BIN + last 4 (or BIN + expiry), 0 = off, default 10 */
    unsigned card_testing_window_s;  /* CARDVAULT_CARD_TESTING_WINDOW_S, default 3600 */
    bool card_testing_block; /* CARDVAULT_CARD_TESTING_BLOCK=0 turns off blocking pk_ keys */
    char *tls_cert_file;     /* CARDVAULT_TLS_CERT (PEM) */
    char *tls_key_file;      /* CARDVAULT_TLS_KEY (PEM) */
    bool allow_plaintext;    /* CARDVAULT_ALLOW_PLAINTEXT=1: plain HTTP beyond loopback */
    char *public_origin;     /* CARDVAULT_PUBLIC_ORIGIN, normalized: the vault's origin as browsers
                                see it; NULL: derived per request from the Host header */
    bool production;         /* CARDVAULT_DEV=1 turns it off: allows core dumps */
    bool allow_owner_role; /* CARDVAULT_ALLOW_OWNER_ROLE=1: serve as the schema owner (dev only) */
    /* CARDVAULT_EXPECT_SYNC_STANDBY=1: the database should have a synchronous
     * standby (a cluster): readiness and metrics say when it runs alone */
    bool expect_sync_standby;
    unsigned audit_anchor_interval_s; /* CARDVAULT_AUDIT_ANCHOR_INTERVAL_S, default 60 */
    /* The relay and its security-code holds (docs/relay.md) */
    char *relay_destinations_file; /* CARDVAULT_RELAY_DESTINATIONS: none means no relay */
    char instance_id[17];          /* CARDVAULT_INSTANCE_ID, [a-z0-9]{1,16}, default "a" */
    unsigned cvc_hold_max_uses;    /* CARDVAULT_CVC_HOLD_MAX_USES, 1..10, default 3 */
    unsigned cvc_hold_max_ttl_s;   /* CARDVAULT_CVC_HOLD_MAX_TTL, 1..3600 s, default 900 */
    unsigned cvc_hold_capacity;    /* CARDVAULT_CVC_HOLD_CAPACITY, 16..1000000, default 10000 */
};

/* Fills cfg from the environment with defaults. On a malformed value returns
 * CV_ERR_CONFIG and writes a one-line reason into why (never a secret). */
CV_MUST_USE cv_status cv_config_from_env(struct cv_config *cfg, char *why, unsigned why_len);
/* Parses "host:port" into cfg (replacing the listen fields). */
CV_MUST_USE cv_status cv_config_set_listen(struct cv_config *cfg, const char *hostport, char *why,
                                           unsigned why_len);
/* Parses "host:port" into the ops listener's fields. */
CV_MUST_USE cv_status cv_config_set_ops_listen(struct cv_config *cfg, const char *hostport,
                                               char *why, unsigned why_len);
/* Checks that what `serve` needs is present. */
CV_MUST_USE cv_status cv_config_require(const struct cv_config *cfg, bool need_db, bool need_kek,
                                        char *why, unsigned why_len);
/* Replaces a string field (takes a copy). */
void cv_config_set_str(char **field, const char *value);
/* Frees the strings; accepts a zeroed struct. */
void cv_config_cleanup(struct cv_config *cfg);

#endif
