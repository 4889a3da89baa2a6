/* Validators and preconditions on the answers dexcache sends: see condserve.h. */
#include "http/condserve.h"

#include <string.h>
#include <strings.h>

#include "cache/encode.h"
#include "cache/policy.h"
#include "http/respond.h"

h2o_iovec_t dc_condserve_weaken(const char *tag, size_t len, h2o_mem_pool_t *pool)
{
    if (tag == NULL || len == 0)
        return h2o_iovec_init(NULL, 0);
    if (len >= 2 && tag[0] == 'W' && tag[1] == '/')
        return h2o_iovec_init(tag, len);
    char *w = h2o_mem_alloc_pool(pool, len + 2);
    w[0] = 'W';
    w[1] = '/';
    memcpy(w + 2, tag, len);
    return h2o_iovec_init(w, len + 2);
}

h2o_iovec_t dc_condserve_entry_etag(const dc_cache_entry_t *e, unsigned enc, h2o_mem_pool_t *pool)
{
    const char *base = e->origin_etag;
    size_t len = base != NULL ? strlen(base) : 0;
    if (base == NULL) {
        base = e->etag;
        len = e->etag_len;
    }
    if (len == 0)
        return h2o_iovec_init(NULL, 0);
    if (enc == e->etag_enc)
        return h2o_iovec_init(base, len);
    return dc_condserve_weaken(base, len, pool);
}

static void field_add(dc_cond_field_t *f, const h2o_iovec_t *v)
{
    if (f->n < DC_COND_MAX_LINES) {
        f->v[f->n] = v->base;
        f->len[f->n] = v->len;
        f->n++;
    } else {
        f->more = true;
    }
}

bool dc_condserve_collect(const h2o_req_t *req, dc_cond_request_t *out)
{
    out->if_match.n = out->if_none_match.n = out->if_modified_since.n = out->if_unmodified_since.n = 0;
    out->if_match.more = out->if_none_match.more = out->if_modified_since.more = out->if_unmodified_since.more = false;
    bool any = false;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        const h2o_iovec_t *name = h->name;
        dc_cond_field_t *f = name == &H2O_TOKEN_IF_NONE_MATCH->buf         ? &out->if_none_match
                             : name == &H2O_TOKEN_IF_MODIFIED_SINCE->buf   ? &out->if_modified_since
                             : name == &H2O_TOKEN_IF_MATCH->buf            ? &out->if_match
                             : name == &H2O_TOKEN_IF_UNMODIFIED_SINCE->buf ? &out->if_unmodified_since
                                                                           : NULL;
        if (f != NULL) {
            field_add(f, &h->value);
            any = true;
        }
    }
    if (any)
        out->get_or_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    return any;
}

static bool name_is(const h2o_iovec_t *n, const char *s, size_t l)
{
    return n->len == l && strncasecmp(n->base, s, l) == 0;
}

/* dexcache's own fields, kept on 304 and 412 answers alike */
static bool own_field(const h2o_iovec_t *n)
{
    return n == &H2O_TOKEN_AGE->buf || n == &H2O_TOKEN_VIA->buf || name_is(n, H2O_STRLIT("x-cache")) ||
           name_is(n, H2O_STRLIT("cache-status")) || name_is(n, H2O_STRLIT("x-request-id"));
}

/* RFC 9110 §15.4.5: the fields a 304 carries (CDN-Cache-Control is a Cache-Control for CDNs). */
static bool field_304(const h2o_iovec_t *n)
{
    return n == &H2O_TOKEN_CACHE_CONTROL->buf || n == &H2O_TOKEN_CONTENT_LOCATION->buf || n == &H2O_TOKEN_DATE->buf ||
           n == &H2O_TOKEN_ETAG->buf || n == &H2O_TOKEN_EXPIRES->buf || n == &H2O_TOKEN_VARY->buf ||
           name_is(n, H2O_STRLIT("cdn-cache-control")) || own_field(n);
}

static void keep_only(h2o_req_t *req, bool (*keep)(const h2o_iovec_t *))
{
    size_t k = 0;
    for (size_t i = 0; i < req->res.headers.size; i++)
        if (keep(req->res.headers.entries[i].name))
            req->res.headers.entries[k++] = req->res.headers.entries[i];
    req->res.headers.size = k;
}

dc_cond_result_t dc_condserve_apply(h2o_req_t *req, int64_t ims_fallback_s)
{
    if (req->res.status < 200 || req->res.status > 299)
        return DC_COND_PROCEED;
    dc_cond_request_t cr;
    if (!dc_condserve_collect(req, &cr))
        return DC_COND_PROCEED;
    dc_cond_validators_t v = {.etag = NULL, .etag_len = 0, .last_modified_s = -1, .ims_fallback_s = ims_fallback_s};
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_ETAG, -1);
    if (i >= 0) {
        v.etag = req->res.headers.entries[i].value.base;
        v.etag_len = req->res.headers.entries[i].value.len;
    }
    if ((i = h2o_find_header(&req->res.headers, H2O_TOKEN_LAST_MODIFIED, -1)) >= 0)
        v.last_modified_s =
            dc_http_date_parse(req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len);
    dc_cond_result_t res = dc_cond_evaluate(&cr, &v, (int64_t)(time(NULL)));
    if (res == DC_COND_NOT_MODIFIED) {
        req->res.status = 304;
        req->res.reason = dc_http_reason(304);
        req->res.content_length = SIZE_MAX;
        keep_only(req, field_304);
    }
    return res;
}

void dc_condserve_respond_412(h2o_req_t *req, const char *request_id)
{
    keep_only(req, own_field);
    dc_respond_error(req, 412, "precondition failed", request_id);
}
