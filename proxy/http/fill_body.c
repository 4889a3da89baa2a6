/*
 * A fill's body as it arrives: decoded when the origin sent gzip, streamed to waiters on other
 * workers once it is large, followed by the leader (whose response head goes out once the body is
 * complete or large: fill.c's file comment), and, complete, stored and handed to the waiters.
 */
#include "cache/encode.h"
#include "cache/growing.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "cache/variants.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/cdn.h"
#include "http/condserve.h"
#include "http/fill_private.h"
#include "http/request.h"
#include "http/resphdr.h"
#include "http/vary.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A large answer streams to the waiters (on any worker) from now on, as it arrives. */
static void stream_to_waiters(dc_fill_t *fill, dc_fetch_t *f)
{
    int64_t cl = dc_fetch_content_length(f);
    dc_shared_body_t *identity = fill->inflating ? fill->sb_ident : fill->sb;
    fill->growing = dc_growing_create(identity, fill->inflating || cl < 0 ? 0 : (size_t)cl);
    if (fill->inflating)
        fill->growing_gz = dc_growing_create(fill->sb, cl < 0 ? 0 : (size_t)cl);
    dc_cache_entry_t *preview = dc__fill_entry_from_head(fill, f);
    dc_flight_result_t res = {.outcome = DC_FLIGHT_STREAM,
                              .entry = preview,
                              .growing = fill->growing,
                              .growing_gz = fill->growing_gz,
                              .fwd_status = dc_fetch_status(f),
                              .fetched = fill->upstream};
    dc_inflight_stream(fill->ctx.worker->inflight, fill->flight, &res);
    dc_cache_entry_release(preview);
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
                          flags | ranges | (dc__fill_drop_cdn_cache_control(fill) ? DC_HEAD_SKIP_CDN_CC : 0) |
                              /* the route's Cache-Control for the CDN drops the origin's field-name qualifiers: the
                               * fields they name must not reach a shared cache with it (RFC 9111 5.2.2.4, 5.2.2.7) */
                              (with_cdn && fill->decision.strip_fields ? DC_HEAD_STRIP_QUALIFIED : 0),
                          range_len);
    if (with_cdn)
        dc_cdn_headers_dispose(&cdn);
}

/* The fetch is over for the leader: its response ends (err == 0), is cut (it had started), or is
 * answered with the stale copy or an error instead (it had not). */
void dc__fill_end_leader(dc_fill_t *fill, dc_fetch_t *f, int err)
{
    if (fill->client == NULL)
        return;
    if (err == 0)
        start_leader(fill, f);
    if (!fill->leader_started) {
        dc__fill_client_fallback(fill, f, err != 0 ? err : DC_EUPSTREAM, 0);
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
        dc__fill_finish_with_error(fill, DC_EUPSTREAM, 0);
    dc__fill_end_leader(fill, f, DC_EUPSTREAM);
    dc__fill_abandon(fill, f);
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

int dc__fill_on_body(void *data, dc_fetch_t *f, const char *buf, size_t len)
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
        dc_growing_mark_too_big(fill->growing);
        fail_mid_body(fill, f);
        return 0;
    }
    if (fill->mode == FILL_STORE && identity->body.len + len > dc_cache_max_object(fill->ctx.worker->cache)) {
        /* larger than any entry may be: stop sharing, keep streaming to the leader */
        dc_cache_note_too_big(fill->ctx.worker->cache);
        fill->mode = FILL_PASS;
        dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS, .fwd_status = dc_fetch_status(f), .detail = "too-big"};
        dc__fill_finish_flight(fill, &res);
        dc__fill_mark_pass(fill, dc_now_wall_ms());
        if (fill->client == NULL) {
            dc__fill_abandon(fill, f);
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
        fill->sb->body.len == (size_t)cl && !fill->validating)
        fill->complete_err = dc__fill_complete_body(fill, f); /* a validated one: after the verdict (judge) */
    /* a body being validated is held back whole (up to DC_VALIDATE_MAX_BODY): nobody sees an answer
     * that may still fail */
    bool held = !fill->completed && dc__fill_holds_for_validation(fill);
    if (fill->mode == FILL_STORE && fill->flight != NULL && fill->growing == NULL && !fill->completed && !held &&
        identity->body.len >= STREAM_TO_WAITERS_MIN)
        stream_to_waiters(fill, f);
    if (fill->client != NULL && !fill->leader_started) {
        dc_shared_body_t *followed = fill->leader_decoded ? fill->sb_ident : fill->sb;
        if ((fill->completed && fill->complete_err == 0) || (followed->body.len >= HOLD_HEAD_MAX && !held))
            start_leader(fill, f);
    }
    if (fill->client != NULL && fill->leader_started)
        dc_serve_follow_pump(fill->client);
    return 0;
}

/* Every byte of a STORE/SHARE answer is here: store it and hand it to the waiters. Called from
 * dc__fill_on_body as soon as Content-Length bytes have arrived (before the leader is sent its last bytes,
 * so a client that saw a complete answer finds it stored), or from on_done otherwise. Returns 0 or
 * the error that made the body unusable. */
int dc__fill_check_body(dc_fill_t *fill)
{
    if (fill->checked)
        return fill->check_err;
    fill->checked = true;
    int err = 0;
    if (fill->inflating && fill->zs.total_in > 0 && inflate(&fill->zs, Z_FINISH) != Z_STREAM_END) {
        dc_log_warn("upstream %s sent a truncated gzip body for %s", fill->ctx.route->upstream->name, fill->key);
        err = DC_EUPSTREAM;
    }
    if (err == 0)
        err = dc__fill_validate_body(fill);
    fill->check_err = err;
    return err;
}

int dc__fill_complete_body(dc_fill_t *fill, dc_fetch_t *f)
{
    fill->completed = true;
    int err = dc__fill_check_body(fill);
    if (err != 0) {
        dc__fill_finish_with_error(fill, err, fill->fail_reason != NULL ? dc_fetch_status(f) : 0);
        return err;
    }
    dc_cache_entry_t *e = dc__fill_build_entry(fill, f);
    bool stored = false;
    unsigned want = fill->mode == FILL_STORE ? dc_variants_wanted(e) : 0;
    unsigned now_part = dc_variants_inline_part(e, want);
    if (now_part != 0) {
        dc_variants_make_inline(e, now_part);
        want &= ~now_part;
    }
    if (fill->mode == FILL_STORE) {
        if (fill->vary_key != NULL)
            dc__fill_store_vary_record(fill, e);
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
    dc__fill_finish_flight(fill, &res);
    dc_cache_entry_release(e);
    if (fill->growing != NULL) {
        dc_growing_end(fill->growing, false);
        if (fill->growing_gz != NULL)
            dc_growing_end(fill->growing_gz, false);
        fill->growing_ended = true;
    }
    return 0;
}