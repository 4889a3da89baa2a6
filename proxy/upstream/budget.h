/*
 * The budget toward one upstream (`rate:` windows and `queue:` of an upstream), shared by every
 * worker thread of this process (mutex). Each upstream attempt reserves the time of its slot: one
 * GCRA per window with no burst, so attempts are paced at the tightest window's interval and no
 * sliding window ever sees more than its limit. A reservation in the future is a place in the
 * queue: the fetch waits on its own timer until then (no polling). When the queue is full, or the
 * slot is further away than the queue timeout, the reservation fails with a Retry-After.
 *
 * An upstream 429 pauses every reservation until the cooldown it announces ends, and halves the
 * rate (multiplicative decrease); each success gives back a small step (additive increase).
 * Time is injected (monotonic microseconds) so the arithmetic is unit-tested.
 */
#ifndef DC_UPSTREAM_BUDGET_H
#define DC_UPSTREAM_BUDGET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define DC_BUDGET_MAX_WINDOWS 4

typedef struct dc_budget {
    pthread_mutex_t lock;
    size_t nwin;
    struct {
        uint64_t emission_us; /* window / limit */
        uint64_t tat_us;      /* next free slot of this window */
    } win[DC_BUDGET_MAX_WINDOWS];
    double share;        /* fraction of the configured rate in force (AIMD), (0, 1] */
    uint64_t late_ok_us; /* how late after its slot a request may still leave (see budget.c) */
    uint64_t cooldown_until_us;
    uint32_t queue_max;
    uint64_t queue_timeout_us;
    uint32_t queued;    /* reservations waiting for their slot */
    uint64_t rejected;  /* client reservations refused (queue full or too far); background ones not counted */
    uint64_t cooldowns; /* 429s that paused the upstream */
} dc_budget_t;

/* nrates == 0: no budget (every reservation starts at once). */
void dc_budget_init(dc_budget_t *b, const dc_config_rate_t *rates, size_t nrates, uint32_t queue_max,
                    uint64_t queue_timeout_ms);
/* The same for a budget whose reservations may cost up to `max_cost` (weights: a request to an
 * expensive path counts more). Pacing then spaces a request of cost c by c emission intervals
 * from the next one. A window holds at most floor(window / emission) paced units plus the cost of
 * its last request, so the emission is computed from dc_budget_paced_limit(limit, max_cost) slots
 * per window: no sliding window ever sees more than `limit` weighted units. */
void dc_budget_init_cost(dc_budget_t *b, const dc_config_rate_t *rates, size_t nrates, uint32_t queue_max,
                         uint64_t queue_timeout_ms, uint32_t max_cost);
/* Pure: the unit slots per window a budget of `limit` paces at when one request may cost up to
 * max_cost: limit - (max_cost - 1), at least 1 (a cost above the limit cannot be honoured). */
uint32_t dc_budget_paced_limit(uint32_t limit, uint32_t max_cost);
void dc_budget_dispose(dc_budget_t *b);
/* Keep the pacing state of `old` across a config reload. */
void dc_budget_inherit(dc_budget_t *b, dc_budget_t *old);

/*
 * Reserve one attempt at `now`. Returns 0 with *delay_us = time to wait (0 = go now; > 0 means the
 * caller is queued and must call dc_budget_dequeued when it starts or gives up), or DC_EAGAIN with
 * *delay_us = how long until a retry could succeed (for Retry-After). `background` requests never
 * wait: they only take a slot that is free now.
 */
int dc_budget_reserve(dc_budget_t *b, uint64_t now_us, bool background, uint64_t *delay_us);
/* Give back the slot a reservation at `slot_us` (its now_us + *delay_us) took, when the attempt sent
 * nothing (a cancelled hedge): undone only while no later reservation followed it (else the slot
 * stays spent, which errs on the safe side). Same now_us/share_n as the reservation. */
void dc_budget_unreserve(dc_budget_t *b, uint64_t slot_us, unsigned share_n);
/* The same with the rate divided by `share_n` (this instance's share while the fleet budget in
 * Redis is unreachable: budget / live instances). */
int dc_budget_reserve_share(dc_budget_t *b, uint64_t now_us, bool background, unsigned share_n, uint64_t *delay_us);
/* Reserve one slot free in every budget of bs[0..n) at once (an account's budget and its endpoint
 * group's): the request counts costs[i] (0 = 1) in bs[i]. bs[0] holds the queue place (its
 * queue_max and queue_timeout apply; dc_budget_dequeued(bs[0]) when it starts) and counts a
 * refusal. Every budget's cooldown delays the slot. n <= DC_BUDGET_MULTI_MAX. */
#define DC_BUDGET_MULTI_MAX 2
int dc_budget_reserve_multi(dc_budget_t *const *bs, const uint32_t *costs, size_t n, uint64_t now_us, bool background,
                            unsigned share_n, uint64_t *delay_us);
/* Current emission interval of each window (slack and AIMD share applied), for the fleet script.
 * Returns the number of windows written (at most `max`). */
size_t dc_budget_emissions(dc_budget_t *b, uint64_t *out, size_t max);
/* Take a place in the local queue for a slot reserved elsewhere (fleet). false when full. */
bool dc_budget_enqueue(dc_budget_t *b);
void dc_budget_dequeued(dc_budget_t *b);
/* The upstream answered 429 and asked for `retry_after_us` (0 = unknown: 1 s). */
void dc_budget_on_429(dc_budget_t *b, uint64_t now_us, uint64_t retry_after_us);
void dc_budget_on_success(dc_budget_t *b);
uint32_t dc_budget_queued(dc_budget_t *b);

/* A consistent reading for /metrics. rate_per_s: attempts per second the budget lets through now
 * (the tightest window, AIMD share applied; 0 when the budget has no windows). The counters are
 * carried across reloads by dc_budget_inherit. */
typedef struct dc_budget_stats {
    uint32_t queued;
    uint64_t rejected, cooldowns;
    double share, rate_per_s;
} dc_budget_stats_t;
void dc_budget_stats(dc_budget_t *b, dc_budget_stats_t *out);
/* Is the budget paused after a 429 at `now_us` (a tier without budget now)? */
bool dc_budget_cooling(dc_budget_t *b, uint64_t now_us);

#endif
