#ifndef CV_PAN_SCAN_H
#define CV_PAN_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A streaming scanner for card numbers in arbitrary data (the vault's own
 * database for `cardvault audit storage`; a shop's databases, files and
 * dumps for `cardvault scan`). It finds runs of 12-19 digits that pass the
 * Luhn check, with or without single separators between digit groups (space,
 * hyphen, dot, and '+', a space in a URL-encoded form). Text is read as
 * UTF-8, with JSON \u00NN escapes, URL %XX escapes and full-width digits
 * folded to digits; in byte mode the data is also read as UTF-16LE/BE at
 * both byte alignments. Options: an issuer check (the run must also start
 * with a known issuer prefix and have a length that brand issues, so order,
 * phone and tracking numbers are rarely flagged), base64 decoding (runs of
 * the base64 alphabet are decoded and the result scanned too), and security
 * codes next to a key named like one ("cvv": "123", cvc=1234).
 *
 * Feed a stream in chunks of any size (a PAN split across two chunks is still
 * found) and end it with cv_pan_scan_finish; each hit is reported with its
 * byte offsets in the stream and a masked sample. Nothing here ever keeps,
 * returns or prints a full card number: only masked digits leave the module
 * (PCI DSS 3.4.1) and its own copies of candidate digits are wiped. */

/* masked digits and NUL, e.g. "411111******1111" */
#define CV_PAN_SCAN_SAMPLE_LEN 20

/* The mode of a scan: TEXT or BYTES, plus any of the option bits. */
enum cv_pan_scan_mode {
    CV_PAN_SCAN_TEXT = 0, /* UTF-8 text (PostgreSQL text cannot hold UTF-16 digits: no NUL bytes) */
    CV_PAN_SCAN_BYTES = 1, /* raw bytes: read as UTF-8 and as UTF-16 */
};
#define CV_PAN_SCAN_ISSUER   2u /* a hit also needs a known issuer prefix and brand length */
#define CV_PAN_SCAN_BASE64   4u /* decode base64 runs and scan the result (encoding "base64") */
#define CV_PAN_SCAN_CVC_KEYS 8u /* report security codes after a key named like one */

enum cv_pan_hit_kind {
    CV_PAN_HIT_PAN = 0, /* a card number */
    CV_PAN_HIT_CVC = 1, /* a 3-4 digit value after a security-code key (masked "***") */
};

struct cv_pan_hit {
    enum cv_pan_hit_kind kind;
    uint64_t offset; /* stream offset of the first byte of the first digit */
    uint64_t end;    /* stream offset just past the last digit */
    unsigned digits; /* 12-19 */
    char masked[CV_PAN_SCAN_SAMPLE_LEN];
    /* "utf8", "json-escape", "url-escape", "fullwidth", "utf16le", "utf16be", "base64" */
    const char *encoding;
};

/* Called once per hit. The hit is borrowed for the call's duration. */
typedef void (*cv_pan_hit_fn)(void *ctx, const struct cv_pan_hit *hit);

struct cv_pan_scan;

/* A scanner for one stream; mode is a cv_pan_scan_mode with option bits;
 * fn gets the hits. Free with cv_pan_scan_free. */
struct cv_pan_scan *cv_pan_scan_new(unsigned mode, cv_pan_hit_fn fn, void *ctx);
/* Scans the next len bytes of the stream. UTF-8 readings report their hits
 * during the feed, as soon as no later byte can change them. */
void cv_pan_scan_feed(struct cv_pan_scan *s, const void *buf, size_t len);
/* Ends the stream: reports the hits still pending. In byte mode the four
 * UTF-16 readings overlap (UTF-16BE at offset 0 reads ASCII digits like
 * UTF-16LE at offset 1), so only the reading that found most is reported,
 * here, after the UTF-8 hits. The scanner may then be fed a new stream. */
void cv_pan_scan_finish(struct cv_pan_scan *s);
/* Wipes and frees; accepts NULL. */
void cv_pan_scan_free(struct cv_pan_scan *s);

/* What one or many values held: a count and the first hit, masked. */
struct cv_pan_scan_summary {
    uint64_t matches;                    /* Luhn-valid candidates found */
    uint64_t cvc_matches;                /* security codes after a security-code key */
    char sample[CV_PAN_SCAN_SAMPLE_LEN]; /* the first one, masked; "" when none */
    const char *sample_encoding;         /* its encoding; NULL when none */
};

/* A cv_pan_hit_fn that adds to the struct cv_pan_scan_summary in ctx. */
void cv_pan_scan_summarize(void *ctx, const struct cv_pan_hit *hit);
/* Scans one whole value and adds to sum (which the caller zeroes once). */
void cv_pan_scan_value(const void *buf, size_t len, unsigned mode, struct cv_pan_scan_summary *sum);

/* What one column (or file) held across many values: cv_pan_scan_column_add
 * scans one value and counts it; the first hit's masked sample is kept. */
struct cv_pan_scan_column {
    uint64_t values;
    uint64_t bytes;
    uint64_t values_with_hits;
    struct cv_pan_scan_summary hits; /* summed matches, first masked sample */
};
/* Scans one value into col; returns the matches it held (PANs and codes). */
uint64_t cv_pan_scan_column_add(struct cv_pan_scan_column *col, const void *buf, size_t len,
                                unsigned mode);

/* True when a column or key name reads like a card security code (cvc, cvv,
 * cvv2, cid, csc, security_code, ...): case, '_' and '-' are ignored, and a
 * name that contains one of the longer forms (card_cvv) counts too. */
bool cv_pan_scan_is_cvc_name(const char *name, size_t len);
/* True when a value is 3 or 4 digits, blanks and one pair of quotes around
 * them allowed: what a security code looks like. */
bool cv_pan_scan_is_cvc_value(const void *buf, size_t len);
/* True when the digits start with a known issuer prefix and have a length
 * that brand issues (Visa 13/16/19, Mastercard 16, Amex 15, ...). */
bool cv_pan_scan_issuer_ok(const char *digits, size_t n);

/* Masks a digit string for display: the last 4 digits, and as many of the
 * first 6 as leave at least 6 digits hidden (PCI DSS 3.4.1: BIN and last 4
 * at most). out gets '*' for hidden digits. */
void cv_pan_scan_mask(const char *digits, size_t n, char out[CV_PAN_SCAN_SAMPLE_LEN]);

#endif
