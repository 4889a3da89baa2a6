#include "upstream/account.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

bool dc_path_pattern_match(const char *pattern, const char *path, size_t len)
{
    size_t pl = strlen(pattern);
    if (pl > 0 && pattern[pl - 1] == '*')
        return len >= pl - 1 && memcmp(pattern, path, pl - 1) == 0;
    return len == pl && memcmp(pattern, path, len) == 0;
}

size_t dc_account_path_len(const char *rest)
{
    return strcspn(rest, "?#");
}

int dc_account_group_of(const dc_config_group_t *groups, size_t ngroups, const char *path, size_t len)
{
    for (size_t g = 0; g < ngroups; g++)
        for (size_t p = 0; p < groups[g].npaths; p++)
            if (dc_path_pattern_match(groups[g].paths[p], path, len))
                return (int)g;
    return -1;
}

uint32_t dc_account_weight_of(const dc_config_weight_t *weights, size_t nweights, const char *path, size_t len)
{
    uint32_t w = 1;
    size_t best = 0; /* length of the best match + 1 (an exact match counts longer than any prefix) */
    for (size_t i = 0; i < nweights; i++) {
        const char *pat = weights[i].name;
        if (!dc_path_pattern_match(pat, path, len))
            continue;
        size_t pl = strlen(pat);
        size_t rank = pat[pl - 1] == '*' ? pl : SIZE_MAX;
        if (rank > best) {
            best = rank;
            w = weights[i].value;
        }
    }
    return w ? w : 1;
}

uint32_t dc_account_max_weight(const dc_config_weight_t *weights, size_t nweights)
{
    uint32_t m = 1;
    for (size_t i = 0; i < nweights; i++)
        if (weights[i].value > m)
            m = weights[i].value;
    return m;
}

void dc_accounts_init(dc_accounts_t *a, const dc_config_upstream_t *u)
{
    memset(a, 0, sizeof(*a));
    a->cfg = u;
    a->naccounts = u->naccounts;
    a->ngroups = u->ngroups;
    a->max_cost = dc_account_max_weight(u->weights, u->nweights);
    if (a->naccounts > 0) {
        a->budgets = dc_calloc(a->naccounts, sizeof(dc_budget_t));
        a->names = dc_calloc(a->naccounts, sizeof(char *));
        a->key_account = dc_calloc(u->nkeys ? u->nkeys : 1, sizeof(uint32_t));
        size_t k = 0;
        for (size_t i = 0; i < a->naccounts; i++) {
            const dc_config_account_t *ca = &u->accounts[i];
            dc_budget_init_cost(&a->budgets[i], ca->rates, ca->nrates, u->queue_max, u->queue_timeout_ms, a->max_cost);
            a->names[i] = dc_asprintf("%s@%s", u->name, ca->name);
            for (size_t j = 0; j < ca->nkeys && k < u->nkeys; j++)
                a->key_account[k++] = (uint32_t)i;
        }
    }
    if (a->ngroups > 0) {
        size_t nacc = a->naccounts > 0 ? a->naccounts : 1;
        a->group_budgets = dc_calloc(nacc * a->ngroups, sizeof(dc_budget_t));
        a->group_names = dc_calloc(nacc * a->ngroups, sizeof(char *));
        for (size_t i = 0; i < nacc; i++)
            for (size_t g = 0; g < a->ngroups; g++) {
                const dc_config_group_t *cg = &u->groups[g];
                dc_budget_init(&a->group_budgets[i * a->ngroups + g], cg->rates, cg->nrates, u->queue_max,
                               u->queue_timeout_ms);
                a->group_names[i * a->ngroups + g] =
                    a->naccounts > 0 ? dc_asprintf("%s@%s/%s", u->name, u->accounts[i].name, cg->name)
                                     : dc_asprintf("%s/%s", u->name, cg->name);
            }
    }
}

void dc_accounts_inherit(dc_accounts_t *a, dc_accounts_t *old)
{
    for (size_t i = 0; i < a->naccounts; i++)
        for (size_t j = 0; j < old->naccounts; j++)
            if (strcmp(a->names[i], old->names[j]) == 0)
                dc_budget_inherit(&a->budgets[i], &old->budgets[j]);
    size_t n = (a->naccounts > 0 ? a->naccounts : 1) * a->ngroups;
    size_t on = (old->naccounts > 0 ? old->naccounts : 1) * old->ngroups;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < on; j++)
            if (strcmp(a->group_names[i], old->group_names[j]) == 0)
                dc_budget_inherit(&a->group_budgets[i], &old->group_budgets[j]);
}

void dc_accounts_dispose(dc_accounts_t *a)
{
    for (size_t i = 0; i < a->naccounts; i++) {
        dc_budget_dispose(&a->budgets[i]);
        free(a->names[i]);
    }
    size_t n = (a->naccounts > 0 ? a->naccounts : 1) * a->ngroups;
    for (size_t i = 0; a->group_budgets != NULL && i < n; i++) {
        dc_budget_dispose(&a->group_budgets[i]);
        free(a->group_names[i]);
    }
    free(a->budgets);
    free(a->names);
    free(a->key_account);
    free(a->group_budgets);
    free(a->group_names);
    memset(a, 0, sizeof(*a));
}

bool dc_accounts_active(const dc_accounts_t *a)
{
    return a->naccounts > 0 || a->ngroups > 0 || (a->cfg != NULL && a->cfg->nweights > 0);
}
