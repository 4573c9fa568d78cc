/* test_auth.c: the pure parts of auth.c (scope lists, Bearer headers) and
 * the rule that secrets are compared in constant time. cv_ct_equal is
 * checked for correct answers; then a code-inspection helper reads
 * service/auth.c and service/keyring.c and fails if any early-exit
 * comparison (memcmp, strcmp, strncmp, bcmp, ...) is applied to a key hash
 * or a key check value: the only comparison allowed on those is
 * cv_ct_equal. The helper is proved on planted code before it is trusted.
 * Source paths are relative to the repository root, where make runs tests. */
#include "cardvault/auth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"
#include "check.h"

#define AUTH_SOURCE    "service/auth.c"
#define KEYRING_SOURCE "service/keyring.c"

#define KEY43 "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"

/* ---- scopes ------------------------------------------------------------------------------ */

static void parse_scopes_accepts_valid_lists(void)
{
    static const struct {
        const char *csv;
        unsigned bits;
    } cases[] = {
        {"tokenize", CV_SCOPE_TOKENIZE},
        {"read", CV_SCOPE_READ},
        {"delete", CV_SCOPE_DELETE},
        {"detokenize", CV_SCOPE_DETOKENIZE},
        {"relay", CV_SCOPE_RELAY},
        {"tokenize,read,delete", CV_SCOPE_TOKENIZE | CV_SCOPE_READ | CV_SCOPE_DELETE},
        {"tokenize,read,delete,detokenize,relay", CV_SCOPES_ALL},
        {"detokenize,tokenize", CV_SCOPE_TOKENIZE | CV_SCOPE_DETOKENIZE}, /* any order */
        {"read,read", CV_SCOPE_READ}, /* a repeat grants nothing more */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned bits = 0xdead;
        CHECK_EQ_INT(cv_auth_parse_scopes(cases[i].csv, &bits), CV_OK);
        CHECK_EQ_INT(bits, cases[i].bits);
    }
}

static void parse_scopes_refuses_unknown_and_empty_scopes(void)
{
    static const char *const bad[] = {
        "",      "admin",     "tokenize,admin", "Tokenize",        "READ",
        " read", "read ",     "read, delete",   ",read",           "read,,delete",
        ",",     "tokenizer", "tokeniz",        "detokenize;read", "read\n",
        "*",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned bits = 0xdead;
        cv_status st = cv_auth_parse_scopes(bad[i], &bits);
        if (st != CV_ERR_BAD_REQUEST)
            fprintf(stderr, "  scopes \"%s\" accepted\n", bad[i]);
        CHECK_EQ_INT(st, CV_ERR_BAD_REQUEST);
        CHECK_EQ_INT(bits, 0xdead); /* nothing granted on failure */
    }
    unsigned bits = 0;
    CHECK_EQ_INT(cv_auth_parse_scopes(NULL, &bits), CV_ERR_BAD_REQUEST);
}

static void parse_scopes_tolerates_one_trailing_comma(void)
{
    /* Decided behaviour, pinned here: one trailing comma ends the list
     * ("tokenize," == "tokenize"), because it can only grant the scopes
     * actually named. An empty scope anywhere else (",read", "a,,b", ",")
     * is refused above. The stored lists come from cv_auth_format_scopes and
     * never end in a comma; this only affects `--scopes` typed by a person. */
    unsigned bits = 0;
    CHECK_EQ_INT(cv_auth_parse_scopes("tokenize,", &bits), CV_OK);
    CHECK_EQ_INT(bits, CV_SCOPE_TOKENIZE);
    CHECK_EQ_INT(cv_auth_parse_scopes("read,delete,", &bits), CV_OK);
    CHECK_EQ_INT(bits, CV_SCOPE_READ | CV_SCOPE_DELETE);
    bits = 0xdead;
    CHECK_EQ_INT(cv_auth_parse_scopes("read,,", &bits), CV_ERR_BAD_REQUEST);
    CHECK_EQ_INT(bits, 0xdead);
}

static void format_scopes_uses_canonical_order(void)
{
    char out[64];
    cv_auth_format_scopes(CV_SCOPES_ALL, out);
    CHECK(strcmp(out, "tokenize,read,delete,detokenize,relay") == 0);
    cv_auth_format_scopes(CV_SCOPE_RELAY, out);
    CHECK(strcmp(out, "relay") == 0);
    cv_auth_format_scopes(CV_SCOPE_DETOKENIZE | CV_SCOPE_TOKENIZE, out);
    CHECK(strcmp(out, "tokenize,detokenize") == 0);
    cv_auth_format_scopes(CV_SCOPE_DELETE | CV_SCOPE_READ, out);
    CHECK(strcmp(out, "read,delete") == 0);
    cv_auth_format_scopes(0, out);
    CHECK(strcmp(out, "") == 0);
    /* Bits that name no scope are not invented into text. */
    cv_auth_format_scopes(0xffffffe0u, out);
    CHECK(strcmp(out, "") == 0);
    cv_auth_format_scopes(0xffffffffu, out);
    CHECK(strcmp(out, "tokenize,read,delete,detokenize,relay") == 0);
}

/* A relay key relays and nothing else: the relay scope with any other is
 * refused before the store is touched (store NULL here). */
static void create_key_refuses_relay_with_another_scope(void)
{
    static const unsigned mixed[] = {CV_SCOPE_RELAY | CV_SCOPE_READ,
                                     CV_SCOPE_RELAY | CV_SCOPE_DETOKENIZE,
                                     CV_SCOPE_RELAY | CV_SCOPE_TOKENIZE, CV_SCOPES_ALL};
    for (size_t i = 0; i < sizeof(mixed) / sizeof(mixed[0]); i++) {
        char key[CV_APIKEY_LEN + 1], prefix[CV_APIKEY_PREFIX_LEN + 1];
        CHECK_EQ_INT(
            cv_auth_create_key(NULL, "mer_aaaaaaaaaaaaaaaaaaaa", mixed[i], NULL, key, prefix),
            CV_ERR_BAD_REQUEST);
    }
}

static void format_then_parse_round_trips_every_set(void)
{
    for (unsigned s = 1; s <= CV_SCOPES_ALL; s++) {
        char out[64];
        unsigned back = 0;
        cv_auth_format_scopes(s, out);
        CHECK_EQ_INT(cv_auth_parse_scopes(out, &back), CV_OK);
        CHECK_EQ_INT(back, s);
    }
}

/* ---- Bearer ------------------------------------------------------------------------------ */

static void parse_bearer_accepts_a_well_formed_key(void)
{
    const char *kinds[] = {"pk_", "sk_", "dk_"};
    const char *schemes[] = {"Bearer ", "bearer ", "BEARER ", "bEaReR "};
    for (size_t k = 0; k < 3; k++) {
        for (size_t s = 0; s < 4; s++) {
            char header[128];
            const char *key = NULL;
            size_t len = 0;
            snprintf(header, sizeof(header), "%s%s%s", schemes[s], kinds[k], KEY43);
            CHECK_EQ_INT(cv_auth_parse_bearer(header, &key, &len), CV_OK);
            CHECK_EQ_INT(len, CV_APIKEY_LEGACY_LEN); /* a key made before checksums */
            CHECK(key == header + strlen(schemes[s]));
        }
    }
    /* RFC 6750 2.1: credentials = "Bearer" 1*SP b64token, so extra spaces
     * before the key are allowed. */
    const char *key = NULL;
    size_t len = 0;
    const char *spaced = "Bearer    sk_" KEY43;
    CHECK_EQ_INT(cv_auth_parse_bearer(spaced, &key, &len), CV_OK);
    CHECK(key == spaced + 10 && len == CV_APIKEY_LEGACY_LEN);
}

static void parse_bearer_refuses_everything_else(void)
{
    static const char *const bad[] = {
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "sk_" KEY43,       /* missing scheme */
        "Basic sk_" KEY43, /* another scheme */
        "Basic c2tfOnBhc3N3b3Jk",
        "Bearer\tsk_" KEY43, /* tab is not SP */
        "Bearer:sk_" KEY43,
        "Bearersk_" KEY43,
        " Bearer sk_" KEY43,    /* leading space */
        "Bearer sk_" KEY43 " ", /* trailing space */
        "Bearer sk_" KEY43 "\r\n",
        "Bearer sk_" KEY43 "h",                                 /* one char too long */
        "Bearer sk_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", /* one short */
        "Bearer xk_" KEY43,                                     /* wrong kind */
        "Bearer SK_" KEY43,
        "Bearer tok_" KEY43,
        "Bearer sk-" KEY43,
        "Bearer sk_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd-", /* non-base62 */
        "Bearer sk_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd+",
        "Bearer sk_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcd=",
        "Bearer sk_0123456789ABCDEFGHIJ\xc3\xa9LMNOPQRSTUVWXYZabcd",
        "Bearer sk_" KEY43 ",Bearer pk_" KEY43,
        "Bearer 'sk_" KEY43 "'",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *key = NULL;
        size_t len = 0;
        cv_status st = cv_auth_parse_bearer(bad[i], &key, &len);
        if (st != CV_ERR_UNAUTHENTICATED)
            fprintf(stderr, "  accepted header #%zu\n", i);
        CHECK_EQ_INT(st, CV_ERR_UNAUTHENTICATED);
        CHECK(key == NULL);
    }
    const char *key = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cv_auth_parse_bearer(NULL, &key, &len), CV_ERR_UNAUTHENTICATED);
}

static void parse_bearer_handles_a_huge_header(void)
{
    size_t n = 1u << 20;
    char *h = malloc(n + 1);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, ' ', n - 7);
    h[n] = '\0';
    const char *key = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cv_auth_parse_bearer(h, &key, &len), CV_ERR_UNAUTHENTICATED);
    memset(h + 7, 'a', n - 7);
    CHECK_EQ_INT(cv_auth_parse_bearer(h, &key, &len), CV_ERR_UNAUTHENTICATED);
    free(h);
}

/* ---- constant-time comparison ------------------------------------------------------------------
 */

static void ct_equal_gives_correct_answers(void)
{
    unsigned char a[32], b[32];
    for (size_t i = 0; i < 32; i++)
        a[i] = b[i] = (unsigned char)(i * 37 + 1);
    CHECK(cv_ct_equal(a, b, 32));
    CHECK(cv_ct_equal(a, b, 0));
    for (size_t i = 0; i < 32; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (unsigned char)(1u << bit);
            CHECK(!cv_ct_equal(a, b, 32));
            CHECK(!cv_ct_equal(b, a, 32));
            b[i] ^= (unsigned char)(1u << bit);
        }
    }
    /* Differences past len are not looked at. */
    b[31] ^= 0xff;
    CHECK(cv_ct_equal(a, b, 31));
    CHECK(!cv_ct_equal(a, b, 32));
}

/* The early-exit comparisons: any of these on secret bytes leaks, through
 * timing, how long a prefix of a guess was right. */
static const char *const early_exit[] = {"memcmp",     "strcmp",      "strncmp", "bcmp",
                                         "strcasecmp", "strncasecmp", "wcscmp",  "strcoll"};

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

/* Blanks out comments and string/char literals (keeping line structure),
 * so that prose like "never memcmp a hash" is not mistaken for code. */
static void strip_comments_and_literals(char *s)
{
    for (char *p = s; *p != '\0'; p++) {
        if (p[0] == '/' && p[1] == '*') {
            char *end = strstr(p + 2, "*/");
            char *stop = end != NULL ? end + 2 : p + strlen(p);
            for (; p < stop; p++)
                if (*p != '\n')
                    *p = ' ';
            p--;
        } else if (p[0] == '/' && p[1] == '/') {
            for (; *p != '\0' && *p != '\n'; p++)
                *p = ' ';
            if (*p == '\0')
                break;
        } else if (*p == '"' || *p == '\'') {
            char q = *p;
            for (p++; *p != '\0' && *p != q; p++) {
                if (*p == '\\' && p[1] != '\0')
                    *p++ = ' ';
                if (*p != '\n')
                    *p = ' ';
            }
            if (*p == '\0')
                break;
        }
    }
}

static bool is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Copies the argument list of the call whose '(' is at open into out. */
static void call_args(const char *open, char *out, size_t cap)
{
    int depth = 0;
    size_t n = 0;
    for (const char *p = open; *p != '\0'; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && --depth == 0)
            break;
        if (n + 1 < cap)
            out[n++] = (char)tolower((unsigned char)*p);
    }
    out[n] = '\0';
}

/* Counts calls of fn in code (already stripped) whose arguments mention
 * `secret` (case-insensitive); prints each with its line number. */
static int count_calls_on(const char *code, const char *fn, const char *secret, bool report)
{
    int count = 0;
    size_t fl = strlen(fn);
    for (const char *p = strstr(code, fn); p != NULL; p = strstr(p + 1, fn)) {
        if ((p > code && is_ident(p[-1])) || is_ident(p[fl]))
            continue;
        const char *q = p + fl;
        while (*q == ' ' || *q == '\t' || *q == '\n')
            q++;
        if (*q != '(')
            continue;
        char args[512];
        call_args(q, args, sizeof(args));
        if (strstr(args, secret) == NULL)
            continue;
        count++;
        if (report) {
            int line = 1;
            for (const char *c = code; c < p; c++)
                line += *c == '\n';
            fprintf(stderr, "  early-exit %s on \"%s\" at line %d: %s%s)\n", fn, secret, line, fn,
                    args);
        }
    }
    return count;
}

static int early_exit_calls_on(const char *code, const char *secret, bool report)
{
    int n = 0;
    for (size_t i = 0; i < sizeof(early_exit) / sizeof(early_exit[0]); i++)
        n += count_calls_on(code, early_exit[i], secret, report);
    return n;
}

static void inspection_helper_catches_planted_comparisons(void)
{
    /* Hostile twins for the helper itself: each planted line must be found,
     * and the comment and string mentions must not be. */
    char planted[] = "static bool f(const unsigned char *hash, const unsigned char *h2)\n"
                     "{\n"
                     "    /* never memcmp(hash, h2, 32) here */\n"
                     "    const char *s = \"memcmp(hash, h2, 32)\";\n"
                     "    if (memcmp (a->slots[i].hash,\n"
                     "                h2, 32) != 0) return false;\n"
                     "    if (!strncmp((const char *)HASH, s, 32)) return false;\n"
                     "    return bcmp(kcv, stored_kcv, 8) == 0 && xmemcmp(hash, h2, 1);\n"
                     "}\n";
    strip_comments_and_literals(planted);
    CHECK_EQ_INT(early_exit_calls_on(planted, "hash", false), 2);
    CHECK_EQ_INT(early_exit_calls_on(planted, "kcv", false), 1);
    CHECK_EQ_INT(count_calls_on(planted, "memcmp", "hash", false), 1);

    char clean[] = "if (cv_ct_equal(a->slots[i].hash, hash, 32)) return 1;\n"
                   "if (strcmp(key, \"pan\") == 0) return 2;\n";
    strip_comments_and_literals(clean);
    CHECK_EQ_INT(early_exit_calls_on(clean, "hash", false), 0);
    CHECK_EQ_INT(count_calls_on(clean, "cv_ct_equal", "hash", false), 1);
}

static void auth_compares_key_hashes_only_in_constant_time(void)
{
    char *code = read_file(AUTH_SOURCE);
    CHECK(code != NULL);
    if (code == NULL)
        return;
    strip_comments_and_literals(code);
    /* Every comparison that touches a key hash must be cv_ct_equal... */
    CHECK_EQ_INT(early_exit_calls_on(code, "hash", true), 0);
    /* ...and the lookup really does compare hashes that way (the helper is
     * looking at the right file, not passing because it found nothing). */
    CHECK(count_calls_on(code, "cv_ct_equal", "hash", false) >= 1);
    free(code);
}

static void keyring_compares_check_values_only_in_constant_time(void)
{
    char *code = read_file(KEYRING_SOURCE);
    CHECK(code != NULL);
    if (code == NULL)
        return;
    strip_comments_and_literals(code);
    CHECK_EQ_INT(early_exit_calls_on(code, "kcv", true), 0);
    CHECK(count_calls_on(code, "cv_ct_equal", "kcv", false) >= 1);
    free(code);
}

/* ---- refresh and revocation ------------------------------------------------------------- */

/* A fake key source: a small table of keys the "database" holds, a switch
 * that makes every scan fail (the database unreachable), and a clock the
 * test moves by hand. */
#define FAKE_KEYS 4
struct fake_source {
    struct {
        char key[CV_APIKEY_LEN + 1];
        bool revoked;
        const char *scopes;  /* NULL: "tokenize,read" */
        const char *origins; /* NULL: "" */
    } rows[FAKE_KEYS];
    size_t n;
    bool failing;
    int64_t now_ms;
    unsigned scans;
};

static cv_status fake_scan(void *ctx, int64_t since_us, int64_t *max_changed_us,
                           void (*fn)(void *fn_ctx, const char *merchant_id, const char *prefix,
                                      const unsigned char hash[32], const char *scopes,
                                      const char *origins, bool revoked),
                           void *fn_ctx)
{
    struct fake_source *f = ctx;
    (void)since_us;
    f->scans++;
    if (f->failing)
        return CV_ERR_DB_UNAVAILABLE;
    for (size_t i = 0; i < f->n; i++) {
        unsigned char hash[32];
        char prefix[CV_APIKEY_PREFIX_LEN + 1];
        /* the display prefix is the key's first characters */
        memcpy(prefix, f->rows[i].key, CV_APIKEY_PREFIX_LEN);
        prefix[CV_APIKEY_PREFIX_LEN] = '\0';
        CHECK_EQ_INT(cv_envelope_sha256(f->rows[i].key, strlen(f->rows[i].key), hash), CV_OK);
        fn(fn_ctx, "mer_fake0000000000000000", prefix, hash,
           f->rows[i].scopes != NULL ? f->rows[i].scopes : "tokenize,read",
           f->rows[i].origins != NULL ? f->rows[i].origins : "", f->rows[i].revoked);
    }
    *max_changed_us = 0;
    return CV_OK;
}

static int64_t fake_now_ms(void *ctx)
{
    return ((struct fake_source *)ctx)->now_ms;
}

static void fake_add(struct fake_source *f, const char *key)
{
    snprintf(f->rows[f->n].key, sizeof(f->rows[f->n].key), "%s", key);
    f->rows[f->n].revoked = false;
    f->rows[f->n].scopes = NULL;
    f->rows[f->n].origins = NULL;
    f->n++;
}

static cv_status auth_as(struct cv_auth *a, const char *key)
{
    char header[128];
    struct cv_principal who;
    snprintf(header, sizeof(header), "Bearer %s", key);
    return cv_auth_authenticate(a, header, &who);
}

#define KEY_A "sk_" KEY43
#define KEY_B "pk_" KEY43

static void fake_source_drives_refresh_and_revocation(void)
{
    struct fake_source f;
    memset(&f, 0, sizeof(f));
    f.now_ms = 1000000;
    fake_add(&f, KEY_A);
    struct cv_auth_source src = {fake_scan, fake_now_ms, &f};
    struct cv_auth *a = NULL;
    CHECK_EQ_INT(cv_auth_open_source(&src, 1000, 0, false, &a), CV_OK);
    if (a == NULL)
        return;
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_OK);
    CHECK_EQ_INT(auth_as(a, KEY_B), CV_ERR_UNAUTHENTICATED); /* unknown */
    f.rows[0].revoked = true;
    f.now_ms += 1000;
    CHECK_EQ_INT(cv_auth_refresh(a), CV_OK);
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_ERR_UNAUTHENTICATED); /* revoked within one refresh */
    cv_auth_close(a);
}

/* The database revokes a key while every refresh fails. The cached copy may
 * serve for a bounded time only: once the last good refresh is older than
 * the bound (max(30 s, 10 refresh intervals)), every cached key is refused
 * with CV_ERR_DB_UNAVAILABLE (503 + Retry-After) until a refresh succeeds;
 * then the revocation applies. */
static void revocation_fails_closed_when_refresh_keeps_failing(void)
{
    struct fake_source f;
    memset(&f, 0, sizeof(f));
    f.now_ms = 5000000;
    fake_add(&f, KEY_A);
    fake_add(&f, KEY_B);
    struct cv_auth_source src = {fake_scan, fake_now_ms, &f};
    struct cv_auth *a = NULL;
    CHECK_EQ_INT(cv_auth_open_source(&src, 1000, 0, false, &a), CV_OK);
    if (a == NULL)
        return;
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_OK);

    f.rows[0].revoked = true; /* revoked in the database ... */
    f.failing = true;         /* ... which the vault can no longer read */
    for (int i = 0; i < 29; i++) {
        f.now_ms += 1000;
        CHECK_EQ_INT(cv_auth_refresh(a), CV_ERR_DB_UNAVAILABLE);
    }
    /* 29 s without a good refresh: inside the bound, the cache still serves. */
    CHECK(!cv_auth_is_stale(a));
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_OK);
    CHECK_EQ_INT(auth_as(a, KEY_B), CV_OK);

    f.now_ms += 1001; /* past 30 s */
    CHECK_EQ_INT(cv_auth_refresh(a), CV_ERR_DB_UNAVAILABLE);
    CHECK(cv_auth_is_stale(a));
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_ERR_DB_UNAVAILABLE);
    CHECK_EQ_INT(auth_as(a, KEY_B), CV_ERR_DB_UNAVAILABLE);
    f.now_ms += 3600 * 1000; /* and stays closed however long it lasts */
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_ERR_DB_UNAVAILABLE);
    /* A malformed header is still a plain 401. */
    struct cv_principal who;
    CHECK_EQ_INT(cv_auth_authenticate(a, "Basic abc", &who), CV_ERR_UNAUTHENTICATED);

    f.failing = false; /* the database is back */
    CHECK_EQ_INT(cv_auth_refresh(a), CV_OK);
    CHECK(!cv_auth_is_stale(a));
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_ERR_UNAUTHENTICATED); /* the revocation now holds */
    CHECK_EQ_INT(auth_as(a, KEY_B), CV_OK);
    cv_auth_close(a);
}

/* The bound grows with a slow refresh interval: 10 intervals when that is
 * more than 30 s. */
static void stale_bound_is_ten_intervals_for_slow_refresh(void)
{
    struct fake_source f;
    memset(&f, 0, sizeof(f));
    f.now_ms = 100;
    fake_add(&f, KEY_A);
    struct cv_auth_source src = {fake_scan, fake_now_ms, &f};
    struct cv_auth *a = NULL;
    CHECK_EQ_INT(cv_auth_open_source(&src, 5000, 0, false, &a), CV_OK);
    if (a == NULL)
        return;
    f.failing = true;
    f.now_ms += 50000;
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_OK); /* exactly 10 x 5 s: not yet */
    f.now_ms += 1;
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_ERR_DB_UNAVAILABLE);
    cv_auth_close(a);
}

/* A publishable key's origins travel from the key table into the
 * principal, looked up by the bare key (the frame's query parameter) as by
 * the header; a list the database holds in a shape origin.c would not
 * produce binds the key to nothing. */
/* A key with its checksum authenticates beside a key made before
 * checksums; the same key with one character mistyped is refused by its
 * checksum before the key table is consulted: a plain 401 even while the
 * table is stale (when a well-formed key would get 503). */
static void checksummed_and_old_keys_authenticate_a_mistyped_key_fails_fast(void)
{
    struct fake_source f;
    memset(&f, 0, sizeof(f));
    f.now_ms = 7000000;
    char fresh[CV_APIKEY_LEN + 1];
    CHECK_EQ_INT(cv_token_api_key("sk", fresh), CV_OK);
    fake_add(&f, fresh);
    fake_add(&f, KEY_A); /* the old format: kind + 43 characters */
    struct cv_auth_source src = {fake_scan, fake_now_ms, &f};
    struct cv_auth *a = NULL;
    CHECK_EQ_INT(cv_auth_open_source(&src, 1000, 0, false, &a), CV_OK);
    if (a == NULL)
        return;
    CHECK_EQ_INT(auth_as(a, fresh), CV_OK);
    CHECK_EQ_INT(auth_as(a, KEY_A), CV_OK);
    char typo[CV_APIKEY_LEN + 1];
    memcpy(typo, fresh, sizeof typo);
    typo[10] = typo[10] == 'x' ? 'y' : 'x';
    CHECK_EQ_INT(auth_as(a, typo), CV_ERR_UNAUTHENTICATED);
    f.failing = true;
    f.now_ms += 3600 * 1000;
    CHECK_EQ_INT(cv_auth_refresh(a), CV_ERR_DB_UNAVAILABLE);
    CHECK(cv_auth_is_stale(a));
    CHECK_EQ_INT(auth_as(a, fresh), CV_ERR_DB_UNAVAILABLE);
    CHECK_EQ_INT(auth_as(a, typo), CV_ERR_UNAUTHENTICATED);
    cv_auth_close(a);
}

static void bare_key_lookup_carries_origins(void)
{
    struct fake_source f;
    memset(&f, 0, sizeof(f));
    f.now_ms = 1000;
    fake_add(&f, KEY_B);
    f.rows[0].scopes = "tokenize";
    f.rows[0].origins = "https://shop.example,http://127.0.0.1:8081";
    fake_add(&f, KEY_A);
    f.rows[1].origins = "https://shop.example/,https://ok.example";
    struct cv_auth_source src = {fake_scan, fake_now_ms, &f};
    struct cv_auth *a = NULL;
    CHECK_EQ_INT(cv_auth_open_source(&src, 1000, 0, false, &a), CV_OK);
    if (a == NULL)
        return;
    struct cv_principal who;
    CHECK_EQ_INT(cv_auth_authenticate_key(a, KEY_B, strlen(KEY_B), &who), CV_OK);
    CHECK_EQ_INT(who.scopes, CV_SCOPE_TOKENIZE);
    CHECK(strcmp(who.origins, "https://shop.example,http://127.0.0.1:8081") == 0);
    CHECK_EQ_INT(cv_auth_authenticate_key(a, KEY_A, strlen(KEY_A), &who), CV_OK);
    CHECK(strcmp(who.origins, "") == 0);
    CHECK_EQ_INT(cv_auth_authenticate_key(a, KEY_B, strlen(KEY_B) - 1, &who),
                 CV_ERR_UNAUTHENTICATED);
    CHECK_EQ_INT(cv_auth_authenticate_key(a, NULL, 0, &who), CV_ERR_UNAUTHENTICATED);
    CHECK_EQ_INT(cv_auth_authenticate_key(a, "pk_x", 4, &who), CV_ERR_UNAUTHENTICATED);
    cv_auth_close(a);
}

int main(void)
{
    RUN(parse_scopes_accepts_valid_lists);
    RUN(parse_scopes_refuses_unknown_and_empty_scopes);
    RUN(parse_scopes_tolerates_one_trailing_comma);
    RUN(format_scopes_uses_canonical_order);
    RUN(format_then_parse_round_trips_every_set);
    RUN(create_key_refuses_relay_with_another_scope);
    RUN(parse_bearer_accepts_a_well_formed_key);
    RUN(parse_bearer_refuses_everything_else);
    RUN(parse_bearer_handles_a_huge_header);
    RUN(ct_equal_gives_correct_answers);
    RUN(inspection_helper_catches_planted_comparisons);
    RUN(auth_compares_key_hashes_only_in_constant_time);
    RUN(keyring_compares_check_values_only_in_constant_time);
    RUN(fake_source_drives_refresh_and_revocation);
    RUN(revocation_fails_closed_when_refresh_keeps_failing);
    RUN(stale_bound_is_ten_intervals_for_slow_refresh);
    RUN(bare_key_lookup_carries_origins);
    RUN(checksummed_and_old_keys_authenticate_a_mistyped_key_fails_fast);
    return check_summary("auth");
}
