#include "http/resphdr.h"
#include "http/hop.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is(const dc_fetch_header_t *h, const char *name)
{
    size_t l = strlen(name);
    return h->name_len == l && memcmp(h->name, name, l) == 0;
}

bool dc_resphdr_forward(const dc_fetch_header_t *h, const char *conn, size_t conn_len)
{
    if (dc_hop_is_hop_by_hop(h->name, h->name_len))
        return false;
    if (conn != NULL && dc_hop_listed_in_connection(conn, conn_len, h->name, h->name_len))
        return false;
    /* Age goes on end to end (RFC 9111 5.1): a CDN in front counts the origin's share too */
    return !(is(h, "content-length") || is(h, "date") || is(h, "server") || is(h, "via") ||
             is(h, "dexcache-cache-control"));
}

bool dc_resphdr_store(const dc_fetch_header_t *h, const char *conn, size_t conn_len)
{
    if (!dc_resphdr_forward(h, conn, conn_len))
        return false;
    /* the origin's ETag is kept as a validator for revalidation; clients get our own (serve.c) */
    /* Accept-Ranges / Content-Range: ranges of a stored answer are dexcache's (serve.c) */
    /* Age: a stored answer's age is counted when it is served (serve.c) */
    return !(is(h, "set-cookie") || is(h, "x-cache") || is(h, "cache-status") || is(h, "accept-ranges") ||
             is(h, "content-range") || is(h, "age"));
}

const char *dc_resphdr_find(const dc_fetch_header_t *hs, size_t n, const char *name, size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        if (is(&hs[i], name)) {
            *len = hs[i].value_len;
            return hs[i].value;
        }
    }
    *len = 0;
    return NULL;
}

/* Does a Vary value name anything other than Accept-Encoding? (Vary: * is reported separately.) */
static void scan_vary(const char *v, size_t len, bool *star, bool *other)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e == s)
            continue;
        if (e - s == 1 && v[s] == '*')
            *star = true;
        else if (!(e - s == 15 && strncasecmp(v + s, "accept-encoding", 15) == 0))
            *other = true;
    }
}

void dc_resphdr_policy_view(int status, const dc_fetch_header_t *hs, size_t n, dc_policy_response_t *out)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    dc_cc_init(&out->cc);
    dc_cc_init(&out->dcc);
    dc_cc_init(&out->cdncc);
    out->expires_s = -1;
    out->date_s = -1;
    out->age_s = -1;
    out->last_modified_s = -1;
    out->complete = true;
    bool dcc_bad = false, cdncc_bad = false, seen_date = false, seen_age = false;
    for (size_t i = 0; i < n; i++) {
        const dc_fetch_header_t *h = &hs[i];
        if (is(h, "cache-control")) {
            out->has_cc = true;
            dc_cc_parse(h->value, h->value_len, &out->cc);
        } else if (is(h, "dexcache-cache-control")) {
            /* RFC 9213 2.1: a line that is not a valid sf-dictionary voids the whole field */
            dcc_bad |= !dc_cc_parse_targeted(h->value, h->value_len, &out->dcc);
            out->has_dcc = true;
        } else if (is(h, "cdn-cache-control")) {
            cdncc_bad |= !dc_cc_parse_targeted(h->value, h->value_len, &out->cdncc);
            out->has_cdncc = true;
        } else if (is(h, "pragma")) {
            if (dc_hop_listed_in_connection(h->value, h->value_len, "no-cache", 8)) /* a token in a list */
                out->pragma_no_cache = true;
        } else if (is(h, "expires")) {
            /* RFC 9111 5.3: several Expires, or an invalid one, mean "already expired" */
            int64_t t = dc_http_date_parse(h->value, h->value_len);
            out->expires_s = (t >= 0 && out->expires_s == -1) ? t : -2;
        } else if (is(h, "date")) {
            if (!seen_date) /* a singleton: the first line counts */
                out->date_s = dc_http_date_parse(h->value, h->value_len);
            seen_date = true;
        } else if (is(h, "age")) {
            if (!seen_age) /* RFC 9111 5.1: the first member of the first line; invalid = ignored */
                out->age_s = dc_age_parse(h->value, h->value_len);
            seen_age = true;
        } else if (is(h, "last-modified")) {
            out->last_modified_s = dc_http_date_parse(h->value, h->value_len);
            out->has_validator = true;
        } else if (is(h, "etag")) {
            out->has_validator = true;
        } else if (is(h, "set-cookie")) {
            out->has_set_cookie = true;
        } else if (is(h, "vary")) {
            scan_vary(h->value, h->value_len, &out->vary_star, &out->vary_other);
        }
    }
    if (dcc_bad) {
        out->has_dcc = false;
        dc_cc_init(&out->dcc);
    }
    if (cdncc_bad) {
        out->has_cdncc = false;
        dc_cc_init(&out->cdncc);
    }
    if (out->has_set_cookie) {
        /* stored without Set-Cookie when a qualified no-cache / private of the deciding field names
         * it; which field decides is the policy's choice, so each is asked */
        static const dc_fetch_header_t sc = {(char *)"set-cookie", 10, (char *)"", 0};
        for (int src = 0; src < DC_CC_SOURCES; src++)
            out->set_cookie_named[src] = dc_resphdr_cc_strips(hs, n, (dc_cc_source_t)src, &sc);
    }
}

bool dc_resphdr_cc_strips(const dc_fetch_header_t *hs, size_t n, dc_cc_source_t src, const dc_fetch_header_t *h)
{
    const char *field = src == DC_CC_FROM_DEXCACHE ? "dexcache-cache-control"
                        : src == DC_CC_FROM_CDN    ? "cdn-cache-control"
                                                   : "cache-control";
    for (size_t i = 0; i < n; i++)
        if (is(&hs[i], field) && dc_cc_names_field(hs[i].value, hs[i].value_len, h->name, h->name_len))
            return true;
    return false;
}
