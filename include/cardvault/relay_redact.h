#ifndef CV_RELAY_REDACT_H
#define CV_RELAY_REDACT_H

#include <stddef.h>

/* Redaction of a payment processor's answer before the relay hands it to
 * the shop (docs/relay.md). In place and byte for byte (the text keeps its
 * length and shape, so a JSON document stays valid when the card sat in a
 * string): every card number the vault's scanner finds (pan_scan.c in byte
 * mode: 12-19 Luhn-valid digits, with single separators, JSON and URL
 * escapes, full-width digits, UTF-16, base64), every 3-4 digit value after a
 * key named like a security code, and
 * every occurrence of the exact card numbers and security codes this relay
 * sent (card numbers also inside longer digit runs and with up to two
 * separator bytes between digits; codes as a whole digit run). Each redacted
 * byte becomes '*', except separators (space, '-', '.', '/', '+'), which are
 * kept, but not inside a base64 or UTF-16 range, which goes whole. */

#define CV_RELAY_REDACT_MAX 4 /* card numbers, and codes, per relay */

/* What this relay sent: NUL-terminated digit strings, borrowed. */
struct cv_relay_sent {
    const char *pans[CV_RELAY_REDACT_MAX];
    size_t n_pans;
    const char *cvcs[CV_RELAY_REDACT_MAX];
    size_t n_cvcs;
};

/* Redacts buf[0..len) in place; returns how many ranges it redacted. sent
 * may be NULL (the scanner alone). */
size_t cv_relay_redact(char *buf, size_t len, const struct cv_relay_sent *sent);

#endif
