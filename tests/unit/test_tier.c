/* Pure parts of upstream/tier.h: the order tiers are tried in, who may fail over, the retry budget. */
#include "cmocka_prelude.h"
#include "upstream/tier.h"

static void test_order_prefers_first_ready(void **state)
{
    (void)state;
    unsigned out[DC_TIERS_MAX];
    dc_tier_view_t v[3] = {{.has_budget = true}, {.has_budget = true}, {.has_budget = true}};
    assert_int_equal(dc_tier_order(v, 3, false, out), 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 2);
    v[0].open = true; /* breaker open: skipped */
    assert_int_equal(dc_tier_order(v, 3, false, out), 2);
    assert_int_equal(out[0], 1);
    v[0].open = false;
    v[1].cordoned = true; /* cordoned: skipped */
    assert_int_equal(dc_tier_order(v, 3, false, out), 2);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 2);
}

static void test_order_budget_then_tried(void **state)
{
    (void)state;
    unsigned out[DC_TIERS_MAX];
    dc_tier_view_t v[3] = {{.has_budget = false}, {.has_budget = true}, {.has_budget = true}};
    /* tier 1 cooling after a 429: tiers with budget first, tier 1 still last resort */
    assert_int_equal(dc_tier_order(v, 3, false, out), 3);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 0);
    /* a failover skips what this round tried */
    v[1].tried = true;
    assert_int_equal(dc_tier_order(v, 3, true, out), 2);
    assert_int_equal(out[0], 2);
    assert_int_equal(out[1], 0);
    /* a new round does not */
    assert_int_equal(dc_tier_order(v, 3, false, out), 3);
    /* nothing left */
    dc_tier_view_t w[2] = {{.tried = true, .has_budget = true}, {.open = true, .has_budget = true}};
    assert_int_equal(dc_tier_order(w, 2, true, out), 0);
}

static void test_may_fail_over(void **state)
{
    (void)state;
    assert_true(dc_tier_may_fail_over(true, DC_TIER_FAIL_STATUS));
    assert_true(dc_tier_may_fail_over(true, DC_TIER_FAIL_TIMEOUT));
    assert_true(dc_tier_may_fail_over(true, DC_TIER_FAIL_VALIDATION));
    assert_true(dc_tier_may_fail_over(false, DC_TIER_FAIL_CONNECT)); /* nothing was sent */
    assert_false(dc_tier_may_fail_over(false, DC_TIER_FAIL_TRANSPORT));
    assert_false(dc_tier_may_fail_over(false, DC_TIER_FAIL_STATUS));
    assert_false(dc_tier_may_fail_over(false, DC_TIER_FAIL_TIMEOUT));
}

static void test_retry_budget_arithmetic(void **state)
{
    (void)state;
    /* Envoy: max(min_retry_concurrency, budget_percent x active) */
    assert_int_equal(dc_retry_budget_cap(0, 20, 3), 3);
    assert_int_equal(dc_retry_budget_cap(10, 20, 3), 3);
    assert_int_equal(dc_retry_budget_cap(20, 20, 3), 4);
    assert_int_equal(dc_retry_budget_cap(1000, 20, 3), 200);
    assert_int_equal(dc_retry_budget_cap(9, 20, 0), 1); /* 1.8 rounds down */
    assert_int_equal(dc_retry_budget_cap(4, 20, 0), 0);
    assert_true(dc_retry_budget_allows(10, 2, 20, 3));
    assert_false(dc_retry_budget_allows(10, 3, 20, 3));
    assert_true(dc_retry_budget_allows(100, 19, 20, 3));
    assert_false(dc_retry_budget_allows(100, 20, 20, 3));
    assert_false(dc_retry_budget_allows(4, 0, 20, 0));
    assert_int_equal(dc_retry_budget_cap(UINT32_MAX, 100, 0), UINT32_MAX); /* no overflow */
}

static void test_retry_budget_slots(void **state)
{
    (void)state;
    dc_retry_budget_t rb;
    dc_retry_budget_init(&rb, 50, 1);
    for (int i = 0; i < 4; i++)
        dc_retry_budget_enter(&rb);
    /* cap = max(1, 50% of 4) = 2 */
    assert_true(dc_retry_budget_acquire(&rb));
    assert_true(dc_retry_budget_acquire(&rb));
    assert_false(dc_retry_budget_acquire(&rb));
    assert_int_equal(atomic_load(&rb.allowed_total), 2);
    assert_int_equal(atomic_load(&rb.denied_total), 1);
    dc_retry_budget_release(&rb);
    assert_true(dc_retry_budget_acquire(&rb));
    for (int i = 0; i < 4; i++)
        dc_retry_budget_leave(&rb);
    assert_int_equal(atomic_load(&rb.active_requests), 0);
    /* no active requests: the floor still allows min_concurrency... but 2 are held */
    assert_false(dc_retry_budget_acquire(&rb));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_prefers_first_ready),
        cmocka_unit_test(test_order_budget_then_tried),
        cmocka_unit_test(test_may_fail_over),
        cmocka_unit_test(test_retry_budget_arithmetic),
        cmocka_unit_test(test_retry_budget_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
