#include "http/reqcheck.h"
#include "core/fmt.h"

#include <stdbool.h>
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

/* The request line's length up to its '\n' (excluded) and whether it ends in " HTTP/1.0". */
static bool request_line_is_http10(const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    return len >= 9 && memcmp(line + len - 9, " HTTP/1.0", 9) == 0;
}

int dc_reqcheck_h1_head(const char *head, size_t len, const dc_reqcheck_limits_t *limits, const char **why)
{
    const char *p = head, *end = head + len;
    /* the request line */
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) {
        *why = "malformed request head";
        return 400;
    }
    bool http10 = request_line_is_http10(p, (size_t)(nl - p));
    p = nl + 1;
    size_t nheaders = 0, header_bytes = 0;
    int hosts = 0, content_lengths = 0, transfer_encodings = 0;
    bool folded = false;
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
        if (p[0] == ' ' || p[0] == '\t')
            folded = true; /* obs-fold: continues the previous line */
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
    if (nheaders > DC_REQCHECK_H1_MAX_HEADERS) {
        *why = "too many request headers";
        return 431;
    }
    int rc = dc_reqcheck_header_totals(nheaders, header_bytes, limits, why);
    if (rc != 0)
        return rc;
    if (folded) {
        *why = "obsolete line folding in request headers";
        return 400;
    }
    if (hosts > 1) {
        *why = "more than one Host header";
        return 400;
    }
    if (hosts == 0 && !http10) {
        *why = "missing Host header";
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

/* ---- the gate's prefix check ---- */

/* What the gate needs to know about a complete head. */
typedef struct head_info {
    size_t len; /* up to and including the blank line's '\n' */
} head_info_t;

/* Finds the end of the head in buf[0..len); false when it has not arrived yet. */
static bool find_head(const char *buf, size_t len, head_info_t *h)
{
    const char *p = buf, *end = buf + len;
    const char *nl = memchr(p, '\n', len);
    if (nl == NULL)
        return false;
    p = nl + 1;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return false;
        size_t line_len = (size_t)(nl - p);
        if (line_len > 0 && p[line_len - 1] == '\r')
            line_len--;
        if (line_len == 0) {
            h->len = (size_t)(nl + 1 - buf);
            return true;
        }
        p = nl + 1;
    }
    return false;
}

int dc_reqcheck_h1_prefix(const char *buf, size_t len, const dc_reqcheck_limits_t *limits, const char **why)
{
    if (len >= 4 && memcmp(buf, "PRI ", 4) == 0)
        return 0; /* HTTP/2 prior knowledge: libh2o's */
    /* slack for the method, two spaces and " HTTP/1.1\r\n" around the target */
    const uint64_t line_cap = limits->max_uri + 32;
    const char *nl = memchr(buf, '\n', len);
    if (nl == NULL) {
        if (len > line_cap) {
            *why = "request URI too long";
            return 414;
        }
        return DC_REQCHECK_MORE;
    }
    head_info_t h;
    if (!find_head(buf, len, &h)) {
        size_t line_len = (size_t)(nl + 1 - buf);
        /* the header lines so far, each counted like dc_reqcheck_h1_head (CRLF = 2 bytes) */
        if (len - line_len > limits->max_header_bytes + 2) {
            *why = "request header fields too large";
            return 431;
        }
        size_t lines = 0;
        for (const char *p = nl + 1; (p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL; p++)
            lines++;
        if (lines > DC_REQCHECK_H1_MAX_HEADERS || lines > limits->max_headers) {
            *why = "too many request headers";
            return 431;
        }
        return DC_REQCHECK_MORE;
    }
    int rc = dc_reqcheck_h1_head(buf, h.len, limits, why);
    /* the handler answers the other head verdicts, with the request's own id; a chunked body is
     * libh2o's to decode, with our strict decoder (http/h1chunked.c) */
    return rc == 431 ? rc : 0;
}

/* ---- the request target ---- */

/* 1 for a "." segment, 2 for "..", with each dot also accepted as "%2e"/"%2E"; 0 otherwise. */
static int dot_segment(const char *s, size_t n)
{
    int dots = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] == '.') {
            i++;
        } else if (n - i >= 3 && s[i] == '%' && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E')) {
            i += 3;
        } else {
            return 0;
        }
        if (++dots > 2)
            return 0;
    }
    return dots;
}

int dc_reqcheck_path(const char *target, size_t len, char *out, size_t *out_len, const char **why)
{
    const char *q = memchr(target, '?', len);
    size_t plen = q != NULL ? (size_t)(q - target) : len;
    if (plen == 0 || target[0] != '/') {
        *why = "request target is not an absolute path";
        return 400;
    }
    /* whitespace and control characters are never part of a request target (RFC 3986); HTTP/1
     * cannot even carry them, HTTP/2 can: refuse them the same way */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c == 0x7f) {
            *why = "whitespace or control character in the request target";
            return 400;
        }
    }
    for (size_t i = 0; i < plen; i++) {
        if (target[i] != '%')
            continue;
        if (plen - i < 3 || dc_hex_value(target[i + 1]) < 0 || dc_hex_value(target[i + 2]) < 0) {
            *why = "malformed percent-encoding in path";
            return 400;
        }
        if (target[i + 1] == '0' && target[i + 2] == '0') {
            *why = "NUL byte in path";
            return 400;
        }
    }
    /* out always ends with '/' between segments; each segment is copied, dropped or pops one */
    size_t o = 0;
    out[o++] = '/';
    const char *p = target + 1, *end = target + plen;
    for (;;) {
        const char *e = memchr(p, '/', (size_t)(end - p));
        bool last = e == NULL;
        if (last)
            e = end;
        size_t seglen = (size_t)(e - p);
        int dots = dot_segment(p, seglen);
        if (dots == 2) {
            if (o == 1) {
                *why = "path climbs above the root";
                return 400;
            }
            o--; /* the '/' after the last kept segment */
            while (out[o - 1] != '/')
                o--;
        } else if (seglen > 0 && dots == 0) {
            memcpy(out + o, p, seglen);
            o += seglen;
            if (!last)
                out[o++] = '/';
        } /* else an empty segment ("//", trailing '/') or ".": dropped */
        if (last)
            break;
        p = e + 1;
    }
    if (q != NULL) {
        memcpy(out + o, q, len - plen);
        o += len - plen;
    }
    *out_len = o;
    return 0;
}
