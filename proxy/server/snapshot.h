/*
 * A snapshot = one immutable config plus the runtime state that lives exactly as long as it
 * (per-upstream key rings, metric label ids). Shared by all workers through an atomic refcount.
 * Workers hold one reference to the current snapshot; each request holds one for its lifetime, so
 * a reload never changes the config under a request in flight.
 */
#ifndef DC_SERVER_SNAPSHOT_H
#define DC_SERVER_SNAPSHOT_H

#include <stdatomic.h>
#include <stdint.h>

#include "config/config.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra.h"
#include "upstream/budget.h"
#include "upstream/keyring.h"
#include "upstream/upstream_state.h"

#define DC_SNAPSHOT_MAGIC 0x534e4150u /* "SNAP" */

typedef struct dc_upstream_rt {
    dc_keyring_t keyring;
    dc_budget_t budget;
    dc_budget_t *key_budgets; /* rate_per: key with keys: one budget per key (parallel to keyring.keys), else NULL */
    dc_upstream_state_t health;
    unsigned metrics_id;
} dc_upstream_rt_t;

typedef struct dc_route_rt {
    unsigned metrics_id;
    dc_gcra_params_t limit; /* valid when the route has limit: */
    struct dc_batcher *batcher; /* the route's batch: gatherer, NULL without batch: */
} dc_route_rt_t;

typedef struct dc_snapshot {
    uint32_t magic;
    _Atomic int refcnt;
    uint64_t generation;
    dc_config_t *cfg;        /* owned reference */
    dc_upstream_rt_t *ups;   /* parallel to cfg->upstreams */
    dc_route_rt_t *routes;   /* parallel to cfg->routes */
    dc_cidr_t *trusted;      /* server.trusted_proxies, parsed */
    size_t ntrusted;
} dc_snapshot_t;

/* Takes over the caller's reference to cfg. `prev` (may be NULL) lends state worth keeping across
 * a reload (key quarantines). Returns a snapshot with refcnt 1. */
dc_snapshot_t *dc_snapshot_create(dc_config_t *cfg, const dc_snapshot_t *prev, uint64_t generation);
dc_snapshot_t *dc_snapshot_ref(dc_snapshot_t *s);
void dc_snapshot_release(dc_snapshot_t *s);

static inline dc_upstream_rt_t *dc_snapshot_upstream_rt(dc_snapshot_t *s, const dc_config_upstream_t *up)
{
    return &s->ups[up - s->cfg->upstreams];
}
static inline dc_route_rt_t *dc_snapshot_route_rt(dc_snapshot_t *s, const dc_config_route_t *r)
{
    return &s->routes[r - s->cfg->routes];
}

#endif
