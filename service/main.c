/* main.c: the command line. `serve` starts the subsystems in order (config,
 * process hardening, KEK, database, schema and durability checks, keyring,
 * auth cache, HTTP API and ops listeners), waits for SIGTERM or SIGINT, and
 * stops them in reverse.
 * The other commands are operator tools that share the same configuration;
 * main.c parses the common options and dispatches to them (cli_*.c, each
 * with its own --help text).
 * Exit codes: 0 success, 1 failure, 2 usage error. Every failure prints one
 * line naming what is wrong; no secret is ever printed except the API keys a
 * create command exists to hand over. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cardvault/app.h"
#include "cardvault/auth.h"
#include "cardvault/cli.h"
#include "cardvault/card_testing.h"
#include "cardvault/cvc_hold.h"
#include "cardvault/config.h"
#include "cardvault/housekeeping.h"
#include "cardvault/http_server.h"
#include "cardvault/json_codec.h"
#include "cardvault/kek.h"
#include "cardvault/keyprovider.h"
#include "cardvault/keyring.h"
#include "cardvault/log.h"
#include "cardvault/metrics.h"
#include "cardvault/migrate.h"
#include "cardvault/readiness.h"
#include "cardvault/tls_pair.h"
#include "cardvault/relay_client.h"
#include "cardvault/relay_dest.h"
#include "cardvault/relay_wiring.h"
#include "cardvault/secbuf.h"
#include "cardvault/store.h"

/* The build's version (Makefile: `make CV_VERSION=X`, git describe, or its
 * VERSION default); only a build outside the Makefile lacks it. */
#ifndef CV_VERSION
#define CV_VERSION "unknown"
#endif

#define SECURE_HEAP_BYTES (1u << 20)
#define DRAIN_MS          20000
#define DRAIN_CANCEL_MS   3000
#define READINESS_TTL_MS  1000 /* one readiness probe per second at most */

static const char usage_main[] =
    "usage: cardvault COMMAND [OPTIONS]\n"
    "\n"
    "Card-tokenization vault: stores card numbers encrypted under envelope keys,\n"
    "hands out tokens, never stores security codes.\n"
    "\n"
    "commands:\n"
    "  serve                      run the HTTP service\n"
    "  migrate                    apply database migrations (safe to run concurrently)\n"
    "  merchant create NAME       create a merchant and its three API keys\n"
    "  key create --merchant ID --scopes LIST [--allowed-origin ORIGIN]...\n"
    "                             create an extra API key (scopes: "
    "tokenize,read,delete,detokenize)\n"
    "  key revoke PREFIX          revoke a key by its 12-character prefix (effective within 5 s)\n"
    "  key origins PREFIX [--set ORIGIN[,ORIGIN...]]\n"
    "                             show or replace the web origins a publishable key may be\n"
    "                             framed by (docs/elements.md)\n"
    "  elements-sri               print the integrity value (sha384-...) of /elements.js\n"
    "  errors                     print every error the HTTP API answers (JSON)\n"
    "  keys status|rotate-dek|rotate-kek|reencrypt|destroy-dek\n"
    "                             the key lifecycle (see cardvault keys --help)\n"
    "  audit verify|export|storage  check the audit hash chain, export events, scan for PANs\n"
    "  tokens purge-expired         delete tokens past their lifetime (also done every minute)\n"
    "  import --merchant ID --job ID (--csv FILE | --query SQL) --pan-col NAME ...\n"
    "                             move a shop's stored cards into the vault (resumable)\n"
    "  scan [--db] [--mysql-url-file PATH] [PATH...]\n"
    "                             search a shop's database (PostgreSQL, MySQL/MariaDB) and files\n"
    "                             for card data left behind\n"
    "                             (see docs/migrating.md)\n"
    "  probe [--ops-url URL] [healthz|readyz]\n"
    "                             health check of a running service's ops listener: exit 0\n"
    "                             on 200 within 2 s, else 1 (a container HEALTHCHECK)\n"
    "\n"
    "options for every command (override the environment):\n"
    "  --database-url URL         CARDVAULT_DATABASE_URL: libpq connection string or URI;\n"
    "                             on the command line it is visible to every local user\n"
    "                             (/proc/PID/cmdline): prefer the environment or a file\n"
    "  --database-url-file PATH   CARDVAULT_DATABASE_URL_FILE: read it from a file (owned by\n"
    "                             the service's user or root, mode 0600/0400)\n"
    "  --kek-file PATH            CARDVAULT_KEK_FILE: 32-byte key, hex or base64, mode 0600\n"
    "  --listen HOST:PORT         CARDVAULT_LISTEN (serve only), default 127.0.0.1:8080\n"
    "  --ops-listen HOST:PORT     CARDVAULT_OPS_LISTEN (serve only): /healthz, /readyz and\n"
    "                             /metrics, plain HTTP, default 127.0.0.1:9090\n"
    "  -h, --help                 this text; `cardvault COMMAND --help` for one command\n"
    "  --version                  the version, and the OpenSSL, libmicrohttpd and libpq\n"
    "                             versions the process runs with\n"
    "\n";

/* The rest of the main help (two strings: C11 compilers need not take one
 * longer than 4095 characters). */
static const char usage_main_env[] =
    "other environment (defaults in brackets):\n"
    "  CARDVAULT_HTTP_THREADS (0 = a thread per connection; N = epoll pool of N)\n"
    "  CARDVAULT_DB_POOL_SIZE (8), CARDVAULT_DB_WRITERS (1 batch writer + 1 batch reader)\n"
    "  CARDVAULT_MAX_CONNECTIONS (512), CARDVAULT_MAX_CONNECTIONS_PER_IP (128),\n"
    "  CARDVAULT_CONNECTION_TIMEOUT_S (30: idle), CARDVAULT_REQUEST_DEADLINE_MS (10000:\n"
    "    a whole request must arrive within it), CARDVAULT_DRAIN_GRACE_MS (5000),\n"
    "  CARDVAULT_TLS_CERT, CARDVAULT_TLS_KEY (PEM files: HTTPS, TLS 1.2+ AEAD only),\n"
    "  CARDVAULT_ALLOW_PLAINTEXT=1 (plain HTTP on a non-loopback address),\n"
    "  CARDVAULT_RATE_LIMIT_RPS (500 per API key, 0 = off), CARDVAULT_RATE_LIMIT_BURST (2 x rps),\n"
    "  CARDVAULT_AUTH_FAILURES_PER_MIN (20 failed keys per client address),\n"
    "  CARDVAULT_TRUSTED_PROXIES (none; IPs/CIDRs whose X-Forwarded-For names the client),\n"
    "  CARDVAULT_TRUSTED_PROXY_HEADER (x-forwarded-for; or forwarded),\n"
    "  CARDVAULT_IDEMPOTENCY_TTL_S (86400),\n"
    "  CARDVAULT_DEK_MAX_AGE_S (2592000 = 30 days), CARDVAULT_DEK_MAX_USES (16777216),\n"
    "  CARDVAULT_AUTH_REFRESH_MS (1000), CARDVAULT_LOG_LEVEL (info),\n"
    "  CARDVAULT_AUTH_STALE_MAX_MS (0 = max(30000, 10 x refresh): refuse API keys, 503,\n"
    "    when keys could not be reloaded for this long),\n"
    "  CARDVAULT_KEK_PKCS11_MODULE, _TOKEN, _KEY_LABEL, _PIN_FILE (KEK in a PKCS#11 token\n"
    "    instead of CARDVAULT_KEK_FILE; see docs/key-management.md),\n"
    "  CARDVAULT_PUBLIC_ORIGIN (the vault's origin as browsers see it, e.g.\n"
    "    https://vault.example; default: derived from the Host header),\n"
    "  CARDVAULT_MIGRATIONS_DIR, CARDVAULT_DEV=1 (allow core dumps; never in production).\n";

static const char usage_serve[] =
    "usage: cardvault serve [--listen HOST:PORT] [--ops-listen HOST:PORT]\n"
    "                       [--database-url-file PATH] [--kek-file PATH]\n"
    "\n"
    "The database URL comes from CARDVAULT_DATABASE_URL, CARDVAULT_DATABASE_URL_FILE or\n"
    "--database-url-file PATH; --database-url URL also works but shows the URL (and its\n"
    "password) to every local user in /proc/PID/cmdline.\n"
    "Runs the HTTP API. Refuses to start when the database is not fully migrated,\n"
    "when synchronous_commit is off (or, with a synchronous standby named, neither on nor\n"
    "remote_apply), or when the KEK does not match the vault.\n"
    "Stops on SIGTERM or SIGINT after finishing requests in flight (at most 20 s).\n";

static const char usage_migrate[] =
    "usage: cardvault migrate [--dir DIR] [--database-url-file PATH]\n"
    "\n"
    "The database URL comes from CARDVAULT_DATABASE_URL, CARDVAULT_DATABASE_URL_FILE or\n"
    "--database-url-file PATH; --database-url URL also works but shows the URL (and its\n"
    "password) to every local user in /proc/PID/cmdline.\n"
    "Applies migrations/NNNN_*.sql in order, each once, each in a transaction,\n"
    "recorded in schema_migrations. Concurrent runs wait on an advisory lock.\n";

enum opt_id {
    OPT_DB = 1000,
    OPT_DB_FILE,
    OPT_KEK,
    OPT_LISTEN,
    OPT_OPS_LISTEN,
    OPT_DIR,
    OPT_MERCHANT,
    OPT_SCOPES,
    OPT_SINCE,
    OPT_NEW_KEK,
    OPT_FROM_DEK,
    OPT_BATCH,
    OPT_CONFIRM,
    OPT_EXPECT,
    OPT_ALLOWED_ORIGIN,
    OPT_SET,
};

/* Which command-specific options a command accepts (bit = opt_id - OPT_DIR). */
#define ALLOW(o) (1u << ((o)-OPT_DIR))

/* Parses the options common to every command plus those `allowed`; returns
 * -1 to continue, or an exit code (0 after --help, 2 on a usage error). */
#define OPT_EXTRA 3000

/* Common options are always allowed; command-specific ones by `allowed`. */
static bool option_allowed(unsigned allowed, int c)
{
    int bit = c - OPT_DIR;
    if (bit < 0 || bit >= 32)
        return true;
    return ((allowed >> (unsigned)bit) & 1u) != 0;
}
#define COMMON_OPTS 18

static int parse_options(struct cv_cli *cli, int argc, char **argv, const char *usage,
                         unsigned allowed, const struct cv_cli_optdef *extra)
{
    static const struct option common[COMMON_OPTS] = {
        {"database-url", required_argument, NULL, OPT_DB},
        {"database-url-file", required_argument, NULL, OPT_DB_FILE},
        {"kek-file", required_argument, NULL, OPT_KEK},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"ops-listen", required_argument, NULL, OPT_OPS_LISTEN},
        {"dir", required_argument, NULL, OPT_DIR},
        {"merchant", required_argument, NULL, OPT_MERCHANT},
        {"scopes", required_argument, NULL, OPT_SCOPES},
        {"since", required_argument, NULL, OPT_SINCE},
        {"new-kek-file", required_argument, NULL, OPT_NEW_KEK},
        {"from-dek", required_argument, NULL, OPT_FROM_DEK},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"confirm", no_argument, NULL, OPT_CONFIRM},
        {"expect", required_argument, NULL, OPT_EXPECT},
        {"allowed-origin", required_argument, NULL, OPT_ALLOWED_ORIGIN},
        {"set", required_argument, NULL, OPT_SET},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* The common options, then the command's own (import, scan). */
    struct option opts[COMMON_OPTS + CV_CLI_EXTRA_MAX];
    size_t nopts = COMMON_OPTS - 1;
    memcpy(opts, common, sizeof(common));
    for (size_t i = 0; extra != NULL && extra[i].name != NULL && i < CV_CLI_EXTRA_MAX; i++) {
        opts[nopts].name = extra[i].name;
        opts[nopts].has_arg = extra[i].has_arg ? required_argument : no_argument;
        opts[nopts].flag = NULL;
        opts[nopts].val = OPT_EXTRA + (int)i;
        nopts++;
    }
    memset(&opts[nopts], 0, sizeof(opts[0]));
    char why[256];
    bool db_url_given = false, db_file_given = false;
    opterr = 0;
    optind = 1;
    int c, index = -1;
    /* Options are parsed once, on the main thread, before any other starts. */
    /* NOLINTNEXTLINE(concurrency-mt-unsafe) */
    while ((c = getopt_long(argc, argv, "h", opts, &index)) != -1) {
        if (c >= OPT_EXTRA && extra != NULL) {
            const struct cv_cli_optdef *d = &extra[c - OPT_EXTRA];
            if (d->index >= 0 && d->index < CV_CLI_EXTRA_MAX)
                cli->x[d->index] = d->has_arg ? optarg : "1";
            index = -1;
            continue;
        }
        if (!option_allowed(allowed, c)) {
            char msg[96];
            snprintf(msg, sizeof(msg), "option --%s does not apply to this command",
                     opts[index].name);
            return cv_cli_usage_error(msg);
        }
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            return 0;
        case OPT_DB:
            if (db_file_given)
                return cv_cli_usage_error("give --database-url or --database-url-file, not both");
            db_url_given = true;
            cv_config_set_str(&cli->cfg.database_url, optarg);
            cv_config_set_str(&cli->cfg.database_url_file, NULL); /* the flag wins */
            /* Blank our copy in argv: /proc/PID/cmdline shows it no longer,
             * though it did from exec until here. */
            cv_wipe(optarg, strlen(optarg));
            cv_log(CV_LOG_WARN, "database_url_on_command_line",
                   CV_LS("effect", "visible to every local user in /proc/PID/cmdline; use "
                                   "CARDVAULT_DATABASE_URL or --database-url-file"));
            break;
        case OPT_DB_FILE:
            if (db_url_given)
                return cv_cli_usage_error("give --database-url or --database-url-file, not both");
            db_file_given = true;
            cv_config_set_str(&cli->cfg.database_url_file, optarg);
            if (cli->cfg.database_url != NULL) /* the flag wins over the environment */
                cv_wipe(cli->cfg.database_url, strlen(cli->cfg.database_url));
            cv_config_set_str(&cli->cfg.database_url, NULL);
            break;
        case OPT_KEK:
            cv_config_set_str(&cli->cfg.kek_file, optarg);
            break;
        case OPT_LISTEN:
            if (cv_config_set_listen(&cli->cfg, optarg, why, sizeof(why)) != CV_OK)
                return cv_cli_usage_error(why);
            break;
        case OPT_OPS_LISTEN:
            if (cv_config_set_ops_listen(&cli->cfg, optarg, why, sizeof(why)) != CV_OK)
                return cv_cli_usage_error(why);
            break;
        case OPT_DIR:
            cli->dir = optarg;
            break;
        case OPT_MERCHANT:
            cli->merchant = optarg;
            break;
        case OPT_SCOPES:
            cli->scopes = optarg;
            break;
        case OPT_SINCE:
            cli->since = optarg;
            break;
        case OPT_NEW_KEK:
            cli->new_kek_file = optarg;
            break;
        case OPT_FROM_DEK:
            cli->from_dek = optarg;
            break;
        case OPT_BATCH:
            cli->batch = optarg;
            break;
        case OPT_CONFIRM:
            cli->confirm = true;
            break;
        case OPT_EXPECT:
            cli->expect = optarg;
            break;
        case OPT_ALLOWED_ORIGIN:
            if (cli->n_origin_args == CV_CLI_ORIGIN_ARGS_MAX)
                return cv_cli_usage_error("too many --allowed-origin options");
            cli->origin_args[cli->n_origin_args++] = optarg;
            break;
        case OPT_SET:
            cli->set_origins = optarg;
            break;
        default: {
            char msg[160];
            if (optopt != 0)
                snprintf(msg, sizeof(msg), "unknown option -%c", optopt);
            else
                snprintf(msg, sizeof(msg), "unknown or incomplete option %.100s", argv[optind - 1]);
            return cv_cli_usage_error(msg);
        }
        }
        index = -1;
    }
    cli->argc = argc - optind;
    cli->argv = argv + optind;
    return -1;
}

static int cmd_migrate(struct cv_cli *cli)
{
    char why[512];
    if (cv_config_require(&cli->cfg, true, false, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return 1;
    }
    int applied = 0;
    const char *dir = cli->dir != NULL ? cli->dir : cv_migrate_default_dir();
    if (cv_migrate_run(cli->cfg.database_url, dir, &applied, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return 1;
    }
    struct json_t *out = cv_cli_json_object();
    cv_cli_json_set_str(out, "event", "migrations_done");
    cv_cli_json_set_int(out, "applied", applied);
    cv_cli_json_set_int(out, "schema_version", cv_migrate_required_version());
    return cv_cli_print_json(out) == CV_OK ? 0 : 1;
}

/* Blocks the stop signals and SIGHUP (reload the TLS certificate) in every
 * thread; main waits for them with sigwait. */
static void block_stop_signals(sigset_t *set)
{
    /* A shell starts background jobs with SIGINT ignored; an ignored signal is
     * discarded, never delivered to sigwait, so restore the default first. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* SIGHUP: the API listener takes the certificate and key files again
 * (rotated by certbot, cert-manager, ...); a pair that fails keeps the old
 * one serving. */
static void reload_tls(struct cv_http_server *http, bool tls, struct cv_metrics *metrics)
{
    if (!tls) {
        cv_log(CV_LOG_INFO, "tls_reload_skipped", CV_LS("reason", "CARDVAULT_TLS_CERT is not set"));
        return;
    }
    struct cv_tls_pair_info pair;
    char why[256];
    if (cv_http_server_reload_tls(http, &pair, why, sizeof(why)) != CV_OK) {
        cv_metrics_count_tls_reload(metrics, false);
        cv_log(CV_LOG_ERROR, "tls_reload_refused", CV_LS("reason", why),
               CV_LS("effect", "the previous certificate keeps serving"));
        return;
    }
    cv_metrics_count_tls_reload(metrics, true);
    char not_after[32];
    struct tm tm;
    gmtime_r(&pair.not_after, &tm);
    strftime(not_after, sizeof(not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cv_log(CV_LOG_INFO, "tls_reloaded", CV_LS("subject", pair.subject),
           CV_LS("not_after", not_after), CV_LS("sha256", pair.fingerprint));
}

/* The keyring's way back to the configured KEK after `keys rotate-kek`. */
static cv_status reopen_kek(void *ctx, struct cv_keyprovider **out, char *why, size_t why_len)
{
    return cv_kek_open_configured(ctx, out, why, why_len);
}

static int cmd_serve(struct cv_cli *cli)
{
    char why[512];
    struct cv_app app;
    struct cv_keyprovider *kp = NULL;
    struct cv_http_server *http = NULL;
    struct cv_http_server *ops = NULL;
    struct cv_readiness *readiness = NULL;
    struct cv_housekeeping *chores = NULL;
    struct cv_card_testing *card_testing = NULL;
    struct cv_relay_destinations destinations = {0};
    struct cv_holds *holds = NULL;
    bool relay_client = false;
    sigset_t stop;
    int rc = 1;
    memset(&app, 0, sizeof(app));
    atomic_init(&app.draining, false);
    app.config = &cli->cfg;

    if (cli->argc != 0)
        return cv_cli_usage_error("serve takes no arguments");
    if (cv_config_require(&cli->cfg, true, true, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return 1;
    }
    if (cli->cfg.ops_listen_port == cli->cfg.listen_port &&
        strcmp(cli->cfg.ops_listen_host, cli->cfg.listen_host) == 0) {
        cv_cli_fail("CARDVAULT_OPS_LISTEN must differ from CARDVAULT_LISTEN");
        return 1;
    }
    cv_log_set_level((enum cv_log_level)cli->cfg.log_level);
    if (cli->cfg.production && cv_secbuf_harden_process() != CV_OK) {
        cv_cli_fail("cannot disable core dumps (setrlimit/prctl refused)");
        return 1;
    }
    block_stop_signals(&stop);
    bool heap_locked = false;
    if (cv_secbuf_init_secure_heap(SECURE_HEAP_BYTES, &heap_locked) != CV_OK)
        cv_log(CV_LOG_WARN, "secure_heap_unavailable",
               CV_LS("effect", "secrets use the ordinary heap; still wiped on free"));
    else if (!heap_locked)
        cv_cli_warn_heap_not_locked();
    if (cv_kek_open_configured(&cli->cfg, &kp, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    char reason[200] = "";
    if (cv_store_open(cli->cfg.database_url, cli->cfg.db_pool_size, &app.store, reason,
                      sizeof(reason)) != CV_OK) {
        snprintf(why, sizeof(why), "cannot connect to CARDVAULT_DATABASE_URL: %s", reason);
        cv_cli_fail(why);
        goto out;
    }
    int version = 0;
    if (cv_store_schema_version(app.store, &version) != CV_OK) {
        cv_cli_fail("cannot read the schema version from the database");
        goto out;
    }
    if (version != cv_migrate_required_version()) {
        snprintf(why, sizeof(why),
                 "the database is not fully migrated (schema version %d, this build needs %d): "
                 "run `cardvault migrate` first",
                 version, cv_migrate_required_version());
        cv_cli_fail(why);
        goto out;
    }
    struct cv_store_durability dur;
    if (cv_store_check_durability(app.store, &dur) != CV_OK) {
        cv_cli_fail("cannot read the database's durability settings");
        goto out;
    }
    bool fsync_on = dur.fsync_on;
    /* synchronous_commit off, or local/remote_write with a synchronous
     * standby named, would acknowledge a token a crash or a failover can
     * lose (docs/operations.md); every reconnect is checked again. */
    char rule[320];
    if (cv_store_require_durable(app.store, rule, sizeof(rule)) != CV_OK) {
        snprintf(why, sizeof(why), "%s; refusing to start", rule);
        cv_cli_fail(why);
        goto out;
    }
    bool privileged_role = false; /* superuser or schema owner: docs/operations.md */
    if (cv_store_check_role(app.store, cli->cfg.allow_owner_role, &privileged_role, why,
                            sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    if (privileged_role)
        cv_log(CV_LOG_WARN, "owner_role_allowed", CV_LS("detail", why));
    struct cv_keyring_limits limits = {cli->cfg.dek_max_age_s, cli->cfg.dek_max_uses};
    if (cv_keyring_open(app.store, kp, &limits, reopen_kek, &cli->cfg, &app.keyring, why,
                        sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    if (cv_keyring_start_refresh(app.keyring) != CV_OK) {
        cv_cli_fail("cannot start the key refresh thread");
        goto out;
    }
    if (!fsync_on)
        cv_log(CV_LOG_WARN, "fsync_off",
               CV_LS("effect", "PostgreSQL runs with fsync=off: committed tokens can be lost on "
                               "power failure; acceptable for tests only"));
    if (cv_auth_open_bounded(app.store, cli->cfg.auth_refresh_ms, cli->cfg.auth_stale_max_ms,
                             &app.auth) != CV_OK) {
        cv_cli_fail("cannot load API keys from the database");
        goto out;
    }
    if (cv_store_start_batching(app.store, cli->cfg.db_writers) != CV_OK) {
        cv_cli_fail("cannot start the database writer threads");
        goto out;
    }
    app.metrics = cv_metrics_new();
    if (cv_housekeeping_start(app.store, app.metrics, 60, cli->cfg.audit_anchor_interval_s,
                              &chores) != CV_OK) {
        cv_cli_fail("cannot start the housekeeping thread");
        goto out;
    }
    cv_metrics_set_build_info(app.metrics, CV_VERSION, cv_secbuf_openssl_version(),
                              cv_http_server_library_version());
    cv_handler_deps_init(&app.handlers, app.store, app.keyring, app.metrics, &app.draining,
                         cli->cfg.idempotency_ttl_s);
    readiness = cv_readiness_new(READINESS_TTL_MS, app.metrics);
    app.handlers.readiness = readiness;
    struct cv_card_testing_limits ct_limits = {
        .key_per_hour = cli->cfg.tokenize_quota_per_hour,
        .publishable_per_hour = cli->cfg.tokenize_quota_publishable,
        .origin_per_hour = cli->cfg.tokenize_quota_origin,
        .threshold = cli->cfg.card_testing_threshold,
        .window_s = cli->cfg.card_testing_window_s,
        .block = cli->cfg.card_testing_block,
    };
    card_testing = cv_card_testing_new(&ct_limits, app.metrics, NULL);
    app.handlers.card_testing = card_testing;
    app.handlers.expect_sync_standby = cli->cfg.expect_sync_standby;
    /* The relay: the operator's destinations (none without a file), the
     * outbound client, and the security-code holds it takes codes from. */
    if (cli->cfg.relay_destinations_file != NULL &&
        cv_relay_destinations_load(cli->cfg.relay_destinations_file, &destinations, why,
                                   sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    if (cv_relay_client_init() != CV_OK) {
        cv_cli_fail("cannot initialise the relay's HTTPS client");
        goto out;
    }
    relay_client = true;
    struct cv_hold_limits hold_limits = {
        .default_uses = 1,
        .max_uses = cli->cfg.cvc_hold_max_uses,
        .default_ttl_s = cli->cfg.cvc_hold_max_ttl_s < 300 ? cli->cfg.cvc_hold_max_ttl_s : 300,
        .max_ttl_s = cli->cfg.cvc_hold_max_ttl_s,
        .capacity = cli->cfg.cvc_hold_capacity,
        .instance = cli->cfg.instance_id,
    };
    bool holds_locked = false;
    if (cv_holds_open(&hold_limits, NULL, NULL, &holds, &holds_locked) != CV_OK ||
        cv_holds_start_sweeper(holds) != CV_OK) {
        cv_cli_fail("cannot set up the security-code holds");
        goto out;
    }
    if (!holds_locked)
        cv_log(CV_LOG_WARN, "cvc_holds_not_locked",
               CV_LS("why", "mlock refused (raise the memlock limit, LimitMEMLOCK=)"));
    struct cv_relay_wiring relay_wiring = {&destinations, holds};
    cv_relay_wiring_install(&app.handlers, &relay_wiring);
    cv_log(CV_LOG_INFO, "relay_ready", CV_LI("destinations", (long long)destinations.n),
           CV_LS("instance_id", cli->cfg.instance_id),
           CV_LI("cvc_hold_capacity", cli->cfg.cvc_hold_capacity),
           CV_LB("cvc_holds_locked", holds_locked));
    if (cv_http_server_start(&app, &http, why, sizeof(why)) != CV_OK ||
        cv_http_server_start_ops(&app, &ops, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        goto out;
    }
    cv_log(CV_LOG_INFO, "service_started", CV_LS("listen_host", cli->cfg.listen_host),
           CV_LI("listen_port", cli->cfg.listen_port),
           CV_LS("ops_listen_host", cli->cfg.ops_listen_host),
           CV_LI("ops_listen_port", cli->cfg.ops_listen_port),
           CV_LI("request_deadline_ms", cli->cfg.request_deadline_ms),
           CV_LS("kek_provider", cv_keyprovider_name(kp)),
           CV_LS("http_mode", cli->cfg.http_threads == 0 ? "thread-per-connection" : "epoll-pool"),
           CV_LI("http_threads", cli->cfg.http_threads), CV_LI("db_writers", cli->cfg.db_writers),
           CV_LI("db_pool_size", cli->cfg.db_pool_size), CV_LI("schema_version", version),
           CV_LB("fsync", fsync_on), CV_LB("production", cli->cfg.production));
    int sig = 0;
    while (sigwait(&stop, &sig) == 0 && sig == SIGHUP)
        reload_tls(http, cli->cfg.tls_cert_file != NULL, app.metrics);
    cv_log(CV_LOG_INFO, "service_stopping", CV_LS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    atomic_store(&app.draining, true);
    if (cli->cfg.drain_grace_ms > 0) {
        /* /readyz now answers 503: give load balancers time to notice
         * before the listening socket closes. */
        struct timespec grace = {(time_t)(cli->cfg.drain_grace_ms / 1000),
                                 (long)(cli->cfg.drain_grace_ms % 1000) * 1000000L};
        nanosleep(&grace, NULL);
    }
    if (!cv_http_server_drain(http, DRAIN_MS)) {
        /* Bounded: requests stuck in the database past the deadline are
         * cancelled there, answer with an error, and the drain ends. A
         * COMMIT waiting for a synchronous standby is cancelled too (it
         * would wait as long as the standby is gone) and answers 503
         * commit_unconfirmed, never a success (pg.c). */
        cv_store_cancel_busy(app.store);
        (void)cv_http_server_drain(http, DRAIN_CANCEL_MS);
    }
    rc = 0;
out:
    /* The ops listener answered /readyz 503 through the drain; it goes first. */
    cv_http_server_stop(ops);
    cv_http_server_stop(http);
    cv_readiness_free(readiness);
    if (app.store != NULL)
        cv_store_cancel_busy(app.store); /* a housekeeping or key refresh query, if any */
    cv_housekeeping_stop(chores);
    cv_auth_close(app.auth);
    cv_keyring_close(app.keyring);
    cv_store_close(app.store);
    cv_keyprovider_free(kp);
    cv_card_testing_free(card_testing);
    cv_holds_close(holds); /* every held security code wiped */
    cv_relay_destinations_free(&destinations);
    if (relay_client)
        cv_relay_client_shutdown();
    cv_metrics_free(app.metrics);
    if (rc == 0)
        cv_log_plain(CV_LOG_INFO, "service_stopped");
    return rc;
}

/* `cardvault --version`: this build, then the libraries as loaded (a
 * security update of one changes these lines without a rebuild). */
static int print_version(void)
{
    char libpq[32];
    cv_store_libpq_version(libpq, sizeof(libpq));
    printf("cardvault %s\nopenssl %s\nlibmicrohttpd %s\nlibpq %s\n", CV_VERSION,
           cv_secbuf_openssl_version(), cv_http_server_library_version(), libpq);
    return 0;
}

int main(int argc, char **argv)
{
    struct cv_cli cli;
    char why[256];
    memset(&cli, 0, sizeof(cli));
    setvbuf(stdout, NULL, _IOLBF, 0);
    cv_json_init();
    if (argc < 2)
        return cv_cli_usage_error("missing COMMAND");
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        fputs(usage_main_env, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
        return print_version();
    if (cv_config_from_env(&cli.cfg, why, sizeof(why)) != CV_OK) {
        cv_cli_fail(why);
        return 1;
    }
    struct {
        const char *name;
        const char *usage;
        unsigned allowed;
        int (*run)(struct cv_cli *);
        const struct cv_cli_optdef *extra;
    } const commands[] = {
        {"serve", usage_serve, 0, cmd_serve, NULL},
        {"migrate", usage_migrate, ALLOW(OPT_DIR), cmd_migrate, NULL},
        {"merchant", cv_cli_merchant_usage, 0, cv_cli_merchant, NULL},
        {"key", cv_cli_key_usage,
         ALLOW(OPT_MERCHANT) | ALLOW(OPT_SCOPES) | ALLOW(OPT_ALLOWED_ORIGIN) | ALLOW(OPT_SET),
         cv_cli_key, NULL},
        {"elements-sri", cv_cli_elements_sri_usage, 0, cv_cli_elements_sri, NULL},
        {"errors", cv_cli_errors_usage, 0, cv_cli_errors, NULL},
        {"keys", cv_cli_keys_usage,
         ALLOW(OPT_NEW_KEK) | ALLOW(OPT_FROM_DEK) | ALLOW(OPT_BATCH) | ALLOW(OPT_CONFIRM),
         cv_cli_keys, NULL},
        {"audit", cv_cli_audit_usage, ALLOW(OPT_SINCE) | ALLOW(OPT_EXPECT), cv_cli_audit, NULL},
        {"tokens", cv_cli_tokens_usage, 0, cv_cli_tokens, NULL},
        {"import", cv_cli_import_usage, ALLOW(OPT_MERCHANT) | ALLOW(OPT_BATCH), cv_cli_import,
         cv_cli_import_opts},
        {"scan", cv_cli_scan_usage, 0, cv_cli_scan, cv_cli_scan_opts},
        {"probe", cv_cli_probe_usage, 0, cv_cli_probe, cv_cli_probe_opts},
    };
    int rc = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        /* Operator commands print their result as JSON on stdout; their log
         * lines go to stderr so the two never mix. */
        cv_log_to_stderr(commands[i].run != cmd_serve);
        rc = parse_options(&cli, argc - 1, argv + 1, commands[i].usage, commands[i].allowed,
                           commands[i].extra);
        if (rc == -1 && cv_cli_read_database_url_file(&cli.cfg) != CV_OK)
            rc = 1;
        if (rc == -1)
            rc = commands[i].run(&cli);
        break;
    }
    if (rc == -1) {
        char msg[128];
        snprintf(msg, sizeof(msg), cmd[0] == '-' ? "unknown option %.64s" : "unknown command %.64s",
                 cmd);
        rc = cv_cli_usage_error(msg);
    }
    cv_config_cleanup(&cli.cfg);
    return rc;
}
