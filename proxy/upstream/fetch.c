/*
 * An upstream fetch's lifecycle (upstream/fetch.h): dc_fetch_start, the retry decisions after an
 * attempt (retry, fail over to another tier, retry after the caller's judge), the one timer that
 * carries every deadline (whole response, idle body, attempt timeout, backoff, the budget queue,
 * the hedge's moment), the end (finish reports once, release frees once no transfer is active),
 * dc_fetch_resume / dc_fetch_abort, and the accessors, which read the hedge's answer once it won.
 * The transfer itself is fetch_xfer.c's, tiers and budgets fetch_slot.c's, hedging fetch_hedge.c's,
 * failure causes fetch_cause.c's (fetch_private.h has the map).
 */
#include "core/error.h"
#include "core/time.h"
#include "upstream/fetch_private.h"
#include "upstream/retry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Report `err` on the next loop turn. */
void dc__fetch_fail_soon(dc_fetch_t *f, int err)
{
    f->state = ST_FAILING;
    f->pending_err = err;
    uv_timer_start(&f->timer, dc__fetch_on_deadline, 0, 0);
}

/* 429: when may we come back? Retry-After (seconds or a date), else Jupiter's x-ratelimit-reset
 * (absolute Unix seconds), else unknown (0: the budget assumes 1 s). */
uint64_t dc__fetch_retry_after_us_from(const dc_fetch_t *f)
{
    return dc_retry_after_us(f->headers, f->nheaders, dc_now_wall_ms());
}

void dc__fetch_reset_head(dc_fetch_t *f)
{
    for (size_t i = 0; i < f->nheaders; i++) {
        free(f->headers[i].name); /* the value shares its allocation (store_header_line) */
    }
    f->nheaders = 0;
    free(f->reason);
    f->reason = NULL;
    f->status = 0;
    f->content_length = -1;
    dc_framing_init(&f->framing);
}

static void fetch_free(dc_fetch_t *f)
{
    dc__fetch_reset_head(f);
    free(f->headers);
    free(f->req_headers); /* the lines live in the same block (dc_fetch_start) */
    free(f->method);
    free(f->url);
    free(f->body);
    free(f->key_header);
    free(f->upstream_name);
    free(f->budget_name);
    free(f->group_budget_name);
    free(f->attempt_url);
    if (f->slist)
        curl_slist_free_all(f->slist);
    DC_ASSERT(f->xfer.easy == NULL); /* given back to the loop by dc__fetch_release() */
    f->magic = 0;
    free(f);
}

static void on_timer_closed(uv_handle_t *h)
{
    fetch_free(h->data);
}

/* The transfer of a fetch being released or set aside: removed here, outside any curl callback. */
void dc__fetch_on_drop_timer(uv_timer_t *t)
{
    dc_fetch_t *f = t->data;
    if (f->xfer.active)
        dc_curl_loop_remove(f->cl, &f->xfer);
    if (f->release_pending) {
        f->release_pending = false;
        dc__fetch_release(f);
    }
}

/* Release everything once no curl transfer is active. A transfer still active (a hedge that lost, a
 * fetch whose hedge won: this may run inside another transfer's curl callback, where libcurl refuses
 * curl_multi_remove_handle) is removed on the next loop turn first. */
void dc__fetch_release(dc_fetch_t *f)
{
    if (f->hedge != NULL)
        dc__fetch_drop_hedge(f);
    dc__fetch_hedge_slot_release(f);
    if (f->xfer.active) {
        f->state = ST_FINISHED;
        f->release_pending = true;
        uv_timer_start(&f->timer, dc__fetch_on_drop_timer, 0, 0);
        return;
    }
    if (f->holds_retry)
        dc_retry_budget_release(f->opts.retry_budget);
    if (f->counted)
        dc_retry_budget_leave(f->opts.retry_budget);
    f->holds_retry = f->counted = false;
    f->state = ST_FINISHED;
    if (f->xfer.active) /* never expected: every caller ends the transfer first */
        dc_curl_loop_remove(f->cl, &f->xfer);
    dc_curl_easy_put(f->cl, f->xfer.easy); /* for the worker's next transfers */
    f->xfer.easy = NULL;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

/* Failovers to another tier do not count against `retries`: those count rounds over the tiers. */
bool dc__fetch_can_retry(dc_fetch_t *f)
{
    return dc_retry_allowed(f->opts.idempotent, f->attempts - f->failovers - f->hedge_attempts, f->opts.retries,
                            f->aborted);
}

/* A retry or a failover may start: the upstream's retry budget has a slot (one per fetch, held
 * until it ends), or there is no retry budget. */
bool dc__fetch_take_retry_slot(dc_fetch_t *f)
{
    dc_retry_budget_t *rb = f->opts.retry_budget;
    if (rb == NULL)
        return true;
    if (f->holds_retry) {
        atomic_fetch_add(&rb->allowed_total, 1);
        return true;
    }
    f->holds_retry = dc_retry_budget_acquire(rb);
    return f->holds_retry;
}

/* Could a tier not tried in this round take an attempt now (not cordoned, breaker not open)? */
static bool untried_tier_ready(dc_fetch_t *f)
{
    uint64_t now = dc_now_mono_ms();
    for (size_t i = 0; i < f->ntiers; i++) {
        dc_upstream_state_t *h = f->tiers[i].health;
        if (f->tried & (1u << i))
            continue;
        if (h != NULL &&
            (atomic_load(&h->cordoned) || dc_upstream_state_peek(h, &f->opts.breaker, now) == DC_BREAKER_OPEN))
            continue;
        return true;
    }
    return false;
}

/* After a failed attempt: does the next one move down to another tier, at once? Takes a retry
 * slot when it does (see tier.h for who may fail over). */
bool dc__fetch_plan_failover(dc_fetch_t *f, dc_tier_fail_t why)
{
    if (f->aborted || f->ntiers < 2 || !dc_tier_may_fail_over(f->opts.idempotent, why) || !untried_tier_ready(f))
        return false;
    if (!dc__fetch_take_retry_slot(f))
        return false;
    f->failover_next = true;
    if (f->opts.retry_budget != NULL)
        atomic_fetch_add(&f->opts.retry_budget->failovers_total, 1);
    return true;
}

/* An answer the caller's judge rejected (fetch.h): may another attempt be made, now on another
 * tier or after the backoff? Takes the retry slot when it may. */
bool dc__fetch_judged_retry(dc_fetch_t *f)
{
    if (f->hedge != NULL)
        return false; /* the running hedge is that other attempt */
    if (dc__fetch_plan_failover(f, DC_TIER_FAIL_VALIDATION))
        return true;
    uint64_t delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers, 0);
    return dc__fetch_can_retry(f) && dc_retry_fits(dc_now_mono_ms(), delay, f->deadline_ms) &&
           dc__fetch_take_retry_slot(f);
}

bool dc__fetch_retry_rejected(dc_fetch_t *f)
{
    if (!dc__fetch_judged_retry(f))
        return false;
    f->head_delivered = false; /* the caller waits for the next attempt's head */
    uint64_t delay = 0;
    if (!f->failover_next) {
        delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers - f->hedge_attempts, random());
        f->tried = 0;
    }
    f->last_err = DC_EVALIDATION;
    f->state = ST_BACKOFF;
    uv_timer_start(&f->timer, dc__fetch_on_deadline, delay, 0);
    return true;
}

/* ---- timers ---- */

void dc__fetch_on_deadline(uv_timer_t *t)
{
    dc_fetch_t *f = t->data;
    if (f->state == ST_FINISHED)
        return;
    if (f->state == ST_BACKOFF) {
        dc__fetch_start_attempt(f);
        return;
    }
    if (f->state == ST_QUEUED) {
        f->queued = false;
        dc_budget_dequeued(f->budget);
        dc__fetch_leave_for_slot(f);
        return;
    }
    if (f->state == ST_FAILING) {
        dc__fetch_finish(f, f->pending_err);
        return;
    }
    if (f->state == ST_FOLLOW) { /* neither attempt answered by the deadline */
        dc__fetch_finish(f, DC_ETIMEDOUT);
        return;
    }
    uint64_t now = dc_now_mono_ms();
    bool early = f->hedge_at_ms != 0 && now < f->hedge_at_ms; /* the loop's clock runs a little behind */
    if (f->state == ST_ATTEMPT && f->hedge_at_ms != 0 && !early && now < f->deadline_ms) {
        f->hedge_at_ms = 0;
        dc__fetch_start_hedge(f);
        dc__fetch_arm_timer(f);
        return;
    }
    if (f->state == ST_ATTEMPT && f->attempt_deadline_ms != 0 && now < f->deadline_ms &&
        (!early || now >= f->attempt_deadline_ms)) {
        /* this attempt's own timeout: the next tier, if one can take it (not while a hedge, the
         * extra attempt, runs); else wait on */
        f->attempt_deadline_ms = 0;
        if (f->hedge == NULL && dc__fetch_plan_failover(f, DC_TIER_FAIL_TIMEOUT)) {
            dc_curl_loop_remove(f->cl, &f->xfer);
            dc__fetch_record_attempt(f, true);
            char why[96];
            snprintf(why, sizeof(why), "no answer within the attempt timeout (%llu ms)",
                     (unsigned long long)f->opts.attempt_timeout_ms);
            dc__fetch_note_failure(f, CURLE_OK, DC_CAUSE_F_DEADLINE, why);
            f->last_err = DC_ETIMEDOUT;
            f->state = ST_BACKOFF;
            uv_timer_start(&f->timer, dc__fetch_on_deadline, 0, 0);
            return;
        }
        dc__fetch_arm_timer(f);
        return;
    }
    if (f->state == ST_ATTEMPT && early && now < f->deadline_ms) {
        dc__fetch_arm_timer(f); /* woken before the hedge is due */
        return;
    }
    if (now < f->deadline_ms && !f->idle_armed) {
        /* woken a little before the deadline: the loop's clock (coarse) runs behind ours */
        dc__fetch_arm_timer(f);
        return;
    }
    /* no complete answer by the deadline, or the body stalled longer than the idle timeout */
    dc_curl_loop_remove(f->cl, &f->xfer);
    dc__fetch_record_attempt(f, true);
    char why[96];
    if (now < f->deadline_ms)
        snprintf(why, sizeof(why), "no body bytes for %llu ms (idle timeout)",
                 (unsigned long long)f->opts.idle_timeout_ms);
    else
        snprintf(why, sizeof(why), "no complete answer within %llu ms", (unsigned long long)f->opts.timeout_ms);
    dc__fetch_note_failure(f, CURLE_OK, DC_CAUSE_F_DEADLINE, why);
    dc__fetch_finish(f, DC_ETIMEDOUT);
}

/* While a transfer runs: fire at the deadline, or (once the head is in) after idle_timeout_ms
 * without a byte, whichever comes first. */
void dc__fetch_arm_timer(dc_fetch_t *f)
{
    uint64_t now = dc_now_mono_ms();
    uint64_t left = f->deadline_ms > now ? f->deadline_ms - now : 1;
    f->idle_armed = f->state == ST_BODY && f->opts.idle_timeout_ms > 0 && f->opts.idle_timeout_ms < left;
    if (f->idle_armed)
        left = f->opts.idle_timeout_ms;
    if (f->state == ST_ATTEMPT && f->attempt_deadline_ms != 0 && f->attempt_deadline_ms < f->deadline_ms)
        left = f->attempt_deadline_ms > now ? f->attempt_deadline_ms - now : 1;
    if (f->state == ST_ATTEMPT && f->hedge_at_ms != 0) {
        uint64_t h = f->hedge_at_ms > now ? f->hedge_at_ms - now : 1;
        left = h < left ? h : left;
    }
    uv_timer_start(&f->timer, dc__fetch_on_deadline, left, 0);
}

/* Report the outcome once and release. */
void dc__fetch_finish(dc_fetch_t *f, int err)
{
    if (f->state == ST_FINISHED)
        return;
    f->state = ST_FINISHED;
    uv_timer_stop(&f->timer);
    if (!f->aborted && f->cbs.on_done != NULL)
        f->cbs.on_done(f->data, f, err);
    dc__fetch_release(f);
}

/* The tiers of this fetch: the request's, or one made of its single-origin fields. */
static void init_tiers(dc_fetch_t *f, const dc_fetch_request_t *req)
{
    f->group = -1;
    f->weight = 1;
    size_t n = req->ntiers < DC_TIERS_MAX ? req->ntiers : DC_TIERS_MAX;
    if (n > 0 && strncmp(f->url, req->tiers[0].url, strlen(req->tiers[0].url)) != 0)
        n = 1; /* a URL outside tier 1's base (never made by http/): it alone, as given */
    if (n == 0 || req->ntiers == 0) {
        f->tiers[0] =
            (dc_fetch_tier_t){"", req->keyring, req->budget, req->key_budgets, req->health, req->upstream_name, NULL};
        f->ntiers = 1;
        f->base0_len = 0;
        return;
    }
    memcpy(f->tiers, req->tiers, n * sizeof(*f->tiers));
    f->ntiers = n;
    f->base0_len = strncmp(f->url, req->tiers[0].url, strlen(req->tiers[0].url)) == 0 ? strlen(req->tiers[0].url) : 0;
    if (f->base0_len == 0)
        f->tiers[0].url = "";
    /* the request path's group and weight (tier 1's config: the only one with accounts) */
    const dc_accounts_t *a = f->tiers[0].accounts;
    if (a != NULL && f->base0_len > 0) {
        const char *path = f->url + f->base0_len;
        size_t len = dc_account_path_len(path);
        f->group = dc_account_group_of(a->cfg->groups, a->cfg->ngroups, path, len);
        f->weight = dc_account_weight_of(a->cfg->weights, a->cfg->nweights, path, len);
    }
}

dc_fetch_t *dc_fetch_start(dc_curl_loop_t *cl, const dc_fetch_request_t *req, const dc_fetch_callbacks_t *cbs,
                           void *data)
{
    dc_fetch_t *f = dc_calloc(1, sizeof(*f));
    f->magic = FETCH_MAGIC;
    f->cl = cl;
    f->cbs = *cbs;
    f->data = data;
    f->opts = *req;
    f->opts.method = NULL;
    f->opts.url = NULL;
    f->opts.headers = NULL;
    f->opts.body = NULL;
    f->method = dc_strdup(req->method);
    f->head_request = strcmp(req->method, "HEAD") == 0;
    f->url = dc_strdup(req->url);
    if (req->headers != NULL) {
        size_t n = 0;
        while (req->headers[n] != NULL)
            n++;
        /* one block: the pointer array, then the lines (fetch_free frees the block) */
        size_t bytes = (n ? n : 1) * sizeof(char *);
        for (size_t i = 0; i < n; i++)
            bytes += strlen(req->headers[i]) + 1;
        f->req_headers = dc_malloc(bytes);
        char *p = (char *)(f->req_headers + (n ? n : 1));
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(req->headers[i]) + 1;
            memcpy(p, req->headers[i], len);
            f->req_headers[i] = p;
            p += len;
        }
        f->nreq_headers = n;
    }
    if (req->body != NULL) {
        f->body = dc_malloc(req->body_len + 1);
        memcpy(f->body, req->body, req->body_len);
        f->body_len = req->body_len;
    }
    f->keyring = req->keyring;
    f->key_header = dc_strdup(req->key_header != NULL ? req->key_header : "x-api-key");
    f->content_length = -1;
    f->key_index = -1;
    if (f->opts.timeout_ms == 0)
        f->opts.timeout_ms = 10000;
    f->started_us = dc_now_mono_us();
    f->deadline_ms = 0; /* set by the first attempt that really starts */
    f->budget = req->budget;
    f->fleet = req->fleet;
    f->upstream_name = req->upstream_name != NULL ? dc_strdup(req->upstream_name) : NULL;
    f->budget_name = f->upstream_name != NULL ? dc_strdup(f->upstream_name) : NULL;
    f->key_budgets = req->key_budgets;
    init_tiers(f, req);
    f->opts.tiers = NULL;
    if (f->opts.retry_budget != NULL) {
        dc_retry_budget_enter(f->opts.retry_budget);
        f->counted = true;
    }
    uv_timer_init(cl->loop, &f->timer);
    f->timer.data = f;
    dc__fetch_start_attempt(f);
    return f;
}

void dc_fetch_resume(dc_fetch_t *f)
{
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->state == ST_ADOPTED && !f->aborted) {
        dc_fetch_resume(f->winner);
        return;
    }
    if (!f->paused || f->state != ST_BODY || f->aborted)
        return;
    f->paused = false;
    uint64_t now = dc_now_mono_ms();
    if (now > f->paused_at_ms)
        f->deadline_ms += now - f->paused_at_ms; /* the client's slowness is not the upstream's */
    dc__fetch_arm_timer(f);
    dc_curl_loop_unpause(f->cl, &f->xfer);
}

void dc_fetch_abort(dc_fetch_t *f)
{
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->aborted || f->state == ST_FINISHED) {
        f->aborted = true;
        return;
    }
    f->aborted = true;
    f->data = NULL;
    if (f->state == ST_ADOPTED) { /* the winner goes too; this fetch's own transfer was set aside */
        dc_fetch_abort(f->winner);
        f->winner = NULL;
        dc__fetch_hedge_slot_release(f);
        dc__fetch_release(f);
        return;
    }
    if (f->hedge != NULL)
        dc__fetch_drop_hedge(f);
    if (f->state == ST_RESERVING)
        return; /* the Redis reply releases it (it must not point to freed memory) */
    if (f->queued) {
        f->queued = false;
        dc_budget_dequeued(f->budget);
    }
    if (f->in_callback) {
        /* the curl callback we are in returns an error; on_xfer_done releases */
        return;
    }
    if (f->xfer.active) {
        if (f->paused) {
            /* a paused transfer would never call back: remove it now */
            dc_curl_loop_remove(f->cl, &f->xfer);
            dc__fetch_release(f);
            return;
        }
        dc_curl_loop_remove(f->cl, &f->xfer);
    }
    dc__fetch_release(f);
}

/* The fetch whose answer the caller sees: the hedge once it won. */
static const dc_fetch_t *reported(const dc_fetch_t *f)
{
    return f->state == ST_ADOPTED && f->winner != NULL ? f->winner : f;
}

int dc_fetch_status(const dc_fetch_t *f)
{
    f = reported(f);
    return f->status;
}

const char *dc_fetch_reason(const dc_fetch_t *f)
{
    f = reported(f);
    return f->reason != NULL ? f->reason : "";
}

const dc_fetch_header_t *dc_fetch_headers(const dc_fetch_t *f, size_t *n)
{
    f = reported(f);
    *n = f->nheaders;
    return f->headers;
}

int64_t dc_fetch_content_length(const dc_fetch_t *f)
{
    f = reported(f);
    return f->content_length;
}

unsigned dc_fetch_attempts(const dc_fetch_t *f)
{
    return f->attempts;
}

uint64_t dc_fetch_head_us(const dc_fetch_t *f)
{
    return f->head_us;
}

uint64_t dc_fetch_started_us(const dc_fetch_t *f)
{
    return f->started_us;
}

uint64_t dc_fetch_retry_after_ms(const dc_fetch_t *f)
{
    f = reported(f);
    return f->retry_after_ms;
}

unsigned dc_fetch_tier(const dc_fetch_t *f)
{
    return f->tier + 1;
}

int dc_fetch_key_index(const dc_fetch_t *f)
{
    return f->key_index;
}

uint64_t dc_fetch_upstream_retry_after_s(const dc_fetch_t *f)
{
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    f = reported(f);
    uint64_t us = dc__fetch_retry_after_us_from(f);
    return (us + 999999) / 1000000;
}

dc_upstream_cause_t dc_fetch_cause(const dc_fetch_t *f)
{
    return f->cause;
}

const char *dc_fetch_cause_text(const dc_fetch_t *f)
{
    return f->cause_text;
}

const char *dc_fetch_cause_upstream(const dc_fetch_t *f)
{
    if (f->cause_upstream != NULL)
        return f->cause_upstream;
    return f->upstream_name != NULL ? f->upstream_name : "";
}
