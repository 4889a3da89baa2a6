#include "server/snapshot.h"
#include "core/refcount.h"
#include "core/error.h"
#include "core/metrics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct {
    void *(*create)(const dc_config_route_t *route);
    void (*destroy)(void *state);
} route_slots[DC_ROUTE_SLOTS];
static unsigned nroute_slots;
static bool snapshots_made; /* slots are fixed once the first snapshot exists */

unsigned dc_snapshot_register_route_slot(void *(*create)(const dc_config_route_t *route), void (*destroy)(void *state))
{
    DC_ASSERT(!snapshots_made && nroute_slots < DC_ROUTE_SLOTS);
    route_slots[nroute_slots].create = create;
    route_slots[nroute_slots].destroy = destroy;
    return nroute_slots++;
}

static void (*plugins_release)(void *set);

void dc_snapshot_register_plugins_release(void (*release)(void *set))
{
    DC_ASSERT(!snapshots_made);
    plugins_release = release;
}

void dc_snapshot_attach_plugins(dc_snapshot_t *s, void *set, const void *const *chains)
{
    DC_ASSERT(s->plugins == NULL && plugins_release != NULL);
    s->plugins = set;
    for (size_t i = 0; i < s->cfg->nroutes; i++)
        s->routes[i].plugins = chains[i];
}

/* Pacing state of each key that is still configured carries over a reload. */
static void inherit_key_budgets(dc_upstream_rt_t *rt, const dc_config_upstream_t *u, const dc_upstream_rt_t *old,
                                const dc_config_upstream_t *old_u)
{
    if (rt->key_budgets == NULL || old->key_budgets == NULL)
        return;
    for (size_t k = 0; k < u->nkeys; k++)
        for (size_t j = 0; j < old_u->nkeys; j++)
            if (strcmp(u->keys[k], old_u->keys[j]) == 0)
                dc_budget_inherit(&rt->key_budgets[k], &old->key_budgets[j]);
}

/* Tiers 2.. get their own key ring, budget and breaker; every tier is described for fetches. */
static void init_tiers(dc_upstream_rt_t *rt, const dc_config_upstream_t *u)
{
    rt->ntiers = u->ntiers > 0 ? (u->ntiers < DC_TIERS_MAX ? u->ntiers : DC_TIERS_MAX) : 1;
    if (rt->ntiers > 1)
        rt->xtiers = dc_calloc(rt->ntiers - 1, sizeof(*rt->xtiers));
    dc_accounts_t *acc = dc_accounts_active(&rt->accounts) ? &rt->accounts : NULL;
    rt->tiers[0] = (dc_fetch_tier_t){u->url, &rt->keyring, &rt->budget, rt->key_budgets, &rt->health, u->name, acc};
    for (size_t t = 1; t < rt->ntiers; t++) {
        const dc_config_tier_t *ct = &u->tiers[t];
        dc_upstream_tier_rt_t *x = &rt->xtiers[t - 1];
        dc_keyring_init(&x->keyring, ct->keys, ct->nkeys, u->key_quarantine_ms);
        dc_budget_init(&x->budget, ct->rates, ct->nrates, u->queue_max, u->queue_timeout_ms);
        x->budget_name = dc_asprintf("%s~%zu", u->name, t + 1);
        rt->tiers[t] = (dc_fetch_tier_t){ct->url, &x->keyring, &x->budget, NULL, &x->health, x->budget_name};
    }
    for (size_t t = 0; t < rt->ntiers; t++) {
        rt->tiers_keyless[t] = rt->tiers[t];
        rt->tiers_keyless[t].keyring = NULL;
        rt->tiers_keyless[t].key_budgets = NULL;
        if (rt->accounts.naccounts > 0) /* the client's own key: none of our accounts */
            rt->tiers_keyless[t].accounts = NULL;
    }
    dc_retry_budget_init(&rt->retry_budget, u->retry_budget_percent, u->retry_budget_min);
}

/* A tier cordoned by hand stays cordoned across a reload while the same URL is at the same place. */
static void inherit_cordons(dc_upstream_rt_t *rt, const dc_config_upstream_t *u, dc_upstream_rt_t *old,
                            const dc_config_upstream_t *old_u)
{
    (void)u;
    (void)old_u;
    for (size_t t = 0; t < rt->ntiers && t < old->ntiers; t++)
        if (strcmp(rt->tiers[t].url, old->tiers[t].url) == 0) {
            atomic_store(&dc_upstream_rt_tier_health(rt, t)->cordoned,
                         atomic_load(&dc_upstream_rt_tier_health(old, t)->cordoned));
            /* /health keeps showing the last failure of the same origin */
            dc_upstream_state_inherit_error(dc_upstream_rt_tier_health(rt, t), dc_upstream_rt_tier_health(old, t));
        }
}

dc_snapshot_t *dc_snapshot_create(dc_config_t *cfg, const dc_snapshot_t *prev, uint64_t generation)
{
    snapshots_made = true;
    dc_snapshot_t *s = dc_calloc(1, sizeof(*s));
    s->magic = DC_SNAPSHOT_MAGIC;
    dc_refcount_init(&s->refcnt, 1);
    s->generation = generation;
    s->cfg = cfg;
    s->ups = dc_calloc(cfg->nupstreams, sizeof(*s->ups));
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        dc_config_upstream_t *u = &cfg->upstreams[i];
        dc_keyring_init(&s->ups[i].keyring, u->keys, u->nkeys, u->key_quarantine_ms);
        dc_accounts_init(&s->ups[i].accounts, u);
        uint32_t max_cost = s->ups[i].accounts.max_cost; /* weights count in the upstream's or key's budget */
        dc_budget_init_cost(&s->ups[i].budget, u->rates, u->nrates, u->queue_max, u->queue_timeout_ms, max_cost);
        if (u->rate_per == DC_RATE_PER_KEY && u->nkeys > 0) {
            s->ups[i].key_budgets = dc_calloc(u->nkeys, sizeof(dc_budget_t));
            for (size_t k = 0; k < u->nkeys; k++)
                dc_budget_init_cost(&s->ups[i].key_budgets[k], u->rates, u->nrates, u->queue_max, u->queue_timeout_ms,
                                    max_cost);
        }
        s->ups[i].metrics_id = dc_metrics_label_id(DC_METRICS_UPSTREAM, u->name);
        init_tiers(&s->ups[i], u);
        if (prev != NULL) {
            for (size_t j = 0; j < prev->cfg->nupstreams; j++)
                if (strcmp(prev->cfg->upstreams[j].name, u->name) == 0) {
                    dc_keyring_inherit(&s->ups[i].keyring, &prev->ups[j].keyring);
                    dc_budget_inherit(&s->ups[i].budget, (dc_budget_t *)&prev->ups[j].budget);
                    inherit_key_budgets(&s->ups[i], u, &prev->ups[j], &prev->cfg->upstreams[j]);
                    dc_accounts_inherit(&s->ups[i].accounts, &prev->ups[j].accounts);
                    inherit_cordons(&s->ups[i], u, &prev->ups[j], &prev->cfg->upstreams[j]);
                }
        }
    }
    s->routes = dc_calloc(cfg->nroutes, sizeof(*s->routes));
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const dc_config_route_t *r = &cfg->routes[i];
        s->routes[i].metrics_id = dc_metrics_label_id(DC_METRICS_ROUTE, r->prefix);
        for (unsigned k = 0; k < nroute_slots; k++)
            s->routes[i].slots[k] = route_slots[k].create(r);
        if (r->limit.enabled)
            dc_gcra_params_init(&s->routes[i].limit, r->limit.rate.limit, r->limit.rate.window_ms, r->limit.burst);
        if (r->limit.enabled && r->limit.ntiers > 0) {
            s->routes[i].tier_limits = dc_calloc(r->limit.ntiers, sizeof(dc_gcra_params_t));
            for (size_t t = 0; t < r->limit.ntiers; t++) {
                const dc_config_limit_tier_t *ti = &r->limit.tiers[t];
                dc_gcra_params_init(&s->routes[i].tier_limits[t], ti->rate.limit, ti->rate.window_ms, ti->burst);
            }
        }
    }
    s->trusted = dc_calloc(cfg->server.ntrusted_proxies ? cfg->server.ntrusted_proxies : 1, sizeof(*s->trusted));
    for (size_t i = 0; i < cfg->server.ntrusted_proxies; i++)
        if (dc_cidr_parse(cfg->server.trusted_proxies[i], &s->trusted[s->ntrusted]) == 0) /* validated by config */
            s->ntrusted++;
    return s;
}

dc_snapshot_t *dc_snapshot_ref(dc_snapshot_t *s)
{
    DC_CHECK_MAGIC(s, DC_SNAPSHOT_MAGIC);
    dc_refcount_take(&s->refcnt);
    return s;
}

void dc_snapshot_release(dc_snapshot_t *s)
{
    if (s == NULL)
        return;
    DC_CHECK_MAGIC(s, DC_SNAPSHOT_MAGIC);
    if (!dc_refcount_drop(&s->refcnt))
        return;
    for (size_t i = 0; i < s->cfg->nupstreams; i++) {
        dc_keyring_dispose(&s->ups[i].keyring);
        dc_budget_dispose(&s->ups[i].budget);
        dc_accounts_dispose(&s->ups[i].accounts);
        if (s->ups[i].key_budgets != NULL) {
            for (size_t k = 0; k < s->cfg->upstreams[i].nkeys; k++)
                dc_budget_dispose(&s->ups[i].key_budgets[k]);
            free(s->ups[i].key_budgets);
        }
        for (size_t t = 1; t < s->ups[i].ntiers; t++) {
            dc_keyring_dispose(&s->ups[i].xtiers[t - 1].keyring);
            dc_budget_dispose(&s->ups[i].xtiers[t - 1].budget);
            free(s->ups[i].xtiers[t - 1].budget_name);
        }
        free(s->ups[i].xtiers);
    }
    free(s->ups);
    for (size_t i = 0; i < s->cfg->nroutes; i++) {
        for (unsigned k = 0; k < nroute_slots; k++)
            if (s->routes[i].slots[k] != NULL)
                route_slots[k].destroy(s->routes[i].slots[k]);
        free(s->routes[i].tier_limits);
    }
    free(s->routes);
    free(s->trusted);
    if (s->plugins != NULL)
        plugins_release(s->plugins);
    dc_config_release(s->cfg);
    s->magic = 0;
    free(s);
}
