/* fuzz_frame_query.c: a frame page's query string as a browser or an
 * attacker can send it, through cv_frame_query_add/_finish, then the page
 * rendering and the frame page's headers. Input: one byte choosing the page
 * (card or cvc), then "name=value&name=value..." (a part without '=' has no
 * value, as MHD reports it; a NUL ends a string early, as in C). Invariants:
 * an accepted query holds a pk_ key, a canonical origin, a nonce of the
 * allowed characters and length, a token on the cvc page only; the page
 * renders, and every '<' and '"' in it comes from the template, never from a
 * parameter (the same count as a page rendered with neutral values); the
 * CSP names the origin once and nothing after it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cardvault/api_elements.h"
#include "cardvault/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why)
{
    fprintf(stderr, "fuzz_frame_query invariant broken: %s\n", why);
    abort();
}

static size_t count(const char *s, char c)
{
    size_t k = 0;
    for (; *s != '\0'; s++)
        k += *s == c;
    return k;
}

static void check_page(const struct cv_frame_req *req)
{
    struct cv_frame_req neutral = *req;
    char *page = NULL, *plain = NULL;
    size_t len = 0, plain_len = 0;
    if (cv_elements_render_frame(req, &page, &len) != CV_OK || page == NULL)
        fail("an accepted query does not render");
    if (req->title[0] != '\0')
        snprintf(neutral.title, sizeof(neutral.title), "x");
    if (req->lang[0] != '\0')
        snprintf(neutral.lang, sizeof(neutral.lang), "%s",
                 (req->lang[0] == 'j' || req->lang[0] == 'J') &&
                         (req->lang[1] == 'a' || req->lang[1] == 'A') &&
                         (req->lang[2] == '\0' || req->lang[2] == '-')
                     ? "ja"
                     : "en");
    if (cv_elements_render_frame(&neutral, &plain, &plain_len) != CV_OK || plain == NULL)
        fail("the neutral page does not render");
    if (count(page, '<') != count(plain, '<') || count(page, '"') != count(plain, '"') ||
        count(page, '>') != count(plain, '>'))
        fail("a parameter put markup into the page");
    if (strlen(page) != len)
        fail("page length");
    free(page);
    free(plain);
}

static void check_csp(const struct cv_frame_req *req)
{
    struct cv_web_header h[CV_WEB_HEADERS_MAX];
    char scratch[CV_WEB_SCRATCH_MAX];
    size_t n = cv_elements_web_headers(CV_WEB_FRAME_PAGE, req->origin, h, scratch, sizeof(scratch));
    if (n > CV_WEB_HEADERS_MAX)
        fail("too many headers");
    for (size_t i = 0; i < n; i++) {
        if (strcmp(h[i].name, "Content-Security-Policy") != 0)
            continue;
        const char *fa = strstr(h[i].value, "frame-ancestors ");
        if (fa == NULL || strcmp(fa + 16, req->origin) != 0)
            fail("frame-ancestors is not exactly the origin");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct cv_frame_req req;
    cv_frame_query_init(&req, (data[0] & 1) != 0 ? CV_FRAME_CVC : CV_FRAME_CARD);
    char *q = malloc(size);
    memcpy(q, data + 1, size - 1);
    q[size - 1] = '\0';
    for (char *part = q; part != NULL;) {
        char *amp = strchr(part, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(part, '=');
        if (eq != NULL)
            *eq = '\0';
        (void)cv_frame_query_add(&req, part, eq != NULL ? eq + 1 : NULL);
        part = amp != NULL ? amp + 1 : NULL;
    }
    cv_status st = cv_frame_query_finish(&req);
    if (st == CV_OK) {
        if (strncmp(req.key, "pk_", 3) != 0 || !cv_token_api_key_is_valid(req.key, strlen(req.key)))
            fail("accepted key is not a publishable key");
        if (!cv_origin_is_canonical(req.origin, strlen(req.origin)))
            fail("accepted origin is not canonical");
        size_t nl = strlen(req.nonce);
        if (nl < CV_FRAME_NONCE_MIN || nl > CV_FRAME_NONCE_MAX)
            fail("nonce length");
        if ((req.kind == CV_FRAME_CVC) != (req.token[0] != '\0'))
            fail("token on the wrong page");
        if (req.token[0] != '\0' && !cv_token_is_valid(req.token, strlen(req.token)))
            fail("accepted token is malformed");
        check_page(&req);
        check_csp(&req);
    } else if (st != CV_ERR_FRAME_BAD_REQUEST && st != CV_ERR_FRAME_KEY_NOT_PUBLISHABLE &&
               st != CV_ERR_KEY_IN_QUERY) {
        fail("an undocumented status");
    }
    free(q);
    return 0;
}
