/* Request cache directives (http/reqcc.h). */
#include "cmocka_prelude.h"

#include <string.h>

#include "http/reqcc.h"

static dc_cc_t cc_of(const char *s)
{
    dc_cc_t cc;
    dc_cc_init(&cc);
    dc_cc_parse(s, strlen(s), &cc);
    return cc;
}

static dc_reqcc_verdict_t j(const char *s, uint64_t age_ms, int64_t left_ms, bool no_stale)
{
    dc_cc_t cc = cc_of(s);
    return dc_reqcc_judge(&cc, false, age_ms, left_ms, no_stale);
}

static void test_has_freshness(void **state)
{
    dc_cc_t cc = cc_of("no-store, only-if-cached");
    assert_false(dc_reqcc_has_freshness(&cc, false));
    assert_true(dc_reqcc_has_freshness(&cc, true));
    const char *yes[] = {"no-cache", "max-age=5", "max-age=0", "min-fresh=1", "max-stale", "max-stale=3"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        cc = cc_of(yes[i]);
        assert_true(dc_reqcc_has_freshness(&cc, false));
    }
}

static void test_judge(void **state)
{
    assert_int_equal(j("", 1000, 5000, false), DC_REQCC_AS_IS);
    assert_int_equal(j("no-cache", 0, 5000, false), DC_REQCC_REVALIDATE);
    dc_cc_t none = cc_of("");
    assert_int_equal(dc_reqcc_judge(&none, true, 0, 5000, false), DC_REQCC_REVALIDATE); /* Pragma */
    assert_int_equal(j("max-age=0", 0, 5000, false), DC_REQCC_REVALIDATE);
    assert_int_equal(j("max-age=5", 5000, 5000, false), DC_REQCC_AS_IS);
    assert_int_equal(j("max-age=5", 5001, 5000, false), DC_REQCC_REVALIDATE);
    assert_int_equal(j("min-fresh=5", 0, 5000, false), DC_REQCC_AS_IS);
    assert_int_equal(j("min-fresh=5", 0, 4999, false), DC_REQCC_REVALIDATE);
    /* stale entries */
    assert_int_equal(j("", 9000, -2000, false), DC_REQCC_AS_IS);
    assert_int_equal(j("max-stale", 9000, -2000000, false), DC_REQCC_STALE_OK);
    assert_int_equal(j("max-stale=2", 9000, -2000, false), DC_REQCC_STALE_OK);
    assert_int_equal(j("max-stale=2", 9000, -2001, false), DC_REQCC_AS_IS);
    assert_int_equal(j("max-stale", 9000, -2000, true), DC_REQCC_AS_IS); /* must-revalidate wins */
    assert_int_equal(j("max-stale, max-age=1", 9000, -2000, false), DC_REQCC_REVALIDATE);
    assert_int_equal(j("max-stale, no-cache", 9000, -2000, false), DC_REQCC_REVALIDATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_has_freshness),
        cmocka_unit_test(test_judge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
