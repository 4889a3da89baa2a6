/*
 * The in-process limiter (no Redis configured, or Redis unavailable): one table of GCRA states
 * shared by all worker threads, sharded with a mutex per shard (held for one lookup and update).
 * A bucket whose TAT is in the past is full and carries no information, so such entries are
 * dropped when a shard grows: memory follows the number of recently active clients.
 */
#ifndef DC_RATELIMIT_LOCAL_H
#define DC_RATELIMIT_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit/gcra.h"

typedef struct dc_limiter dc_limiter_t;

dc_limiter_t *dc_limiter_create(void);
void dc_limiter_destroy(dc_limiter_t *l);
/* Decide for one request of bucket `key` (e.g. route prefix + client id) and record it. */
void dc_limiter_check(dc_limiter_t *l, const char *key, size_t len, const dc_gcra_params_t *p, uint64_t now_us,
                      dc_gcra_result_t *out);
/* Remember that bucket `key` is over its limit until `until_us` (a Redis answer), so the next
 * requests of that client are refused locally without a round trip. */
void dc_limiter_deny(dc_limiter_t *l, const char *key, size_t len, uint64_t until_us);
/* True (and *retry_after_us) when `key` was marked denied past `now_us`. */
bool dc_limiter_denied(dc_limiter_t *l, const char *key, size_t len, uint64_t now_us, uint64_t *retry_after_us);
/* Leased tokens (granted by Redis in advance, see ratelimit/gcra_fleet.h): put `n` tokens for `key`,
 * usable until `until_us`; take one (true) when any are left, with the remaining-hint stored. */
void dc_limiter_lease_put(dc_limiter_t *l, const char *key, size_t len, uint32_t n, uint64_t until_us,
                          uint64_t remaining_hint);
bool dc_limiter_lease_take(dc_limiter_t *l, const char *key, size_t len, uint64_t now_us, uint64_t *remaining_hint);
/* Buckets held now (for /metrics and tests). */
size_t dc_limiter_size(dc_limiter_t *l);

#endif
