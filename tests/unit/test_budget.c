#include "cmocka_prelude.h"

#include "core/error.h"
#include "upstream/budget.h"

static void test_pacing_and_queue(void **state)
{
    dc_config_rate_t rates[2] = {{5, 1000}, {600, 60000}}; /* 5/s is the tighter: one slot per 200 ms */
    dc_budget_t b;
    dc_budget_init(&b, rates, 2, 3, 1000);
    uint64_t now = 10000000, d;
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
    assert_int_equal(d, 0);
    for (int i = 1; i <= 3; i++) { /* queued at 200, 400, 600 ms */
        assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
        assert_int_equal(d, (uint64_t)i * 207000); /* 200 ms + 3.5% slack (35 ms per 1 s window) */
    }
    assert_int_equal(dc_budget_queued(&b), 3);
    /* the queue is full: refused, told when a slot would be free */
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), DC_EAGAIN);
    assert_int_equal(d, 828000);
    assert_int_equal(b.rejected, 1);
    dc_budget_dequeued(&b);
    dc_budget_dequeued(&b);
    dc_budget_dequeued(&b);
    /* background work never waits */
    assert_int_equal(dc_budget_reserve(&b, now, true, &d), DC_EAGAIN);
    /* the next free slot is at 828 ms (within the 1 s queue timeout), the one after at 1035 ms
     * (beyond it: refused) */
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
    assert_int_equal(d, 828000);
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), DC_EAGAIN);
    assert_int_equal(d, 1035000);
    /* much later the budget is idle again */
    assert_int_equal(dc_budget_reserve(&b, now + 5000000, true, &d), 0);
    assert_int_equal(d, 0);
    dc_budget_dispose(&b);
}

static void test_no_more_than_limit_in_any_window(void **state)
{
    dc_config_rate_t rates[1] = {{20, 1000}};
    dc_budget_t b;
    dc_budget_init(&b, rates, 1, 1000, 60000);
    uint64_t starts[200], now = 1000000, d;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
        starts[i] = now + d;
    }
    for (int i = 0; i < 200; i++) {
        int in_window = 0;
        for (int j = i; j < 200 && starts[j] < starts[i] + 1000000; j++)
            in_window++;
        assert_true(in_window <= 20);
    }
    dc_budget_dispose(&b);
}

static void test_429_cooldown_and_aimd(void **state)
{
    dc_config_rate_t rates[1] = {{10, 1000}};
    dc_budget_t b;
    dc_budget_init(&b, rates, 1, 100, 10000);
    uint64_t now = 1000000, d;
    dc_budget_on_429(&b, now, 2000000);
    assert_true(b.share == 0.5);
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
    assert_int_equal(d, 2000000); /* nobody goes before the cooldown ends */
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
    assert_int_equal(d, 2000000 + 207000); /* and at half the rate: (100 ms + 3.5%) / 0.5 */
    for (int i = 0; i < 1000; i++)
        dc_budget_on_success(&b);
    assert_true(b.share == 1.0);
    dc_budget_on_429(&b, now, 0); /* unknown: 1 s */
    assert_int_equal(b.cooldown_until_us, now + 1000000 > 3000000 ? now + 1000000 : b.cooldown_until_us);
    dc_budget_dispose(&b);
}

/* The slack is 35 ms per window, kept between 2% and 10%. */
static void test_slack_bounds(void **state)
{
    dc_config_rate_t rates[3] = {{10, 100}, {1000, 60000}, {20, 1000}};
    dc_budget_t b;
    dc_budget_init(&b, rates, 3, 1, 1000);
    assert_int_equal(b.win[0].emission_us, 11000); /* 10 ms + 10% (35% capped) */
    assert_int_equal(b.win[1].emission_us, 61200); /* 60 ms + 2% (0.06% raised) */
    assert_int_equal(b.win[2].emission_us, 51750); /* 50 ms + 3.5% */
    /* a request may leave at most the smallest window's slack (less 10 ms for the way to the
     * wire) after its slot: 100 ms x 10% = 10 ms -> the 5 ms floor */
    assert_int_equal(b.late_ok_us, 5000);
    dc_budget_dispose(&b);
    dc_config_rate_t jup[2] = {{20, 1000}, {1100, 60000}};
    dc_budget_init(&b, jup, 2, 1, 1000);
    assert_int_equal(b.late_ok_us, 25000); /* 1 s x 3.5% - 10 ms (60 s x 2% - 10 ms is larger) */
    dc_budget_dispose(&b);
}

static void test_no_rates_no_budget(void **state)
{
    dc_budget_t b;
    dc_budget_init(&b, NULL, 0, 0, 0);
    uint64_t d = 7;
    for (int i = 0; i < 100; i++)
        assert_int_equal(dc_budget_reserve(&b, 5, false, &d), 0);
    assert_int_equal(d, 0);
    dc_budget_dispose(&b);
}

/* A slot taken and given back before anything was sent (a cancelled hedge) is free again; one
 * followed by a later reservation stays spent. */
static void test_unreserve(void **state)
{
    dc_config_rate_t rates[1] = {{5, 1000}};
    dc_budget_t b;
    dc_budget_init(&b, rates, 1, 3, 1000);
    uint64_t now = 10000000, d;
    assert_int_equal(dc_budget_reserve(&b, now, true, &d), 0);
    assert_int_equal(dc_budget_reserve(&b, now, true, &d), DC_EAGAIN); /* no slot now */
    dc_budget_unreserve(&b, now, 1);
    assert_int_equal(dc_budget_reserve(&b, now, true, &d), 0); /* given back: free now */
    assert_int_equal(dc_budget_reserve(&b, now, false, &d), 0);
    assert_int_equal(d, 207000);
    dc_budget_unreserve(&b, now, 1); /* not the last reservation: stays spent */
    assert_int_equal(dc_budget_reserve(&b, now, true, &d), DC_EAGAIN);
    dc_budget_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pacing_and_queue),      cmocka_unit_test(test_no_more_than_limit_in_any_window),
        cmocka_unit_test(test_429_cooldown_and_aimd), cmocka_unit_test(test_slack_bounds),
        cmocka_unit_test(test_no_rates_no_budget),    cmocka_unit_test(test_unreserve)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
