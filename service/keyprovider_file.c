/* keyprovider_file.c: the KEK from a file, read under secret_file.h's rule
 * (owner-only regular file, links followed, bounded size; PCI DSS 3.6.1:
 * fewest custodians). It must hold exactly 32 bytes as hex or base64. The
 * file's bytes are wiped as soon as the key is decoded. Error messages name
 * the file, never its content. */
#include "cardvault/keyprovider.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "cardvault/secret_file.h"
#include "cardvault/token.h"

static bool decode_kek(const char *text, size_t len, unsigned char out[32])
{
    if (len == 64) {
        for (size_t i = 0; i < 32; i++) {
            int hi = cv_hex_value((unsigned char)text[2 * i]),
                lo = cv_hex_value((unsigned char)text[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return false;
            out[i] = (unsigned char)(hi << 4 | lo);
        }
        return true;
    }
    if (len == 44 && text[43] == '=' && text[42] != '=') {
        unsigned char tmp[36];
        int n = EVP_DecodeBlock(tmp, (const unsigned char *)text, 44);
        /* EVP_DecodeBlock counts the padding byte as output: 33 for 32 bytes + '='. */
        bool ok = n == 33;
        if (ok)
            memcpy(out, tmp, 32);
        cv_wipe(tmp, sizeof(tmp));
        return ok;
    }
    return false;
}

/* Room for a key and surrounding blanks; anything longer is not a KEK file. */
#define KEK_FILE_MAX_BYTES 255
#define KEK_CONTENT        "exactly 32 bytes as 64 hex or 44 base64 characters"

static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

cv_status cv_keyprovider_file_open(const char *path, struct cv_keyprovider **out, char *why,
                                   size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    struct cv_secbuf *text = NULL, *kek = NULL;
    unsigned char raw[32];
    if ((st = cv_secret_file_read(path, "KEK file", KEK_CONTENT, KEK_FILE_MAX_BYTES, &text, why,
                                  why_len)) != CV_OK)
        goto out;
    st = CV_ERR_CONFIG;
    size_t start = 0, end = text->len;
    while (start < end && is_blank(text->data[start]))
        start++;
    while (end > start && is_blank(text->data[end - 1]))
        end--;
    if (!decode_kek((const char *)text->data + start, end - start, raw)) {
        snprintf(why, why_len, "KEK file %s must hold " KEK_CONTENT, path);
        goto out;
    }
    kek = cv_secbuf_new(32);
    if (cv_secbuf_set(kek, raw, 32) != CV_OK)
        goto out;
    *out = cv_keyprovider_memory_take(kek);
    kek = NULL;
    st = CV_OK;
out:
    cv_wipe(raw, sizeof(raw));
    cv_secbuf_free(kek);
    cv_secbuf_free(text);
    return st;
}
