/*
 * The request path's state machine (design: "The request path"):
 *   receive -> check -> route -> [cacheable?] -> lookup
 *     fresh hit                     -> serve the entry
 *     stale inside its SWR window   -> serve it now, one background refresh for the key
 *     miss / expired / stale (SIE)  -> join the in-flight fetch for the key, or lead it (fill.c)
 *   uncacheable (method, no rule, Authorization, hit-for-pass) -> pass-through (passthrough.c)
 * Each step is decided in one place below; the access log line is written when the request is
 * disposed.
 */
#include "http/handler.h"
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/l2fleet.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/fmt.h"
#include "core/time.h"
#include "http/reqcheck.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/batch.h"

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

static void access_log(dc_request_t *r, h2o_req_t *req)
{
    if (!dc_log_access_enabled())
        return;
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);
    double dur_ms = (double)(dc_now_mono_us() - r->start_us) / 1000.0;
    int pathlen = (int)(req->input.path.len > 2048 ? 2048 : req->input.path.len);
    char line[3072];
    int n = snprintf(line, sizeof(line),
                     "time=%s client=%s method=%.*s path=\"%.*s\" status=%d bytes=%zu dur_ms=%.3f up_ms=%.3f "
                     "attempts=%u cache=%s rid=%s",
                     ts, dc_request_client_ip(r), (int)req->input.method.len, req->input.method.base, pathlen,
                     req->input.path.base, req->res.status, req->bytes_sent, dur_ms,
                     (double)r->upstream_us / 1000.0, r->attempts, r->x_cache ? r->x_cache : "-",
                     r->request_id);
    if (n > 0)
        dc_log_access_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}


static void wait_timer_stop(dc_request_t *r)
{
    if (r->wait_timer == NULL)
        return;
    r->wait_timer->r = NULL;
    uv_timer_stop(&r->wait_timer->timer);
    uv_close((uv_handle_t *)&r->wait_timer->timer, (uv_close_cb)free);
    r->wait_timer = NULL;
}

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
    dc_request_detach_sources(r);
    wait_timer_stop(r);
    if (r->waiting)
        dc_inflight_cancel(r->worker->inflight, &r->waiter); /* on_release drops the wait's reference */
    dc_worker_metrics_t *m = &r->worker->metrics;
    dc_counter_add(&m->requests[r->route_metric][dc_metrics_status_class(req->res.status)], 1);
    dc_counter_add(&m->bytes_out, req->bytes_sent);
    dc_counter_sub(&m->requests_active, 1);
    access_log(r, req);
    r->req = NULL;
    dc_request_unref(r);
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

/*
 * libh2o 2.2.5 resolves framing ambiguities before a handler sees the request (Transfer-Encoding
 * wins over Content-Length, the first of two Content-Lengths, the last of two Hosts) and drops
 * those headers from req->headers. To refuse them we re-read the raw HTTP/1 head, which is still
 * at the start of the connection's input buffer while the request is being handled. The prefix of
 * h2o's private struct st_h2o_http1_conn_t is mirrored here; it is pinned to the packaged version.
 */
#if !defined(H2O_VERSION_MAJOR) || H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "the raw HTTP/1 head check is written against libh2o 2.2.x; re-check struct st_h2o_http1_conn_t"
#endif
struct dc_h2o_http1_conn_prefix {
    h2o_conn_t super;
    h2o_socket_t *sock;
};

static int check_raw_h1_head(h2o_req_t *req, const dc_reqcheck_limits_t *limits, const char **why)
{
    h2o_socket_t *sock = ((struct dc_h2o_http1_conn_prefix *)req->conn)->sock;
    if (sock == NULL || sock->input == NULL || sock->input->size < req->input.method.len)
        return 0;
    const char *head = sock->input->bytes;
    /* sanity: the buffer must start with this request's method */
    if (memcmp(head, req->input.method.base, req->input.method.len) != 0)
        return 0;
    return dc_reqcheck_h1_head(head, sock->input->size, limits, why);
}

static int run_checks(dc_request_t *r, h2o_req_t *req, const char **why)
{
    const dc_config_t *cfg = r->snap->cfg;
    dc_reqcheck_limits_t limits = {cfg->server.max_uri, cfg->server.max_header_bytes, cfg->server.max_headers};
    int status;
    if ((status = dc_reqcheck_method(req->input.method.base, req->input.method.len, why)) != 0)
        return status;
    if ((status = dc_reqcheck_uri(req->input.path.len, &limits, why)) != 0)
        return status;
    if (req->version < 0x200) {
        if ((status = check_raw_h1_head(req, &limits, why)) != 0)
            return status;
    } else {
        size_t bytes = 0;
        for (size_t i = 0; i < req->headers.size; i++)
            bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
        if ((status = dc_reqcheck_header_totals(req->headers.size, bytes, &limits, why)) != 0)
            return status;
    }
    /* what is routed, keyed and forwarded is the normalised target (dot segments, "//") */
    char *target = h2o_mem_alloc_pool(&req->pool, req->path.len + 1);
    size_t tlen;
    if ((status = dc_reqcheck_path(req->path.base, req->path.len, target, &tlen, why)) != 0)
        return status;
    if (tlen != req->path.len || memcmp(target, req->path.base, tlen) != 0) {
        const char *q = memchr(target, '?', tlen);
        req->path = h2o_iovec_init(target, tlen);
        req->query_at = q != NULL ? (size_t)(q - target) : SIZE_MAX;
    }
    return 0;
}


/* ---- cache path ---- */

static bool client_asks_no_cache(h2o_req_t *req)
{
    ssize_t i = -1;
    while ((i = h2o_find_header(&req->headers, H2O_TOKEN_CACHE_CONTROL, i)) >= 0) {
        dc_cc_t cc;
        dc_cc_init(&cc);
        dc_cc_parse(req->headers.entries[i].value.base, req->headers.entries[i].value.len, &cc);
        if (cc.no_cache || (cc.max_age == 0))
            return true;
    }
    i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("pragma"), -1);
    return i >= 0 && req->headers.entries[i].value.len >= 8 &&
           strncasecmp(req->headers.entries[i].value.base, "no-cache", 8) == 0;
}

static bool build_key(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->route;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    const char *pq = req->path.base + plen;
    size_t pqlen = req->path.len - plen;
    dc_cache_key_opts_t opts = {r->rule->key_sets, r->rule->nkey_sets, r->rule->ignore_params,
                                r->rule->nignore_params};
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

/*
 * Cross-instance collapsing. This instance's leader for a key first takes the fleet lock; if
 * another instance holds it, it follows: it looks (one round trip: the L2 value and whether the lock
 * still exists) when the other leader announces the end of its fill, and also polls, in case the
 * notice is lost, until the entry appears in L2 (then it and its local waiters are served from it),
 * the lock vanishes without an entry (the other leader died, or its answer was not shareable: take
 * the lock and fetch), or its deadline passes (fetch anyway).
 */
static dc_cache_entry_t *adopt_l2(dc_worker_t *w, const char *key, size_t key_len, unsigned route_metric,
                                  const char *value, size_t len);
static dc_cache_entry_t *adopt_l2_value(dc_request_t *r, const char *value, size_t len);

/* Heap copies of a request's upstream header lines, for work that outlives the request. */
static char **copy_headers(const char *const *headers)
{
    size_t n = 0;
    while (headers[n] != NULL)
        n++;
    char **copy = dc_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        copy[i] = dc_strdup(headers[i]);
    return copy;
}

static void free_headers(char **headers)
{
    for (char **h = headers; *h != NULL; h++)
        free(*h);
    free(headers);
}


typedef struct fleet_wait {
    uv_timer_t timer;        /* first: the timer callback finds the struct from the handle */
    dc_fleet_watch_t watch;  /* notices from the other leader */
    bool busy;               /* a lock or peek round trip is in flight */
    bool look_again;         /* a notice came while busy */
    dc_request_t *r; /* a reference; r->req may become NULL if the client leaves */
    dc_flight_t *flight;
    char *url;
    char **headers;
    uint64_t deadline_ms;
    uint64_t interval_ms;
} fleet_wait_t;

static void fleet_wait_done(fleet_wait_t *fw)
{
    dc_fleet_unwatch(fw->r->worker->fleet, &fw->watch);
    free_headers(fw->headers);
    free(fw->url);
    dc_request_unref(fw->r);
    uv_close((uv_handle_t *)&fw->timer, (uv_close_cb)free);
}

static void fleet_wait_fetch(fleet_wait_t *fw, bool lock)
{
    dc_request_t *r = fw->r;
    dc_fill_start(r->req != NULL ? r : NULL, r->worker, r->snap, r->route, r->rule, r->key, r->key_len, r->hash,
                  fw->flight, r->stale, fw->url, (const char *const *)fw->headers, lock);
    fleet_wait_done(fw);
}

static void fleet_poll(uv_timer_t *t);

/* Wait for the next look: at once if a notice came meanwhile, else at the poll interval. */
static void fleet_wait_next(fleet_wait_t *fw)
{
    fw->busy = false;
    uint64_t delay = fw->look_again ? 0 : fw->interval_ms;
    fw->look_again = false;
    uv_timer_start(&fw->timer, fleet_poll, delay, 0);
}

static void on_fleet_notice(dc_fleet_watch_t *w)
{
    fleet_wait_t *fw = (fleet_wait_t *)((char *)w - offsetof(fleet_wait_t, watch));
    dc_fleet_watch(fw->r->worker->fleet, &fw->watch); /* keep listening until done */
    if (fw->busy) {
        fw->look_again = true;
        return;
    }
    uv_timer_stop(&fw->timer);
    fleet_poll(&fw->timer);
}

/* Another instance's answer came from L2: it ends the wait, for us and our local waiters. */
static void fleet_wait_serve(fleet_wait_t *fw, dc_cache_entry_t *e)
{
    dc_request_t *r = fw->r;
    dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e};
    dc_inflight_finish(r->worker->inflight, fw->flight, &res); /* local waiters */
    if (r->req != NULL) {
        dc_counter_add(&r->worker->metrics.cache_collapsed[r->route_metric], 1);
        dc_counter_add(&r->worker->metrics.cache_hits[r->route_metric], 1);
        dc_serve_entry(r, e, "HIT", "dexcache; hit; collapsed; detail=fleet");
    }
    dc_cache_entry_release(e);
    fleet_wait_done(fw);
}

/* An L2 value seen while leading or following a fetch ends the wait only when it is fresh for this
 * request: a copy past its ttl is what we are fetching to replace (it may still answer if the
 * fetch fails: it becomes the stale fallback when we had none, or a newer one). NULL = keep going. */
static dc_cache_entry_t *fleet_wait_adopt(fleet_wait_t *fw, const char *value, size_t len)
{
    dc_request_t *r = fw->r;
    dc_cache_entry_t *e = adopt_l2_value(r, value, len);
    if (e == NULL)
        return NULL;
    uint64_t now = dc_now_wall_ms();
    if (dc_cache_entry_freshness(e, r->client_revalidate, now) == DC_FRESH)
        return e;
    if (dc_cache_entry_stale_usable(e, now) && (r->stale == NULL || r->stale->stored_at_ms < e->stored_at_ms)) {
        dc_cache_entry_release(r->stale);
        r->stale = e;
        return NULL;
    }
    dc_cache_entry_release(e);
    return NULL;
}

static void on_fleet_lock(void *data, int err, bool got, const char *l2, size_t l2_len)
{
    fleet_wait_t *fw = data;
    dc_request_t *r = fw->r;
    dc_cache_entry_t *e = err == 0 && l2 != NULL ? fleet_wait_adopt(fw, l2, l2_len) : NULL;
    if (e != NULL) {
        /* stored by another instance since our L2 miss: no fetch (the lock, if we got it, goes back) */
        if (got)
            dc_fleet_unlock(r->worker->fleet, r->key, r->key_len);
        fleet_wait_serve(fw, e);
        return;
    }
    if (err != 0 || got) {
        fleet_wait_fetch(fw, got);
        return;
    }
    fleet_wait_next(fw);
}

static void on_fleet_peek(void *data, int err, const char *value, size_t len, bool locked)
{
    fleet_wait_t *fw = data;
    dc_request_t *r = fw->r;
    if (err != 0) {
        fleet_wait_fetch(fw, false);
        return;
    }
    dc_cache_entry_t *e = value != NULL ? fleet_wait_adopt(fw, value, len) : NULL;
    if (e != NULL) {
        fleet_wait_serve(fw, e);
        return;
    }
    if (!locked) {
        /* the other leader is gone without a shareable answer: take over */
        if (dc_fleet_lock(r->worker->fleet, r->key, r->key_len, DC_FLEET_LOCK_LEASE_MS, on_fleet_lock, fw) != 0)
            fleet_wait_fetch(fw, false);
        return;
    }
    if (dc_now_mono_ms() >= fw->deadline_ms) {
        fleet_wait_fetch(fw, false);
        return;
    }
    fw->interval_ms = fw->interval_ms * 3 / 2 > 250 ? 250 : fw->interval_ms * 3 / 2;
    fleet_wait_next(fw);
}

static void fleet_poll(uv_timer_t *t)
{
    fleet_wait_t *fw = (fleet_wait_t *)t;
    dc_request_t *r = fw->r;
    fw->busy = true;
    if (r->worker->fleet == NULL || !dc_fleet_up(r->worker->fleet) ||
        dc_fleet_peek(r->worker->fleet, r->key, r->key_len, on_fleet_peek, fw) != 0)
        fleet_wait_fetch(fw, false);
}

static void lead_fill(dc_request_t *r, dc_flight_t *flight)
{
    dc_counter_add(&r->worker->metrics.cache_misses[r->route_metric], 1);
    const char *url = dc_request_upstream_url(r);
    const char **headers = dc_request_upstream_headers(r, true);
    dc_fleet_t *fleet = r->worker->fleet;
    if (fleet == NULL || !dc_fleet_up(fleet)) {
        dc_fill_start(r, r->worker, r->snap, r->route, r->rule, r->key, r->key_len, r->hash, flight, r->stale, url,
                      headers, false);
        return;
    }
    const dc_config_upstream_t *up = r->route->upstream;
    dc_request_own_key(r); /* the wait may outlive the client (lifetime rule, request.h) */
    fleet_wait_t *fw = dc_calloc(1, sizeof(*fw));
    uv_timer_init(&r->worker->loop, &fw->timer);
    dc_request_ref(r);
    fw->r = r;
    fw->flight = flight;
    fw->url = dc_strdup(url);
    fw->headers = copy_headers(headers);
    uint64_t wait_ms = up->connect_timeout_ms + up->timeout_ms + 2000;
    fw->deadline_ms = dc_now_mono_ms() + wait_ms;
    fw->interval_ms = 50;
    fw->watch.key = r->key;
    fw->watch.len = r->key_len;
    fw->watch.cb = on_fleet_notice;
    dc_fleet_watch(fleet, &fw->watch); /* before the lock: a notice may come before its answer */
    fw->busy = true;
    if (dc_fleet_lock(fleet, r->key, r->key_len, DC_FLEET_LOCK_LEASE_MS, on_fleet_lock, fw) != 0)
        fleet_wait_fetch(fw, false);
}

/*
 * Background refreshes (stale-while-revalidate, refresh-ahead): one per key on this instance (the
 * in-flight table), and in a fleet one per key across instances: the refresh first takes the fleet
 * lock, in the round trip that also reads L2. A fresh copy there (another instance refreshed it
 * already) is adopted instead of fetching; a lock held elsewhere means another instance is
 * refreshing now, and this one lets it (unless requests joined this refresh meanwhile: they are
 * served by a fetch of our own rather than stranded).
 */
typedef struct refresh_lock {
    dc_worker_t *worker;
    dc_snapshot_t *snap; /* owned reference */
    const dc_config_route_t *route;
    const dc_config_cache_rule_t *rule;
    char *key; /* heap */
    size_t key_len;
    uint64_t hash;
    unsigned route_metric;
    dc_flight_t *flight;
    dc_cache_entry_t *stale; /* owned reference */
    char *url;
    char **headers;
} refresh_lock_t;

static void on_refresh_lock(void *data, int err, bool got, const char *l2, size_t l2_len)
{
    refresh_lock_t *rl = data;
    dc_worker_t *w = rl->worker;
    dc_cache_entry_t *e = err == 0 && l2 != NULL ? adopt_l2(w, rl->key, rl->key_len, rl->route_metric, l2, l2_len) : NULL;
    if (e != NULL && dc_cache_entry_freshness(e, false, dc_now_wall_ms()) == DC_FRESH) {
        if (got)
            dc_fleet_unlock(w->fleet, rl->key, rl->key_len);
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e};
        dc_inflight_finish(w->inflight, rl->flight, &res);
    } else if (err != 0 || got || dc_inflight_waiters(w->inflight, rl->flight) > 0) {
        dc_counter_add(&w->metrics.cache_refreshes[rl->route_metric], 1);
        dc_fill_start(NULL, w, rl->snap, rl->route, rl->rule, rl->key, rl->key_len, rl->hash, rl->flight, rl->stale,
                      rl->url, (const char *const *)rl->headers, got);
    } else {
        dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS}; /* nobody waits: another instance refreshes */
        dc_inflight_finish(w->inflight, rl->flight, &res);
    }
    dc_cache_entry_release(e);
    dc_cache_entry_release(rl->stale);
    dc_snapshot_release(rl->snap);
    free_headers(rl->headers);
    free(rl->url);
    free(rl->key);
    free(rl);
}

static void start_background_refresh(dc_request_t *r, dc_cache_entry_t *stale)
{
    dc_flight_t *flight = NULL;
    if (dc_inflight_join(r->worker->inflight, r->key, r->key_len, r->hash, NULL, &flight) != DC_INFLIGHT_LEADER)
        return;
    const char *url = dc_request_upstream_url(r);
    const char **headers = dc_request_upstream_headers(r, true);
    dc_fleet_t *fleet = r->worker->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        refresh_lock_t *rl = dc_calloc(1, sizeof(*rl));
        *rl = (refresh_lock_t){r->worker, dc_snapshot_ref(r->snap), r->route, r->rule,
                               dc_strndup(r->key, r->key_len), r->key_len, r->hash, r->route_metric, flight,
                               dc_cache_entry_ref(stale), dc_strdup(url), copy_headers(headers)};
        if (dc_fleet_lock(fleet, rl->key, rl->key_len, DC_FLEET_LOCK_LEASE_MS, on_refresh_lock, rl) == 0)
            return;
        on_refresh_lock(rl, DC_EAGAIN, false, NULL, 0); /* Redis is not answering: refresh here */
        return;
    }
    dc_counter_add(&r->worker->metrics.cache_refreshes[r->route_metric], 1);
    dc_fill_start(NULL, r->worker, r->snap, r->route, r->rule, r->key, r->key_len, r->hash, flight, stale, url,
                  headers, false);
}

static bool client_accepts_gzip(h2o_req_t *req)
{
    ssize_t ae = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    return ae >= 0 && dc_encoding_negotiate(req->headers.entries[ae].value.base, req->headers.entries[ae].value.len,
                                            1u << DC_ENC_GZIP) == DC_ENC_GZIP;
}

static void on_wait_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    dc_request_t *r = w->data;
    wait_timer_stop(r);
    if (r->req == NULL) {
        dc_cache_entry_release(res->entry);
        dc_growing_release(res->growing);
        dc_growing_release(res->growing_gz);
        return;
    }
    dc_request_ref(r);
    dc_worker_metrics_t *m = &r->worker->metrics;
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        dc_counter_add(&m->cache_collapsed[r->route_metric], 1);
        if (res->stale) {
            dc_counter_add(&m->cache_stale[r->route_metric], 1);
            dc_serve_entry(r, res->entry, "STALE",
                           res->fwd_status ? fmt_status(r, "dexcache; fwd=stale; fwd-status=%lld; collapsed",
                                                        res->fwd_status)
                                           : "dexcache; fwd=stale; collapsed");
        } else if (res->shared_only) {
            dc_serve_entry(r, res->entry, "MISS",
                           fmt_status(r, "dexcache; fwd=miss; fwd-status=%lld; collapsed", res->fwd_status));
        } else {
            dc_counter_add(&m->cache_hits[r->route_metric], 1);
            dc_serve_entry(r, res->entry, "HIT", "dexcache; hit; collapsed");
        }
        dc_cache_entry_release(res->entry);
        break;
    case DC_FLIGHT_STREAM:
        /* a large answer another request is receiving: send its bytes as they arrive */
        dc_counter_add(&m->cache_collapsed[r->route_metric], 1);
        dc_counter_add(&m->cache_hits[r->route_metric], 1);
        if (res->growing_gz != NULL && client_accepts_gzip(r->req)) {
            dc_growing_release(res->growing);
            dc_serve_stream(r, res->entry, res->growing_gz, "gzip", "HIT", "dexcache; hit; collapsed; detail=streaming");
        } else {
            dc_growing_release(res->growing_gz);
            dc_serve_stream(r, res->entry, res->growing, NULL, "HIT", "dexcache; hit; collapsed; detail=streaming");
        }
        dc_cache_entry_release(res->entry);
        break;
    case DC_FLIGHT_PASS:
        /* the leader's answer was private: fetch our own */
        dc_counter_add(&m->cache_bypass[r->route_metric], 1);
        dc_passthrough_start(r, "MISS", "dexcache; fwd=miss; detail=pass");
        break;
    case DC_FLIGHT_ERROR:
        if (dc_cache_entry_stale_usable(r->stale, dc_now_wall_ms())) {
            dc_counter_add(&m->cache_stale[r->route_metric], 1);
            dc_serve_entry(r, r->stale, "STALE", "dexcache; fwd=stale; collapsed");
        } else {
            if (res->retry_after_s > 0) {
                char *ra = h2o_mem_alloc_pool(&r->req->pool, 24);
                size_t n = dc_fmt_u64(ra, res->retry_after_s);
                h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, n);
            }
            dc_request_respond_error(r, res->status, res->message);
        }
        break;
    }
    dc_request_unref(r);
}

static void on_wait_release(dc_waiter_t *w)
{
    dc_request_t *r = w->data;
    r->waiting = false;
    dc_request_unref(r);
}

static void on_wait_timeout(uv_timer_t *t)
{
    dc_wait_timer_t *wt = (dc_wait_timer_t *)t;
    dc_request_t *r = wt->r;
    if (r == NULL)
        return;
    dc_request_ref(r);
    wait_timer_stop(r);
    if (r->waiting && dc_inflight_cancel(r->worker->inflight, &r->waiter) && r->req != NULL)
        dc_request_respond_error(r, 504, "timed out waiting for the in-flight fetch of this key");
    dc_request_unref(r);
}

static void wait_for_flight(dc_request_t *r)
{
    const dc_config_upstream_t *up = r->route->upstream;
    dc_wait_timer_t *wt = dc_calloc(1, sizeof(*wt));
    wt->r = r;
    uv_timer_init(&r->worker->loop, &wt->timer);
    /* the leader gives up after its own deadline; this is only a safety net */
    uv_timer_start(&wt->timer, on_wait_timeout, up->timeout_ms + up->connect_timeout_ms + 1000, 0);
    r->wait_timer = wt;
}

/* Refresh-ahead: once `prefetch` of an entry's lifetime has passed (plus a per-key jitter of up to
 * half of what is left, taken from the key hash so refreshes of many keys do not line up), a read
 * starts a background refresh. Pure. */
static bool prefetch_due(const dc_config_cache_rule_t *rule, const dc_cache_entry_t *e, uint64_t now)
{
    if (rule->prefetch <= 0.0 || e->fresh_until_ms <= e->stored_at_ms || e->negative)
        return false;
    double life = (double)(e->fresh_until_ms - e->stored_at_ms);
    double jitter = (double)(e->hash % 1024) / 1024.0 * (1.0 - rule->prefetch) * 0.5;
    return (double)(now - e->stored_at_ms) >= life * (rule->prefetch + jitter);
}


static void cache_lookup(dc_request_t *r, bool may_ask_l2);

/* A value read from L2 for `key`: decoded, given its h2o header tokens and put in L1. Returns the
 * entry (a reference for the caller) or NULL when it is unusable (corrupt, unknown version, past
 * its keep time, older than a purge), which callers treat as a miss. Freshness is the caller's to
 * judge (dc_cache_entry_freshness): adopting never makes an entry fresher than it was stored. */
static dc_cache_entry_t *adopt_l2(dc_worker_t *w, const char *key, size_t key_len, unsigned route_metric,
                                  const char *value, size_t len)
{
    int derr;
    dc_cache_entry_t *e = dc_l2_decode(key, key_len, value, len, &derr);
    uint64_t now = dc_now_wall_ms();
    if (e == NULL) {
        dc_log_warn("l2: unusable entry for %.*s (%s): treated as a miss", (int)key_len, key, dc_strerror(derr));
        return NULL;
    }
    if (e->keep_until_ms <= now) {
        dc_cache_entry_release(e);
        return NULL;
    }
    if (dc_cache_purged(w->cache, e)) { /* stored before a purge that L2 could not see */
        dc_cache_entry_release(e);
        return NULL;
    }
    for (size_t i = 0; i < e->nheaders; i++)
        e->headers[i].token = h2o_lookup_token(e->headers[i].name, e->headers[i].name_len);
    e->route_metric = route_metric;
    dc_cache_insert(w->cache, e, now);
    return e;
}

static dc_cache_entry_t *adopt_l2_value(dc_request_t *r, const char *value, size_t len)
{
    return adopt_l2(r->worker, r->key, r->key_len, r->route_metric, value, len);
}

/* Wait in the flight for `key` with r->waiter (the wait holds a reference to r until on_release)
 * and return NULL, or, when nobody is on it yet, return the flight this request now leads. */
static dc_flight_t *join_or_lead(dc_request_t *r, const char *key, size_t len, uint64_t hash,
                                 void (*on_result)(dc_waiter_t *, dc_flight_result_t *),
                                 void (*on_release)(dc_waiter_t *))
{
    r->waiter.on_result = on_result;
    r->waiter.on_release = on_release;
    r->waiter.target = r->worker;
    r->waiter.data = r;
    dc_request_ref(r); /* held by the wait until on_release */
    r->waiting = true;
    dc_flight_t *flight = NULL;
    if (dc_inflight_join(r->worker->inflight, key, len, hash, &r->waiter, &flight) == DC_INFLIGHT_JOINED)
        return NULL;
    r->waiting = false;
    dc_request_unref(r);
    return flight;
}

/* ---- one L2 read per key at a time ----
 * Requests that miss L1 while this process is already reading the same key from L2 wait for that
 * read (a flight keyed "l2 <key>" in the in-flight table, across workers) and then look in L1
 * again, where the reader put what it found: N concurrent cold requests cost one GET, not N. A
 * request that misses while the key is being fetched skips L2 and joins the fetch. */

static void l2_read_finish(dc_request_t *r)
{
    dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS}; /* waiters only look again */
    dc_inflight_finish(r->worker->inflight, r->l2_flight, &res);
    r->l2_flight = NULL;
}

/* An L2 answer: a usable entry joins L1 and the lookup runs again (for the reader and for the
 * requests that waited for it); anything else (absent, corrupt, unknown version, expired, Redis
 * error) is a miss. Adopted even when the reader's client has gone: others wait for it. */
static void on_l2_reply(void *data, int err, const char *value, size_t len)
{
    dc_request_t *r = data;
    if (err == 0 && value != NULL) {
        dc_cache_entry_t *e = adopt_l2_value(r, value, len);
        r->from_l2 = e != NULL;
        dc_cache_entry_release(e);
    }
    l2_read_finish(r);
    if (r->req != NULL)
        cache_lookup(r, false);
    dc_request_unref(r);
}

static void on_l2_wait_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    dc_request_t *r = w->data;
    dc_flight_result_release(res);
    r->l2_read_done = true;
}

/* The next lookup may join another flight with the same waiter struct: it runs here, once the
 * in-flight table is done with the waiter. */
static void on_l2_wait_release(dc_waiter_t *w)
{
    dc_request_t *r = w->data;
    r->waiting = false;
    if (r->l2_read_done && r->req != NULL)
        cache_lookup(r, false);
    dc_request_unref(r);
}

static void ask_l2(dc_request_t *r)
{
    dc_worker_t *w = r->worker;
    size_t klen = r->key_len + 3;
    char *k = h2o_mem_alloc_pool(&r->req->pool, klen);
    memcpy(k, "l2 ", 3);
    memcpy(k + 3, r->key, r->key_len);
    r->l2_read_done = false;
    dc_flight_t *flight = join_or_lead(r, k, klen, dc_cache_hash(k, klen), on_l2_wait_result, on_l2_wait_release);
    if (flight == NULL)
        return;
    r->l2_flight = flight;
    dc_request_own_key(r); /* the reply may come after the client has gone (lifetime rule, request.h) */
    dc_request_ref(r); /* held until the L2 reply */
    if (dc_fleet_l2_get(w->fleet, r->key, r->key_len, on_l2_reply, r) == 0)
        return;
    dc_request_unref(r);
    l2_read_finish(r);
    cache_lookup(r, false);
}

/* A miss: one fetch per key across all workers. */
static void miss(dc_request_t *r)
{
    dc_flight_t *flight = join_or_lead(r, r->key, r->key_len, r->hash, on_wait_result, on_wait_release);
    if (flight == NULL) {
        wait_for_flight(r);
        return;
    }
    lead_fill(r, flight);
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
    cache_lookup(r, true);
}

static void cache_path(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    dc_worker_metrics_t *m = &r->worker->metrics;
    if (!build_key(r)) {
        dc_counter_add(&m->cache_bypass[r->route_metric], 1);
        dc_passthrough_start(r, "BYPASS", "dexcache; fwd=bypass; detail=key");
        return;
    }
    r->client_revalidate = r->rule->client_no_cache == DC_CLIENT_NO_CACHE_REVALIDATE && client_asks_no_cache(req);
    cache_lookup(r, true);
}

static void cache_lookup(dc_request_t *r, bool may_ask_l2)
{
    h2o_req_t *req = r->req;
    dc_worker_metrics_t *m = &r->worker->metrics;
    uint64_t now = dc_now_wall_ms();
    dc_cache_entry_t *e = dc_cache_lookup(r->worker->cache, r->key, r->key_len, r->hash, now);
    if (e == NULL && may_ask_l2 && r->worker->fleet != NULL && dc_fleet_up(r->worker->fleet) &&
        !dc_inflight_active(r->worker->inflight, r->key, r->key_len, r->hash)) {
        /* HTTP/2: after the read batch (a reset in it cancels the request first), looking again */
        if (!dc_h2guard_defer(r, resume_lookup, NULL, NULL))
            ask_l2(r);
        return;
    }
    if (e != NULL && e->is_pass) {
        dc_cache_entry_release(e);
        dc_counter_add(&m->cache_bypass[r->route_metric], 1);
        dc_passthrough_start(r, "MISS", "dexcache; fwd=miss; detail=hit-for-pass");
        return;
    }
    if (e != NULL) {
        dc_freshness_t fr = dc_cache_entry_freshness(e, r->client_revalidate, now);
        if (fr == DC_FRESH) {
            dc_counter_add(&m->cache_hits[r->route_metric], 1);
            if (r->from_l2) {
                dc_serve_entry(r, e, "HIT",
                               fmt_status(r, "dexcache; hit; ttl=%lld; detail=l2", (long long)((e->fresh_until_ms - now + 999) / 1000)));
                dc_cache_entry_release(e);
                return;
            }
            /* "dexcache; hit; ttl=N", hand-formatted: the hit path runs no printf */
            static const char prefix[] = "dexcache; hit; ttl=";
            char *cs = h2o_mem_alloc_pool(&req->pool, sizeof(prefix) + 21);
            memcpy(cs, prefix, sizeof(prefix) - 1);
            size_t l = sizeof(prefix) - 1 + dc_fmt_u64(cs + sizeof(prefix) - 1, (e->fresh_until_ms - now + 999) / 1000);
            cs[l] = '\0';
            dc_serve_entry_adopt(r, e, "HIT", cs); /* our reference is now the request's */
            if (prefetch_due(r->rule, e, now) && dc_cache_entry_refresh_due(e, now))
                start_background_refresh(r, e); /* refresh-ahead: hot keys never go stale */
            return;
        }
        if (fr == DC_STALE_SWR) {
            dc_counter_add(&m->cache_stale[r->route_metric], 1);
            long long ttl = -(long long)((now - e->fresh_until_ms) / 1000);
            bool refresh = dc_cache_entry_refresh_due(e, now);
            dc_serve_entry(r, e, "STALE",
                           fmt_status(r, refresh ? "dexcache; hit; ttl=%lld; detail=revalidating"
                                                 : "dexcache; hit; ttl=%lld; detail=origin-backoff",
                                      ttl));
            if (refresh)
                start_background_refresh(r, e);
            dc_cache_entry_release(e);
            return;
        }
        if (fr == DC_STALE_SIE && !r->client_revalidate && !dc_cache_entry_refresh_due(e, now) &&
            dc_cache_entry_stale_usable(e, now)) {
            /* the origin failed to refresh this entry a moment ago: answer with it until the
             * backoff ends instead of asking again for every request */
            dc_counter_add(&m->cache_stale[r->route_metric], 1);
            long long ttl = -(long long)((now - e->fresh_until_ms) / 1000);
            dc_serve_entry(r, e, "STALE", fmt_status(r, "dexcache; hit; ttl=%lld; detail=origin-backoff", ttl));
            dc_cache_entry_release(e);
            return;
        }
        /* kept to fall back on if the origin fails (inside stale-if-error) and for its validators
         * (revalidation with If-None-Match / If-Modified-Since) */
        r->stale = e;
    }
    /* miss: HTTP/2 requests go on after the read batch, unless a reset in it cancelled them */
    if (!dc_h2guard_defer(r, resume_miss, NULL, NULL))
        miss(r);
}

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
    dc_counter_add(&r->worker->metrics.limited[r->route_metric], 1);
    dc_request_respond_error(r, 429, "rate limit exceeded");
    return false;
}

/* The local decision: the whole limit without Redis, this instance's share of it when Redis is
 * configured but not answering. */
static void limit_locally(dc_request_t *r, const char *key, size_t len, const dc_gcra_params_t *p,
                          dc_gcra_result_t *res)
{
    dc_gcra_params_t share;
    if (r->worker->fleet != NULL) {
        dc_fleet_local_share(p, &share);
        dc_fleet_count_fallback();
        p = &share;
    }
    dc_limiter_check(r->worker->limiter, key, len, p, dc_now_mono_us(), res);
}

static void continue_request(dc_request_t *r);

typedef struct limit_wait {
    dc_request_t *r;
    char *key; /* request pool */
    size_t len;
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
    const dc_gcra_params_t *p = &dc_snapshot_route_rt(r->snap, r->route)->limit;
    if (err != 0) {
        limit_locally(r, lw->key, lw->len, p, &local);
        res = &local;
    } else if (!res->allowed) {
        /* refuse this client locally until its retry time: no Redis round trip per refusal */
        dc_limiter_deny(r->worker->limiter, lw->key, lw->len, dc_now_mono_us() + res->retry_after_us);
    } else if (granted > 1) {
        /* a lease: the next granted-1 requests of this client are decided here, for up to a second */
        dc_limiter_lease_put(r->worker->limiter, lw->key, lw->len, granted - 1, dc_now_mono_us() + 1000000,
                             res->remaining);
    }
    if (finish_limit(r, p, res))
        continue_request(r);
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
static bool start_limit(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->route;
    const dc_gcra_params_t *p = &dc_snapshot_route_rt(r->snap, route)->limit;
    char client[96];
    size_t clen = 0;
    if (route->limit.by == DC_LIMIT_BY_HEADER) {
        ssize_t i = h2o_find_header_by_str(&req->headers, route->limit.by_header, strlen(route->limit.by_header), -1);
        if (i >= 0 && req->headers.entries[i].value.len > 0) {
            h2o_iovec_t v = req->headers.entries[i].value;
            clen = (size_t)snprintf(client, sizeof(client), "h:%.*s", (int)(v.len > 80 ? 80 : v.len), v.base);
        }
    }
    if (clen == 0) {
        ssize_t x = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-forwarded-for"), -1);
        ssize_t c = h2o_find_header_by_str(&req->headers, H2O_STRLIT("cf-connecting-ip"), -1);
        clen = dc_client_id(dc_request_client_ip(r), x >= 0 ? req->headers.entries[x].value.base : NULL,
                            x >= 0 ? req->headers.entries[x].value.len : 0,
                            c >= 0 ? req->headers.entries[c].value.base : NULL,
                            c >= 0 ? req->headers.entries[c].value.len : 0, r->snap->trusted, r->snap->ntrusted,
                            client, sizeof(client));
    }
    size_t plen = strlen(route->prefix);
    size_t klen = plen + 1 + clen;
    char *key = h2o_mem_alloc_pool(&req->pool, klen);
    memcpy(key, route->prefix, plen);
    key[plen] = '|';
    memcpy(key + plen + 1, client, clen);

    dc_gcra_result_t res;
    dc_fleet_t *fleet = r->worker->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        uint64_t retry, hint;
        uint64_t now_us = dc_now_mono_us();
        if (dc_limiter_denied(r->worker->limiter, key, klen, now_us, &retry)) {
            res = (dc_gcra_result_t){.allowed = false, .retry_after_us = retry, .reset_us = retry};
            return finish_limit(r, p, &res);
        }
        if (dc_limiter_lease_take(r->worker->limiter, key, klen, now_us, &hint)) {
            uint64_t used = p->burst > hint ? p->burst - hint : 0;
            res = (dc_gcra_result_t){.allowed = true, .remaining = hint, .reset_us = used * p->emission_us};
            return finish_limit(r, p, &res);
        }
        limit_wait_t *lw = dc_malloc(sizeof(*lw));
        lw->r = r;
        lw->key = key;
        lw->len = klen;
        dc_request_ref(r); /* held until the reply */
        if (dc_fleet_gcra(fleet, key, klen, p, on_limit_reply, lw) == 0)
            return false;
        dc_request_unref(r);
        free(lw);
    }
    limit_locally(r, key, klen, p, &res);
    return finish_limit(r, p, &res);
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
    r->worker = w;
    r->snap = dc_snapshot_ref(w->snap);
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
    int status = run_checks(r, req, &why);
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
    const dc_config_stream_t *stream = dc_config_stream_match(r->snap->cfg, req->path.base, pathlen);
    if (stream != NULL) {
        r->route = stream->route;
        r->route_metric = dc_snapshot_route_rt(r->snap, r->route)->metrics_id;
        r->up_rt = dc_snapshot_upstream_rt(r->snap, r->route->upstream);
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
            dc_request_respond_error(r, 405, "event streams answer GET only");
            return 0;
        }
        /* each subscription costs one token of the route's per-client limit (reconnect storms) */
        r->stream = stream;
        if (r->route->limit.enabled && !start_limit(r))
            return 0;
        continue_request(r);
        return 0;
    }
    r->route = dc_config_route_match(r->snap->cfg, req->path.base, pathlen);
    if (r->route == NULL) {
        dc_request_respond_error(r, 404, "no route for this path");
        return 0;
    }
    r->route_metric = dc_snapshot_route_rt(r->snap, r->route)->metrics_id;
    r->up_rt = dc_snapshot_upstream_rt(r->snap, r->route->upstream);
    if (req->entity.base != NULL && req->entity.len > r->route->max_body) {
        req->http1_is_persistent = 0;
        dc_request_respond_error(r, 413, "request body too large");
        return 0;
    }

    /* client limit (before anything costs a cache lookup or an upstream request) */
    if (r->route->limit.enabled && !start_limit(r))
        return 0;
    continue_request(r);
    return 0;
}

/* After the limit: cacheable requests take the cache path, the rest pass through. */
static void continue_request(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    if (r->stream != NULL) {
        dc_http_stream_subscribe(r, r->stream);
        return;
    }
    dc_worker_t *w = r->worker;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    size_t plen = strcmp(r->route->prefix, "/") == 0 ? 0 : strlen(r->route->prefix);
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) || r->is_head;
    r->rule = get ? dc_config_cache_rule_match(r->route, req->path.base + plen, pathlen - plen) : NULL;
    if (r->rule != NULL && !r->rule->is_public && h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0)
        r->rule = NULL; /* a personal answer: never shared */
    if (r->rule == NULL) {
        dc_counter_add(&w->metrics.cache_bypass[r->route_metric], 1);
        dc_passthrough_start(r, "BYPASS", "dexcache; fwd=bypass");
        return;
    }
    const dc_config_batch_t *bc = &r->route->batch;
    if (bc->enabled && !r->is_head && pathlen - plen == strlen(bc->path) &&
        memcmp(req->path.base + plen, bc->path, pathlen - plen) == 0 && dc_batch_try(r))
        return;
    cache_path(r);
}

void dc_http_handler_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
    h2o_logger_t *disposal = h2o_create_logger(pathconf, sizeof(*disposal));
    disposal->log_access = on_req_dispose;
}
