/* keyprovider_file.c: the KEK from a file. The file must be owned by us and
 * unreadable to group and others (PCI DSS 3.6.1: fewest custodians), and hold
 * exactly 32 bytes as hex or base64. The file's bytes are wiped as soon as
 * the key is decoded. Error messages name the file, never its content. */
#include "cardvault/keyprovider.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

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

cv_status cv_keyprovider_file_open(const char *path, struct cv_keyprovider **out, char *why,
                                   size_t why_len)
{
    cv_status st = CV_ERR_CONFIG;
    char text[256];
    unsigned char raw[32];
    ssize_t n = 0;
    struct stat sb;
    /* Symlinks are followed (Kubernetes mounts secrets through one); the
     * mode check below applies to the file itself. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_len, "cannot open KEK file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(why, why_len, "KEK file %s is not a regular file", path);
        goto out;
    }
    if ((sb.st_mode & 077) != 0) {
        snprintf(why, why_len, "KEK file %s must not be accessible to group or others (chmod 600)",
                 path);
        goto out;
    }
    n = read(fd, text, sizeof(text) - 1);
    if (n < 0) {
        snprintf(why, why_len, "cannot read KEK file %s: %s", path, strerror(errno));
        goto out;
    }
    char extra;
    if (read(fd, &extra, 1) != 0) {
        /* More than a key and some whitespace: not a KEK file we understand. */
        cv_wipe(&extra, 1);
        snprintf(why, why_len,
                 "KEK file %s must hold exactly 32 bytes as 64 hex or 44 base64 characters "
                 "(it is longer)",
                 path);
        goto out;
    }
    size_t start = 0, end = (size_t)n;
    while (start < end && (text[start] == ' ' || text[start] == '\n' || text[start] == '\r' ||
                           text[start] == '\t'))
        start++;
    while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\n' || text[end - 1] == '\r' ||
                           text[end - 1] == '\t'))
        end--;
    if (!decode_kek(text + start, end - start, raw)) {
        snprintf(why, why_len,
                 "KEK file %s must hold exactly 32 bytes as 64 hex or 44 base64 characters", path);
        goto out;
    }
    struct cv_secbuf *kek = cv_secbuf_new(32);
    if (cv_secbuf_set(kek, raw, 32) != CV_OK) {
        cv_secbuf_free(kek);
        goto out;
    }
    *out = cv_keyprovider_memory_take(kek);
    st = CV_OK;
out:
    cv_wipe(text, sizeof(text));
    cv_wipe(raw, sizeof(raw));
    if (fd >= 0)
        close(fd);
    return st;
}
