/* audit.c: the pure half of cardvault's evidence commands. It rebuilds the
 * canonical text of an audit event byte for byte as audit_canonical() in
 * migrations/0001_init.sql does, recomputes the SHA-256 chain over rows it
 * is handed, and renders events as JSON lines for a SIEM (through struct
 * cv_buf and its UTF-8-safe JSON string writer, the path every hand-built
 * JSON text takes). It does no I/O and knows nothing of PostgreSQL; the card
 * number scanner behind `cardvault audit storage` is pan_scan.c. */
#include "cardvault/audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/buf.h"
#include "cardvault/envelope.h"
#include "cardvault/secbuf.h"
#include "cardvault/token.h"

#define US_PER_S  INT64_C(1000000)
#define S_PER_DAY INT64_C(86400)
#define FIELD_SEP '\x1f' /* E'\x1f' in audit_canonical() */
#define N_FIELDS  9

/* ---------------------------------------------------------------- time */

/* Days since 1970-01-01 -> proleptic Gregorian date (H. Hinnant's
 * civil_from_days; exact for every int64 day count we can meet). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Writes v (0 <= v < 10^width) as exactly `width` digits; returns the end. */
static char *put_digits(char *p, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void cv_audit_format_time(int64_t us, char out[CV_AUDIT_TIME_LEN])
{
    /* floor division: instants before 1970 still get a non-negative fraction */
    int64_t secs = us / US_PER_S, frac = us % US_PER_S;
    if (frac < 0) {
        frac += US_PER_S;
        secs -= 1;
    }
    int64_t days = secs / S_PER_DAY, sod = secs % S_PER_DAY;
    if (sod < 0) {
        sod += S_PER_DAY;
        days -= 1;
    }
    int64_t y = 0;
    int m = 0, d = 0;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) {
        /* PostgreSQL cannot store such an instant in timestamptz either. */
        snprintf(out, CV_AUDIT_TIME_LEN, "out-of-range");
        return;
    }
    /* "YYYY-MM-DDTHH:MM:SS.UUUUUUZ", every field fixed width */
    char *p = out;
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, frac, 6);
    *p++ = 'Z';
    *p = '\0';
}

static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

cv_status cv_audit_parse_since(const char *s, int64_t *us)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
    int64_t frac_us = 0;
    const char *p = s;
    if (s == NULL || !take_digits(&p, 4, &y) || *p++ != '-' || !take_digits(&p, 2, &mo) ||
        *p++ != '-' || !take_digits(&p, 2, &d))
        return CV_ERR_BAD_REQUEST;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return CV_ERR_BAD_REQUEST;
    if (*p != '\0') {
        /* RFC 3339 5.6: "T" (or, as its note allows, a space), time, offset */
        if (*p != 'T' && *p != 't' && *p != ' ')
            return CV_ERR_BAD_REQUEST;
        p++;
        if (!take_digits(&p, 2, &h) || *p++ != ':' || !take_digits(&p, 2, &mi) || *p++ != ':' ||
            !take_digits(&p, 2, &sec))
            return CV_ERR_BAD_REQUEST;
        if (h > 23 || mi > 59 || sec > 60) /* 60: a leap second, counted as the next one */
            return CV_ERR_BAD_REQUEST;
        if (*p == '.') {
            p++;
            int n = 0;
            int64_t scale = 100000;
            while (*p >= '0' && *p <= '9') {
                if (n < 6) /* finer than a microsecond: truncated */
                    frac_us += (*p - '0') * scale;
                scale /= 10;
                n++;
                p++;
            }
            if (n == 0)
                return CV_ERR_BAD_REQUEST;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            sign = *p++ == '+' ? 1 : -1;
            if (!take_digits(&p, 2, &oh) || *p++ != ':' || !take_digits(&p, 2, &om) || oh > 23 ||
                om > 59)
                return CV_ERR_BAD_REQUEST;
        } else {
            return CV_ERR_BAD_REQUEST; /* a local time without offset is ambiguous */
        }
        if (*p != '\0')
            return CV_ERR_BAD_REQUEST;
    }
    int64_t secs = days_from_civil(y, mo, d) * S_PER_DAY + h * 3600 + mi * 60 + sec -
                   (int64_t)sign * (oh * 3600 + om * 60);
    *us = secs * US_PER_S + frac_us;
    return CV_OK;
}

/* ----------------------------------------------------------- canonical */

char *cv_audit_canonical(const struct cv_audit_row *row, size_t *len)
{
    char seq[24], ts[CV_AUDIT_TIME_LEN];
    snprintf(seq, sizeof(seq), "%" PRId64, row->seq);
    cv_audit_format_time(row->occurred_us, ts);
    /* concat_ws skips NULL arguments; audit_canonical() coalesces the
     * nullable columns to '' so only a NOT NULL column could be skipped, and
     * mirroring concat_ws exactly keeps even that case byte-identical. */
    const char *fields[N_FIELDS] = {
        seq,
        ts,
        row->actor,
        row->merchant_id != NULL ? row->merchant_id : "",
        row->token != NULL ? row->token : "",
        row->request_id != NULL ? row->request_id : "",
        row->action,
        row->outcome,
        row->detail != NULL ? row->detail : "",
    };
    size_t total = 0;
    for (size_t i = 0; i < N_FIELDS; i++)
        if (fields[i] != NULL)
            total += strlen(fields[i]) + 1;
    char *out = cv_xmalloc(total + 1);
    size_t n = 0;
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (fields[i] == NULL)
            continue;
        if (n > 0)
            out[n++] = FIELD_SEP;
        size_t l = strlen(fields[i]);
        memcpy(out + n, fields[i], l);
        n += l;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

cv_status cv_audit_event_hash(const struct cv_audit_row *row,
                              unsigned char out[CV_AUDIT_HASH_BYTES])
{
    size_t clen = 0;
    char *canon = cv_audit_canonical(row, &clen);
    size_t plen = row->prev_hash != NULL ? row->prev_hash_len : 0;
    unsigned char *msg = cv_xmalloc(plen + clen + 1);
    if (plen > 0)
        memcpy(msg, row->prev_hash, plen);
    memcpy(msg + plen, canon, clen);
    cv_status st = cv_envelope_sha256(msg, plen + clen, out);
    free(msg);
    free(canon);
    return st;
}

cv_status cv_audit_event_mac(const struct cv_secbuf *key,
                             const unsigned char prev_mac[CV_AUDIT_MAC_BYTES],
                             const struct cv_audit_row *row, unsigned char out[CV_AUDIT_MAC_BYTES])
{
    if (key == NULL || key->len != CV_AUDIT_KEY_BYTES)
        return CV_ERR_CRYPTO;
    size_t clen = 0;
    char *canon = cv_audit_canonical(row, &clen);
    unsigned char *msg = cv_xmalloc(CV_AUDIT_MAC_BYTES + clen + 1);
    memcpy(msg, prev_mac, CV_AUDIT_MAC_BYTES);
    memcpy(msg + CV_AUDIT_MAC_BYTES, canon, clen);
    /* One part: the MAC input is exactly prev_mac || canonical (no separator;
     * prev_mac has a fixed length, so the split is unambiguous). */
    const void *parts[] = {msg};
    const size_t lens[] = {CV_AUDIT_MAC_BYTES + clen};
    cv_status st = cv_envelope_hmac(key, parts, lens, 1, out);
    free(msg);
    free(canon);
    return st;
}

/* -------------------------------------------------------------- verify */

void cv_audit_verify_init(struct cv_audit_verifier *v)
{
    memset(v, 0, sizeof(*v));
    v->next_seq = 1; /* audit_head starts at seq 0 with 32 zero bytes */
}

void cv_audit_verify_set_key(struct cv_audit_verifier *v, cv_audit_seal_fn fn, void *ctx)
{
    v->seal_fn = fn;
    v->seal_ctx = ctx;
    v->require_keyed = true;
}

static bool broken(struct cv_audit_verifier *v, int64_t seq, const char *reason)
{
    v->broken = true;
    v->first_broken_seq = seq;
    v->reason = reason;
    return false;
}

/* The keyed half of a row's check (its SHA-256 link already holds). */
static bool verify_mac(struct cv_audit_verifier *v, const struct cv_audit_row *row)
{
    if (row->mac == NULL) {
        if (v->keyed_from != 0)
            return broken(v, row->seq,
                          "unkeyed row after the chain became keyed (written without the audit "
                          "key: inserted, or rewritten by a database writer)");
        return true;
    }
    if (row->mac_len != CV_AUDIT_MAC_BYTES)
        return broken(v, row->seq, "the row's MAC has the wrong length");
    if (v->seal_fn == NULL)
        return broken(v, row->seq, "keyed row, but no audit key was given to check it");
    /* The first keyed event chains from its prev_hash (checked above to be
     * the previous event's hash): its MAC covers the unkeyed history. */
    unsigned char hash[CV_AUDIT_HASH_BYTES], mac[CV_AUDIT_MAC_BYTES];
    if (v->seal_fn(v->seal_ctx, row, v->keyed_from != 0 ? v->last_mac : row->prev_hash, hash,
                   mac) != CV_OK)
        return broken(v, row->seq, "cannot compute the MAC");
    /* A MAC is a secret-derived value: compared in constant time. */
    bool same = cv_ct_equal(mac, row->mac, CV_AUDIT_MAC_BYTES);
    cv_wipe(mac, sizeof(mac));
    if (!same)
        return broken(v, row->seq,
                      "MAC does not match (event rewritten, inserted, deleted or reordered "
                      "without the audit key)");
    if (v->keyed_from == 0)
        v->keyed_from = row->seq;
    v->keyed_events++;
    memcpy(v->last_mac, row->mac, CV_AUDIT_MAC_BYTES);
    return true;
}

bool cv_audit_verify_row(struct cv_audit_verifier *v, const struct cv_audit_row *row)
{
    if (v->broken)
        return false;
    if (row->seq > v->next_seq)
        return broken(v, v->next_seq, "event missing: sequence gap (a row was deleted)");
    if (row->seq < v->next_seq)
        return broken(v, row->seq, "sequence out of order or duplicated");
    if (row->prev_hash == NULL || row->prev_hash_len != CV_AUDIT_HASH_BYTES ||
        memcmp(row->prev_hash, v->last_hash, CV_AUDIT_HASH_BYTES) != 0)
        return broken(v, row->seq,
                      "prev_hash does not match the previous event's hash (row inserted, "
                      "replaced or reordered)");
    unsigned char h[CV_AUDIT_HASH_BYTES];
    if (cv_audit_event_hash(row, h) != CV_OK)
        return broken(v, row->seq, "cannot compute SHA-256");
    if (row->hash == NULL || row->hash_len != CV_AUDIT_HASH_BYTES ||
        memcmp(h, row->hash, CV_AUDIT_HASH_BYTES) != 0)
        return broken(v, row->seq,
                      "hash does not match the event's content (row edited after it was written)");
    if (v->expect_set && row->seq == v->expect_seq) {
        v->expect_seen = true;
        if (memcmp(row->hash, v->expect_hash, CV_AUDIT_HASH_BYTES) != 0)
            return broken(v, row->seq,
                          "the event at the expected anchor's seq has another hash (the chain "
                          "was rewritten)");
    }
    if (!verify_mac(v, row))
        return false;
    memcpy(v->last_hash, row->hash, CV_AUDIT_HASH_BYTES);
    v->next_seq++;
    v->events++;
    return true;
}

void cv_audit_verify_expect(struct cv_audit_verifier *v, int64_t seq,
                            const unsigned char hash[CV_AUDIT_HASH_BYTES])
{
    v->expect_set = true;
    v->expect_seen = false;
    v->expect_seq = seq;
    memcpy(v->expect_hash, hash, CV_AUDIT_HASH_BYTES);
}

cv_status cv_audit_parse_anchor(const char *s, int64_t *seq,
                                unsigned char hash[CV_AUDIT_HASH_BYTES])
{
    int64_t n = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 18) /* below INT64_MAX */
            return CV_ERR_BAD_REQUEST;
        n = n * 10 + (s[i] - '0');
    }
    if (i == 0 || n < 1 || s[i] != ':')
        return CV_ERR_BAD_REQUEST;
    /* 64 hex digits, alone or in the dash-separated groups of the log line
     * (cv_audit_anchor_text); dashes are skipped wherever they stand. */
    size_t nibbles = 0;
    for (const char *h = s + i + 1; *h != '\0'; h++) {
        if (*h == '-')
            continue;
        int v = cv_hex_value((unsigned char)*h);
        if (v < 0 || nibbles == 2 * CV_AUDIT_HASH_BYTES)
            return CV_ERR_BAD_REQUEST;
        if (nibbles % 2 == 0)
            hash[nibbles / 2] = (unsigned char)(v << 4);
        else
            hash[nibbles / 2] |= (unsigned char)v;
        nibbles++;
    }
    if (nibbles != 2 * CV_AUDIT_HASH_BYTES)
        return CV_ERR_BAD_REQUEST;
    *seq = n;
    return CV_OK;
}

bool cv_audit_verify_finish(struct cv_audit_verifier *v, const struct cv_audit_head *head)
{
    if (v->broken)
        return false;
    if (v->expect_set && !v->expect_seen)
        return broken(v, v->expect_seq,
                      "the chain ends before the expected anchor's seq (events at the tail were "
                      "removed)");
    int64_t last = v->next_seq - 1;
    if (head->seq > last)
        return broken(v, last + 1,
                      "audit_head is ahead of the last event (events at the tail were removed)");
    if (head->seq < last)
        return broken(v, head->seq + 1,
                      "events past audit_head (rows inserted without audit_append)");
    if (head->hash_len != CV_AUDIT_HASH_BYTES ||
        memcmp(head->hash, v->last_hash, CV_AUDIT_HASH_BYTES) != 0)
        return broken(v, last > 0 ? last : 1, "audit_head hash does not match the last event");
    if (v->keyed_from == 0 && head->mac_len != 0)
        return broken(v, last > 0 ? last : 1, "audit_head carries a MAC but no event is keyed");
    if (v->keyed_from != 0 && (head->mac_len != CV_AUDIT_MAC_BYTES ||
                               !cv_ct_equal(head->mac, v->last_mac, CV_AUDIT_MAC_BYTES)))
        return broken(v, last > 0 ? last : 1, "audit_head MAC does not match the last event");
    if (v->require_keyed && v->keyed_from == 0)
        return broken(v, last > 0 ? last : 1,
                      "the vault has an audit key but no event is keyed (MACs stripped)");
    return true;
}

/* -------------------------------------------------------------- export */

void cv_audit_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* An export line longer than this is refused (a row's text columns are
 * short: actor, ids, an action, a one-line detail). */
#define EXPORT_LINE_MAX_BYTES (1u << 20)

static cv_status put_json_value(struct cv_buf *b, const char *s)
{
    if (s == NULL)
        return cv_buf_append_str(b, "null");
    return cv_buf_append_json_string(b, s, strlen(s));
}

static cv_status put_export_line(struct cv_buf *b, const struct cv_audit_row *row)
{
    char ts[CV_AUDIT_TIME_LEN];
    char prev[2 * CV_AUDIT_HASH_BYTES + 1] = "", hash[2 * CV_AUDIT_HASH_BYTES + 1] = "";
    char mac[2 * CV_AUDIT_MAC_BYTES + 1] = "";
    cv_audit_format_time(row->occurred_us, ts);
    if (row->prev_hash != NULL && row->prev_hash_len <= CV_AUDIT_HASH_BYTES)
        cv_audit_hex(row->prev_hash, row->prev_hash_len, prev);
    if (row->hash != NULL && row->hash_len <= CV_AUDIT_HASH_BYTES)
        cv_audit_hex(row->hash, row->hash_len, hash);
    if (row->mac != NULL && row->mac_len <= CV_AUDIT_MAC_BYTES)
        cv_audit_hex(row->mac, row->mac_len, mac);
    const char *keys[] = {"occurred_at", "actor",  "merchant_id", "token", "request_id", "action",
                          "outcome",     "detail", "prev_hash",   "hash",  "mac"};
    const char *vals[] = {ts,
                          row->actor,
                          row->merchant_id,
                          row->token,
                          row->request_id,
                          row->action,
                          row->outcome,
                          row->detail,
                          prev,
                          hash,
                          row->mac != NULL ? mac : NULL};
    CV_TRY(cv_buf_appendf(b, "{\"seq\":%" PRId64, row->seq));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        CV_TRY(cv_buf_append_char(b, ','));
        CV_TRY(put_json_value(b, keys[i]));
        CV_TRY(cv_buf_append_char(b, ':'));
        CV_TRY(put_json_value(b, vals[i]));
    }
    return cv_buf_append_char(b, '}');
}

char *cv_audit_export_line(const struct cv_audit_row *row, size_t *len)
{
    struct cv_buf b;
    cv_buf_init(&b, EXPORT_LINE_MAX_BYTES);
    if (put_export_line(&b, row) != CV_OK) {
        cv_buf_cleanup(&b);
        return NULL;
    }
    return cv_buf_take(&b, len);
}
