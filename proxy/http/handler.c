/*
 * The request path's state machine (design: "The request path"), its dispatch:
 *   receive -> check (checks.c) -> route -> client limit (limit.c) -> [cacheable?] -> lookup (lookup.c)
 *     fresh hit                     -> serve the entry
 *     stale inside its SWR window   -> serve it now, one background refresh for the key (collapse.c)
 *     miss / expired / stale (SIE)  -> join the in-flight fetch for the key, or lead it (fill.c; in a
 *                                      fleet, after the cross-instance lock: collapse.c)
 *   uncacheable (method, no rule, Authorization, hit-for-pass) -> pass-through (passthrough.c)
 * Each step is decided in one place (http/steps.h lists them); the access log line is written when
 * the request is disposed (accesslog.c).
 */
#include "http/handler.h"
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/l2fleet.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/batch.h"
#include "http/cors.h"
#include "http/plugins.h"
#include "http/reqcheck.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/steps.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The h2o request carries its dc_request_t in a request variable (h2o's "env"): the disposal hook
 * below finds it there without a per-request allocation (h2o_mem_alloc_shared would malloc one). */
#define REQUEST_VAR "dexcache.request"

/* Called by h2o for every request of our path just before it clears the request's pool (loggers
 * run in h2o_dispose_request): the h2o request is going away, whatever the state of ours. */
static void on_req_dispose(h2o_logger_t *self, h2o_req_t *req)
{
    (void)self;
    h2o_iovec_t *var = h2o_req_getenv(req, H2O_STRLIT(REQUEST_VAR), 0);
    if (var == NULL || var->base == NULL)
        return; /* refused by h2o before our handler saw it */
    dc_request_t *r = (dc_request_t *)var->base;
    var->base = NULL;
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    if (r->h2 != NULL)
        dc_h2guard_detach(r); /* answered, or reset by the client before its answer */
    if (r->plugin != NULL)
        dc__http_plugins_dispose(r);
    dc_request_detach_sources(r);
    dc__http_wait_timer_stop(r);
    if (r->waiting)
        dc_inflight_cancel(r->ctx.worker->inflight, &r->waiter); /* on_release drops the wait's reference */
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    dc_counter_add(&m->requests[r->ctx.route_metric][dc_metrics_status_class(req->res.status)], 1);
    dc_counter_add(&m->bytes_out, req->bytes_sent);
    uint64_t now = dc_now_mono_us();
    dc_metrics_observe_request(m, r->ctx.route_metric, dc_metrics_cache_status_of(r->x_cache),
                               now > r->start_us ? now - r->start_us : 0);
    dc_counter_sub(&m->requests_active, 1);
    dc__http_access_log(r, req);
    r->req = NULL;
    dc_request_unref(r);
}

dc_request_t *dc__http_request_of(h2o_req_t *req)
{
    h2o_iovec_t *var = h2o_req_getenv(req, H2O_STRLIT(REQUEST_VAR), 0);
    return var != NULL ? (dc_request_t *)var->base : NULL;
}

static bool valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == ':'))
            return false;
    }
    return true;
}

/* ---- entry ---- */

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dc_worker_t *w = dc_worker_from_ctx(req->conn->ctx);
    DC_CHECK_MAGIC(w, DC_WORKER_MAGIC);
    dc_request_t *r = dc_request_new(w);
    r->refs = 1; /* held by the h2o request until on_req_dispose */
    h2o_req_getenv(req, H2O_STRLIT(REQUEST_VAR), 1)->base = (char *)r;
    r->req = req;
    r->ctx.worker = w;
    r->ctx.snap = dc_snapshot_ref(w->snap);
    r->start_us = dc_now_mono_us();
    r->is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    dc_counter_add(&w->metrics.requests_active, 1);
    if (req->version >= 0x200)
        dc_h2guard_attach(r);

    ssize_t idx = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (idx >= 0 && valid_request_id(req->headers.entries[idx].value.base, req->headers.entries[idx].value.len)) {
        memcpy(r->request_id, req->headers.entries[idx].value.base, req->headers.entries[idx].value.len);
        r->request_id[req->headers.entries[idx].value.len] = '\0';
    } else {
        dc_worker_next_request_id(w, r->request_id);
    }

    /* check */
    const char *why = NULL;
    int status = dc__http_run_checks(r, req, &why);
    if (status != 0) {
        dc_counter_add(&w->metrics.rejected[dc_metrics_status_class(status)], 1);
        if (status == 405)
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                           H2O_STRLIT("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
        if (status == 400)
            req->http1_is_persistent = 0; /* framing is in doubt: never reuse this connection */
        dc_request_respond_error(r, status, why);
        return 0;
    }

    /* route */
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    const dc_config_stream_t *stream = dc_config_stream_match(r->ctx.snap->cfg, req->path.base, pathlen);
    if (stream != NULL) {
        r->ctx.route = stream->route;
        r->ctx.route_metric = dc_snapshot_route_rt(r->ctx.snap, r->ctx.route)->metrics_id;
        r->ctx.up_rt = dc_snapshot_upstream_rt(r->ctx.snap, r->ctx.route->upstream);
        if (dc__http_cors_preflight(r))
            return 0;
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
            dc_request_respond_error(r, 405, "event streams answer GET only");
            return 0;
        }
        /* each subscription costs one token of the route's per-client limit (reconnect storms) */
        r->stream = stream;
        const void *chain = dc_snapshot_route_rt(r->ctx.snap, r->ctx.route)->plugins;
        if (chain != NULL && !dc__http_plugins_on_request(r, chain))
            return 0;
        dc_http_plugins_continue(r);
        return 0;
    }
    r->ctx.route = dc_config_route_match(r->ctx.snap->cfg, req->path.base, pathlen);
    if (r->ctx.route == NULL) {
        dc_request_respond_error(r, 404, "no route for this path");
        return 0;
    }
    const dc_route_rt_t *rt = dc_snapshot_route_rt(r->ctx.snap, r->ctx.route);
    r->ctx.route_metric = rt->metrics_id;
    r->ctx.up_rt = dc_snapshot_upstream_rt(r->ctx.snap, r->ctx.route->upstream);
    if (req->entity.base != NULL && req->entity.len > r->ctx.route->max_body) {
        req->http1_is_persistent = 0;
        dc_request_respond_error(r, 413, "request body too large");
        return 0;
    }

    /* a CORS preflight is answered here: browsers send it without credentials, so before the
     * plugins (authentication) and the limit, and never upstream */
    if (dc__http_cors_preflight(r))
        return 0;
    /* the route's plugins (authentication, identity), before the limit */
    if (rt->plugins != NULL && !dc__http_plugins_on_request(r, rt->plugins))
        return 0;
    dc_http_plugins_continue(r);
    return 0;
}

/* After routing (and the route's plugins): the client limit, before anything costs a cache lookup
 * or an upstream request, then the cache path or pass-through. */
void dc_http_plugins_continue(dc_request_t *r)
{
    if (r->ctx.route->limit.enabled && !dc__http_start_limit(r))
        return;
    dc__http_continue(r);
}

/* After the limit: cacheable requests take the cache path, the rest pass through. */
void dc__http_continue(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    if (r->stream != NULL) {
        dc_http_stream_subscribe(r, r->stream);
        return;
    }
    dc_worker_t *w = r->ctx.worker;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    size_t plen = strcmp(r->ctx.route->prefix, "/") == 0 ? 0 : strlen(r->ctx.route->prefix);
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) || r->is_head;
    r->ctx.rule = get ? dc_config_cache_rule_match(r->ctx.route, req->path.base + plen, pathlen - plen) : NULL;
    if (r->ctx.rule != NULL && !r->ctx.rule->is_public &&
        h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0)
        r->ctx.rule = NULL; /* a personal answer: never shared */
    if (r->ctx.rule == NULL) {
        dc_counter_add(&w->metrics.cache_bypass[r->ctx.route_metric], 1);
        dc_passthrough_start(r, "BYPASS", "dexcache; fwd=bypass");
        return;
    }
    const dc_config_batch_t *bc = &r->ctx.route->batch;
    if (bc->enabled && !r->is_head && pathlen - plen == strlen(bc->path) &&
        memcmp(req->path.base + plen, bc->path, pathlen - plen) == 0 && dc_batch_try(r))
        return;
    dc__http_cache_path(r);
}

void dc_http_handler_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
    h2o_logger_t *disposal = h2o_create_logger(pathconf, sizeof(*disposal));
    disposal->log_access = on_req_dispose;
    dc__http_plugins_register_filter(pathconf);
    dc__http_cors_register_filter(pathconf);
}
