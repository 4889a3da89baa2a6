#include "upstream/upstream_state.h"

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
