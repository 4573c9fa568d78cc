/* keyprovider_pkcs11.c: the KEK in a PKCS#11 token (an HSM; SoftHSM2 in
 * tests). The KEK is found by label and must be sensitive and unextractable:
 * it never enters this process. DEKs are wrapped and unwrapped by the token
 * with AES key wrap with padding (RFC 5649), byte for byte what the file
 * provider produces, and the key check value is computed by the token too.
 *
 * The module is loaded with dlopen (no link-time tie to one vendor) and
 * initialised with CKF_OS_LOCKING_OK; each call borrows a session from a
 * small pool, so wrap/unwrap run in parallel from the service's threads. One
 * extra session opened at start holds the login for the provider's life
 * (closing an application's last session logs it out, PKCS#11 v2.40 5.6).
 *
 * This module must never log or return key bytes or the PIN; failures log
 * one line naming the PKCS#11 call and its CKR_ code. */
#include "cardvault/keyprovider.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "cardvault/log.h"
#include "cardvault/secret_file.h"

/* PKCS#11 3.0 names RFC 5649 CKM_AES_KEY_WRAP_KWP (0x210B) and redefines
 * 0x210A CKM_AES_KEY_WRAP_PAD as PKCS#7 padding + RFC 3394; v2.40 tokens
 * (SoftHSM2, nShield) implement RFC 5649 under 0x210A, and Thales Luna
 * firmware may offer it only as the vendor mechanism CKM_AES_KWP
 * (CKM_VENDOR_DEFINED + 0x171). p11-kit 0.24's header predates 3.0, so the
 * constants it lacks are spelled out here. Whatever a token calls its
 * mechanism, choose_wrap_mech proves it is RFC 5649 before using it. */
#ifndef CKM_AES_KEY_WRAP_KWP
#define CKM_AES_KEY_WRAP_KWP 0x210BUL
#endif
#define CV_CKM_LUNA_AES_KWP (CKM_VENDOR_DEFINED + 0x171UL)

#define SESSION_POOL_MAX 16
#define PIN_MAX_BYTES    256
#define WRAP_MAX_IN      1024 /* the same bound as cv_kek_wrap_raw */

/* One per loaded library, shared by every provider that uses it, so that a
 * rotation from one token key to another can hold both without the second
 * C_Initialize failing or the first C_Finalize pulling the module away. */
struct p11_module {
    void *dl;
    CK_FUNCTION_LIST_PTR fl;
    bool finalize; /* we initialised it, so we finalise it */
    unsigned refs;
    struct p11_module *next;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *modules;

struct p11_state {
    struct p11_module *mod;
    CK_FUNCTION_LIST_PTR fl;
    CK_SLOT_ID slot;
    CK_OBJECT_HANDLE kek;
    CK_MECHANISM_TYPE wrap_mech;
    CK_SESSION_HANDLE login_session;
    bool have_login_session;
    char *token_label; /* owned copies: labels go in templates and log lines */
    char *key_label;
    pthread_mutex_t lock; /* guards idle[] and n_idle */
    size_t n_idle;
    CK_SESSION_HANDLE idle[SESSION_POOL_MAX];
};

struct rv_entry {
    CK_RV rv;
    const char *name;
};

static const struct rv_entry rv_names[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_UNWRAPPING_KEY_SIZE_RANGE, "CKR_UNWRAPPING_KEY_SIZE_RANGE"},
    {CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_WRAPPING_KEY_SIZE_RANGE, "CKR_WRAPPING_KEY_SIZE_RANGE"},
    {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
    {CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED"},
};

/* The CKR_ name of rv, or its number in hex; buf holds the latter. */
static const char *rv_name(CK_RV rv, char *buf, size_t buf_len)
{
    for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
        if (rv_names[i].rv == rv)
            return rv_names[i].name;
    snprintf(buf, buf_len, "CKR_0x%lx", (unsigned long)rv);
    return buf;
}

static const char *mech_name(CK_MECHANISM_TYPE m)
{
    if (m == CKM_AES_KEY_WRAP_KWP)
        return "CKM_AES_KEY_WRAP_KWP";
    if (m == CKM_AES_KEY_WRAP_PAD)
        return "CKM_AES_KEY_WRAP_PAD";
    if (m == CV_CKM_LUNA_AES_KWP)
        return "CKM_AES_KWP (Luna)";
    return "unlisted mechanism";
}

static void log_rv(const struct p11_state *s, const char *call, CK_RV rv)
{
    char buf[32];
    cv_log(CV_LOG_ERROR, "pkcs11_call_failed", CV_LS("call", call),
           CV_LS("rv", rv_name(rv, buf, sizeof(buf))), CV_LS("token", s->token_label),
           CV_LS("key_label", s->key_label));
}

static void why_rv(char *why, size_t why_len, const char *what, CK_RV rv)
{
    char buf[32];
    snprintf(why, why_len, "%s: %s", what, rv_name(rv, buf, sizeof(buf)));
}

/* Module registry. */

static cv_status module_acquire(const char *path, struct p11_module **out, char *why,
                                size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    CK_C_GetFunctionList get_list = NULL;
    CK_FUNCTION_LIST_PTR fl = NULL;
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;
    bool finalize = true;
    void *sym;

    pthread_mutex_lock(&modules_lock);
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *err = dlerror();
        snprintf(why, why_len, "cannot load PKCS#11 module %s: %s", path,
                 err != NULL ? err : "unknown error");
        goto out;
    }
    for (struct p11_module *m = modules; m != NULL; m = m->next) {
        if (m->dl == dl) {
            m->refs++;
            dlclose(dl); /* drop the reference this dlopen added */
            dl = NULL;
            *out = m;
            st = CV_OK;
            goto out;
        }
    }
    sym = dlsym(dl, "C_GetFunctionList");
    if (sym == NULL) {
        snprintf(why, why_len, "%s is not a PKCS#11 module (no C_GetFunctionList)", path);
        goto out;
    }
    /* POSIX guarantees dlsym results convert to function pointers; ISO C
     * does not, so the bits are copied rather than cast. */
    _Static_assert(sizeof(get_list) == sizeof(sym), "function and object pointers differ");
    memcpy(&get_list, &sym, sizeof(get_list));
    rv = get_list(&fl);
    if (rv != CKR_OK || fl == NULL) {
        why_rv(why, why_len, "C_GetFunctionList failed", rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
        goto out;
    }
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK; /* several service threads call in at once */
    rv = fl->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        finalize = false; /* someone else in this process owns the module's lifetime */
    } else if (rv != CKR_OK) {
        why_rv(why, why_len, "C_Initialize failed", rv);
        goto out;
    }
    struct p11_module *m = cv_xcalloc(1, sizeof(*m));
    m->dl = dl;
    m->fl = fl;
    m->finalize = finalize;
    m->refs = 1;
    m->next = modules;
    modules = m;
    dl = NULL;
    *out = m;
    st = CV_OK;
out:
    if (dl != NULL)
        dlclose(dl);
    pthread_mutex_unlock(&modules_lock);
    return st;
}

static void module_release(struct p11_module *mod)
{
    if (mod == NULL)
        return;
    pthread_mutex_lock(&modules_lock);
    if (--mod->refs == 0) {
        for (struct p11_module **p = &modules; *p != NULL; p = &(*p)->next) {
            if (*p == mod) {
                *p = mod->next;
                break;
            }
        }
        if (mod->finalize)
            (void)mod->fl->C_Finalize(NULL);
        dlclose(mod->dl);
        free(mod);
    }
    pthread_mutex_unlock(&modules_lock);
}

/* The PIN file: the same custody rule as a KEK file (secret_file.h). One
 * trailing newline (CR/LF) is not part of the PIN. */
static cv_status read_pin(const char *path, struct cv_secbuf **out, char *why, size_t why_len)
{
    struct cv_secbuf *pin = NULL;
    char content[48];
    snprintf(content, sizeof(content), "one PIN of 1 to %d bytes", PIN_MAX_BYTES);
    CV_TRY(
        cv_secret_file_read(path, "PKCS#11 PIN file", content, PIN_MAX_BYTES, &pin, why, why_len));
    while (pin->len > 0 && (pin->data[pin->len - 1] == '\n' || pin->data[pin->len - 1] == '\r'))
        pin->len--;
    if (pin->len == 0) {
        snprintf(why, why_len, "PKCS#11 PIN file %s must hold %s", path, content);
        cv_secbuf_free(pin);
        return CV_ERR_CONFIG;
    }
    *out = pin;
    return CV_OK;
}

static bool token_label_is(const unsigned char padded[32], const char *label)
{
    size_t n = strlen(label);
    if (n > 32 || memcmp(padded, label, n) != 0)
        return false;
    for (size_t i = n; i < 32; i++)
        if (padded[i] != ' ')
            return false;
    return true;
}

static cv_status find_slot(struct p11_state *s, char *why, size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, found = 0;
    CK_RV rv = s->fl->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK) {
        why_rv(why, why_len, "C_GetSlotList failed", rv);
        goto out;
    }
    slots = cv_xcalloc(n, sizeof(*slots));
    rv = s->fl->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        why_rv(why, why_len, "C_GetSlotList failed", rv);
        goto out;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        if (s->fl->C_GetTokenInfo(slots[i], &info) != CKR_OK)
            continue;
        if (token_label_is(info.label, s->token_label)) {
            s->slot = slots[i];
            found++;
        }
    }
    if (found != 1) {
        snprintf(why, why_len,
                 found == 0 ? "no PKCS#11 token labelled \"%s\""
                            : "more than one PKCS#11 token labelled \"%s\"",
                 s->token_label);
        goto out;
    }
    st = CV_OK;
out:
    free(slots);
    return st;
}

static cv_status token_login(struct p11_state *s, const char *pin_file, char *why, size_t why_len)
{
    struct cv_secbuf *pin = NULL;
    CV_TRY(read_pin(pin_file, &pin, why, why_len));
    CK_RV rv = s->fl->C_OpenSession(s->slot, CKF_SERIAL_SESSION, NULL, NULL, &s->login_session);
    if (rv == CKR_OK) {
        s->have_login_session = true;
        rv = s->fl->C_Login(s->login_session, CKU_USER, pin->data, pin->len);
        /* Another provider on the same token in this process already logged in. */
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
            rv = CKR_OK;
    }
    cv_secbuf_free(pin);
    if (rv != CKR_OK) {
        char what[160];
        snprintf(what, sizeof(what), "cannot log in to PKCS#11 token \"%s\"", s->token_label);
        why_rv(why, why_len, what, rv);
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

/* Finds the KEK by label and insists that it can never leave the token. */
static cv_status find_kek(struct p11_state *s, char *why, size_t why_len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_LABEL, s->key_label, strlen(s->key_label)},
    };
    CK_OBJECT_HANDLE hits[2];
    CK_ULONG n = 0;
    CK_SESSION_HANDLE h = s->login_session;
    CK_RV rv = s->fl->C_FindObjectsInit(h, find, sizeof(find) / sizeof(find[0]));
    if (rv == CKR_OK) {
        rv = s->fl->C_FindObjects(h, hits, 2, &n);
        CK_RV rv2 = s->fl->C_FindObjectsFinal(h);
        if (rv == CKR_OK)
            rv = rv2;
    }
    if (rv != CKR_OK) {
        why_rv(why, why_len, "cannot search the PKCS#11 token for the KEK", rv);
        return CV_ERR_CONFIG;
    }
    if (n != 1) {
        snprintf(why, why_len,
                 n == 0 ? "no AES secret key labelled \"%s\" on PKCS#11 token \"%s\""
                        : "more than one AES secret key labelled \"%s\" on PKCS#11 token \"%s\"",
                 s->key_label, s->token_label);
        return CV_ERR_CONFIG;
    }
    s->kek = hits[0];

    CK_BBOOL sensitive = CK_FALSE, extractable = CK_TRUE, wrap = CK_FALSE, unwrap = CK_FALSE,
             encrypt = CK_FALSE;
    CK_ULONG value_len = 0;
    CK_ATTRIBUTE attrs[] = {
        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_WRAP, &wrap, sizeof(wrap)},
        {CKA_UNWRAP, &unwrap, sizeof(unwrap)},
        {CKA_ENCRYPT, &encrypt, sizeof(encrypt)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
    };
    rv = s->fl->C_GetAttributeValue(h, s->kek, attrs, sizeof(attrs) / sizeof(attrs[0]));
    if (rv != CKR_OK) {
        why_rv(why, why_len, "cannot read the KEK's attributes", rv);
        return CV_ERR_CONFIG;
    }
    const char *bad = NULL;
    if (value_len != 32)
        bad = "is not a 256-bit AES key";
    else if (sensitive != CK_TRUE || extractable != CK_FALSE)
        bad = "could leave the token (it must be CKA_SENSITIVE and not CKA_EXTRACTABLE)";
    else if (wrap != CK_TRUE || unwrap != CK_TRUE)
        bad = "is not allowed to wrap and unwrap (CKA_WRAP, CKA_UNWRAP)";
    else if (encrypt != CK_TRUE)
        bad = "is not allowed to encrypt (CKA_ENCRYPT, needed for the key check value)";
    if (bad != NULL) {
        snprintf(why, why_len, "PKCS#11 key \"%s\" on token \"%s\" %s", s->key_label,
                 s->token_label, bad);
        return CV_ERR_CONFIG;
    }
    return CV_OK;
}

/* Sessions: borrowed per call, returned only after a clean success (a failed
 * call may leave an operation active or the session dead). */

static cv_status session_take(struct p11_state *s, CK_SESSION_HANDLE *out)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_idle > 0) {
        *out = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->lock);
        return CV_OK;
    }
    pthread_mutex_unlock(&s->lock);
    CK_RV rv = s->fl->C_OpenSession(s->slot, CKF_SERIAL_SESSION, NULL, NULL, out);
    if (rv != CKR_OK) {
        log_rv(s, "C_OpenSession", rv);
        return CV_ERR_CRYPTO;
    }
    return CV_OK;
}

static void session_give(struct p11_state *s, CK_SESSION_HANDLE h, bool reusable)
{
    if (reusable) {
        pthread_mutex_lock(&s->lock);
        if (s->n_idle < SESSION_POOL_MAX) {
            s->idle[s->n_idle++] = h;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        pthread_mutex_unlock(&s->lock);
    }
    /* Closing a session also destroys any session object left in it. */
    (void)s->fl->C_CloseSession(h);
}

/* The operations, on a session the caller holds. */

static cv_status do_wrap(struct p11_state *s, CK_SESSION_HANDLE h, CK_MECHANISM_TYPE mech_type,
                         unsigned char *key, size_t key_len, unsigned char **out, size_t *out_len)
{
    cv_status st = CV_ERR_CRYPTO;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    /* A session object that lives for this call only: it must be
     * extractable to be wrapped at all, and is destroyed at out. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &no, sizeof(no)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &no, sizeof(no)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
        {CKA_VALUE, key, key_len},
    };
    CK_MECHANISM mech = {mech_type, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    /* RFC 5649: the input padded to a multiple of 8, plus 8 bytes. */
    CK_ULONG cap = ((key_len + 7) / 8) * 8 + 8, n = cap;
    unsigned char *buf = cv_xmalloc(cap);
    CK_RV rv = s->fl->C_CreateObject(h, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        log_rv(s, "C_CreateObject", rv);
        goto out;
    }
    rv = s->fl->C_WrapKey(h, &mech, s->kek, obj, buf, &n);
    if (rv != CKR_OK) {
        log_rv(s, "C_WrapKey", rv);
        goto out;
    }
    *out = buf;
    *out_len = n;
    buf = NULL;
    st = CV_OK;
out:
    /* A DEK that cannot be destroyed fails the call; the caller then closes
     * the session, which destroys the object. */
    if (obj != CK_INVALID_HANDLE && (rv = s->fl->C_DestroyObject(h, obj)) != CKR_OK) {
        log_rv(s, "C_DestroyObject", rv);
        if (st == CV_OK) {
            free(*out);
            *out = NULL;
            st = CV_ERR_CRYPTO;
        }
    }
    free(buf);
    return st;
}

static bool rv_means_bad_wrapping(CK_RV rv)
{
    /* What tokens answer when the integrity check of RFC 5649 fails (wrong KEK
     * or tampered bytes); SoftHSM2 2.6 reports CKR_GENERAL_ERROR for it. */
    return rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_WRAPPED_KEY_LEN_RANGE ||
           rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
           rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED;
}

static cv_status do_unwrap(struct p11_state *s, CK_SESSION_HANDLE h, CK_MECHANISM_TYPE mech_type,
                           const unsigned char *in, size_t in_len, struct cv_secbuf **out)
{
    cv_status st = CV_ERR_CRYPTO;
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    /* The DEK is used by OpenSSL in this process, so the token must hand it
     * back: a session object, readable once, destroyed at out. */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},   {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &no, sizeof(no)},     {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &no, sizeof(no)}, {CKA_EXTRACTABLE, &yes, sizeof(yes)},
    };
    CK_MECHANISM mech = {mech_type, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    struct cv_secbuf *key = NULL;
    /* C_UnwrapKey takes a non-const pointer; the wrapped bytes are not secret. */
    unsigned char *wrapped = cv_xmalloc(in_len);
    memcpy(wrapped, in, in_len);
    CK_RV rv = s->fl->C_UnwrapKey(h, &mech, s->kek, wrapped, in_len, tmpl,
                                  sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        if (rv_means_bad_wrapping(rv)) {
            char buf[32];
            cv_log(CV_LOG_WARN, "pkcs11_unwrap_rejected",
                   CV_LS("rv", rv_name(rv, buf, sizeof(buf))), CV_LS("key_label", s->key_label));
            st = CV_ERR_INTEGRITY;
        } else {
            log_rv(s, "C_UnwrapKey", rv);
        }
        goto out;
    }
    /* The key is at most in_len - 8 bytes (RFC 5649); read it straight into
     * secure memory, so no other copy exists in this process. */
    key = cv_secbuf_new(in_len);
    CK_ATTRIBUTE value = {CKA_VALUE, key->data, key->cap};
    rv = s->fl->C_GetAttributeValue(h, obj, &value, 1);
    if (rv != CKR_OK) {
        log_rv(s, "C_GetAttributeValue", rv);
        goto out;
    }
    if (value.ulValueLen == CK_UNAVAILABLE_INFORMATION || value.ulValueLen == 0 ||
        value.ulValueLen > in_len - 8) {
        log_rv(s, "C_GetAttributeValue", CKR_GENERAL_ERROR);
        goto out;
    }
    key->len = value.ulValueLen;
    *out = key;
    key = NULL;
    st = CV_OK;
out:
    if (obj != CK_INVALID_HANDLE && (rv = s->fl->C_DestroyObject(h, obj)) != CKR_OK) {
        log_rv(s, "C_DestroyObject", rv);
        if (st == CV_OK) {
            cv_secbuf_free(*out);
            *out = NULL;
            st = CV_ERR_CRYPTO;
        }
    }
    cv_secbuf_free(key);
    free(wrapped);
    return st;
}

/* One AES block under the KEK, ECB: the key check value and the self-test. */
static cv_status do_ecb_block(struct p11_state *s, CK_SESSION_HANDLE h, unsigned char in[16],
                              unsigned char out[16])
{
    CK_MECHANISM mech = {CKM_AES_ECB, NULL, 0};
    CK_ULONG n = 16;
    CK_RV rv = s->fl->C_EncryptInit(h, &mech, s->kek);
    if (rv != CKR_OK) {
        log_rv(s, "C_EncryptInit", rv);
        return CV_ERR_CRYPTO;
    }
    rv = s->fl->C_Encrypt(h, in, 16, out, &n);
    if (rv != CKR_OK || n != 16) {
        log_rv(s, "C_Encrypt", rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
        return CV_ERR_CRYPTO;
    }
    return CV_OK;
}

/* Proves that mech is RFC 5649 and not PKCS#7 padding + RFC 3394 (which PKCS#11
 * 3.0 calls CKM_AES_KEY_WRAP_PAD): an 8-byte key must wrap to exactly
 * AES(KEK, A65959A6 || 00000008 || key) (RFC 5649 4.1, one semiblock), and a
 * 32-byte key to 40 bytes that unwrap to the same key. */
static bool wrap_mech_is_rfc5649(struct p11_state *s, CK_MECHANISM_TYPE mech)
{
    bool ok = false;
    unsigned char probe[32], block[16], expect[16];
    unsigned char *wrapped = NULL;
    size_t wrapped_len = 0;
    struct cv_secbuf *back = NULL;
    CK_SESSION_HANDLE h = s->login_session;
    if (cv_random_bytes(probe, sizeof(probe)) != CV_OK)
        goto out;
    static const unsigned char aiv[8] = {0xA6, 0x59, 0x59, 0xA6, 0x00, 0x00, 0x00, 0x08};
    memcpy(block, aiv, 8);
    memcpy(block + 8, probe, 8);
    if (do_ecb_block(s, h, block, expect) != CV_OK)
        goto out;
    if (do_wrap(s, h, mech, probe, 8, &wrapped, &wrapped_len) != CV_OK)
        goto out;
    if (wrapped_len != 16 || !cv_ct_equal(wrapped, expect, 16))
        goto out;
    free(wrapped);
    wrapped = NULL;
    if (do_wrap(s, h, mech, probe, 32, &wrapped, &wrapped_len) != CV_OK || wrapped_len != 40)
        goto out;
    if (do_unwrap(s, h, mech, wrapped, wrapped_len, &back) != CV_OK || back->len != 32 ||
        !cv_ct_equal(back->data, probe, 32))
        goto out;
    ok = true;
out:
    cv_secbuf_free(back);
    free(wrapped);
    cv_wipe(probe, sizeof(probe));
    cv_wipe(block, sizeof(block));
    cv_wipe(expect, sizeof(expect));
    return ok;
}

static bool mech_supports(struct p11_state *s, CK_MECHANISM_TYPE mech, CK_FLAGS need)
{
    CK_MECHANISM_INFO info;
    return s->fl->C_GetMechanismInfo(s->slot, mech, &info) == CKR_OK && (info.flags & need) == need;
}

static cv_status choose_wrap_mech(struct p11_state *s, char *why, size_t why_len)
{
    static const CK_MECHANISM_TYPE candidates[] = {CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD,
                                                   CV_CKM_LUNA_AES_KWP};
    if (!mech_supports(s, CKM_AES_ECB, CKF_ENCRYPT)) {
        snprintf(why, why_len,
                 "PKCS#11 token \"%s\" does not offer CKM_AES_ECB encryption (key check value)",
                 s->token_label);
        return CV_ERR_CONFIG;
    }
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (!mech_supports(s, candidates[i], CKF_WRAP | CKF_UNWRAP))
            continue;
        if (wrap_mech_is_rfc5649(s, candidates[i])) {
            s->wrap_mech = candidates[i];
            return CV_OK;
        }
        cv_log(CV_LOG_WARN, "pkcs11_wrap_mechanism_rejected",
               CV_LS("mechanism", mech_name(candidates[i])),
               CV_LS("reason", "does not produce RFC 5649 output or failed the self-test"));
    }
    snprintf(why, why_len,
             "PKCS#11 token \"%s\" offers no working RFC 5649 key wrap (tried "
             "CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD and Luna's CKM_AES_KWP; see the log)",
             s->token_label);
    return CV_ERR_CONFIG;
}

/* The vtable. */

static cv_status p11_wrap(struct cv_keyprovider *kp, const struct cv_secbuf *key,
                          unsigned char **out, size_t *out_len)
{
    struct p11_state *s = kp->state;
    CK_SESSION_HANDLE h;
    /* Multiples of 8 only: SoftHSM2 2.6 zero-pads shorter tails before
     * wrapping, which is not RFC 5649 (its unwrap is right for any length).
     * Every key we wrap (AES-256 DEKs, the HMAC fingerprint key) is 32 bytes. */
    if (key->len == 0 || key->len % 8 != 0 || key->len > WRAP_MAX_IN) {
        cv_log(CV_LOG_ERROR, "pkcs11_wrap_refused", CV_LI("key_bytes", key->len),
               CV_LS("reason", "the PKCS#11 provider wraps keys of 8 to 1024 bytes, in 8s"));
        return CV_ERR_CRYPTO;
    }
    CV_TRY(session_take(s, &h));
    cv_status st = do_wrap(s, h, s->wrap_mech, key->data, key->len, out, out_len);
    session_give(s, h, st == CV_OK);
    return st;
}

static cv_status p11_unwrap(struct cv_keyprovider *kp, const unsigned char *in, size_t in_len,
                            struct cv_secbuf **out)
{
    struct p11_state *s = kp->state;
    CK_SESSION_HANDLE h;
    if (in_len < 16 || in_len > WRAP_MAX_IN + 8 || in_len % 8 != 0)
        return CV_ERR_INTEGRITY;
    CV_TRY(session_take(s, &h));
    cv_status st = do_unwrap(s, h, s->wrap_mech, in, in_len, out);
    /* A rejected wrapping leaves the session clean; keep it. */
    session_give(s, h, st == CV_OK || st == CV_ERR_INTEGRITY);
    return st;
}

static cv_status p11_check_value(struct cv_keyprovider *kp, unsigned char out[CV_KCV_BYTES])
{
    struct p11_state *s = kp->state;
    unsigned char zero[16] = {0}, block[16];
    CK_SESSION_HANDLE h;
    CV_TRY(session_take(s, &h));
    cv_status st = do_ecb_block(s, h, zero, block);
    if (st == CV_OK)
        memcpy(out, block, CV_KCV_BYTES);
    session_give(s, h, st == CV_OK);
    cv_wipe(block, sizeof(block));
    return st;
}

static void state_free(struct p11_state *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_idle; i++)
        (void)s->fl->C_CloseSession(s->idle[i]);
    /* Closing the last session logs this application out of the token; a
     * second provider on the same token keeps its own login session open. */
    if (s->have_login_session)
        (void)s->fl->C_CloseSession(s->login_session);
    module_release(s->mod);
    pthread_mutex_destroy(&s->lock);
    free(s->token_label);
    free(s->key_label);
    free(s);
}

static void p11_destroy(struct cv_keyprovider *kp)
{
    state_free(kp->state);
    kp->state = NULL;
}

static const struct cv_keyprovider_ops pkcs11_ops = {
    .name = "pkcs11",
    .wrap = p11_wrap,
    .unwrap = p11_unwrap,
    .check_value = p11_check_value,
    .destroy = p11_destroy,
};

cv_status cv_keyprovider_pkcs11_open(const char *module_path, const char *token_label,
                                     const char *key_label, const char *pin_file,
                                     struct cv_keyprovider **out, char *why, size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    if (module_path == NULL || *module_path == '\0' || token_label == NULL ||
        *token_label == '\0' || strlen(token_label) > 32 || key_label == NULL ||
        *key_label == '\0' || pin_file == NULL || *pin_file == '\0') {
        snprintf(why, why_len,
                 "PKCS#11 KEK needs a module path, a token label (1 to 32 bytes), "
                 "a key label and a PIN file");
        return CV_ERR_CONFIG;
    }
    struct p11_state *s = cv_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->token_label = cv_xstrdup(token_label);
    s->key_label = cv_xstrdup(key_label);
    if ((st = module_acquire(module_path, &s->mod, why, why_len)) != CV_OK)
        goto out;
    s->fl = s->mod->fl;
    if ((st = find_slot(s, why, why_len)) != CV_OK)
        goto out;
    if ((st = token_login(s, pin_file, why, why_len)) != CV_OK)
        goto out;
    if ((st = find_kek(s, why, why_len)) != CV_OK)
        goto out;
    if ((st = choose_wrap_mech(s, why, why_len)) != CV_OK)
        goto out;
    cv_log(CV_LOG_INFO, "pkcs11_kek_ready", CV_LS("token", s->token_label),
           CV_LS("key_label", s->key_label), CV_LS("mechanism", mech_name(s->wrap_mech)));
    struct cv_keyprovider *kp = cv_xcalloc(1, sizeof(*kp));
    kp->ops = &pkcs11_ops;
    kp->state = s;
    *out = kp;
    s = NULL;
    st = CV_OK;
out:
    state_free(s);
    return st;
}
