#include "cmocka_prelude.h"

#include <string.h>

#include "http/cdn.h"

static void test_full(void **state)
{
    dc_config_cdn_t cdn = {.enabled = true,
                           .max_age_ms = 1000,
                           .s_maxage_ms = 2000,
                           .stale_while_revalidate_ms = 10000,
                           .stale_if_error_ms = 300000,
                           .cdn_cache_control = true};
    const char *tags[] = {"jup", "So111", "EPjF"};
    dc_cdn_headers_t h;
    dc_cdn_headers_build(&cdn, NULL, false, tags, 3, &h);
    assert_string_equal(h.cache_control,
                        "public, max-age=1, s-maxage=2, stale-while-revalidate=10, stale-if-error=300");
    assert_string_equal(h.cdn_cache_control, "max-age=2, stale-while-revalidate=10, stale-if-error=300");
    assert_string_equal(h.surrogate_key, "jup So111 EPjF");
    assert_string_equal(h.cache_tag, "jup,So111,EPjF");
    dc_cdn_headers_dispose(&h);
}

static void test_minimal_and_negative(void **state)
{
    dc_config_cdn_t cdn = {
        .enabled = true, .max_age_ms = 5000, .s_maxage_ms = 60000, .stale_while_revalidate_ms = 10000};
    dc_config_cache_rule_t rule = {.negative_ttl_ms = 3000};
    dc_cdn_headers_t h;
    dc_cdn_headers_build(&cdn, &rule, false, NULL, 0, &h);
    assert_string_equal(h.cache_control, "public, max-age=5, s-maxage=60, stale-while-revalidate=10");
    assert_string_equal(h.cdn_cache_control, "");
    assert_string_equal(h.surrogate_key, "");
    dc_cdn_headers_dispose(&h);
    /* a negative answer is never kept by a CDN longer than negative_ttl, and never served stale */
    dc_cdn_headers_build(&cdn, &rule, true, NULL, 0, &h);
    assert_string_equal(h.cache_control, "public, max-age=3, s-maxage=3");
    dc_cdn_headers_dispose(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_full), cmocka_unit_test(test_minimal_and_negative)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
