/*
 * A snapshot = one immutable config plus the runtime state that lives exactly as long as it
 * (per-upstream key rings, metric label ids). Shared by all workers through an atomic refcount.
 * Workers hold one reference to the current snapshot; each request holds one for its lifetime, so
 * a reload never changes the config under a request in flight.
 *
 * This is the runtime layer (proxy/README.md): it knows the config and the modules below it, and
 * nothing above. Modules above it keep per-route state in route slots: a module registers a
 * constructor/destructor pair once at start-up (before the first snapshot) and gets a slot
 * number; every snapshot then runs the constructor for each of its routes and the destructor when
 * it is freed (h2o's config slots / on_context_init, in our terms).
 */
#ifndef DC_SERVER_SNAPSHOT_H
#define DC_SERVER_SNAPSHOT_H

#include <stdatomic.h>
#include "core/refcount.h"
#include <stdint.h>

#include "config/config.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra.h"
#include "upstream/budget.h"
#include "upstream/keyring.h"
#include "upstream/upstream_state.h"
#include "upstream/tier.h"

#define DC_SNAPSHOT_MAGIC 0x534e4150u /* "SNAP" */
#define DC_ROUTE_SLOTS 4              /* route slots a process can register */

/* Tier 2, 3, ... of an upstream (tier 1 is the upstream's own fields below). */
typedef struct dc_upstream_tier_rt {
    dc_keyring_t keyring;
    dc_budget_t budget; /* rate_per: key applies to tier 1 only: the others share their budget */
    dc_upstream_state_t health;
    char *budget_name; /* "<upstream>~<n>": names its fleet budget and cooldown */
} dc_upstream_tier_rt_t;

typedef struct dc_upstream_rt {
    dc_keyring_t keyring;
    dc_budget_t budget;
    dc_budget_t *key_budgets; /* rate_per: key with keys: one budget per key (parallel to keyring.keys), else NULL */
    dc_accounts_t accounts;   /* accounts, endpoint groups and weights of tier 1 (upstream/account.h) */
    dc_upstream_state_t health;
    unsigned metrics_id;
    dc_upstream_tier_rt_t *xtiers; /* cfg tiers[1..ntiers-1], NULL with one tier */
    /* every tier as a fetch sees it (tier 1 = the fields above): with our keys, and without (the
     * client's own key is forwarded) */
    dc_fetch_tier_t tiers[DC_TIERS_MAX];
    dc_fetch_tier_t tiers_keyless[DC_TIERS_MAX];
    size_t ntiers;
    dc_retry_budget_t retry_budget;
} dc_upstream_rt_t;

/* Tier n (0-based) of an upstream's runtime: its health (breaker, cordon). */
static inline dc_upstream_state_t *dc_upstream_rt_tier_health(dc_upstream_rt_t *rt, size_t n)
{
    return n == 0 ? &rt->health : &rt->xtiers[n - 1].health;
}

/* An upstream's breaker rules (probe_timeout_ms: its fetch's deadline, 0 when no probe is taken). */
static inline dc_breaker_params_t dc_upstream_breaker_params(const dc_config_upstream_t *up, uint64_t probe_timeout_ms)
{
    return (dc_breaker_params_t){.failures = up->breaker_failures,
                                 .backoff_ms = up->breaker_backoff_ms,
                                 .max_backoff_ms = up->breaker_max_backoff_ms,
                                 .probe_timeout_ms = probe_timeout_ms,
                                 .failure_ratio = up->breaker_failure_ratio,
                                 .window_ms = up->breaker_window_ms,
                                 .min_requests = up->breaker_min_requests};
}

typedef struct dc_route_rt {
    unsigned metrics_id;
    dc_gcra_params_t limit;        /* valid when the route has limit: */
    dc_gcra_params_t *tier_limits; /* parallel to cfg limit.tiers (NULL when none) */
    void *slots[DC_ROUTE_SLOTS];   /* per-module state (dc_snapshot_register_route_slot), may be NULL */
    const void *plugins;           /* this route's plugin chain (plugin/ sets it, dc_snapshot_attach_plugins),
                                    * NULL when the route runs none: the one pointer the hit path checks */
} dc_route_rt_t;

typedef struct dc_snapshot {
    uint32_t magic;
    dc_refcount_t refcnt;
    uint64_t generation;
    dc_config_t *cfg;      /* owned reference */
    dc_upstream_rt_t *ups; /* parallel to cfg->upstreams */
    dc_route_rt_t *routes; /* parallel to cfg->routes */
    dc_cidr_t *trusted;    /* server.trusted_proxies, parsed */
    size_t ntrusted;
    void *plugins; /* the plugin instances built from cfg (plugin/), owned; NULL when none */
} dc_snapshot_t;

/* Start-up only (main thread, before the first dc_snapshot_create): a slot whose state `create`
 * makes for every route of every snapshot (NULL = none for this route), and `destroy` (called
 * with non-NULL states only) frees when the snapshot goes. The state is shared by every worker
 * and lives as long as the snapshot. Returns the slot number. */
unsigned dc_snapshot_register_route_slot(void *(*create)(const dc_config_route_t *route), void (*destroy)(void *state));

/* Start-up only: how a snapshot frees its plugin set (the plugin module, above this layer). */
void dc_snapshot_register_plugins_release(void (*release)(void *set));
/* Before the snapshot is published (no other thread sees it yet): take over `set` (freed with the
 * registered release when the snapshot goes) and each route's chain: chains[i] for cfg->routes[i],
 * NULL for a route without plugins. `chains` is borrowed (the set owns what it points to). */
void dc_snapshot_attach_plugins(dc_snapshot_t *s, void *set, const void *const *chains);

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

/* A route's state in `slot` (from dc_snapshot_register_route_slot), or NULL. */
static inline void *dc_snapshot_route_slot(dc_snapshot_t *s, const dc_config_route_t *r, unsigned slot)
{
    return dc_snapshot_route_rt(s, r)->slots[slot];
}

#endif
