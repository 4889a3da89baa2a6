/*
 * GCRA (generic cell rate algorithm), pure: the whole state of a limit is one number, the
 * theoretical arrival time (TAT) of the next request, so it fits one Redis key or one slot of an
 * in-process table, and a decision is one read-modify-write. Time is injected (microseconds).
 *
 * With rate `limit` per `window` and capacity `burst`: emission interval T = window / limit,
 * tolerance tau = T * burst. A request at `now` is allowed when now >= max(TAT, now) + T - tau;
 * then TAT becomes max(TAT, now) + T.
 */
#ifndef DC_RATELIMIT_GCRA_H
#define DC_RATELIMIT_GCRA_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dc_gcra_params {
    uint64_t emission_us; /* T */
    uint64_t burst;       /* capacity, >= 1 */
    uint32_t limit;       /* for headers: the quota per window */
    uint64_t window_ms;
} dc_gcra_params_t;

typedef struct dc_gcra_result {
    bool allowed;
    uint64_t remaining;      /* requests that would still pass right now */
    uint64_t retry_after_us; /* denied: when one request will pass */
    uint64_t reset_us;       /* until the full capacity is back */
    uint64_t new_tat_us;     /* the state to store (unchanged when denied) */
} dc_gcra_result_t;

void dc_gcra_params_init(dc_gcra_params_t *p, uint32_t limit, uint64_t window_ms, uint32_t burst);
/* Decide for one request given the stored TAT (0 = never seen). */
void dc_gcra_check(const dc_gcra_params_t *p, uint64_t tat_us, uint64_t now_us, dc_gcra_result_t *out);

#endif
