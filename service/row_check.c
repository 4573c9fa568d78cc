/* row_check.c: the check that a token row's clear columns belong to the
 * card sealed in it. BIN, last 4, brand and fingerprint are stored beside
 * the ciphertext so masked reads and reuse lookups need no key; a database
 * writer can change them, and nothing else would notice. Every open runs
 * this on the decrypted card: each column is recomputed the way tokenize
 * computed it and compared in constant time (no early exit, so timing does
 * not tell which column differed). It never logs, never returns a value it
 * derived from the card, and wipes every such value before it returns. */
#include "cardvault/row_check.h"

#include <stdio.h>
#include <string.h>

#include "cardvault/envelope.h"
#include "cardvault/token.h"

/* Longest column compared: the fingerprint, "fp_" + 22. */
#define FIELD_MAX (CV_FINGERPRINT_LEN + 1)

/* Constant-time equality of a stored column (at most cap bytes, NUL-ended
 * or not) and a computed one, over zero-padded copies of one fixed size, so
 * the lengths are compared along with the bytes. Every computed value is
 * shorter than FIELD_MAX. */
static bool same_column(const char *stored, size_t stored_cap, const char *computed)
{
    char a[FIELD_MAX + 1], b[FIELD_MAX + 1];
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    memcpy(a, stored, strnlen(stored, stored_cap < FIELD_MAX ? stored_cap : FIELD_MAX));
    memcpy(b, computed, strnlen(computed, FIELD_MAX));
    bool eq = cv_ct_equal(a, b, sizeof(a));
    cv_wipe(a, sizeof(a));
    cv_wipe(b, sizeof(b));
    return eq;
}

cv_status cv_row_check_columns(const struct cv_secbuf *fp_key, const struct cv_token_row *row,
                               const struct cv_card_plain *card, unsigned *mismatch)
{
    struct cv_card_display want;
    unsigned char mac[16];
    char fp[CV_FINGERPRINT_LEN + 1];
    unsigned bad = 0;
    cv_status st = CV_ERR_INTEGRITY;

    memset(fp, 0, sizeof(fp));
    *mismatch = 0;
    if (cv_card_display_of(card->pan, &want) != CV_OK) {
        /* Not a PAN we could ever have sealed: nothing to compare with. */
        *mismatch = CV_ROW_MISMATCH_BIN | CV_ROW_MISMATCH_LAST4 | CV_ROW_MISMATCH_BRAND |
                    CV_ROW_MISMATCH_FINGERPRINT;
        goto out;
    }
    /* The same input tokenize fingerprints: the row's merchant (itself bound
     * to the ciphertext by the associated data) and the normalized PAN. */
    if (cv_envelope_fingerprint(fp_key, row->merchant_id, card->pan, mac) != CV_OK) {
        st = CV_ERR_CRYPTO;
        goto out;
    }
    cv_token_format_fingerprint(mac, fp);
    /* All four are compared every time: no early exit. */
    bad |= same_column(row->bin, sizeof(row->bin), want.bin) ? 0 : CV_ROW_MISMATCH_BIN;
    bad |= same_column(row->last4, sizeof(row->last4), want.last4) ? 0 : CV_ROW_MISMATCH_LAST4;
    bad |= same_column(row->brand, sizeof(row->brand), want.brand) ? 0 : CV_ROW_MISMATCH_BRAND;
    bad |= same_column(row->fingerprint, sizeof(row->fingerprint), fp)
               ? 0
               : CV_ROW_MISMATCH_FINGERPRINT;
    *mismatch = bad;
    st = bad == 0 ? CV_OK : CV_ERR_INTEGRITY;
out:
    cv_wipe(&want, sizeof(want));
    cv_wipe(mac, sizeof(mac));
    cv_wipe(fp, sizeof(fp));
    return st;
}

void cv_row_check_describe(unsigned mask, char *out, size_t cap)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {CV_ROW_MISMATCH_BIN, "bin"},
        {CV_ROW_MISMATCH_LAST4, "last4"},
        {CV_ROW_MISMATCH_BRAND, "brand"},
        {CV_ROW_MISMATCH_FINGERPRINT, "fingerprint"},
    };
    size_t n = 0;
    if (cap == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((mask & names[i].bit) == 0)
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n > 0 ? "," : "", names[i].name);
        if (w < 0 || (size_t)w >= cap - n)
            return; /* truncated, still NUL-terminated */
        n += (size_t)w;
    }
}
