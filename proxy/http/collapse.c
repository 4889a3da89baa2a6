/* Collapsing across the fleet (http/steps.h): one L2 read per key at a time, the cross-instance
 * fleet lock and its followers, and background refreshes collapsed fleet-wide. */
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
    return adopt_l2(r->ctx.worker, r->key, r->key_len, r->ctx.route_metric, value, len);
}

/*
 * Cross-instance collapsing. This instance's leader for a key first takes the fleet lock; if
 * another instance holds it, it follows: it looks (one round trip: the L2 value and whether the lock
 * still exists) when the other leader announces the end of its fill, and also polls, in case the
 * notice is lost, until the entry appears in L2 (then it and its local waiters are served from it),
 * the lock vanishes without an entry (the other leader died, or its answer was not shareable: take
 * the lock and fetch), or its deadline passes (fetch anyway). The leader is a request (its miss), or
 * nobody: a fetch for waiters only (a view's source, dc__http_lead_shared_fill).
 */

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
    uv_timer_t timer;       /* first: the timer callback finds the struct from the handle */
    dc_fleet_watch_t watch; /* notices from the other leader */
    bool busy;              /* a lock or peek round trip is in flight */
    bool look_again;        /* a notice came while busy */
    dc_request_t *r;        /* the leading request (a reference; r->req NULL once its client left) or NULL */
    dc_route_ctx_t ctx;     /* r's context or the waiters' (a copy holding its own snapshot reference) */
    const char *key;        /* r's own key (dc_request_own_key), or (no r) owned_key */
    char *owned_key;
    size_t key_len;
    uint64_t hash;
    dc_cache_entry_t *owned_stale; /* no r: the copy to fall back on (owned); with r it is r->stale */
    dc_flight_t *flight;
    char *url;
    char **headers;
    uint64_t deadline_ms;
    uint64_t interval_ms;
} fleet_wait_t;

static dc_cache_entry_t **fleet_wait_stale(fleet_wait_t *fw)
{
    return fw->r != NULL ? &fw->r->stale : &fw->owned_stale;
}

static void fleet_wait_done(fleet_wait_t *fw)
{
    dc_fleet_unwatch(fw->ctx.worker->fleet, &fw->watch);
    free_headers(fw->headers);
    free(fw->url);
    free(fw->owned_key);
    dc_cache_entry_release(fw->owned_stale);
    dc_snapshot_release(fw->ctx.snap);
    if (fw->r != NULL)
        dc_request_unref(fw->r);
    uv_close((uv_handle_t *)&fw->timer, (uv_close_cb)free);
}

static void fleet_wait_fetch(fleet_wait_t *fw, bool lock)
{
    dc_request_t *r = fw->r;
    dc_fill_target_t t = {fw->key, fw->key_len, fw->hash, fw->url, (const char *const *)fw->headers};
    if (r != NULL)
        dc_fill_start(r->req != NULL ? r : NULL, &fw->ctx, &t, fw->flight, r->stale, lock);
    else
        dc_fill_start_shared(&fw->ctx, &t, fw->flight, fw->owned_stale, lock);
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
    dc_fleet_watch(fw->ctx.worker->fleet, &fw->watch); /* keep listening until done */
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
    dc_inflight_finish(fw->ctx.worker->inflight, fw->flight, &res); /* local waiters */
    if (r != NULL && r->req != NULL) {
        dc_counter_add(&r->ctx.worker->metrics.cache_collapsed[r->ctx.route_metric], 1);
        dc_counter_add(&r->ctx.worker->metrics.cache_hits[r->ctx.route_metric], 1);
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
    dc_cache_entry_t *e = adopt_l2(fw->ctx.worker, fw->key, fw->key_len, fw->ctx.route_metric, value, len);
    if (e == NULL)
        return NULL;
    uint64_t now = dc_now_wall_ms();
    bool client_revalidate = fw->r != NULL && fw->r->client_revalidate;
    if (dc_cache_entry_freshness(e, client_revalidate, now) == DC_FRESH)
        return e;
    dc_cache_entry_t **stale = fleet_wait_stale(fw);
    if (dc_cache_entry_stale_usable(e, now) && (*stale == NULL || (*stale)->stored_at_ms < e->stored_at_ms)) {
        dc_cache_entry_release(*stale);
        *stale = e;
        return NULL;
    }
    dc_cache_entry_release(e);
    return NULL;
}

static void on_fleet_lock(void *data, int err, bool got, const char *l2, size_t l2_len)
{
    fleet_wait_t *fw = data;
    dc_cache_entry_t *e = err == 0 && l2 != NULL ? fleet_wait_adopt(fw, l2, l2_len) : NULL;
    if (e != NULL) {
        /* stored by another instance since our L2 miss: no fetch (the lock, if we got it, goes back) */
        if (got)
            dc_fleet_unlock(fw->ctx.worker->fleet, fw->key, fw->key_len);
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
        if (dc_fleet_lock(fw->ctx.worker->fleet, fw->key, fw->key_len, DC_FLEET_LOCK_LEASE_MS, on_fleet_lock, fw) != 0)
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
    dc_fleet_t *fleet = fw->ctx.worker->fleet;
    fw->busy = true;
    if (fleet == NULL || !dc_fleet_up(fleet) || dc_fleet_peek(fleet, fw->key, fw->key_len, on_fleet_peek, fw) != 0)
        fleet_wait_fetch(fw, false);
}

/* The wait's common part: fw has r (or owned_key, owned_stale), key, hash, flight, url, headers. */
static void fleet_wait_begin(fleet_wait_t *fw, const dc_route_ctx_t *ctx)
{
    dc_fleet_t *fleet = ctx->worker->fleet;
    fw->ctx = *ctx;
    fw->ctx.snap = dc_snapshot_ref(ctx->snap); /* the copy holds its own reference */
    uv_timer_init(&ctx->worker->loop, &fw->timer);
    const dc_config_upstream_t *up = ctx->route->upstream;
    uint64_t wait_ms = up->connect_timeout_ms + up->timeout_ms + 2000;
    fw->deadline_ms = dc_now_mono_ms() + wait_ms;
    fw->interval_ms = 50;
    fw->watch.key = fw->key;
    fw->watch.len = fw->key_len;
    fw->watch.cb = on_fleet_notice;
    dc_fleet_watch(fleet, &fw->watch); /* before the lock: a notice may come before its answer */
    fw->busy = true;
    if (dc_fleet_lock(fleet, fw->key, fw->key_len, DC_FLEET_LOCK_LEASE_MS, on_fleet_lock, fw) != 0)
        fleet_wait_fetch(fw, false);
}

void dc__http_lead_fill(dc_request_t *r, dc_flight_t *flight)
{
    dc_counter_add(&r->ctx.worker->metrics.cache_misses[r->ctx.route_metric], 1);
    if (r->view) { /* rendered from its source by the plugin module, never fetched under its own key */
        dc__http_plugins_view_fill(r, flight);
        return;
    }
    const char *url = dc_request_cache_url(r);
    const char **headers = dc_request_upstream_headers(r, true);
    dc_fleet_t *fleet = r->ctx.worker->fleet;
    if (flight == NULL || fleet == NULL || !dc_fleet_up(fleet)) { /* no flight: a private fetch (no-store) */
        dc_fill_target_t t = {r->key, r->key_len, r->hash, url, headers};
        dc_fill_start(r, &r->ctx, &t, flight, r->stale, false);
        return;
    }
    dc_request_own_key(r); /* the wait may outlive the client (lifetime rule, request.h) */
    fleet_wait_t *fw = dc_calloc(1, sizeof(*fw));
    dc_request_ref(r);
    fw->r = r;
    fw->key = r->key;
    fw->key_len = r->key_len;
    fw->hash = r->hash;
    fw->flight = flight;
    fw->url = dc_strdup(url);
    fw->headers = copy_headers(headers);
    fleet_wait_begin(fw, &r->ctx);
}

void dc__http_lead_shared_fill(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                               dc_cache_entry_t *stale)
{
    dc_fleet_t *fleet = ctx->worker->fleet;
    if (fleet == NULL || !dc_fleet_up(fleet)) {
        dc_fill_start_shared(ctx, t, flight, stale, false);
        return;
    }
    fleet_wait_t *fw = dc_calloc(1, sizeof(*fw));
    fw->owned_key = dc_strndup(t->key, t->key_len);
    fw->key = fw->owned_key;
    fw->key_len = t->key_len;
    fw->hash = t->hash;
    fw->owned_stale = stale != NULL ? dc_cache_entry_ref(stale) : NULL;
    fw->flight = flight;
    fw->url = dc_strdup(t->url);
    fw->headers = copy_headers(t->headers);
    fleet_wait_begin(fw, ctx);
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
    dc_route_ctx_t ctx; /* the request's, with an owned snapshot reference */
    char *key;          /* heap */
    size_t key_len;
    uint64_t hash;
    dc_flight_t *flight;
    dc_cache_entry_t *stale; /* owned reference */
    char *url;
    char **headers;
} refresh_lock_t;

static void on_refresh_lock(void *data, int err, bool got, const char *l2, size_t l2_len)
{
    refresh_lock_t *rl = data;
    dc_worker_t *w = rl->ctx.worker;
    dc_cache_entry_t *e =
        err == 0 && l2 != NULL ? adopt_l2(w, rl->key, rl->key_len, rl->ctx.route_metric, l2, l2_len) : NULL;
    if (e != NULL && dc_cache_entry_freshness(e, false, dc_now_wall_ms()) == DC_FRESH) {
        if (got)
            dc_fleet_unlock(w->fleet, rl->key, rl->key_len);
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e};
        dc_inflight_finish(w->inflight, rl->flight, &res);
    } else if (err != 0 || got || dc_inflight_waiters(w->inflight, rl->flight) > 0) {
        dc_counter_add(&w->metrics.cache_refreshes[rl->ctx.route_metric], 1);
        dc_fill_target_t t = {rl->key, rl->key_len, rl->hash, rl->url, (const char *const *)rl->headers};
        dc_fill_start(NULL, &rl->ctx, &t, rl->flight, rl->stale, got);
    } else {
        dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS}; /* nobody waits: another instance refreshes */
        dc_inflight_finish(w->inflight, rl->flight, &res);
    }
    dc_cache_entry_release(e);
    dc_cache_entry_release(rl->stale);
    dc_snapshot_release(rl->ctx.snap);
    free_headers(rl->headers);
    free(rl->url);
    free(rl->key);
    free(rl);
}

void dc_fill_refresh(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_cache_entry_t *stale)
{
    dc_worker_t *w = ctx->worker;
    dc_flight_t *flight = NULL;
    if (dc_inflight_join(w->inflight, t->key, t->key_len, t->hash, NULL, &flight) != DC_INFLIGHT_LEADER)
        return;
    dc_fleet_t *fleet = w->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        refresh_lock_t *rl = dc_calloc(1, sizeof(*rl));
        *rl = (refresh_lock_t){*ctx,   dc_strndup(t->key, t->key_len), t->key_len,        t->hash,
                               flight, dc_cache_entry_ref(stale),      dc_strdup(t->url), copy_headers(t->headers)};
        rl->ctx.snap = dc_snapshot_ref(ctx->snap); /* the copy of ctx holds its own reference */
        if (dc_fleet_lock(fleet, rl->key, rl->key_len, DC_FLEET_LOCK_LEASE_MS, on_refresh_lock, rl) == 0)
            return;
        on_refresh_lock(rl, DC_EAGAIN, false, NULL, 0); /* Redis is not answering: refresh here */
        return;
    }
    dc_counter_add(&w->metrics.cache_refreshes[ctx->route_metric], 1);
    dc_fill_start(NULL, ctx, t, flight, stale, false);
}

void dc__http_start_refresh(dc_request_t *r, dc_cache_entry_t *stale)
{
    if (r->view)
        return; /* a view is rendered again from its source once it expires (plugin module) */
    dc_fill_target_t t = {r->key, r->key_len, r->hash, dc_request_cache_url(r), dc_request_upstream_headers(r, true)};
    dc_fill_refresh(&r->ctx, &t, stale);
}

/* ---- one L2 read per key at a time ----
 * Requests that miss L1 while this process is already reading the same key from L2 wait for that
 * read (a flight keyed "l2 <key>" in the in-flight table, across workers) and then look in L1
 * again, where the reader put what it found: N concurrent cold requests cost one GET, not N. A
 * request that misses while the key is being fetched skips L2 and joins the fetch. */

static void l2_read_finish(dc_request_t *r)
{
    dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS}; /* waiters only look again */
    dc_inflight_finish(r->ctx.worker->inflight, r->l2_flight, &res);
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
        dc__http_cache_lookup(r, false);
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
        dc__http_cache_lookup(r, false);
    dc_request_unref(r);
}

void dc__http_ask_l2(dc_request_t *r)
{
    dc_worker_t *w = r->ctx.worker;
    size_t klen = r->key_len + 3;
    char *k = h2o_mem_alloc_pool(&r->req->pool, klen);
    memcpy(k, "l2 ", 3);
    memcpy(k + 3, r->key, r->key_len);
    r->l2_read_done = false;
    dc_flight_t *flight =
        dc__http_join_or_lead(r, k, klen, dc_cache_hash(k, klen), on_l2_wait_result, on_l2_wait_release);
    if (flight == NULL)
        return;
    r->l2_flight = flight;
    dc_request_own_key(r); /* the reply may come after the client has gone (lifetime rule, request.h) */
    dc_request_ref(r);     /* held until the L2 reply */
    if (dc_fleet_l2_get(w->fleet, r->key, r->key_len, on_l2_reply, r) == 0)
        return;
    dc_request_unref(r);
    l2_read_finish(r);
    dc__http_cache_lookup(r, false);
}
