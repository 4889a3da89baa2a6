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
#include "cache/policy.h"
#include "cache/variants.h"
#include "cache/validate.h"
#include "cache/vary.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/condserve.h"
#include "http/fill_private.h"
#include "http/request.h"
#include "http/steps.h"
#include "http/resphdr.h"
#include "http/vary.h"
#include "upstream/upstream_state.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void start_fetch(dc_fill_t *fill);
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

void dc__fill_finish_flight(dc_fill_t *fill, const dc_flight_result_t *res)
{
    release_fleet_lock(fill);
    if (fill->flight == NULL)
        return;
    dc_flight_t *f = fill->flight;
    fill->flight = NULL;
    dc_flight_result_t with = *res;
    with.fetched = fill->upstream;
    dc_inflight_finish(fill->ctx.worker->inflight, f, &with);
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
void dc__fill_abandon(dc_fill_t *fill, dc_fetch_t *f)
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

void dc__fill_mark_pass(dc_fill_t *fill, uint64_t now)
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
    const char *detail = fill->decision.verdict != DC_POLICY_STORE ? dc_policy_verdict_name(fill->decision.verdict)
                         : fill->pass_detail != NULL               ? fill->pass_detail
                                                                   : "too-big";
    dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS, .fwd_status = status, .detail = detail};
    dc__fill_finish_flight(fill, &res);
    dc__fill_mark_pass(fill, now);
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
void dc__fill_client_fallback(dc_fill_t *fill, dc_fetch_t *f, int err, int fwd_status)
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
        if (fill->fail_reason != NULL)
            snprintf(cs, sizeof(cs), "dexcache; fwd=stale; fwd-status=%d; detail=invalid", dc_fetch_status(f));
        else if (fwd_status != 0)
            snprintf(cs, sizeof(cs), "dexcache; fwd=stale; fwd-status=%d", fwd_status);
        else
            snprintf(cs, sizeof(cs), "dexcache; fwd=stale; detail=%s", err == DC_ETIMEDOUT ? "timeout" : "error");
        dc_serve_entry(r, fill->stale, "STALE", h2o_strdup(&r->req->pool, cs, strlen(cs)).base);
    } else if (fill->fail_reason != NULL) {
        dc_request_respond_error(r, 502, fill->fail_reason);
    } else {
        dc_request_respond_fetch_error(r, f, err);
    }
    dc_request_unref(r);
}

/* Waiters get the stale copy when one is usable, else the error. A stale copy whose refresh
 * failed at the origin backs off: no new refresh of it for a pause that grows with each failure
 * (refusals by our own budget or breaker sent nothing and do not count). */
void dc__fill_finish_with_error(dc_fill_t *fill, int err, int fwd_status)
{
    uint64_t now = dc_now_wall_ms();
    if (fill->stale != NULL && err != DC_EAGAIN && err != DC_EUNAVAIL) {
        const dc_config_upstream_t *up = fill->ctx.route->upstream;
        dc_breaker_params_t bp = dc_upstream_breaker_params(up, 0);
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
        res.status = fill->fail_reason != NULL ? 502 : err == DC_ETIMEDOUT ? 504 : (later ? 503 : 502);
        res.retry_after_s = later ? fill->retry_after_s : 0;
        if (fill->fail_reason == NULL && err != DC_EAGAIN && fill->cause != DC_CAUSE_NONE) {
            /* upstream and cause: the failure itself, or the one that opened the breaker */
            snprintf(res.upstream, sizeof(res.upstream), "%s", fill->cause_upstream);
            snprintf(res.cause, sizeof(res.cause), "%s", fill->cause_text);
        }
        if (fill->fail_reason == NULL && !later && fill->cause != DC_CAUSE_NONE) {
            res.status = dc_upstream_cause_status(fill->cause);
            res.retry_after_s = dc_upstream_cause_retry_after_s(fill->cause);
            res.message = dc_upstream_cause_message(fill->cause);
            dc__fill_finish_flight(fill, &res);
            return;
        }
        res.message = fill->fail_reason != NULL ? fill->fail_reason
                      : err == DC_ETIMEDOUT     ? "upstream timed out"
                      : err == DC_EAGAIN        ? "upstream budget exhausted"
                      : err == DC_EUNAVAIL      ? "upstream unavailable: circuit breaker open or cordoned"
                      : err == DC_ECONNREFUSED  ? "upstream connection refused"
                      : err == DC_EPROTO        ? "upstream sent an invalid response"
                                                : "upstream failed";
    }
    dc__fill_finish_flight(fill, &res);
}

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

/* The response head as on_head's steps read it (read once: max_object may change on a reload). */
typedef struct head {
    dc_fetch_t *f;
    int status;
    const dc_fetch_header_t *hs;
    size_t n;
    int64_t cl;          /* Content-Length, or -1 */
    uint64_t max_object; /* cache.max_object */
    uint64_t now;        /* wall clock, ms */
} head_t;

/* stale-if-error at the head: an origin 5xx or 429 while the stale copy may stand in for it. The
 * failing answer is dropped and everyone gets the stale copy; the fill is freed. Returns whether
 * it was. */
static bool stale_if_error_at_head(dc_fill_t *fill, const head_t *h)
{
    if (!((h->status >= 500 || h->status == 429) && dc_cache_entry_stale_usable(fill->stale, h->now)))
        return false;
    dc__fill_finish_with_error(fill, DC_EUPSTREAM, h->status);
    dc__fill_client_fallback(fill, h->f, DC_EUPSTREAM, h->status);
    dc__fill_abandon(fill, h->f);
    return true;
}

/* The policy's verdict on the head (fill->decision), and the fill's mode from it (see the file
 * comment). A STORE without an origin ETag starts the digest of our own. */
/* Does a comma-separated field value name `tok` (case-insensitive), or "*"? */
static bool list_names(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s0 = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s0 && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if ((e - s0 == tl && strncasecmp(v + s0, tok, tl) == 0) || (e - s0 == 1 && v[s0] == '*'))
            return true;
    }
    return false;
}

/* An answer granting one origin (Access-Control-Allow-Origin other than "*") to a fetch that sent an
 * Origin, without Vary: Origin, was made for that origin: stored, it would grant it to every other
 * (CORS poisoning through an origin that echoes Origin). Private to its client. */
static bool grants_one_origin(const dc_fill_t *fill, const head_t *h)
{
    size_t al;
    const char *acao = dc_resphdr_find(h->hs, h->n, "access-control-allow-origin", &al);
    if (acao == NULL || (al == 1 && acao[0] == '*'))
        return false;
    bool sent_origin = false;
    for (size_t i = 0; fill->sent_lines != NULL && fill->sent_lines[i] != NULL && !sent_origin; i++)
        sent_origin = strncasecmp(fill->sent_lines[i], "origin:", 7) == 0;
    if (!sent_origin)
        return false; /* the origin saw no Origin: its grant is the same for everyone */
    for (size_t i = 0; i < h->n; i++)
        if (h->hs[i].name_len == 4 && memcmp(h->hs[i].name, "vary", 4) == 0 &&
            list_names(h->hs[i].value, h->hs[i].value_len, "origin"))
            return false; /* keyed by Origin (Vary variants) */
    return true;
}

static void decide_mode(dc_fill_t *fill, const head_t *h)
{
    dc_policy_request_t preq = {.method_cacheable = true, .has_authorization = false, .client_no_cache = false};
    dc_policy_response_t pres;
    dc_resphdr_policy_view(h->status, h->hs, h->n, &pres);
    pres.response_delay_ms = dc_fetch_head_us(h->f) / 1000u;
    vary_at_head(fill, h->hs, h->n, &pres);
    dc_policy_decide(fill->ctx.rule, &preq, &pres, h->now, &fill->decision);
    dc_policy_verdict_t v = fill->decision.verdict;
    if (h->status == 206) {
        /* we never ask for a range on the cache path (request.c): a partial answer is nobody's */
        fill->decision.verdict = DC_POLICY_STATUS;
        fill->mode = FILL_PASS;
    } else if (v == DC_POLICY_STORE && h->cl >= 0 && (uint64_t)h->cl > h->max_object) {
        dc_cache_note_too_big(fill->ctx.worker->cache);
        fill->mode = FILL_PASS;
    } else if (v == DC_POLICY_STORE && grants_one_origin(fill, h)) {
        fill->mode = FILL_PASS;
        fill->pass_detail = "cors-origin";
    } else if (v == DC_POLICY_STORE && fill->client_no_store) {
        fill->mode = FILL_SHARE; /* request no-store (RFC 9111 §5.2.1.5): collapsed waiters share it, unstored */
    } else if (v == DC_POLICY_STORE) {
        fill->mode = FILL_STORE;
        size_t et_len;
        if (dc_resphdr_find(h->hs, h->n, "etag", &et_len) == NULL) { /* our own tag only where the origin gave none */
            mbedtls_sha256_init(&fill->sha);
            mbedtls_sha256_starts_ret(&fill->sha, 0);
            fill->sha_on = true;
        }
    } else if (v == DC_POLICY_STATUS || v == DC_POLICY_ZERO_TTL || v == DC_POLICY_NO_FRESHNESS) {
        fill->mode = FILL_SHARE;
    } else {
        fill->mode = FILL_PASS;
    }
}

/* Does the leader's client (still there) accept gzip? */
static bool leader_accepts_gzip(const dc_fill_t *fill)
{
    if (fill->client == NULL || fill->client->req == NULL)
        return false;
    h2o_req_t *creq = fill->client->req;
    ssize_t ae = h2o_find_header(&creq->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    return ae >= 0 && dc_encoding_negotiate(creq->headers.entries[ae].value.base, creq->headers.entries[ae].value.len,
                                            1u << DC_ENC_GZIP) == DC_ENC_GZIP;
}

/* We ask cacheable answers in gzip (a fraction of the bytes on the wire). A gzipped answer is
 * inflated as it arrives: the entry keeps both, and clients that do not accept gzip follow the
 * decoded stream. Other codings can't be turned into identity here: private to the leader. */
static void start_decoding(dc_fill_t *fill, const head_t *h, bool client_gzip)
{
    size_t ce_len;
    const char *ce = dc_resphdr_find(h->hs, h->n, "content-encoding", &ce_len);
    int enc = ce != NULL ? dc_encoding_parse(ce, ce_len) : DC_ENC_IDENTITY;
    if (enc != DC_ENC_IDENTITY && enc != DC_ENC_GZIP)
        turn_pass(fill, h->status, h->now, "content-encoding");
    if (enc != DC_ENC_GZIP || (fill->mode == FILL_PASS && client_gzip))
        return;
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
        turn_pass(fill, h->status, h->now, "content-encoding");
    }
}

/* The fetch makes another attempt after our judge rejected the answer it had delivered: nobody saw
 * any of that answer (it was held for validation), so all that its head and body made is dropped. */
static void drop_attempt(dc_fill_t *fill)
{
    DC_ASSERT(!fill->leader_started && fill->growing == NULL);
    dc_shared_body_release(fill->sb);
    fill->sb = NULL;
    dc_shared_body_release(fill->sb_ident);
    fill->sb_ident = NULL;
    if (fill->inflating)
        inflateEnd(&fill->zs);
    fill->inflating = false;
    if (fill->sha_on)
        mbedtls_sha256_free(&fill->sha);
    fill->sha_on = false;
    free(fill->vary_key);
    fill->vary_key = NULL;
    fill->vary_key_len = fill->vary_names_len = 0;
    fill->completed = fill->checked = fill->validating = fill->leader_decoded = false;
    fill->complete_err = fill->check_err = 0;
    fill->fail_reason = NULL;
    fill->pass_detail = NULL;
    fill->digest_tag[0] = '\0';
    fill->mode = FILL_HEAD_WAIT;
}

int dc__fill_judge(void *data, dc_fetch_t *f, bool body)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    if (!body) {
        /* fail_statuses: another tier may answer better; if none can, on_head fails it */
        if (!dc_validate_status_fails(fill->ctx.rule, dc_fetch_status(f)))
            return 0;
        fill->judged = true;
        return DC_EVALIDATION;
    }
    if (!fill->validating || fill->completed)
        return 0;
    fill->judged = true;
    return dc__fill_check_body(fill) == 0 ? 0 : DC_EVALIDATION;
}

static void on_head(void *data, dc_fetch_t *f)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    if (fill->sb != NULL)
        drop_attempt(fill); /* a head again: our judge rejected the last answer */
    head_t h = {.f = f, .status = dc_fetch_status(f), .now = dc_now_wall_ms()};
    h.hs = dc_fetch_headers(f, &h.n);

    if (stale_if_error_at_head(fill, &h))
        return;
    if (h.status == 304 && fill->stale != NULL && !fill->unconditional) {
        /* our copy is still good: on_done builds its successor (no body to wait for), unless the
         * 304 names another representation (RFC 9111 §4.3.4): then on_done asks again, unconditionally */
        fill->mode = FILL_REVALIDATED;
        fill->reval_mismatch = !dc__fill_reval_304_selects(fill->stale, h.hs, h.n);
        return;
    }
    if (h.status == 304) {
        /* a 304 to a request without our validators answers nothing (RFC 9110 15.4.5): relayed, a
         * client that never asked a conditional question would get an empty answer */
        dc_log_warn("upstream %s answered 304 to an unconditional request", fill->url);
        dc__fill_finish_with_error(fill, DC_EPROTO, 0);
        dc__fill_client_fallback(fill, f, DC_EPROTO, 0);
        dc__fill_abandon(fill, f);
        return;
    }

    if (dc__fill_status_fails(fill, h.status)) { /* fail_statuses: an upstream error, whatever the policy says */
        dc__fill_finish_with_error(fill, DC_EUPSTREAM, h.status);
        dc__fill_client_fallback(fill, f, DC_EUPSTREAM, h.status);
        dc__fill_abandon(fill, f);
        return;
    }

    h.cl = dc_fetch_content_length(f);
    h.max_object = dc_cache_max_object(fill->ctx.worker->cache);
    decide_mode(fill, &h);
    fill->validating =
        (fill->mode == FILL_STORE || fill->mode == FILL_SHARE) && dc__fill_wants_validation(fill, h.status);
    if (fill->mode == FILL_PASS)
        announce_pass(fill, h.status, h.now);
    dc_body_t body;
    dc_body_init(&body, h.cl > 0 && (uint64_t)h.cl <= h.max_object ? (size_t)h.cl : 0);
    fill->sb = dc_shared_body_create(&body);
    bool client_gzip = leader_accepts_gzip(fill);
    start_decoding(fill, &h, client_gzip);

    fill->upstream = (dc_flight_upstream_t){dc_fetch_head_us(f), dc_fetch_attempts(f), dc_fetch_tier(f)};
    if (fill->client != NULL && fill->client->req != NULL) {
        fill->client->attempts = dc_fetch_attempts(f);
        fill->leader_decoded = fill->inflating && !client_gzip;
        /* the response starts in start_leader(), once the body is complete or large */
    } else if (fill->mode == FILL_PASS) {
        fill->client = NULL;
        dc__fill_abandon(fill, f); /* nobody needs these bytes */
    }
}

/* No answer at all (connect error, timeout, reset, or no budget), or a failed revalidation:
 * waiters and the leader get the stale copy or the error, and the fill is freed. */
static void fail_without_answer(dc_fill_t *fill, dc_fetch_t *f, int err)
{
    dc__fill_finish_with_error(fill, err, 0);
    dc__fill_client_fallback(fill, f, err, 0);
    fill_free(fill);
}

/* The 304 was about another representation: ours can't be refreshed from it, and the client needs
 * the current one: ask again without our validators. */
static void refetch_unconditional(dc_fill_t *fill)
{
    dc_log_info("upstream %s answered 304 with a validator %s does not have: fetching it again",
                fill->ctx.route->upstream->name, fill->key);
    fill->mode = FILL_HEAD_WAIT;
    fill->unconditional = true;
    fill->reval_mismatch = false;
    start_fetch(fill);
}

/* A 304 selected our stale copy: its successor is stored (when the policy still says so), handed
 * to the waiters and served to the leader as a HIT; the fill is freed. */
static void finish_revalidated(dc_fill_t *fill, dc_fetch_t *f)
{
    dc_cache_entry_t *e = dc__fill_build_revalidated_entry(fill, f);
    bool stored =
        fill->decision.verdict == DC_POLICY_STORE && dc_cache_insert(fill->ctx.worker->cache, e, dc_now_wall_ms()) == 0;
    if (stored) {
        dc_counter_add(&fill->ctx.worker->metrics.cache_stores[e->route_metric], 1);
        dc_fill_share_l2(fill->ctx.worker, e);
    }
    dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY, .entry = e, .shared_only = !stored, .fwd_status = 304};
    dc__fill_finish_flight(fill, &res);
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
}

static void on_done(void *data, dc_fetch_t *f, int err)
{
    dc_fill_t *fill = data;
    DC_CHECK_MAGIC(fill, FILL_MAGIC);
    dc_request_record_upstream(fill->ctx.worker, fill->ctx.up_rt, f, err);
    fill->upstream = (dc_flight_upstream_t){dc_fetch_head_us(f), dc_fetch_attempts(f), dc_fetch_tier(f)};
    fill->fetch = NULL;
    fill->cause = err != 0 ? dc_fetch_cause(f) : DC_CAUSE_NONE;
    if (fill->cause != DC_CAUSE_NONE) {
        snprintf(fill->cause_upstream, sizeof(fill->cause_upstream), "%s", dc_fetch_cause_upstream(f));
        snprintf(fill->cause_text, sizeof(fill->cause_text), "%s", dc_fetch_cause_text(f));
    }
    if (fill->client != NULL) {
        fill->client->attempts = dc_fetch_attempts(f);
        fill->client->upstream_us = dc_fetch_head_us(f);
    }
    if (fill->mode == FILL_HEAD_WAIT) {
        if (err == DC_EAGAIN || err == DC_EUNAVAIL)
            fill->retry_after_s = (uint32_t)((dc_fetch_retry_after_ms(f) + 999) / 1000);
        fail_without_answer(fill, f, err);
        return;
    }
    if (fill->mode == FILL_REVALIDATED) {
        if (err != 0)
            fail_without_answer(fill, f, err);
        else if (fill->reval_mismatch)
            refetch_unconditional(fill);
        else
            finish_revalidated(fill, f);
        return;
    }
    if (fill->mode == FILL_STORE || fill->mode == FILL_SHARE) {
        if (fill->completed)
            err = fill->complete_err; /* every byte had arrived: a late transport error changes nothing */
        else if (err == 0)
            err = dc__fill_complete_body(fill, f);
        else
            dc__fill_finish_with_error(fill, err, 0);
    }
    dc__fill_end_leader(fill, f, err);
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
    const dc_config_hedge_t *hg = fill->ctx.rule != NULL ? &fill->ctx.rule->hedge : NULL;
    if (hg != NULL && hg->enabled && hg->max > 0) { /* cache fills and refreshes only: always GET */
        fr.hedge_after_ms = hg->p95 ? hg->fallback_ms : hg->after_ms;
        fr.hedge_p95 = hg->p95;
        fr.hedge_floor_ms = hg->floor_ms;
        fr.hedge_next_tier = hg->tier == DC_HEDGE_TIER_NEXT;
    }
    static const dc_fetch_callbacks_t cbs = {on_head, dc__fill_on_body, on_done, dc__fill_judge};
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
        dc__fill_abandon(fill, fill->fetch); /* a private answer nobody reads any more */
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
                             dc_waiter_t *waiter, bool through_fleet)
{
    dc_worker_t *w = ctx->worker;
    dc_flight_t *flight;
    if (dc_inflight_join(w->inflight, t->key, t->key_len, t->hash, waiter, &flight) == DC_INFLIGHT_JOINED)
        return;
    static const char *const headers[] = {"Accept: application/json", NULL};
    dc_fill_target_t ft = *t;
    ft.headers = headers;
    dc_inflight_wait_on(w->inflight, flight, waiter); /* the answer comes later, whichever way */
    if (through_fleet)
        dc__http_lead_shared_fill(ctx, &ft, flight, stale);
    else
        fill_start(NULL, ctx, &ft, flight, stale, false, false);
}

void dc_fill_start_shared(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                          dc_cache_entry_t *stale, bool holds_fleet_lock)
{
    fill_start(NULL, ctx, t, flight, stale, holds_fleet_lock, false);
}
