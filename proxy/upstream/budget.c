#include "upstream/budget.h"
#include "core/error.h"

#include <string.h>

#define SHARE_MIN (1.0 / 64)
#define SHARE_STEP (1.0 / 256) /* additive increase per success */
/* Pacing is a little slower than the configured rate: slots are exact, but timers fire late and
 * requests arrive with jitter, and the upstream counts arrivals. One request delayed by d ms and
 * the next `limit` on time fit in one window unless the window's slots span window + d: so the
 * slack is JITTER_MS per window (at least 2%, at most 10%). Measured on a loaded 2-core machine:
 * up to 27 ms of delay on a request's way to the origin.
 * That reasoning holds only while no request leaves later than the slack after its slot: under CPU
 * contention a timer or a Redis reply can be read 40-90 ms late. So a request that would leave
 * later than late_ok (the slack, less a margin for the way from our loop to the wire) does not go:
 * it reserves again (upstream/fetch_slot.c). A slot wasted that way lowers throughput under contention;
 * it never puts more than the limit in a window. */
#define WIRE_MARGIN_MS 10.0
#define LATE_OK_MIN_MS 5.0
#define SLACK_MIN 0.02
#define SLACK_MAX 0.10
#define JITTER_MS 35.0

void dc_budget_init(dc_budget_t *b, const dc_config_rate_t *rates, size_t nrates, uint32_t queue_max,
                    uint64_t queue_timeout_ms)
{
    dc_budget_init_cost(b, rates, nrates, queue_max, queue_timeout_ms, 1);
}

uint32_t dc_budget_paced_limit(uint32_t limit, uint32_t max_cost)
{
    if (max_cost < 1)
        max_cost = 1;
    return limit > max_cost ? limit - (max_cost - 1) : 1;
}

void dc_budget_init_cost(dc_budget_t *b, const dc_config_rate_t *rates, size_t nrates, uint32_t queue_max,
                         uint64_t queue_timeout_ms, uint32_t max_cost)
{
    memset(b, 0, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    b->nwin = nrates < DC_BUDGET_MAX_WINDOWS ? nrates : DC_BUDGET_MAX_WINDOWS;
    double late_ok_ms = -1;
    for (size_t i = 0; i < b->nwin; i++) {
        uint64_t e = rates[i].window_ms * 1000 / dc_budget_paced_limit(rates[i].limit, max_cost);
        double slack = JITTER_MS / (double)(rates[i].window_ms ? rates[i].window_ms : 1);
        slack = slack < SLACK_MIN ? SLACK_MIN : slack > SLACK_MAX ? SLACK_MAX : slack;
        e = (uint64_t)((double)e * (1.0 + slack) + 0.5);
        b->win[i].emission_us = e ? e : 1;
        double extra_ms = (double)rates[i].window_ms * slack - WIRE_MARGIN_MS; /* the window's slack */
        if (late_ok_ms < 0 || extra_ms < late_ok_ms)
            late_ok_ms = extra_ms;
    }
    b->late_ok_us = (uint64_t)((late_ok_ms < LATE_OK_MIN_MS ? LATE_OK_MIN_MS : late_ok_ms) * 1000.0);
    b->share = 1.0;
    b->queue_max = queue_max;
    b->queue_timeout_us = queue_timeout_ms * 1000;
}

void dc_budget_dispose(dc_budget_t *b)
{
    pthread_mutex_destroy(&b->lock);
}

void dc_budget_inherit(dc_budget_t *b, dc_budget_t *old)
{
    pthread_mutex_lock(&old->lock);
    uint64_t tat = 0;
    for (size_t i = 0; i < old->nwin; i++)
        if (old->win[i].tat_us > tat)
            tat = old->win[i].tat_us;
    for (size_t i = 0; i < b->nwin; i++)
        b->win[i].tat_us = tat;
    b->share = old->share;
    b->cooldown_until_us = old->cooldown_until_us;
    b->rejected = old->rejected; /* counters in /metrics never go back on a reload */
    b->cooldowns = old->cooldowns;
    pthread_mutex_unlock(&old->lock);
}

int dc_budget_reserve(dc_budget_t *b, uint64_t now_us, bool background, uint64_t *delay_us)
{
    return dc_budget_reserve_share(b, now_us, background, 1, delay_us);
}

size_t dc_budget_emissions(dc_budget_t *b, uint64_t *out, size_t max)
{
    pthread_mutex_lock(&b->lock);
    size_t n = b->nwin < max ? b->nwin : max;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint64_t)((double)b->win[i].emission_us / b->share);
    pthread_mutex_unlock(&b->lock);
    return n;
}

bool dc_budget_enqueue(dc_budget_t *b)
{
    pthread_mutex_lock(&b->lock);
    bool ok = b->queued < b->queue_max;
    if (ok)
        b->queued++;
    else
        b->rejected++;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

int dc_budget_reserve_share(dc_budget_t *b, uint64_t now_us, bool background, unsigned share_n, uint64_t *delay_us)
{
    uint32_t cost = 1;
    return dc_budget_reserve_multi(&b, &cost, 1, now_us, background, share_n, delay_us);
}

/* Locks every budget of the set once, in address order (two fetches locking the same pair never
 * deadlock); a budget listed twice is locked once. */
static size_t lock_order(dc_budget_t *const *bs, size_t n, dc_budget_t **sorted)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = k;
        bool dup = false;
        for (size_t m = 0; m < k; m++)
            dup = dup || sorted[m] == bs[i];
        if (dup)
            continue;
        while (j > 0 && sorted[j - 1] > bs[i]) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = bs[i];
        k++;
    }
    return k;
}

int dc_budget_reserve_multi(dc_budget_t *const *bs, const uint32_t *costs, size_t n, uint64_t now_us, bool background,
                            unsigned share_n, uint64_t *delay_us)
{
    if (share_n == 0)
        share_n = 1;
    *delay_us = 0;
    dc_budget_t *locked[DC_BUDGET_MULTI_MAX];
    if (n > DC_BUDGET_MULTI_MAX)
        n = DC_BUDGET_MULTI_MAX;
    size_t nlocked = lock_order(bs, n, locked);
    for (size_t i = 0; i < nlocked; i++)
        pthread_mutex_lock(&locked[i]->lock);
    dc_budget_t *q = bs[0]; /* holds the queue */
    uint64_t start = now_us;
    for (size_t j = 0; j < n; j++) {
        const dc_budget_t *b = bs[j];
        if (b->nwin == 0)
            continue;
        if (b->cooldown_until_us > start)
            start = b->cooldown_until_us;
        for (size_t i = 0; i < b->nwin; i++)
            if (b->win[i].tat_us > start)
                start = b->win[i].tat_us;
    }
    uint64_t wait = start - now_us;
    if (wait > 0 && (background || q->queued >= q->queue_max || wait > q->queue_timeout_us)) {
        if (!background)
            q->rejected++; /* a client's request turned away; a refresh or a hedge that yields is not */
        for (size_t i = nlocked; i-- > 0;)
            pthread_mutex_unlock(&locked[i]->lock);
        *delay_us = wait;
        return DC_EAGAIN;
    }
    for (size_t j = 0; j < n; j++) {
        dc_budget_t *b = bs[j];
        uint32_t cost = costs[j] ? costs[j] : 1;
        for (size_t i = 0; i < b->nwin; i++)
            b->win[i].tat_us = start + (uint64_t)((double)b->win[i].emission_us * cost * share_n / b->share);
    }
    if (wait > 0)
        q->queued++;
    for (size_t i = nlocked; i-- > 0;)
        pthread_mutex_unlock(&locked[i]->lock);
    *delay_us = wait;
    return 0;
}

void dc_budget_unreserve(dc_budget_t *b, uint64_t slot_us, unsigned share_n)
{
    if (share_n == 0)
        share_n = 1;
    pthread_mutex_lock(&b->lock);
    bool last = b->nwin > 0;
    for (size_t i = 0; i < b->nwin && last; i++)
        last = b->win[i].tat_us == slot_us + (uint64_t)((double)b->win[i].emission_us * share_n / b->share);
    for (size_t i = 0; i < b->nwin && last; i++)
        b->win[i].tat_us = slot_us;
    pthread_mutex_unlock(&b->lock);
}

void dc_budget_dequeued(dc_budget_t *b)
{
    pthread_mutex_lock(&b->lock);
    if (b->queued > 0)
        b->queued--;
    pthread_mutex_unlock(&b->lock);
}

void dc_budget_on_429(dc_budget_t *b, uint64_t now_us, uint64_t retry_after_us)
{
    if (retry_after_us == 0)
        retry_after_us = 1000000;
    pthread_mutex_lock(&b->lock);
    uint64_t until = now_us + retry_after_us;
    if (until > b->cooldown_until_us) {
        b->cooldown_until_us = until;
        b->cooldowns++;
    }
    b->share = b->share / 2 < SHARE_MIN ? SHARE_MIN : b->share / 2;
    pthread_mutex_unlock(&b->lock);
}

void dc_budget_on_success(dc_budget_t *b)
{
    if (b->nwin == 0)
        return;
    pthread_mutex_lock(&b->lock);
    b->share = b->share + SHARE_STEP > 1.0 ? 1.0 : b->share + SHARE_STEP;
    pthread_mutex_unlock(&b->lock);
}

uint32_t dc_budget_queued(dc_budget_t *b)
{
    pthread_mutex_lock(&b->lock);
    uint32_t q = b->queued;
    pthread_mutex_unlock(&b->lock);
    return q;
}

void dc_budget_stats(dc_budget_t *b, dc_budget_stats_t *out)
{
    pthread_mutex_lock(&b->lock);
    out->queued = b->queued;
    out->rejected = b->rejected;
    out->cooldowns = b->cooldowns;
    out->share = b->share;
    uint64_t slowest = 0;
    for (size_t i = 0; i < b->nwin; i++)
        if (b->win[i].emission_us > slowest)
            slowest = b->win[i].emission_us;
    out->rate_per_s = slowest > 0 ? 1e6 * b->share / (double)slowest : 0.0;
    pthread_mutex_unlock(&b->lock);
}

bool dc_budget_cooling(dc_budget_t *b, uint64_t now_us)
{
    pthread_mutex_lock(&b->lock);
    bool cooling = b->cooldown_until_us > now_us;
    pthread_mutex_unlock(&b->lock);
    return cooling;
}
