/* Conditional requests (RFC 9110 §13): see conditional.h. */
#include "http/conditional.h"

#include <string.h>

#include "cache/policy.h"
#include "core/httptok.h"

/* etagc = %x21 / %x23-7E / obs-text */
static bool is_etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* Parse an entity-tag at p (no leading OWS); on success *out is set and the position after the
 * closing quote is returned, NULL otherwise. */
static const char *etag_at(const char *p, const char *end, dc_etag_t *out)
{
    bool weak = false;
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
        weak = true;
        p += 2;
    }
    if (p >= end || *p != '"')
        return NULL;
    const char *q = p + 1;
    while (q < end && *q != '"') {
        if (!is_etagc((unsigned char)*q))
            return NULL;
        q++;
    }
    if (q >= end)
        return NULL;
    out->weak = weak;
    out->opaque = p;
    out->opaque_len = (size_t)(q + 1 - p);
    return q + 1;
}

bool dc_etag_parse(const char *v, size_t len, dc_etag_t *out)
{
    if (v == NULL)
        return false;
    const char *p = v, *end = v + len;
    while (p < end && dc_http_is_ows(*p))
        p++;
    while (end > p && dc_http_is_ows(end[-1]))
        end--;
    dc_etag_t t;
    const char *after = etag_at(p, end, &t);
    if (after == NULL || after != end)
        return false;
    *out = t;
    return true;
}

bool dc_etag_weak_eq(const dc_etag_t *a, const dc_etag_t *b)
{
    return a->opaque_len == b->opaque_len && memcmp(a->opaque, b->opaque, a->opaque_len) == 0;
}

bool dc_etag_strong_eq(const dc_etag_t *a, const dc_etag_t *b)
{
    return !a->weak && !b->weak && dc_etag_weak_eq(a, b);
}

bool dc_cond_list_match(const char *list, size_t len, const dc_etag_t *tag, bool has_repr, bool strong)
{
    if (list == NULL)
        return false;
    const char *p = list, *end = list + len;
    while (p < end) {
        while (p < end && (dc_http_is_ows(*p) || *p == ','))
            p++;
        if (p >= end)
            break;
        const char *after = NULL;
        bool match = false;
        dc_etag_t m;
        if (*p == '*') {
            after = p + 1;
            match = has_repr;
        } else if ((after = etag_at(p, end, &m)) != NULL) {
            match = tag != NULL && (strong ? dc_etag_strong_eq(tag, &m) : dc_etag_weak_eq(tag, &m));
        }
        if (after != NULL) {
            const char *q = after;
            while (q < end && dc_http_is_ows(*q))
                q++;
            if (q == end || *q == ',') {
                if (match)
                    return true;
                p = q;
                continue;
            }
        }
        /* malformed member: it matches nothing; skip to the next comma */
        while (p < end && *p != ',')
            p++;
    }
    return false;
}

static bool field_match(const dc_cond_field_t *f, const dc_etag_t *tag, bool strong)
{
    for (unsigned i = 0; i < f->n && i < DC_COND_MAX_LINES; i++)
        if (dc_cond_list_match(f->v[i], f->len[i], tag, true, strong))
            return true;
    return false;
}

/* A date field: exactly one line holding a valid HTTP-date, else -1 (ignored). */
static int64_t field_date(const dc_cond_field_t *f)
{
    if (f->n != 1 || f->more)
        return -1;
    return dc_http_date_parse(f->v[0], f->len[0]);
}

dc_cond_result_t dc_cond_evaluate(const dc_cond_request_t *r, const dc_cond_validators_t *v, int64_t now_s)
{
    dc_etag_t tag;
    const dc_etag_t *t = dc_etag_parse(v->etag, v->etag_len, &tag) ? &tag : NULL;

    /* 1 and 2: If-Match, else If-Unmodified-Since */
    if (r->if_match.n > 0) {
        if (!field_match(&r->if_match, t, true))
            return DC_COND_PRECONDITION_FAIL;
    } else if (r->if_unmodified_since.n > 0) {
        int64_t d = field_date(&r->if_unmodified_since);
        if (d >= 0 && v->last_modified_s >= 0 && v->last_modified_s > d)
            return DC_COND_PRECONDITION_FAIL;
    }

    /* 3 and 4: If-None-Match, else If-Modified-Since */
    if (r->if_none_match.n > 0) {
        if (field_match(&r->if_none_match, t, false))
            return r->get_or_head ? DC_COND_NOT_MODIFIED : DC_COND_PRECONDITION_FAIL;
    } else if (r->if_modified_since.n > 0 && r->get_or_head) {
        int64_t d = field_date(&r->if_modified_since);
        int64_t lm = v->last_modified_s >= 0 ? v->last_modified_s : v->ims_fallback_s;
        if (d >= 0 && d <= now_s && lm >= 0 && lm <= d)
            return DC_COND_NOT_MODIFIED;
    }
    return DC_COND_PROCEED;
}

bool dc_cond_if_range_ok(const char *v, size_t len, const dc_cond_validators_t *val)
{
    if (v == NULL)
        return false;
    const char *p = v, *end = v + len;
    while (p < end && dc_http_is_ows(*p))
        p++;
    /* an entity-tag starts with a quote or W/ (a date may start with "Wed,") */
    if (p < end && (*p == '"' || (end - p >= 2 && p[0] == 'W' && p[1] == '/'))) {
        dc_etag_t want, have;
        if (!dc_etag_parse(v, len, &want) || !dc_etag_parse(val->etag, val->etag_len, &have))
            return false;
        return dc_etag_strong_eq(&want, &have);
    }
    int64_t d = dc_http_date_parse(v, len);
    return d >= 0 && val->last_modified_s >= 0 && d == val->last_modified_s;
}

const char *dc_cond_result_name(dc_cond_result_t r)
{
    switch (r) {
    case DC_COND_PROCEED:
        return "proceed";
    case DC_COND_NOT_MODIFIED:
        return "304";
    case DC_COND_PRECONDITION_FAIL:
        return "412";
    }
    return "?";
}
