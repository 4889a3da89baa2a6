/* CORS, the pure parts: origin patterns (config/cors.c) and the decision (http/cors.c). */
#include "cmocka_prelude.h"

#include "config/config.h"
#include "http/cors.h"

#include <string.h>

static bool norm(const char *in, const char *want)
{
    char buf[256];
    const char *why;
    snprintf(buf, sizeof(buf), "%s", in);
    if (dc_config_cors_origin_normalise(buf, &why) != 0)
        return want == NULL;
    return want != NULL && strcmp(buf, want) == 0;
}

static void test_origin_syntax(void **state)
{
    (void)state;
    assert_true(norm("*", "*"));
    assert_true(norm("HTTPS://App.Example", "https://app.example"));
    assert_true(norm("https://app.example:443", "https://app.example"));
    assert_true(norm("http://app.example:80", "http://app.example"));
    assert_true(norm("http://127.0.0.1:3000", "http://127.0.0.1:3000"));
    assert_true(norm("http://[::1]:8080", "http://[::1]:8080"));
    assert_true(norm("https://*.example.org", "https://*.example.org"));
    assert_true(norm("https://*.example.org:8443", "https://*.example.org:8443"));
    assert_true(norm("null", NULL));
    assert_true(norm("https://app.example/", NULL));
    assert_true(norm("https://app.example/x", NULL));
    assert_true(norm("ftp://app.example", NULL));
    assert_true(norm("app.example", NULL));
    assert_true(norm("https://*.org", NULL));
    assert_true(norm("https://a.*.org", NULL));
    assert_true(norm("https://app.example:0", NULL));
    assert_true(norm("https://app.example:65536", NULL));
    assert_true(norm("https://app..example", NULL));
    assert_true(norm("https://", NULL));
}

static void test_decide(void **state)
{
    (void)state;
    char *origins[] = {"https://app.example", "https://*.example.org"};
    dc_config_cors_t p = {.enabled = true, .allow_origins = origins, .nallow_origins = 2, .credentials = true};
    dc_cors_answer_t a;
#define DECIDE(o) dc_cors_decide(&p, (o), strlen(o), &a)
    DECIDE("https://app.example");
    assert_true(a.allowed && a.vary_origin && a.credentials);
    assert_int_equal(a.allow_origin_len, 19);
    assert_memory_equal(a.allow_origin, "https://app.example", 19);
    const char *yes[] = {"https://a.example.org", "https://a-b.c.example.org"};
    for (size_t i = 0; i < 2; i++) {
        DECIDE(yes[i]);
        assert_true(a.allowed);
    }
    const char *no[] = {"https://example.org",
                        "https://.example.org",
                        "https://evilexample.org",
                        "http://a.example.org",
                        "https://a.example.org:8443",
                        "https://a.example.org.evil",
                        "https://app.example.evil",
                        "null",
                        "",
                        "https://a_b.example.org",
                        "https://app.exampl"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        DECIDE(no[i]);
        assert_false(a.allowed);
        assert_true(a.vary_origin); /* the answer depends on Origin all the same */
    }
    dc_cors_decide(&p, NULL, 0, &a);
    assert_false(a.allowed);
    char *any[] = {"*"};
    dc_config_cors_t star = {.enabled = true, .allow_origins = any, .nallow_origins = 1, .any_origin = true};
    dc_cors_decide(&star, "null", 4, &a);
    assert_true(a.allowed && !a.vary_origin && !a.credentials);
    assert_int_equal(a.allow_origin_len, 1);
    /* `*` also without an Origin: one answer for every request, safe for a cache in front */
    dc_cors_decide(&star, NULL, 0, &a);
    assert_true(a.allowed && !a.vary_origin);
    assert_memory_equal(a.allow_origin, "*", 1);
    assert_true(dc_cors_is_cors_header("Access-Control-Allow-Origin", 27));
    assert_true(dc_cors_is_cors_header("access-control-max-age", 22));
    assert_false(dc_cors_is_cors_header("access-control", 14));
    assert_false(dc_cors_is_cors_header("vary", 4));
}

static void test_config_values(void **state)
{
    (void)state;
    static const char text[] = "cors: { allow_origins: [\"https://a.example\"], max_age: 90s, credentials: true }\n"
                               "upstreams: { u: { url: \"http://127.0.0.1:1\" } }\n"
                               "routes:\n"
                               "  - { prefix: /a, upstream: u }\n"
                               "  - { prefix: /b, upstream: u, cors: { allow_origins: [\"*\"], allow_methods: [GET, "
                               "PUT], expose_headers: [] } }\n";
    dc_config_t *cfg;
    char err[DC_CONFIG_ERRLEN];
    assert_int_equal(dc_config_load_string("c.yaml", text, strlen(text), &cfg, err, sizeof(err)), 0);
    const dc_config_cors_t *a = dc_config_cors_for(cfg, &cfg->routes[0]);
    const dc_config_cors_t *b = dc_config_cors_for(cfg, &cfg->routes[1]);
    assert_ptr_equal(a, &cfg->cors);
    assert_string_equal(a->methods_value, "GET, HEAD, POST");
    assert_string_equal(a->expose_value,
                        "X-Cache, Cache-Status, Age, X-Request-Id, RateLimit-Policy, RateLimit, Retry-After");
    assert_string_equal(a->max_age_value, "90");
    assert_true(a->credentials && !a->any_origin);
    assert_true(b->any_origin && !b->credentials);
    assert_string_equal(b->methods_value, "GET, PUT");
    assert_string_equal(b->expose_value, "");
    assert_string_equal(b->max_age_value, "600");
    assert_ptr_equal(dc_config_cors_for(cfg, NULL), &cfg->cors);
    dc_config_release(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin_syntax),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_config_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
