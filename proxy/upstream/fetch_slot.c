/*
 * Where an upstream fetch's attempt goes and when it may leave: its tier (upstream/tier.h: breakers,
 * cordons, the fleet's one probe of a half-open tier), the key's account and the path's endpoint
 * group (upstream/account.h), and its slot of the budgets, reserved fleet-wide in Redis or, without
 * it, locally; a slot that comes too late is given up and reserved again. The outcome of an attempt
 * teaches the tier's breaker and the budgets (dc__fetch_record_attempt, dc__fetch_budget_learn_status).
 */
#include "core/error.h"
#include "core/metrics.h"
#include "core/time.h"
#include "upstream/breaker_fleet.h"
#include "upstream/budget_fleet.h"
#include "upstream/fetch_private.h"

#include <stdlib.h>

/* This attempt's tier's health and breaker learn its outcome (see upstream_state.h); an opening or
 * a closing is told to the fleet (breaker_fleet.h), and the fleet's probe lock is given back. */
void dc__fetch_record_attempt(dc_fetch_t *f, bool failed)
{
    if (f->health == NULL)
        return;
    dc_breaker_opening_t o;
    bool told = false; /* an opening or closing was posted: it deletes the probe lock too */
    if (failed) {
        if (dc_upstream_state_failure(f->health, &f->opts.breaker, dc_now_mono_ms(), &o) && f->upstream_name != NULL) {
            dc_breaker_fleet_opened(f->upstream_name, f->tier, &o, f->opts.breaker.max_backoff_ms);
            told = true;
        }
    } else if (dc_upstream_state_success(f->health, &f->opts.breaker, dc_now_mono_ms()) && f->upstream_name != NULL) {
        dc_breaker_fleet_closed(f->upstream_name, f->tier);
        told = true;
    }
    if (f->probe_locked && told)
        f->probe_locked = false;
    if (f->probe_locked) {
        f->probe_locked = false;
        if (f->fleet != NULL && f->upstream_name != NULL)
            dc_breaker_fleet_probe_unlock(f->fleet, f->upstream_name, f->tier);
    }
}

/* The local budget (and, on a 429, every instance) learns from a final status; `ra` is a 429's
 * Retry-After in microseconds (0 = none). */
void dc__fetch_budget_learn_status(dc_fetch_t *f, uint64_t ra)
{
    if (f->budget == NULL)
        return;
    if (f->status == 429) {
        /* a request of an endpoint group: its group's bucket was the one full */
        dc_budget_t *b = f->group_429 && f->group_budget != NULL ? f->group_budget : f->budget;
        const char *name = b == f->group_budget ? f->group_budget_name : f->budget_name;
        dc_budget_on_429(b, dc_now_mono_us(), ra);
        if (f->fleet != NULL && name != NULL)
            dc_fleet_cooldown(f->fleet, name, ra ? ra : 1000000); /* every instance pauses */
    } else if (f->status < 500) {
        dc_budget_on_success(f->budget);
        if (f->group_budget != NULL)
            dc_budget_on_success(f->group_budget);
    }
}

/* How late after its slot this attempt may still leave: the tighter of its budgets'. */
static uint64_t late_ok_ms(const dc_fetch_t *f)
{
    uint64_t us = f->budget->late_ok_us;
    if (f->group_budget != NULL && f->group_budget->nwin > 0 &&
        (f->budget->nwin == 0 || f->group_budget->late_ok_us < us))
        us = f->group_budget->late_ok_us;
    return us / 1000;
}

/* A fleet-wide slot from Redis: refused, queued until it, or now. Redis unavailable: this
 * instance's share of the budget, locally. */
static void reserve_locally(dc_fetch_t *f, unsigned share_n);

static void on_fleet_reserved(void *data, int err, int ok, uint64_t wait_us)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->aborted) {
        dc__fetch_release(f);
        return;
    }
    if (err != 0) {
        reserve_locally(f, dc_fleet_instances());
        return;
    }
    if (!ok) {
        f->retry_after_ms = (wait_us + 999) / 1000;
        dc__fetch_finish(f, DC_EAGAIN);
        return;
    }
    /* the slot is no earlier than our request's send time plus the wait Redis gave */
    f->leave_by_ms = f->reserve_sent_ms + wait_us / 1000 + late_ok_ms(f);
    if (wait_us == 0) {
        dc__fetch_leave_for_slot(f);
        return;
    }
    if (!dc_budget_enqueue(f->budget)) {
        f->retry_after_ms = (wait_us + 999) / 1000;
        dc__fetch_finish(f, DC_EAGAIN);
        return;
    }
    f->state = ST_QUEUED;
    f->queued = true;
    uv_timer_start(&f->timer, dc__fetch_on_deadline, (wait_us + 999) / 1000, 0);
}

/* The attempt goes to tier i: its URL, keys, budget and breaker. */
static void use_tier(dc_fetch_t *f, unsigned i)
{
    const dc_fetch_tier_t *t = &f->tiers[i];
    f->tier = i;
    f->tried |= 1u << i;
    f->health = t->health;
    f->keyring = t->keyring;
    f->budget = t->budget;
    f->key_budgets = t->key_budgets;
    f->accounts = t->accounts;
    free(f->budget_name);
    f->budget_name = t->budget_name != NULL ? dc_strdup(t->budget_name) : NULL;
    free(f->attempt_url);
    f->attempt_url = dc_asprintf("%s%s", t->url, f->url + f->base0_len);
}

/* The tier of the next attempt (tier.h): the first not cordoned whose breaker admits it (this takes
 * the half-open probe: *probe), preferring tiers with budget; after a failure (*failover), only
 * tiers not tried in this round. false: none can take it; *retry_in_ms = when the first tier's
 * breaker may admit again. */
static bool choose_tier(dc_fetch_t *f, uint64_t *retry_in_ms, unsigned *tier, bool *probe, bool *failover)
{
    uint64_t now = dc_now_mono_ms();
    dc_tier_view_t v[DC_TIERS_MAX];
    for (size_t i = 0; i < f->ntiers; i++) {
        const dc_fetch_tier_t *t = &f->tiers[i];
        v[i].cordoned = t->health != NULL && atomic_load(&t->health->cordoned);
        v[i].open = t->health != NULL && dc_upstream_state_peek(t->health, &f->opts.breaker, now) == DC_BREAKER_OPEN;
        v[i].has_budget = t->budget == NULL || !dc_budget_cooling(t->budget, now * 1000);
        v[i].tried = (f->tried >> i) & 1u;
    }
    *failover = f->failover_next;
    f->failover_next = false;
    unsigned order[DC_TIERS_MAX];
    size_t n = dc_tier_order(v, f->ntiers, *failover, order);
    for (size_t k = 0; k < n; k++) {
        dc_upstream_state_t *h = f->tiers[order[k]].health;
        uint64_t ignored;
        dc_breaker_verdict_t verdict =
            h == NULL ? DC_BREAKER_PASS : dc_upstream_state_admit(h, &f->opts.breaker, now, &ignored);
        if (verdict != DC_BREAKER_OPEN) {
            *tier = order[k];
            *probe = verdict == DC_BREAKER_PROBE;
            return true;
        }
    }
    *retry_in_ms = 1000; /* every tier cordoned */
    for (size_t i = 0; i < f->ntiers; i++) {
        dc_upstream_state_t *h = f->tiers[i].health;
        if (h != NULL && !v[i].cordoned &&
            dc_upstream_state_admit(h, &f->opts.breaker, now, retry_in_ms) == DC_BREAKER_OPEN)
            break; /* counts the refusal, says when */
    }
    return false;
}

/* With accounts, groups or weights on this attempt's tier: the key is chosen first (its account's
 * budget is the attempt's), then the group's budget is added (or, for a separate group, replaces
 * the account's), and the path's weight is the cost in the account's. */
static void use_account(dc_fetch_t *f)
{
    f->budget_cost = 1;
    f->group_budget = NULL;
    f->group_429 = false;
    free(f->group_budget_name);
    f->group_budget_name = NULL;
    dc_accounts_t *a = f->accounts;
    if (a == NULL)
        return;
    f->budget_cost = f->weight;
    size_t acct = 0;
    if (a->naccounts > 0 && f->keyring != NULL && f->keyring->nkeys > 0) {
        if (f->key_index < 0)
            f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        acct = a->key_account[f->key_index];
        f->budget = &a->budgets[acct];
        free(f->budget_name);
        f->budget_name = dc_strdup(a->names[acct]);
    }
    if (f->group < 0 || (size_t)f->group >= a->ngroups)
        return;
    dc_budget_t *gb = dc_accounts_group_budget(a, acct, (size_t)f->group);
    const char *gname = dc_accounts_group_name(a, acct, (size_t)f->group);
    f->group_429 = true;
    if (a->cfg->groups[f->group].separate) { /* its own bucket only: it holds the queue, costs 1 */
        f->budget = gb;
        f->budget_cost = 1;
        free(f->budget_name);
        f->budget_name = dc_strdup(gname);
        f->group_429 = false;
        return;
    }
    f->group_budget = gb;
    f->group_budget_name = dc_strdup(gname);
}

static void continue_attempt(dc_fetch_t *f);

/* The fleet's probe lock answered (see breaker_fleet.h): ours, or Redis unavailable (a local
 * probe): the attempt goes; another instance's: this tier refuses until that probe reports, and
 * the attempt chooses again. */
static void on_probe_lock(void *data, int err, bool won, const char *open, size_t open_len)
{
    dc_fetch_t *f = data;
    DC_CHECK_MAGIC(f, FETCH_MAGIC);
    if (f->aborted) {
        if (won && f->upstream_name != NULL)
            dc_breaker_fleet_probe_unlock(f->fleet, f->upstream_name, f->pending_tier);
        dc__fetch_release(f);
        return;
    }
    if (err == 0 && !won) {
        dc_upstream_state_t *h = f->tiers[f->pending_tier].health;
        if (open == NULL || !dc_brk_value_apply(h, open, open_len, dc_now_wall_ms(), dc_now_mono_ms()))
            dc_upstream_state_probe_elsewhere(h, dc_now_mono_ms());
        f->failover_next = f->pending_failover;
        dc__fetch_start_attempt(f);
        return;
    }
    f->probe_locked = won;
    if (f->pending_failover)
        f->failovers++;
    use_tier(f, f->pending_tier);
    continue_attempt(f);
}

/* Every attempt is an upstream request: it takes a slot of its tier's budget first. */
void dc__fetch_start_attempt(dc_fetch_t *f)
{
    /* a cordoned tier or an open breaker sends nothing: not the first attempt, not a retry */
    uint64_t retry_in_ms = 0;
    unsigned tier = 0;
    bool probe = false, failover = false;
    if (!choose_tier(f, &retry_in_ms, &tier, &probe, &failover)) {
        f->retry_after_ms = retry_in_ms;
        bool all_cordoned = true;
        for (size_t i = 0; i < f->ntiers && all_cordoned; i++)
            all_cordoned = f->tiers[i].health != NULL && atomic_load(&f->tiers[i].health->cordoned);
        if (all_cordoned) { /* by hand, not a failure of the origin: say so, not an old error */
            f->cause = DC_CAUSE_OTHER;
            snprintf(f->cause_text, sizeof(f->cause_text), "every tier is cordoned (admin)");
            f->cause_upstream = f->upstream_name != NULL ? f->upstream_name : "";
        } else if (f->cause == DC_CAUSE_NONE) {
            dc__fetch_cause_from_health(f);
        }
        dc__fetch_fail_soon(f, f->attempts > 0 ? f->last_err : DC_EUNAVAIL);
        return;
    }
    if (probe && f->fleet != NULL && f->upstream_name != NULL && dc_fleet_up(f->fleet)) {
        /* one probe for the whole fleet: ask for the lock first */
        f->pending_tier = tier;
        f->pending_failover = failover;
        f->state = ST_RESERVING;
        if (dc_breaker_fleet_probe_lock(f->fleet, f->upstream_name, tier, f->opts.breaker.probe_timeout_ms,
                                        on_probe_lock, f) == 0)
            return;
    }
    if (failover)
        f->failovers++;
    use_tier(f, tier);
    continue_attempt(f);
}

/* The tier is chosen (use_tier): the attempt takes a slot of its budget, then goes. */
static void continue_attempt(dc_fetch_t *f)
{
    /* with a budget per key, the key is chosen first: the attempt waits for that key's slot */
    f->key_index = -1;
    if (f->key_budgets != NULL && f->keyring != NULL && f->keyring->nkeys > 0) {
        f->key_index = dc_keyring_pick(f->keyring, dc_now_mono_ms());
        f->budget = &f->key_budgets[f->key_index];
        const char *base = f->tiers[f->tier].budget_name;
        free(f->budget_name);
        f->budget_name = dc_asprintf("%s#%s", base != NULL ? base : "", f->keyring->ids[f->key_index]);
    }
    use_account(f);
    uint64_t now = dc_now_mono_ms();
    if (!f->rereserving && f->budget != NULL)
        f->queue_until_ms = now + f->budget->queue_timeout_us / 1000;
    f->rereserving = false;
    f->slot_local = false;
    bool paced = f->budget != NULL && (f->budget->nwin > 0 || (f->group_budget != NULL && f->group_budget->nwin > 0));
    if (paced && f->fleet != NULL && dc_fleet_up(f->fleet)) {
        uint64_t em[DC_BUDGET_FLEET_MAX_PARTS][DC_BUDGET_FLEET_MAX_WIN];
        dc_fleet_budget_part_t parts[DC_BUDGET_FLEET_MAX_PARTS];
        size_t nparts = 0;
        parts[nparts] = (dc_fleet_budget_part_t){f->budget_name != NULL ? f->budget_name : "", em[nparts],
                                                 dc_budget_emissions(f->budget, em[nparts], DC_BUDGET_FLEET_MAX_WIN),
                                                 f->budget_cost};
        nparts++;
        if (f->group_budget != NULL) {
            parts[nparts] =
                (dc_fleet_budget_part_t){f->group_budget_name, em[nparts],
                                         dc_budget_emissions(f->group_budget, em[nparts], DC_BUDGET_FLEET_MAX_WIN), 1};
            nparts++;
        }
        f->state = ST_RESERVING;
        f->reserve_sent_ms = now;
        uint64_t queue_us = f->queue_until_ms > now ? (f->queue_until_ms - now) * 1000 : 0;
        if (dc_fleet_budget_reserve_multi(f->fleet, parts, nparts, queue_us, f->opts.background, on_fleet_reserved,
                                          f) == 0)
            return;
        reserve_locally(f, dc_fleet_instances());
        return;
    }
    reserve_locally(f, 1);
}

static void reserve_locally(dc_fetch_t *f, unsigned share_n)
{
    if (f->budget != NULL) {
        uint64_t delay_us, now_us = dc_now_mono_us();
        dc_budget_t *bs[DC_BUDGET_MULTI_MAX] = {f->budget, f->group_budget};
        uint32_t costs[DC_BUDGET_MULTI_MAX] = {f->budget_cost, 1};
        size_t nb = f->group_budget != NULL ? 2 : 1;
        if (dc_budget_reserve_multi(bs, costs, nb, now_us, f->opts.background, share_n, &delay_us) != 0) {
            f->retry_after_ms = (delay_us + 999) / 1000;
            dc__fetch_fail_soon(f, DC_EAGAIN);
            return;
        }
        /* a slot given back by a hedge that lost before sending: one unit of one budget only */
        f->slot_local = f->budget->nwin > 0 && f->group_budget == NULL && f->budget_cost == 1;
        f->slot_us = now_us + delay_us;
        f->slot_share = share_n;
        uint64_t now = dc_now_mono_ms();
        if (now + delay_us / 1000 > f->queue_until_ms) { /* a re-reservation past the queue timeout */
            f->retry_after_ms = (delay_us + 999) / 1000;
            dc__fetch_fail_soon(f, DC_EAGAIN);
            return;
        }
        f->leave_by_ms = now + delay_us / 1000 + late_ok_ms(f);
        if (delay_us > 0) {
            f->state = ST_QUEUED;
            f->queued = true;
            uv_timer_start(&f->timer, dc__fetch_on_deadline, (delay_us + 999) / 1000, 0);
            return;
        }
        dc__fetch_leave_for_slot(f);
        return;
    }
    dc__fetch_begin_attempt(f);
}

/* The attempt's slot has come: it goes, unless it would leave later than the budget allows after
 * its slot (a late timer or Redis reply under CPU contention: the next `limit` requests may leave
 * on time and a window would hold one too many). Then it gives the slot up and reserves again, a
 * few times, within its deadline; past that the budget counts as exhausted (503). */
void dc__fetch_leave_for_slot(dc_fetch_t *f)
{
    uint64_t now = dc_now_mono_ms();
    if (f->leave_by_ms == 0 || now <= f->leave_by_ms) {
        f->leave_by_ms = 0;
        dc__fetch_begin_attempt(f);
        return;
    }
    f->leave_by_ms = 0;
    __atomic_fetch_add(&dc_metrics_process.budget_late_rereserves, 1, __ATOMIC_RELAXED);
    if (++f->late_rereserves <= 3 && now < f->queue_until_ms) { /* within the queue timeout it had */
        f->rereserving = true;
        dc__fetch_start_attempt(f);
        return;
    }
    f->retry_after_ms = 1000;
    dc__fetch_finish(f, DC_EAGAIN);
}
