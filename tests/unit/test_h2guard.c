#include "cmocka_prelude.h"

#include "http/h2guard.h"

static const dc_h2guard_limits_t LIM = {.reset_budget = 100, .delay_ms = 100};

/* The rapid-reset pattern: every stream reset before its answer. The budget is spent after 100
 * resets (new upstream work is delayed from then on) and the connection is closed at 200. */
static void test_rapid_reset_delays_then_closes(void **state)
{
    (void)state;
    dc_h2guard_budget_t b;
    dc_h2guard_budget_init(&b, &LIM);
    assert_int_equal(dc_h2guard_budget_delay(&b, &LIM), 0);
    for (int i = 1; i <= 200; i++) {
        dc_h2guard_budget_request(&b);
        dc_h2guard_verdict_t v = dc_h2guard_budget_reset(&b, &LIM);
        if (i < 100) {
            assert_int_equal(v, DC_H2GUARD_OK);
            assert_int_equal(dc_h2guard_budget_delay(&b, &LIM), 0);
        } else if (i < 200) {
            assert_int_equal(v, DC_H2GUARD_DELAY);
            assert_int_equal(dc_h2guard_budget_delay(&b, &LIM), 100);
        } else {
            assert_int_equal(v, DC_H2GUARD_CLOSE);
        }
    }
    assert_int_equal(b.requests, 200);
    assert_int_equal(b.early_resets, 200);
}

/* A client that cancels some of its requests (20 of 200, or even every other one) is never
 * delayed or closed: each answer pays one reset back. */
static void test_legitimate_cancels_never_close(void **state)
{
    (void)state;
    dc_h2guard_budget_t b;
    dc_h2guard_budget_init(&b, &LIM);
    for (int i = 0; i < 200; i++) {
        dc_h2guard_budget_request(&b);
        if (i % 10 == 0)
            assert_int_equal(dc_h2guard_budget_reset(&b, &LIM), DC_H2GUARD_OK);
        else
            dc_h2guard_budget_answered(&b, &LIM);
    }
    assert_int_equal(b.early_resets, 20);
    assert_int_equal(b.balance, 100);
    for (int i = 0; i < 100000; i++) {
        dc_h2guard_budget_request(&b);
        if (i % 2 == 0)
            assert_int_not_equal(dc_h2guard_budget_reset(&b, &LIM), DC_H2GUARD_CLOSE);
        else
            dc_h2guard_budget_answered(&b, &LIM);
    }
    assert_true(b.balance > 0);
    assert_int_equal(dc_h2guard_budget_delay(&b, &LIM), 0);
}

/* Answers cannot be banked beyond the budget: 10,000 answers, then 200 resets still close. */
static void test_credit_is_capped(void **state)
{
    (void)state;
    dc_h2guard_budget_t b;
    dc_h2guard_budget_init(&b, &LIM);
    for (int i = 0; i < 10000; i++) {
        dc_h2guard_budget_request(&b);
        dc_h2guard_budget_answered(&b, &LIM);
    }
    dc_h2guard_verdict_t v = DC_H2GUARD_OK;
    int n = 0;
    while (v != DC_H2GUARD_CLOSE && n < 1000) {
        dc_h2guard_budget_request(&b);
        v = dc_h2guard_budget_reset(&b, &LIM);
        n++;
    }
    assert_int_equal(n, 200);
}

/* A delay of 0 turns the delay off; a budget of 1 closes at the second net reset. */
static void test_small_limits(void **state)
{
    (void)state;
    dc_h2guard_limits_t lim = {.reset_budget = 1, .delay_ms = 0};
    dc_h2guard_budget_t b;
    dc_h2guard_budget_init(&b, &lim);
    assert_int_equal(dc_h2guard_budget_reset(&b, &lim), DC_H2GUARD_DELAY);
    assert_int_equal(dc_h2guard_budget_delay(&b, &lim), 0);
    assert_int_equal(dc_h2guard_budget_reset(&b, &lim), DC_H2GUARD_CLOSE);
}

/* Stalled = blocked at every sample without progress for the timeout. */
static void test_stall(void **state)
{
    (void)state;
    dc_h2guard_stall_t s = {0};
    uint64_t t = 0;
    /* not blocked: never stalled, however long */
    for (; t < 100000; t += 500)
        assert_false(dc_h2guard_stall_sample(&s, false, 7, t, 2000));
    /* blocked without progress: stalled once 2 s have passed since the first blocked sample */
    assert_false(dc_h2guard_stall_sample(&s, true, 7, t, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 7, t + 1000, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 7, t + 1999, 2000));
    assert_true(dc_h2guard_stall_sample(&s, true, 7, t + 2000, 2000));
    /* progress restarts the clock */
    t += 10000;
    assert_false(dc_h2guard_stall_sample(&s, true, 8, t, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 8, t + 1500, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 9, t + 3000, 2000)); /* a slow but moving reader */
    assert_false(dc_h2guard_stall_sample(&s, true, 10, t + 6000, 2000));
    /* an unblocked sample in between restarts it too */
    assert_false(dc_h2guard_stall_sample(&s, false, 10, t + 6500, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 10, t + 7000, 2000));
    assert_false(dc_h2guard_stall_sample(&s, true, 10, t + 8500, 2000));
    assert_true(dc_h2guard_stall_sample(&s, true, 10, t + 9000, 2000));
    /* a first sample at time 0 counts */
    dc_h2guard_stall_t z = {0};
    assert_false(dc_h2guard_stall_sample(&z, true, 0, 0, 1000));
    assert_true(dc_h2guard_stall_sample(&z, true, 0, 1000, 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rapid_reset_delays_then_closes),
        cmocka_unit_test(test_legitimate_cancels_never_close),
        cmocka_unit_test(test_credit_is_capped),
        cmocka_unit_test(test_small_limits),
        cmocka_unit_test(test_stall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
