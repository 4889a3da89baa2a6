/*
 * Unit tests for the start-up registrations that keep the module graph one-way (proxy/README.md):
 * metrics sources rendered by core in registration order, route slots the snapshot fills per route
 * and frees with itself, and the stream match that moved from sse/ to config/. Runs under
 * ASan/LeakSanitizer: every config and snapshot is released.
 */
#include "cmocka_prelude.h"

#include "config/config.h"
#include "core/metrics.h"
#include "server/snapshot.h"

#include <stdlib.h>
#include <string.h>

static dc_config_t *load_ok(const char *yaml)
{
    dc_config_t *cfg = NULL;
    char err[DC_CONFIG_ERRLEN];
    int rc = dc_config_load_string("ok.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected config error: %s", err);
    return cfg;
}

static const char *const YAML = "upstreams:\n  jupiter: { url: \"https://api.jup.ag\" }\n"
                                "routes:\n"
                                "  - { prefix: /jup, upstream: jupiter, batch: { path: /price/v3, param: ids } }\n"
                                "  - { prefix: /plain, upstream: jupiter }\n"
                                "streams:\n"
                                "  - { path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3 }\n";

/* ---- metrics sources ---- */

static void render_a(void *ctx, dc_metrics_buf_t *b)
{
    dc_metrics_printf(b, "# TYPE test_a gauge\ntest_a %d\n", *(int *)ctx);
}

static void render_b(void *ctx, dc_metrics_buf_t *b)
{
    dc_metrics_printf(b, "test_b %s\n", (const char *)ctx);
}

static void test_metrics_sources_in_order(void **state)
{
    size_t len;
    char *before = dc_metrics_render(&len);
    assert_int_equal(strlen(before), len);
    /* core knows no module: without registrations none of their families exist */
    assert_null(strstr(before, "dexcache_sse_"));
    assert_null(strstr(before, "dexcache_bus_"));
    assert_null(strstr(before, "dexcache_redis_up"));
    assert_null(strstr(before, "test_a"));
    free(before);

    static int a_value = 7;
    dc_metrics_add_source(render_a, &a_value);
    dc_metrics_add_source(render_b, "hello");
    char *text = dc_metrics_render(&len);
    assert_int_equal(strlen(text), len);
    const char *h2 = strstr(text, "dexcache_h2_deferred_dropped_total ");
    const char *a = strstr(text, "# TYPE test_a gauge\ntest_a 7\n");
    const char *b = strstr(text, "\ntest_b hello\n");
    const char *reloads = strstr(text, "# HELP dexcache_config_reloads_total");
    assert_non_null(h2);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(reloads);
    /* after the per-worker families, in registration order, before the process gauges */
    assert_true(h2 < a && a < b && b < reloads);
    free(text);

    /* a source grows the buffer past its first allocation */
    static char big[40000];
    memset(big, 'x', sizeof(big) - 1);
    dc_metrics_add_source(render_b, big);
    text = dc_metrics_render(&len);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, big));
    assert_non_null(strstr(text, "dexcache_uptime_seconds"));
    free(text);
}

/* ---- route slots ---- */

static unsigned created, destroyed;
static const char *created_for[8];

static void *slot_create(const dc_config_route_t *route)
{
    created_for[created++ % 8] = route->prefix;
    if (!route->batch.enabled)
        return NULL;
    char *state = malloc(32);
    strcpy(state, route->prefix);
    return state;
}

static void slot_destroy(void *state)
{
    assert_non_null(state); /* never called for a route that has no state */
    destroyed++;
    free(state);
}

static void test_route_slots(void **state)
{
    unsigned slot = dc_snapshot_register_route_slot(slot_create, slot_destroy);
    assert_true(slot < DC_ROUTE_SLOTS);
    dc_config_t *cfg = load_ok(YAML);
    dc_snapshot_t *s = dc_snapshot_create(cfg, NULL, 1);
    assert_int_equal(created, 2); /* once per route */
    assert_string_equal(created_for[0], "/jup");
    assert_string_equal(created_for[1], "/plain");
    assert_string_equal(dc_snapshot_route_slot(s, &cfg->routes[0], slot), "/jup");
    assert_null(dc_snapshot_route_slot(s, &cfg->routes[1], slot));

    /* a reload's snapshot gets its own states; each is freed with its snapshot, not before */
    dc_snapshot_t *s2 = dc_snapshot_create(dc_config_ref(cfg), s, 2);
    assert_int_equal(created, 4);
    assert_ptr_not_equal(dc_snapshot_route_slot(s2, &cfg->routes[0], slot),
                         dc_snapshot_route_slot(s, &cfg->routes[0], slot));
    dc_snapshot_ref(s);
    dc_snapshot_release(s);
    assert_int_equal(destroyed, 0);
    dc_snapshot_release(s);
    assert_int_equal(destroyed, 1);
    dc_snapshot_release(s2);
    assert_int_equal(destroyed, 2);
}

/* ---- stream match (config/, so http needs no sse/ include on every request) ---- */

static void test_stream_match_exact(void **state)
{
    dc_config_t *cfg = load_ok(YAML);
    const char *p = "/jup/stream/price";
    assert_ptr_equal(dc_config_stream_match(cfg, p, strlen(p)), &cfg->streams[0]);
    assert_null(dc_config_stream_match(cfg, p, strlen(p) - 1));         /* not a prefix match */
    assert_null(dc_config_stream_match(cfg, "/jup/stream/prices", 18)); /* nor a longer path */
    assert_null(dc_config_stream_match(cfg, "/jup/price/v3", 13));
    dc_config_release(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_sources_in_order),
        cmocka_unit_test(test_route_slots),
        cmocka_unit_test(test_stream_match_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
