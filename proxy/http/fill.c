/*
 * A fill: the one upstream fetch for a cache key (the in-flight table makes it the only one across
 * all workers). It belongs to the key, not to a client: the leader's client follows it while it
 * runs, but if that client goes away the fill still completes for the waiters and the cache.
 *
 * At the response head the policy decides the mode:
 *   STORE  body accumulated (up to cache.max_object), stored on success, waiters get the entry;
 *   SHARE  not storable but shareable (5xx, 429, uncached statuses): accumulated, handed to the
 *          waiters, never stored;
 *   PASS   private to the leader (no-store, private, Set-Cookie, a Vary that cannot be keyed (http/
 *          vary.h), too large): waiters are told
 *          to go to the origin themselves, the key is marked hit-for-pass for a while so later
 *          requests do not queue behind each other, and the body streams to the leader with
 *          back-pressure (sent chunks are dropped).
 * An origin error, timeout, 5xx or 429 while a stale copy is inside its stale-if-error window is
 * answered with that copy, for the leader and every waiter.
 *
 * Nobody sees a head before the body is known to be good or large: the leader's response starts
 * when the whole body is in (and stored), or once HOLD_HEAD_MAX bytes have arrived; waiters on other
 * workers start streaming at the same size. So an answer that fails before then (a body shorter or
 * longer than announced, bad chunking, the deadline, the idle timeout) still becomes a clean
 * 502/504 or the stale copy for everyone; a larger one that fails later is cut (the client sees the
 * response end with an error) and is never stored.
 */
#include "cache/encode.h"
#include "cache/growing.h"
#include "cache/key.h"
#include "cache/l2codec.h"
#include "cache/l2fleet.h"
#include "upstream/upstream_state.h"
#include "cache/variants.h"
#include "cache/vary.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/cdn.h"
#include "http/conditional.h"
#include "http/condserve.h"
#include "http/request.h"
#include "http/resphdr.h"
#include "http/vary.h"

#include <mbedtls/sha256.h>
#include <zlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL_MAGIC 0x46494c4cu /* "FILL" */
/* Answers are streamed to waiters once this many bytes have arrived; smaller ones are handed over
 * complete (one wake-up instead of many, and a failure is still a clean error answer). */
#define STREAM_TO_WAITERS_MIN (256 * 1024)
/* The leader's response head waits for the whole body or this many bytes (see above). */
#define HOLD_HEAD_MAX DC_STREAM_HIGH_WATER
/* How long a key whose answer was private stays hit-for-pass (requests skip collapsing). */
#define PASS_MARKER_MS 10000

typedef enum { FILL_HEAD_WAIT = 0, FILL_STORE, FILL_SHARE, FILL_PASS, FILL_REVALIDATED, FILL_DONE } fill_mode_t;

typedef struct dc_fill {
    uint32_t magic;
    dc_route_ctx_t ctx; /* holds one snapshot reference (ctx.snap) */
    char *key;
    size_t key_len;
    uint64_t hash;
    dc_flight_t *flight; /* NULL once finished */
    dc_fetch_t *fetch;
    dc_cache_entry_t *stale;
    dc_shared_body_t *sb;       /* the body as the origin sent it */
    dc_shared_body_t *sb_ident; /* decoded as it arrives when the origin sent gzip (else NULL) */
    z_stream zs;
    bool inflating;
    bool completed;          /* complete_body ran */
    uint32_t retry_after_s;  /* refused by the upstream budget: when to come back (for waiters' Retry-After) */
    bool fleet_lock;         /* this fill holds the fleet-wide lock of its key (other instances follow) */
    uv_timer_t *lease_timer; /* renews the lock's lease while fleet_lock (heap: closed asynchronously) */
    int complete_err;
    dc_growing_t *growing;    /* set when the identity body is streamed to waiters on other workers */
    dc_growing_t *growing_gz; /* and the gzip body as received, when the origin sent gzip */
    bool growing_ended;
    dc_request_t *client;
    bool leader_started; /* the leader's response has started (dc_serve_follow_start) */
    bool leader_decoded; /* the leader is sent the decoded stream (it does not accept gzip) */
    fill_mode_t mode;
    dc_policy_decision_t decision;
    mbedtls_sha256_context sha;
    bool sha_on;
    const char *pass_detail; /* why a storable answer passes (Cache-Status detail); NULL = too big */
    bool client_revalidate;
    bool client_no_store; /* the leader's request said no-store: nothing it fetches is stored */
    char **tags;
    size_t ntags;
    char digest_tag[40]; /* our tag of the identity body once complete (no origin ETag); "" before */
    /* for an unconditional fetch again after a 304 that does not match the stored entry */
    char *url;
    char **hdrs;         /* NULL-terminated, heap */
    bool unconditional;  /* our validators are not sent (again) */
    bool reval_mismatch; /* the origin's 304 names another representation than fill->stale */
    /* Vary (http/vary.h): the header lines sent upstream (heap, NULL-terminated), whether this fill
     * may store variants (not for batch and stream polls, which forward none of a client's headers),
     * and, when the answer varies, its canonical name list and the variant's secondary key (heap) */
    char **sent_lines;
    bool vary_ok;
    bool vary_evicted; /* storing this variant evicted the least recently used one (detail=vary-limit) */
    char vary_names[DC_VARY_NAMES_MAX + 1];
    size_t vary_names_len;
    char *vary_key;
    size_t vary_key_len;
} dc_fill_t;

static dc_cache_entry_t *entry_from_head(struct dc_fill *fill, dc_fetch_t *f);
static int complete_body(struct dc_fill *fill, dc_fetch_t *f);

/* Let other instances go: they find the entry in L2 (written before this), or fetch themselves. */
static void release_fleet_lock(dc_fill_t *fill)
{
    if (!fill->fleet_lock)
        return;
    fill->fleet_lock = false;
    if (fill->lease_timer != NULL) {
        uv_close((uv_handle_t *)fill->lease_timer, (uv_close_cb)free);
        fill->lease_timer = NULL;
    }
    if (fill->ctx.worker->fleet != NULL)
        dc_fleet_unlock(fill->ctx.worker->fleet, fill->key, fill->key_len);
}

static void on_lease_timer(uv_timer_t *t)
{
    dc_fill_t *fill = t->data;
    if (fill->fleet_lock && dc_fleet_up(fill->ctx.worker->fleet))
        dc_fleet_lock_renew(fill->ctx.worker->fleet, fill->key, fill->key_len, DC_FLEET_LOCK_LEASE_MS);
}

static void finish_flight(dc_fill_t *fill, const dc_flight_result_t *res)
{
    release_fleet_lock(fill);
    if (fill->flight == NULL)
        return;
    dc_flight_t *f = fill->flight;
    fill->flight = NULL;
    dc_inflight_finish(fill->ctx.worker->inflight, f, res);
}

/* A NULL-terminated heap array of heap strings (NULL is fine). */
static void free_lines(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static void fill_free(dc_fill_t *fill)
{
    DC_ASSERT(fill->flight == NULL && fill->client == NULL);
    release_fleet_lock(fill);
    if (fill->sha_on)
        mbedtls_sha256_free(&fill->sha);
    if (fill->inflating)
        inflateEnd(&fill->zs);
    dc_growing_t *gs[2] = {fill->growing, fill->growing_gz};
    for (int i = 0; i < 2; i++) {
        if (gs[i] == NULL)
            continue;
        if (!fill->growing_ended)
            dc_growing_end(gs[i], true); /* followers end with an error, never hang */
        dc_growing_release(gs[i]);
    }
    dc_shared_body_release(fill->sb_ident);
    for (size_t i = 0; i < fill->ntags; i++)
        free(fill->tags[i]);
    free(fill->tags);
    free_lines(fill->hdrs);
    free(fill->url);
    dc_shared_body_release(fill->sb);
    dc_cache_entry_release(fill->stale);
    dc_snapshot_release(fill->ctx.snap);
    free(fill->key);
    free(fill->vary_key);
    free_lines(fill->sent_lines);
    fill->magic = 0;
    free(fill);
}

/* Stop the transfer (from inside one of its callbacks is fine) and free the fill: nobody needs it. */
static void abandon(dc_fill_t *fill, dc_fetch_t *f)
{
    fill->mode = FILL_DONE;
    dc_fetch_abort(f); /* no callback runs after this */
    fill->fetch = NULL;
    fill_free(fill);
}

void dc_fill_share_l2(dc_worker_t *w, const dc_cache_entry_t *e)
{
    dc_fleet_t *fleet = w->fleet;
    uint64_t now = dc_now_wall_ms();
    if (fleet == NULL || !dc_fleet_up(fleet) || e->body->body.len > DC_FLEET_L2_MAX || e->keep_until_ms <= now ||
        e->vary != NULL) /* Vary variants stay on the instance that fetched them (http/vary.h) */
        return;
    size_t len;
    char *buf = dc_l2_encode(e, &len);
    dc_fleet_l2_set(fleet, e->key, e->key_len, buf, len, e->keep_until_ms - now);
    free(buf);
}

static void mark_pass(dc_fill_t *fill, uint64_t now)
{
    dc_cache_entry_t *m = dc_cache_entry_create(fill->key, fill->key_len, 0, NULL, 0, NULL, 0, NULL);
    m->is_pass = true;
    m->stored_at_ms = now;
    m->fresh_until_ms = m->swr_until_ms = m->sie_until_ms = m->keep_until_ms = now + PASS_MARKER_MS;
    dc_cache_insert(fill->ctx.worker->cache, m, now);
    dc_cache_entry_release(m);
}

/* The answer is private to the leader: waiters go to the origin themselves, and the key is marked
 * hit-for-pass so later requests do not queue behind a leader (fill->mode is already FILL_PASS). */
static void announce_pass(dc_fill_t *fill, int status, uint64_t now)
{
    dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS, .fwd_status = status};
    finish_flight(fill, &res);
    mark_pass(fill, now);
}

/* A head that looked shareable turns out not to be (a coding we cannot decode into identity, or no
 * decoder): it ends like every other pass path. No-op when the fill already passes. */
static void turn_pass(dc_fill_t *fill, int status, uint64_t now, const char *detail)
{
    if (fill->mode == FILL_PASS)
        return;
    fill->mode = FILL_PASS;
    fill->pass_detail = detail;
    announce_pass(fill, status, now);
}

/* The client that followed this fill now answers with a stale copy or an error instead. */
static void client_fallback(dc_fill_t *fill, dc_fetch_t *f, int err, int fwd_status)
{
    dc_request_t *r = fill->client;
    if (r == NULL)
        return;
    fill->client = NULL;
    r->fill = NULL;
    if (r->req == NULL)
        return;
    dc_request_ref(r);
    uint64_t now = dc_now_wall_ms();
    if (dc_cache_entry_stale_usable(fill->stale, now)) {
        char cs[96];
        if (fwd_status != 0)
            snprintf(cs, sizeof(cs), "dexcache; fwd=stale; fwd-status=%d", fwd_status);
        else
            snprintf(cs, sizeof(cs), "dexcache; fwd=stale; detail=%s", err == DC_ETIMEDOUT ? "timeout" : "error");
        dc_serve_entry(r, fill->stale, "STALE", h2o_strdup(&r->req->pool, cs, strlen(cs)).base);
    } else {
        dc_request_respond_fetch_error(r, f, err);
    }
    dc_request_unref(r);
}

/* Waiters get the stale copy when one is usable, else the error. A stale copy whose refresh
 * failed at the origin backs off: no new refresh of it for a pause that grows with each failure
 * (refusals by our own budget or breaker sent nothing and do not count). */
static void finish_with_error(dc_fill_t *fill, int err, int fwd_status)
{
    uint64_t now = dc_now_wall_ms();
    if (fill->stale != NULL && err != DC_EAGAIN && err != DC_EUNAVAIL) {
        const dc_config_upstream_t *up = fill->ctx.route->upstream;
        dc_breaker_params_t bp = {up->breaker_failures, up->breaker_backoff_ms, up->breaker_max_backoff_ms, 0};
        uint64_t pause = dc_breaker_backoff_ms(&bp, dc_cache_entry_refresh_failures(fill->stale) + 1);
        pause = pause / 2 + pause / 2 * (fill->hash % 1024) / 1024; /* [1/2, 1): keys do not line up */
        dc_cache_entry_refresh_failed(fill->stale, now, pause);
    }
    dc_flight_result_t res = {0};
    res.fwd_status = fwd_status;
    if (dc_cache_entry_stale_usable(fill->stale, now)) {
        res.outcome = DC_FLIGHT_ENTRY;
        res.entry = fill->stale;
        res.stale = true;
    } else {
        res.outcome = DC_FLIGHT_ERROR;
        bool later = err == DC_EAGAIN || err == DC_EUNAVAIL; /* nothing was sent: come back later */
        res.status = err == DC_ETIMEDOUT ? 504 : (later ? 503 : 502);
        res.retry_after_s = later ? fill->retry_after_s : 0;
        res.message = err == DC_ETIMEDOUT      ? "upstream timed out"
                      : err == DC_EAGAIN       ? "upstream budget exhausted"
                      : err == DC_EUNAVAIL     ? "upstream unavailable: its circuit breaker is open"
                      : err == DC_ECONNREFUSED ? "upstream connection refused"
                      : err == DC_EPROTO       ? "upstream sent an invalid response"
                                               : "upstream failed";
    }
    finish_flight(fill, &res);
}

/* Cache-Status for the leader's own response (RFC 9211): why it was forwarded and whether stored. */
static const char *leader_cache_status(dc_fill_t *fill, int status, h2o_mem_pool_t *pool)
{
    const char *fwd = fill->client_revalidate ? "request" : (fill->stale != NULL ? "stale" : "miss");
    char buf[128];
    if (fill->mode == FILL_STORE)
        snprintf(buf, sizeof(buf), "dexcache; fwd=%s; stored%s", fwd, fill->vary_evicted ? "; detail=vary-limit" : "");
    else if (fill->mode == FILL_SHARE)
        snprintf(buf, sizeof(buf), "dexcache; fwd=%s; fwd-status=%d; detail=%s", fwd, status,
                 fill->decision.verdict == DC_POLICY_STORE ? "client-no-store"
                                                           : dc_policy_verdict_name(fill->decision.verdict));
    else if (fill->decision.verdict == DC_POLICY_STORE) /* over cache.max_object, or a coding we can't store */
        snprintf(buf, sizeof(buf), "dexcache; fwd=%s; detail=%s", fwd,
                 fill->pass_detail != NULL ? fill->pass_detail : "too-big");
    else
        snprintf(buf, sizeof(buf), "dexcache; fwd=%s; detail=%s", fwd, dc_policy_verdict_name(fill->decision.verdict));
    return h2o_strdup(pool, buf, strlen(buf)).base;
}

/* RFC 9111 §4.3.4: does the origin's 304 select the stored `old` for update? An ETag in it must
 * match the stored one (strong comparison when it is strong, weak when weak); else a Last-Modified
 * in it must equal the stored one; a 304 with neither selects the stored response only when that
 * has no validator either (we then sent none: nothing of ours was confirmed). */
static bool reval_304_selects(const dc_cache_entry_t *old, const dc_fetch_header_t *hs, size_t n)
{
    size_t el, ll;
    const char *et = dc_resphdr_find(hs, n, "etag", &el);
    const char *lm = dc_resphdr_find(hs, n, "last-modified", &ll);
    if (et != NULL) {
        dc_etag_t got, have;
        if (old->origin_etag == NULL || !dc_etag_parse(et, el, &got) ||
            !dc_etag_parse(old->origin_etag, strlen(old->origin_etag), &have))
            return false;
        return got.weak ? dc_etag_weak_eq(&got, &have) : dc_etag_strong_eq(&got, &have);
    }
    if (lm == NULL)
        return old->origin_etag == NULL && old->origin_last_modified == NULL;
    int64_t t = dc_http_date_parse(lm, ll);
    return t >= 0 && old->origin_last_modified != NULL &&
           dc_http_date_parse(old->origin_last_modified, strlen(old->origin_last_modified)) == t;
}

static void start_fetch(dc_fill_t *fill);

/* The answer's Vary (other than Accept-Encoding): when variants can be stored for it (a fill that
 * forwarded a client's headers, names dexcache can key on, a key that can be built), the policy no
 * longer refuses it and fill->vary_key is the variant's secondary key, built from the header lines
 * the origin was sent; otherwise it stays refused (detail=vary) as before. Vary: * always is. */
static void vary_at_head(dc_fill_t *fill, const dc_fetch_header_t *hs, size_t n, dc_policy_response_t *pres)
{
    if (!pres->vary_other || pres->vary_star || !fill->vary_ok)
        return;
    const char *vals[16];
    size_t lens[16], nv = 0;
    for (size_t i = 0; i < n && nv < 16; i++) {
        if (hs[i].name_len == 4 && memcmp(hs[i].name, "vary", 4) == 0) {
            vals[nv] = hs[i].value;
            lens[nv++] = hs[i].value_len;
        }
    }
    unsigned flags = 0;
    size_t len = dc_vary_names_parse(vals, lens, nv, fill->vary_names, sizeof(fill->vary_names), &flags);
    if ((flags & (DC_VARY_STAR | DC_VARY_TOO_MANY | DC_VARY_INVALID)) || len == 0 ||
        !dc_http_vary_names_ok(fill->vary_names, len, fill->ctx.route->upstream->key_header))
        return;
    size_t plen = dc_vary_primary_len(fill->key, fill->key_len);
    fill->vary_key = dc_http_vary_key_from_lines(fill->key, plen, fill->vary_names, len,
                                                 (const char *const *)fill->sent_lines, &fill->vary_key_len);
    if (fill->vary_key == NULL)
        return;
    fill->vary_names_len = len;
    pres->vary_other = false;
}

static void on_head(void *data, dc_fetch_t *f)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    int status = dc_fetch_status(f);
    size_t n;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    uint64_t now = dc_now_wall_ms();

    if ((status >= 500 || status == 429) && dc_cache_entry_stale_usable(fill->stale, now)) {
        /* stale-if-error: the failing answer is dropped, everyone gets the stale copy */
        finish_with_error(fill, DC_EUPSTREAM, status);
        client_fallback(fill, f, DC_EUPSTREAM, status);
        abandon(fill, f);
        return;
    }

    if (status == 304 && fill->stale != NULL && !fill->unconditional) {
        /* our copy is still good: on_done builds its successor (no body to wait for), unless the
         * 304 names another representation (RFC 9111 §4.3.4): then on_done asks again, unconditionally */
        fill->mode = FILL_REVALIDATED;
        fill->reval_mismatch = !reval_304_selects(fill->stale, hs, n);
        return;
    }

    dc_policy_request_t preq = {.method_cacheable = true, .has_authorization = false, .client_no_cache = false};
    dc_policy_response_t pres;
    dc_resphdr_policy_view(status, hs, n, &pres);
    pres.response_delay_ms = dc_fetch_head_us(f) / 1000u;
    vary_at_head(fill, hs, n, &pres);
    dc_policy_decide(fill->ctx.rule, &preq, &pres, now, &fill->decision);
    int64_t cl = dc_fetch_content_length(f);
    uint64_t max_object = dc_cache_max_object(fill->ctx.worker->cache);
    dc_policy_verdict_t v = fill->decision.verdict;
    if (status == 206) {
        /* we never ask for a range on the cache path (request.c): a partial answer is nobody's */
        fill->decision.verdict = DC_POLICY_STATUS;
        fill->mode = FILL_PASS;
    } else if (v == DC_POLICY_STORE && cl >= 0 && (uint64_t)cl > max_object) {
        dc_cache_note_too_big(fill->ctx.worker->cache);
        fill->mode = FILL_PASS;
    } else if (v == DC_POLICY_STORE && fill->client_no_store) {
        fill->mode = FILL_SHARE; /* request no-store (RFC 9111 §5.2.1.5): collapsed waiters share it, unstored */
    } else if (v == DC_POLICY_STORE) {
        fill->mode = FILL_STORE;
        size_t et_len;
        if (dc_resphdr_find(hs, n, "etag", &et_len) == NULL) { /* our own tag only where the origin gave none */
            mbedtls_sha256_init(&fill->sha);
            mbedtls_sha256_starts_ret(&fill->sha, 0);
            fill->sha_on = true;
        }
    } else if (v == DC_POLICY_STATUS || v == DC_POLICY_ZERO_TTL || v == DC_POLICY_NO_FRESHNESS) {
        fill->mode = FILL_SHARE;
    } else {
        fill->mode = FILL_PASS;
    }
    if (fill->mode == FILL_PASS)
        announce_pass(fill, status, now);
    dc_body_t body;
    dc_body_init(&body, cl > 0 && (uint64_t)cl <= max_object ? (size_t)cl : 0);
    fill->sb = dc_shared_body_create(&body);

    /* We ask cacheable answers in gzip (a fraction of the bytes on the wire). A gzipped answer is
     * inflated as it arrives: the entry keeps both, and clients that do not accept gzip follow the
     * decoded stream. Other codings can't be turned into identity here: private to the leader. */
    size_t ce_len;
    const char *ce = dc_resphdr_find(hs, n, "content-encoding", &ce_len);
    int enc = ce != NULL ? dc_encoding_parse(ce, ce_len) : DC_ENC_IDENTITY;
    bool client_gzip = false;
    if (fill->client != NULL && fill->client->req != NULL) {
        h2o_req_t *creq = fill->client->req;
        ssize_t ae = h2o_find_header(&creq->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
        client_gzip =
            ae >= 0 && dc_encoding_negotiate(creq->headers.entries[ae].value.base, creq->headers.entries[ae].value.len,
                                             1u << DC_ENC_GZIP) == DC_ENC_GZIP;
    }
    if (enc != DC_ENC_IDENTITY && enc != DC_ENC_GZIP)
        turn_pass(fill, status, now, "content-encoding");
    if (enc == DC_ENC_GZIP && (fill->mode != FILL_PASS || !client_gzip)) {
        memset(&fill->zs, 0, sizeof(fill->zs));
        if (inflateInit2(&fill->zs, 15 + 16) == Z_OK) {
            fill->inflating = true;
            dc_body_t ident;
            dc_body_init(&ident, 0);
            fill->sb_ident = dc_shared_body_create(&ident);
        } else {
            /* no decoder: the gzip bytes must never become an identity body (stored or shared);
             * the leader gets them as the origin sent them, labelled gzip */
            dc_log_warn("fill: inflateInit2 failed, the answer passes through undecoded");
            turn_pass(fill, status, now, "content-encoding");
        }
    }

    if (fill->client != NULL && fill->client->req != NULL) {
        fill->client->attempts = dc_fetch_attempts(f);
        fill->leader_decoded = fill->inflating && !client_gzip;
        /* the response starts in start_leader(), once the body is complete or large */
    } else if (fill->mode == FILL_PASS) {
        fill->client = NULL;
        abandon(fill, f); /* nobody needs these bytes */
    }
}

/* A large answer streams to the waiters (on any worker) from now on, as it arrives. */
static void stream_to_waiters(dc_fill_t *fill, dc_fetch_t *f)
{
    int64_t cl = dc_fetch_content_length(f);
    dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    fill->growing = dc_growing_create(identity, fill->inflating || cl < 0 ? 0 : (size_t)cl);
    if (fill->inflating)
        fill->growing_gz = dc_growing_create(fill->sb, cl < 0 ? 0 : (size_t)cl);
    dc_cache_entry_t *preview = entry_from_head(fill, f);
    dc_flight_result_t res = {.outcome = DC_FLIGHT_STREAM,
                              .entry = preview,
                              .growing = fill->growing,
                              .growing_gz = fill->growing_gz,
                              .fwd_status = dc_fetch_status(f)};
    dc_inflight_stream(fill->ctx.worker->inflight, fill->flight, &res);
    dc_cache_entry_release(preview);
}

/* The origin's CDN-Cache-Control stays with us: the rule says so, or the route sends its own. */
static bool drop_cdn_cache_control(const dc_fill_t *fill)
{
    return (fill->ctx.rule != NULL && !fill->ctx.rule->forward_cdn_cache_control) ||
           (fill->ctx.route->cdn.enabled && fill->ctx.route->cdn.cdn_cache_control);
}

/* The leader's response head goes out now (see the file comment for when). */
static void start_leader(dc_fill_t *fill, dc_fetch_t *f)
{
    dc_request_t *r = fill->client;
    if (fill->leader_started || r == NULL || r->req == NULL)
        return;
    fill->leader_started = true;
    int status = dc_fetch_status(f);
    size_t n;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    r->attempts = dc_fetch_attempts(f);
    bool decoded = fill->leader_decoded;
    size_t ct_len, vary_len;
    const char *ct = dc_resphdr_find(hs, n, "content-type", &ct_len);
    if (fill->mode == FILL_STORE && ct != NULL && dc_encoding_compressible_type(ct, ct_len) &&
        (decoded || dc_resphdr_find(hs, n, "vary", &vary_len) == NULL))
        dc_request_add_header(r, H2O_STRLIT("vary"), H2O_STRLIT("Accept-Encoding"));
    /* the origin's ETag as it came when the leader gets the origin's bytes; weakened on the body
     * inflated here; our digest tag only when the whole body was in before this head */
    unsigned flags = decoded ? DC_HEAD_DECODED : 0;
    size_t et_len;
    const char *et = dc_resphdr_find(hs, n, "etag", &et_len);
    h2o_iovec_t tag = h2o_iovec_init(NULL, 0);
    if (et != NULL && decoded) {
        flags |= DC_HEAD_SKIP_ETAG;
        tag = dc_condserve_weaken(et, et_len, &r->req->pool);
    } else if (et == NULL && fill->digest_tag[0] != '\0') {
        size_t dl = strlen(fill->digest_tag);
        tag = fill->inflating && !decoded ? dc_condserve_weaken(fill->digest_tag, dl, &r->req->pool)
                                          : h2o_iovec_init(fill->digest_tag, dl);
    }
    if (tag.len > 0)
        dc_request_add_header(r, H2O_STRLIT("etag"), tag.base, tag.len);
    if (decoded && fill->vary_key != NULL) /* the origin's Vary went with its coding: its other names */
        dc_request_add_header(r, H2O_STRLIT("vary"), fill->vary_names, fill->vary_names_len);
    dc_cdn_headers_t cdn;
    bool with_cdn = fill->ctx.route->cdn.enabled && fill->mode == FILL_STORE;
    if (with_cdn)
        dc_cdn_headers_build(&fill->ctx.route->cdn, fill->ctx.rule, fill->decision.negative,
                             (const char *const *)fill->tags, fill->ntags, &cdn);
    /* Ranges of an answer being stored are served from its bytes as they arrive, when its final
     * length is known now: complete, or announced and not being inflated (a gzip answer inflated
     * for a client that takes gzip could still turn private mid-body); else the whole body. */
    dc_shared_body_t *followed = decoded ? fill->sb_ident : fill->sb;
    int64_t cl = dc_fetch_content_length(f);
    unsigned ranges = fill->mode == FILL_STORE && status == 200 ? DC_HEAD_RANGES : 0;
    size_t range_len = fill->completed ? followed->body.len : (!fill->inflating && cl >= 0 ? (size_t)cl : SIZE_MAX);
    dc_serve_follow_start(r, fill, f, followed, "MISS", leader_cache_status(fill, status, &r->req->pool),
                          with_cdn ? &cdn : NULL,
                          flags | ranges | (drop_cdn_cache_control(fill) ? DC_HEAD_SKIP_CDN_CC : 0), range_len);
    if (with_cdn)
        dc_cdn_headers_dispose(&cdn);
}

/* The fetch is over for the leader: its response ends (err == 0), is cut (it had started), or is
 * answered with the stale copy or an error instead (it had not). */
static void end_leader(dc_fill_t *fill, dc_fetch_t *f, int err)
{
    if (fill->client == NULL)
        return;
    if (err == 0)
        start_leader(fill, f);
    if (!fill->leader_started) {
        client_fallback(fill, f, err != 0 ? err : DC_EUPSTREAM, 0);
        return;
    }
    dc_request_t *r = fill->client;
    fill->client = NULL;
    dc_serve_follow_end(r, err != 0);
}

/* The answer broke mid-body (corrupt gzip): nothing is stored, waiters get a stale copy or an
 * error, the leader's response ends with an error. Called from inside a fetch callback. */
static void fail_mid_body(dc_fill_t *fill, dc_fetch_t *f)
{
    if (fill->mode == FILL_STORE || fill->mode == FILL_SHARE)
        finish_with_error(fill, DC_EUPSTREAM, 0);
    end_leader(fill, f, DC_EUPSTREAM);
    abandon(fill, f);
}

/* Append identity bytes: through the growing body when waiters on other workers follow it. */
static void append_identity(dc_fill_t *fill, dc_shared_body_t *identity, const char *p, size_t len)
{
    if (fill->growing != NULL)
        dc_growing_append(fill->growing, p, len);
    else
        dc_body_append(&identity->body, p, len);
}

/* Inflate `len` bytes of gzip into sb_ident. Returns false on corrupt input. */
static bool inflate_into(dc_fill_t *fill, const char *buf, size_t len)
{
    char out[65536];
    fill->zs.next_in = (Bytef *)buf;
    fill->zs.avail_in = (uInt)len;
    while (fill->zs.avail_in > 0) {
        fill->zs.next_out = (Bytef *)out;
        fill->zs.avail_out = sizeof(out);
        int rc = inflate(&fill->zs, Z_NO_FLUSH);
        size_t produced = sizeof(out) - fill->zs.avail_out;
        if (produced > 0) {
            append_identity(fill, fill->sb_ident, out, produced);
            if (fill->sha_on)
                mbedtls_sha256_update_ret(&fill->sha, (const unsigned char *)out, produced);
        }
        if (rc == Z_STREAM_END)
            return fill->zs.avail_in == 0; /* trailing garbage is corrupt */
        if (rc != Z_OK && !(rc == Z_BUF_ERROR && produced > 0))
            return false;
    }
    return true;
}

static int on_body(void *data, dc_fetch_t *f, const char *buf, size_t len)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    if (fill->mode == FILL_REVALIDATED)
        return 0; /* a 304 has no body; ignore anything a broken origin sends */
    dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    if (fill->mode == FILL_STORE && fill->growing != NULL &&
        identity->body.len + len > dc_cache_max_object(fill->ctx.worker->cache)) {
        /* followers on other workers send straight from these chunks: they can't be dropped, so an
         * answer that outgrows what it announced fails for everyone instead of turning private */
        dc_cache_note_too_big(fill->ctx.worker->cache);
        fail_mid_body(fill, f);
        return 0;
    }
    if (fill->mode == FILL_STORE && identity->body.len + len > dc_cache_max_object(fill->ctx.worker->cache)) {
        /* larger than any entry may be: stop sharing, keep streaming to the leader */
        dc_cache_note_too_big(fill->ctx.worker->cache);
        fill->mode = FILL_PASS;
        dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS, .fwd_status = dc_fetch_status(f)};
        finish_flight(fill, &res);
        mark_pass(fill, dc_now_wall_ms());
        if (fill->client == NULL) {
            abandon(fill, f);
            return 0;
        }
    }
    if (fill->mode == FILL_PASS && fill->client != NULL && fill->leader_started &&
        fill->client->body->body.len - fill->client->acked >= DC_STREAM_HIGH_WATER)
        return 1; /* the leader is behind: pause the upstream until it catches up */
    if (fill->mode == FILL_STORE && fill->sha_on && !fill->inflating)
        mbedtls_sha256_update_ret(&fill->sha, (const unsigned char *)buf, len);
    if (fill->inflating && fill->growing_gz != NULL)
        dc_growing_append(fill->growing_gz, buf, len); /* the gzip representation, as received */
    else if (fill->inflating)
        dc_body_append(&fill->sb->body, buf, len);
    else
        append_identity(fill, fill->sb, buf, len);
    if (fill->inflating && !inflate_into(fill, buf, len)) {
        dc_log_warn("upstream %s sent a corrupt gzip body for %s", fill->ctx.route->upstream->name, fill->key);
        fail_mid_body(fill, f);
        return 0;
    }
    int64_t cl = dc_fetch_content_length(f);
    if ((fill->mode == FILL_STORE || fill->mode == FILL_SHARE) && !fill->completed && cl >= 0 &&
        fill->sb->body.len == (size_t)cl)
        fill->complete_err = complete_body(fill, f);
    if (fill->mode == FILL_STORE && fill->flight != NULL && fill->growing == NULL && !fill->completed &&
        identity->body.len >= STREAM_TO_WAITERS_MIN)
        stream_to_waiters(fill, f);
    if (fill->client != NULL && !fill->leader_started) {
        dc_shared_body_t *followed = fill->leader_decoded ? fill->sb_ident : fill->sb;
        if ((fill->completed && fill->complete_err == 0) || followed->body.len >= HOLD_HEAD_MAX)
            start_leader(fill, f);
    }
    if (fill->client != NULL && fill->leader_started)
        dc_serve_follow_pump(fill->client);
    return 0;
}

/* An entry the origin can revalidate is worth keeping past its windows: a 304 is cheaper than a
 * full answer. It stays one more lifetime (at least 10 s) after it stops being usable as is. */
static uint64_t keep_until_with_validators(const dc_cache_entry_t *e, const dc_policy_decision_t *d)
{
    if (e->origin_etag == NULL && e->origin_last_modified == NULL)
        return d->keep_until_ms;
    uint64_t life = d->fresh_until_ms > e->stored_at_ms ? d->fresh_until_ms - e->stored_at_ms : 0;
    uint64_t extra = life > 10000 ? life : 10000;
    return d->keep_until_ms + extra;
}

/* Lifetimes and flags of a new entry, from the policy's decision. */
static void apply_decision(dc_cache_entry_t *e, const dc_policy_decision_t *d, uint64_t now)
{
    e->stored_at_ms = now;
    e->fresh_until_ms = d->fresh_until_ms;
    e->swr_until_ms = d->swr_until_ms;
    e->sie_until_ms = d->sie_until_ms;
    e->keep_until_ms = keep_until_with_validators(e, d);
    e->no_stale = d->no_stale;
    e->negative = d->negative;
    e->origin_age_s = d->origin_age_s;
}

/* Fields a 304 never changes in a stored entry (RFC 9111 §3.2): Content-Length, and the ones the
 * stored body depends on (it is kept decoded, with our own Content-Encoding and Vary per
 * representation; a 304 describes no range). Hop-by-hop and unstored ones are dc_resphdr_store's. */
static bool kept_from_304(const dc_fetch_header_t *h, const char *conn, size_t conn_len)
{
    static const char *const fixed[] = {"content-length", "content-encoding", "content-range", "vary"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (h->name_len == strlen(fixed[i]) && memcmp(h->name, fixed[i], h->name_len) == 0)
            return false;
    return dc_resphdr_store(h, conn, conn_len);
}

/* Headers of a revalidated entry: the stored ones, replaced by same-named ones from the 304. */
static dc_fetch_header_t *merge_304_headers(const dc_cache_entry_t *old, const dc_fetch_header_t *hs, size_t n,
                                            size_t *out_n)
{
    size_t conn_len;
    const char *conn = dc_resphdr_find(hs, n, "connection", &conn_len);
    dc_fetch_header_t *m = dc_calloc(old->nheaders + n + 1, sizeof(*m));
    size_t k = 0;
    for (size_t i = 0; i < old->nheaders; i++) {
        const dc_cache_hdr_t *h = &old->headers[i];
        bool replaced = false;
        for (size_t j = 0; j < n && !replaced; j++)
            replaced = hs[j].name_len == h->name_len && memcmp(hs[j].name, h->name, h->name_len) == 0 &&
                       kept_from_304(&hs[j], conn, conn_len);
        if (!replaced)
            m[k++] = (dc_fetch_header_t){(char *)h->name, h->name_len, (char *)h->value, h->value_len};
    }
    for (size_t j = 0; j < n; j++)
        if (kept_from_304(&hs[j], conn, conn_len))
            m[k++] = hs[j];
    *out_n = k;
    return m;
}

/* The successor of fill->stale after a 304: same body (shared, not copied), merged headers,
 * lifetimes decided again from them. */
static dc_cache_entry_t *build_revalidated_entry(dc_fill_t *fill, dc_fetch_t *f)
{
    const dc_cache_entry_t *old = fill->stale;
    size_t n, mn;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    dc_fetch_header_t *m = merge_304_headers(old, hs, n, &mn);
    uint64_t now = dc_now_wall_ms();
    dc_policy_request_t preq = {.method_cacheable = true};
    dc_policy_response_t pres;
    dc_resphdr_policy_view(old->status, m, mn, &pres);
    pres.response_delay_ms = dc_fetch_head_us(f) / 1000u;
    if (old->vary != NULL && !pres.vary_star)
        pres.vary_other = false; /* a variant: its names were checked when it was stored */
    dc_policy_decide(fill->ctx.rule, &preq, &pres, now, &fill->decision);
    dc_cache_hdr_t *kept = dc_calloc(mn ? mn : 1, sizeof(*kept));
    for (size_t i = 0; i < mn; i++)
        kept[i] = (dc_cache_hdr_t){h2o_lookup_token(m[i].name, m[i].name_len), m[i].name, m[i].name_len, m[i].value,
                                   m[i].value_len};
    dc_cache_entry_t *e = dc_cache_entry_create(fill->key, fill->key_len, old->status, kept, mn, old->tags, old->ntags,
                                                dc_shared_body_ref(old->body));
    free(kept);
    free(m);
    for (unsigned i = DC_ENC_GZIP; i < DC_ENC_COUNT; i++)
        if (old->variants[i] != NULL)
            dc_cache_entry_set_variant(e, i, dc_shared_body_ref(old->variants[i]));
    e->compressible = old->compressible;
    memcpy(e->etag, old->etag, sizeof(e->etag));
    e->etag_len = old->etag_len;
    e->etag_enc = old->etag_enc;
    apply_decision(e, &fill->decision, now);
    e->route_metric = old->route_metric;
    return e;
}

/* An entry from the response head: stored headers (+ CDN headers), tags, the identity body (still
 * growing while the fill runs), lifetimes. No validator yet: the digest needs the whole body. */
static dc_cache_entry_t *entry_from_head(dc_fill_t *fill, dc_fetch_t *f)
{
    size_t n, conn_len;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    const char *conn = dc_resphdr_find(hs, n, "connection", &conn_len);
    bool with_cdn = fill->ctx.route->cdn.enabled;
    dc_cdn_headers_t cdn;
    if (with_cdn)
        dc_cdn_headers_build(&fill->ctx.route->cdn, fill->ctx.rule, fill->decision.negative,
                             (const char *const *)fill->tags, fill->ntags, &cdn);
    dc_cache_hdr_t *kept = dc_calloc(n + 5, sizeof(*kept));
    size_t k = 0;
    if (fill->vary_key != NULL) /* the origin's Vary names but Accept-Encoding, sent with the answer */
        kept[k++] = (dc_cache_hdr_t){H2O_TOKEN_VARY, "vary", 4, fill->vary_names, fill->vary_names_len};
    for (size_t i = 0; i < n; i++) {
        if (!dc_resphdr_store(&hs[i], conn, conn_len))
            continue;
        if (with_cdn && hs[i].name_len == 13 && memcmp(hs[i].name, "cache-control", 13) == 0)
            continue; /* replaced by the route's CDN policy */
        if (hs[i].name_len == 17 && memcmp(hs[i].name, "cdn-cache-control", 17) == 0 && drop_cdn_cache_control(fill))
            continue;
        if (fill->decision.strip_fields && dc_resphdr_cc_strips(hs, n, fill->decision.cc_source, &hs[i]))
            continue; /* a qualified no-cache / private named it: never replayed from the cache */
        if ((hs[i].name_len == 16 && memcmp(hs[i].name, "content-encoding", 16) == 0) ||
            (hs[i].name_len == 4 && memcmp(hs[i].name, "vary", 4) == 0))
            continue; /* the entry describes the identity body; serve.c adds both per representation */
        kept[k].token = h2o_lookup_token(hs[i].name, hs[i].name_len);
        kept[k].name = hs[i].name;
        kept[k].name_len = hs[i].name_len;
        kept[k].value = hs[i].value;
        kept[k].value_len = hs[i].value_len;
        k++;
    }
    if (with_cdn) {
        const char *names[4] = {"cache-control", "cdn-cache-control", "surrogate-key", "cache-tag"};
        const char *values[4] = {cdn.cache_control, cdn.cdn_cache_control, cdn.surrogate_key, cdn.cache_tag};
        for (int i = 0; i < 4; i++) {
            if (values[i][0] == '\0')
                continue;
            kept[k].name = names[i];
            kept[k].name_len = strlen(names[i]);
            kept[k].token = h2o_lookup_token(names[i], kept[k].name_len);
            kept[k].value = values[i];
            kept[k].value_len = strlen(values[i]);
            k++;
        }
    }
    dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    size_t et_len;
    bool origin_tag = dc_resphdr_find(hs, n, "etag", &et_len) != NULL;
    dc_cache_entry_t *e =
        dc_cache_entry_create(fill->vary_key != NULL ? fill->vary_key : fill->key,
                              fill->vary_key != NULL ? fill->vary_key_len : fill->key_len, dc_fetch_status(f), kept, k,
                              (const char *const *)fill->tags, fill->ntags, dc_shared_body_ref(identity));
    free(kept);
    if (with_cdn)
        dc_cdn_headers_dispose(&cdn);
    const dc_cache_hdr_t *ct = dc_cache_entry_header(e, "content-type", 12);
    e->compressible = ct != NULL && dc_encoding_compressible_type(ct->value, ct->value_len) &&
                      identity->body.len >= DC_VARIANTS_MIN_BYTES;
    apply_decision(e, &fill->decision, dc_now_wall_ms());
    e->route_metric = fill->ctx.route_metric;
    /* the origin's tag names the bytes it sent (gzip when we inflate); our digest names identity */
    e->etag_enc = fill->inflating && origin_tag ? DC_ENC_GZIP : DC_ENC_IDENTITY;
    return e;
}

/* The complete entry: as from the head, plus the gzip representation and, when the origin sent no
 * ETag, our strong one (a digest of the identity body). */
static dc_cache_entry_t *build_entry(dc_fill_t *fill, dc_fetch_t *f)
{
    dc_cache_entry_t *e = entry_from_head(fill, f);
    if (fill->inflating)
        dc_cache_entry_set_variant(e, DC_ENC_GZIP, dc_shared_body_ref(fill->sb)); /* as the origin sent it */
    if (fill->sha_on) {
        unsigned char digest[32];
        mbedtls_sha256_finish_ret(&fill->sha, digest);
        dc_cache_entry_set_etag(e, digest);
        memcpy(fill->digest_tag, e->etag, e->etag_len + 1);
    }
    return e;
}

/* The vary record for variant `e` under the primary key (cache/store.h keeps an existing one with
 * the same names, and with it the other variants; other names replace it and drop them). */
static void store_vary_record(dc_fill_t *fill, const dc_cache_entry_t *e)
{
    dc_cache_hdr_t h = {H2O_TOKEN_VARY, "vary", 4, fill->vary_names, fill->vary_names_len};
    size_t plen = dc_vary_primary_len(fill->key, fill->key_len);
    dc_cache_entry_t *rec =
        dc_cache_entry_create(fill->key, plen, 0, &h, 1, (const char *const *)fill->tags, fill->ntags, NULL);
    rec->is_vary = true;
    rec->no_stale = true;
    rec->vary_max = fill->ctx.rule->max_variants;
    rec->stored_at_ms = e->stored_at_ms;
    rec->keep_until_ms = e->keep_until_ms;
    rec->route_metric = e->route_metric;
    dc_cache_insert(fill->ctx.worker->cache, rec, dc_now_wall_ms());
    dc_cache_entry_release(rec);
}

/* Every byte of a STORE/SHARE answer is here: store it and hand it to the waiters. Called from
 * on_body as soon as Content-Length bytes have arrived (before the leader is sent its last bytes,
 * so a client that saw a complete answer finds it stored), or from on_done otherwise. Returns 0 or
 * the error that made the body unusable. */
static int complete_body(dc_fill_t *fill, dc_fetch_t *f)
{
    int err = 0;
    fill->completed = true;
    if (fill->inflating && fill->zs.total_in > 0 && inflate(&fill->zs, Z_FINISH) != Z_STREAM_END) {
        dc_log_warn("upstream %s sent a truncated gzip body for %s", fill->ctx.route->upstream->name, fill->key);
        err = DC_EUPSTREAM;
    }
    if (err != 0) {
        finish_with_error(fill, err, 0);
        return err;
    }
    dc_cache_entry_t *e = build_entry(fill, f);
    bool stored = false;
    unsigned want = fill->mode == FILL_STORE ? dc_variants_wanted(e) : 0;
    unsigned now_part = dc_variants_inline_part(e, want);
    if (now_part != 0) {
        dc_variants_make_inline(e, now_part);
        want &= ~now_part;
    }
    if (fill->mode == FILL_STORE) {
        if (fill->vary_key != NULL)
            store_vary_record(fill, e);
        stored = dc_cache_insert_variant(fill->ctx.worker->cache, e, dc_now_wall_ms(), &fill->vary_evicted) == 0;
        if (stored) {
            dc_counter_add(&fill->ctx.worker->metrics.cache_stores[e->route_metric], 1);
            dc_fill_share_l2(fill->ctx.worker, e);
        }
        if (stored && want != 0)
            dc_variants_schedule(&fill->ctx.worker->loop, fill->ctx.worker->cache, e, want);
    }
    dc_flight_result_t res = {
        .outcome = DC_FLIGHT_ENTRY, .entry = e, .shared_only = !stored, .fwd_status = dc_fetch_status(f)};
    finish_flight(fill, &res);
    dc_cache_entry_release(e);
    if (fill->growing != NULL) {
        dc_growing_end(fill->growing, false);
        if (fill->growing_gz != NULL)
            dc_growing_end(fill->growing_gz, false);
        fill->growing_ended = true;
    }
    return 0;
}

static void on_done(void *data, dc_fetch_t *f, int err)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    dc_request_record_upstream(fill->ctx.worker, fill->ctx.up_rt, f, err);
    fill->fetch = NULL;
    if (fill->client != NULL) {
        fill->client->attempts = dc_fetch_attempts(f);
        fill->client->upstream_us = dc_fetch_head_us(f);
    }
    if (fill->mode == FILL_HEAD_WAIT) {
        /* no answer at all: connect error, timeout, reset, or no budget */
        if (err == DC_EAGAIN || err == DC_EUNAVAIL)
            fill->retry_after_s = (uint32_t)((dc_fetch_retry_after_ms(f) + 999) / 1000);
        finish_with_error(fill, err, 0);
        client_fallback(fill, f, err, 0);
        fill_free(fill);
        return;
    }
    if (fill->mode == FILL_REVALIDATED && err == 0 && fill->reval_mismatch) {
        /* the 304 was about another representation: ours can't be refreshed from it, and the client
         * needs the current one: ask again without our validators */
        dc_log_info("upstream %s answered 304 with a validator %s does not have: fetching it again",
                    fill->ctx.route->upstream->name, fill->key);
        fill->mode = FILL_HEAD_WAIT;
        fill->unconditional = true;
        fill->reval_mismatch = false;
        start_fetch(fill);
        return;
    }
    if (fill->mode == FILL_REVALIDATED) {
        if (err != 0) {
            finish_with_error(fill, err, 0);
            client_fallback(fill, f, err, 0);
            fill_free(fill);
            return;
        }
        dc_cache_entry_t *e = build_revalidated_entry(fill, f);
        bool stored = fill->decision.verdict == DC_POLICY_STORE &&
                      dc_cache_insert(fill->ctx.worker->cache, e, dc_now_wall_ms()) == 0;
        if (stored) {
            dc_counter_add(&fill->ctx.worker->metrics.cache_stores[e->route_metric], 1);
            dc_fill_share_l2(fill->ctx.worker, e);
        }
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e, .shared_only = !stored, .fwd_status = 304};
        finish_flight(fill, &res);
        if (fill->client != NULL) {
            dc_request_t *r = fill->client;
            fill->client = NULL;
            r->fill = NULL;
            if (r->req != NULL) {
                dc_request_ref(r);
                dc_serve_entry(r, e, "HIT",
                               stored ? "dexcache; fwd=stale; fwd-status=304; stored"
                                      : "dexcache; fwd=stale; fwd-status=304");
                dc_request_unref(r);
            }
        }
        dc_cache_entry_release(e);
        fill_free(fill);
        return;
    }
    if (fill->mode == FILL_STORE || fill->mode == FILL_SHARE) {
        if (fill->completed)
            err = fill->complete_err; /* every byte had arrived: a late transport error changes nothing */
        else if (err == 0)
            err = complete_body(fill, f);
        else
            finish_with_error(fill, err, 0);
    }
    end_leader(fill, f, err);
    fill_free(fill);
}

/* Tags for purge by tag: the route prefix without its slash ("jup"), and every item of the
 * configured cdn.tag_params in the query. */
static void collect_tags(dc_fill_t *fill, const char *url)
{
    size_t cap = 4;
    fill->tags = dc_malloc(cap * sizeof(char *));
    const char *prefix = fill->ctx.route->prefix;
    fill->tags[fill->ntags++] = strcmp(prefix, "/") == 0 ? dc_strdup("root") : dc_strdup(prefix + 1);
    const char *q = strchr(url, '?');
    if (q == NULL)
        return;
    q++;
    size_t qlen = strlen(q);
    char val[2048];
    for (size_t i = 0; i < fill->ctx.route->cdn.ntag_params; i++) {
        long l = dc_cache_query_param(q, qlen, fill->ctx.route->cdn.tag_params[i], val, sizeof(val));
        if (l <= 0)
            continue;
        const char *p = val, *end = val + l;
        while (p < end) {
            const char *c = memchr(p, ',', (size_t)(end - p));
            size_t il = c ? (size_t)(c - p) : (size_t)(end - p);
            if (il > 0 && fill->ntags < 64) {
                if (fill->ntags == cap) {
                    cap *= 2;
                    fill->tags = dc_realloc(fill->tags, cap * sizeof(char *));
                }
                fill->tags[fill->ntags++] = dc_strndup(p, il);
            }
            p += il + 1;
        }
    }
}

static void fill_start(dc_request_t *client, const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                       dc_cache_entry_t *stale, bool holds_fleet_lock, bool vary_ok)
{
    dc_worker_t *w = ctx->worker;
    dc_fill_t *fill = dc_calloc(1, sizeof(*fill));
    fill->vary_ok = vary_ok;
    fill->magic = FILL_MAGIC;
    fill->ctx.worker = w;
    fill->ctx.snap = dc_snapshot_ref(ctx->snap);
    fill->ctx.route = ctx->route;
    fill->ctx.rule = ctx->rule;
    fill->ctx.up_rt = dc_snapshot_upstream_rt(ctx->snap, ctx->route->upstream);
    fill->ctx.route_metric = dc_snapshot_route_rt(ctx->snap, ctx->route)->metrics_id;
    fill->key = dc_strndup(t->key, t->key_len);
    fill->key_len = t->key_len;
    fill->hash = t->hash;
    fill->flight = flight;
    fill->fleet_lock = holds_fleet_lock;
    if (holds_fleet_lock) { /* a short lease, renewed while this fill runs (cache/l2fleet.h) */
        fill->lease_timer = dc_malloc(sizeof(*fill->lease_timer));
        uv_timer_init(&w->loop, fill->lease_timer);
        fill->lease_timer->data = fill;
        uv_timer_start(fill->lease_timer, on_lease_timer, DC_FLEET_LOCK_RENEW_MS, DC_FLEET_LOCK_RENEW_MS);
    }
    fill->stale = stale != NULL ? dc_cache_entry_ref(stale) : NULL;
    fill->client = client;
    fill->client_revalidate = client != NULL && client->client_revalidate;
    fill->client_no_store = client != NULL && client->client_no_store;
    collect_tags(fill, t->url);
    if (client != NULL)
        client->fill = fill;
    fill->url = dc_strdup(t->url);
    size_t nh = 0;
    while (t->headers[nh] != NULL)
        nh++;
    fill->hdrs = dc_calloc(nh + 1, sizeof(char *));
    for (size_t i = 0; i < nh; i++)
        fill->hdrs[i] = dc_strdup(t->headers[i]);
    start_fetch(fill);
}

/* The upstream request: our headers, gzip asked, and our stored validators when there is a stale
 * copy to revalidate (both when both exist: RFC 9110 §13.2.2 lets the origin pick). */
static void start_fetch(dc_fill_t *fill)
{
    size_t nh = 0;
    while (fill->hdrs[nh] != NULL)
        nh++;
    const char **hv = dc_calloc(nh + 4, sizeof(char *));
    memcpy(hv, fill->hdrs, nh * sizeof(char *));
    hv[nh++] = "Accept-Encoding: gzip"; /* see on_head: stored in both representations */
    char *inm = NULL, *ims = NULL;
    const dc_cache_entry_t *stale = fill->unconditional ? NULL : fill->stale;
    if (stale != NULL && stale->origin_etag != NULL)
        hv[nh++] = inm = dc_asprintf("If-None-Match: %s", stale->origin_etag);
    if (stale != NULL && stale->origin_last_modified != NULL)
        hv[nh++] = ims = dc_asprintf("If-Modified-Since: %s", stale->origin_last_modified);

    dc_worker_t *w = fill->ctx.worker;
    dc_fetch_request_t fr = {0};
    fr.method = "GET";
    fr.url = fill->url;
    fr.headers = hv;
    fr.idempotent = true;
    dc_fetch_request_from_upstream(&fr, fill->ctx.route->upstream, fill->ctx.up_rt, true, w->fleet);
    fr.background = fill->client == NULL; /* refreshes take free slots only: client misses come first */
    static const dc_fetch_callbacks_t cbs = {on_head, on_body, on_done};
    free_lines(fill->sent_lines); /* a second fetch (unconditional after a mismatched 304) */
    fill->sent_lines = dc_calloc(nh + 1, sizeof(char *));
    for (size_t i = 0; i < nh; i++)
        fill->sent_lines[i] = dc_strdup(hv[i]);
    fill->fetch = dc_fetch_start(&w->curl, &fr, &cbs, fill); /* copies the headers */
    free(inm);
    free(ims);
    free(hv);
}

void dc_fill_start(dc_request_t *client, const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                   dc_cache_entry_t *stale, bool holds_fleet_lock)
{
    fill_start(client, ctx, t, flight, stale, holds_fleet_lock, true);
}

void dc_fill_detach(struct dc_fill *fill, dc_request_t *r)
{
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    if (fill->client != r)
        return;
    fill->client = NULL;
    if (fill->mode == FILL_PASS && fill->fetch != NULL)
        abandon(fill, fill->fetch); /* a private answer nobody reads any more */
    /* STORE/SHARE/HEAD_WAIT: the fill goes on for the waiters and the cache */
}

void dc_fill_client_progress(struct dc_fill *fill)
{
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    if (fill->mode != FILL_PASS || fill->client == NULL)
        return;
    dc_body_t *followed = &fill->client->body->body;
    dc_body_release_before(followed, fill->client->acked);
    if (fill->client->body != fill->sb)
        dc_body_release_before(&fill->sb->body, fill->sb->body.len); /* the client follows the decoded stream */
    if (fill->fetch != NULL && followed->len - fill->client->acked < DC_STREAM_HIGH_WATER)
        dc_fetch_resume(fill->fetch);
}

void dc_fill_fetch_as_waiter(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_cache_entry_t *stale,
                             dc_waiter_t *waiter)
{
    dc_worker_t *w = ctx->worker;
    dc_flight_t *flight;
    if (dc_inflight_join(w->inflight, t->key, t->key_len, t->hash, waiter, &flight) == DC_INFLIGHT_JOINED)
        return;
    static const char *const headers[] = {"Accept: application/json", NULL};
    dc_fill_target_t ft = *t;
    ft.headers = headers;
    fill_start(NULL, ctx, &ft, flight, stale, false, false);
    dc_inflight_wait_on(w->inflight, flight, waiter); /* the fill runs asynchronously */
}
