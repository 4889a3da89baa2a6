/* Byte ranges (http/range.h): Range evaluation against a representation length and the
 * Content-Range value. */
#include "cmocka_prelude.h"

#include <string.h>

#include "http/range.h"

static dc_range_result_t ev(const char *s, uint64_t size, uint64_t *f, uint64_t *l)
{
    *f = *l = 12345;
    return dc_range_eval(s, strlen(s), size, f, l);
}

static void test_single(void **state)
{
    uint64_t f, l;
    assert_int_equal(ev("bytes=0-99", 1000, &f, &l), DC_RANGE_SINGLE);
    assert_true(f == 0 && l == 99);
    assert_int_equal(ev("bytes=500-", 1000, &f, &l), DC_RANGE_SINGLE); /* open */
    assert_true(f == 500 && l == 999);
    assert_int_equal(ev("bytes=-100", 1000, &f, &l), DC_RANGE_SINGLE); /* suffix */
    assert_true(f == 900 && l == 999);
    assert_int_equal(ev("bytes=-5000", 1000, &f, &l), DC_RANGE_SINGLE); /* suffix longer than the body */
    assert_true(f == 0 && l == 999);
    assert_int_equal(ev("bytes=990-5000", 1000, &f, &l), DC_RANGE_SINGLE); /* last clamped */
    assert_true(f == 990 && l == 999);
    assert_int_equal(ev("BYTES=7-7", 1000, &f, &l), DC_RANGE_SINGLE); /* unit case-insensitive */
    assert_true(f == 7 && l == 7);
    assert_int_equal(ev("bytes= 1-2 ,", 1000, &f, &l), DC_RANGE_SINGLE); /* OWS, empty elements */
    assert_true(f == 1 && l == 2);
    /* one satisfiable among unsatisfiable ones: that one */
    assert_int_equal(ev("bytes=5000-6000, 10-19", 1000, &f, &l), DC_RANGE_SINGLE);
    assert_true(f == 10 && l == 19);
    assert_int_equal(ev("bytes=999-999999999999999999999999999999", 1000, &f, &l), DC_RANGE_SINGLE);
    assert_true(f == 999 && l == 999);
}

static void test_multi_and_unsatisfiable(void **state)
{
    uint64_t f, l;
    assert_int_equal(ev("bytes=0-1,5-9", 1000, &f, &l), DC_RANGE_MULTI);
    assert_true(f == 12345 && l == 12345); /* untouched */
    assert_int_equal(ev("bytes=0-1,-1", 1000, &f, &l), DC_RANGE_MULTI);
    assert_int_equal(ev("bytes=1000-", 1000, &f, &l), DC_RANGE_UNSATISFIABLE);
    assert_int_equal(ev("bytes=1000-2000", 1000, &f, &l), DC_RANGE_UNSATISFIABLE);
    assert_int_equal(ev("bytes=-0", 1000, &f, &l), DC_RANGE_UNSATISFIABLE);
    assert_int_equal(ev("bytes=99999999999999999999999-", 1000, &f, &l), DC_RANGE_UNSATISFIABLE);
    assert_int_equal(ev("bytes=2000-,3000-3001", 1000, &f, &l), DC_RANGE_UNSATISFIABLE);
    assert_true(f == 12345 && l == 12345);
}

static void test_invalid_ignored(void **state)
{
    uint64_t f, l;
    const char *bad[] = {"",          "bytes",         "bytes=",     "bytes=,",   "bytes=-",   "bytes=5-1",
                         "bytes=a-",  "bytes=1-a",     "bytes=1",    "bytes 0-1", "items=0-1", "bytes=0-1;x",
                         "bytes=--1", "bytes=0-1,9-2", "bytes=1 -2", "bytes=+1-2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ev(bad[i], 1000, &f, &l), DC_RANGE_NONE);
        assert_true(f == 12345 && l == 12345);
    }
    /* a zero-length representation has nothing to slice: the whole (empty) answer */
    assert_int_equal(ev("bytes=0-0", 0, &f, &l), DC_RANGE_NONE);
    assert_int_equal(ev("bytes=-5", 0, &f, &l), DC_RANGE_NONE);
}

static void test_not_nul_terminated(void **state)
{
    uint64_t f = 0, l = 0;
    const char buf[] = {'b', 'y', 't', 'e', 's', '=', '1', '-', '2', '9'}; /* no NUL, length 9 */
    assert_int_equal(dc_range_eval(buf, 9, 100, &f, &l), DC_RANGE_SINGLE);
    assert_true(f == 1 && l == 2);
}

static void test_content_range(void **state)
{
    char buf[DC_RANGE_CONTENT_RANGE_MAX];
    size_t n = dc_range_content_range(buf, 0, 99, 1000);
    assert_int_equal(n, strlen("bytes 0-99/1000"));
    assert_memory_equal(buf, "bytes 0-99/1000", n);
    n = dc_range_content_range(buf, UINT64_MAX, 0, 1000);
    assert_memory_equal(buf, "bytes */1000", n);
    assert_int_equal(n, 12);
    n = dc_range_content_range(buf, UINT64_MAX - 1, UINT64_MAX - 1, UINT64_MAX);
    assert_true(n < DC_RANGE_CONTENT_RANGE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single),          cmocka_unit_test(test_multi_and_unsatisfiable),
        cmocka_unit_test(test_invalid_ignored), cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_content_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
