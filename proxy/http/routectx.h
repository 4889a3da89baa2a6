/*
 * The route context: where a piece of request-path work runs (its worker), under which config
 * (the snapshot) and for which route and cache rule. A request carries one (dc_request_t.ctx), a
 * fill carries its own copy, and the functions that start work for a route take a pointer to one
 * instead of the loose {worker, snapshot, route, rule} tuple.
 *
 * Ownership is the holder's business, not this struct's: whoever embeds a dc_route_ctx_t says
 * whether it holds a reference to `snap` (a request and a fill do: one each, released when they go).
 * A `const dc_route_ctx_t *` passed to a function is borrowed for the call; a callee that keeps the
 * context beyond the call copies it and takes its own snapshot reference. `route`, `rule` and
 * `up_rt` point into the snapshot and live as long as it.
 */
#ifndef DC_HTTP_ROUTECTX_H
#define DC_HTTP_ROUTECTX_H

#include "config/config.h"
#include "server/snapshot.h"
#include "server/worker.h"

typedef struct dc_route_ctx {
    dc_worker_t *worker;
    dc_snapshot_t *snap;
    const dc_config_route_t *route;
    const dc_config_cache_rule_t *rule; /* NULL = not cacheable */
    dc_upstream_rt_t *up_rt;            /* the route's upstream runtime (in snap) */
    unsigned route_metric;              /* the route's metrics label id (in snap) */
} dc_route_ctx_t;

#endif
