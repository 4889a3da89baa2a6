#include "upstream/upstream_state.h"

void dc_upstream_state_success(dc_upstream_state_t *s, uint64_t now_ms)
{
    atomic_store_explicit(&s->consecutive_failures, 0, memory_order_relaxed);
    atomic_store_explicit(&s->last_success_ms, now_ms, memory_order_relaxed);
}

void dc_upstream_state_failure(dc_upstream_state_t *s, uint64_t now_ms)
{
    atomic_fetch_add_explicit(&s->consecutive_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&s->last_failure_ms, now_ms, memory_order_relaxed);
}

const char *dc_upstream_state_name(dc_upstream_state_t *s, uint64_t now_ms)
{
    uint64_t fails = atomic_load_explicit(&s->consecutive_failures, memory_order_relaxed);
    uint64_t ok = atomic_load_explicit(&s->last_success_ms, memory_order_relaxed);
    uint64_t bad = atomic_load_explicit(&s->last_failure_ms, memory_order_relaxed);
    (void)now_ms;
    if (ok == 0 && bad == 0)
        return "unknown";
    if (fails >= 3 && bad >= ok)
        return "down";
    return "up";
}

uint64_t dc_upstream_state_failures(dc_upstream_state_t *s)
{
    return atomic_load_explicit(&s->consecutive_failures, memory_order_relaxed);
}
