/*
 * Tiers of one upstream and its retry budget: the pure decisions of an upstream fetch
 * (upstream/fetch_slot.c owns the side effects: breaker admission, budget reservation; fetch.c the timers).
 *
 * Tiers. An upstream may list several origins in order (`tiers:` in the config; the single `url:`
 * form is one tier). Each tier has its own base URL, keys, budget and breaker. A fetch sends each
 * attempt to the first tier that is not cordoned, whose breaker admits it (closed, or the half-open
 * probe) and, preferably, whose budget is not cooling down after a 429; a tier without budget is
 * still used when no tier below has any. After a failed attempt (connect error, reset, timeout,
 * 5xx, 429, an answer that fails validation: fetch.h judge) an idempotent fetch moves down to the next
 * tier not tried yet in this round, at once (no backoff: it is another origin); when every tier was
 * tried, the ordinary retry rules (upstream/retry.h) start a new round from the top after the
 * backoff. A non-idempotent request moves down only when nothing reached the origin (the
 * connection was refused or the host did not resolve).
 *
 * Retry budget (Envoy's retry_budget): per upstream, across every worker, a retry or a failover
 * may start only while active retries < max(min_concurrency, percent% of active requests). An
 * active request is a fetch between start and its end; an active retry is a fetch that holds a
 * retry slot: from the decision to retry until the fetch ends. So a full outage costs at most
 * (1 + share) times the client load at the origin, never (1 + retries) times.
 */
#ifndef DC_UPSTREAM_TIER_H
#define DC_UPSTREAM_TIER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/account.h"
#include "upstream/budget.h"
#include "upstream/keyring.h"
#include "upstream/upstream_state.h"

#define DC_TIERS_MAX 4

/* One tier as a fetch sees it; every pointer is borrowed from the snapshot that owns the tier. */
typedef struct dc_fetch_tier {
    const char *url;             /* base URL, no trailing slash */
    dc_keyring_t *keyring;       /* may be NULL (no keys, or the client's own key is forwarded) */
    dc_budget_t *budget;         /* may be NULL */
    dc_budget_t *key_budgets;    /* may be NULL: rate_per: key */
    dc_upstream_state_t *health; /* may be NULL */
    const char *budget_name;     /* names the fleet budget and cooldown: "<upstream>" or "<upstream>~<n>" */
    dc_accounts_t *accounts;     /* may be NULL: accounts, groups and weights (upstream/account.h) */
} dc_fetch_tier_t;

/* Why an attempt failed, for the failover decision. */
typedef enum {
    DC_TIER_FAIL_CONNECT = 0, /* refused / not resolved: nothing reached the origin */
    DC_TIER_FAIL_TRANSPORT,   /* reset, nothing received, TLS: bytes may have reached the origin */
    DC_TIER_FAIL_TIMEOUT,     /* the attempt's own timeout (attempt_timeout) */
    DC_TIER_FAIL_STATUS,      /* 5xx or 429 */
    DC_TIER_FAIL_VALIDATION,  /* the answer failed the route's validation (fail_statuses, body checks) */
} dc_tier_fail_t;

/* What the chooser knows of tier i. */
typedef struct dc_tier_view {
    bool cordoned;   /* set aside by hand (admin) */
    bool open;       /* breaker open, or half-open with its probe out */
    bool has_budget; /* its budget is not cooling down after a 429 */
    bool tried;      /* already tried in this round */
} dc_tier_view_t;

/* The tiers to try, best first, into out[] (at most n); returns how many. Tiers cordoned, open, or
 * (when skip_tried) tried are left out; those with budget come before those without, each group in
 * tier order. */
size_t dc_tier_order(const dc_tier_view_t *v, size_t n, bool skip_tried, unsigned *out);
/* May an attempt that failed with `why` move to another tier? */
bool dc_tier_may_fail_over(bool idempotent, dc_tier_fail_t why);

typedef struct dc_retry_budget {
    _Atomic uint32_t active_requests;
    _Atomic uint32_t active_retries;
    uint32_t percent;         /* of active requests, 0..100 */
    uint32_t min_concurrency; /* retries always allowed up to this many at once */
    _Atomic uint64_t allowed_total;
    _Atomic uint64_t denied_total;
    _Atomic uint64_t failovers_total; /* allowed retries that went to another tier */
    /* hedged GETs (upstream/fetch.h): the hedge's head was used (won), it was cancelled or failed
     * (lost), or it was never sent for want of a retry slot or an upstream budget slot now */
    _Atomic uint64_t hedges_won_total;
    _Atomic uint64_t hedges_lost_total;
    _Atomic uint64_t hedges_skipped_budget_total;
} dc_retry_budget_t;

/* Pure: is one more retry allowed with these counts? cap = max(min_concurrency, percent x active /
 * 100, rounded down). */
bool dc_retry_budget_allows(uint32_t active_requests, uint32_t active_retries, uint32_t percent,
                            uint32_t min_concurrency);
uint32_t dc_retry_budget_cap(uint32_t active_requests, uint32_t percent, uint32_t min_concurrency);
void dc_retry_budget_init(dc_retry_budget_t *rb, uint32_t percent, uint32_t min_concurrency);
/* A fetch starts / ends (every fetch toward the upstream, retried or not). */
void dc_retry_budget_enter(dc_retry_budget_t *rb);
void dc_retry_budget_leave(dc_retry_budget_t *rb);
/* Take a retry slot (counted allowed or denied); false = no retry now. */
bool dc_retry_budget_acquire(dc_retry_budget_t *rb);
void dc_retry_budget_release(dc_retry_budget_t *rb);

#endif
