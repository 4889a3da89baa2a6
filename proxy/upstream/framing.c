#include "upstream/framing.h"
#include "core/error.h"
#include "core/httptok.h"

#include <string.h>
#include <strings.h>

void dc_hline_parse(const char *buf, size_t len, dc_hline_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    if (len == 0) {
        out->kind = DC_HLINE_END;
        return;
    }
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        out->kind = DC_HLINE_STATUS;
        const char *sp = memchr(buf, ' ', len);
        if (sp == NULL)
            return;
        const char *end = buf + len, *p = sp + 1;
        int status = 0, digits = 0;
        while (p < end && *p >= '0' && *p <= '9' && digits < 3) {
            status = status * 10 + (*p++ - '0');
            digits++;
        }
        if (digits != 3 || status < 100 || (p < end && *p != ' '))
            return; /* status stays 0: unreadable */
        out->status = status;
        while (p < end && *p == ' ')
            p++;
        out->value = p;
        out->value_len = (size_t)(end - p);
        return;
    }
    out->kind = DC_HLINE_INVALID;
    const char *colon = memchr(buf, ':', len);
    if (colon == NULL || colon == buf)
        return;
    for (const char *p = buf; p < colon; p++)
        if (!dc_http_is_tchar(*p))
            return; /* obs-fold, whitespace before the colon, control bytes */
    const char *v = colon + 1, *end = buf + len;
    while (v < end && dc_http_is_ows(*v))
        v++;
    while (end > v && dc_http_is_ows(end[-1]))
        end--;
    for (const char *p = v; p < end; p++)
        if (*p == '\0' || *p == '\r' || *p == '\n')
            return; /* a value we would relay must not be able to split a response */
    out->kind = DC_HLINE_FIELD;
    out->name = buf;
    out->name_len = (size_t)(colon - buf);
    out->value = v;
    out->value_len = (size_t)(end - v);
}

void dc_framing_init(dc_framing_t *fr)
{
    memset(fr, 0, sizeof(*fr));
    fr->content_length = -1;
}

void dc_framing_fail(dc_framing_t *fr, const char *why)
{
    if (fr->error == NULL)
        fr->error = why;
}

/* One comma-separated element: the next token of v[*i..len) with OWS removed; false at the end. */
static bool next_element(const char *v, size_t len, size_t *i, const char **s, size_t *slen)
{
    while (*i < len && (dc_http_is_ows(v[*i]) || v[*i] == ','))
        (*i)++;
    if (*i >= len)
        return false;
    size_t start = *i;
    while (*i < len && v[*i] != ',')
        (*i)++;
    size_t end = *i;
    while (end > start && dc_http_is_ows(v[end - 1]))
        end--;
    *s = v + start;
    *slen = end - start;
    return true;
}

static void content_length(dc_framing_t *fr, const char *v, size_t len)
{
    size_t i = 0;
    const char *s;
    size_t slen;
    bool any = false;
    while (next_element(v, len, &i, &s, &slen)) {
        any = true;
        if (slen == 0 || slen > 18) {
            dc_framing_fail(fr, "Content-Length is not a number");
            return;
        }
        int64_t n = 0;
        for (size_t k = 0; k < slen; k++) {
            if (s[k] < '0' || s[k] > '9') {
                dc_framing_fail(fr, "Content-Length is not a number");
                return;
            }
            n = n * 10 + (s[k] - '0');
        }
        /* RFC 9110 8.6: a list of identical values may be taken as that value; different ones
         * are an unrecoverable error */
        if (fr->content_length >= 0 && fr->content_length != n) {
            dc_framing_fail(fr, "Content-Length values differ");
            return;
        }
        fr->content_length = n;
    }
    if (!any)
        dc_framing_fail(fr, "Content-Length is not a number");
}

static void transfer_encoding(dc_framing_t *fr, const char *v, size_t len)
{
    fr->has_te = true;
    size_t i = 0;
    const char *s;
    size_t slen;
    bool any = false;
    while (next_element(v, len, &i, &s, &slen)) {
        if (slen == 0)
            continue;
        any = true;
        /* we relay decoded bytes: libcurl decodes chunked and nothing else */
        if (slen != 7 || strncasecmp(s, "chunked", 7) != 0) {
            dc_framing_fail(fr, "Transfer-Encoding other than chunked");
            return;
        }
        if (fr->chunked) {
            dc_framing_fail(fr, "Transfer-Encoding chunked twice");
            return;
        }
        fr->chunked = true;
    }
    if (!any)
        dc_framing_fail(fr, "empty Transfer-Encoding");
}

void dc_framing_field(dc_framing_t *fr, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen == 14 && strncasecmp(name, "content-length", 14) == 0)
        content_length(fr, value, vlen);
    else if (nlen == 17 && strncasecmp(name, "transfer-encoding", 17) == 0)
        transfer_encoding(fr, value, vlen);
}

int dc_framing_finish(dc_framing_t *fr)
{
    /* RFC 9112 6.3: both may be a smuggling attempt; we do not guess which one the origin meant */
    if (fr->has_te && fr->content_length >= 0)
        dc_framing_fail(fr, "both Content-Length and Transfer-Encoding");
    return fr->error != NULL ? DC_EPROTO : 0;
}

bool dc_framing_has_body(int status, bool head_request)
{
    return !head_request && status >= 200 && status != 204 && status != 304;
}

int dc_framing_body(const dc_framing_t *fr, uint64_t received, bool complete)
{
    if (fr->content_length < 0)
        return 0;
    uint64_t want = (uint64_t)fr->content_length;
    if (received > want || (complete && received != want))
        return DC_EPROTO;
    return 0;
}

static bool contains(const char *s, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(s + i, needle, nl) == 0)
            return true;
    return false;
}

bool dc_framing_curl_text(const char *text, size_t len)
{
    return contains(text, len, "Excess found") || contains(text, len, "in chunked-encoding");
}
