/*
 * The circuit breaker shared by the fleet (upstream/upstream_state.h is one process's): when an
 * instance opens a tier's breaker, every instance stops sending to that tier until the pause ends;
 * then one probe goes out fleet-wide, and its success closes the breaker everywhere. A tier
 * cordoned by hand (admin) is cordoned on every instance.
 *
 * State changes only: nothing here runs while an upstream is healthy.
 *  - An opening: the bus (redis/bus.h) carries a notice "<upstream>\t<tier>\topen\t<pause_ms>\t<trips>"
 *    stamped with the sender's wall clock, and with it sets <prefix>brk:<upstream>~<tier> to
 *    "<at_ms>:<pause_ms>:<trips>" (living pause + max_backoff, so the count of openings in a row,
 *    and with it the pause, keeps growing fleet-wide). Receivers open theirs until at + pause.
 *  - The probe: when a tier is half-open, the instance that would probe first takes the lock
 *    <prefix>brkp:<upstream>~<tier> (SET NX PX probe timeout); the others refuse as if their probe
 *    were out, until they hear how it went. The opening or closing the probe causes deletes the
 *    lock in the same Redis step that records it, and the lock is refused while a recorded opening
 *    runs (so no second probe slips between a failed probe and its notice).
 *  - A closing (a success while open or half-open): notice "...\tclose", and the brk key is deleted.
 *  - A cordon: notice "...\tcordon" or "...\tuncordon", and <prefix>cordon:<upstream>~<tier> is set
 *    (no expiry) or deleted, so a restarted instance finds it.
 * Tiers are numbered from 1 in keys and notices. The bus's sync hook reads every brk and cordon key
 * at each (re)connection and every second (polling as a fallback of pub/sub); notices replayed from
 * the bus log are ignored for that reason (the keys have the last word).
 * Redis down: the local breakers keep working alone; the notices wait in the bus's queue.
 */
#ifndef DC_UPSTREAM_BREAKER_FLEET_H
#define DC_UPSTREAM_BREAKER_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis/fleet.h"
#include "upstream/upstream_state.h"

typedef enum {
    DC_BRK_OPEN = 0,
    DC_BRK_CLOSE,
    DC_BRK_CORDON,
    DC_BRK_UNCORDON,
} dc_brk_verb_t;

typedef struct dc_brk_notice {
    const char *upstream; /* points into the parsed body */
    size_t upstream_len;
    unsigned tier; /* 1-based */
    dc_brk_verb_t verb;
    uint64_t pause_ms; /* open */
    uint32_t trips;    /* open */
} dc_brk_notice_t;

/* Any thread: tell the fleet (no-op without a bus). tier is 0-based here. */
void dc_breaker_fleet_opened(const char *upstream, unsigned tier, const dc_breaker_opening_t *o,
                             uint64_t max_backoff_ms);
void dc_breaker_fleet_closed(const char *upstream, unsigned tier);
/* Returns false when there is no bus (no Redis configured): the cordon stays local. */
bool dc_breaker_fleet_cordon(const char *upstream, unsigned tier, bool on);

/* The fleet's probe lock for a half-open tier (0-based), on the worker's fleet connection: cb runs
 * later with err < 0 (Redis unavailable: probe locally) or err 0 and won; not won, `open` (len
 * bytes, valid during cb, NULL if none) is the brk value of an opening that runs still (a probe
 * failed elsewhere; apply it with dc_brk_value_apply). A non-zero return means cb never runs.
 * An opening or a closing posted by this module deletes the lock with the same step; unlock
 * (fire and forget) is for a probe that reported neither. */
typedef void (*dc_breaker_probe_cb)(void *data, int err, bool won, const char *open, size_t len);
int dc_breaker_fleet_probe_lock(dc_fleet_t *f, const char *upstream, unsigned tier, uint64_t ttl_ms,
                                dc_breaker_probe_cb cb, void *data);
void dc_breaker_fleet_probe_unlock(dc_fleet_t *f, const char *upstream, unsigned tier);

/* Pure parts (unit-tested). */
/* A notice's body; false when malformed. */
bool dc_brk_notice_parse(const char *body, size_t len, dc_brk_notice_t *n);
/* The brk key's value; false when malformed. */
bool dc_brk_value_parse(const char *v, size_t len, uint64_t *at_ms, uint64_t *pause_ms, uint32_t *trips);
/* Apply an open or close notice sent at at_ms (sender's wall clock) to h; wall_ms / mono_ms: now.
 * Returns whether h changed. Cordon verbs are applied by the caller (they are per tier, not per
 * breaker state); they return false here. */
bool dc_brk_notice_apply(dc_upstream_state_t *h, const dc_brk_notice_t *n, uint64_t at_ms, uint64_t wall_ms,
                         uint64_t mono_ms);
/* Apply a brk value (an opening that may still run) to h; true when h changed. */
bool dc_brk_value_apply(dc_upstream_state_t *h, const char *v, size_t len, uint64_t wall_ms, uint64_t mono_ms);
/* Apply what the sync read for one tier: the brk key's value (NULL = absent) and whether the
 * cordon key exists. An absent brk key closes a breaker the fleet opened (its closing was missed);
 * one this instance opened itself stays open (its own notice may not have landed yet). */
void dc_brk_sync_apply(dc_upstream_state_t *h, const char *brk, size_t brk_len, bool cordoned, uint64_t wall_ms,
                       uint64_t mono_ms);

#endif
