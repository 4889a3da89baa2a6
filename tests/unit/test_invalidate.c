/* Invalidation by unsafe methods (http/invalidate.h): which answers invalidate, and how
 * Location / Content-Location resolve against the request. */
#include "cmocka_prelude.h"

#include <string.h>

#include "http/invalidate.h"

static void test_applies(void **state)
{
    const char *unsafe[] = {"POST", "PUT", "DELETE", "PATCH", "PURGE", "FOO"};
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        assert_true(dc_invalidate_applies(unsafe[i], strlen(unsafe[i]), 200));
        assert_true(dc_invalidate_applies(unsafe[i], strlen(unsafe[i]), 303));
        assert_false(dc_invalidate_applies(unsafe[i], strlen(unsafe[i]), 404));
        assert_false(dc_invalidate_applies(unsafe[i], strlen(unsafe[i]), 500));
        assert_false(dc_invalidate_applies(unsafe[i], strlen(unsafe[i]), 100));
    }
    const char *safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        assert_false(dc_invalidate_applies(safe[i], strlen(safe[i]), 200));
}

static const char *res(const char *v, char *out)
{
    const char *host = "api.example:8080", *base = "/v1/orders/new?x=1";
    long n = dc_invalidate_resolve(v, strlen(v), host, strlen(host), base, strlen(base), out, 64);
    return n < 0 ? NULL : out;
}

static void test_resolve(void **state)
{
    char out[64];
    assert_string_equal(res("/v1/orders/5", out), "/v1/orders/5");
    assert_string_equal(res(" /a?b=c#frag ", out), "/a?b=c");
    assert_string_equal(res("5", out), "/v1/orders/5");
    assert_string_equal(res("5?y=2", out), "/v1/orders/5?y=2");
    assert_string_equal(res("http://API.example:8080/z", out), "/z");
    assert_string_equal(res("https://api.example:8080", out), "/");
    assert_null(res("http://other.example/z", out));
    assert_null(res("http://api.example/z", out)); /* another port: another authority */
    assert_null(res("//api.example:8080/z", out));
    assert_null(res("mailto:x@y", out));
    assert_null(res("", out));
    assert_null(res("/a b", out));
    assert_null(res("/0123456789012345678901234567890123456789012345678901234567890123456789", out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_applies),
        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
