/* test_config.c: the environment into struct cv_config. Defaults with
 * nothing set; CARDVAULT_LISTEN parsing; every integer variable refusing
 * what is not a whole number in its range, with a one-line reason that names
 * the variable and never echoes a secret (the database URL may carry a
 * password); and cv_config_require's messages. Each test starts from an
 * environment with no CARDVAULT_* variable at all. */
#include "cardvault/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/log.h"
#include "check.h"

extern char **environ;

#define DB_SECRET "s3cr3t-pa55w0rd"

static void clear_cardvault_env(void)
{
    /* unsetenv shifts environ, so restart the scan after each removal. */
    for (;;) {
        char name[256] = "";
        for (char **e = environ; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, "CARDVAULT_", 10) == 0) {
                size_t n = strcspn(*e, "=");
                if (n < sizeof(name)) {
                    memcpy(name, *e, n);
                    name[n] = '\0';
                }
                break;
            }
        }
        if (name[0] == '\0')
            return;
        unsetenv(name);
    }
}

static cv_status load(struct cv_config *cfg, char *why, unsigned why_len)
{
    memset(why, 0, why_len);
    return cv_config_from_env(cfg, why, why_len);
}

static void defaults_with_an_empty_environment(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.database_url == NULL);
    CHECK(cfg.kek_file == NULL);
    CHECK(cfg.kek_pkcs11_module == NULL && cfg.kek_pkcs11_token == NULL &&
          cfg.kek_pkcs11_key == NULL && cfg.kek_pkcs11_pin_file == NULL);
    CHECK(cfg.listen_host != NULL && strcmp(cfg.listen_host, "127.0.0.1") == 0);
    CHECK_EQ_INT(cfg.listen_port, 8080);
    CHECK_EQ_INT(cfg.http_threads, 8); /* an epoll pool of 8 threads */
    CHECK_EQ_INT(cfg.db_writers, 1);
    CHECK_EQ_INT(cfg.per_ip_connections, 128);
    CHECK_EQ_INT(cfg.drain_grace_ms, 5000);
    CHECK_EQ_INT(cfg.db_pool_size, 8);
    CHECK_EQ_INT(cfg.max_connections, 512);
    CHECK_EQ_INT(cfg.conn_timeout_s, 30);
    CHECK_EQ_INT(cfg.request_deadline_ms, 10000);
    /* The ops listener stays on loopback unless an operator moves it. */
    CHECK(cfg.ops_listen_host != NULL && strcmp(cfg.ops_listen_host, "127.0.0.1") == 0);
    CHECK_EQ_INT(cfg.ops_listen_port, 9090);
    CHECK_EQ_INT(cfg.dek_max_age_s, 30LL * 24 * 3600);
    CHECK_EQ_INT(cfg.dek_max_uses, 1LL << 24);
    CHECK_EQ_INT(cfg.auth_refresh_ms, 1000);
    CHECK_EQ_INT(cfg.idempotency_ttl_s, 24 * 3600);
    CHECK_EQ_INT(cfg.rate_limit_rps, 500);
    CHECK_EQ_INT(cfg.rate_limit_burst, 1000);
    CHECK_EQ_INT(cfg.auth_failures_per_min, 20);
    CHECK_EQ_INT(cfg.tokenize_quota_per_hour, 3600);
    CHECK_EQ_INT(cfg.tokenize_quota_publishable, 500);
    CHECK_EQ_INT(cfg.tokenize_quota_origin, 1000);
    CHECK_EQ_INT(cfg.card_testing_threshold, 10);
    CHECK_EQ_INT(cfg.card_testing_window_s, 3600);
    CHECK(cfg.card_testing_block);
    CHECK(cfg.tls_cert_file == NULL && cfg.tls_key_file == NULL);
    CHECK(!cfg.allow_plaintext);
    CHECK_EQ_INT(cfg.log_level, CV_LOG_INFO);
    CHECK(cfg.production);
    cv_config_cleanup(&cfg);
    CHECK(cfg.listen_host == NULL); /* cleanup leaves a zeroed struct */
    cv_config_cleanup(&cfg);        /* and accepts one */
}

static void empty_values_mean_the_default(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    setenv("CARDVAULT_LISTEN", "", 1);
    setenv("CARDVAULT_HTTP_THREADS", "", 1);
    setenv("CARDVAULT_LOG_LEVEL", "", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cfg.listen_port, 8080);
    CHECK_EQ_INT(cfg.http_threads, 8);
    CHECK_EQ_INT(cfg.log_level, CV_LOG_INFO);
    cv_config_cleanup(&cfg);
}

static void values_from_the_environment(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    setenv("CARDVAULT_DATABASE_URL", "postgresql:///cardvault?host=/tmp", 1);
    setenv("CARDVAULT_KEK_FILE", "/etc/cardvault/kek", 1);
    setenv("CARDVAULT_LISTEN", "0.0.0.0:9443", 1);
    setenv("CARDVAULT_OPS_LISTEN", "10.0.0.5:9100", 1);
    setenv("CARDVAULT_REQUEST_DEADLINE_MS", "2500", 1);
    setenv("CARDVAULT_HTTP_THREADS", "256", 1);
    setenv("CARDVAULT_DB_POOL_SIZE", "1", 1);
    setenv("CARDVAULT_DEK_MAX_USES", "4294967296", 1); /* 2^32: the NIST SP 800-38D ceiling */
    setenv("CARDVAULT_AUTH_REFRESH_MS", "5000", 1);
    setenv("CARDVAULT_LOG_LEVEL", "debug", 1);
    setenv("CARDVAULT_DEV", "1", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.database_url != NULL &&
          strcmp(cfg.database_url, "postgresql:///cardvault?host=/tmp") == 0);
    CHECK(cfg.kek_file != NULL && strcmp(cfg.kek_file, "/etc/cardvault/kek") == 0);
    CHECK(strcmp(cfg.listen_host, "0.0.0.0") == 0);
    CHECK_EQ_INT(cfg.listen_port, 9443);
    CHECK(strcmp(cfg.ops_listen_host, "10.0.0.5") == 0);
    CHECK_EQ_INT(cfg.ops_listen_port, 9100);
    CHECK_EQ_INT(cfg.request_deadline_ms, 2500);
    CHECK_EQ_INT(cfg.http_threads, 256);
    CHECK_EQ_INT(cfg.db_pool_size, 1);
    CHECK_EQ_INT(cfg.dek_max_uses, 1LL << 32);
    CHECK_EQ_INT(cfg.auth_refresh_ms, 5000);
    CHECK_EQ_INT(cfg.log_level, CV_LOG_DEBUG);
    CHECK(!cfg.production);
    cv_config_cleanup(&cfg);

    /* Only exactly "1" turns development mode on: production is the default. */
    setenv("CARDVAULT_DEV", "true", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.production);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

/* ---- CARDVAULT_LISTEN ---------------------------------------------------------------- */

static void listen_accepts_host_and_port(void)
{
    static const struct {
        const char *in;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"localhost:1", "localhost", 1},
        {"0.0.0.0:65535", "0.0.0.0", 65535},
        {"vault.internal:443", "vault.internal", 443},
        {"[::1]:8080", "::1", 8080},
        {"[::]:9090", "::", 9090},
        {"[fd00::5]:1", "fd00::5", 1},
        {"[::ffff:127.0.0.1]:8443", "::ffff:127.0.0.1", 8443},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_config cfg;
        char why[256];
        clear_cardvault_env();
        setenv("CARDVAULT_LISTEN", cases[i].in, 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
        CHECK(cfg.listen_host != NULL && strcmp(cfg.listen_host, cases[i].host) == 0);
        CHECK_EQ_INT(cfg.listen_port, cases[i].port);
        cv_config_cleanup(&cfg);
    }
    clear_cardvault_env();
}

static void listen_refuses_malformed_values(void)
{
    static const char *const bad[] = {
        "localhost",   /* no colon */
        "localhost:",  /* missing port */
        ":8080",       /* missing host */
        "127.0.0.1:0", /* port 0 */
        "127.0.0.1:70000",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:80x",
        "127.0.0.1:8080 ",
        "127.0.0.1:99999999999999999999999",
        ":",
        "::1:8080",       /* IPv6 without brackets: which colon ends it? */
        "[::1]",          /* no port */
        "[::1]:",         /* empty port */
        "[::1]8080",      /* no colon after the bracket */
        "[]:8080",        /* empty brackets */
        "[::1:8080",      /* unclosed */
        "[127.0.0.1]:80", /* brackets hold IPv6 only */
        "[::1%lo]:80",    /* zone ids are not taken */
        "[::1]:0",
        "[::1]:8080x",
        "[::1]]:8080",
    };
    static const char *const vars[] = {"CARDVAULT_LISTEN", "CARDVAULT_OPS_LISTEN"};
    for (size_t v = 0; v < 2; v++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct cv_config cfg;
            char why[256];
            clear_cardvault_env();
            setenv(vars[v], bad[i], 1);
            cv_status st = load(&cfg, why, sizeof(why));
            if (st != CV_ERR_CONFIG)
                fprintf(stderr, "  %s=\"%s\" accepted\n", vars[v], bad[i]);
            CHECK_EQ_INT(st, CV_ERR_CONFIG);
            CHECK(strstr(why, vars[v]) != NULL);
            cv_config_cleanup(&cfg);
        }
    }
    clear_cardvault_env();
}

static void set_listen_failure_keeps_the_previous_address(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_config_set_listen(&cfg, "10.0.0.1:7000", why, sizeof(why)), CV_OK);
    CHECK(strcmp(cfg.listen_host, "10.0.0.1") == 0 && cfg.listen_port == 7000);
    CHECK_EQ_INT(cv_config_set_listen(&cfg, "10.0.0.2:0", why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strcmp(cfg.listen_host, "10.0.0.1") == 0 && cfg.listen_port == 7000);
    cv_config_cleanup(&cfg);
}

/* ---- integers ------------------------------------------------------------------------------ */

static const char *const int_vars[] = {"CARDVAULT_HTTP_THREADS",
                                       "CARDVAULT_DB_WRITERS",
                                       "CARDVAULT_MAX_CONNECTIONS_PER_IP",
                                       "CARDVAULT_DRAIN_GRACE_MS",
                                       "CARDVAULT_DB_POOL_SIZE",
                                       "CARDVAULT_MAX_CONNECTIONS",
                                       "CARDVAULT_CONNECTION_TIMEOUT_S",
                                       "CARDVAULT_DEK_MAX_AGE_S",
                                       "CARDVAULT_DEK_MAX_USES",
                                       "CARDVAULT_AUTH_REFRESH_MS",
                                       "CARDVAULT_IDEMPOTENCY_TTL_S",
                                       "CARDVAULT_RATE_LIMIT_RPS",
                                       "CARDVAULT_RATE_LIMIT_BURST",
                                       "CARDVAULT_AUTH_FAILURES_PER_MIN",
                                       "CARDVAULT_AUTH_STALE_MAX_MS",
                                       "CARDVAULT_REQUEST_DEADLINE_MS",
                                       "CARDVAULT_TOKENIZE_QUOTA_PER_HOUR",
                                       "CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE",
                                       "CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN",
                                       "CARDVAULT_CARD_TESTING_THRESHOLD",
                                       "CARDVAULT_CARD_TESTING_WINDOW_S"};

static void bad_integers_name_their_variable(void)
{
    static const char *const bad[] = {
        "abc", "12abc", "1e3", "0x10", "4 ", "99999999999999999999999", "-99999999999999999999999",
        "-1",  "3.0"};
    for (size_t v = 0; v < sizeof(int_vars) / sizeof(int_vars[0]); v++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct cv_config cfg;
            char why[256];
            clear_cardvault_env();
            setenv("CARDVAULT_DATABASE_URL", "postgresql://vault:" DB_SECRET "@db/vault", 1);
            setenv(int_vars[v], bad[i], 1);
            cv_status st = load(&cfg, why, sizeof(why));
            if (st != CV_ERR_CONFIG)
                fprintf(stderr, "  %s=\"%s\" accepted\n", int_vars[v], bad[i]);
            CHECK_EQ_INT(st, CV_ERR_CONFIG);
            CHECK(strstr(why, int_vars[v]) != NULL);
            CHECK(strstr(why, DB_SECRET) == NULL);
            CHECK(strchr(why, '\n') == NULL);
            cv_config_cleanup(&cfg);
        }
    }
    clear_cardvault_env();
}

static void integers_outside_their_range_are_refused(void)
{
    static const struct {
        const char *var;
        const char *too_low;
        const char *too_high;
    } cases[] = {
        {"CARDVAULT_HTTP_THREADS", "-1", "257"},
        {"CARDVAULT_DB_WRITERS", "0", "9"},
        {"CARDVAULT_MAX_CONNECTIONS_PER_IP", "0", "65537"},
        {"CARDVAULT_DRAIN_GRACE_MS", "-1", "60001"},
        {"CARDVAULT_DB_POOL_SIZE", "0", "257"},
        {"CARDVAULT_MAX_CONNECTIONS", "0", "65537"},
        {"CARDVAULT_CONNECTION_TIMEOUT_S", "0", "3601"},
        {"CARDVAULT_REQUEST_DEADLINE_MS", "499", "300001"},
        {"CARDVAULT_DEK_MAX_AGE_S", "59", "315360001"},
        {"CARDVAULT_DEK_MAX_USES", "999", "4294967297"},
        {"CARDVAULT_AUTH_REFRESH_MS", "99", "5001"}, /* revocation within 5 s */
        {"CARDVAULT_IDEMPOTENCY_TTL_S", "59", "2592001"},
        {"CARDVAULT_RATE_LIMIT_BURST", "0", "2000001"},
        {"CARDVAULT_AUTH_STALE_MAX_MS", "-1", "3600001"},
        {"CARDVAULT_TOKENIZE_QUOTA_PER_HOUR", "-1", "10000001"},
        {"CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_PUBLISHABLE", "-1", "10000001"},
        {"CARDVAULT_TOKENIZE_QUOTA_PER_HOUR_ORIGIN", "-1", "10000001"},
        {"CARDVAULT_CARD_TESTING_THRESHOLD", "1", "33"}, /* 1 would flag every card */
        {"CARDVAULT_CARD_TESTING_WINDOW_S", "59", "86401"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *vals[] = {cases[i].too_low, cases[i].too_high};
        for (size_t k = 0; k < 2; k++) {
            struct cv_config cfg;
            char why[256];
            clear_cardvault_env();
            setenv(cases[i].var, vals[k], 1);
            cv_status st = load(&cfg, why, sizeof(why));
            if (st != CV_ERR_CONFIG)
                fprintf(stderr, "  %s=%s accepted\n", cases[i].var, vals[k]);
            CHECK_EQ_INT(st, CV_ERR_CONFIG);
            CHECK(strstr(why, cases[i].var) != NULL);
            cv_config_cleanup(&cfg);
        }
    }
    clear_cardvault_env();
}

static void integer_bounds_themselves_are_accepted(void)
{
    static const struct {
        const char *var;
        const char *value;
    } cases[] = {
        {"CARDVAULT_HTTP_THREADS", "0"},
        {"CARDVAULT_HTTP_THREADS", "256"},
        {"CARDVAULT_DB_WRITERS", "8"},
        {"CARDVAULT_MAX_CONNECTIONS", "65536"},
        {"CARDVAULT_CONNECTION_TIMEOUT_S", "3600"},
        {"CARDVAULT_REQUEST_DEADLINE_MS", "500"},
        {"CARDVAULT_REQUEST_DEADLINE_MS", "300000"},
        {"CARDVAULT_DEK_MAX_AGE_S", "60"},
        {"CARDVAULT_DEK_MAX_USES", "1000"},
        {"CARDVAULT_AUTH_REFRESH_MS", "100"},
        {"CARDVAULT_RATE_LIMIT_RPS", "0"},
        {"CARDVAULT_AUTH_FAILURES_PER_MIN", "0"},
        {"CARDVAULT_TOKENIZE_QUOTA_PER_HOUR", "0"},
        {"CARDVAULT_CARD_TESTING_THRESHOLD", "0"},
        {"CARDVAULT_CARD_TESTING_THRESHOLD", "32"},
        {"CARDVAULT_CARD_TESTING_WINDOW_S", "60"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cv_config cfg;
        char why[256];
        clear_cardvault_env();
        setenv(cases[i].var, cases[i].value, 1);
        cv_status st = load(&cfg, why, sizeof(why));
        if (st != CV_OK)
            fprintf(stderr, "  %s=%s refused: %s\n", cases[i].var, cases[i].value, why);
        CHECK_EQ_INT(st, CV_OK);
        cv_config_cleanup(&cfg);
    }
    clear_cardvault_env();
}

/* The API-key cache may serve through failed refreshes for at most this
 * long. 0 (the default) means max(30 s, 10 refresh intervals); a set value
 * must leave room for at least two refreshes and be at least 1 s. */
static void auth_stale_bound_is_checked_against_the_refresh(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cfg.auth_stale_max_ms, 0);
    cv_config_cleanup(&cfg);

    setenv("CARDVAULT_AUTH_STALE_MAX_MS", "10000", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cfg.auth_stale_max_ms, 10000);
    cv_config_cleanup(&cfg);

    static const char *const refused[][2] = {
        {"999", "1000"},  /* under 1 s */
        {"1999", "1000"}, /* fewer than two refreshes */
        {"9999", "5000"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        setenv("CARDVAULT_AUTH_STALE_MAX_MS", refused[i][0], 1);
        setenv("CARDVAULT_AUTH_REFRESH_MS", refused[i][1], 1);
        cv_status st = load(&cfg, why, sizeof(why));
        if (st != CV_ERR_CONFIG)
            fprintf(stderr, "  stale bound %s with refresh %s accepted\n", refused[i][0],
                    refused[i][1]);
        CHECK_EQ_INT(st, CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_AUTH_STALE_MAX_MS") != NULL);
        cv_config_cleanup(&cfg);
    }
    setenv("CARDVAULT_AUTH_STALE_MAX_MS", "10000", 1);
    setenv("CARDVAULT_AUTH_REFRESH_MS", "5000", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

/* The database URL comes from the environment or from a file, never both
 * (which would win would be a guess). */
static void database_url_and_its_file_exclude_each_other(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    setenv("CARDVAULT_DATABASE_URL_FILE", "/run/secrets/db-url", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.database_url_file != NULL &&
          strcmp(cfg.database_url_file, "/run/secrets/db-url") == 0);
    cv_config_cleanup(&cfg);
    setenv("CARDVAULT_DATABASE_URL", "postgresql://vault:" DB_SECRET "@db/vault", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_DATABASE_URL_FILE") != NULL);
    CHECK(strstr(why, DB_SECRET) == NULL);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

static void log_level_and_tls_pairing_are_checked(void)
{
    struct cv_config cfg;
    char why[256];
    const char *bad_levels[] = {"verbose", "DEBUG", "info ", "0"};
    for (size_t i = 0; i < sizeof(bad_levels) / sizeof(bad_levels[0]); i++) {
        clear_cardvault_env();
        setenv("CARDVAULT_LOG_LEVEL", bad_levels[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_LOG_LEVEL") != NULL);
        cv_config_cleanup(&cfg);
    }
    const char *levels[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        clear_cardvault_env();
        setenv("CARDVAULT_LOG_LEVEL", levels[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
        CHECK_EQ_INT(cfg.log_level, i);
        cv_config_cleanup(&cfg);
    }
    /* A certificate without its key (or the reverse) cannot serve TLS. */
    clear_cardvault_env();
    setenv("CARDVAULT_TLS_CERT", "/etc/cardvault/cert.pem", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_TLS_KEY") != NULL);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
    setenv("CARDVAULT_TLS_KEY", "/etc/cardvault/key.pem", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_TLS_CERT") != NULL);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

static void reason_is_truncated_to_the_buffer(void)
{
    struct cv_config cfg;
    char why[12];
    clear_cardvault_env();
    setenv("CARDVAULT_HTTP_THREADS", "many", 1);
    memset(why, 'x', sizeof(why));
    CHECK_EQ_INT(cv_config_from_env(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(memchr(why, '\0', sizeof(why)) != NULL);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

/* ---- cv_config_require ------------------------------------------------------------------------
 */

static void require_names_what_is_missing(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cv_config_require(&cfg, false, false, why, sizeof(why)), CV_OK);

    why[0] = '\0';
    CHECK_EQ_INT(cv_config_require(&cfg, true, false, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_DATABASE_URL") != NULL);
    why[0] = '\0';
    CHECK_EQ_INT(cv_config_require(&cfg, false, true, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_KEK_FILE") != NULL);

    /* Set but empty is as good as missing. */
    cv_config_set_str(&cfg.database_url, "");
    cv_config_set_str(&cfg.kek_file, "");
    CHECK_EQ_INT(cv_config_require(&cfg, true, false, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_DATABASE_URL") != NULL);
    CHECK_EQ_INT(cv_config_require(&cfg, false, true, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_KEK_FILE") != NULL);

    cv_config_set_str(&cfg.database_url, "postgresql://vault:" DB_SECRET "@db/vault");
    CHECK_EQ_INT(cv_config_require(&cfg, true, true, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_KEK_FILE") != NULL);
    CHECK(strstr(why, DB_SECRET) == NULL);
    cv_config_set_str(&cfg.kek_file, "/etc/cardvault/kek");
    CHECK_EQ_INT(cv_config_require(&cfg, true, true, why, sizeof(why)), CV_OK);

    /* A PKCS#11 module instead of a file needs its token, key label and PIN file. */
    cv_config_set_str(&cfg.kek_file, NULL);
    cv_config_set_str(&cfg.kek_pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so");
    CHECK_EQ_INT(cv_config_require(&cfg, false, true, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_KEK_PKCS11_PIN_FILE") != NULL);
    cv_config_set_str(&cfg.kek_pkcs11_token, "cardvault");
    cv_config_set_str(&cfg.kek_pkcs11_key, "kek");
    CHECK_EQ_INT(cv_config_require(&cfg, false, true, why, sizeof(why)), CV_ERR_CONFIG);
    cv_config_set_str(&cfg.kek_pkcs11_pin_file, "/etc/cardvault/pin");
    CHECK_EQ_INT(cv_config_require(&cfg, false, true, why, sizeof(why)), CV_OK);
    cv_config_set_str(&cfg.kek_file, "/etc/cardvault/kek");

    cv_config_set_str(&cfg.kek_file, NULL);
    CHECK(cfg.kek_file == NULL);
    cv_config_cleanup(&cfg);
}

/* Blocking keys caught card testing is on unless turned off with 0. */
static void card_testing_block_is_0_or_1(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    setenv("CARDVAULT_CARD_TESTING_BLOCK", "0", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(!cfg.card_testing_block);
    cv_config_cleanup(&cfg);
    static const char *const bad[] = {"yes", "off", "2", " 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clear_cardvault_env();
        setenv("CARDVAULT_CARD_TESTING_BLOCK", bad[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_CARD_TESTING_BLOCK") != NULL);
        cv_config_cleanup(&cfg);
    }
    clear_cardvault_env();
}

/* The service's database role and the audit anchors (docs/operations.md). */
static void owner_role_and_anchor_interval(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(!cfg.allow_owner_role);
    CHECK_EQ_INT(cfg.audit_anchor_interval_s, 60);
    cv_config_cleanup(&cfg);
    setenv("CARDVAULT_ALLOW_OWNER_ROLE", "1", 1);
    setenv("CARDVAULT_AUDIT_ANCHOR_INTERVAL_S", "1", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.allow_owner_role);
    CHECK_EQ_INT(cfg.audit_anchor_interval_s, 1);
    cv_config_cleanup(&cfg);
    static const char *const bad_owner[] = {"yes", "true", "2", " 1"};
    for (size_t i = 0; i < sizeof(bad_owner) / sizeof(bad_owner[0]); i++) {
        clear_cardvault_env();
        setenv("CARDVAULT_ALLOW_OWNER_ROLE", bad_owner[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_ALLOW_OWNER_ROLE") != NULL);
        cv_config_cleanup(&cfg);
    }
    static const char *const bad_interval[] = {"0", "86401", "-1", "1m"};
    for (size_t i = 0; i < sizeof(bad_interval) / sizeof(bad_interval[0]); i++) {
        clear_cardvault_env();
        setenv("CARDVAULT_AUDIT_ANCHOR_INTERVAL_S", bad_interval[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_AUDIT_ANCHOR_INTERVAL_S") != NULL);
        cv_config_cleanup(&cfg);
    }
    clear_cardvault_env();
}

static void trusted_proxies_parsed_strictly(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(cv_config_from_env(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cfg.trusted_proxies.n, 0); /* none by default: headers ignored */
    CHECK_EQ_INT(cfg.forward_header, CV_FORWARD_X_FORWARDED_FOR);
    cv_config_cleanup(&cfg);

    setenv("CARDVAULT_TRUSTED_PROXIES", " 10.0.0.1 ,192.168.0.0/16,fd00::/8", 1);
    setenv("CARDVAULT_TRUSTED_PROXY_HEADER", "forwarded", 1);
    CHECK_EQ_INT(cv_config_from_env(&cfg, why, sizeof(why)), CV_OK);
    CHECK_EQ_INT(cfg.trusted_proxies.n, 3);
    CHECK_EQ_INT(cfg.forward_header, CV_FORWARD_FORWARDED);
    cv_config_cleanup(&cfg);

    static const char *const bad[] = {"10.0.0.1/8", "10.0.0.0/33", "0.0.0.0/0",        "10.0.0.1,",
                                      ",10.0.0.1",  "localhost",   "10.0.0.1 10.0.0.2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("CARDVAULT_TRUSTED_PROXIES", bad[i], 1);
        why[0] = '\0';
        CHECK_EQ_INT(cv_config_from_env(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_TRUSTED_PROXIES") != NULL);
        cv_config_cleanup(&cfg);
    }
    setenv("CARDVAULT_TRUSTED_PROXIES", "10.0.0.1", 1);
    setenv("CARDVAULT_TRUSTED_PROXY_HEADER", "X-Real-IP", 1);
    CHECK_EQ_INT(cv_config_from_env(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
    CHECK(strstr(why, "CARDVAULT_TRUSTED_PROXY_HEADER") != NULL);
    cv_config_cleanup(&cfg);
    clear_cardvault_env();
}

/* CARDVAULT_PUBLIC_ORIGIN: absent means "derive from Host"; set, it is
 * kept normalized; anything but a bare origin stops the service. */
static void public_origin_is_normalized_or_refused(void)
{
    struct cv_config cfg;
    char why[256];
    clear_cardvault_env();
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.public_origin == NULL);
    cv_config_cleanup(&cfg);
    setenv("CARDVAULT_PUBLIC_ORIGIN", "HTTPS://Vault.Example:443", 1);
    CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_OK);
    CHECK(cfg.public_origin != NULL && strcmp(cfg.public_origin, "https://vault.example") == 0);
    cv_config_cleanup(&cfg);
    static const char *const bad[] = {"https://vault.example/", "vault.example", "*",
                                      "https://vault.example/v1", "null"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("CARDVAULT_PUBLIC_ORIGIN", bad[i], 1);
        CHECK_EQ_INT(load(&cfg, why, sizeof(why)), CV_ERR_CONFIG);
        CHECK(strstr(why, "CARDVAULT_PUBLIC_ORIGIN") != NULL);
        cv_config_cleanup(&cfg);
    }
    clear_cardvault_env();
}

int main(void)
{
    RUN(defaults_with_an_empty_environment);
    RUN(card_testing_block_is_0_or_1);
    RUN(empty_values_mean_the_default);
    RUN(values_from_the_environment);
    RUN(listen_accepts_host_and_port);
    RUN(listen_refuses_malformed_values);
    RUN(set_listen_failure_keeps_the_previous_address);
    RUN(bad_integers_name_their_variable);
    RUN(integers_outside_their_range_are_refused);
    RUN(integer_bounds_themselves_are_accepted);
    RUN(auth_stale_bound_is_checked_against_the_refresh);
    RUN(database_url_and_its_file_exclude_each_other);
    RUN(log_level_and_tls_pairing_are_checked);
    RUN(reason_is_truncated_to_the_buffer);
    RUN(require_names_what_is_missing);
    RUN(public_origin_is_normalized_or_refused);
    RUN(owner_role_and_anchor_interval);
    RUN(trusted_proxies_parsed_strictly);
    clear_cardvault_env();
    return check_summary("config");
}
