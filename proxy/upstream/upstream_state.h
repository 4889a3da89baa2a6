/*
 * Health of one upstream as seen by this process: consecutive failures and the time of the last
 * success and failure (atomics, written by any worker). "down" = 3+ consecutive failures with no
 * success since; used by /health.
 */
#ifndef DC_UPSTREAM_UPSTREAM_STATE_H
#define DC_UPSTREAM_UPSTREAM_STATE_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct dc_upstream_state {
    _Atomic uint64_t consecutive_failures;
    _Atomic uint64_t last_success_ms;
    _Atomic uint64_t last_failure_ms;
} dc_upstream_state_t;

void dc_upstream_state_success(dc_upstream_state_t *s, uint64_t now_ms);
void dc_upstream_state_failure(dc_upstream_state_t *s, uint64_t now_ms);
/* "up", "down" or "unknown" (never used yet). */
const char *dc_upstream_state_name(dc_upstream_state_t *s, uint64_t now_ms);
uint64_t dc_upstream_state_failures(dc_upstream_state_t *s);

#endif
