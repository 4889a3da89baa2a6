#include "http/reqcheck.h"

#include <string.h>
#include <strings.h>

int dc_reqcheck_method(const char *m, size_t len, const char **why)
{
    static const struct {
        const char *name;
        size_t len;
    } allowed[] = {{"GET", 3}, {"HEAD", 4}, {"POST", 4}, {"PUT", 3}, {"PATCH", 5}, {"DELETE", 6}, {"OPTIONS", 7}};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (len == allowed[i].len && memcmp(m, allowed[i].name, len) == 0)
            return 0;
    *why = "method not allowed";
    return 405;
}

int dc_reqcheck_uri(size_t uri_len, const dc_reqcheck_limits_t *limits, const char **why)
{
    if (uri_len > limits->max_uri) {
        *why = "request URI too long";
        return 414;
    }
    return 0;
}

int dc_reqcheck_header_totals(size_t nheaders, size_t header_bytes, const dc_reqcheck_limits_t *limits,
                              const char **why)
{
    if (nheaders > limits->max_headers) {
        *why = "too many request headers";
        return 431;
    }
    if (header_bytes > limits->max_header_bytes) {
        *why = "request header fields too large";
        return 431;
    }
    return 0;
}

static int name_is(const char *name, size_t nlen, const char *lit)
{
    size_t l = strlen(lit);
    return nlen == l && strncasecmp(name, lit, l) == 0;
}

int dc_reqcheck_h1_head(const char *head, size_t len, const dc_reqcheck_limits_t *limits, const char **why)
{
    const char *p = head, *end = head + len;
    /* skip the request line */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) {
        *why = "malformed request head";
        return 400;
    }
    p = nl + 1;
    size_t nheaders = 0, header_bytes = 0;
    int hosts = 0, content_lengths = 0, transfer_encodings = 0;
    for (;;) {
        if (p >= end) {
            *why = "malformed request head";
            return 400;
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            *why = "malformed request head";
            return 400;
        }
        size_t line_len = (size_t)(nl - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
            line_len--;
        if (line_len == 0)
            break; /* blank line: end of head */
        const char *colon = memchr(p, ':', line_len);
        if (colon != NULL) {
            size_t nlen = (size_t)(colon - p);
            if (name_is(p, nlen, "host"))
                hosts++;
            else if (name_is(p, nlen, "content-length"))
                content_lengths++;
            else if (name_is(p, nlen, "transfer-encoding"))
                transfer_encodings++;
        }
        nheaders++;
        header_bytes += line_len + 2;
        p = nl + 1;
    }
    int rc = dc_reqcheck_header_totals(nheaders, header_bytes, limits, why);
    if (rc != 0)
        return rc;
    if (hosts > 1) {
        *why = "more than one Host header";
        return 400;
    }
    if (content_lengths > 1) {
        *why = "more than one Content-Length header";
        return 400;
    }
    if (content_lengths > 0 && transfer_encodings > 0) {
        *why = "both Content-Length and Transfer-Encoding";
        return 400;
    }
    return 0;
}
