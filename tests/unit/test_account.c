#include "cmocka_prelude.h"

#include "core/error.h"
#include "upstream/account.h"
#include "upstream/budget.h"

#include <string.h>

static bool match(const char *pattern, const char *path)
{
    return dc_path_pattern_match(pattern, path, strlen(path));
}

static void test_pattern_match(void **state)
{
    (void)state;
    assert_true(match("/swap/v2/execute", "/swap/v2/execute"));
    assert_false(match("/swap/v2/execute", "/swap/v2/executeX"));
    assert_false(match("/swap/v2/execute", "/swap/v2/exec"));
    assert_true(match("/v1/wallet/*", "/v1/wallet/"));
    assert_true(match("/v1/wallet/*", "/v1/wallet/balance"));
    assert_false(match("/v1/wallet/*", "/v1/wallet"));
    assert_false(match("/v1/wallet/*", "/v1/walletx"));
    assert_true(match("/*", "/anything"));
    /* the path stops at the query */
    const char *rest = "/swap/v2/execute?x=/v1/wallet/";
    assert_int_equal(dc_account_path_len(rest), strlen("/swap/v2/execute"));
    assert_int_equal(dc_account_path_len("/a#f?b"), 2);
    assert_int_equal(dc_account_path_len(""), 0);
}

static void test_group_of(void **state)
{
    (void)state;
    char *exec_paths[] = {"/swap/v2/execute", "/ultra/v1/execute"};
    char *wallet_paths[] = {"/v1/wallet/*"};
    char *all_paths[] = {"/*"};
    dc_config_group_t groups[3] = {
        {.name = "execute", .paths = exec_paths, .npaths = 2},
        {.name = "wallet", .paths = wallet_paths, .npaths = 1},
        {.name = "rest", .paths = all_paths, .npaths = 1},
    };
    assert_int_equal(dc_account_group_of(groups, 3, "/ultra/v1/execute", 17), 0);
    assert_int_equal(dc_account_group_of(groups, 3, "/v1/wallet/x", 12), 1);
    assert_int_equal(dc_account_group_of(groups, 3, "/quote", 6), 2); /* the first that matches */
    assert_int_equal(dc_account_group_of(groups, 2, "/quote", 6), -1);
    assert_int_equal(dc_account_group_of(NULL, 0, "/quote", 6), -1);
}

static void test_weight_of(void **state)
{
    (void)state;
    dc_config_weight_t w[4] = {
        {"/tokens/*", 3},
        {"/tokens/v1/*", 4},
        {"/tokens/v1/all", 5},
        {"/quote", 1},
    };
    assert_int_equal(dc_account_weight_of(w, 4, "/tokens/v1/all", 14), 5); /* exact beats every prefix */
    assert_int_equal(dc_account_weight_of(w, 4, "/tokens/v1/x", 12), 4);   /* the longest prefix */
    assert_int_equal(dc_account_weight_of(w, 4, "/tokens/v2/x", 12), 3);
    assert_int_equal(dc_account_weight_of(w, 4, "/quote", 6), 1);
    assert_int_equal(dc_account_weight_of(w, 4, "/price", 6), 1); /* no entry: 1 */
    assert_int_equal(dc_account_weight_of(NULL, 0, "/price", 6), 1);
    assert_int_equal(dc_account_max_weight(w, 4), 5);
    assert_int_equal(dc_account_max_weight(NULL, 0), 1);
}

static void test_paced_limit(void **state)
{
    (void)state;
    assert_int_equal(dc_budget_paced_limit(20, 1), 20);
    assert_int_equal(dc_budget_paced_limit(20, 0), 20);
    assert_int_equal(dc_budget_paced_limit(20, 2), 19);
    assert_int_equal(dc_budget_paced_limit(600, 5), 596);
    assert_int_equal(dc_budget_paced_limit(5, 5), 1);
    assert_int_equal(dc_budget_paced_limit(3, 9), 1);
}

/* A request of cost c pushes the next slot c emission intervals away. */
static void test_cost_in_gcra(void **state)
{
    (void)state;
    dc_config_rate_t r = {10, 1000}; /* max cost 1: 100 ms x 1.035 slack */
    dc_budget_t b;
    dc_budget_init_cost(&b, &r, 1, 100, 60000, 1);
    uint64_t e = b.win[0].emission_us;
    assert_int_equal(e, 103500);
    dc_budget_t *bs[1] = {&b};
    uint32_t cost3 = 3, cost1 = 1;
    uint64_t now = 1000000, d;
    assert_int_equal(dc_budget_reserve_multi(bs, &cost3, 1, now, false, 1, &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(dc_budget_reserve_multi(bs, &cost1, 1, now, false, 1, &d), 0);
    assert_int_equal(d, 3 * e);
    assert_int_equal(dc_budget_reserve_multi(bs, &cost1, 1, now, false, 1, &d), 0);
    assert_int_equal(d, 4 * e);
    dc_budget_dispose(&b);
    /* max cost 5 paces at 10 - 4 = 6 slots per second */
    dc_budget_init_cost(&b, &r, 1, 100, 60000, 5);
    assert_int_equal(b.win[0].emission_us, 172499); /* 1 s / 6 = 166666 us x 1.035 */
    dc_budget_dispose(&b);
}

/* Drive an account budget (weights 1..3) and a group budget from many callers going at their
 * slots: the weighted count of the account and the count of the group in every sliding window
 * (closed on both ends) stay within their limits, and the account is busy (not idle). */
static void test_multi_sliding_windows(void **state)
{
    (void)state;
    dc_config_rate_t ra = {20, 2000}, rg = {8, 2000};
    dc_budget_t acct, grp;
    dc_budget_init_cost(&acct, &ra, 1, 100000, 3600000, 3);
    dc_budget_init(&grp, &rg, 1, 100000, 3600000);
    enum { N = 3000 };
    static uint64_t t[N];
    static uint32_t w[N];
    static bool in_group[N];
    uint64_t now = 5000000;
    uint32_t seed = 7;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t r = (seed >> 16) % 10;
        w[i] = r < 6 ? 1 : r < 8 ? 2 : 3;
        in_group[i] = (seed >> 8) % 4 == 0;
        dc_budget_t *bs[2] = {&acct, &grp};
        uint32_t costs[2] = {w[i], 1};
        uint64_t d;
        assert_int_equal(dc_budget_reserve_multi(bs, costs, in_group[i] ? 2 : 1, now, false, 1, &d), 0);
        t[i] = now + d;
        now += (seed >> 4) % 50000; /* callers arrive faster than the rate */
    }
    uint64_t win = 2000000;
    uint64_t total_w = 0;
    for (int i = 0; i < N; i++) {
        uint64_t sum = 0, g = 0;
        for (int j = 0; j < N; j++)
            if (t[j] >= t[i] && t[j] <= t[i] + win) {
                sum += w[j];
                g += in_group[j];
            }
        assert_true(sum <= 20);
        assert_true(g <= 8);
        total_w += w[i];
    }
    /* busy: the weighted rate used is at least 80% of 20 per 2 s over the run */
    uint64_t span = t[N - 1] - t[0];
    double used = (double)total_w / ((double)span / (double)win);
    assert_true(used >= 16.0);
    dc_budget_dispose(&acct);
    dc_budget_dispose(&grp);
}

/* A slot is taken in both budgets at once; the group's cooldown delays the account's requests of
 * the group only; the queue is the first budget's. */
static void test_multi_cooldown_and_queue(void **state)
{
    (void)state;
    dc_config_rate_t ra = {100, 1000}, rg = {10, 1000};
    dc_budget_t acct, grp;
    dc_budget_init(&acct, &ra, 1, 1, 5000);
    dc_budget_init(&grp, &rg, 1, 100, 5000);
    dc_budget_t *bs[2] = {&acct, &grp};
    uint32_t costs[2] = {1, 1};
    uint64_t now = 10000000, d;
    dc_budget_on_429(&grp, now, 2000000);
    assert_int_equal(dc_budget_reserve_multi(bs, costs, 2, now, false, 1, &d), 0);
    assert_int_equal(d, 2000000); /* waits for the group's pause; the account holds the queue place */
    assert_int_equal(dc_budget_queued(&acct), 1);
    assert_int_equal(dc_budget_queued(&grp), 0);
    /* a request outside the group is not paused by the group's cooldown, but the account's queue is
     * full and its next slot is after the grouped request's */
    assert_int_equal(dc_budget_reserve_multi(bs, costs, 1, now, false, 1, &d), DC_EAGAIN);
    dc_budget_dequeued(&acct);
    assert_int_equal(dc_budget_reserve_multi(bs, costs, 1, now, false, 1, &d), 0);
    assert_true(d > 2000000); /* after the grouped request's slot in the account */
    /* background never waits */
    assert_int_equal(dc_budget_reserve_multi(bs, costs, 2, now, true, 1, &d), DC_EAGAIN);
    /* the same budget twice is locked once */
    dc_budget_t *twice[2] = {&grp, &grp};
    dc_budget_dequeued(&acct);
    assert_int_equal(dc_budget_reserve_multi(twice, costs, 2, now + 10000000, false, 1, &d), 0);
    dc_budget_dispose(&acct);
    dc_budget_dispose(&grp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_match),
        cmocka_unit_test(test_group_of),
        cmocka_unit_test(test_weight_of),
        cmocka_unit_test(test_paced_limit),
        cmocka_unit_test(test_cost_in_gcra),
        cmocka_unit_test(test_multi_sliding_windows),
        cmocka_unit_test(test_multi_cooldown_and_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
