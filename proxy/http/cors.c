/* CORS answered by dexcache (http/cors.h). */
#include "http/cors.h"
#include "core/metrics.h"
#include "http/respond.h"
#include "http/steps.h"

#include <string.h>
#include <strings.h>

void dc_cors_decide(const dc_config_cors_t *p, const char *origin, size_t len, dc_cors_answer_t *out)
{
    memset(out, 0, sizeof(*out));
    out->vary_origin = !p->any_origin;
    /* `*` (never with credentials: refused by the config) is the same for every request, with an
     * Origin or without: a cache in front may then store one answer for all (Fetch's "CORS protocol
     * and HTTP caches"); an answer without it, cached from a request without Origin, would fail
     * every later fetch() */
    bool any = p->any_origin && !p->credentials;
    if (!any && (origin == NULL || !dc_config_cors_origin_allowed(p, origin, len)))
        return;
    out->allowed = true;
    out->credentials = p->credentials;
    if (p->any_origin) {
        out->allow_origin = "*";
        out->allow_origin_len = 1;
    } else {
        out->allow_origin = origin;
        out->allow_origin_len = len;
    }
}

bool dc_cors_is_cors_header(const char *name, size_t len)
{
    return len >= 15 && strncasecmp(name, "access-control-", 15) == 0;
}

static const h2o_iovec_t *request_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    return i >= 0 ? &req->headers.entries[i].value : NULL;
}

static void add(h2o_req_t *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 1, NULL, value, vlen);
}

/* Whether a Vary line of the answer already names Origin (or is "*"). */
static bool varies_on_origin(const h2o_headers_t *hs)
{
    for (ssize_t i = -1; (i = h2o_find_header_by_str(hs, H2O_STRLIT("vary"), i)) >= 0;) {
        const h2o_iovec_t *v = &hs->entries[i].value;
        size_t p = 0;
        while (p < v->len) {
            while (p < v->len && (v->base[p] == ' ' || v->base[p] == '\t' || v->base[p] == ','))
                p++;
            size_t s = p;
            while (p < v->len && v->base[p] != ',')
                p++;
            size_t e = p;
            while (e > s && (v->base[e - 1] == ' ' || v->base[e - 1] == '\t'))
                e--;
            if ((e - s == 6 && strncasecmp(v->base + s, "origin", 6) == 0) || (e - s == 1 && v->base[s] == '*'))
                return true;
        }
    }
    return false;
}

/* The headers of an answer for policy p: Vary, and when allowed ACAO and ACAC. */
static void add_common(h2o_req_t *req, const dc_cors_answer_t *a)
{
    if (a->vary_origin && !varies_on_origin(&req->res.headers))
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
    if (!a->allowed)
        return;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, a->allow_origin,
                   a->allow_origin_len);
    if (a->credentials)
        add(req, H2O_STRLIT("access-control-allow-credentials"), H2O_STRLIT("true"));
}

static const dc_config_cors_t *policy_of(const dc_request_t *r)
{
    return dc_config_cors_for(r->ctx.snap->cfg, r->ctx.route);
}

bool dc__http_cors_preflight(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")))
        return false;
    const dc_config_cors_t *p = policy_of(r);
    if (p == NULL)
        return false;
    const h2o_iovec_t *origin = request_header(req, H2O_STRLIT("origin"));
    if (origin == NULL || request_header(req, H2O_STRLIT("access-control-request-method")) == NULL)
        return false; /* a plain OPTIONS: the upstream's to answer */
    dc_cors_answer_t a;
    dc_cors_decide(p, origin->base, origin->len, &a);
    r->cors_preflight = true;
    r->x_cache = "-";
    req->res.status = 204;
    req->res.reason = dc_http_reason(204);
    add_common(req, &a);
    if (a.allowed) {
        add(req, H2O_STRLIT("access-control-allow-methods"), p->methods_value, strlen(p->methods_value));
        if (p->headers_value[0] != '\0')
            add(req, H2O_STRLIT("access-control-allow-headers"), p->headers_value, strlen(p->headers_value));
        add(req, H2O_STRLIT("access-control-max-age"), p->max_age_value, strlen(p->max_age_value));
    }
    add(req, H2O_STRLIT("x-request-id"), r->request_id, strlen(r->request_id));
    h2o_send_inline(req, NULL, 0);
    return true;
}

/* Drop every Access-Control-* header of the answer (the upstream's, or a stored one's). */
static void strip_cors_headers(h2o_headers_t *hs)
{
    size_t k = 0;
    for (size_t i = 0; i < hs->size; i++)
        if (!dc_cors_is_cors_header(hs->entries[i].name->base, hs->entries[i].name->len))
            hs->entries[k++] = hs->entries[i];
    hs->size = k;
}

/* Runs in h2o_start_response, before the head is serialised: every answer of our path passes. */
static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    dc_request_t *r = dc__http_request_of(req);
    if (r != NULL && r->req == req && !r->cors_preflight) {
        const dc_config_cors_t *p = policy_of(r);
        if (p != NULL) {
            strip_cors_headers(&req->res.headers);
            const h2o_iovec_t *origin = request_header(req, H2O_STRLIT("origin"));
            dc_cors_answer_t a;
            dc_cors_decide(p, origin != NULL ? origin->base : NULL, origin != NULL ? origin->len : 0, &a);
            add_common(req, &a);
            if (a.allowed && p->expose_value[0] != '\0')
                add(req, H2O_STRLIT("access-control-expose-headers"), p->expose_value, strlen(p->expose_value));
        }
    }
    h2o_setup_next_ostream(req, slot);
}

void dc__http_cors_register_filter(h2o_pathconf_t *pathconf)
{
    h2o_filter_t *f = h2o_create_filter(pathconf, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}
