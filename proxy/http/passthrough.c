/*
 * Pass-through: the request goes to the upstream as is and the answer streams back with
 * back-pressure (the upstream transfer pauses while the client is behind), never stored.
 * Used for uncacheable requests (non-GET, no cache rule, Authorization, hit-for-pass keys) and by
 * waiters whose leader's answer could not be shared.
 *
 * The response head waits until the whole answer is in or DC_STREAM_HIGH_WATER bytes are buffered:
 * an answer that fails before then (invalid framing, the deadline, the idle timeout) is still a
 * clean 502/504 JSON error; a larger one that fails later is cut (the client sees an error end).
 * The head never carries the origin's Content-Length or Transfer-Encoding: h2o frames what we send.
 */
#include "core/error.h"
#include "core/log.h"
#include "http/invalidate.h"
#include "http/request.h"
#include "http/resphdr.h"
#include "http/respond.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void buf_append(dc_stream_buf_t *b, const char *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + len)
            cap *= 2;
        b->p = dc_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

/* Push what we have to h2o if no send is in flight. May complete the request: hold a reference. */
static void pass_flush(dc_request_t *r)
{
    if (r->send_inflight || r->final_sent || r->req == NULL)
        return;
    dc_stream_buf_t tmp = r->sending;
    r->sending = r->pending;
    r->pending = tmp;
    r->pending.len = 0;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (r->upstream_done)
        state = r->upstream_err != 0 ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL;
    if (r->sending.len == 0 && state == H2O_SEND_STATE_IN_PROGRESS)
        return;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        r->final_sent = true;
    else
        r->send_inflight = true;
    h2o_iovec_t iov = h2o_iovec_init(r->sending.p, r->sending.len);
    h2o_send(r->req, &iov, r->sending.len ? 1 : 0, state);
}

void dc__pass_proceed(dc_request_t *r)
{
    r->send_inflight = false;
    r->sending.len = 0;
    dc_request_ref(r);
    pass_flush(r);
    if (r->req != NULL && r->paused && r->fetch != NULL && r->pending.len < DC_STREAM_HIGH_WATER) {
        r->paused = false;
        dc_fetch_resume(r->fetch); /* may call on_body / on_done synchronously */
    }
    dc_request_unref(r);
}

/* The response head goes out now. `complete`: every byte of the answer is in r->pending. */
static void pass_start(dc_request_t *r, dc_fetch_t *f, bool complete)
{
    h2o_req_t *req = r->req;
    dc_request_set_upstream_head(r, f, 0);
    if (complete && !r->is_head && req->res.content_length == SIZE_MAX && req->res.status != 204 &&
        req->res.status != 304)
        req->res.content_length = r->pending.len; /* a chunked answer, complete: no need to chunk it again */
    dc_request_add_header(r, H2O_STRLIT("x-cache"), r->x_cache, strlen(r->x_cache));
    dc_request_add_header(r, H2O_STRLIT("x-request-id"), r->request_id, strlen(r->request_id));
    r->out = DC_OUT_PASS;
    r->generator.proceed = dc_out_proceed;
    r->generator.stop = dc_out_stop;
    h2o_start_response(req, &r->generator);
}

static void on_head(void *data, dc_fetch_t *f)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    /* the head is sent by pass_start, once the body is complete or large; an unsafe method's
     * success invalidates what it changed now (RFC 9111 §4.4) */
    size_t n;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    dc_http_invalidate(r, dc_fetch_status(f), hs, n);
}

static int on_body(void *data, dc_fetch_t *f, const char *buf, size_t len)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    if (r->is_head)
        return 0;
    if (r->pending.len >= DC_STREAM_HIGH_WATER && r->send_inflight) {
        r->paused = true;
        return 1; /* refuse: the upstream transfer pauses until proceed() */
    }
    buf_append(&r->pending, buf, len);
    if (r->out == DC_OUT_NONE) {
        if (r->pending.len < DC_STREAM_HIGH_WATER)
            return 0; /* held: see the file comment */
        pass_start(r, f, false);
    }
    dc_request_ref(r);
    pass_flush(r);
    dc_request_unref(r);
    return 0;
}

static void on_done(void *data, dc_fetch_t *f, int err)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    dc_request_record_upstream(r->ctx.worker, r->ctx.up_rt, f, err);
    r->attempts = dc_fetch_attempts(f);
    r->fetch = NULL;
    if (r->req == NULL)
        return;
    if (r->out == DC_OUT_NONE) {
        if (err != 0) {
            dc_request_respond_fetch_error(r, f, err); /* no response head reached the client */
            return;
        }
        pass_start(r, f, true);
    }
    r->upstream_done = true;
    r->upstream_err = err;
    if (err != 0)
        dc_log_warn("upstream %s failed after the response started (%s); client connection reset, rid=%s",
                    r->ctx.route->upstream->name, dc_strerror(err), r->request_id);
    dc_request_ref(r);
    pass_flush(r);
    dc_request_unref(r);
}

/* Is the request's upstream path on its route's no_cache list (swaps, orders: each call is a new
 * transaction upstream)? Such a request is never retried nor moved to another tier once sent. */
static bool on_no_cache_list(const dc_request_t *r)
{
    const dc_config_route_t *route = r->ctx.route;
    h2o_req_t *req = r->req;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    if (pathlen < plen)
        return false;
    for (size_t i = 0; i < route->nno_cache; i++) {
        size_t n = strlen(route->no_cache[i]);
        if (n <= pathlen - plen && memcmp(req->path.base + plen, route->no_cache[i], n) == 0)
            return true;
    }
    return false;
}

void dc_passthrough_start(dc_request_t *r, const char *x_cache, const char *cache_status)
{
    /* HTTP/2: the fetch starts after the read batch, unless a reset in it cancelled the request */
    if (dc_h2guard_defer(r, dc_passthrough_start, x_cache, cache_status))
        return;
    h2o_req_t *req = r->req;
    const dc_config_upstream_t *up = r->ctx.route->upstream;
    r->x_cache = x_cache;
    dc_request_add_header(r, H2O_STRLIT("cache-status"), cache_status, strlen(cache_status));
    dc_fetch_request_t fr = {0};
    char *method = h2o_strdup(&req->pool, req->method.base, req->method.len).base;
    fr.method = method;
    fr.url = dc_request_upstream_url(r);
    fr.headers = dc_request_upstream_headers(r, false);
    fr.body = req->entity.base;
    fr.body_len = req->entity.base ? req->entity.len : 0;
    fr.idempotent = (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) && !on_no_cache_list(r);
    dc_fetch_request_from_upstream(&fr, up, r->ctx.up_rt, !r->client_key_forwarded, r->ctx.worker->fleet);
    static const dc_fetch_callbacks_t cbs = {on_head, on_body, on_done};
    r->fetch = dc_fetch_start(&r->ctx.worker->curl, &fr, &cbs, r);
}
