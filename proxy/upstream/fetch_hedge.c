/*
 * Hedging (upstream/fetch.h): when the first attempt of an idempotent GET has no head after the
 * hedge delay (configured, or its tier's recent p95), a second attempt starts as a fetch of its own
 * (on the next tier if asked); the first good head wins, the other attempt is dropped. While the
 * hedge runs, a failed first attempt waits for it (ST_FOLLOW); once it won, the fetch reports the
 * hedge's answer (ST_ADOPTED).
 */
#include "core/error.h"
#include "core/time.h"
#include "upstream/fetch_private.h"
#include "upstream/retry.h"

#include <stdlib.h>
#include <string.h>

#define HEDGE_MIN_SAMPLES 20 /* recent heads a tier needs before its p95 is used */

static void hedge_on_head(void *data, dc_fetch_t *h);
static int hedge_on_body(void *data, dc_fetch_t *h, const char *buf, size_t len);
static void hedge_on_done(void *data, dc_fetch_t *h, int err);
static int hedge_judge(void *data, dc_fetch_t *h, bool body);

/* A final status a hedge race does not take: the other attempt may still answer well. */
bool dc__fetch_hedge_failure_status(int status)
{
    return status >= 500 || status == 429;
}

bool dc__fetch_hedge_enabled(const dc_fetch_t *f)
{
    return f->opts.hedge_after_ms > 0 && f->opts.idempotent && strcmp(f->method, "GET") == 0 &&
           f->cbs.on_head != hedge_on_head;
}

/* The delay before the hedge of this attempt: the configured one, or the p95 of its tier's recent
 * heads (not below the floor) once the tier has enough of them. */
uint64_t dc__fetch_hedge_delay_ms(const dc_fetch_t *f)
{
    uint64_t d = f->opts.hedge_after_ms;
    if (f->opts.hedge_p95 && f->health != NULL) {
        uint64_t p95 = dc_latwin_percentile_us(&f->health->latency, dc_now_mono_ms(), 95, HEDGE_MIN_SAMPLES);
        if (p95 != 0)
            d = (p95 + 999) / 1000 > f->opts.hedge_floor_ms ? (p95 + 999) / 1000 : f->opts.hedge_floor_ms;
    }
    return d;
}

static void count_hedge(dc_fetch_t *f, int outcome)
{
    dc_retry_budget_t *rb = f->opts.retry_budget;
    if (rb == NULL)
        return;
    atomic_fetch_add(outcome > 0    ? &rb->hedges_won_total
                     : outcome == 0 ? &rb->hedges_lost_total
                                    : &rb->hedges_skipped_budget_total,
                     1);
}

void dc__fetch_hedge_slot_release(dc_fetch_t *f)
{
    if (f->hedge_slot)
        dc_retry_budget_release(f->opts.retry_budget);
    f->hedge_slot = false;
}

/* An attempt set aside before its request left: its local budget slot is given back (a slot
 * reserved in Redis stays spent: safe, the fleet budget is never exceeded). */
static void give_back_unsent(dc_fetch_t *f)
{
    if (f->state != ST_ATTEMPT || !f->slot_local || f->budget == NULL || !f->xfer.active)
        return;
    long sent = 0;
    if (curl_easy_getinfo(f->xfer.easy, CURLINFO_REQUEST_SIZE, &sent) != CURLE_OK || sent > 0)
        return;
    f->slot_local = false;
    dc_budget_unreserve(f->budget, f->slot_us, f->slot_share);
}

/* The running hedge lost (the other attempt answered, or this fetch ends): none of its callbacks
 * runs any more, its transfer is removed on the next loop turn, its retry slot is returned. Never
 * called from inside the hedge's own callbacks. */
void dc__fetch_drop_hedge(dc_fetch_t *f)
{
    dc_fetch_t *h = f->hedge;
    DC_ASSERT(h != NULL && !h->in_callback);
    f->hedge = NULL;
    dc__fetch_hedge_slot_release(f);
    count_hedge(f, 0);
    h->aborted = true;
    h->data = NULL;
    if (h->queued) {
        h->queued = false;
        dc_budget_dequeued(h->budget);
    }
    if (h->state == ST_RESERVING || h->state == ST_FINISHED)
        return; /* the Redis reply releases it */
    give_back_unsent(h);
    dc__fetch_release(h);
}

/* This fetch's own attempt is over without a usable answer while its hedge runs: it waits for the
 * hedge (until its deadline); if the hedge fails too, it retries after delay_ms (retry) or reports err. */
void dc__fetch_follow_hedge(dc_fetch_t *f, int err, bool retry, uint64_t delay_ms)
{
    uint64_t now = dc_now_mono_ms();
    f->state = ST_FOLLOW;
    f->follow_err = err;
    f->follow_retry = retry;
    f->follow_delay_ms = delay_ms;
    uv_timer_start(&f->timer, dc__fetch_on_deadline, f->deadline_ms > now ? f->deadline_ms - now : 1, 0);
}

/* The hedge failed (no head, or a failure head): the fetch goes on by itself; from ST_FOLLOW it
 * retries or reports its own error, on the next loop turn (we may be inside a curl callback). */
static void hedge_failed(dc_fetch_t *f)
{
    if (f->state != ST_FOLLOW)
        return; /* its own attempt still runs */
    if (f->follow_retry && dc_retry_fits(dc_now_mono_ms(), f->follow_delay_ms, f->deadline_ms)) {
        f->state = ST_BACKOFF;
        uv_timer_start(&f->timer, dc__fetch_on_deadline, f->follow_delay_ms, 0);
        return;
    }
    dc__fetch_fail_soon(f, f->follow_err);
}

/* The first attempt has had no head for the hedge delay: one more attempt, if the retry budget and
 * the tier's budget (now, never queued: background) allow it. Runs from a timer. */
void dc__fetch_start_hedge(dc_fetch_t *f)
{
    dc_retry_budget_t *rb = f->opts.retry_budget;
    if (rb != NULL && !dc_retry_budget_acquire(rb)) {
        count_hedge(f, -1);
        return;
    }
    f->hedge_slot = rb != NULL;
    unsigned k = f->tier;
    if (f->opts.hedge_next_tier && k + 1 < f->ntiers)
        k++;
    f->hedge_tier = k;
    const char **lines = dc_calloc(f->nreq_headers + 1, sizeof(char *));
    for (size_t i = 0; i < f->nreq_headers; i++)
        lines[i] = f->req_headers[i];
    char *url = dc_asprintf("%s%s", f->tiers[k].url, f->url + f->base0_len);
    uint64_t now = dc_now_mono_ms();
    dc_fetch_request_t r = {
        .method = f->method,
        .url = url,
        .headers = lines,
        .body = f->body,
        .body_len = f->body_len,
        .idempotent = true,
        .retries = 0, /* one attempt: never retried itself */
        .connect_timeout_ms = f->opts.connect_timeout_ms,
        .timeout_ms = f->deadline_ms > now ? f->deadline_ms - now : 1, /* the same deadline */
        .idle_timeout_ms = f->opts.idle_timeout_ms,
        .http2 = f->opts.http2,
        .tls_verify = f->opts.tls_verify,
        .key_header = f->key_header,
        .fleet = f->fleet,
        .upstream_name = f->upstream_name,
        .background = true, /* a slot free now or no hedge */
        .breaker = f->opts.breaker,
        .tiers = &f->tiers[k],
        .ntiers = 1,
    };
    static const dc_fetch_callbacks_t cbs = {hedge_on_head, hedge_on_body, hedge_on_done, hedge_judge};
    f->hedge = dc_fetch_start(f->cl, &r, &cbs, f);
    free(url);
    free(lines);
}

/* The hedge's head is good and came first: this fetch reports it from now on; its own attempt is
 * set aside (its curl callbacks refuse everything; the transfer is removed on the next loop turn). */
static void adopt_hedge(dc_fetch_t *f, dc_fetch_t *h)
{
    count_hedge(f, 1);
    f->hedge = NULL; /* the slot stays held until the winner ends */
    f->winner = h;
    f->attempts += h->attempts;
    f->hedge_attempts += h->attempts;
    f->tier = f->hedge_tier;
    f->tried |= 1u << f->hedge_tier;
    f->key_index = h->key_index;
    f->head_us = dc_now_mono_us() - f->started_us;
    f->head_delivered = true;
    f->hedge_at_ms = 0;
    if (f->state == ST_ATTEMPT && f->health != NULL) /* a lower bound of its latency: the tail p95 must see */
        dc_latwin_record(&f->health->latency, dc_now_mono_ms(), dc_now_mono_us() - f->attempt_started_us);
    if (f->state == ST_ATTEMPT && f->xfer.active) {
        give_back_unsent(f);
        f->discard = true;
        uv_timer_start(&f->timer, dc__fetch_on_drop_timer, 0, 0);
    } else {
        uv_timer_stop(&f->timer);
    }
    f->state = ST_ADOPTED;
}

static void hedge_on_head(void *data, dc_fetch_t *h)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    DC_ASSERT(f->hedge == h);
    /* a status the caller's judge refuses (fail_statuses) loses like a 5xx: the first attempt goes on */
    if (dc__fetch_hedge_failure_status(h->status) || (f->cbs.judge != NULL && f->cbs.judge(f->data, h, false) != 0)) {
        f->hedge = NULL;
        dc__fetch_hedge_slot_release(f);
        count_hedge(f, 0);
        dc_fetch_abort(h); /* from its own callback: it ends with an error, no callback runs any more */
        hedge_failed(f);
        return;
    }
    adopt_hedge(f, h);
    f->cbs.on_head(f->data, f);
}

static int hedge_on_body(void *data, dc_fetch_t *h, const char *buf, size_t len)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    DC_ASSERT(f->winner == h);
    return f->cbs.on_body(f->data, f, buf, len);
}

/* The hedge's judge: once its answer is ours (adopted), the caller's verdict on its body. Its head
 * was judged in hedge_on_head, before adoption. */
static int hedge_judge(void *data, dc_fetch_t *h, bool body)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (!body || f->cbs.judge == NULL || f->state != ST_ADOPTED || f->winner != h)
        return 0;
    return f->cbs.judge(f->data, f, true);
}

static void hedge_on_done(void *data, dc_fetch_t *h, int err)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    dc__fetch_hedge_slot_release(f);
    if (f->state == ST_ADOPTED) {
        DC_ASSERT(f->winner == h);
        if (err == DC_EVALIDATION) {
            /* the winner's answer failed the caller's judge: like a rejected answer of our own, the
             * fetch goes on (another tier, or a retry: the hedge did not use up the retries) */
            f->winner = NULL;
            if (f->xfer.active)
                dc_curl_loop_remove(f->cl, &f->xfer); /* our own attempt, set aside at the adoption */
            if (dc__fetch_retry_rejected(f))
                return;
            f->state = ST_ATTEMPT; /* what finish expects of a fetch reporting itself */
            dc__fetch_finish(f, err);
            return;
        }
        dc__fetch_finish(f, err); /* accessors still read the winner during on_done */
        f->winner = NULL;
        return;
    }
    DC_ASSERT(f->hedge == h);
    f->hedge = NULL;
    count_hedge(f, err == DC_EAGAIN ? -1 : 0);
    hedge_failed(f);
}
