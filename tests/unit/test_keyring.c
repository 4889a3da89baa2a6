#include "cmocka_prelude.h"

#include "upstream/keyring.h"

#include <string.h>
#include "upstream/upstream_state.h"

static char *keys3[] = {"k0", "k1", "k2"};

static void test_round_robin(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[dc_keyring_pick(&kr, 1000)]++;
    assert_int_equal(seen[0], 10);
    assert_int_equal(seen[1], 10);
    assert_int_equal(seen[2], 10);
    dc_keyring_dispose(&kr);
}

static void test_quarantine(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    assert_int_equal(dc_keyring_quarantine(&kr, 1, 1000), 1);
    assert_int_equal(dc_keyring_quarantine(&kr, 1, 1001), 0); /* already set aside */
    assert_int_equal(dc_keyring_usable(&kr, 1000), 2);
    for (int i = 0; i < 20; i++)
        assert_int_not_equal(dc_keyring_pick(&kr, 2000), 1);
    /* the second report extended the quarantine to 1001 + 60000 */
    assert_int_equal(dc_keyring_usable(&kr, 61000), 2);
    assert_int_equal(dc_keyring_usable(&kr, 61001), 3);
    int seen1 = 0;
    for (int i = 0; i < 9; i++)
        seen1 += dc_keyring_pick(&kr, 61001) == 1;
    assert_int_equal(seen1, 3);
    dc_keyring_dispose(&kr);
}

/* Ids are stable, distinct, hex, and never the key; a quarantine reported by another instance
 * only ever extends the local one. */
static void test_ids_and_remote_quarantine(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    assert_int_equal(strlen(kr.ids[1]), DC_KEYRING_ID_LEN);
    assert_int_equal(dc_keyring_find_id(&kr, kr.ids[1], DC_KEYRING_ID_LEN), 1);
    assert_int_equal(dc_keyring_find_id(&kr, "0000000000000000", 16), -1);
    assert_int_equal(dc_keyring_find_id(&kr, kr.ids[1], 15), -1);
    assert_string_not_equal(kr.ids[0], kr.ids[1]);
    for (const char *p = kr.ids[2]; *p; p++)
        assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));

    assert_int_equal(dc_keyring_quarantine_until(&kr, 1, 1000, 5000), 1);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 1, 1000, 3000), 0); /* shorter: kept at 5000 */
    assert_int_equal(dc_keyring_usable(&kr, 4999), 2);
    assert_int_equal(dc_keyring_usable(&kr, 5000), 3);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 0, 1000, 900), 0); /* already over */
    assert_int_equal(dc_keyring_usable(&kr, 1000), 2);
    assert_int_equal(dc_keyring_quarantine_until(&kr, 7, 1000, 9000), 0);
    dc_keyring_dispose(&kr);
}

static void test_all_quarantined(void **state)
{
    dc_keyring_t kr;
    dc_keyring_init(&kr, keys3, 3, 60000);
    dc_keyring_quarantine(&kr, 0, 1000);
    dc_keyring_quarantine(&kr, 1, 500); /* ends first: 60500 */
    dc_keyring_quarantine(&kr, 2, 2000);
    assert_int_equal(dc_keyring_usable(&kr, 3000), 0);
    assert_int_equal(dc_keyring_pick(&kr, 3000), 1);
    dc_keyring_dispose(&kr);
}

static void test_no_keys_and_inherit(void **state)
{
    dc_keyring_t kr, old;
    dc_keyring_init(&kr, NULL, 0, 1000);
    assert_int_equal(dc_keyring_pick(&kr, 5), -1);
    dc_keyring_dispose(&kr);
    char *oldkeys[] = {"k2", "kx"};
    dc_keyring_init(&old, oldkeys, 2, 60000);
    dc_keyring_quarantine(&old, 0, 1000);
    dc_keyring_init(&kr, keys3, 3, 60000);
    dc_keyring_inherit(&kr, &old);
    assert_int_equal(dc_keyring_usable(&kr, 2000), 2);
    assert_int_equal(dc_keyring_usable(&kr, 61000), 3);
    dc_keyring_dispose(&kr);
    dc_keyring_dispose(&old);
}

static const dc_breaker_params_t BP = {
    .failures = 3, .backoff_ms = 1000, .max_backoff_ms = 8000, .probe_timeout_ms = 5000};

/* Recent latencies for hedging: p95 by bucket, nothing below min_samples, a generation older than
 * the previous one forgotten. */
static void test_latency_window(void **state)
{
    static dc_latwin_t w; /* zeroed */
    uint64_t now = 1000000;
    for (int i = 0; i < 95; i++)
        dc_latwin_record(&w, now, 5000);                            /* 5 ms */
    assert_int_equal(dc_latwin_percentile_us(&w, now, 95, 100), 0); /* 95 < 100 samples */
    for (int i = 0; i < 5; i++)
        dc_latwin_record(&w, now, 800000); /* 800 ms */
    uint64_t p95 = dc_latwin_percentile_us(&w, now, 95, 20);
    assert_true(p95 >= 5000 && p95 < 5000 * 5 / 4 + 1);
    uint64_t p99 = dc_latwin_percentile_us(&w, now, 99, 20);
    assert_true(p99 >= 800000 && p99 < 800000 * 5 / 4 + 1);
    /* the next generation still sees them; two generations on, they are gone */
    assert_int_equal(dc_latwin_percentile_us(&w, now + DC_LATWIN_GEN_MS, 95, 20), p95);
    assert_int_equal(dc_latwin_percentile_us(&w, now + 2 * DC_LATWIN_GEN_MS + 1, 95, 1), 0);
    dc_latwin_record(&w, now + 2 * DC_LATWIN_GEN_MS, 2000); /* reuses (zeroes) the old half */
    assert_int_equal(dc_latwin_percentile_us(&w, now + 2 * DC_LATWIN_GEN_MS, 50, 1), dc_latwin_bound_us(4));
    assert_true(dc_latwin_bound_us(DC_LATWIN_BUCKETS - 1) == UINT64_MAX);
}

static void test_upstream_state(void **state)
{
    dc_upstream_state_t s = {0};
    assert_string_equal(dc_upstream_state_name(&s, 0), "unknown");
    dc_upstream_state_success(&s, &BP, 10);
    assert_string_equal(dc_upstream_state_name(&s, 10), "up");
    dc_upstream_state_failure(&s, &BP, 11, NULL);
    dc_upstream_state_failure(&s, &BP, 12, NULL);
    assert_string_equal(dc_upstream_state_name(&s, 12), "up");
    dc_upstream_state_failure(&s, &BP, 13, NULL);
    assert_string_equal(dc_upstream_state_name(&s, 13), "down");
    dc_upstream_state_success(&s, &BP, 14);
    assert_string_equal(dc_upstream_state_name(&s, 14), "up");
}

static void test_breaker_backoff(void **state)
{
    assert_int_equal(dc_breaker_backoff_ms(&BP, 1), 1000);
    assert_int_equal(dc_breaker_backoff_ms(&BP, 2), 2000);
    assert_int_equal(dc_breaker_backoff_ms(&BP, 4), 8000);
    assert_int_equal(dc_breaker_backoff_ms(&BP, 50), 8000); /* capped, no overflow */
    dc_breaker_params_t odd = {.failures = 1, .backoff_ms = 3000, .max_backoff_ms = 1000};
    assert_int_equal(dc_breaker_backoff_ms(&odd, 3), 3000); /* max below the first pause: the first pause */
}

/* closed -> open at the threshold -> half-open: one probe -> failure reopens twice as long ->
 * probe succeeds -> closed, the pause starts over */
static void test_breaker_cycle(void **state)
{
    dc_upstream_state_t s = {0};
    uint64_t in = 0;
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 100, &in), DC_BREAKER_PASS);
    dc_upstream_state_failure(&s, &BP, 100, NULL);
    dc_upstream_state_failure(&s, &BP, 110, NULL);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 120, &in), DC_BREAKER_PASS);
    assert_string_equal(dc_upstream_state_breaker_name(&s, 120), "closed");
    dc_upstream_state_failure(&s, &BP, 120, NULL); /* third: opens for 1 s */
    assert_string_equal(dc_upstream_state_breaker_name(&s, 121), "open");
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 121, &in), DC_BREAKER_OPEN);
    assert_int_equal(in, 999);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1119, &in), DC_BREAKER_OPEN);
    /* an attempt sent before it opened reports late: no longer pause */
    dc_upstream_state_failure(&s, &BP, 500, NULL);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1119, &in), DC_BREAKER_OPEN);
    assert_int_equal(in, 1);
    /* half-open: exactly one probe */
    assert_string_equal(dc_upstream_state_breaker_name(&s, 1120), "half-open");
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1120, &in), DC_BREAKER_PROBE);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1121, &in), DC_BREAKER_OPEN);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1200, &in), DC_BREAKER_OPEN);
    /* the probe fails: open for 2 s */
    dc_upstream_state_failure(&s, &BP, 1300, NULL);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 3299, &in), DC_BREAKER_OPEN);
    assert_int_equal(in, 1);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 3300, &in), DC_BREAKER_PROBE);
    dc_upstream_state_failure(&s, &BP, 3400, NULL); /* 4 s */
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 7399, &in), DC_BREAKER_OPEN);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 7400, &in), DC_BREAKER_PROBE);
    dc_upstream_state_success(&s, &BP, 7450);
    assert_string_equal(dc_upstream_state_breaker_name(&s, 7450), "closed");
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 7451, &in), DC_BREAKER_PASS);
    assert_int_equal(atomic_load(&s.opened_total), 3);
    assert_true(atomic_load(&s.refused_total) >= 6);
    /* after a success the next opening pauses 1 s again */
    for (int i = 0; i < 3; i++)
        dc_upstream_state_failure(&s, &BP, 8000, NULL);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 8999, &in), DC_BREAKER_OPEN);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 9000, &in), DC_BREAKER_PROBE);
}

/* a probe whose fetch never reports (abandoned) is replaced after probe_timeout */
static void test_breaker_lost_probe(void **state)
{
    dc_upstream_state_t s = {0};
    uint64_t in = 0;
    for (int i = 0; i < 3; i++)
        dc_upstream_state_failure(&s, &BP, 0, NULL);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 1000, &in), DC_BREAKER_PROBE);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 5999, &in), DC_BREAKER_OPEN);
    assert_int_equal(dc_upstream_state_admit(&s, &BP, 6000, &in), DC_BREAKER_PROBE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_quarantine),
        cmocka_unit_test(test_all_quarantined),
        cmocka_unit_test(test_no_keys_and_inherit),
        cmocka_unit_test(test_upstream_state),
        cmocka_unit_test(test_latency_window),
        cmocka_unit_test(test_ids_and_remote_quarantine),
        cmocka_unit_test(test_breaker_backoff),
        cmocka_unit_test(test_breaker_cycle),
        cmocka_unit_test(test_breaker_lost_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
