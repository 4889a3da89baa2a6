/* The per-client limit of a route (http/steps.h): decided in Redis across the fleet (with leases
 * and local refusals), locally without Redis, RateLimit headers on every answer, 429 when refused. */
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

/* ---- per-client limit ---- */

/* A response header whose value is a decimal number (request-pool memory, no printf). */
static void add_number_header(h2o_req_t *req, const char *name, size_t nlen, uint64_t v)
{
    char *buf = h2o_mem_alloc_pool(&req->pool, 24);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 1, NULL, buf, dc_fmt_u64(buf, v));
}

/* Seconds, rounded up (a client told "0" would retry at once). */
static uint64_t ceil_s(uint64_t us)
{
    return (us + 999999) / 1000000;
}

/* Add the limit headers for `res` under `p`; answer 429 when refused. Returns false when answered. */
static bool finish_limit(dc_request_t *r, const dc_gcra_params_t *p, const dc_gcra_result_t *res)
{
    h2o_req_t *req = r->req;
    uint64_t window_s = (p->window_ms + 999) / 1000;
    char *v = h2o_mem_alloc_pool(&req->pool, 64);
    size_t n = 0;
    memcpy(v, "\"client\";q=", 11), n = 11;
    n += dc_fmt_u64(v + n, p->limit);
    memcpy(v + n, ";w=", 3), n += 3;
    n += dc_fmt_u64(v + n, window_s);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("ratelimit-policy"), 0, NULL, v, n);
    v = h2o_mem_alloc_pool(&req->pool, 64);
    memcpy(v, "\"client\";r=", 11), n = 11;
    n += dc_fmt_u64(v + n, res->remaining);
    memcpy(v + n, ";t=", 3), n += 3;
    n += dc_fmt_u64(v + n, ceil_s(res->reset_us));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("ratelimit"), 0, NULL, v, n);
    add_number_header(req, H2O_STRLIT("x-ratelimit-limit"), p->limit);
    add_number_header(req, H2O_STRLIT("x-ratelimit-remaining"), res->remaining);
    add_number_header(req, H2O_STRLIT("x-ratelimit-reset"), ceil_s(res->reset_us));
    if (res->allowed)
        return true;
    add_number_header(req, H2O_STRLIT("retry-after"), ceil_s(res->retry_after_us));
    dc_counter_add(&r->ctx.worker->metrics.limited[r->ctx.route_metric], 1);
    dc_request_respond_error(r, 429, "rate limit exceeded");
    return false;
}

/* The local decision: the whole limit without Redis, this instance's share of it when Redis is
 * configured but not answering. */
static void limit_locally(dc_request_t *r, const char *key, size_t len, const dc_gcra_params_t *p,
                          dc_gcra_result_t *res)
{
    dc_gcra_params_t share;
    if (r->ctx.worker->fleet != NULL) {
        dc_fleet_local_share(p, &share);
        dc_fleet_count_fallback();
        p = &share;
    }
    dc_limiter_check(r->ctx.worker->limiter, key, len, p, dc_now_mono_us(), res);
}

typedef struct limit_wait {
    dc_request_t *r;
    char *key; /* request pool */
    size_t len;
    const dc_gcra_params_t *p; /* in r's snapshot (r holds it) */
} limit_wait_t;

static void on_limit_reply(void *data, int err, const dc_gcra_result_t *res, unsigned granted)
{
    limit_wait_t *lw = data;
    dc_request_t *r = lw->r;
    dc_gcra_result_t local;
    if (r->req == NULL) { /* the client left while Redis was deciding */
        dc_request_unref(r);
        free(lw);
        return;
    }
    const dc_gcra_params_t *p = lw->p;
    if (err != 0) {
        limit_locally(r, lw->key, lw->len, p, &local);
        res = &local;
    } else if (!res->allowed) {
        /* refuse this client locally until its retry time: no Redis round trip per refusal */
        dc_limiter_deny(r->ctx.worker->limiter, lw->key, lw->len, dc_now_mono_us() + res->retry_after_us);
    } else if (granted > 1) {
        /* a lease: the next granted-1 requests of this client are decided here, for up to a second */
        dc_limiter_lease_put(r->ctx.worker->limiter, lw->key, lw->len, granted - 1, dc_now_mono_us() + 1000000,
                             res->remaining);
    }
    if (finish_limit(r, p, res))
        dc__http_continue(r);
    dc_request_unref(r);
    free(lw);
}

/*
 * The route's per-client GCRA, before anything costs a cache lookup or an upstream request.
 * With Redis: decided in Redis (exact across the fleet), asynchronously; refused clients are
 * remembered locally until their retry time; when Redis does not answer, this instance's share of
 * the limit is applied locally. Returns true when the request continues now, false when it was
 * answered or will continue from the Redis reply.
 */
bool dc__http_start_limit(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->ctx.route;
    const dc_route_rt_t *rt = dc_snapshot_route_rt(r->ctx.snap, route);
    const dc_gcra_params_t *p = &rt->limit;
    char client[240];
    size_t clen = 0;
    if (route->limit.by == DC_LIMIT_BY_PLUGIN && r->limit_id != NULL && r->limit_id_len > 0) {
        /* the identity a plugin verified (key id, token subject); none set: the client IP below. A
         * tier the limit lists selects its rate, in a bucket of its own (the tier is in the key, in
         * Redis too: a client moved to another tier never inherits a TAT made under other params) */
        const dc_config_limit_tier_t *tier = NULL;
        for (size_t t = 0; r->limit_tier != NULL && t < route->limit.ntiers; t++)
            if (strcmp(route->limit.tiers[t].name, r->limit_tier) == 0) {
                tier = &route->limit.tiers[t];
                p = &rt->tier_limits[t];
            }
        clen =
            (size_t)snprintf(client, sizeof(client), "p:%.*s%s%s", (int)(r->limit_id_len > 128 ? 128 : r->limit_id_len),
                             r->limit_id, tier != NULL ? "|t:" : "", tier != NULL ? tier->name : "");
    } else if (route->limit.by == DC_LIMIT_BY_HEADER) {
        ssize_t i = h2o_find_header_by_str(&req->headers, route->limit.by_header, strlen(route->limit.by_header), -1);
        if (i >= 0 && req->headers.entries[i].value.len > 0) {
            h2o_iovec_t v = req->headers.entries[i].value;
            clen = (size_t)snprintf(client, sizeof(client), "h:%.*s", (int)(v.len > 80 ? 80 : v.len), v.base);
        }
    }
    if (clen == 0)
        clen = (size_t)snprintf(client, sizeof(client), "%s", dc_request_real_ip(r));
    size_t plen = strlen(route->prefix);
    size_t klen = plen + 1 + clen;
    char *key = h2o_mem_alloc_pool(&req->pool, klen);
    memcpy(key, route->prefix, plen);
    key[plen] = '|';
    memcpy(key + plen + 1, client, clen);

    dc_gcra_result_t res;
    dc_fleet_t *fleet = r->ctx.worker->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        uint64_t retry, hint;
        uint64_t now_us = dc_now_mono_us();
        if (dc_limiter_denied(r->ctx.worker->limiter, key, klen, now_us, &retry)) {
            res = (dc_gcra_result_t){.allowed = false, .retry_after_us = retry, .reset_us = retry};
            return finish_limit(r, p, &res);
        }
        if (dc_limiter_lease_take(r->ctx.worker->limiter, key, klen, now_us, &hint)) {
            uint64_t used = p->burst > hint ? p->burst - hint : 0;
            res = (dc_gcra_result_t){.allowed = true, .remaining = hint, .reset_us = used * p->emission_us};
            return finish_limit(r, p, &res);
        }
        limit_wait_t *lw = dc_malloc(sizeof(*lw));
        lw->r = r;
        lw->key = key;
        lw->len = klen;
        lw->p = p;
        dc_request_ref(r); /* held until the reply */
        if (dc_fleet_gcra(fleet, key, klen, p, on_limit_reply, lw) == 0)
            return false;
        dc_request_unref(r);
        free(lw);
    }
    limit_locally(r, key, klen, p, &res);
    return finish_limit(r, p, &res);
}
