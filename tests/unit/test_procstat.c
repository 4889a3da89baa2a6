/*
 * Unit tests for core/procstat.h: the /proc parsers behind process_* in /metrics (a command name
 * with spaces and parentheses, an unlimited fd limit, truncated text), and a live reading of this
 * process.
 */
#include "cmocka_prelude.h"

#include "core/error.h"
#include "core/procstat.h"

#include <string.h>

static void test_parse_stat(void **state)
{
    (void)state;
    /* fields 14 utime=120, 15 stime=30, 22 starttime=5000, 23 vsize=1048576, 24 rss=256 */
    const char *line = "4242 (dex (cache) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 120 30 0 0 20 0 3 0 5000 "
                       "1048576 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
    uint64_t ut, st, start, vsize, rss;
    assert_int_equal(dc_procstat_parse_stat(line, &ut, &st, &start, &vsize, &rss), 0);
    assert_int_equal(ut, 120);
    assert_int_equal(st, 30);
    assert_int_equal(start, 5000);
    assert_int_equal(vsize, 1048576);
    assert_int_equal(rss, 256);
    assert_int_equal(dc_procstat_parse_stat("4242 (x) S 1 2 3\n", &ut, &st, &start, &vsize, &rss), DC_EINVAL);
    assert_int_equal(dc_procstat_parse_stat("no parenthesis", &ut, &st, &start, &vsize, &rss), DC_EINVAL);
}

static void test_parse_limits_and_btime(void **state)
{
    (void)state;
    uint64_t v;
    const char *limits = "Limit                     Soft Limit           Hard Limit           Units\n"
                         "Max processes             63465                63465                processes\n"
                         "Max open files            20000                524288               files\n";
    assert_int_equal(dc_procstat_parse_max_fds(limits, &v), 0);
    assert_int_equal(v, 20000);
    assert_int_equal(dc_procstat_parse_max_fds("Max open files            unlimited            unlimited files\n", &v),
                     0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(dc_procstat_parse_max_fds("Max processes 10\n", &v), DC_EINVAL);
    assert_int_equal(dc_procstat_parse_btime("cpu  1 2 3\nintr 5 6\nctxt 9\nbtime 1700000000\nprocesses 3\n", &v), 0);
    assert_int_equal(v, 1700000000);
    assert_int_equal(dc_procstat_parse_btime("cpu 1\n", &v), DC_EINVAL);
}

static void test_read_self(void **state)
{
    (void)state;
    dc_procstat_t ps;
    dc_procstat_read(&ps);
    assert_true(ps.has_stat && ps.has_start && ps.has_fds && ps.has_max_fds);
    assert_true(ps.resident_bytes > 0 && ps.virtual_bytes >= ps.resident_bytes);
    assert_true(ps.open_fds >= 3 && ps.open_fds <= ps.max_fds);
    assert_true(ps.start_time_s > 1.5e9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_parse_limits_and_btime),
        cmocka_unit_test(test_read_self),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
