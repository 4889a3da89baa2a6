#include "ratelimit/fleet_metrics.h"
#include "core/metrics.h"
#include "cache/l2fleet.h"
#include "ratelimit/gcra_fleet.h"
#include "redis/fleet.h"

static void render_metrics(void *ctx, dc_metrics_buf_t *b)
{
    unsigned up, total;
    dc_fleet_connections(&up, &total);
    dc_metrics_printf(b,
                      "# HELP dexcache_redis_connections Redis connections held by the workers (0: no redis: "
                      "configured, standalone).\n"
                      "# TYPE dexcache_redis_connections gauge\ndexcache_redis_connections %u\n"
                      "# HELP dexcache_redis_connections_up Redis connections that answer now.\n"
                      "# TYPE dexcache_redis_connections_up gauge\ndexcache_redis_connections_up %u\n",
                      total, up);
    dc_metrics_printf(b,
                      "# HELP dexcache_redis_up 1 when a Redis connection is up (fleet mode).\n"
                      "# TYPE dexcache_redis_up gauge\ndexcache_redis_up %d\n"
                      "# HELP dexcache_fleet_instances Live instances last seen in Redis.\n"
                      "# TYPE dexcache_fleet_instances gauge\ndexcache_fleet_instances %u\n"
                      "# HELP dexcache_l2_hits_total Entries found in the fleet's L2 cache on an L1 miss.\n"
                      "# TYPE dexcache_l2_hits_total counter\ndexcache_l2_hits_total %llu\n"
                      "# HELP dexcache_limit_fallbacks_total Limit decisions made locally because Redis did not "
                      "answer.\n"
                      "# TYPE dexcache_limit_fallbacks_total counter\ndexcache_limit_fallbacks_total %llu\n",
                      dc_fleet_any_up() ? 1 : 0, dc_fleet_instances(), (unsigned long long)dc_fleet_l2_hits(),
                      (unsigned long long)dc_fleet_fallbacks());
}

void dc_fleet_metrics_register(void)
{
    dc_metrics_add_source(render_metrics, NULL);
}
