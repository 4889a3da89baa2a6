#include "upstream/upstream_state.h"

#include <stdio.h>
#include <stddef.h>

#define RELAXED memory_order_relaxed

uint64_t dc_breaker_backoff_ms(const dc_breaker_params_t *p, uint32_t n)
{
    uint64_t max = p->max_backoff_ms > p->backoff_ms ? p->max_backoff_ms : p->backoff_ms;
    uint64_t d = p->backoff_ms;
    for (uint32_t i = 1; i < n && d < max; i++)
        d *= 2;
    return d < max ? d : max;
}

dc_breaker_verdict_t dc_upstream_state_admit(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms,
                                             uint64_t *retry_in_ms)
{
    uint64_t until = atomic_load_explicit(&s->open_until_ms, RELAXED);
    if (until == 0)
        return DC_BREAKER_PASS;
    if (now_ms < until) {
        *retry_in_ms = until - now_ms;
        atomic_fetch_add_explicit(&s->refused_total, 1, RELAXED);
        return DC_BREAKER_OPEN;
    }
    /* half-open: the first caller (or the one replacing a probe unheard of) sends the probe */
    uint64_t probe = atomic_load_explicit(&s->probe_at_ms, RELAXED);
    if ((probe == 0 || now_ms >= probe + p->probe_timeout_ms) &&
        atomic_compare_exchange_strong_explicit(&s->probe_at_ms, &probe, now_ms, RELAXED, RELAXED))
        return DC_BREAKER_PROBE;
    *retry_in_ms = p->backoff_ms;
    atomic_fetch_add_explicit(&s->refused_total, 1, RELAXED);
    return DC_BREAKER_OPEN;
}

dc_breaker_verdict_t dc_upstream_state_peek(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&s->open_until_ms, RELAXED);
    if (until == 0)
        return DC_BREAKER_PASS;
    if (now_ms < until)
        return DC_BREAKER_OPEN;
    uint64_t probe = atomic_load_explicit(&s->probe_at_ms, RELAXED);
    return probe == 0 || now_ms >= probe + p->probe_timeout_ms ? DC_BREAKER_PROBE : DC_BREAKER_OPEN;
}

/* ---- the failure ratio window ---- */

static uint64_t bucket_ms(const dc_breaker_params_t *p)
{
    uint64_t b = p->window_ms / DC_BREAKER_BUCKETS;
    return b > 0 ? b : 1;
}

static bool ratio_on(const dc_breaker_params_t *p)
{
    return p->failure_ratio > 0 && p->window_ms > 0;
}

static void window_clear(dc_upstream_state_t *s)
{
    for (size_t i = 0; i < DC_BREAKER_BUCKETS; i++)
        atomic_store_explicit(&s->window[i], 0, RELAXED);
}

static void window_record(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms, bool failed)
{
    if (!ratio_on(p))
        return;
    uint64_t bn = now_ms / bucket_ms(p);
    uint64_t tag = bn & 0xffffffffu;
    _Atomic uint64_t *w = &s->window[bn % DC_BREAKER_BUCKETS];
    uint64_t old = atomic_load_explicit(w, RELAXED), next;
    do {
        uint64_t a = 0, f = 0;
        if (old >> 32 == tag)
            a = (old >> 16) & 0xffffu, f = old & 0xffffu;
        a += a < 0xffffu;
        f += failed && f < 0xffffu;
        next = tag << 32 | a << 16 | f;
    } while (!atomic_compare_exchange_weak_explicit(w, &old, next, RELAXED, RELAXED));
}

void dc_upstream_state_window(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms, uint32_t *attempts,
                              uint32_t *failures)
{
    *attempts = *failures = 0;
    if (!ratio_on(p))
        return;
    uint32_t bn = (uint32_t)(now_ms / bucket_ms(p));
    for (size_t i = 0; i < DC_BREAKER_BUCKETS; i++) {
        uint64_t w = atomic_load_explicit(&s->window[i], RELAXED);
        uint32_t age = bn - (uint32_t)(w >> 32);
        if (age >= DC_BREAKER_BUCKETS)
            continue; /* older than the window (or from the future: a clock that went back) */
        *attempts += (uint32_t)((w >> 16) & 0xffffu);
        *failures += (uint32_t)(w & 0xffffu);
    }
}

static bool ratio_trips(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms)
{
    uint32_t a, f;
    dc_upstream_state_window(s, p, now_ms, &a, &f);
    return a > 0 && a >= p->min_requests && (double)f >= p->failure_ratio * (double)a;
}

/* ---- transitions ---- */

bool dc_upstream_state_success(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms)
{
    atomic_store_explicit(&s->consecutive_failures, 0, RELAXED);
    atomic_store_explicit(&s->last_success_ms, now_ms, RELAXED);
    if (atomic_load_explicit(&s->open_until_ms, RELAXED) == 0) {
        window_record(s, p, now_ms, false);
        return false;
    }
    uint64_t was = atomic_exchange_explicit(&s->open_until_ms, 0, RELAXED);
    atomic_store_explicit(&s->trips, 0, RELAXED);
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
    atomic_store_explicit(&s->opened_by, DC_OPENED_NONE, RELAXED);
    window_clear(s);
    return was != 0;
}

bool dc_upstream_state_failure(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms,
                               dc_breaker_opening_t *out)
{
    uint64_t fails = atomic_fetch_add_explicit(&s->consecutive_failures, 1, RELAXED) + 1;
    atomic_store_explicit(&s->last_failure_ms, now_ms, RELAXED);
    uint64_t until = atomic_load_explicit(&s->open_until_ms, RELAXED);
    if (until != 0 && now_ms < until)
        return false; /* already open: an attempt sent before it opened reports late */
    if (until == 0) {
        window_record(s, p, now_ms, true);
        if (fails < p->failures && !(ratio_on(p) && ratio_trips(s, p, now_ms)))
            return false;
    }
    /* closed at a threshold, or half-open (the probe, or a late report): open (again) */
    if (!atomic_compare_exchange_strong_explicit(&s->open_until_ms, &until, 1, RELAXED, RELAXED))
        return false; /* another worker did it just now */
    uint32_t trips = atomic_fetch_add_explicit(&s->trips, 1, RELAXED) + 1;
    uint64_t pause = dc_breaker_backoff_ms(p, trips);
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
    window_clear(s);
    atomic_store_explicit(&s->opened_by, DC_OPENED_LOCAL, RELAXED);
    atomic_store_explicit(&s->open_until_ms, now_ms + pause, RELAXED);
    atomic_fetch_add_explicit(&s->opened_total, 1, RELAXED);
    if (out != NULL)
        *out = (dc_breaker_opening_t){pause, trips};
    return true;
}

bool dc_upstream_state_fleet_open(dc_upstream_state_t *s, uint64_t now_ms, uint64_t remaining_ms, uint32_t trips)
{
    if (remaining_ms == 0)
        return false;
    uint64_t until = now_ms + remaining_ms;
    uint32_t cur_trips = atomic_load_explicit(&s->trips, RELAXED);
    while (cur_trips < trips && !atomic_compare_exchange_weak_explicit(&s->trips, &cur_trips, trips, RELAXED, RELAXED))
        ;
    uint64_t cur = atomic_load_explicit(&s->open_until_ms, RELAXED);
    do {
        if (cur > now_ms && cur >= until)
            return false; /* open at least that long already */
    } while (!atomic_compare_exchange_weak_explicit(&s->open_until_ms, &cur, until, RELAXED, RELAXED));
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
    atomic_store_explicit(&s->opened_by, DC_OPENED_FLEET, RELAXED);
    window_clear(s);
    if (cur <= now_ms) /* was closed or half-open: an opening here too */
        atomic_fetch_add_explicit(&s->opened_total, 1, RELAXED);
    return true;
}

bool dc_upstream_state_fleet_close(dc_upstream_state_t *s)
{
    if (atomic_exchange_explicit(&s->open_until_ms, 0, RELAXED) == 0)
        return false;
    atomic_store_explicit(&s->consecutive_failures, 0, RELAXED);
    atomic_store_explicit(&s->trips, 0, RELAXED);
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
    atomic_store_explicit(&s->opened_by, DC_OPENED_NONE, RELAXED);
    window_clear(s);
    return true;
}

void dc_upstream_state_probe_elsewhere(dc_upstream_state_t *s, uint64_t now_ms)
{
    atomic_store_explicit(&s->probe_at_ms, now_ms > 0 ? now_ms : 1, RELAXED);
}

const char *dc_upstream_state_opened_by_name(dc_upstream_state_t *s)
{
    switch (atomic_load_explicit(&s->opened_by, RELAXED)) {
    case DC_OPENED_LOCAL:
        return "local";
    case DC_OPENED_FLEET:
        return "fleet";
    default:
        return "none";
    }
}

const char *dc_upstream_state_name(dc_upstream_state_t *s, uint64_t now_ms)
{
    uint64_t fails = atomic_load_explicit(&s->consecutive_failures, RELAXED);
    uint64_t ok = atomic_load_explicit(&s->last_success_ms, RELAXED);
    uint64_t bad = atomic_load_explicit(&s->last_failure_ms, RELAXED);
    (void)now_ms;
    if (ok == 0 && bad == 0)
        return "unknown";
    if (fails >= 3 && bad >= ok)
        return "down";
    return "up";
}

const char *dc_upstream_state_breaker_name(dc_upstream_state_t *s, uint64_t now_ms)
{
    uint64_t until = atomic_load_explicit(&s->open_until_ms, RELAXED);
    if (until == 0)
        return "closed";
    return now_ms < until ? "open" : "half-open";
}

uint64_t dc_upstream_state_failures(dc_upstream_state_t *s)
{
    return atomic_load_explicit(&s->consecutive_failures, RELAXED);
}

/* ---- last error and the log's rate limit ---- */

static void err_lock(dc_upstream_state_t *s)
{
    uint32_t unlocked = 0;
    while (!atomic_compare_exchange_weak_explicit(&s->_err_lock, &unlocked, 1, memory_order_acquire, RELAXED))
        unlocked = 0;
}

static void err_unlock(dc_upstream_state_t *s)
{
    atomic_store_explicit(&s->_err_lock, 0, memory_order_release);
}

void dc_upstream_state_note_error(dc_upstream_state_t *s, dc_upstream_cause_t cause, const char *text, uint64_t wall_ms)
{
    err_lock(s);
    s->_last_cause = cause;
    s->_last_error_wall_ms = wall_ms;
    snprintf(s->_last_error, sizeof(s->_last_error), "%s", text != NULL ? text : "");
    err_unlock(s);
}

bool dc_upstream_state_last_error(dc_upstream_state_t *s, dc_upstream_cause_t *cause, char *buf, size_t cap,
                                  uint64_t *wall_ms)
{
    err_lock(s);
    bool any = s->_last_cause != DC_CAUSE_NONE;
    *cause = s->_last_cause;
    *wall_ms = s->_last_error_wall_ms;
    snprintf(buf, cap, "%s", s->_last_error);
    err_unlock(s);
    return any;
}

void dc_upstream_state_inherit_error(dc_upstream_state_t *to, dc_upstream_state_t *from)
{
    dc_upstream_cause_t cause;
    char text[DC_CAUSE_TEXT_MAX];
    uint64_t wall_ms;
    if (dc_upstream_state_last_error(from, &cause, text, sizeof(text), &wall_ms))
        dc_upstream_state_note_error(to, cause, text, wall_ms);
}

bool dc_upstream_state_log_gate(dc_upstream_state_t *s, dc_upstream_cause_t cause, uint64_t now_ms,
                                uint64_t interval_ms, uint64_t *suppressed)
{
    unsigned c = (unsigned)cause < DC_CAUSE_COUNT ? (unsigned)cause : (unsigned)DC_CAUSE_OTHER;
    uint64_t start = now_ms > 0 ? now_ms : 1;
    uint64_t w = atomic_load_explicit(&s->_log_window_ms[c], RELAXED);
    if ((w != 0 && now_ms < w + interval_ms) ||
        !atomic_compare_exchange_strong_explicit(&s->_log_window_ms[c], &w, start, RELAXED, RELAXED)) {
        atomic_fetch_add_explicit(&s->_log_suppressed[c], 1, RELAXED);
        return false;
    }
    *suppressed = atomic_exchange_explicit(&s->_log_suppressed[c], 0, RELAXED);
    return true;
}

/* ---- recent latencies ---- */

uint64_t dc_latwin_bound_us(unsigned i)
{
    if (i >= DC_LATWIN_BUCKETS - 1)
        return UINT64_MAX;
    uint64_t b = 1000;
    for (unsigned k = 0; k < i; k++)
        b = b * 5 / 4;
    return b;
}

static unsigned latwin_bucket(uint64_t us)
{
    unsigned i = 0;
    for (uint64_t b = 1000; i < DC_LATWIN_BUCKETS - 1 && us > b; b = b * 5 / 4)
        i++;
    return i;
}

void dc_latwin_record(dc_latwin_t *w, uint64_t now_ms, uint64_t us)
{
    uint64_t g = now_ms / DC_LATWIN_GEN_MS + 1;
    unsigned h = (unsigned)(g & 1);
    uint64_t old = atomic_load_explicit(&w->gen[h], RELAXED);
    if (old != g) {
        if (old > g) /* a newer generation (another worker's clock read): drop this sample */
            return;
        if (atomic_compare_exchange_strong_explicit(&w->gen[h], &old, g, RELAXED, RELAXED))
            for (unsigned i = 0; i < DC_LATWIN_BUCKETS; i++)
                atomic_store_explicit(&w->n[h][i], 0, RELAXED);
    }
    atomic_fetch_add_explicit(&w->n[h][latwin_bucket(us)], 1, RELAXED);
}

uint64_t dc_latwin_percentile_us(dc_latwin_t *w, uint64_t now_ms, unsigned p, uint32_t min_samples)
{
    uint64_t g = now_ms / DC_LATWIN_GEN_MS + 1;
    uint64_t counts[DC_LATWIN_BUCKETS] = {0}, total = 0;
    for (unsigned h = 0; h < 2; h++) {
        uint64_t gh = atomic_load_explicit(&w->gen[h], RELAXED);
        if (gh == 0 || gh + 1 < g || gh > g)
            continue; /* empty, or older than the previous generation */
        for (unsigned i = 0; i < DC_LATWIN_BUCKETS; i++) {
            uint32_t c = atomic_load_explicit(&w->n[h][i], RELAXED);
            counts[i] += c;
            total += c;
        }
    }
    if (total == 0 || total < min_samples)
        return 0;
    uint64_t want = (total * p + 99) / 100, seen = 0; /* the rank of the p-th percentile, rounded up */
    for (unsigned i = 0; i < DC_LATWIN_BUCKETS; i++) {
        seen += counts[i];
        if (seen >= want)
            return dc_latwin_bound_us(i);
    }
    return dc_latwin_bound_us(DC_LATWIN_BUCKETS - 1);
}
