/*
 * The fleet-wide upstream budget (upstream/budget.h is the local one): every instance reserves its
 * attempts' slots in one Redis hash per upstream (or per upstream key), with Redis TIME, on the
 * worker's fleet connection (redis/fleet.h); and an upstream 429's pause is shared with every
 * instance. Owns nothing beyond the call in flight (the fleet's call record); the caller's `data`
 * stays the caller's.
 */
#ifndef DC_UPSTREAM_BUDGET_FLEET_H
#define DC_UPSTREAM_BUDGET_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis/fleet.h"

#define DC_BUDGET_FLEET_MAX_WIN 4

/* Reserve one attempt's slot. The callback runs later: err < 0 (Redis unavailable: fall back
 * locally), else ok = 1 with wait_us until the slot (0 = now), or ok = 0 (refused; wait_us = when
 * one frees). wait_us counts from when Redis ran the script. A non-zero return means the callback
 * never runs. */
typedef void (*dc_fleet_budget_cb)(void *data, int err, int ok, uint64_t wait_us);
int dc_fleet_budget_reserve(dc_fleet_t *f, const char *upstream, const uint64_t *emission_us, size_t nwin,
                            uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data);
/* One budget of a set reserved at once: its fleet name, emission intervals and the request's cost
 * there (0 = 1). */
#define DC_BUDGET_FLEET_MAX_PARTS 2
typedef struct dc_fleet_budget_part {
    const char *name;
    const uint64_t *emission_us;
    size_t nwin;
    uint32_t cost;
} dc_fleet_budget_part_t;
/* One slot free in every budget of parts[0..nparts) (nparts <= DC_BUDGET_FLEET_MAX_PARTS), taken
 * in all of them atomically (one script): the callback as for dc_fleet_budget_reserve. */
int dc_fleet_budget_reserve_multi(dc_fleet_t *f, const dc_fleet_budget_part_t *parts, size_t nparts,
                                  uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data);
/* Share an upstream 429's pause with every instance (fire and forget). */
void dc_fleet_cooldown(dc_fleet_t *f, const char *upstream, uint64_t retry_after_us);

/* The budget script's reply (pure; exposed for tests and fuzzing): {1 (slot taken) or anything
 * else (refused), wait_us}. 0 with *ok and *wait_us (negative or non-integer wait = 0), or
 * DC_EPROTO (*ok = 0, *wait_us = 0). */
int dc_fleet_reply_budget(const redisReply *reply, int *ok, uint64_t *wait_us);

#endif
