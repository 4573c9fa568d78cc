#ifndef CV_RELAY_DEST_H
#define CV_RELAY_DEST_H

#include <stdbool.h>
#include <stddef.h>

#include "cardvault/status.h"

/* The relay's destinations: the operator's allow-list of payment processors
 * (docs/operations.md, "Relay destinations"). It is a file the operator
 * writes, never something the API can change: the relay sends card data
 * only to a URL prefix listed here, with the methods and paths listed here,
 * over TLS checked against the CA (and pin, and client certificate) listed
 * here. The file is JSON:
 *
 *   {"destinations": [{"name": "acme", "url": "https://api.acme.example",
 *     "methods": ["POST"], "paths": ["/v1/charges"], ...}]}
 *
 * Parsing is strict: an unknown key, a wrong type, a duplicate name, an
 * http:// or IP-literal URL, a path that could climb out of its prefix are
 * each refused with a reason naming the destination and the field. */

#define CV_RELAY_DEST_NAME_MAX 32 /* [a-z0-9_-], the {destination} path segment */
#define CV_RELAY_DESTS_MAX     64
#define CV_RELAY_PATHS_MAX     32
#define CV_RELAY_URL_MAX       512
#define CV_RELAY_FILE_MAX      (256 * 1024)

enum {
    CV_RELAY_METHOD_GET = 1u << 0,
    CV_RELAY_METHOD_POST = 1u << 1,
    CV_RELAY_METHOD_PUT = 1u << 2,
    CV_RELAY_METHOD_PATCH = 1u << 3,
    CV_RELAY_METHOD_DELETE = 1u << 4,
};

struct cv_relay_destination {
    char name[CV_RELAY_DEST_NAME_MAX + 1];
    char *url;  /* https://host[:port][/base], no trailing slash */
    char *host; /* a DNS name, never an IP literal */
    unsigned port;
    unsigned methods;                /* CV_RELAY_METHOD_* */
    char *paths[CV_RELAY_PATHS_MAX]; /* allowed path prefixes, each starting with '/' */
    size_t n_paths;
    char *ca_file;     /* PEM bundle to trust; NULL: the system store */
    char *pin;         /* "sha256//BASE64[;sha256//...]" of the server's public key; NULL: none */
    char *client_cert; /* PEM, mutual TLS; with client_key, or neither */
    char *client_key;
    char *resolve;            /* an address the host name is pinned to (the name is still checked
                                 against the certificate); NULL: DNS */
    size_t max_request_bytes; /* the rendered body */
    size_t max_answer_bytes;  /* the processor's answer body, cut off while receiving */
    unsigned timeout_ms;      /* the whole exchange */
    unsigned connect_timeout_ms;
};

struct cv_relay_destinations {
    struct cv_relay_destination *v;
    size_t n;
};

/* Parses the file's bytes into *out (empty on entry). CV_ERR_CONFIG with a
 * one-line reason in why on any error, *out left empty. */
CV_MUST_USE cv_status cv_relay_destinations_parse(const char *json, size_t len,
                                                  struct cv_relay_destinations *out, char *why,
                                                  size_t why_len);

/* Reads and parses the file at path (at most CV_RELAY_FILE_MAX bytes). */
CV_MUST_USE cv_status cv_relay_destinations_load(const char *path,
                                                 struct cv_relay_destinations *out, char *why,
                                                 size_t why_len);

void cv_relay_destinations_free(struct cv_relay_destinations *d);

/* The destination named so, or NULL. */
const struct cv_relay_destination *cv_relay_destinations_find(const struct cv_relay_destinations *d,
                                                              const char *name);

/* May this method and path be sent there? The path must start with '/',
 * hold no "..", "//", backslash, percent-encoded slash, dot or backslash,
 * fragment, space or control byte, and its part before any '?' must equal a
 * listed prefix or continue it after a '/'. CV_ERR_RELAY_NOT_ALLOWED
 * otherwise. */
CV_MUST_USE cv_status cv_relay_destination_allows(const struct cv_relay_destination *d,
                                                  const char *method, const char *path);

/* The method's CV_RELAY_METHOD_* bit, or 0 for any other. */
unsigned cv_relay_method_bit(const char *method);

#endif
