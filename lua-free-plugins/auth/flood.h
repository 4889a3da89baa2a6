/* Failed-auth flood protection of the auth plugin: per client address, the refusals of presented
 * credentials are counted in a fixed window; `failures` of them block the address for `block`
 * (every request with a credential from it is refused 429 before any key lookup or signature
 * check: a flood of distinct forged ES256 tokens costs a table lookup each, not 1-2 ms of CPU).
 *
 * One table per plugin instance, shared by every worker: 1024 buckets of 4 addresses, a mutex per
 * bucket (held for one compare-and-update). A full bucket forgets its least recently failing
 * address that is not blocked (a blocked one only when all four are), so memory is fixed whatever
 * the number of addresses. Time is injected (monotonic milliseconds). */
#ifndef DCA_FLOOD_H
#define DCA_FLOOD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dca_flood dca_flood_t;

/* failures >= 1, window_ms >= 1, block_ms >= 1. NULL when out of memory. */
dca_flood_t *dca_flood_new(uint32_t failures, uint64_t window_ms, uint64_t block_ms);
void dca_flood_free(dca_flood_t *f);
/* Is `addr` blocked at `now`? true with *retry_ms (> 0) until the block ends. */
bool dca_flood_blocked(dca_flood_t *f, const char *addr, uint64_t now, uint64_t *retry_ms);
/* One refusal of a credential from `addr`; true when it starts a block. */
bool dca_flood_fail(dca_flood_t *f, const char *addr, uint64_t now);

#endif
