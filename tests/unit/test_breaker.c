/* The breaker's failure ratio (outlier detection) and what the fleet tells it (upstream_state.h,
 * breaker_fleet.h): pure logic, time injected. */
#include "cmocka_prelude.h"
#include "upstream/breaker_fleet.h"
#include "upstream/upstream_state.h"

#include <string.h>

/* ratio only: consecutive failures never reach 1000 */
static const dc_breaker_params_t RP = {.failures = 1000,
                                       .backoff_ms = 1000,
                                       .max_backoff_ms = 8000,
                                       .probe_timeout_ms = 5000,
                                       .failure_ratio = 0.5,
                                       .window_ms = 10000,
                                       .min_requests = 20};

/* 60% failures (3 of every 5, never 5 in a row) opens it once min_requests attempts are in */
static void test_ratio_opens(void **state)
{
    (void)state;
    dc_upstream_state_t s = {0};
    dc_breaker_opening_t o = {0};
    uint64_t t = 100;
    int opened_at = -1;
    for (int i = 0; i < 40 && opened_at < 0; i++, t += 10) {
        bool fail = i % 5 < 3;
        if (fail ? dc_upstream_state_failure(&s, &RP, t, &o) : dc_upstream_state_success(&s, &RP, t))
            opened_at = i;
    }
    /* attempt 20 (index 20, the 21st... ) first has >= 20 attempts with >= 50% failures: index 19
     * is a success (19 % 5 = 4), so the first failure after 20 attempts, index 20, opens it */
    assert_int_equal(opened_at, 20);
    assert_int_equal(o.pause_ms, 1000);
    assert_int_equal(o.trips, 1);
    assert_string_equal(dc_upstream_state_breaker_name(&s, t), "open");
    assert_string_equal(dc_upstream_state_opened_by_name(&s), "local");
    uint32_t a, f;
    dc_upstream_state_window(&s, &RP, t, &a, &f);
    assert_int_equal(a, 0); /* the window starts over when it opens */
}

/* 40% failures never open it; below min_requests nothing opens it; old attempts leave the window */
static void test_ratio_below_and_window(void **state)
{
    (void)state;
    dc_upstream_state_t s = {0};
    uint64_t t = 0;
    for (int i = 0; i < 1500; i++, t += 10) {
        bool fail = i % 5 < 2;
        if (fail)
            assert_false(dc_upstream_state_failure(&s, &RP, t, NULL));
        else
            assert_false(dc_upstream_state_success(&s, &RP, t));
    }
    uint32_t a, f;
    dc_upstream_state_window(&s, &RP, t, &a, &f);
    assert_true(a >= 900 && a <= 1000); /* 10 s of attempts every 10 ms, by 1 s buckets */
    assert_true(f * 5 >= a * 2 - 5 && f * 5 <= a * 2 + 5);
    /* 19 failures in a row within the window: under min_requests after the window moved on */
    dc_upstream_state_t q = {0};
    for (int i = 0; i < 19; i++)
        assert_false(dc_upstream_state_failure(&q, &RP, 1000 + (uint64_t)i, NULL));
    dc_upstream_state_window(&q, &RP, 1000, &a, &f);
    assert_int_equal(a, 19);
    /* 11 s later the 19 failures are gone: one more failure is 1 attempt, not 20 */
    assert_false(dc_upstream_state_failure(&q, &RP, 12000, NULL));
    dc_upstream_state_window(&q, &RP, 12000, &a, &f);
    assert_int_equal(a, 1);
    assert_int_equal(f, 1);
    /* ratio off: failure_ratio 0 */
    dc_breaker_params_t off = RP;
    off.failure_ratio = 0;
    dc_upstream_state_t z = {0};
    for (int i = 0; i < 100; i++)
        assert_false(dc_upstream_state_failure(&z, &off, 5000, NULL) && i < 999);
    assert_string_equal(dc_upstream_state_breaker_name(&z, 5000), "closed");
}

/* consecutive failures still open it, reporting the opening; a success while open reports the
 * closing; a success while closed reports nothing */
static void test_transitions_reported(void **state)
{
    (void)state;
    dc_breaker_params_t p = RP;
    p.failures = 3;
    dc_upstream_state_t s = {0};
    dc_breaker_opening_t o;
    assert_false(dc_upstream_state_success(&s, &p, 1));
    assert_false(dc_upstream_state_failure(&s, &p, 2, &o));
    assert_false(dc_upstream_state_failure(&s, &p, 3, &o));
    assert_true(dc_upstream_state_failure(&s, &p, 4, &o));
    assert_int_equal(o.trips, 1);
    assert_false(dc_upstream_state_failure(&s, &p, 5, &o)); /* late report while open */
    uint64_t in;
    assert_int_equal(dc_upstream_state_admit(&s, &p, 1004, &in), DC_BREAKER_PROBE);
    assert_true(dc_upstream_state_failure(&s, &p, 1010, &o)); /* the probe fails: 2 s */
    assert_int_equal(o.trips, 2);
    assert_int_equal(o.pause_ms, 2000);
    assert_int_equal(dc_upstream_state_admit(&s, &p, 3010, &in), DC_BREAKER_PROBE);
    assert_true(dc_upstream_state_success(&s, &p, 3020));
    assert_string_equal(dc_upstream_state_opened_by_name(&s), "none");
    assert_false(dc_upstream_state_success(&s, &p, 3030));
}

/* what another instance did: its opening (trips carried over, so the next pause grows), its
 * probe, its closing */
static void test_fleet_apply(void **state)
{
    (void)state;
    dc_breaker_params_t p = RP;
    p.failures = 3;
    dc_upstream_state_t s = {0};
    uint64_t in;
    assert_true(dc_upstream_state_fleet_open(&s, 100, 4000, 3));
    assert_string_equal(dc_upstream_state_opened_by_name(&s), "fleet");
    assert_int_equal(atomic_load(&s.opened_total), 1);
    assert_int_equal(dc_upstream_state_admit(&s, &p, 4099, &in), DC_BREAKER_OPEN);
    assert_int_equal(in, 1);
    /* the same opening heard twice (pub/sub and the sync): nothing changes */
    assert_false(dc_upstream_state_fleet_open(&s, 200, 3900, 3));
    assert_false(dc_upstream_state_fleet_open(&s, 200, 0, 3));
    assert_int_equal(atomic_load(&s.opened_total), 1);
    /* half-open here; the fleet's probe is elsewhere: refused until it reports */
    assert_int_equal(dc_upstream_state_peek(&s, &p, 4100), DC_BREAKER_PROBE);
    dc_upstream_state_probe_elsewhere(&s, 4100);
    assert_int_equal(dc_upstream_state_peek(&s, &p, 4100), DC_BREAKER_OPEN);
    assert_int_equal(dc_upstream_state_admit(&s, &p, 9099, &in), DC_BREAKER_OPEN);
    /* that probe failed there: open again (counted again here) */
    assert_true(dc_upstream_state_fleet_open(&s, 4200, 8000, 4));
    assert_int_equal(atomic_load(&s.opened_total), 2);
    /* our own probe then fails: the 5th opening in a row: capped at max_backoff */
    assert_int_equal(dc_upstream_state_admit(&s, &p, 12200, &in), DC_BREAKER_PROBE);
    dc_breaker_opening_t o;
    assert_true(dc_upstream_state_failure(&s, &p, 12300, &o));
    assert_int_equal(o.trips, 5);
    assert_int_equal(o.pause_ms, 8000);
    assert_string_equal(dc_upstream_state_opened_by_name(&s), "local");
    /* another instance's probe succeeded */
    assert_true(dc_upstream_state_fleet_close(&s));
    assert_false(dc_upstream_state_fleet_close(&s));
    assert_int_equal(dc_upstream_state_admit(&s, &p, 12400, &in), DC_BREAKER_PASS);
    assert_int_equal(atomic_load(&s.trips), 0);
}

static void test_notice_parse(void **state)
{
    (void)state;
    dc_brk_notice_t n;
    const char *m = "jup\t2\topen\t4000\t3";
    assert_true(dc_brk_notice_parse(m, strlen(m), &n));
    assert_int_equal(n.upstream_len, 3);
    assert_memory_equal(n.upstream, "jup", 3);
    assert_int_equal(n.tier, 2);
    assert_int_equal(n.verb, DC_BRK_OPEN);
    assert_int_equal(n.pause_ms, 4000);
    assert_int_equal(n.trips, 3);
    m = "jup\t1\tclose";
    assert_true(dc_brk_notice_parse(m, strlen(m), &n));
    assert_int_equal(n.verb, DC_BRK_CLOSE);
    m = "jup\t1\tcordon";
    assert_true(dc_brk_notice_parse(m, strlen(m), &n));
    assert_int_equal(n.verb, DC_BRK_CORDON);
    m = "jup\t4\tuncordon";
    assert_true(dc_brk_notice_parse(m, strlen(m), &n));
    assert_int_equal(n.verb, DC_BRK_UNCORDON);
    static const char *const bad[] = {"",
                                      "jup",
                                      "\t1\tclose",
                                      "jup\t0\tclose",
                                      "jup\tx\tclose",
                                      "jup\t1\tshut",
                                      "jup\t1\tclose\textra",
                                      "jup\t1\topen",
                                      "jup\t1\topen\t0\t1",
                                      "jup\t1\topen\t100\t0",
                                      "jup\t1\topen\t100",
                                      "jup\t1\topen\t100\t1\t9",
                                      "jup\t1\topen\t-5\t1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(dc_brk_notice_parse(bad[i], strlen(bad[i]), &n));
    uint64_t at, pause;
    uint32_t trips;
    assert_true(dc_brk_value_parse("1700000000000:2000:2", 20, &at, &pause, &trips));
    assert_true(at == 1700000000000ull && pause == 2000 && trips == 2);
    assert_false(dc_brk_value_parse("1:2", 3, &at, &pause, &trips));
    assert_false(dc_brk_value_parse("1:2:0", 5, &at, &pause, &trips));
    assert_false(dc_brk_value_parse("a:2:1", 5, &at, &pause, &trips));
}

/* a notice is applied with the sender's clock: what is left of its pause */
static void test_notice_and_sync_apply(void **state)
{
    (void)state;
    dc_upstream_state_t s = {0};
    dc_brk_notice_t n;
    const char *m = "jup\t1\topen\t4000\t2";
    assert_true(dc_brk_notice_parse(m, strlen(m), &n));
    /* sent at wall 10000, heard at wall 11000 (mono 500): open until mono 3500 */
    assert_true(dc_brk_notice_apply(&s, &n, 10000, 11000, 500));
    assert_int_equal(atomic_load(&s.open_until_ms), 3500);
    /* heard after its pause: nothing */
    dc_upstream_state_t late = {0};
    assert_false(dc_brk_notice_apply(&late, &n, 10000, 14000, 500));
    assert_string_equal(dc_upstream_state_breaker_name(&late, 500), "closed");
    /* sync: the key absent closes a breaker the fleet opened, not one we opened */
    dc_brk_sync_apply(&s, NULL, 0, false, 11000, 600);
    assert_string_equal(dc_upstream_state_breaker_name(&s, 600), "closed");
    dc_breaker_params_t p = RP;
    p.failures = 1;
    assert_true(dc_upstream_state_failure(&s, &p, 700, NULL));
    dc_brk_sync_apply(&s, NULL, 0, false, 11000, 800);
    assert_string_equal(dc_upstream_state_breaker_name(&s, 800), "open");
    /* sync: a key read at connect opens it and cordons it */
    dc_upstream_state_t r = {0};
    dc_brk_sync_apply(&r, "10000:4000:2", 12, true, 12000, 50);
    assert_int_equal(atomic_load(&r.open_until_ms), 2050);
    assert_true(atomic_load(&r.cordoned));
    assert_int_equal(atomic_load(&r.trips), 2);
    dc_brk_sync_apply(&r, "10000:4000:2", 12, false, 12000, 50);
    assert_false(atomic_load(&r.cordoned));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratio_opens),          cmocka_unit_test(test_ratio_below_and_window),
        cmocka_unit_test(test_transitions_reported), cmocka_unit_test(test_fleet_apply),
        cmocka_unit_test(test_notice_parse),         cmocka_unit_test(test_notice_and_sync_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
