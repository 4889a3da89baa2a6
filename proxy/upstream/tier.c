#include "upstream/tier.h"

size_t dc_tier_order(const dc_tier_view_t *v, size_t n, bool skip_tried, unsigned *out)
{
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool want_budget = pass == 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].cordoned || v[i].open || (skip_tried && v[i].tried) || v[i].has_budget != want_budget)
                continue;
            out[k++] = (unsigned)i;
        }
    }
    return k;
}

bool dc_tier_may_fail_over(bool idempotent, dc_tier_fail_t why)
{
    return idempotent || why == DC_TIER_FAIL_CONNECT;
}

uint32_t dc_retry_budget_cap(uint32_t active_requests, uint32_t percent, uint32_t min_concurrency)
{
    uint64_t share = (uint64_t)active_requests * percent / 100;
    return share > min_concurrency ? (uint32_t)share : min_concurrency;
}

bool dc_retry_budget_allows(uint32_t active_requests, uint32_t active_retries, uint32_t percent,
                            uint32_t min_concurrency)
{
    return active_retries < dc_retry_budget_cap(active_requests, percent, min_concurrency);
}

void dc_retry_budget_init(dc_retry_budget_t *rb, uint32_t percent, uint32_t min_concurrency)
{
    atomic_store(&rb->active_requests, 0);
    atomic_store(&rb->active_retries, 0);
    rb->percent = percent;
    rb->min_concurrency = min_concurrency;
    atomic_store(&rb->allowed_total, 0);
    atomic_store(&rb->denied_total, 0);
    atomic_store(&rb->failovers_total, 0);
}

void dc_retry_budget_enter(dc_retry_budget_t *rb)
{
    atomic_fetch_add(&rb->active_requests, 1);
}

void dc_retry_budget_leave(dc_retry_budget_t *rb)
{
    atomic_fetch_sub(&rb->active_requests, 1);
}

bool dc_retry_budget_acquire(dc_retry_budget_t *rb)
{
    uint32_t cur = atomic_load(&rb->active_retries);
    for (;;) {
        if (!dc_retry_budget_allows(atomic_load(&rb->active_requests), cur, rb->percent, rb->min_concurrency)) {
            atomic_fetch_add(&rb->denied_total, 1);
            return false;
        }
        if (atomic_compare_exchange_weak(&rb->active_retries, &cur, cur + 1))
            break;
    }
    atomic_fetch_add(&rb->allowed_total, 1);
    return true;
}

void dc_retry_budget_release(dc_retry_budget_t *rb)
{
    atomic_fetch_sub(&rb->active_retries, 1);
}
