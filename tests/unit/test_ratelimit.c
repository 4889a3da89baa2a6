#include "cmocka_prelude.h"

#include <string.h>

#include "ratelimit/clientid.h"
#include "ratelimit/gcra.h"
#include "ratelimit/local.h"

static void test_gcra_burst_then_steady(void **state)
{
    dc_gcra_params_t p;
    dc_gcra_params_init(&p, 10, 1000, 5); /* 10/s (T = 100 ms), capacity 5 */
    assert_int_equal(p.emission_us, 100000);
    uint64_t tat = 0, now = 1000000;
    dc_gcra_result_t r;
    for (int i = 0; i < 5; i++) {
        dc_gcra_check(&p, tat, now, &r);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 4 - i);
        tat = r.new_tat_us;
    }
    dc_gcra_check(&p, tat, now, &r);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 100000); /* the next slot is one emission away */
    assert_int_equal(r.reset_us, 500000);
    assert_int_equal(r.new_tat_us, tat); /* a denied request costs nothing */
    /* 100 ms later exactly one more passes */
    dc_gcra_check(&p, tat, now + 100000, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    tat = r.new_tat_us;
    dc_gcra_check(&p, tat, now + 100000, &r);
    assert_false(r.allowed);
    /* after a long idle the bucket is full again */
    dc_gcra_check(&p, tat, now + 10000000, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4);
}

static void test_gcra_default_burst_and_rounding(void **state)
{
    dc_gcra_params_t p;
    dc_gcra_params_init(&p, 3, 1000, 0); /* burst defaults to the limit */
    assert_int_equal(p.burst, 3);
    assert_int_equal(p.emission_us, 333333);
    dc_gcra_result_t r;
    uint64_t tat = 0;
    int allowed = 0;
    for (int i = 0; i < 10; i++) {
        dc_gcra_check(&p, tat, 5000000, &r);
        if (r.allowed) {
            allowed++;
            tat = r.new_tat_us;
        }
    }
    assert_int_equal(allowed, 3);
    /* over one full window at most limit + burst pass */
    allowed = 0;
    for (uint64_t t = 5000000; t < 6000000; t += 1000) {
        dc_gcra_check(&p, tat, t, &r);
        if (r.allowed) {
            allowed++;
            tat = r.new_tat_us;
        }
    }
    assert_true(allowed <= 3 && allowed >= 2);
}

static void test_cidr(void **state)
{
    dc_cidr_t c[3];
    assert_int_equal(dc_cidr_parse("10.0.0.0/8", &c[0]), 0);
    assert_int_equal(dc_cidr_parse("::1", &c[1]), 0);
    assert_int_equal(dc_cidr_parse("192.168.1.128/25", &c[2]), 0);
    assert_int_not_equal(dc_cidr_parse("10.0.0.0/33", &c[0]), 0);
    assert_int_not_equal(dc_cidr_parse("nope", &c[0]), 0);
    assert_int_equal(dc_cidr_parse("10.0.0.0/8", &c[0]), 0);
    assert_true(dc_cidr_match_any(c, 3, "10.2.3.4", 8));
    assert_false(dc_cidr_match_any(c, 3, "11.2.3.4", 8));
    assert_true(dc_cidr_match_any(c, 3, "::1", 3));
    assert_true(dc_cidr_match_any(c, 3, "192.168.1.200", 13));
    assert_false(dc_cidr_match_any(c, 3, "192.168.1.100", 13));
}

static void test_client_id_realip(void **state)
{
    dc_cidr_t t[2];
    dc_cidr_parse("127.0.0.1", &t[0]);
    dc_cidr_parse("10.0.0.0/8", &t[1]);
    char out[64];
    const char *xff = "203.0.113.7, 198.51.100.2, 10.1.1.1";
    /* untrusted peer: its own address, whatever it claims */
    dc_client_id("192.0.2.9", xff, strlen(xff), NULL, 0, t, 2, out, sizeof(out));
    assert_string_equal(out, "192.0.2.9");
    /* trusted peer: the last untrusted address from the right */
    dc_client_id("127.0.0.1", xff, strlen(xff), NULL, 0, t, 2, out, sizeof(out));
    assert_string_equal(out, "198.51.100.2");
    /* Cloudflare's header wins from a trusted peer */
    dc_client_id("127.0.0.1", xff, strlen(xff), " 2001:db8::5 ", 13, t, 2, out, sizeof(out));
    assert_string_equal(out, "2001:db8::5");
    /* all trusted: the leftmost */
    dc_client_id("127.0.0.1", "10.0.0.1, 10.0.0.2", 18, NULL, 0, t, 2, out, sizeof(out));
    assert_string_equal(out, "10.0.0.1");
    dc_client_id("127.0.0.1", NULL, 0, NULL, 0, t, 2, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
}

static void test_local_limiter(void **state)
{
    dc_limiter_t *l = dc_limiter_create();
    dc_gcra_params_t p;
    dc_gcra_params_init(&p, 2, 1000, 2);
    dc_gcra_result_t r;
    dc_limiter_check(l, "a", 1, &p, 1000000, &r);
    assert_true(r.allowed);
    dc_limiter_check(l, "a", 1, &p, 1000000, &r);
    assert_true(r.allowed);
    dc_limiter_check(l, "a", 1, &p, 1000000, &r);
    assert_false(r.allowed);
    dc_limiter_check(l, "b", 1, &p, 1000000, &r); /* another client has its own bucket */
    assert_true(r.allowed);
    assert_int_equal(dc_limiter_size(l), 2);
    dc_limiter_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_burst_then_steady),
        cmocka_unit_test(test_gcra_default_burst_and_rounding),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_client_id_realip),
        cmocka_unit_test(test_local_limiter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
