/* The cache path (http/steps.h): the key, the lookup and what its freshness allows (hit, stale
 * while revalidating, stale after a failed refresh), and waiting in or leading the in-flight fetch. */
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
#include "http/reqcc.h"
#include "http/reqcheck.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/steps.h"
#include "http/vary.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* A waiter's deadline: a separately allocated uv timer (closed asynchronously) so the request
 * never has to wait for a handle to close. */
typedef struct dc_wait_timer {
    uv_timer_t timer;
    dc_request_t *r; /* NULL once the wait is over */
} dc_wait_timer_t;

void dc__http_wait_timer_stop(dc_request_t *r)
{
    if (r->wait_timer == NULL)
        return;
    r->wait_timer->r = NULL;
    uv_timer_stop(&r->wait_timer->timer);
    uv_close((uv_handle_t *)&r->wait_timer->timer, (uv_close_cb)free);
    r->wait_timer = NULL;
}

/* ---- cache path ---- */

/* The request's Cache-Control lines (merged) and Pragma: no-cache, read once (one header lookup
 * when the request has neither): sets r->client_* (http/reqcc.h says what is honoured when). */
static void read_client_cc(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    ssize_t i = -1;
    bool any = false;
    dc_cc_init(&r->client_cc);
    while ((i = h2o_find_header(&req->headers, H2O_TOKEN_CACHE_CONTROL, i)) >= 0) {
        any = true;
        dc_cc_parse(req->headers.entries[i].value.base, req->headers.entries[i].value.len, &r->client_cc);
    }
    /* Pragma counts only without Cache-Control (RFC 9111 5.4) */
    i = any ? -1 : h2o_find_header_by_str(&req->headers, H2O_STRLIT("pragma"), -1);
    bool pragma = i >= 0 && req->headers.entries[i].value.len >= 8 &&
                  strncasecmp(req->headers.entries[i].value.base, "no-cache", 8) == 0;
    if (!any && !pragma)
        return;
    r->client_cc_set = true;
    r->client_pragma_no_cache = pragma;
    r->client_no_store = r->client_cc.no_store;
    r->client_only_if_cached = r->client_cc.only_if_cached;
    if (!dc_reqcc_has_freshness(&r->client_cc, pragma))
        return;
    if (r->ctx.rule->client_no_cache == DC_CLIENT_NO_CACHE_REVALIDATE)
        r->client_revalidate = r->client_cc.no_cache || pragma || r->client_cc.max_age == 0;
    else
        r->client_cc_ignored = true;
}

/* Under client_no_cache: revalidate, what the request's freshness directives make of entry e:
 * may set r->client_revalidate; returns true when e is stale and max-stale accepts it. */
static bool judge_client_cc(dc_request_t *r, const dc_cache_entry_t *e, uint64_t now)
{
    if (!r->client_cc_set || r->ctx.rule->client_no_cache != DC_CLIENT_NO_CACHE_REVALIDATE)
        return false;
    uint64_t age_ms = (now > e->stored_at_ms ? now - e->stored_at_ms : 0) + e->origin_age_s * 1000u;
    int64_t left_ms = (int64_t)e->fresh_until_ms - (int64_t)now;
    dc_reqcc_verdict_t v = dc_reqcc_judge(&r->client_cc, r->client_pragma_no_cache, age_ms, left_ms, e->no_stale);
    if (v == DC_REQCC_REVALIDATE)
        r->client_revalidate = true;
    return v == DC_REQCC_STALE_OK;
}

static bool build_key(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->ctx.route;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    const char *pq = req->path.base + plen;
    size_t pqlen = req->path.len - plen;
    dc_cache_key_opts_t opts = {r->ctx.rule->key_sets, r->ctx.rule->nkey_sets, r->ctx.rule->ignore_params,
                                r->ctx.rule->nignore_params};
    size_t cap = dc_cache_key_bound(req->method.len, strlen(route->prefix), pqlen);
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    long n = dc_cache_key_build(req->method.base, req->method.len, route->prefix, pq, pqlen, &opts, buf, cap);
    if (n < 0)
        return false;
    r->key = buf;
    r->key_len = (size_t)n;
    r->hash = dc_cache_hash(buf, (size_t)n);
    dc_request_key_add_headers(r); /* the rule's key_headers */
    return true;
}

static char *fmt_status(dc_request_t *r, const char *fmt, long long v)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), fmt, v);
    return h2o_strdup(&r->req->pool, buf, (size_t)n).base;
}

static bool client_accepts_gzip(h2o_req_t *req)
{
    ssize_t ae = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    return ae >= 0 && dc_encoding_negotiate(req->headers.entries[ae].value.base, req->headers.entries[ae].value.len,
                                            1u << DC_ENC_GZIP) == DC_ENC_GZIP;
}

/* The leader's answer, handed over whole: stale (it failed and a stale copy stands in), shared
 * but not stored, or stored. Releases res->entry. */
static void serve_collapsed_entry(dc_request_t *r, dc_flight_result_t *res)
{
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    dc_counter_add(&m->cache_collapsed[r->ctx.route_metric], 1);
    if (res->stale) {
        dc_counter_add(&m->cache_stale[r->ctx.route_metric], 1);
        dc_serve_entry(r, res->entry, "STALE",
                       res->fwd_status
                           ? fmt_status(r, "dexcache; fwd=stale; fwd-status=%lld; collapsed", res->fwd_status)
                           : "dexcache; fwd=stale; collapsed");
    } else if (res->shared_only) {
        dc_serve_entry(r, res->entry, "MISS",
                       fmt_status(r, "dexcache; fwd=miss; fwd-status=%lld; collapsed", res->fwd_status));
    } else {
        dc_counter_add(&m->cache_hits[r->ctx.route_metric], 1);
        dc_serve_entry(r, res->entry, "HIT", "dexcache; hit; collapsed");
    }
    dc_cache_entry_release(res->entry);
}

/* A large answer another request is receiving: send its bytes as they arrive (the gzip stream to
 * a client that takes it). Takes over the result's references. */
static void serve_collapsed_stream(dc_request_t *r, dc_flight_result_t *res)
{
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    dc_counter_add(&m->cache_collapsed[r->ctx.route_metric], 1);
    dc_counter_add(&m->cache_hits[r->ctx.route_metric], 1);
    if (res->growing_gz != NULL && client_accepts_gzip(r->req)) {
        dc_growing_release(res->growing);
        dc_serve_stream(r, res->entry, res->growing_gz, "gzip", "HIT", "dexcache; hit; collapsed; detail=streaming");
    } else {
        dc_growing_release(res->growing_gz);
        dc_serve_stream(r, res->entry, res->growing, NULL, "HIT", "dexcache; hit; collapsed; detail=streaming");
    }
    dc_cache_entry_release(res->entry);
}

/* The leader's fetch failed: our own stale copy when usable, else the error (with Retry-After). */
static void answer_flight_error(dc_request_t *r, const dc_flight_result_t *res)
{
    if (dc_cache_entry_stale_usable(r->stale, dc_now_wall_ms())) {
        dc_counter_add(&r->ctx.worker->metrics.cache_stale[r->ctx.route_metric], 1);
        dc_serve_entry(r, r->stale, "STALE", "dexcache; fwd=stale; collapsed");
        return;
    }
    dc_request_respond_upstream_error(r, res->status, res->message, res->upstream, res->cause, res->retry_after_s);
}

static void on_wait_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    dc_request_t *r = w->data;
    dc__http_wait_timer_stop(r);
    if (r->req == NULL) {
        dc_cache_entry_release(res->entry);
        dc_growing_release(res->growing);
        dc_growing_release(res->growing_gz);
        return;
    }
    if ((res->outcome == DC_FLIGHT_ENTRY || res->outcome == DC_FLIGHT_STREAM) && !dc_http_vary_matches(r, res->entry)) {
        /* another variant than this request's: look again once released (on_wait_release) */
        r->vary_retry = true;
        dc_flight_result_release(res);
        return;
    }
    dc_request_ref(r);
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        serve_collapsed_entry(r, res);
        break;
    case DC_FLIGHT_STREAM:
        serve_collapsed_stream(r, res);
        break;
    case DC_FLIGHT_PASS:
        /* the leader's answer was private: fetch our own */
        dc_counter_add(&r->ctx.worker->metrics.cache_bypass[r->ctx.route_metric], 1);
        dc_passthrough_start(r, "MISS", "dexcache; fwd=miss; detail=pass");
        break;
    case DC_FLIGHT_ERROR:
        answer_flight_error(r, res);
        break;
    }
    dc_request_unref(r);
}

static void on_wait_release(dc_waiter_t *w)
{
    dc_request_t *r = w->data;
    r->waiting = false;
    if (r->vary_retry && r->req != NULL) {
        /* the answer we waited for was another variant: now that its vary record is stored, the
         * lookup finds ours or leads its fill; a second mismatch (the record keeps changing, or
         * was not stored) passes through */
        r->vary_retry = false;
        dc_cache_entry_release(r->stale);
        r->stale = NULL;
        if (r->vary_retries++ == 0) {
            dc__http_cache_lookup(r, false);
        } else {
            dc_counter_add(&r->ctx.worker->metrics.cache_bypass[r->ctx.route_metric], 1);
            dc_passthrough_start(r, "MISS", "dexcache; fwd=miss; detail=vary-mismatch");
        }
    }
    dc_request_unref(r);
}

static void on_wait_timeout(uv_timer_t *t)
{
    dc_wait_timer_t *wt = (dc_wait_timer_t *)t;
    dc_request_t *r = wt->r;
    if (r == NULL)
        return;
    dc_request_ref(r);
    dc__http_wait_timer_stop(r);
    if (r->waiting && dc_inflight_cancel(r->ctx.worker->inflight, &r->waiter) && r->req != NULL)
        dc_request_respond_error(r, 504, "timed out waiting for the in-flight fetch of this key");
    dc_request_unref(r);
}

static void wait_for_flight(dc_request_t *r)
{
    const dc_config_upstream_t *up = r->ctx.route->upstream;
    dc_wait_timer_t *wt = dc_calloc(1, sizeof(*wt));
    wt->r = r;
    uv_timer_init(&r->ctx.worker->loop, &wt->timer);
    /* the leader gives up after its own deadline; this is only a safety net */
    uv_timer_start(&wt->timer, on_wait_timeout, up->timeout_ms + up->connect_timeout_ms + 1000, 0);
    r->wait_timer = wt;
}

/* Wait in the flight for `key` with r->waiter (the wait holds a reference to r until on_release)
 * and return NULL, or, when nobody is on it yet, return the flight this request now leads. */
dc_flight_t *dc__http_join_or_lead(dc_request_t *r, const char *key, size_t len, uint64_t hash,
                                   void (*on_result)(dc_waiter_t *, dc_flight_result_t *),
                                   void (*on_release)(dc_waiter_t *))
{
    r->waiter.on_result = on_result;
    r->waiter.on_release = on_release;
    r->waiter.target = r->ctx.worker;
    r->waiter.data = r;
    dc_request_ref(r); /* held by the wait until on_release */
    r->waiting = true;
    dc_flight_t *flight = NULL;
    if (dc_inflight_join(r->ctx.worker->inflight, key, len, hash, &r->waiter, &flight) == DC_INFLIGHT_JOINED)
        return NULL;
    r->waiting = false;
    dc_request_unref(r);
    return flight;
}

/* A miss: one fetch per key across all workers. */
static void miss(dc_request_t *r)
{
    if (r->client_no_store) {
        /* a request no-store (RFC 9111 5.2.1.5) fetches for itself: leading the shared fetch would
         * leave every request collapsed onto it unstored (a client could keep a hot key uncached) */
        dc__http_lead_fill(r, NULL);
        return;
    }
    dc_flight_t *flight = dc__http_join_or_lead(r, r->key, r->key_len, r->hash, on_wait_result, on_wait_release);
    if (flight == NULL) {
        wait_for_flight(r);
        return;
    }
    dc__http_lead_fill(r, flight);
}

/* Deferred upstream work (h2guard.h), run only if the client is still there. */
static void resume_miss(dc_request_t *r, const char *a, const char *b)
{
    (void)a, (void)b;
    miss(r);
}

static void resume_lookup(dc_request_t *r, const char *a, const char *b)
{
    (void)a, (void)b;
    dc__http_cache_lookup(r, true);
}

void dc__http_cache_path(dc_request_t *r)
{
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    if (!build_key(r)) {
        dc_counter_add(&m->cache_bypass[r->ctx.route_metric], 1);
        dc_passthrough_start(r, "BYPASS", "dexcache; fwd=bypass; detail=key");
        return;
    }
    const void *chain = dc_snapshot_route_rt(r->ctx.snap, r->ctx.route)->plugins;
    if (chain != NULL && (!dc__http_plugins_cache_key(r, chain) || !dc__http_plugins_view_claim(r, chain)))
        return;
    read_client_cc(r);
    dc__http_cache_lookup(r, true);
}

/* r's key in L1; when the URL has variants (http/vary.h), this request's own, by its secondary
 * key (variants are not shared through L2: only this instance's are used). Returns false when the
 * request was answered instead (no variant key can be built for it: it passes through). */
static bool lookup_l1(dc_request_t *r, uint64_t now, dc_cache_entry_t **out)
{
    dc_cache_entry_t *e = dc_cache_lookup(r->ctx.worker->cache, r->key, r->key_len, r->hash, now);
    if (e != NULL && e->is_vary) {
        bool ok = dc_http_vary_select(r, e);
        dc_cache_entry_release(e);
        if (!ok) {
            dc_counter_add(&r->ctx.worker->metrics.cache_bypass[r->ctx.route_metric], 1);
            dc_passthrough_start(r, "BYPASS", "dexcache; fwd=bypass; detail=vary-key");
            return false;
        }
        e = dc_cache_lookup(r->ctx.worker->cache, r->key, r->key_len, r->hash, now);
    }
    *out = e;
    return true;
}

/* A fresh hit; takes over the reference to e. Starts a refresh-ahead when one is due. */
static void serve_fresh(dc_request_t *r, dc_cache_entry_t *e, uint64_t now)
{
    dc_counter_add(&r->ctx.worker->metrics.cache_hits[r->ctx.route_metric], 1);
    if (r->from_l2) {
        dc_serve_entry(
            r, e, "HIT",
            fmt_status(r, "dexcache; hit; ttl=%lld; detail=l2", (long long)((e->fresh_until_ms - now + 999) / 1000)));
        dc_cache_entry_release(e);
        return;
    }
    /* "dexcache; hit; ttl=N", hand-formatted: the hit path runs no printf */
    static const char prefix[] = "dexcache; hit; ttl=";
    char *cs = h2o_mem_alloc_pool(&r->req->pool, sizeof(prefix) + 21);
    memcpy(cs, prefix, sizeof(prefix) - 1);
    size_t l = sizeof(prefix) - 1 + dc_fmt_u64(cs + sizeof(prefix) - 1, (e->fresh_until_ms - now + 999) / 1000);
    cs[l] = '\0';
    dc_serve_entry_adopt(r, e, "HIT", cs); /* our reference is now the request's */
    if (!r->view && dc_cache_entry_prefetch_due(e, r->ctx.rule->prefetch, now) && dc_cache_entry_refresh_due(e, now))
        dc__http_start_refresh(r, e); /* refresh-ahead: hot keys never go stale */
}

/* A stored answer that is no longer fresh (`fr`), served as it is when stale-while-revalidate,
 * the origin's backoff after a failed refresh, or the client's max-stale allows: returns true
 * (e released). Otherwise false, and e is untouched. */
static bool serve_stale(dc_request_t *r, dc_cache_entry_t *e, dc_freshness_t fr, bool max_stale_ok, uint64_t now)
{
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    long long ttl = -(long long)((now - e->fresh_until_ms) / 1000);
    if (fr == DC_STALE_SWR) {
        dc_counter_add(&m->cache_stale[r->ctx.route_metric], 1);
        bool refresh = dc_cache_entry_refresh_due(e, now);
        dc_serve_entry(r, e, "STALE",
                       fmt_status(r,
                                  refresh ? "dexcache; hit; ttl=%lld; detail=revalidating"
                                          : "dexcache; hit; ttl=%lld; detail=origin-backoff",
                                  ttl));
        if (refresh)
            dc__http_start_refresh(r, e);
    } else if (fr == DC_STALE_SIE && !r->client_revalidate && !dc_cache_entry_refresh_due(e, now) &&
               dc_cache_entry_stale_usable(e, now)) {
        /* the origin failed to refresh this entry a moment ago: answer with it until the
         * backoff ends instead of asking again for every request */
        dc_counter_add(&m->cache_stale[r->ctx.route_metric], 1);
        dc_serve_entry(r, e, "STALE", fmt_status(r, "dexcache; hit; ttl=%lld; detail=origin-backoff", ttl));
    } else if (max_stale_ok) { /* the client accepts this much staleness (RFC 9111 §5.2.1.2) */
        dc_counter_add(&m->cache_stale[r->ctx.route_metric], 1);
        dc_serve_entry(r, e, "STALE", fmt_status(r, "dexcache; hit; ttl=%lld; detail=max-stale", ttl));
    } else {
        return false;
    }
    dc_cache_entry_release(e);
    return true;
}

void dc__http_cache_lookup(dc_request_t *r, bool may_ask_l2)
{
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    uint64_t now = dc_now_wall_ms();
    if (r->vary_names != NULL)
        dc_http_vary_reset(r); /* looking again: from the primary key */
    dc_cache_entry_t *e;
    if (!lookup_l1(r, now, &e))
        return;
    if (e == NULL && may_ask_l2 && r->vary_names == NULL && !r->view && r->ctx.worker->fleet != NULL &&
        dc_fleet_up(r->ctx.worker->fleet) &&
        !dc_inflight_active(r->ctx.worker->inflight, r->key, r->key_len, r->hash)) {
        /* HTTP/2: after the read batch (a reset in it cancels the request first), looking again */
        if (!dc_h2guard_defer(r, resume_lookup, NULL, NULL))
            dc__http_ask_l2(r);
        return;
    }
    if (e != NULL && e->is_pass && r->client_only_if_cached) {
        dc_cache_entry_release(e);
        e = NULL; /* hit-for-pass means the origin: not for only-if-cached (below) */
    }
    if (e != NULL && e->is_pass) {
        dc_cache_entry_release(e);
        dc_counter_add(&m->cache_bypass[r->ctx.route_metric], 1);
        dc_passthrough_start(r, "MISS", "dexcache; fwd=miss; detail=hit-for-pass");
        return;
    }
    if (e != NULL) {
        bool max_stale_ok = judge_client_cc(r, e, now);
        dc_freshness_t fr = dc_cache_entry_freshness(e, r->client_revalidate, now);
        if (fr == DC_FRESH) {
            serve_fresh(r, e, now);
            return;
        }
        if (serve_stale(r, e, fr, max_stale_ok, now))
            return;
        /* kept to fall back on if the origin fails (inside stale-if-error) and for its validators
         * (revalidation with If-None-Match / If-Modified-Since) */
        r->stale = e;
    }
    if (r->client_only_if_cached) {
        /* RFC 9111 §5.2.1.7: nothing stored may answer, and the origin must not be asked */
        dc_counter_add(&m->cache_misses[r->ctx.route_metric], 1);
        dc_request_respond_error(r, 504, "only-if-cached: no stored answer for this request");
        return;
    }
    /* miss: HTTP/2 requests go on after the read batch, unless a reset in it cancelled them */
    if (!dc_h2guard_defer(r, resume_miss, NULL, NULL))
        miss(r);
}
