/*
 * Answers whose body comes from dexcache's memory: a complete cache entry (hits, collapsed
 * waiters, stale copies), or the body a leader's fill is still appending to. Bodies are sent from
 * the entry's chunks without copying; the request holds a reference to the body (and entry) until
 * it is disposed, so eviction under a slow client is safe.
 */
#include "core/error.h"
#include "core/fmt.h"
#include "core/time.h"
#include "cache/encode.h"
#include "http/cdn.h"
#include "http/conditional.h"
#include "http/condserve.h"
#include "http/range.h"
#include "http/request.h"
#include "http/resphdr.h"
#include "http/respond.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MAX_SPANS 64

void dc__pass_proceed(dc_request_t *r);

/* Keep the first `max` bytes of n spans; returns the number of spans left. */
static size_t trim_spans(size_t *lens, size_t n, size_t max)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (total + lens[i] >= max) {
            lens[i] = max - total;
            return lens[i] > 0 ? i + 1 : i;
        }
        total += lens[i];
    }
    return n;
}

/* Send the next part of the body (or finish). With r->ranged, only bytes [r->sent, r->range_end)
 * go out (r->sent starts at the range's first byte). The bytes come from r->body (a complete entry, or
 * the fill this leader follows on its own thread) or, when following another worker's fill, from
 * r->growing under its lock. May complete the request: callers hold a reference. */
static void body_pump(dc_request_t *r)
{
    if (r->send_inflight || r->final_sent || r->req == NULL)
        return;
    const char *bases[MAX_SPANS];
    size_t lens[MAX_SPANS], n, end;
    bool complete, error;
    if (r->growing != NULL) {
        n = dc_growing_read(r->growing, r->sent, bases, lens, MAX_SPANS, &end, &complete, &error);
        if (r->ranged && end >= r->range_end) {
            end = r->range_end; /* the last byte of the range is in: done, whatever follows */
            complete = true;
            error = false;
        }
        if (r->ranged) /* spans may reach past the range: cut them at its end */
            n = trim_spans(lens, n, end > r->sent ? end - r->sent : 0);
    } else {
        complete = r->body_end != SIZE_MAX;
        end = complete ? r->body_end : r->body->body.len;
        error = r->body_error;
        if (r->ranged && end >= r->range_end) {
            end = r->range_end;
            complete = true;
            error = false;
        }
        n = r->sent < end ? dc_body_spans(&r->body->body, r->sent, end - r->sent, bases, lens, MAX_SPANS) : 0;
    }
    h2o_send_state_t final = error ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL;
    if (r->is_head || n == 0) {
        if (complete) {
            r->final_sent = true;
            h2o_send(r->req, NULL, 0, final);
        }
        return; /* otherwise woken again when bytes arrive */
    }
    h2o_iovec_t iov[MAX_SPANS];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        iov[i] = h2o_iovec_init(bases[i], lens[i]);
        total += lens[i];
    }
    r->sent += total;
    bool last = complete && r->sent == end;
    if (last)
        r->final_sent = true;
    else
        r->send_inflight = true;
    h2o_send(r->req, iov, n, last ? final : H2O_SEND_STATE_IN_PROGRESS);
}

void dc_out_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    dc_request_t *r = H2O_STRUCT_FROM_MEMBER(dc_request_t, generator, gen);
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    if (r->out == DC_OUT_PASS) {
        dc__pass_proceed(r);
        return;
    }
    if (r->out == DC_OUT_SSE) {
        dc_http_stream_proceed(r);
        return;
    }
    r->send_inflight = false;
    r->acked = r->sent;
    dc_request_ref(r);
    if (r->fill != NULL)
        dc_fill_client_progress(r->fill);
    body_pump(r);
    if (r->final_sent && r->growing != NULL)
        dc_serve_stream_detach(r);
    dc_request_unref(r);
}

void dc_out_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    dc_request_t *r = H2O_STRUCT_FROM_MEMBER(dc_request_t, generator, gen);
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    dc_request_detach_sources(r);
}

/* X-Cache, Cache-Status, X-Request-Id (and Via). The values are static strings, request-pool
 * memory or r->request_id, all alive until the response is out: added without copies. */
static void add_common(dc_request_t *r, const char *x_cache, const char *cache_status, bool via)
{
    h2o_req_t *req = r->req;
    r->x_cache = x_cache;
    if (r->client_cc_ignored && strstr(cache_status, "detail=") == NULL) /* http/reqcc.h */
        cache_status = h2o_concat(&req->pool, h2o_iovec_init(cache_status, strlen(cache_status)),
                                  h2o_iovec_init(H2O_STRLIT("; detail=client-cc-ignored")))
                           .base;
    cache_status = dc_request_cache_status_tier(&req->pool, cache_status, r->tier); /* a fill's answer */
    if (via)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VIA, NULL, H2O_STRLIT("1.1 dexcache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, x_cache, strlen(x_cache));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("cache-status"), 0, NULL, cache_status,
                          strlen(cache_status));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id,
                          strlen(r->request_id));
}

/* The value of response header `token` already on r's answer, or NULL. */
static const h2o_iovec_t *res_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->res.headers, token, -1);
    return i >= 0 ? &req->res.headers.entries[i].value : NULL;
}

/*
 * Byte ranges (http/range.h) on a 200 of a cached object whose selected representation is `len`
 * bytes (SIZE_MAX: not known yet, the Range is ignored): Accept-Ranges, then 206 with
 * Content-Range and the slice's Content-Length, or 416 with "bytes * /len" and no body, or nothing
 * (the whole body). If-Range is checked against the ETag / Last-Modified already on the answer.
 * Call after the headers are on req->res and before h2o_start_response, with r->sent == 0.
 */
static void apply_range(dc_request_t *r, size_t len)
{
    h2o_req_t *req = r->req;
    if (req->res.status != 200)
        return;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCEPT_RANGES, NULL, H2O_STRLIT("bytes"));
    ssize_t ri;
    if (r->is_head || len == SIZE_MAX || (ri = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1)) < 0)
        return; /* the common case: one header lookup */
    if (h2o_find_header(&req->headers, H2O_TOKEN_RANGE, ri) >= 0)
        return; /* two Range lines make no valid field: ignored (RFC 9110 14.2), the whole body */
    ssize_t ii = h2o_find_header(&req->headers, H2O_TOKEN_IF_RANGE, -1);
    if (ii >= 0) {
        const h2o_iovec_t *etag = res_header(req, H2O_TOKEN_ETAG), *lm = res_header(req, H2O_TOKEN_LAST_MODIFIED);
        dc_cond_validators_t val = {etag ? etag->base : NULL, etag ? etag->len : 0,
                                    lm ? dc_http_date_parse(lm->base, lm->len) : -1, -1};
        if (!dc_cond_if_range_ok(req->headers.entries[ii].value.base, req->headers.entries[ii].value.len, &val))
            return; /* the client's copy is outdated: the whole new one */
    }
    uint64_t first = 0, last = 0;
    dc_range_result_t res =
        dc_range_eval(req->headers.entries[ri].value.base, req->headers.entries[ri].value.len, len, &first, &last);
    if (res != DC_RANGE_SINGLE && res != DC_RANGE_UNSATISFIABLE)
        return;
    char *cr = h2o_mem_alloc_pool(&req->pool, DC_RANGE_CONTENT_RANGE_MAX);
    size_t crlen;
    r->ranged = true;
    if (res == DC_RANGE_SINGLE) {
        req->res.status = 206;
        crlen = dc_range_content_range(cr, first, last, len);
        req->res.content_length = (size_t)(last - first + 1);
        r->sent = r->acked = (size_t)first;
        r->range_end = (size_t)last + 1;
    } else {
        req->res.status = 416;
        crlen = dc_range_content_range(cr, UINT64_MAX, 0, len);
        req->res.content_length = 0;
        r->sent = r->acked = 0;
        r->range_end = 0; /* no body */
    }
    req->res.reason = dc_http_reason(req->res.status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_RANGE, NULL, cr, crlen);
}

void dc_serve_entry(dc_request_t *r, dc_cache_entry_t *e, const char *x_cache, const char *cache_status)
{
    dc_serve_entry_adopt(r, dc_cache_entry_ref(e), x_cache, cache_status);
}

/* The representation of e the client accepts best among those it has (identity if none). */
static dc_encoding_t choose_encoding(const h2o_req_t *req, const dc_cache_entry_t *e)
{
    unsigned mask = 0;
    for (unsigned i = DC_ENC_GZIP; i < DC_ENC_COUNT; i++)
        if (e->variants[i] != NULL)
            mask |= 1u << i;
    if (mask == 0)
        return DC_ENC_IDENTITY;
    ssize_t ae = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    return ae >= 0
               ? dc_encoding_negotiate(req->headers.entries[ae].value.base, req->headers.entries[ae].value.len, mask)
               : DC_ENC_IDENTITY;
}

/* Status and headers of a stored answer for representation `enc`: the stored fields, the ETag
 * that fits the representation (the origin's, else our digest tag; weakened for one made here),
 * Content-Encoding, Vary, Age and ours. */
static void add_entry_head(dc_request_t *r, const dc_cache_entry_t *e, dc_encoding_t enc, const char *x_cache,
                           const char *cache_status)
{
    h2o_req_t *req = r->req;
    h2o_iovec_t etag = dc_condserve_entry_etag(e, enc, &req->pool);
    req->res.status = e->status;
    req->res.reason = dc_http_reason(e->status);
    /* room for every header of the answer at once (growing the vector copies it each time) */
    h2o_vector_reserve(&req->pool, &req->res.headers, req->res.headers.size + e->nheaders + 10);
    for (size_t i = 0; i < e->nheaders; i++) {
        const dc_cache_hdr_t *h = &e->headers[i];
        if (h->token == H2O_TOKEN_ETAG)
            continue; /* added below, as it fits the representation sent */
        if (h->token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, h->token, NULL, h->value, h->value_len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, h->name, h->name_len, 0, NULL, h->value, h->value_len);
    }
    if (etag.len > 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag.base, etag.len);
    if (enc != DC_ENC_IDENTITY) {
        const char *name = dc_encoding_name(enc);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, name, strlen(name));
    }
    if (e->compressible)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    uint64_t now = dc_now_wall_ms();
    uint64_t age = (now > e->stored_at_ms ? (now - e->stored_at_ms) / 1000 : 0) + e->origin_age_s;
    char *agebuf = h2o_mem_alloc_pool(&req->pool, 24);
    size_t al = dc_fmt_u64(agebuf, age);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_AGE, NULL, agebuf, al);
    add_common(r, x_cache, cache_status, true);
}

/* Preconditions (RFC 9110 §13.2) decide what goes out: a 412 (answered here), a 304, or the
 * stored status with `chosen`'s bytes (a range of them); then the response starts. */
static void start_entry_body(dc_request_t *r, const dc_cache_entry_t *e, const dc_shared_body_t *chosen)
{
    h2o_req_t *req = r->req;
    /* without Last-Modified, If-Modified-Since is evaluated against the time the entry was
     * received (RFC 9111 §4.3.2) */
    dc_cond_result_t cond = dc_condserve_apply(req, (int64_t)(e->stored_at_ms / 1000));
    if (cond == DC_COND_PRECONDITION_FAIL) {
        r->final_sent = true;
        dc_condserve_respond_412(req, r->request_id);
        return;
    }
    r->out = DC_OUT_BODY;
    r->generator.proceed = dc_out_proceed;
    r->generator.stop = dc_out_stop;
    if (cond == DC_COND_NOT_MODIFIED) {
        r->body_end = 0;
        r->is_head = true; /* no body */
    } else if (e->status == 204) {
        req->res.content_length = SIZE_MAX;
    } else {
        req->res.content_length = chosen->body.len;
        apply_range(r, chosen->body.len);
    }
    h2o_start_response(req, &r->generator);
    dc_request_ref(r);
    body_pump(r);
    dc_request_unref(r);
}

void dc_serve_entry_adopt(dc_request_t *r, dc_cache_entry_t *e, const char *x_cache, const char *cache_status)
{
    DC_ASSERT(!e->is_pass && e->body != NULL);
    /* the request keeps the entry (header strings, and the representation it sends: an entry's
     * bodies never change once it is in the store) alive until it is disposed */
    dc_cache_entry_t *prev = r->entry;
    dc_request_set_body(r, NULL, false);
    r->entry = e;
    dc_cache_entry_release(prev);
    dc_encoding_t enc = choose_encoding(r->req, e);
    dc_shared_body_t *chosen = enc == DC_ENC_IDENTITY ? e->body : e->variants[enc];
    dc_request_set_body(r, chosen, true);
    r->body_end = chosen->body.len;
    r->sent = r->acked = 0;
    r->ranged = false;
    add_entry_head(r, e, enc, x_cache, cache_status);
    start_entry_body(r, e, chosen);
}

static void add_cdn(dc_request_t *r, const dc_cdn_headers_t *cdn)
{
    dc_request_add_header(r, H2O_STRLIT("cache-control"), cdn->cache_control, strlen(cdn->cache_control));
    if (cdn->cdn_cache_control[0])
        dc_request_add_header(r, H2O_STRLIT("cdn-cache-control"), cdn->cdn_cache_control,
                              strlen(cdn->cdn_cache_control));
    if (cdn->surrogate_key[0]) {
        dc_request_add_header(r, H2O_STRLIT("surrogate-key"), cdn->surrogate_key, strlen(cdn->surrogate_key));
        dc_request_add_header(r, H2O_STRLIT("cache-tag"), cdn->cache_tag, strlen(cdn->cache_tag));
    }
}

void dc_serve_follow_start(dc_request_t *r, struct dc_fill *fill, dc_fetch_t *f, dc_shared_body_t *body,
                           const char *x_cache, const char *cache_status, const dc_cdn_headers_t *cdn,
                           unsigned head_flags, size_t range_len)
{
    h2o_req_t *req = r->req;
    dc_request_set_upstream_head(r, f, head_flags | (cdn != NULL ? DC_HEAD_SKIP_CACHE_CONTROL : 0));
    if (cdn != NULL)
        add_cdn(r, cdn);
    add_common(r, x_cache, cache_status, false);
    dc_request_set_body(r, dc_shared_body_ref(body), false);
    r->fill = fill;
    dc_cond_result_t cond = dc_condserve_apply(req, -1);
    if (cond == DC_COND_PRECONDITION_FAIL) {
        r->final_sent = true; /* the fill may still pump: nothing more is sent */
        dc_condserve_respond_412(req, r->request_id);
        return;
    }
    if (cond == DC_COND_NOT_MODIFIED)
        r->is_head = true; /* no body: the response ends once the fill is over, or at once below */
    r->body_end = cond == DC_COND_NOT_MODIFIED ? 0 : SIZE_MAX;
    r->sent = r->acked = 0;
    r->ranged = false;
    if (head_flags & DC_HEAD_RANGES)
        apply_range(r, range_len);
    r->out = DC_OUT_BODY;
    r->generator.proceed = dc_out_proceed;
    r->generator.stop = dc_out_stop;
    h2o_start_response(req, &r->generator);
    dc_request_ref(r);
    body_pump(r);
    dc_request_unref(r);
}

void dc_serve_follow_pump(dc_request_t *r)
{
    dc_request_ref(r);
    body_pump(r);
    dc_request_unref(r);
}

void dc_serve_follow_end(dc_request_t *r, bool error)
{
    r->fill = NULL;
    r->body_end = r->body->body.len;
    r->body_error = error;
    dc_request_ref(r);
    body_pump(r);
    dc_request_unref(r);
}

static void on_growing_wake(dc_msg_t *m)
{
    dc_growing_sub_t *sub = (dc_growing_sub_t *)((char *)m - offsetof(dc_growing_sub_t, msg));
    dc_request_t *r = (dc_request_t *)((char *)sub - offsetof(dc_request_t, gsub));
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    dc_growing_woken(sub);
    if (sub->cancelled) {
        dc_request_unref(r); /* the subscription's reference, kept for this queued wake-up */
        return;
    }
    dc_request_ref(r);
    body_pump(r);
    if (r->final_sent)
        dc_serve_stream_detach(r);
    dc_request_unref(r);
}

void dc_serve_stream_detach(dc_request_t *r)
{
    if (!r->subscribed)
        return;
    r->subscribed = false;
    if (dc_growing_unsubscribe(r->growing, &r->gsub))
        dc_request_unref(r); /* no wake-up queued: drop the subscription's reference now */
}

void dc_serve_stream(dc_request_t *r, dc_cache_entry_t *preview, dc_growing_t *g, const char *content_encoding,
                     const char *x_cache, const char *cache_status)
{
    h2o_req_t *req = r->req;
    dc_cache_entry_release(r->entry);
    r->entry = dc_cache_entry_ref(preview);
    r->growing = g;
    req->res.status = preview->status;
    req->res.reason = dc_http_reason(preview->status);
    for (size_t i = 0; i < preview->nheaders; i++) {
        const dc_cache_hdr_t *h = &preview->headers[i];
        if (h->token == H2O_TOKEN_ETAG)
            continue; /* added below, as it fits the representation sent */
        if (h->token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, h->token, NULL, h->value, h->value_len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, h->name, h->name_len, 0, NULL, h->value, h->value_len);
    }
    if (content_encoding != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_ENCODING, NULL, content_encoding,
                       strlen(content_encoding));
    /* the origin's ETag (our digest is not known before the end): the stream is gzip only when it
     * is the origin's gzip bytes */
    h2o_iovec_t etag =
        dc_condserve_entry_etag(preview, content_encoding != NULL ? DC_ENC_GZIP : DC_ENC_IDENTITY, &req->pool);
    if (etag.len > 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag.base, etag.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept-Encoding"));
    add_common(r, x_cache, cache_status, true);
    dc_cond_result_t cond = dc_condserve_apply(req, -1);
    if (cond == DC_COND_PRECONDITION_FAIL) {
        r->final_sent = true;
        dc_condserve_respond_412(req, r->request_id);
        return;
    }
    if (cond == DC_COND_NOT_MODIFIED) {
        /* no body to follow: the response ends now (the request still holds g until disposed) */
        r->out = DC_OUT_BODY;
        r->generator.proceed = dc_out_proceed;
        r->generator.stop = dc_out_stop;
        h2o_start_response(req, &r->generator);
        r->final_sent = true;
        dc_request_ref(r);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        dc_request_unref(r);
        return;
    }
    size_t expected = dc_growing_expected(g);
    req->res.content_length = expected > 0 ? expected : (r->is_head ? 0 : SIZE_MAX);
    r->sent = r->acked = 0;
    r->ranged = false;
    apply_range(r, expected > 0 ? expected : SIZE_MAX); /* a stored 200's bytes, as they arrive */
    r->body_end = SIZE_MAX;
    r->out = DC_OUT_BODY;
    r->generator.proceed = dc_out_proceed;
    r->generator.stop = dc_out_stop;
    h2o_start_response(req, &r->generator);
    r->gsub.msg.run = on_growing_wake;
    r->gsub.target = r->ctx.worker;
    r->gsub.post = dc_worker_post;
    dc_request_ref(r); /* held by the subscription */
    r->subscribed = true;
    dc_growing_subscribe(g, &r->gsub); /* wakes us once: bytes may already be there */
}
