#include "upstream/fetch.h"
#include "upstream/framing.h"
#include "upstream/retry.h"
#include "redis/bus.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "upstream/budget_fleet.h"
#include "core/time.h"
#include "cache/policy.h"

#include <ctype.h>
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
    uint64_t attempt_deadline_ms; /* monotonic: this attempt's own timeout (0 = none) */
};

static void start_attempt(dc_fetch_t *f);
static void begin_attempt(dc_fetch_t *f);
static void leave_for_slot(dc_fetch_t *f);
static void finish(dc_fetch_t *f, int err);
static void on_deadline(uv_timer_t *t);

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

/* Release everything once no curl transfer is active. */
static void release(dc_fetch_t *f)
{
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

/* This attempt's tier's health and breaker learn its outcome (see upstream_state.h). */
static void record_attempt(dc_fetch_t *f, bool failed)
{
    if (f->health == NULL)
        return;
    if (failed)
        dc_upstream_state_failure(f->health, &f->opts.breaker, dc_now_mono_ms());
    else
        dc_upstream_state_success(f->health, dc_now_mono_ms());
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
        dc_budget_on_429(f->budget, dc_now_mono_us(), ra);
        if (f->fleet != NULL && f->budget_name != NULL)
            dc_fleet_cooldown(f->fleet, f->budget_name, ra ? ra : 1000000); /* every instance pauses */
    } else if (f->status < 500)
        dc_budget_on_success(f->budget);
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
    record_attempt(f, f->status >= 500);
    uint64_t ra = f->status == 429 ? retry_after_us_from(f) : 0;
    budget_learn_status(f, ra);
    size_t keys_usable;
    bool key_rejected = quarantine_rejected_key(f, &keys_usable);
    if (!head_is_delivered(f, key_rejected, keys_usable, ra))
        return 0; /* aborts this attempt; done handler schedules the retry */
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
    uint64_t now = dc_now_mono_ms();
    if (f->state == ST_ATTEMPT && f->attempt_deadline_ms != 0 && now < f->deadline_ms) {
        /* this attempt's own timeout: the next tier, if one can take it; else wait on */
        f->attempt_deadline_ms = 0;
        if (plan_failover(f, DC_TIER_FAIL_TIMEOUT)) {
            dc_curl_loop_remove(f->cl, &f->xfer);
            record_attempt(f, true);
            f->last_err = DC_ETIMEDOUT;
            f->state = ST_BACKOFF;
            uv_timer_start(&f->timer, on_deadline, 0, 0);
            return;
        }
        arm_timer(f);
        return;
    }
    /* no complete answer by the deadline, or the body stalled longer than the idle timeout */
    dc_curl_loop_remove(f->cl, &f->xfer);
    record_attempt(f, true);
    finish(f, DC_ETIMEDOUT);
}

/* While a transfer runs: fire at the deadline, or (once the head is in) after idle_timeout_ms
 * without a byte, whichever comes first. */
static void arm_timer(dc_fetch_t *f)
{
    uint64_t now = dc_now_mono_ms();
    uint64_t left = f->deadline_ms > now ? f->deadline_ms - now : 1;
    if (f->state == ST_BODY && f->opts.idle_timeout_ms > 0 && f->opts.idle_timeout_ms < left)
        left = f->opts.idle_timeout_ms;
    if (f->state == ST_ATTEMPT && f->attempt_deadline_ms != 0 && f->attempt_deadline_ms < f->deadline_ms)
        left = f->attempt_deadline_ms > now ? f->attempt_deadline_ms - now : 1;
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
    if (f->aborted) {
        release(f);
        return;
    }
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
        if (err != 0)
            record_attempt(f, true); /* the body broke off or lied */
        finish(f, err);
        return;
    }
    /* a discarded attempt's outcome was recorded with its head; an attempt that failed here
     * (a URL curl cannot use, our own resources) says nothing about the origin */
    if (!f->discard && (f->proto_err || dc_retry_origin_failed(rc)))
        record_attempt(f, true);
    /* no head delivered: this attempt failed or is being discarded for a retry */
    int err = f->discard ? f->last_err : map_curl_error(rc);
    bool retry = f->discard;
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
            finish(f, err == DC_ETIMEDOUT ? DC_ETIMEDOUT : err);
            return;
        }
        f->state = ST_BACKOFF;
        uv_timer_start(&f->timer, on_deadline, delay, 0);
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
    f->leave_by_ms = f->reserve_sent_ms + wait_us / 1000 + f->budget->late_ok_us / 1000;
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
    free(f->budget_name);
    f->budget_name = t->budget_name != NULL ? dc_strdup(t->budget_name) : NULL;
    free(f->attempt_url);
    f->attempt_url = dc_asprintf("%s%s", t->url, f->url + f->base0_len);
}

/* The tier of the next attempt (tier.h): the first not cordoned whose breaker admits it (this takes
 * the half-open probe), preferring tiers with budget; after a failure, only tiers not tried in this
 * round. false: none can take it; *retry_in_ms = when the first tier's breaker may admit again. */
static bool choose_tier(dc_fetch_t *f, uint64_t *retry_in_ms)
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
    bool failover = f->failover_next;
    f->failover_next = false;
    unsigned order[DC_TIERS_MAX];
    size_t n = dc_tier_order(v, f->ntiers, failover, order);
    for (size_t k = 0; k < n; k++) {
        dc_upstream_state_t *h = f->tiers[order[k]].health;
        uint64_t ignored;
        if (h == NULL || dc_upstream_state_admit(h, &f->opts.breaker, now, &ignored) != DC_BREAKER_OPEN) {
            if (failover)
                f->failovers++;
            use_tier(f, order[k]);
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

/* Every attempt is an upstream request: it takes a slot of its tier's budget first. */
static void start_attempt(dc_fetch_t *f)
{
    /* a cordoned tier or an open breaker sends nothing: not the first attempt, not a retry */
    uint64_t retry_in_ms = 0;
    if (!choose_tier(f, &retry_in_ms)) {
        f->retry_after_ms = retry_in_ms;
        fail_soon(f, f->attempts > 0 ? f->last_err : DC_EUNAVAIL);
        return;
    }
    /* with a budget per key, the key is chosen first: the attempt waits for that key's slot */
    f->key_index = -1;
    if (f->key_budgets != NULL && f->keyring != NULL && f->keyring->nkeys > 0) {
        f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        f->budget = &f->key_budgets[f->key_index];
        const char *base = f->tiers[f->tier].budget_name;
        free(f->budget_name);
        f->budget_name = dc_asprintf("%s#%s", base != NULL ? base : "", f->keyring->ids[f->key_index]);
    }
    uint64_t now = dc_now_mono_ms();
    if (!f->rereserving && f->budget != NULL)
        f->queue_until_ms = now + f->budget->queue_timeout_us / 1000;
    f->rereserving = false;
    if (f->budget != NULL && f->budget->nwin > 0 && f->fleet != NULL && dc_fleet_up(f->fleet)) {
        uint64_t em[DC_BUDGET_FLEET_MAX_WIN];
        size_t n = dc_budget_emissions(f->budget, em, DC_BUDGET_FLEET_MAX_WIN);
        f->state = ST_RESERVING;
        f->reserve_sent_ms = now;
        uint64_t queue_us = f->queue_until_ms > now ? (f->queue_until_ms - now) * 1000 : 0;
        if (dc_fleet_budget_reserve(f->fleet, f->budget_name, em, n, queue_us, f->opts.background, on_fleet_reserved,
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
        uint64_t delay_us;
        if (dc_budget_reserve_share(f->budget, dc_now_mono_us(), f->opts.background, share_n, &delay_us) != 0) {
            f->retry_after_ms = (delay_us + 999) / 1000;
            fail_soon(f, DC_EAGAIN);
            return;
        }
        uint64_t now = dc_now_mono_ms();
        if (now + delay_us / 1000 > f->queue_until_ms) { /* a re-reservation past the queue timeout */
            f->retry_after_ms = (delay_us + 999) / 1000;
            fail_soon(f, DC_EAGAIN);
            return;
        }
        f->leave_by_ms = now + delay_us / 1000 + f->budget->late_ok_us / 1000;
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
    f->discard = false;
    f->proto_err = false;
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
    size_t n = req->ntiers < DC_TIERS_MAX ? req->ntiers : DC_TIERS_MAX;
    if (n > 0 && strncmp(f->url, req->tiers[0].url, strlen(req->tiers[0].url)) != 0)
        n = 1; /* a URL outside tier 1's base (never made by http/): it alone, as given */
    if (n == 0 || req->ntiers == 0) {
        f->tiers[0] =
            (dc_fetch_tier_t){"", req->keyring, req->budget, req->key_budgets, req->health, req->upstream_name};
        f->ntiers = 1;
        f->base0_len = 0;
        return;
    }
    memcpy(f->tiers, req->tiers, n * sizeof(*f->tiers));
    f->ntiers = n;
    f->base0_len = strncmp(f->url, req->tiers[0].url, strlen(req->tiers[0].url)) == 0 ? strlen(req->tiers[0].url) : 0;
    if (f->base0_len == 0)
        f->tiers[0].url = "";
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

int dc_fetch_status(const dc_fetch_t *f)
{
    return f->status;
}

const char *dc_fetch_reason(const dc_fetch_t *f)
{
    return f->reason != NULL ? f->reason : "";
}

const dc_fetch_header_t *dc_fetch_headers(const dc_fetch_t *f, size_t *n)
{
    *n = f->nheaders;
    return f->headers;
}

int64_t dc_fetch_content_length(const dc_fetch_t *f)
{
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
    uint64_t us = retry_after_us_from(f);
    return (us + 999999) / 1000000;
}
