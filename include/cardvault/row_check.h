#ifndef CV_ROW_CHECK_H
#define CV_ROW_CHECK_H

#include <stddef.h>

#include "cardvault/card.h"
#include "cardvault/secbuf.h"
#include "cardvault/status.h"
#include "cardvault/store_rows.h"

/* The check that a token row's clear columns (BIN, last 4, brand,
 * fingerprint) belong to the card sealed in that row. They sit outside the
 * ciphertext, so whoever writes the database could change them; every open
 * recomputes them from the decrypted card and refuses the row when one
 * differs. */

/* Bits of the mismatch mask: which stored column disagrees with the card. */
#define CV_ROW_MISMATCH_BIN         0x1u
#define CV_ROW_MISMATCH_LAST4       0x2u
#define CV_ROW_MISMATCH_BRAND       0x4u
#define CV_ROW_MISMATCH_FINGERPRINT 0x8u
/* A name list of every bit, e.g. "bin,last4,brand,fingerprint", fits this. */
#define CV_ROW_MISMATCH_NAMES_MAX 40

/* Recomputes BIN, last 4, brand and the fingerprint (HMAC under fp_key over
 * row->merchant_id and the PAN, as tokenize computes it) from card and
 * compares each with row's column in constant time, all four every time.
 * CV_OK when all agree; CV_ERR_INTEGRITY when one does not (or the PAN is
 * not 12-19 digits), with the columns in *mismatch; CV_ERR_CRYPTO when the
 * HMAC cannot be computed. Nothing derived from the card outlives the call. */
CV_MUST_USE cv_status cv_row_check_columns(const struct cv_secbuf *fp_key,
                                           const struct cv_token_row *row,
                                           const struct cv_card_plain *card, unsigned *mismatch);
/* Writes the column names of mask, comma-separated ("" for 0), into out
 * (cap bytes, at least 1): for a log line; names only, never values. */
void cv_row_check_describe(unsigned mask, char *out, size_t cap);

#endif
