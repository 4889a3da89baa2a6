/*
 * The fleet's families in /metrics (Redis up, live instances, L2 hits, local limit fallbacks): a
 * core/metrics.h source over the fleet's process-wide counters (redis/fleet.h, cache/l2fleet.h,
 * ratelimit/gcra_fleet.h).
 */
#ifndef DC_RATELIMIT_FLEET_METRICS_H
#define DC_RATELIMIT_FLEET_METRICS_H

/* Register the source (once, at start-up, with or without redis:: they read 0 without Redis). */
void dc_fleet_metrics_register(void);

#endif
