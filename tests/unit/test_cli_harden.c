/* test_cli_harden.c: every operator command that handles secrets (API keys
 * it prints, card numbers the storage scan may find, working keys, the
 * database password) hardens its process as `serve` does before it opens the
 * database: RLIMIT_CORE 0 and not dumpable (no core file; /proc/PID/mem and
 * ptrace refused to other processes of the same user). Each command's real
 * entry point runs in a child process against a database address that
 * refuses the connection at once (port 1 on loopback); the child then
 * reports its own dumpable flag and core limit. No hook in the service: the
 * hardening cannot be undone within a process, so what the child reports
 * after the command returned is what the command set. With CARDVAULT_DEV=1
 * (production false) commands leave the process as it was, as serve does. */
#include "cardvault/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define NO_DB "postgresql://127.0.0.1:1/none?connect_timeout=2"

struct command {
    const char *name;
    int (*run)(struct cv_cli *);
    const char *argv[3];
    int argc;
    const char *merchant, *scopes;
};

static const struct command commands[] = {
    {"merchant create", cv_cli_merchant, {"create", "Shop"}, 2, NULL, NULL},
    {"key create", cv_cli_key, {"create"}, 1, "mer_0123456789abcdef01234567", "read"},
    {"key revoke", cv_cli_key, {"revoke", "sk_012345678"}, 2, NULL, NULL},
    {"audit storage", cv_cli_audit, {"storage"}, 1, NULL, NULL},
    {"audit verify", cv_cli_audit, {"verify"}, 1, NULL, NULL},
    {"audit export", cv_cli_audit, {"export"}, 1, NULL, NULL},
    {"keys status", cv_cli_keys, {"status"}, 1, NULL, NULL},
};

/* Runs cmd in a child; returns the child's (dumpable, core limit) report,
 * or false when the child could not report. */
static bool run_in_child(const struct command *cmd, bool production, int *dumpable,
                         unsigned long long *core)
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        close(fds[0]);
        struct cv_cli cli;
        char args[3][64];
        char *argv[3] = {NULL, NULL, NULL};
        memset(&cli, 0, sizeof(cli));
        cli.cfg.production = production;
        cv_config_set_str(&cli.cfg.database_url, NO_DB);
        for (int i = 0; i < cmd->argc; i++) {
            snprintf(args[i], sizeof(args[i]), "%s", cmd->argv[i]);
            argv[i] = args[i];
        }
        cli.argc = cmd->argc;
        cli.argv = argv;
        cli.merchant = cmd->merchant;
        cli.scopes = cmd->scopes;
        /* Allow core files first (up to the hard limit), so that a limit of
         * 0 afterwards is the command's doing. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_CORE, &rl) == 0 && rl.rlim_max != 0) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_CORE, &rl);
        }
        (void)cmd->run(&cli); /* fails: nothing listens on port 1 */
        long long report[2] = {prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), -1};
        if (getrlimit(RLIMIT_CORE, &rl) == 0)
            report[1] = (long long)rl.rlim_cur;
        ssize_t n = write(fds[1], report, sizeof(report));
        _exit(n == (ssize_t)sizeof(report) ? 0 : 1);
    }
    close(fds[1]);
    long long report[2];
    ssize_t n = read(fds[0], report, sizeof(report));
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof(report))
        return false;
    *dumpable = (int)report[0];
    *core = (unsigned long long)report[1];
    return true;
}

static bool parent_is_dumpable(void)
{
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1)
        return true;
    fprintf(stderr, "  skipped: this test process is already not dumpable\n");
    return false;
}

static void secret_commands_harden_the_process(void)
{
    if (!parent_is_dumpable())
        return;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        int dumpable = -1;
        unsigned long long core = 1;
        bool reported = run_in_child(&commands[i], true, &dumpable, &core);
        CHECK(reported);
        if (reported && (dumpable != 0 || core != 0)) {
            fprintf(stderr, "  %s: dumpable %d, RLIMIT_CORE %llu\n", commands[i].name, dumpable,
                    core);
            CHECK(0);
        }
    }
}

static void dev_mode_leaves_the_process_dumpable(void)
{
    if (!parent_is_dumpable())
        return;
    int dumpable = -1;
    unsigned long long core = 0;
    CHECK(run_in_child(&commands[0], false, &dumpable, &core));
    CHECK_EQ_INT(dumpable, 1);
}

int main(void)
{
    RUN(secret_commands_harden_the_process);
    RUN(dev_mode_leaves_the_process_dumpable);
    return check_summary("cli_harden");
}
