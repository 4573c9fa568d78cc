#ifndef CV_PAN_SCAN_H
#define CV_PAN_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A streaming scanner for card numbers in arbitrary data (database values
 * today; files and dumps for a future scan command). It finds runs of 12-19
 * digits that pass the Luhn check, with or without single spaces or hyphens
 * between digit groups (what cardvault's own PAN parser accepts). Text is read
 * as UTF-8, with JSON \u00NN escapes and full-width digits folded to digits;
 * in byte mode the data is also read as UTF-16LE/BE at both byte alignments.
 *
 * Feed a stream in chunks of any size (a PAN split across two chunks is still
 * found) and end it with cv_pan_scan_finish; each hit is reported with its
 * byte offsets in the stream and a masked sample. Nothing here ever keeps,
 * returns or prints a full card number: only masked digits leave the module
 * (PCI DSS 3.4.1) and its own copies of candidate digits are wiped. */

/* masked digits and NUL, e.g. "411111******1111" */
#define CV_PAN_SCAN_SAMPLE_LEN 20

enum cv_pan_scan_mode {
    CV_PAN_SCAN_TEXT, /* UTF-8 text (PostgreSQL text cannot hold UTF-16 digits: no NUL bytes) */
    CV_PAN_SCAN_BYTES /* raw bytes: read as UTF-8 and as UTF-16 */
};

struct cv_pan_hit {
    uint64_t offset; /* stream offset of the first byte of the first digit */
    uint64_t end;    /* stream offset just past the last digit */
    unsigned digits; /* 12-19 */
    char masked[CV_PAN_SCAN_SAMPLE_LEN];
    const char *encoding; /* "utf8", "json-escape", "fullwidth", "utf16le", "utf16be" */
};

/* Called once per hit. The hit is borrowed for the call's duration. */
typedef void (*cv_pan_hit_fn)(void *ctx, const struct cv_pan_hit *hit);

struct cv_pan_scan;

/* A scanner for one stream; fn gets the hits. Free with cv_pan_scan_free. */
struct cv_pan_scan *cv_pan_scan_new(enum cv_pan_scan_mode mode, cv_pan_hit_fn fn, void *ctx);
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
    char sample[CV_PAN_SCAN_SAMPLE_LEN]; /* the first one, masked; "" when none */
    const char *sample_encoding;         /* its encoding; NULL when none */
};

/* A cv_pan_hit_fn that adds to the struct cv_pan_scan_summary in ctx. */
void cv_pan_scan_summarize(void *ctx, const struct cv_pan_hit *hit);
/* Scans one whole value and adds to sum (which the caller zeroes once). */
void cv_pan_scan_value(const void *buf, size_t len, enum cv_pan_scan_mode mode,
                       struct cv_pan_scan_summary *sum);

/* Masks a digit string for display: the last 4 digits, and as many of the
 * first 6 as leave at least 6 digits hidden (PCI DSS 3.4.1: BIN and last 4
 * at most). out gets '*' for hidden digits. */
void cv_pan_scan_mask(const char *digits, size_t n, char out[CV_PAN_SCAN_SAMPLE_LEN]);

#endif
