/*
 * The per-client GCRA evaluated inside Redis, on the worker's fleet connection (redis/fleet.h):
 * one EVALSHA round trip per decision with Redis TIME, so the bucket is exact across instances.
 * Whenever Redis does not answer the caller falls back to its local limiter with this instance's
 * share of the limit (dc_fleet_local_share). Owns nothing beyond the call in flight (the fleet's
 * call record); the caller's `data` stays the caller's.
 */
#ifndef DC_RATELIMIT_GCRA_FLEET_H
#define DC_RATELIMIT_GCRA_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit/gcra.h"
#include "redis/fleet.h"

/* Decide one request of bucket `key` in Redis. The callback always runs later, on this worker:
 * err 0 and *res, or err < 0 (Redis unavailable: the caller falls back to its local limiter).
 * `granted` tokens were taken (>= 1 when allowed): more than one is a lease this instance may
 * spend locally (granted only far from the limit, so decisions near it stay exact). A non-zero
 * return means the callback never runs. */
typedef void (*dc_fleet_gcra_cb)(void *data, int err, const dc_gcra_result_t *res, unsigned granted);
int dc_fleet_gcra(dc_fleet_t *f, const char *key, size_t len, const dc_gcra_params_t *p, dc_fleet_gcra_cb cb,
                  void *data);
/* Tokens asked per round trip for these params: burst / (16 x live instances), 1..256. */
unsigned dc_fleet_lease_size(const dc_gcra_params_t *p);

/* Params for the local fallback: the limit shared out over the live instances. */
void dc_fleet_local_share(const dc_gcra_params_t *in, dc_gcra_params_t *out);
/* Count one decision that fell back to the local limiter (process-wide, for /metrics). */
void dc_fleet_count_fallback(void);
uint64_t dc_fleet_fallbacks(void);

/* The GCRA script's reply (pure; exposed for tests and fuzzing): {allowed, granted, remaining,
 * retry_after_us, reset_us}, five integers (a non-integer element counts as 0, a negative one as
 * 0). 0 and *res / *granted filled, or DC_EPROTO (then *res is zeroed and *granted is 0). */
int dc_fleet_reply_gcra(const redisReply *reply, dc_gcra_result_t *res, unsigned *granted);

#endif
