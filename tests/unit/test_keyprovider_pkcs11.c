/* test_keyprovider_pkcs11.c: the PKCS#11 KEK provider against a SoftHSM2
 * token made for this run in a temporary directory (SOFTHSM2_CONF), with
 * Debian's softhsm2-util and OpenSC's pkcs11-tool. The production KEK is
 * generated inside the token; a second, test-only key with known bytes is
 * imported so the token's output can be compared byte for byte with the file
 * provider (OpenSSL AES-256-WRAP-PAD) and cv_kek_check_value_raw. Hostile
 * twins: tampered, truncated and foreign wrappings, and every way open must
 * refuse (PIN file mode, wrong PIN, extractable or short or ambiguous keys).
 * Skips, saying so, only when softhsm2 or opensc is not installed. */
#include "cardvault/keyprovider.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cardvault/log.h"
#include "check.h"

extern char **environ;

#define TOKEN     "cv-test"
#define USER_PIN  "cv-user-pin-0042"
#define SO_PIN    "cv-so-pin-0042"
#define KEK_LABEL "cv-kek"   /* generated in the token: the production shape */
#define KNOWN     "cv-known" /* imported from KNOWN_KEY: test only */

static const unsigned char KNOWN_KEY[32] = {
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
    0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
}; /* the AES-256 key of NIST SP 800-38A F.1.5 */

static char dir[256];
static const char *module;
static char pin_ok[300], pin_wide[300], pin_wrong[300], pin_empty[300], pin_missing[300];

static bool on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[512];
    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + strlen(name) + 2 < sizeof(buf)) {
            snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
            if (access(buf, X_OK) == 0)
                return true;
        }
        path += n + (path[n] == ':');
    }
    return false;
}

/* Runs argv without a shell; its output goes to dir/setup.log. */
static int run(const char *const argv[])
{
    char log_path[300];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0;
    snprintf(log_path, sizeof(log_path), "%s/setup.log", dir[0] ? dir : "/tmp");
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* posix_spawnp's argv is char *const[]; the strings are not modified. */
    char *args[32];
    size_t i = 0;
    for (; i < 31 && argv[i] != NULL; i++)
        args[i] = (char *)(uintptr_t)argv[i];
    args[i] = NULL;
    int rc = posix_spawnp(&pid, args[0], &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return false;
    bool ok = write(fd, data, len) == (ssize_t)len && fchmod(fd, mode) == 0;
    return close(fd) == 0 && ok;
}

/* pkcs11-tool, logged in to the test token, with the NULL-terminated extra arguments. */
static int tool(const char *const extra[])
{
    const char *argv[32] = {"pkcs11-tool", "--module", module,  "--token-label",
                            TOKEN,         "--login",  "--pin", USER_PIN};
    size_t n = 8;
    for (size_t i = 0; extra[i] != NULL && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return run(argv);
}

#define TOOL(...) tool((const char *const[]){__VA_ARGS__, NULL})
#define KEYGEN(type, label, ...)                                                                   \
    TOOL("--keygen", "--key-type", (type), "--label", (label), __VA_ARGS__)
#define IMPORT(label, ...)                                                                         \
    TOOL("--write-object", known_path, "--type", "secrkey", "--key-type", "AES:32", "--label",     \
         (label), __VA_ARGS__)

/* 0: ready; 1: skip (not installed); -1: setup failed. */
static int setup(void)
{
    static const char *const candidates[] = {
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    };
    module = getenv("CARDVAULT_TEST_PKCS11_MODULE");
    for (size_t i = 0; module == NULL && i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], R_OK) == 0)
            module = candidates[i];
    if (module == NULL || !on_path("softhsm2-util") || !on_path("pkcs11-tool"))
        return 1;

    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/cv-p11-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL)
        return -1;
    char conf[300], tokens[300], conf_text[512], known_path[300];
    snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
    snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
    snprintf(known_path, sizeof(known_path), "%s/known.key", dir);
    int n = snprintf(conf_text, sizeof(conf_text),
                     "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
                     tokens);
    if (mkdir(tokens, 0700) != 0 || !write_file(conf, conf_text, (size_t)n, 0600) ||
        setenv("SOFTHSM2_CONF", conf, 1) != 0)
        return -1;

    const char *init[] = {"softhsm2-util", "--init-token", "--free", "--label", TOKEN,
                          "--so-pin",      SO_PIN,         "--pin",  USER_PIN,  NULL};
    if (run(init) != 0 || !write_file(known_path, KNOWN_KEY, sizeof(KNOWN_KEY), 0600))
        return -1;
    /* The production KEK: generated in the token, sensitive, never extractable.
     * --usage-decrypt is how pkcs11-tool 0.23 grants CKA_ENCRYPT (key check value). */
    if (KEYGEN("AES:32", KEK_LABEL, "--sensitive", "--usage-wrap", "--usage-decrypt") != 0 ||
        IMPORT(KNOWN, "--sensitive", "--usage-wrap", "--usage-decrypt") != 0 ||
        IMPORT("cv-extractable", "--extractable", "--usage-wrap", "--usage-decrypt") != 0 ||
        KEYGEN("AES:32", "cv-not-sensitive", "--usage-wrap", "--usage-decrypt") != 0 ||
        KEYGEN("AES:16", "cv-aes128", "--sensitive", "--usage-wrap", "--usage-decrypt") != 0 ||
        KEYGEN("AES:32", "cv-dup", "--sensitive", "--usage-wrap", "--usage-decrypt") != 0 ||
        KEYGEN("AES:32", "cv-dup", "--sensitive", "--usage-wrap", "--usage-decrypt") != 0)
        return -1;
    unlink(known_path);

    snprintf(pin_ok, sizeof(pin_ok), "%s/pin", dir);
    snprintf(pin_wide, sizeof(pin_wide), "%s/pin-0640", dir);
    snprintf(pin_wrong, sizeof(pin_wrong), "%s/pin-wrong", dir);
    snprintf(pin_empty, sizeof(pin_empty), "%s/pin-empty", dir);
    snprintf(pin_missing, sizeof(pin_missing), "%s/no-such-pin", dir);
    if (!write_file(pin_ok, USER_PIN "\n", strlen(USER_PIN) + 1, 0600) ||
        !write_file(pin_wide, USER_PIN "\n", strlen(USER_PIN) + 1, 0640) ||
        !write_file(pin_wrong, "not-the-pin\n", 12, 0600) || !write_file(pin_empty, "\n", 1, 0600))
        return -1;
    return 0;
}

static void teardown(void)
{
    if (dir[0] == '\0')
        return;
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", dir);
    dir[0] = '\0'; /* run() must not log into the directory it removes */
    const char *rm[] = {"rm", "-rf", copy, NULL};
    (void)run(rm);
}

static struct cv_keyprovider *open_key(const char *label)
{
    struct cv_keyprovider *kp = NULL;
    char why[256] = "";
    if (cv_keyprovider_pkcs11_open(module, TOKEN, label, pin_ok, &kp, why, sizeof(why)) != CV_OK) {
        fprintf(stderr, "  open %s: %s\n", label, why);
        return NULL;
    }
    return kp;
}

static struct cv_keyprovider *known_file_provider(void)
{
    struct cv_secbuf *kek = cv_secbuf_new(32);
    if (cv_secbuf_set(kek, KNOWN_KEY, sizeof(KNOWN_KEY)) != CV_OK) {
        cv_secbuf_free(kek);
        return NULL;
    }
    return cv_keyprovider_memory_take(kek);
}

static struct cv_secbuf *random_key(size_t len)
{
    struct cv_secbuf *k = cv_secbuf_new(len);
    if (cv_random_bytes(k->data, len) != CV_OK) {
        cv_secbuf_free(k);
        return NULL;
    }
    k->len = len;
    return k;
}

static bool same_key(const struct cv_secbuf *a, const struct cv_secbuf *b)
{
    return a != NULL && b != NULL && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Tests. */

static void open_finds_the_generated_kek_and_names_itself(void)
{
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    CHECK(kp != NULL);
    if (kp != NULL)
        CHECK(strcmp(cv_keyprovider_name(kp), "pkcs11") == 0);
    cv_keyprovider_free(kp);
}

static void wrap_then_unwrap_round_trips_multiples_of_8_bytes(void)
{
    static const size_t lens[] = {8, 16, 24, 32, 40, 64, 1024};
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    CHECK(kp != NULL);
    for (size_t i = 0; kp != NULL && i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct cv_secbuf *dek = random_key(lens[i]), *back = NULL;
        unsigned char *w = NULL;
        size_t wl = 0;
        CHECK_EQ_INT(cv_keyprovider_wrap(kp, dek, &w, &wl), CV_OK);
        CHECK_EQ_INT(wl, (lens[i] + 7) / 8 * 8 + 8);
        if (w != NULL) {
            CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, wl, &back), CV_OK);
            CHECK(same_key(dek, back));
        }
        free(w);
        cv_secbuf_free(back);
        cv_secbuf_free(dek);
    }
    cv_keyprovider_free(kp);
}

static void wrap_is_byte_identical_to_the_file_provider(void)
{
    static const size_t lens[] = {8, 16, 24, 32, 48};
    struct cv_keyprovider *tok = open_key(KNOWN), *file = known_file_provider();
    CHECK(tok != NULL && file != NULL);
    for (size_t i = 0; tok != NULL && file != NULL && i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct cv_secbuf *dek = random_key(lens[i]);
        unsigned char *wt = NULL, *wf = NULL;
        size_t lt = 0, lf = 0;
        CHECK_EQ_INT(cv_keyprovider_wrap(tok, dek, &wt, &lt), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_wrap(file, dek, &wf, &lf), CV_OK);
        CHECK(wt != NULL && wf != NULL && lt == lf && memcmp(wt, wf, lt) == 0);
        free(wt);
        free(wf);
        cv_secbuf_free(dek);
    }
    cv_keyprovider_free(tok);
    cv_keyprovider_free(file);
}

static void file_wrapped_dek_unwraps_in_the_token_and_back(void)
{
    struct cv_keyprovider *tok = open_key(KNOWN), *file = known_file_provider();
    struct cv_secbuf *dek = random_key(32), *in_tok = NULL, *in_file = NULL;
    unsigned char *wf = NULL, *wt = NULL;
    size_t lf = 0, lt = 0;
    CHECK(tok != NULL && file != NULL);
    if (tok != NULL && file != NULL) {
        CHECK_EQ_INT(cv_keyprovider_wrap(file, dek, &wf, &lf), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(tok, wf, lf, &in_tok), CV_OK);
        CHECK(same_key(dek, in_tok));
        CHECK_EQ_INT(cv_keyprovider_wrap(tok, dek, &wt, &lt), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(file, wt, lt, &in_file), CV_OK);
        CHECK(same_key(dek, in_file));
    }
    free(wf);
    free(wt);
    cv_secbuf_free(in_tok);
    cv_secbuf_free(in_file);
    cv_secbuf_free(dek);
    cv_keyprovider_free(tok);
    cv_keyprovider_free(file);
}

/* The file provider wraps any length; the token unwraps those too, although
 * its own wrap is limited to multiples of 8 (SoftHSM2 pads tails with zeros). */
static void file_wrapped_keys_of_any_length_unwrap_in_the_token(void)
{
    static const size_t lens[] = {1, 7, 9, 17, 20, 31, 33};
    struct cv_keyprovider *tok = open_key(KNOWN), *file = known_file_provider();
    CHECK(tok != NULL && file != NULL);
    for (size_t i = 0; tok != NULL && file != NULL && i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct cv_secbuf *dek = random_key(lens[i]), *back = NULL;
        unsigned char *w = NULL;
        size_t wl = 0;
        CHECK_EQ_INT(cv_keyprovider_wrap(file, dek, &w, &wl), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(tok, w, wl, &back), CV_OK);
        CHECK(same_key(dek, back));
        free(w);
        cv_secbuf_free(back);
        cv_secbuf_free(dek);
    }
    cv_keyprovider_free(tok);
    cv_keyprovider_free(file);
}

static void check_value_matches_the_raw_kcv_of_the_same_key(void)
{
    struct cv_keyprovider *tok = open_key(KNOWN), *gen = open_key(KEK_LABEL);
    struct cv_secbuf *raw = cv_secbuf_new(32);
    unsigned char kcv_tok[CV_KCV_BYTES] = {0}, kcv_raw[CV_KCV_BYTES] = {1}, kcv_gen[CV_KCV_BYTES];
    CHECK(tok != NULL && gen != NULL);
    CHECK_EQ_INT(cv_secbuf_set(raw, KNOWN_KEY, 32), CV_OK);
    CHECK_EQ_INT(cv_kek_check_value_raw(raw, kcv_raw), CV_OK);
    if (tok != NULL && gen != NULL) {
        CHECK_EQ_INT(cv_keyprovider_check_value(tok, kcv_tok), CV_OK);
        CHECK(memcmp(kcv_tok, kcv_raw, CV_KCV_BYTES) == 0);
        CHECK_EQ_INT(cv_keyprovider_check_value(gen, kcv_gen), CV_OK);
        CHECK(memcmp(kcv_gen, kcv_raw, CV_KCV_BYTES) != 0);
    }
    cv_secbuf_free(raw);
    cv_keyprovider_free(tok);
    cv_keyprovider_free(gen);
}

static void unwrap_rejects_tampered_wrapping_and_keeps_working(void)
{
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    struct cv_secbuf *dek = random_key(32), *back = NULL;
    unsigned char *w = NULL;
    size_t wl = 0;
    CHECK(kp != NULL);
    if (kp != NULL && cv_keyprovider_wrap(kp, dek, &w, &wl) == CV_OK) {
        for (size_t i = 0; i < wl; i += 13) {
            w[i] ^= 0x01;
            CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, wl, &back), CV_ERR_INTEGRITY);
            CHECK(back == NULL);
            w[i] ^= 0x01;
        }
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, wl, &back), CV_OK);
        CHECK(same_key(dek, back));
    } else {
        CHECK(0);
    }
    free(w);
    cv_secbuf_free(back);
    cv_secbuf_free(dek);
    cv_keyprovider_free(kp);
}

static void unwrap_rejects_a_wrapping_under_another_kek(void)
{
    struct cv_keyprovider *gen = open_key(KEK_LABEL), *known = open_key(KNOWN);
    struct cv_secbuf *dek = random_key(32), *back = NULL;
    unsigned char *w = NULL;
    size_t wl = 0;
    CHECK(gen != NULL && known != NULL);
    if (gen != NULL && known != NULL) {
        CHECK_EQ_INT(cv_keyprovider_wrap(gen, dek, &w, &wl), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(known, w, wl, &back), CV_ERR_INTEGRITY);
        CHECK(back == NULL);
    }
    free(w);
    cv_secbuf_free(back);
    cv_secbuf_free(dek);
    cv_keyprovider_free(gen);
    cv_keyprovider_free(known);
}

static void unwrap_rejects_truncated_odd_and_oversized_input(void)
{
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    struct cv_secbuf *dek = random_key(32), *back = NULL;
    unsigned char *w = NULL, big[1040] = {0};
    size_t wl = 0;
    CHECK(kp != NULL);
    if (kp != NULL && cv_keyprovider_wrap(kp, dek, &w, &wl) == CV_OK) {
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, wl - 8, &back), CV_ERR_INTEGRITY);
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, wl - 1, &back), CV_ERR_INTEGRITY);
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, 8, &back), CV_ERR_INTEGRITY);
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, w, 0, &back), CV_ERR_INTEGRITY);
        CHECK_EQ_INT(cv_keyprovider_unwrap(kp, big, sizeof(big), &back), CV_ERR_INTEGRITY);
        CHECK(back == NULL);
    } else {
        CHECK(0);
    }
    free(w);
    cv_secbuf_free(dek);
    cv_keyprovider_free(kp);
}

static void wrap_rejects_empty_ragged_and_oversized_keys(void)
{
    static const size_t lens[] = {0, 1, 7, 9, 31, 33, 1025, 1032};
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    CHECK(kp != NULL);
    for (size_t i = 0; kp != NULL && i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct cv_secbuf *k = lens[i] == 0 ? cv_secbuf_new(1) : random_key(lens[i]);
        unsigned char *w = NULL;
        size_t wl = 0;
        CHECK_EQ_INT(cv_keyprovider_wrap(kp, k, &w, &wl), CV_ERR_CRYPTO);
        CHECK(w == NULL);
        cv_secbuf_free(k);
    }
    cv_keyprovider_free(kp);
}

/* KEK rotation from a file KEK to the token KEK, as rotate-kek does it:
 * unwrap under the old provider, wrap under the new, with both open. */
static void rotation_from_a_file_kek_to_the_token_kek(void)
{
    struct cv_keyprovider *file = known_file_provider(), *tok = open_key(KEK_LABEL);
    struct cv_secbuf *dek = random_key(32), *mid = NULL, *after = NULL, *stale = NULL;
    unsigned char *old_w = NULL, *new_w = NULL;
    size_t old_l = 0, new_l = 0;
    CHECK(file != NULL && tok != NULL);
    if (file != NULL && tok != NULL) {
        CHECK_EQ_INT(cv_keyprovider_wrap(file, dek, &old_w, &old_l), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(file, old_w, old_l, &mid), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_wrap(tok, mid, &new_w, &new_l), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(tok, new_w, new_l, &after), CV_OK);
        CHECK(same_key(dek, after));
        CHECK_EQ_INT(cv_keyprovider_unwrap(tok, old_w, old_l, &stale), CV_ERR_INTEGRITY);
    }
    free(old_w);
    free(new_w);
    cv_secbuf_free(mid);
    cv_secbuf_free(after);
    cv_secbuf_free(stale);
    cv_secbuf_free(dek);
    cv_keyprovider_free(file);
    cv_keyprovider_free(tok);
}

/* Two providers on one module (token-to-token rotation): closing the first
 * must neither finalise the module nor log the second out. */
static void a_second_provider_survives_the_first_being_freed(void)
{
    struct cv_keyprovider *a = open_key(KEK_LABEL), *b = open_key(KNOWN);
    struct cv_secbuf *dek = random_key(32), *back = NULL;
    unsigned char *w = NULL, kcv[CV_KCV_BYTES];
    size_t wl = 0;
    CHECK(a != NULL && b != NULL);
    cv_keyprovider_free(a);
    if (b != NULL) {
        CHECK_EQ_INT(cv_keyprovider_wrap(b, dek, &w, &wl), CV_OK);
        CHECK_EQ_INT(cv_keyprovider_unwrap(b, w, wl, &back), CV_OK);
        CHECK(same_key(dek, back));
        CHECK_EQ_INT(cv_keyprovider_check_value(b, kcv), CV_OK);
    }
    free(w);
    cv_secbuf_free(back);
    cv_secbuf_free(dek);
    cv_keyprovider_free(b);
}

#define THREADS    8
#define ITERATIONS 40

struct worker {
    struct cv_keyprovider *kp;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ITERATIONS; i++) {
        struct cv_secbuf *dek = random_key(32), *back = NULL;
        unsigned char *wr = NULL, kcv[CV_KCV_BYTES];
        size_t wl = 0;
        if (dek == NULL || cv_keyprovider_wrap(w->kp, dek, &wr, &wl) != CV_OK ||
            cv_keyprovider_unwrap(w->kp, wr, wl, &back) != CV_OK || !same_key(dek, back) ||
            (i % 8 == 0 && cv_keyprovider_check_value(w->kp, kcv) != CV_OK))
            w->failures++;
        free(wr);
        cv_secbuf_free(back);
        cv_secbuf_free(dek);
    }
    return NULL;
}

static void wrap_and_unwrap_run_concurrently_from_many_threads(void)
{
    struct cv_keyprovider *kp = open_key(KEK_LABEL);
    struct worker workers[THREADS] = {{NULL, 0}};
    pthread_t th[THREADS];
    int started = 0;
    CHECK(kp != NULL);
    for (int i = 0; kp != NULL && i < THREADS; i++) {
        workers[i] = (struct worker){.kp = kp, .failures = 0};
        if (pthread_create(&th[i], NULL, work, &workers[i]) == 0)
            started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(workers[i].failures, 0);
    }
    CHECK(kp == NULL || started == THREADS);
    cv_keyprovider_free(kp);
}

/* Opens that must fail: CV_ERR_CONFIG, a one-line reason naming the problem,
 * nothing returned, and never the PIN in the reason. */
static void expect_refusal(const char *mod, const char *token, const char *label, const char *pin,
                           const char *needle)
{
    struct cv_keyprovider *kp = NULL;
    char why[256] = "";
    cv_status st = cv_keyprovider_pkcs11_open(mod, token, label, pin, &kp, why, sizeof(why));
    CHECK_EQ_INT(st, CV_ERR_CONFIG);
    CHECK(kp == NULL);
    CHECK(why[0] != '\0' && strchr(why, '\n') == NULL);
    CHECK(strstr(why, USER_PIN) == NULL && strstr(why, "not-the-pin") == NULL);
    if (strstr(why, needle) == NULL) {
        fprintf(stderr, "  reason \"%s\" lacks \"%s\"\n", why, needle);
        CHECK(0);
    }
    if (getenv("CV_TEST_VERBOSE") != NULL)
        printf("  refused: %s\n", why);
    cv_keyprovider_free(kp);
}

static void open_refuses_a_pin_file_others_can_read(void)
{
    expect_refusal(module, TOKEN, KEK_LABEL, pin_wide, "chmod 600");
}

static void open_refuses_a_wrong_pin_naming_the_ckr_code(void)
{
    expect_refusal(module, TOKEN, KEK_LABEL, pin_wrong, "CKR_PIN_INCORRECT");
}

static void open_refuses_an_empty_or_missing_pin_file(void)
{
    expect_refusal(module, TOKEN, KEK_LABEL, pin_empty, "must hold one PIN");
    expect_refusal(module, TOKEN, KEK_LABEL, pin_missing, "cannot open PKCS#11 PIN file");
}

static void open_reads_the_pin_file_under_the_secret_file_rule(void)
{
    /* The PIN file follows the same rule as a KEK file (secret_file.h): a
     * link is followed, and the file it reaches must be owner-only. */
    char link_ok[320], link_wide[320];
    snprintf(link_ok, sizeof(link_ok), "%s/pin-link", dir);
    snprintf(link_wide, sizeof(link_wide), "%s/pin-link-0640", dir);
    unlink(link_ok);
    unlink(link_wide);
    CHECK(symlink(pin_ok, link_ok) == 0);
    CHECK(symlink(pin_wide, link_wide) == 0);
    struct cv_keyprovider *kp = NULL;
    char why[256] = "";
    CHECK_EQ_INT(
        cv_keyprovider_pkcs11_open(module, TOKEN, KEK_LABEL, link_ok, &kp, why, sizeof(why)),
        CV_OK);
    cv_keyprovider_free(kp);
    expect_refusal(module, TOKEN, KEK_LABEL, link_wide, "chmod 600");
}

static void open_refuses_a_missing_or_foreign_module(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/no-such-module.so", dir);
    expect_refusal(path, TOKEN, KEK_LABEL, pin_ok, "cannot load PKCS#11 module");
    expect_refusal("libm.so.6", TOKEN, KEK_LABEL, pin_ok, "not a PKCS#11 module");
}

static void open_refuses_an_unknown_or_overlong_token_label(void)
{
    expect_refusal(module, "cv-no-such-token", KEK_LABEL, pin_ok, "no PKCS#11 token labelled");
    expect_refusal(module, "a-token-label-longer-than-32-bytes", KEK_LABEL, pin_ok,
                   "token label (1 to 32 bytes)");
    expect_refusal(module, "", KEK_LABEL, pin_ok, "token label");
}

static void open_refuses_an_unknown_key_label(void)
{
    expect_refusal(module, TOKEN, "cv-no-such-key", pin_ok, "no AES secret key labelled");
}

static void open_refuses_a_kek_that_could_leave_the_token(void)
{
    expect_refusal(module, TOKEN, "cv-extractable", pin_ok, "could leave the token");
    expect_refusal(module, TOKEN, "cv-not-sensitive", pin_ok, "could leave the token");
}

static void open_refuses_an_aes128_kek(void)
{
    expect_refusal(module, TOKEN, "cv-aes128", pin_ok, "not a 256-bit AES key");
}

static void open_refuses_an_ambiguous_key_label(void)
{
    expect_refusal(module, TOKEN, "cv-dup", pin_ok, "more than one AES secret key");
}

int main(void)
{
    cv_log_set_level(CV_LOG_ERROR);
    int ready = setup();
    if (ready == 1) {
        printf("keyprovider_pkcs11: SKIPPED: softhsm2 and/or opensc (pkcs11-tool) not installed; "
               "`make deps` installs them\n");
        return check_summary("keyprovider_pkcs11");
    }
    if (ready != 0) {
        fprintf(stderr, "keyprovider_pkcs11: SoftHSM2 token setup failed (see %s/setup.log)\n",
                dir);
        check_tests_failed++;
        return check_summary("keyprovider_pkcs11");
    }
    /* The wrong-PIN test first: PKCS#11 login is per application, so while
     * another provider is logged in, C_Login answers CKR_USER_ALREADY_LOGGED_IN. */
    RUN(open_refuses_a_wrong_pin_naming_the_ckr_code);
    RUN(open_refuses_a_pin_file_others_can_read);
    RUN(open_refuses_an_empty_or_missing_pin_file);
    RUN(open_reads_the_pin_file_under_the_secret_file_rule);
    RUN(open_refuses_a_missing_or_foreign_module);
    RUN(open_refuses_an_unknown_or_overlong_token_label);
    RUN(open_refuses_an_unknown_key_label);
    RUN(open_refuses_a_kek_that_could_leave_the_token);
    RUN(open_refuses_an_aes128_kek);
    RUN(open_refuses_an_ambiguous_key_label);
    RUN(open_finds_the_generated_kek_and_names_itself);
    RUN(wrap_then_unwrap_round_trips_multiples_of_8_bytes);
    RUN(wrap_is_byte_identical_to_the_file_provider);
    RUN(file_wrapped_dek_unwraps_in_the_token_and_back);
    RUN(file_wrapped_keys_of_any_length_unwrap_in_the_token);
    RUN(check_value_matches_the_raw_kcv_of_the_same_key);
    RUN(unwrap_rejects_tampered_wrapping_and_keeps_working);
    RUN(unwrap_rejects_a_wrapping_under_another_kek);
    RUN(unwrap_rejects_truncated_odd_and_oversized_input);
    RUN(wrap_rejects_empty_ragged_and_oversized_keys);
    RUN(rotation_from_a_file_kek_to_the_token_kek);
    RUN(a_second_provider_survives_the_first_being_freed);
    RUN(wrap_and_unwrap_run_concurrently_from_many_threads);
    teardown();
    return check_summary("keyprovider_pkcs11");
}
