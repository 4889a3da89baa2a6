/*
 * Accounts, endpoint groups and path weights of one upstream (`accounts:`, `groups:`, `weights:`
 * in the config): which budgets an upstream request reserves from, and what it costs there.
 *
 * An account is the keys that share one organisation's limit: its own budget (upstream/budget.h,
 * fleet-wide through upstream/budget_fleet.h), named "<upstream>@<account>". Without accounts the
 * upstream's own budget (or its key's, rate_per: key) plays the account. An endpoint group has
 * its own rate inside each account's budget: one budget per (account, group), named
 * "<upstream>@<account>/<group>" (or "<upstream>/<group>" without accounts). A request of a group
 * takes one slot free in both its account's and its group's budget at once, unless the group is
 * `separate` (its own bucket only). A request counts its path's weight in the account's budget
 * and 1 in its group's. A 429 to a request of a group pauses that group's budget only.
 *
 * The matching functions are pure; the runtime lives in the config snapshot and borrows the
 * upstream's config (patterns, names) from it.
 */
#ifndef DC_UPSTREAM_ACCOUNT_H
#define DC_UPSTREAM_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "upstream/budget.h"

/* Does `pattern` (an exact path, or a prefix ending in '*') match path[0..len)? */
bool dc_path_pattern_match(const char *pattern, const char *path, size_t len);
/* The upstream path of a request URL's rest after the base: up to '?' or '#'. Its length. */
size_t dc_account_path_len(const char *rest);
/* Index of the first group one of whose paths matches, or -1. */
int dc_account_group_of(const dc_config_group_t *groups, size_t ngroups, const char *path, size_t len);
/* The cost of a request to `path`: the weight of an exact entry, else of the longest matching
 * prefix, else 1. */
uint32_t dc_account_weight_of(const dc_config_weight_t *weights, size_t nweights, const char *path, size_t len);
/* The largest cost any request can have (1 without weights). */
uint32_t dc_account_max_weight(const dc_config_weight_t *weights, size_t nweights);

typedef struct dc_accounts {
    const dc_config_upstream_t *cfg; /* borrowed from the snapshot */
    size_t naccounts;                /* cfg->naccounts: 0 = the tier's own budget is the account */
    dc_budget_t *budgets;            /* [naccounts] */
    char **names;                    /* [naccounts] fleet names "<upstream>@<account>" */
    uint32_t *key_account;           /* [cfg->nkeys] account of each key of the upstream's keyring */
    size_t ngroups;
    dc_budget_t *group_budgets; /* [max(1, naccounts) * ngroups], account-major */
    char **group_names;         /* same shape: fleet names */
    uint32_t max_cost;          /* dc_account_max_weight of the config */
} dc_accounts_t;

/* Build the budgets of `u` (u must outlive a; nothing is allocated without accounts and groups). */
void dc_accounts_init(dc_accounts_t *a, const dc_config_upstream_t *u);
/* Keep the pacing state of the budgets with the same names in `old` across a config reload. */
void dc_accounts_inherit(dc_accounts_t *a, dc_accounts_t *old);
void dc_accounts_dispose(dc_accounts_t *a);
/* Does `a` change anything for a fetch (accounts, groups or weights)? */
bool dc_accounts_active(const dc_accounts_t *a);
/* The group budget of account `acct` (0 without accounts) and group `g`. */
static inline dc_budget_t *dc_accounts_group_budget(dc_accounts_t *a, size_t acct, size_t g)
{
    return &a->group_budgets[acct * a->ngroups + g];
}
static inline const char *dc_accounts_group_name(const dc_accounts_t *a, size_t acct, size_t g)
{
    return a->group_names[acct * a->ngroups + g];
}

#endif
