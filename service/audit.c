/* audit.c: the pure half of cardvault's evidence commands. It rebuilds the
 * canonical text of an audit event byte for byte as audit_canonical() in
 * migrations/0001_init.sql does, recomputes the SHA-256 chain over rows it
 * is handed, renders events as JSON lines for a SIEM, and scans byte strings
 * for card numbers on behalf of `cardvault audit storage`. It does no I/O and
 * knows nothing of PostgreSQL. It must never return, print or keep a card
 * number it finds: only a count and a masked sample (PCI DSS 3.4.1) leave
 * this file, and its own copies of candidate digits are wiped. */
#include "cardvault/audit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/card.h"
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

/* -------------------------------------------------------------- verify */

void cv_audit_verify_init(struct cv_audit_verifier *v)
{
    memset(v, 0, sizeof(*v));
    v->next_seq = 1; /* audit_head starts at seq 0 with 32 zero bytes */
}

static bool broken(struct cv_audit_verifier *v, int64_t seq, const char *reason)
{
    v->broken = true;
    v->first_broken_seq = seq;
    v->reason = reason;
    return false;
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
    memcpy(v->last_hash, row->hash, CV_AUDIT_HASH_BYTES);
    v->next_seq++;
    v->events++;
    return true;
}

bool cv_audit_verify_finish(struct cv_audit_verifier *v, const struct cv_audit_head *head)
{
    if (v->broken)
        return false;
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

/* Length of s as a JSON string literal with quotes, or 4 for null. */
static size_t json_len(const char *s)
{
    if (s == NULL)
        return 4;
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        n += (*p == '"' || *p == '\\') ? 2 : *p < 0x20 || *p == 0x7f ? 6 : 1;
    return n;
}

static size_t json_put(char *out, const char *s)
{
    if (s == NULL) {
        memcpy(out, "null", 4);
        return 4;
    }
    size_t n = 0;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(out + n, 7, "\\u%04x", *p);
            n += 6;
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n++] = '"';
    return n;
}

char *cv_audit_json_quote(const char *s)
{
    char *out = cv_xmalloc(json_len(s) + 1);
    out[json_put(out, s)] = '\0';
    return out;
}

char *cv_audit_export_line(const struct cv_audit_row *row, size_t *len)
{
    char ts[CV_AUDIT_TIME_LEN], seq[24];
    char prev[2 * CV_AUDIT_HASH_BYTES + 1] = "", hash[2 * CV_AUDIT_HASH_BYTES + 1] = "";
    cv_audit_format_time(row->occurred_us, ts);
    snprintf(seq, sizeof(seq), "%" PRId64, row->seq);
    if (row->prev_hash != NULL && row->prev_hash_len <= CV_AUDIT_HASH_BYTES)
        cv_audit_hex(row->prev_hash, row->prev_hash_len, prev);
    if (row->hash != NULL && row->hash_len <= CV_AUDIT_HASH_BYTES)
        cv_audit_hex(row->hash, row->hash_len, hash);
    const char *keys[] = {"occurred_at", "actor",   "merchant_id", "token",     "request_id",
                          "action",      "outcome", "detail",      "prev_hash", "hash"};
    const char *vals[] = {ts,          row->actor,   row->merchant_id, row->token, row->request_id,
                          row->action, row->outcome, row->detail,      prev,       hash};
    size_t nkeys = sizeof(keys) / sizeof(keys[0]);
    size_t total = strlen("{\"seq\":") + strlen(seq) + 2; /* + "}" + NUL */
    for (size_t i = 0; i < nkeys; i++)
        total += 1 + json_len(keys[i]) + 1 + json_len(vals[i]); /* ,"k":v */
    char *out = cv_xmalloc(total);
    size_t n = (size_t)snprintf(out, total, "{\"seq\":%s", seq);
    for (size_t i = 0; i < nkeys; i++) {
        out[n++] = ',';
        n += json_put(out + n, keys[i]);
        out[n++] = ':';
        n += json_put(out + n, vals[i]);
    }
    out[n++] = '}';
    out[n] = '\0';
    *len = n;
    return out;
}

/* ------------------------------------------------------------ PAN scan */

/* The scanner turns bytes into symbols (digit, separator, other) through a
 * decoder, groups digits split by single separators, and tests every run of
 * whole groups of 12-19 digits with the Luhn check, leftmost and longest
 * first. A single unbroken run of 20 or more digits is not a PAN (no brand
 * issues one that long) and bounds any candidate around it: this keeps long
 * numbers such as hash digests from producing a "hit" in one of their many
 * 12-19 digit windows, at the cost of missing a PAN glued to more digits. */

enum sym { SYM_OTHER, SYM_DIGIT, SYM_SEP };

enum enc_bit { ENC_PLAIN = 0, ENC_JSON = 1, ENC_FULLWIDTH = 2 };

#define MAX_GROUPS (CV_PAN_MAX_DIGITS + 1)

struct group {
    char d[CV_PAN_MAX_DIGITS];
    unsigned char n;
    unsigned char enc; /* enc_bit mask of the digits in it */
};

struct runner {
    struct group g[MAX_GROUPS];
    size_t count;
    struct group cur;
    bool in_digits, cur_long, pending_sep;
    const char *name; /* decoder name for the report */
    struct cv_audit_scan_result *r;
};

void cv_audit_mask_digits(const char *digits, size_t n, char out[CV_AUDIT_SAMPLE_LEN])
{
    if (n >= CV_AUDIT_SAMPLE_LEN)
        n = CV_AUDIT_SAMPLE_LEN - 1;
    /* Show the last 4 and up to the first 6, but always hide at least 6:
     * a 16-digit PAN shows 6 + 4, a 12-digit one only 2 + 4. */
    size_t tail = n >= 10 ? 4 : 0;
    size_t head = n > 10 ? n - 10 : 0;
    if (head > 6)
        head = 6;
    for (size_t i = 0; i < n; i++)
        out[i] = (i < head || i >= n - tail) ? digits[i] : '*';
    out[n] = '\0';
}

static void record(struct runner *ru, const char *digits, size_t n, unsigned enc)
{
    struct cv_audit_scan_result *r = ru->r;
    r->matches++;
    if (r->sample[0] == '\0') {
        cv_audit_mask_digits(digits, n, r->sample);
        r->sample_encoding = (enc & ENC_JSON)        ? "json-escape"
                             : (enc & ENC_FULLWIDTH) ? "fullwidth"
                                                     : ru->name;
    }
}

static void drop_front(struct runner *ru, size_t k)
{
    memmove(ru->g, ru->g + k, (ru->count - k) * sizeof(ru->g[0]));
    ru->count -= k;
    cv_wipe(ru->g + ru->count, k * sizeof(ru->g[0]));
}

/* Decides everything that starts at group 0: called once no later group can
 * extend a candidate from it (more than 19 digits pending, or the run ended). */
static void evaluate_front(struct runner *ru)
{
    size_t total = 0, j = 0;
    for (size_t k = 0; k < ru->count && total + ru->g[k].n <= CV_PAN_MAX_DIGITS; k++) {
        total += ru->g[k].n;
        j = k + 1;
    }
    char cand[CV_PAN_MAX_DIGITS + 1];
    for (size_t end = j; end > 0; end--) {
        size_t n = 0;
        unsigned enc = 0;
        for (size_t k = 0; k < end; k++) {
            memcpy(cand + n, ru->g[k].d, ru->g[k].n);
            n += ru->g[k].n;
            enc |= ru->g[k].enc;
        }
        if (n < CV_PAN_MIN_DIGITS)
            break;
        if (cv_card_luhn_ok(cand, n)) {
            record(ru, cand, n, enc);
            cv_wipe(cand, sizeof(cand));
            drop_front(ru, end);
            return;
        }
    }
    cv_wipe(cand, sizeof(cand));
    drop_front(ru, 1);
}

static void flush_all(struct runner *ru)
{
    while (ru->count > 0)
        evaluate_front(ru);
}

static size_t pending_digits(const struct runner *ru)
{
    size_t t = 0;
    for (size_t k = 0; k < ru->count; k++)
        t += ru->g[k].n;
    return t;
}

static void close_group(struct runner *ru)
{
    if (ru->cur_long) {
        flush_all(ru);
    } else {
        ru->g[ru->count++] = ru->cur;
        while (pending_digits(ru) > CV_PAN_MAX_DIGITS)
            evaluate_front(ru);
    }
    cv_wipe(&ru->cur, sizeof(ru->cur));
    ru->cur_long = false;
    ru->in_digits = false;
}

static void feed(struct runner *ru, enum sym s, char digit, unsigned enc)
{
    switch (s) {
    case SYM_DIGIT:
        if (!ru->in_digits) {
            ru->in_digits = true;
            ru->pending_sep = false;
            ru->cur.n = 0;
            ru->cur.enc = 0;
        }
        if (ru->cur.n < CV_PAN_MAX_DIGITS) {
            ru->cur.d[ru->cur.n++] = digit;
            ru->cur.enc |= (unsigned char)enc;
        } else {
            ru->cur_long = true;
        }
        break;
    case SYM_SEP:
        if (ru->in_digits) {
            close_group(ru);
            ru->pending_sep = true;
        } else if (ru->pending_sep) { /* two separators in a row end the run */
            ru->pending_sep = false;
            flush_all(ru);
        }
        break;
    case SYM_OTHER:
        if (ru->in_digits)
            close_group(ru);
        ru->pending_sep = false;
        flush_all(ru);
        break;
    }
}

static void runner_start(struct runner *ru, const char *name, struct cv_audit_scan_result *r)
{
    memset(ru, 0, sizeof(*ru));
    ru->name = name;
    ru->r = r;
}

static void runner_end(struct runner *ru)
{
    feed(ru, SYM_OTHER, 0, 0);
    cv_wipe(ru, sizeof(*ru));
}

/* Maps a UTF-16 code unit or a code point to a symbol. Full-width digits
 * (U+FF10-FF19), the full-width hyphen (U+FF0D) and the ideographic space
 * (U+3000) are what a Japanese input method produces for a typed card number. */
static enum sym classify(unsigned cp, char *digit, unsigned *enc)
{
    if (cp >= '0' && cp <= '9') {
        *digit = (char)cp;
        return SYM_DIGIT;
    }
    if (cp >= 0xFF10 && cp <= 0xFF19) {
        *digit = (char)('0' + (cp - 0xFF10));
        *enc |= ENC_FULLWIDTH;
        return SYM_DIGIT;
    }
    if (cp == ' ' || cp == '-' || cp == 0xFF0D || cp == 0x3000)
        return SYM_SEP;
    return SYM_OTHER;
}

/* UTF-8 text (or raw bytes read as such); folds JSON \u00NN escapes. */
static void scan_utf8(const unsigned char *b, size_t len, struct cv_audit_scan_result *r)
{
    struct runner ru;
    runner_start(&ru, "utf8", r);
    size_t i = 0;
    while (i < len) {
        unsigned cp = b[i], enc = ENC_PLAIN;
        size_t w = 1;
        if (b[i] == '\\' && i + 5 < len && b[i + 1] == 'u') {
            int h[4] = {cv_hex_value(b[i + 2]), cv_hex_value(b[i + 3]), cv_hex_value(b[i + 4]),
                        cv_hex_value(b[i + 5])};
            if (h[0] >= 0 && h[1] >= 0 && h[2] >= 0 && h[3] >= 0) {
                cp = (unsigned)(h[0] << 12 | h[1] << 8 | h[2] << 4 | h[3]);
                enc = ENC_JSON;
                w = 6;
            }
        } else if (b[i] == 0xEF && i + 2 < len && b[i + 1] == 0xBC && b[i + 2] >= 0x80 &&
                   b[i + 2] <= 0xBF) {
            cp = 0xFF00 + (b[i + 2] - 0x80); /* U+FF00..FF3F */
            w = 3;
        } else if (b[i] == 0xE3 && i + 2 < len && b[i + 1] == 0x80 && b[i + 2] == 0x80) {
            cp = 0x3000;
            w = 3;
        }
        char digit = 0;
        enum sym s = classify(cp, &digit, &enc);
        feed(&ru, s, digit, enc);
        i += w;
    }
    runner_end(&ru);
}

static void scan_utf16(const unsigned char *b, size_t len, size_t offset, bool big_endian,
                       struct cv_audit_scan_result *r)
{
    struct runner ru;
    runner_start(&ru, big_endian ? "utf16be" : "utf16le", r);
    for (size_t i = offset; i + 1 < len; i += 2) {
        unsigned u =
            big_endian ? (unsigned)(b[i] << 8 | b[i + 1]) : (unsigned)(b[i + 1] << 8 | b[i]);
        unsigned enc = ENC_PLAIN;
        char digit = 0;
        enum sym s = classify(u, &digit, &enc);
        feed(&ru, s, digit, enc);
    }
    runner_end(&ru);
}

void cv_audit_scan_value(const unsigned char *buf, size_t len, enum cv_audit_scan_kind kind,
                         struct cv_audit_scan_result *r)
{
    scan_utf8(buf, len, r);
    if (kind != CV_AUDIT_SCAN_BYTES)
        return; /* PostgreSQL text cannot hold NUL bytes, so it cannot hold UTF-16 digits */
    /* A PAN written to bytea as UTF-16 (a Windows client, a Java String's
     * bytes). A random byte string meets "digit, then 0x00" twelve times in a
     * row with probability about (10/65536)^12: no false positives. The four
     * readings overlap (UTF-16BE at offset 0 reads ASCII digits like UTF-16LE
     * at offset 1), so only the reading that finds most counts. */
    struct cv_audit_scan_result best, one;
    memset(&best, 0, sizeof(best));
    for (int pass = 0; pass < 4; pass++) {
        memset(&one, 0, sizeof(one));
        scan_utf16(buf, len, (size_t)(pass & 1), pass >= 2, &one);
        if (one.matches > best.matches)
            best = one;
    }
    r->matches += best.matches;
    if (r->sample[0] == '\0' && best.matches > 0) {
        memcpy(r->sample, best.sample, sizeof(r->sample));
        r->sample_encoding = best.sample_encoding;
    }
}
