#include "upstream/upstream_state.h"

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

void dc_upstream_state_success(dc_upstream_state_t *s, uint64_t now_ms)
{
    atomic_store_explicit(&s->consecutive_failures, 0, RELAXED);
    atomic_store_explicit(&s->last_success_ms, now_ms, RELAXED);
    atomic_store_explicit(&s->open_until_ms, 0, RELAXED);
    atomic_store_explicit(&s->trips, 0, RELAXED);
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
}

void dc_upstream_state_failure(dc_upstream_state_t *s, const dc_breaker_params_t *p, uint64_t now_ms)
{
    uint64_t fails = atomic_fetch_add_explicit(&s->consecutive_failures, 1, RELAXED) + 1;
    atomic_store_explicit(&s->last_failure_ms, now_ms, RELAXED);
    uint64_t until = atomic_load_explicit(&s->open_until_ms, RELAXED);
    if (until != 0 && now_ms < until)
        return; /* already open: an attempt sent before it opened reports late */
    if (until == 0 && fails < p->failures)
        return;
    /* closed at the threshold, or half-open (the probe, or a late report): open (again) */
    if (!atomic_compare_exchange_strong_explicit(&s->open_until_ms, &until, 1, RELAXED, RELAXED))
        return; /* another worker did it just now */
    uint32_t trips = atomic_fetch_add_explicit(&s->trips, 1, RELAXED) + 1;
    atomic_store_explicit(&s->probe_at_ms, 0, RELAXED);
    atomic_store_explicit(&s->open_until_ms, now_ms + dc_breaker_backoff_ms(p, trips), RELAXED);
    atomic_fetch_add_explicit(&s->opened_total, 1, RELAXED);
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
