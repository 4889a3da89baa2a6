#include "upstream/fetch.h"
#include "upstream/framing.h"
#include "upstream/retry.h"
#include "upstream/cause.h"
#include "redis/bus.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "upstream/budget_fleet.h"
#include "upstream/breaker_fleet.h"
#include "core/time.h"
#include "cache/policy.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FETCH_MAGIC 0x46455443u /* "FETC" */

typedef enum {
    ST_RESERVING, /* asking Redis for a fleet-wide slot */
    ST_QUEUED,    /* waiting for the upstream budget's slot */
    ST_FAILING,   /* an error to report on the next loop turn (never from inside dc_fetch_start) */
    ST_ATTEMPT,   /* a curl transfer is running, no head yet */
    ST_BACKOFF,   /* waiting before the next attempt */
    ST_BODY,      /* head delivered, streaming the body */
    ST_FOLLOW,    /* hedging: this fetch's own attempt is over, its running hedge may still answer */
    ST_ADOPTED,   /* hedging: the hedge won; callbacks and accessors report it */
    ST_FINISHED,  /* on_done called or aborted; waiting for handles to close */
} fetch_state_t;

struct dc_fetch {
    uint32_t magic;
    fetch_state_t state;
    dc_curl_loop_t *cl;
    dc_curl_xfer_t xfer;
    uv_timer_t timer; /* deadline / idle / backoff */
    dc_fetch_callbacks_t cbs;
    void *data;
    bool aborted;
    bool in_callback; /* inside a curl callback: can't remove the handle now */
    bool discard;     /* this attempt's answer is being thrown away (retry) */
    bool paused;
    bool head_delivered;
    bool head_request; /* HEAD: no body whatever the head announces */
    bool proto_err;    /* the answer's framing is invalid (head or body): DC_EPROTO, never retried */

    /* request */
    char *method;
    char *url;
    char **req_headers;
    size_t nreq_headers;
    char *body;
    size_t body_len;
    dc_fetch_request_t opts; /* scalar options; pointer fields not used after start */
    dc_keyring_t *keyring;
    char *key_header;
    dc_budget_t *budget;      /* this attempt's: the upstream's, or its key's (rate_per: key) */
    dc_budget_t *key_budgets; /* borrowed; NULL unless rate_per: key */
    struct dc_fleet *fleet;
    char *upstream_name;
    char *budget_name; /* names the fleet budget and cooldown: "<upstream>" or "<upstream>#<key id>" */
    bool queued;       /* holds a place in the budget's queue */
    /* accounts and endpoint groups (upstream/account.h), of this attempt's tier */
    dc_accounts_t *accounts;   /* borrowed; NULL: the tier has none */
    int group;                 /* the request path's endpoint group in tier 1's config, -1 = none */
    uint32_t weight;           /* the request path's cost in the account's budget */
    uint32_t budget_cost;      /* this attempt's cost in `budget` (1 when budget is a separate group's) */
    dc_budget_t *group_budget; /* this attempt's second budget: its group's (NULL: none, or separate) */
    char *group_budget_name;   /* names it in Redis */
    bool group_429;            /* a 429 to this attempt pauses its group, not its account */
    int pending_err;
    uint64_t retry_after_ms;
    struct curl_slist *slist;

    /* attempt state */
    unsigned attempts;
    int key_index;
    int last_err;
    uint64_t pause_ms; /* a 429 asked to wait this long before the next attempt */
    uint64_t started_us;
    uint64_t deadline_ms;     /* monotonic: whole-response deadline (pushed back by client pauses) */
    uint64_t reserve_sent_ms; /* monotonic: when the budget reservation was asked for */
    uint64_t leave_by_ms;     /* monotonic: the latest this attempt may leave for its slot (0 = no slot) */
    unsigned late_rereserves; /* slots given up because the attempt would have left too late */
    uint64_t queue_until_ms;  /* monotonic: the attempt waits for budget until then (queue timeout), re-reservations
                                 included */
    bool rereserving;         /* start_attempt is reserving again for a slot given up: same queue deadline */
    uint64_t paused_at_ms;    /* when the caller refused bytes (the pause does not count) */
    bool idle_armed;          /* the timer runs for the idle timeout, not the deadline (arm_timer) */
    uint64_t head_us;
    uint64_t body_bytes; /* body bytes taken by the caller */

    /* response head */
    int status;
    char *reason;
    dc_fetch_header_t *headers;
    size_t nheaders, capheaders;
    int64_t content_length;
    dc_framing_t framing;

    /* tiers (upstream/tier.h) and the retry budget */
    dc_fetch_tier_t tiers[DC_TIERS_MAX];
    size_t ntiers;
    size_t base0_len;             /* length of tiers[0].url at the start of url */
    char *attempt_url;            /* this attempt's URL (its tier's base) */
    unsigned tier;                /* index of this attempt's tier */
    uint32_t tried;               /* tiers tried in this round (bit i = tier i) */
    bool failover_next;           /* the next attempt moves down to a tier not tried in this round, at once */
    unsigned failovers;           /* attempts that were failovers (not counted against `retries`) */
    dc_upstream_state_t *health;  /* this attempt's tier's */
    bool counted;                 /* counted as an active request of the retry budget */
    bool holds_retry;             /* holds a slot of the retry budget */
    bool probe_locked;            /* this attempt is the fleet's probe of its tier (holds the lock) */
    unsigned pending_tier;        /* ST_RESERVING for the probe lock: the tier chosen */
    bool pending_failover;        /* ... and whether it was a failover */
    uint64_t attempt_deadline_ms; /* monotonic: this attempt's own timeout (0 = none) */

    /* why the last failed attempt failed (upstream/cause.h) */
    char errbuf[CURL_ERROR_SIZE]; /* libcurl's words for this attempt (CURLOPT_ERRORBUFFER) */
    dc_upstream_cause_t cause;
    char cause_text[DC_CAUSE_TEXT_MAX]; /* scrubbed */
    const char *cause_upstream;         /* the failing tier's name; borrowed like the tiers */
    /* hedging (fetch.h). Invariant: while `hedge` runs, this fetch is in ST_ATTEMPT or ST_FOLLOW (a
     * retry it would make waits in ST_FOLLOW until the hedge has failed). */
    uint64_t attempt_started_us; /* monotonic: when this attempt's transfer started */
    uint64_t hedge_at_ms;        /* monotonic: the hedge goes then if no head yet (0 = not armed) */
    dc_fetch_t *hedge;           /* the running hedge (a fetch of its own, data = this fetch) */
    unsigned hedge_tier;         /* index of the hedge's tier */
    bool hedge_slot;             /* holds the retry-budget slot of the running hedge */
    bool hedge_follow;           /* this attempt's failure answer was dropped for the hedge: no retry */
    bool follow_retry;           /* ST_FOLLOW: retry after follow_delay_ms if the hedge fails */
    uint64_t follow_delay_ms;
    int follow_err;
    dc_fetch_t *winner;   /* ST_ADOPTED: the hedge whose answer this fetch reports */
    bool release_pending; /* released once its transfer is removed (on the next loop turn) */
    bool slot_local;      /* this attempt's budget slot was reserved locally at slot_us (give-back) */
    uint64_t slot_us;
    unsigned slot_share;
};

static void start_attempt(dc_fetch_t *f);
static void begin_attempt(dc_fetch_t *f);
static void leave_for_slot(dc_fetch_t *f);
static void finish(dc_fetch_t *f, int err);
static void on_deadline(uv_timer_t *t);
static void hedge_slot_release(dc_fetch_t *f);
static void drop_hedge(dc_fetch_t *f);

/* Report `err` on the next loop turn. */
static void fail_soon(dc_fetch_t *f, int err)
{
    f->state = ST_FAILING;
    f->pending_err = err;
    uv_timer_start(&f->timer, on_deadline, 0, 0);
}

/* 429: when may we come back? Retry-After (seconds or a date), else Jupiter's x-ratelimit-reset
 * (absolute Unix seconds), else unknown (0: the budget assumes 1 s). */
static uint64_t retry_after_us_from(const dc_fetch_t *f)
{
    return dc_retry_after_us(f->headers, f->nheaders, dc_now_wall_ms());
}

static void reset_head(dc_fetch_t *f)
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
    reset_head(f);
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
    DC_ASSERT(f->xfer.easy == NULL); /* given back to the loop by release() */
    f->magic = 0;
    free(f);
}

/* Small allocations never fail quietly (a lost list would also drop the request's headers). */
static struct curl_slist *slist_add(struct curl_slist *l, const char *line)
{
    struct curl_slist *n = curl_slist_append(l, line);
    if (n == NULL)
        dc_fatal("out of memory (curl_slist_append)");
    return n;
}

/* A request header line. "Name:" (nothing after the colon) is libcurl's way to suppress a header
 * it would add, and stays so; "Name: " (a header whose value is empty, as a client sent it) would be
 * dropped too, so it goes as "Name;", libcurl's spelling of an empty value. */
static struct curl_slist *slist_add_header(struct curl_slist *l, const char *line)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon[1] != ' ' || colon[1 + strspn(colon + 1, " \t")] != '\0')
        return slist_add(l, line);
    char *semi = dc_strndup(line, (size_t)(colon - line) + 1);
    semi[colon - line] = ';';
    l = slist_add(l, semi);
    free(semi);
    return l;
}

static void on_timer_closed(uv_handle_t *h)
{
    fetch_free(h->data);
}

static void release(dc_fetch_t *f);

/* The transfer of a fetch being released or set aside: removed here, outside any curl callback. */
static void on_drop_timer(uv_timer_t *t)
{
    dc_fetch_t *f = t->data;
    if (f->xfer.active)
        dc_curl_loop_remove(f->cl, &f->xfer);
    if (f->release_pending) {
        f->release_pending = false;
        release(f);
    }
}

/* Release everything once no curl transfer is active. A transfer still active (a hedge that lost, a
 * fetch whose hedge won: this may run inside another transfer's curl callback, where libcurl refuses
 * curl_multi_remove_handle) is removed on the next loop turn first. */
static void release(dc_fetch_t *f)
{
    if (f->hedge != NULL)
        drop_hedge(f);
    hedge_slot_release(f);
    if (f->xfer.active) {
        f->state = ST_FINISHED;
        f->release_pending = true;
        uv_timer_start(&f->timer, on_drop_timer, 0, 0);
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
static bool can_retry(dc_fetch_t *f)
{
    return dc_retry_allowed(f->opts.idempotent, f->attempts - f->failovers, f->opts.retries, f->aborted);
}

/* This attempt's tier's health and breaker learn its outcome (see upstream_state.h); an opening or
 * a closing is told to the fleet (breaker_fleet.h), and the fleet's probe lock is given back. */
static void record_attempt(dc_fetch_t *f, bool failed)
{
    if (f->health == NULL)
        return;
    dc_breaker_opening_t o;
    bool told = false; /* an opening or closing was posted: it deletes the probe lock too */
    if (failed) {
        if (dc_upstream_state_failure(f->health, &f->opts.breaker, dc_now_mono_ms(), &o) && f->upstream_name != NULL) {
            dc_breaker_fleet_opened(f->upstream_name, f->tier, &o, f->opts.breaker.max_backoff_ms);
            told = true;
        }
    } else if (dc_upstream_state_success(f->health, &f->opts.breaker, dc_now_mono_ms()) && f->upstream_name != NULL) {
        dc_breaker_fleet_closed(f->upstream_name, f->tier);
        told = true;
    }
    if (f->probe_locked && told)
        f->probe_locked = false;
    if (f->probe_locked) {
        f->probe_locked = false;
        if (f->fleet != NULL && f->upstream_name != NULL)
            dc_breaker_fleet_probe_unlock(f->fleet, f->upstream_name, f->tier);
    }
}

/* A retry or a failover may start: the upstream's retry budget has a slot (one per fetch, held
 * until it ends), or there is no retry budget. */
static bool take_retry_slot(dc_fetch_t *f)
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
static bool plan_failover(dc_fetch_t *f, dc_tier_fail_t why)
{
    if (f->aborted || f->ntiers < 2 || !dc_tier_may_fail_over(f->opts.idempotent, why) || !untried_tier_ready(f))
        return false;
    if (!take_retry_slot(f))
        return false;
    f->failover_next = true;
    if (f->opts.retry_budget != NULL)
        atomic_fetch_add(&f->opts.retry_budget->failovers_total, 1);
    return true;
}

/* An answer the caller's judge rejected (fetch.h): may another attempt be made, now on another
 * tier or after the backoff? Takes the retry slot when it may. */
static bool judged_retry(dc_fetch_t *f)
{
    if (f->hedge != NULL)
        return false; /* the running hedge is that other attempt */
    if (plan_failover(f, DC_TIER_FAIL_VALIDATION))
        return true;
    uint64_t delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers, 0);
    return can_retry(f) && dc_retry_fits(dc_now_mono_ms(), delay, f->deadline_ms) && take_retry_slot(f);
}

/* ---- hedging (fetch.h) ---- */

#define HEDGE_MIN_SAMPLES 20 /* recent heads a tier needs before its p95 is used */

static void hedge_on_head(void *data, dc_fetch_t *h);
static int hedge_on_body(void *data, dc_fetch_t *h, const char *buf, size_t len);
static void hedge_on_done(void *data, dc_fetch_t *h, int err);

/* A final status a hedge race does not take: the other attempt may still answer well. */
static bool hedge_failure_status(int status)
{
    return status >= 500 || status == 429;
}

static bool hedge_enabled(const dc_fetch_t *f)
{
    return f->opts.hedge_after_ms > 0 && f->opts.idempotent && strcmp(f->method, "GET") == 0 &&
           f->cbs.on_head != hedge_on_head;
}

/* The delay before the hedge of this attempt: the configured one, or the p95 of its tier's recent
 * heads (not below the floor) once the tier has enough of them. */
static uint64_t hedge_delay_ms(const dc_fetch_t *f)
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

static void hedge_slot_release(dc_fetch_t *f)
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
static void drop_hedge(dc_fetch_t *f)
{
    dc_fetch_t *h = f->hedge;
    DC_ASSERT(h != NULL && !h->in_callback);
    f->hedge = NULL;
    hedge_slot_release(f);
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
    release(h);
}

/* This fetch's own attempt is over without a usable answer while its hedge runs: it waits for the
 * hedge (until its deadline); if the hedge fails too, it retries after delay_ms (retry) or reports err. */
static void follow_hedge(dc_fetch_t *f, int err, bool retry, uint64_t delay_ms)
{
    uint64_t now = dc_now_mono_ms();
    f->state = ST_FOLLOW;
    f->follow_err = err;
    f->follow_retry = retry;
    f->follow_delay_ms = delay_ms;
    uv_timer_start(&f->timer, on_deadline, f->deadline_ms > now ? f->deadline_ms - now : 1, 0);
}

/* The hedge failed (no head, or a failure head): the fetch goes on by itself; from ST_FOLLOW it
 * retries or reports its own error, on the next loop turn (we may be inside a curl callback). */
static void hedge_failed(dc_fetch_t *f)
{
    if (f->state != ST_FOLLOW)
        return; /* its own attempt still runs */
    if (f->follow_retry && dc_retry_fits(dc_now_mono_ms(), f->follow_delay_ms, f->deadline_ms)) {
        f->state = ST_BACKOFF;
        uv_timer_start(&f->timer, on_deadline, f->follow_delay_ms, 0);
        return;
    }
    fail_soon(f, f->follow_err);
}

/* The first attempt has had no head for the hedge delay: one more attempt, if the retry budget and
 * the tier's budget (now, never queued: background) allow it. Runs from a timer. */
static void start_hedge(dc_fetch_t *f)
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
    static const dc_fetch_callbacks_t cbs = {hedge_on_head, hedge_on_body, hedge_on_done};
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
    f->tier = f->hedge_tier;
    f->key_index = h->key_index;
    f->head_us = dc_now_mono_us() - f->started_us;
    f->head_delivered = true;
    f->hedge_at_ms = 0;
    if (f->state == ST_ATTEMPT && f->health != NULL) /* a lower bound of its latency: the tail p95 must see */
        dc_latwin_record(&f->health->latency, dc_now_mono_ms(), dc_now_mono_us() - f->attempt_started_us);
    if (f->state == ST_ATTEMPT && f->xfer.active) {
        give_back_unsent(f);
        f->discard = true;
        uv_timer_start(&f->timer, on_drop_timer, 0, 0);
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
    if (hedge_failure_status(h->status)) {
        f->hedge = NULL;
        hedge_slot_release(f);
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

static void hedge_on_done(void *data, dc_fetch_t *h, int err)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    hedge_slot_release(f);
    if (f->state == ST_ADOPTED) {
        DC_ASSERT(f->winner == h);
        finish(f, err); /* accessors still read the winner during on_done */
        f->winner = NULL;
        return;
    }
    DC_ASSERT(f->hedge == h);
    f->hedge = NULL;
    count_hedge(f, err == DC_EAGAIN ? -1 : 0);
    hedge_failed(f);
}

/* ---- curl callbacks ---- */

static void arm_timer(dc_fetch_t *f);

/* A status line: a new (possibly interim) response starts. */
static void start_head(dc_fetch_t *f, const dc_hline_t *line)
{
    reset_head(f);
    f->status = line->status;
    f->reason = dc_strndup(line->value != NULL ? line->value : "", line->value_len);
}

/* A header line "Name: value": framing sees it, and it is kept with a lower-case name. */
static void store_header_line(dc_fetch_t *f, const dc_hline_t *line)
{
    dc_framing_field(&f->framing, line->name, line->name_len, line->value, line->value_len);
    if (f->nheaders == f->capheaders) {
        f->capheaders = f->capheaders ? f->capheaders * 2 : 16;
        f->headers = dc_realloc(f->headers, f->capheaders * sizeof(*f->headers));
    }
    dc_fetch_header_t *h = &f->headers[f->nheaders++];
    size_t nlen = line->name_len, vlen = line->value_len;
    /* one allocation per line: "name\0value\0" (reset_head frees the name only) */
    h->name = dc_malloc(nlen + vlen + 2);
    for (size_t i = 0; i < nlen; i++)
        h->name[i] = (char)tolower((unsigned char)line->name[i]);
    h->name[nlen] = '\0';
    h->name_len = nlen;
    h->value = h->name + nlen + 1;
    if (vlen > 0)
        memcpy(h->value, line->value, vlen);
    h->value[vlen] = '\0';
    h->value_len = vlen;
}

/* The local budget (and, on a 429, every instance) learns from a final status; `ra` is a 429's
 * Retry-After in microseconds (0 = none). */
static void budget_learn_status(dc_fetch_t *f, uint64_t ra)
{
    if (f->budget == NULL)
        return;
    if (f->status == 429) {
        /* a request of an endpoint group: its group's bucket was the one full */
        dc_budget_t *b = f->group_429 && f->group_budget != NULL ? f->group_budget : f->budget;
        const char *name = b == f->group_budget ? f->group_budget_name : f->budget_name;
        dc_budget_on_429(b, dc_now_mono_us(), ra);
        if (f->fleet != NULL && name != NULL)
            dc_fleet_cooldown(f->fleet, name, ra ? ra : 1000000); /* every instance pauses */
    } else if (f->status < 500) {
        dc_budget_on_success(f->budget);
        if (f->group_budget != NULL)
            dc_budget_on_success(f->group_budget);
    }
}

/* How late after its slot this attempt may still leave: the tighter of its budgets'. */
static uint64_t late_ok_ms(const dc_fetch_t *f)
{
    uint64_t us = f->budget->late_ok_us;
    if (f->group_budget != NULL && f->group_budget->nwin > 0 &&
        (f->budget->nwin == 0 || f->group_budget->late_ok_us < us))
        us = f->group_budget->late_ok_us;
    return us / 1000;
}

/* A 401/403 to a request that carried a ring key: the key is set aside here (and on every instance
 * through the bus). Returns whether the key was rejected; *keys_usable = keys left usable then. */
static bool quarantine_rejected_key(dc_fetch_t *f, size_t *keys_usable)
{
    *keys_usable = 0;
    if (!((f->status == 401 || f->status == 403) && f->key_index >= 0))
        return false;
    uint64_t now = dc_now_mono_ms();
    if (dc_keyring_quarantine(f->keyring, f->key_index, now)) {
        __atomic_fetch_add(&dc_metrics_process.key_quarantines, 1, __ATOMIC_RELAXED);
        dc_log_warn("upstream %s: key #%d (id %s) answered %d; set aside for %llums", f->url, f->key_index,
                    f->keyring->ids[f->key_index], f->status, (unsigned long long)f->keyring->quarantine_ms);
        if (f->upstream_name != NULL) { /* every instance sets it aside */
            char body[256];
            int n = snprintf(body, sizeof(body), "%s\t%s", f->upstream_name, f->keyring->ids[f->key_index]);
            if (n > 0 && (size_t)n < sizeof(body))
                dc_bus_post(DC_BUS_QUARANTINE, dc_now_wall_ms(), body, (size_t)n);
        }
    }
    *keys_usable = dc_keyring_usable(f->keyring, now);
    return true;
}

/* Whether this final head goes to the caller; false: the attempt is discarded and retried after
 * f->pause_ms. A 429 is retried only after the pause it announces (every instance observes it too,
 * see dc_fleet_cooldown), and only if that still fits before the deadline: otherwise the client gets
 * the 429 itself (upstream/retry.h has the rules). */
static bool head_is_delivered(dc_fetch_t *f, bool key_rejected, size_t keys_usable, uint64_t ra)
{
    dc_retry_head_in_t rin = {.status = f->status,
                              .key_rejected = key_rejected,
                              .keys_usable = keys_usable,
                              .may_retry = can_retry(f),
                              .retry_after_us = ra,
                              .now_ms = dc_now_mono_ms(),
                              .deadline_ms = f->deadline_ms};
    uint64_t pause_ms;
    if ((f->status >= 500 || f->status == 429) && plan_failover(f, DC_TIER_FAIL_STATUS))
        pause_ms = 0; /* the next tier, now */
    else if (dc_retry_on_head(&rin, &pause_ms) == DC_RETRY_DELIVER || !take_retry_slot(f))
        return true;
    f->discard = true;
    f->last_err = DC_EUPSTREAM;
    f->pause_ms = pause_ms;
    return false;
}

/* The blank line that ends a head: an interim head is skipped; a final one is checked (framing),
 * recorded (health, budget, keys), then either discarded for a retry or handed to the caller.
 * Returns what on_header returns to curl (0 aborts the transfer). */
static size_t end_of_head(dc_fetch_t *f, size_t len)
{
    long code = 0;
    curl_easy_getinfo(f->xfer.easy, CURLINFO_RESPONSE_CODE, &code);
    if (code > 0)
        f->status = (int)code;
    if (f->status >= 100 && f->status < 200)
        return len;                                      /* interim response: wait for the final one */
    curl_easy_setopt(f->xfer.easy, CURLOPT_VERBOSE, 1L); /* from now on curl's texts reach on_debug */
    const char *bad = f->status < 200 || f->status > 599 ? "status outside 200-599" : NULL;
    if (bad == NULL && dc_framing_finish(&f->framing) != 0)
        bad = f->framing.error;
    if (bad != NULL) {
        /* RFC 9110 15: a final status is 2xx-5xx; anything else is no answer we can relay */
        dc_log_warn("upstream %s: invalid response framing (%s)", f->url, bad);
        f->proto_err = true;
        f->last_err = DC_EPROTO;
        return 0; /* aborts the transfer; not retried: the origin would frame it the same way (the
                   * failure is recorded when the transfer ends) */
    }
    f->content_length = f->framing.chunked ? -1 : f->framing.content_length;
    f->hedge_at_ms = 0;
    if (f->health != NULL && !hedge_failure_status(f->status))
        dc_latwin_record(&f->health->latency, dc_now_mono_ms(), dc_now_mono_us() - f->attempt_started_us);
    bool rejected = false; /* the caller's verdict at the head (fetch.h judge) */
    if (f->cbs.judge != NULL && !hedge_failure_status(f->status)) {
        f->in_callback = true;
        rejected = f->cbs.judge(f->data, f, false) != 0;
        f->in_callback = false;
        if (f->aborted)
            return 0;
    }
    record_attempt(f, f->status >= 500 || rejected);
    uint64_t ra = f->status == 429 ? retry_after_us_from(f) : 0;
    budget_learn_status(f, ra);
    size_t keys_usable;
    bool key_rejected = quarantine_rejected_key(f, &keys_usable);
    if (rejected && judged_retry(f)) {
        f->discard = true; /* aborts this attempt; done handler starts the next one */
        f->last_err = DC_EVALIDATION;
        f->pause_ms = 0;
        return 0;
    }
    if (!rejected && !head_is_delivered(f, key_rejected, keys_usable, ra))
        return 0; /* aborts this attempt; done handler schedules the retry */
    if (f->hedge != NULL) {
        if (hedge_failure_status(f->status)) { /* dropped: the running hedge may still answer well */
            f->discard = true;
            f->hedge_follow = true;
            f->last_err = DC_EUPSTREAM;
            return 0;
        }
        drop_hedge(f); /* this answer came first */
    }
    f->head_us = dc_now_mono_us() - f->started_us;
    f->head_delivered = true;
    if (f->health != NULL)
        atomic_fetch_add(&f->health->answered_total, 1);
    f->state = ST_BODY;
    arm_timer(f); /* from now on: the deadline, and the idle timeout between bytes */
    f->in_callback = true;
    f->cbs.on_head(f->data, f);
    f->in_callback = false;
    return f->aborted ? 0 : len;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    dc_fetch_t *f = userdata;
    size_t len = size * nitems;
    if (f->aborted || f->discard)
        return 0;
    if (f->head_delivered)
        return len; /* trailers of a chunked body: not relayed */
    dc_hline_t line;
    dc_hline_parse(buf, len, &line);
    switch (line.kind) {
    case DC_HLINE_STATUS:
        start_head(f, &line);
        return len;
    case DC_HLINE_INVALID:
        dc_framing_fail(&f->framing, "malformed header line");
        return len; /* reported at the end of the head */
    case DC_HLINE_END:
        return end_of_head(f, len);
    default:
        store_header_line(f, &line);
        return len;
    }
}

/* libcurl reports some framing faults only as text: a body longer than its Content-Length is cut
 * there and the rest dropped ("Excess found"), a malformed chunk size becomes a generic receive
 * error. Both come before the bytes they concern reach on_write. */
static int on_debug(CURL *e, curl_infotype type, char *text, size_t size, void *userdata)
{
    (void)e;
    dc_fetch_t *f = userdata;
    if (type == CURLINFO_TEXT && dc_framing_curl_text(text, size))
        f->proto_err = true;
    return 0;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *userdata)
{
    dc_fetch_t *f = userdata;
    size_t len = size * nmemb;
    if (f->aborted || f->discard || !f->head_delivered)
        return 0;
    if (len == 0)
        return 0;
    if (f->proto_err || (dc_framing_has_body(f->status, f->head_request) &&
                         dc_framing_body(&f->framing, f->body_bytes + len, false) != 0)) {
        f->proto_err = true; /* more than announced: none of it is relayed */
        return 0;
    }
    f->in_callback = true;
    int refused = f->cbs.on_body(f->data, f, buf, len);
    f->in_callback = false;
    if (f->aborted)
        return 0;
    if (refused) {
        f->paused = true;
        f->paused_at_ms = dc_now_mono_ms();
        uv_timer_stop(&f->timer); /* time paused by the client does not count */
        return CURL_WRITEFUNC_PAUSE;
    }
    f->body_bytes += len;
    arm_timer(f);
    return len;
}

/* ---- failure causes ---- */

#define CAUSE_LOG_INTERVAL_MS 10000 /* at most one error-log line per upstream and cause in this time */

/* Request headers whose values say nothing secret and may show in a cause (the client's address
 * in X-Forwarded-For is also the address libcurl names when a loopback origin refuses); every other
 * header's value (keys, tokens, cookies, whatever the client forwarded) is masked. */
static bool header_is_public(const char *name, size_t len)
{
    static const char *const names[] = {"x-forwarded-for",
                                        "x-forwarded-proto",
                                        "x-forwarded-host",
                                        "x-forwarded-port",
                                        "x-real-ip",
                                        "forwarded",
                                        "via",
                                        "host",
                                        "accept",
                                        "accept-encoding",
                                        "content-type",
                                        "content-length",
                                        "x-request-id"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* The attempt failed: its cause (cause.h) from libcurl's code, errno and `flags`, its text without
 * secrets (libcurl's error buffer, else `own_text`, else curl's generic words), remembered for
 * the caller (dc_fetch_cause*) and for /health, and logged (rate-limited per upstream and cause). */
static void note_failure(dc_fetch_t *f, CURLcode rc, unsigned flags, const char *own_text)
{
    long os_errno = 0;
    if (f->xfer.easy != NULL && rc != CURLE_OK)
        curl_easy_getinfo(f->xfer.easy, CURLINFO_OS_ERRNO, &os_errno);
    f->cause = dc_upstream_cause_classify(rc, (int)os_errno, flags);
    if (f->cause == DC_CAUSE_NONE)
        return;
    const char *text = own_text != NULL ? own_text
                       : f->errbuf[0]   ? f->errbuf
                       : rc != CURLE_OK ? curl_easy_strerror(rc)
                                        : dc_upstream_cause_message(f->cause);
    /* what must not show: key values, request header values (the client's own key among them) */
    size_t nkeys = f->keyring != NULL ? f->keyring->nkeys : 0, ns = 0;
    const char **secrets = dc_calloc(nkeys + f->nreq_headers + 1, sizeof(*secrets));
    for (size_t i = 0; i < nkeys; i++)
        secrets[ns++] = f->keyring->keys[i];
    for (size_t i = 0; i < f->nreq_headers; i++) {
        const char *colon = strchr(f->req_headers[i], ':');
        if (colon != NULL && !header_is_public(f->req_headers[i], (size_t)(colon - f->req_headers[i])))
            secrets[ns++] = colon + 1 + strspn(colon + 1, " \t");
    }
    dc_upstream_cause_scrub(f->cause_text, sizeof(f->cause_text), text, secrets, ns);
    free(secrets);
    const char *name = f->tiers[f->tier].budget_name;
    f->cause_upstream = name != NULL ? name : f->upstream_name != NULL ? f->upstream_name : "";
    if (f->health == NULL) {
        dc_log_debug("upstream %s: %s failure: %s", f->cause_upstream, dc_upstream_cause_name(f->cause), f->cause_text);
        return;
    }
    dc_upstream_state_note_error(f->health, f->cause, f->cause_text, dc_now_wall_ms());
    uint64_t suppressed = 0;
    if (!dc_upstream_state_log_gate(f->health, f->cause, dc_now_mono_ms(), CAUSE_LOG_INTERVAL_MS, &suppressed))
        return;
    if (suppressed > 0)
        dc_log_error("upstream %s: %s failure: %s (%llu more since the last line)", f->cause_upstream,
                     dc_upstream_cause_name(f->cause), f->cause_text, (unsigned long long)suppressed);
    else
        dc_log_error("upstream %s: %s failure: %s", f->cause_upstream, dc_upstream_cause_name(f->cause), f->cause_text);
}

/* Nothing went out (every tier's breaker is open or cordoned): the cause is the first tier's last
 * failure noted, which opened its breaker (dc_fetch_cause says so; nothing is logged again). */
static void cause_from_health(dc_fetch_t *f)
{
    dc_upstream_state_t *h = f->tiers[0].health;
    uint64_t at;
    if (h == NULL || !dc_upstream_state_last_error(h, &f->cause, f->cause_text, sizeof(f->cause_text), &at))
        return;
    const char *name = f->tiers[0].budget_name;
    f->cause_upstream = name != NULL ? name : f->upstream_name != NULL ? f->upstream_name : "";
}

/* ---- timers ---- */

static void on_deadline(uv_timer_t *t)
{
    dc_fetch_t *f = t->data;
    if (f->state == ST_FINISHED)
        return;
    if (f->state == ST_BACKOFF) {
        start_attempt(f);
        return;
    }
    if (f->state == ST_QUEUED) {
        f->queued = false;
        dc_budget_dequeued(f->budget);
        leave_for_slot(f);
        return;
    }
    if (f->state == ST_FAILING) {
        finish(f, f->pending_err);
        return;
    }
    if (f->state == ST_FOLLOW) { /* neither attempt answered by the deadline */
        finish(f, DC_ETIMEDOUT);
        return;
    }
    uint64_t now = dc_now_mono_ms();
    bool early = f->hedge_at_ms != 0 && now < f->hedge_at_ms; /* the loop's clock runs a little behind */
    if (f->state == ST_ATTEMPT && f->hedge_at_ms != 0 && !early && now < f->deadline_ms) {
        f->hedge_at_ms = 0;
        start_hedge(f);
        arm_timer(f);
        return;
    }
    if (f->state == ST_ATTEMPT && f->attempt_deadline_ms != 0 && now < f->deadline_ms &&
        (!early || now >= f->attempt_deadline_ms)) {
        /* this attempt's own timeout: the next tier, if one can take it (not while a hedge, the
         * extra attempt, runs); else wait on */
        f->attempt_deadline_ms = 0;
        if (f->hedge == NULL && plan_failover(f, DC_TIER_FAIL_TIMEOUT)) {
            dc_curl_loop_remove(f->cl, &f->xfer);
            record_attempt(f, true);
            char why[96];
            snprintf(why, sizeof(why), "no answer within the attempt timeout (%llu ms)",
                     (unsigned long long)f->opts.attempt_timeout_ms);
            note_failure(f, CURLE_OK, DC_CAUSE_F_DEADLINE, why);
            f->last_err = DC_ETIMEDOUT;
            f->state = ST_BACKOFF;
            uv_timer_start(&f->timer, on_deadline, 0, 0);
            return;
        }
        arm_timer(f);
        return;
    }
    if (f->state == ST_ATTEMPT && early && now < f->deadline_ms) {
        arm_timer(f); /* woken before the hedge is due */
        return;
    }
    if (now < f->deadline_ms && !f->idle_armed) {
        /* woken a little before the deadline: the loop's clock (coarse) runs behind ours */
        arm_timer(f);
        return;
    }
    /* no complete answer by the deadline, or the body stalled longer than the idle timeout */
    dc_curl_loop_remove(f->cl, &f->xfer);
    record_attempt(f, true);
    char why[96];
    if (now < f->deadline_ms)
        snprintf(why, sizeof(why), "no body bytes for %llu ms (idle timeout)",
                 (unsigned long long)f->opts.idle_timeout_ms);
    else
        snprintf(why, sizeof(why), "no complete answer within %llu ms", (unsigned long long)f->opts.timeout_ms);
    note_failure(f, CURLE_OK, DC_CAUSE_F_DEADLINE, why);
    finish(f, DC_ETIMEDOUT);
}

/* While a transfer runs: fire at the deadline, or (once the head is in) after idle_timeout_ms
 * without a byte, whichever comes first. */
static void arm_timer(dc_fetch_t *f)
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
    uv_timer_start(&f->timer, on_deadline, left, 0);
}

/* ---- attempts ---- */

static int map_curl_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return DC_ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return DC_ETIMEDOUT;
    default:
        return DC_EUPSTREAM;
    }
}

static void on_xfer_done(dc_curl_xfer_t *xfer, CURLcode rc)
{
    dc_fetch_t *f = xfer->data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->release_pending) {
        release(f);
        return;
    }
    if (f->state == ST_ADOPTED)
        return; /* its own attempt, set aside: the hedge answers */
    if (f->aborted) {
        release(f);
        return;
    }
    f->hedge_at_ms = 0;
    if (f->head_delivered) {
        int err = rc == CURLE_OK ? 0 : map_curl_error(rc);
        /* fewer bytes than announced (or a close before the last chunk), a malformed chunk, more
         * bytes than announced: the answer is not what its head said */
        if (f->proto_err || rc == CURLE_PARTIAL_FILE || rc == CURLE_WEIRD_SERVER_REPLY ||
            (rc == CURLE_OK && dc_framing_has_body(f->status, f->head_request) &&
             dc_framing_body(&f->framing, f->body_bytes, true) != 0))
            err = DC_EPROTO;
        if (err == DC_EPROTO)
            dc_log_warn("upstream %s: the body does not match its framing (%llu bytes, %lld announced)", f->url,
                        (unsigned long long)f->body_bytes, (long long)f->framing.content_length);
        if (err == 0 && f->cbs.judge != NULL) { /* a hedge has no judge: its parent checks itself */
            f->in_callback = true;
            int verdict = f->cbs.judge(f->data, f, true);
            f->in_callback = false;
            if (f->aborted) {
                release(f);
                return;
            }
            if (verdict != 0) {
                record_attempt(f, true); /* its head counted as a success; the answer was not */
                if (judged_retry(f)) {
                    f->head_delivered = false; /* the caller waits for the next attempt's head */
                    uint64_t delay = 0;
                    if (!f->failover_next) {
                        delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers, random());
                        f->tried = 0;
                    }
                    f->last_err = DC_EVALIDATION;
                    f->state = ST_BACKOFF;
                    uv_timer_start(&f->timer, on_deadline, delay, 0);
                    return;
                }
                finish(f, DC_EVALIDATION);
                return;
            }
        }
        if (err != 0) {
            record_attempt(f, true); /* the body broke off or lied */
            char why[128];
            snprintf(why, sizeof(why), "the body does not match its framing (%llu bytes, %lld announced)",
                     (unsigned long long)f->body_bytes, (long long)f->framing.content_length);
            note_failure(f, rc, DC_CAUSE_F_HEAD | (err == DC_EPROTO ? DC_CAUSE_F_FRAMING : 0u),
                         err == DC_EPROTO ? why : NULL);
        }
        finish(f, err);
        return;
    }
    /* a discarded attempt's outcome was recorded with its head; an attempt that failed here
     * (a URL curl cannot use, our own resources) says nothing about the origin */
    if (!f->discard && (f->proto_err || dc_retry_origin_failed(rc)))
        record_attempt(f, true);
    /* no head delivered: this attempt failed or is being discarded for a retry */
    int err = f->discard ? f->last_err : map_curl_error(rc);
    bool retry = f->discard && !f->hedge_follow;
    if (!f->discard && !f->proto_err && rc != CURLE_OK && rc != CURLE_WEIRD_SERVER_REPLY &&
        dc_retry_origin_failed(rc)) {
        dc_tier_fail_t why = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ? DC_TIER_FAIL_CONNECT
                             : rc == CURLE_OPERATION_TIMEDOUT                                ? DC_TIER_FAIL_TIMEOUT
                                                                                             : DC_TIER_FAIL_TRANSPORT;
        retry = plan_failover(f, why) || (dc_retry_curl_code(rc) && can_retry(f) && take_retry_slot(f));
    }
    if (f->proto_err || rc == CURLE_WEIRD_SERVER_REPLY) {
        err = DC_EPROTO; /* a malformed head: the origin would send it again */
        retry = false;
    }
    if (rc == CURLE_OK && !f->discard) {
        /* a complete response without a head should not happen; treat as bad upstream */
        retry = false;
        err = DC_EUPSTREAM;
    }
    /* failures of our own making (a URL curl cannot use, memory) are not the upstream's: the answer
     * stays the generic one, nothing is noted against the upstream */
    if (!f->discard && (f->proto_err || (rc != CURLE_OK && dc_retry_origin_failed(rc)))) {
        char why[160];
        bool framing = f->proto_err || rc == CURLE_WEIRD_SERVER_REPLY;
        if (f->proto_err)
            snprintf(why, sizeof(why), "invalid response framing (%s)",
                     f->framing.error != NULL ? f->framing.error : "malformed");
        note_failure(f, rc, framing ? DC_CAUSE_F_FRAMING : 0u, f->proto_err ? why : NULL);
    }
    f->last_err = err;
    if (retry) {
        uint64_t now = dc_now_mono_ms();
        uint64_t delay = 0;
        if (!f->failover_next) { /* a new round over the tiers, after the backoff */
            delay = dc_retry_backoff_ms(f->opts.retry_backoff_ms, f->attempts - f->failovers, random());
            if (f->pause_ms > delay)
                delay = f->pause_ms;
            f->tried = 0;
        }
        f->pause_ms = 0;
        if (!dc_retry_fits(now, delay, f->deadline_ms)) {
            if (f->hedge != NULL)
                follow_hedge(f, err, false, 0);
            else
                finish(f, err == DC_ETIMEDOUT ? DC_ETIMEDOUT : err);
            return;
        }
        if (f->hedge != NULL) { /* the hedge first: this retry only if it fails */
            follow_hedge(f, err, true, delay);
            return;
        }
        f->state = ST_BACKOFF;
        uv_timer_start(&f->timer, on_deadline, delay, 0);
        return;
    }
    if (f->hedge != NULL) {
        follow_hedge(f, err, false, 0);
        return;
    }
    finish(f, err);
}

/* A fleet-wide slot from Redis: refused, queued until it, or now. Redis unavailable: this
 * instance's share of the budget, locally. */
static void reserve_locally(dc_fetch_t *f, unsigned share_n);

static void on_fleet_reserved(void *data, int err, int ok, uint64_t wait_us)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->aborted) {
        release(f);
        return;
    }
    if (err != 0) {
        reserve_locally(f, dc_fleet_instances());
        return;
    }
    if (!ok) {
        f->retry_after_ms = (wait_us + 999) / 1000;
        finish(f, DC_EAGAIN);
        return;
    }
    /* the slot is no earlier than our request's send time plus the wait Redis gave */
    f->leave_by_ms = f->reserve_sent_ms + wait_us / 1000 + late_ok_ms(f);
    if (wait_us == 0) {
        leave_for_slot(f);
        return;
    }
    if (!dc_budget_enqueue(f->budget)) {
        f->retry_after_ms = (wait_us + 999) / 1000;
        finish(f, DC_EAGAIN);
        return;
    }
    f->state = ST_QUEUED;
    f->queued = true;
    uv_timer_start(&f->timer, on_deadline, (wait_us + 999) / 1000, 0);
}

/* The attempt goes to tier i: its URL, keys, budget and breaker. */
static void use_tier(dc_fetch_t *f, unsigned i)
{
    const dc_fetch_tier_t *t = &f->tiers[i];
    f->tier = i;
    f->tried |= 1u << i;
    f->health = t->health;
    f->keyring = t->keyring;
    f->budget = t->budget;
    f->key_budgets = t->key_budgets;
    f->accounts = t->accounts;
    free(f->budget_name);
    f->budget_name = t->budget_name != NULL ? dc_strdup(t->budget_name) : NULL;
    free(f->attempt_url);
    f->attempt_url = dc_asprintf("%s%s", t->url, f->url + f->base0_len);
}

/* The tier of the next attempt (tier.h): the first not cordoned whose breaker admits it (this takes
 * the half-open probe: *probe), preferring tiers with budget; after a failure (*failover), only
 * tiers not tried in this round. false: none can take it; *retry_in_ms = when the first tier's
 * breaker may admit again. */
static bool choose_tier(dc_fetch_t *f, uint64_t *retry_in_ms, unsigned *tier, bool *probe, bool *failover)
{
    uint64_t now = dc_now_mono_ms();
    dc_tier_view_t v[DC_TIERS_MAX];
    for (size_t i = 0; i < f->ntiers; i++) {
        const dc_fetch_tier_t *t = &f->tiers[i];
        v[i].cordoned = t->health != NULL && atomic_load(&t->health->cordoned);
        v[i].open = t->health != NULL && dc_upstream_state_peek(t->health, &f->opts.breaker, now) == DC_BREAKER_OPEN;
        v[i].has_budget = t->budget == NULL || !dc_budget_cooling(t->budget, now * 1000);
        v[i].tried = (f->tried >> i) & 1u;
    }
    *failover = f->failover_next;
    f->failover_next = false;
    unsigned order[DC_TIERS_MAX];
    size_t n = dc_tier_order(v, f->ntiers, *failover, order);
    for (size_t k = 0; k < n; k++) {
        dc_upstream_state_t *h = f->tiers[order[k]].health;
        uint64_t ignored;
        dc_breaker_verdict_t verdict =
            h == NULL ? DC_BREAKER_PASS : dc_upstream_state_admit(h, &f->opts.breaker, now, &ignored);
        if (verdict != DC_BREAKER_OPEN) {
            *tier = order[k];
            *probe = verdict == DC_BREAKER_PROBE;
            return true;
        }
    }
    *retry_in_ms = 1000; /* every tier cordoned */
    for (size_t i = 0; i < f->ntiers; i++) {
        dc_upstream_state_t *h = f->tiers[i].health;
        if (h != NULL && !v[i].cordoned &&
            dc_upstream_state_admit(h, &f->opts.breaker, now, retry_in_ms) == DC_BREAKER_OPEN)
            break; /* counts the refusal, says when */
    }
    return false;
}

/* With accounts, groups or weights on this attempt's tier: the key is chosen first (its account's
 * budget is the attempt's), then the group's budget is added (or, for a separate group, replaces
 * the account's), and the path's weight is the cost in the account's. */
static void use_account(dc_fetch_t *f)
{
    f->budget_cost = 1;
    f->group_budget = NULL;
    f->group_429 = false;
    free(f->group_budget_name);
    f->group_budget_name = NULL;
    dc_accounts_t *a = f->accounts;
    if (a == NULL)
        return;
    f->budget_cost = f->weight;
    size_t acct = 0;
    if (a->naccounts > 0 && f->keyring != NULL && f->keyring->nkeys > 0) {
        if (f->key_index < 0)
            f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        acct = a->key_account[f->key_index];
        f->budget = &a->budgets[acct];
        free(f->budget_name);
        f->budget_name = dc_strdup(a->names[acct]);
    }
    if (f->group < 0 || (size_t)f->group >= a->ngroups)
        return;
    dc_budget_t *gb = dc_accounts_group_budget(a, acct, (size_t)f->group);
    const char *gname = dc_accounts_group_name(a, acct, (size_t)f->group);
    f->group_429 = true;
    if (a->cfg->groups[f->group].separate) { /* its own bucket only: it holds the queue, costs 1 */
        f->budget = gb;
        f->budget_cost = 1;
        free(f->budget_name);
        f->budget_name = dc_strdup(gname);
        f->group_429 = false;
        return;
    }
    f->group_budget = gb;
    f->group_budget_name = dc_strdup(gname);
}

static void continue_attempt(dc_fetch_t *f);

/* The fleet's probe lock answered (see breaker_fleet.h): ours, or Redis unavailable (a local
 * probe): the attempt goes; another instance's: this tier refuses until that probe reports, and
 * the attempt chooses again. */
static void on_probe_lock(void *data, int err, bool won, const char *open, size_t open_len)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->aborted) {
        if (won && f->upstream_name != NULL)
            dc_breaker_fleet_probe_unlock(f->fleet, f->upstream_name, f->pending_tier);
        release(f);
        return;
    }
    if (err == 0 && !won) {
        dc_upstream_state_t *h = f->tiers[f->pending_tier].health;
        if (open == NULL || !dc_brk_value_apply(h, open, open_len, dc_now_wall_ms(), dc_now_mono_ms()))
            dc_upstream_state_probe_elsewhere(h, dc_now_mono_ms());
        f->failover_next = f->pending_failover;
        start_attempt(f);
        return;
    }
    f->probe_locked = won;
    if (f->pending_failover)
        f->failovers++;
    use_tier(f, f->pending_tier);
    continue_attempt(f);
}

/* Every attempt is an upstream request: it takes a slot of its tier's budget first. */
static void start_attempt(dc_fetch_t *f)
{
    /* a cordoned tier or an open breaker sends nothing: not the first attempt, not a retry */
    uint64_t retry_in_ms = 0;
    unsigned tier = 0;
    bool probe = false, failover = false;
    if (!choose_tier(f, &retry_in_ms, &tier, &probe, &failover)) {
        f->retry_after_ms = retry_in_ms;
        if (f->cause == DC_CAUSE_NONE)
            cause_from_health(f);
        fail_soon(f, f->attempts > 0 ? f->last_err : DC_EUNAVAIL);
        return;
    }
    if (probe && f->fleet != NULL && f->upstream_name != NULL && dc_fleet_up(f->fleet)) {
        /* one probe for the whole fleet: ask for the lock first */
        f->pending_tier = tier;
        f->pending_failover = failover;
        f->state = ST_RESERVING;
        if (dc_breaker_fleet_probe_lock(f->fleet, f->upstream_name, tier, f->opts.breaker.probe_timeout_ms,
                                        on_probe_lock, f) == 0)
            return;
    }
    if (failover)
        f->failovers++;
    use_tier(f, tier);
    continue_attempt(f);
}

/* The tier is chosen (use_tier): the attempt takes a slot of its budget, then goes. */
static void continue_attempt(dc_fetch_t *f)
{
    /* with a budget per key, the key is chosen first: the attempt waits for that key's slot */
    f->key_index = -1;
    if (f->key_budgets != NULL && f->keyring != NULL && f->keyring->nkeys > 0) {
        f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        f->budget = &f->key_budgets[f->key_index];
        const char *base = f->tiers[f->tier].budget_name;
        free(f->budget_name);
        f->budget_name = dc_asprintf("%s#%s", base != NULL ? base : "", f->keyring->ids[f->key_index]);
    }
    use_account(f);
    uint64_t now = dc_now_mono_ms();
    if (!f->rereserving && f->budget != NULL)
        f->queue_until_ms = now + f->budget->queue_timeout_us / 1000;
    f->rereserving = false;
    f->slot_local = false;
    bool paced = f->budget != NULL && (f->budget->nwin > 0 || (f->group_budget != NULL && f->group_budget->nwin > 0));
    if (paced && f->fleet != NULL && dc_fleet_up(f->fleet)) {
        uint64_t em[DC_BUDGET_FLEET_MAX_PARTS][DC_BUDGET_FLEET_MAX_WIN];
        dc_fleet_budget_part_t parts[DC_BUDGET_FLEET_MAX_PARTS];
        size_t nparts = 0;
        parts[nparts] = (dc_fleet_budget_part_t){f->budget_name != NULL ? f->budget_name : "", em[nparts],
                                                 dc_budget_emissions(f->budget, em[nparts], DC_BUDGET_FLEET_MAX_WIN),
                                                 f->budget_cost};
        nparts++;
        if (f->group_budget != NULL) {
            parts[nparts] =
                (dc_fleet_budget_part_t){f->group_budget_name, em[nparts],
                                         dc_budget_emissions(f->group_budget, em[nparts], DC_BUDGET_FLEET_MAX_WIN), 1};
            nparts++;
        }
        f->state = ST_RESERVING;
        f->reserve_sent_ms = now;
        uint64_t queue_us = f->queue_until_ms > now ? (f->queue_until_ms - now) * 1000 : 0;
        if (dc_fleet_budget_reserve_multi(f->fleet, parts, nparts, queue_us, f->opts.background, on_fleet_reserved,
                                          f) == 0)
            return;
        reserve_locally(f, dc_fleet_instances());
        return;
    }
    reserve_locally(f, 1);
}

static void reserve_locally(dc_fetch_t *f, unsigned share_n)
{
    if (f->budget != NULL) {
        uint64_t delay_us, now_us = dc_now_mono_us();
        dc_budget_t *bs[DC_BUDGET_MULTI_MAX] = {f->budget, f->group_budget};
        uint32_t costs[DC_BUDGET_MULTI_MAX] = {f->budget_cost, 1};
        size_t nb = f->group_budget != NULL ? 2 : 1;
        if (dc_budget_reserve_multi(bs, costs, nb, now_us, f->opts.background, share_n, &delay_us) != 0) {
            f->retry_after_ms = (delay_us + 999) / 1000;
            fail_soon(f, DC_EAGAIN);
            return;
        }
        /* a slot given back by a hedge that lost before sending: one unit of one budget only */
        f->slot_local = f->budget->nwin > 0 && f->group_budget == NULL && f->budget_cost == 1;
        f->slot_us = now_us + delay_us;
        f->slot_share = share_n;
        uint64_t now = dc_now_mono_ms();
        if (now + delay_us / 1000 > f->queue_until_ms) { /* a re-reservation past the queue timeout */
            f->retry_after_ms = (delay_us + 999) / 1000;
            fail_soon(f, DC_EAGAIN);
            return;
        }
        f->leave_by_ms = now + delay_us / 1000 + late_ok_ms(f);
        if (delay_us > 0) {
            f->state = ST_QUEUED;
            f->queued = true;
            uv_timer_start(&f->timer, on_deadline, (delay_us + 999) / 1000, 0);
            return;
        }
        leave_for_slot(f);
        return;
    }
    begin_attempt(f);
}

/* The attempt's slot has come: it goes, unless it would leave later than the budget allows after
 * its slot (a late timer or Redis reply under CPU contention: the next `limit` requests may leave
 * on time and a window would hold one too many). Then it gives the slot up and reserves again, a
 * few times, within its deadline; past that the budget counts as exhausted (503). */
static void leave_for_slot(dc_fetch_t *f)
{
    uint64_t now = dc_now_mono_ms();
    if (f->leave_by_ms == 0 || now <= f->leave_by_ms) {
        f->leave_by_ms = 0;
        begin_attempt(f);
        return;
    }
    f->leave_by_ms = 0;
    __atomic_fetch_add(&dc_metrics_process.budget_late_rereserves, 1, __ATOMIC_RELAXED);
    if (++f->late_rereserves <= 3 && now < f->queue_until_ms) { /* within the queue timeout it had */
        f->rereserving = true;
        start_attempt(f);
        return;
    }
    f->retry_after_ms = 1000;
    finish(f, DC_EAGAIN);
}

/* The request's header lines for this attempt (f->slist, rebuilt each attempt): the caller's lines,
 * the ring key (picked now unless a key budget chose it), and blanks for what curl would invent. */
static void build_request_headers(dc_fetch_t *f)
{
    if (f->slist)
        curl_slist_free_all(f->slist);
    f->slist = NULL;
    bool has_content_type = false;
    for (size_t i = 0; i < f->nreq_headers; i++) {
        f->slist = slist_add_header(f->slist, f->req_headers[i]);
        has_content_type = has_content_type || strncasecmp(f->req_headers[i], "content-type:", 13) == 0;
    }
    if (f->keyring != NULL && f->keyring->nkeys > 0) {
        if (f->key_index < 0) /* not chosen for a key budget */
            f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        char *line = dc_asprintf("%s: %s", f->key_header, f->keyring->keys[f->key_index]);
        f->slist = slist_add(f->slist, line);
        free(line);
    }
    /* curl adds these by default (Content-Type: application/x-www-form-urlencoded to a body the
     * client sent without one); a proxy must not invent them */
    f->slist = slist_add(f->slist, "Expect:");
    if (!has_content_type)
        f->slist = slist_add(f->slist, "Content-Type:");
}

/* Transport options: callbacks, timeouts, protocol, TLS, no automatic decoding. */
static void set_transfer_options(dc_fetch_t *f, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_URL, f->attempt_url != NULL ? f->attempt_url : f->url);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->slist);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, f);
    /* CURLOPT_VERBOSE (feeding on_debug only, never stderr) is turned on by end_of_head: the texts
     * on_debug looks for all concern the body, and before that curl would format a dozen lines per
     * transfer nobody reads */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)f->opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     f->opts.http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    /* waiting to multiplex only makes sense where HTTP/2 can be negotiated (TLS + ALPN); on plain
     * HTTP/1.1 upstreams it would queue concurrent transfers behind one connection */
    if (f->opts.http2 && strncmp(f->attempt_url != NULL ? f->attempt_url : f->url, "https:", 6) == 0)
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, f->opts.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, f->opts.tls_verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 60L);
    /* pass bytes through as the origin encoded them: no automatic decoding */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_TRANSFER_DECODING, 1L);
}

/* The method, and the body for the methods that carry one (an empty one when the client sent none). */
static void set_method_and_body(dc_fetch_t *f, CURL *e)
{
    if (strcmp(f->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(f->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, f->method);
        if (f->body != NULL || strcmp(f->method, "POST") == 0 || strcmp(f->method, "PUT") == 0 ||
            strcmp(f->method, "PATCH") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->body != NULL ? f->body : "");
        }
    }
}

static void begin_attempt(dc_fetch_t *f)
{
    f->attempts++;
    f->errbuf[0] = '\0';
    f->cause = DC_CAUSE_NONE;
    f->cause_text[0] = '\0';
    f->discard = false;
    f->hedge_follow = false;
    f->proto_err = false;
    f->attempt_started_us = dc_now_mono_us();
    f->body_bytes = 0;
    f->state = ST_ATTEMPT;
    reset_head(f);
    if (f->xfer.easy == NULL)
        f->xfer.easy = dc_curl_easy_get(f->cl); /* reset already */
    else
        curl_easy_reset(f->xfer.easy);
    CURL *e = f->xfer.easy;
    if (e == NULL) {
        f->last_err = DC_EUPSTREAM;
        fail_soon(f, DC_EUPSTREAM);
        return;
    }
    build_request_headers(f);
    set_transfer_options(f, e);
    set_method_and_body(f, e);
    f->xfer.cb = on_xfer_done;
    f->xfer.data = f;
    /* the whole response (every attempt, head and body) must be in by the deadline, counted from
     * the first real attempt (time spent queued for the budget is bounded by the queue timeout) */
    if (f->deadline_ms == 0)
        f->deadline_ms = dc_now_mono_ms() + f->opts.timeout_ms;
    f->attempt_deadline_ms = f->opts.attempt_timeout_ms > 0 && f->ntiers > 1
                                 ? dc_now_mono_ms() + f->opts.attempt_timeout_ms
                                 : 0; /* only moving down makes an attempt's own timeout useful */
    f->hedge_at_ms = f->attempts == 1 && hedge_enabled(f) ? dc_now_mono_ms() + hedge_delay_ms(f) : 0;
    arm_timer(f);
    if (dc_curl_loop_add(f->cl, &f->xfer) != 0) {
        f->last_err = DC_EUPSTREAM;
        fail_soon(f, DC_EUPSTREAM);
    }
}

/* Report the outcome once and release. */
static void finish(dc_fetch_t *f, int err)
{
    if (f->state == ST_FINISHED)
        return;
    f->state = ST_FINISHED;
    uv_timer_stop(&f->timer);
    if (!f->aborted && f->cbs.on_done != NULL)
        f->cbs.on_done(f->data, f, err);
    release(f);
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
    start_attempt(f);
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
    arm_timer(f);
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
        hedge_slot_release(f);
        release(f);
        return;
    }
    if (f->hedge != NULL)
        drop_hedge(f);
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
            release(f);
            return;
        }
        dc_curl_loop_remove(f->cl, &f->xfer);
    }
    release(f);
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
    uint64_t us = retry_after_us_from(f);
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
