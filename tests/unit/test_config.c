/*
 * Unit tests for proxy/config/: value parsers, a full config with every key, defaults, route and
 * cache-rule matching, refcounting, and bad configs each checked against the exact one-line error
 * an operator would see. Also checks that conf/REFERENCE.md matches the directive tables
 * (DC_UPDATE_REFERENCE=1 rewrites it). Runs under ASan/LeakSanitizer: every load is released.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/directive.h"
#include "config/values.h"
#include "core/error.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static dc_config_t *load_ok(const char *yaml)
{
    dc_config_t *cfg = NULL;
    char err[DC_CONFIG_ERRLEN];
    int rc = dc_config_load_string("ok.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("unexpected config error: %s", err);
    assert_non_null(cfg);
    return cfg;
}

static void expect_error(const char *yaml, const char *expected)
{
    dc_config_t *cfg = (dc_config_t *)1;
    char err[DC_CONFIG_ERRLEN];
    int rc = dc_config_load_string("bad.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));
    assert_int_equal(rc, DC_ECONFIG);
    assert_null(cfg);
    assert_string_equal(err, expected);
}

/* Smallest valid config, to which the bad cases add one mistake. */
#define UPSTREAM_OK "upstreams:\n  jupiter: { url: \"https://api.jup.ag\" }\n"
#define ROUTE_OK "routes:\n  - { prefix: /jup, upstream: jupiter }\n"

/* ---- value parsers ---------------------------------------------------------------------------- */

static void test_parse_duration(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"500ms", 0, 500},
        {"2s", 0, 2000},
        {"5m", 0, 300000},
        {"1h", 0, 3600000},
        {"1d", 0, 86400000},
        {"1.5s", 0, 1500},
        {"3", 0, 3000},
        {"0", 0, 0},
        {"0.25", 0, 250},
        {"2.5m", 0, 150000},
        {"0ms", 0, 0},
        {"1.5ms", DC_EINVAL, 0},
        {"", DC_EINVAL, 0},
        {"s", DC_EINVAL, 0},
        {"-1s", DC_EINVAL, 0},
        {"2 s", DC_EINVAL, 0},
        {"2S", DC_EINVAL, 0},
        {"1.s", DC_EINVAL, 0},
        {".5s", DC_EINVAL, 0},
        {"2sec", DC_EINVAL, 0},
        {"soon", DC_EINVAL, 0},
        {"99999999999999999999d", DC_ERANGE, 0},
        {"213503982335d", DC_ERANGE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        int rc = dc_config_parse_duration_ms(cases[i].in, &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].ms))
            fail_msg("duration '%s': rc %d value %llu, want rc %d value %llu", cases[i].in, rc, (unsigned long long)v,
                     cases[i].rc, (unsigned long long)cases[i].ms);
    }
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"64KiB", 0, 65536},
        {"256MiB", 0, 268435456},
        {"1GiB", 0, 1073741824},
        {"10KB", 0, 10000},
        {"10kB", 0, 10000},
        {"10k", 0, 10240},
        {"10K", 0, 10240},
        {"123", 0, 123},
        {"123B", 0, 123},
        {"2M", 0, 2097152},
        {"1MB", 0, 1000000},
        {"1.5KiB", 0, 1536},
        {"1TiB", 0, 1099511627776ull},
        {"0.1B", DC_EINVAL, 0},
        {"10kb", DC_EINVAL, 0},
        {"10 KiB", DC_EINVAL, 0},
        {"", DC_EINVAL, 0},
        {"KiB", DC_EINVAL, 0},
        {"-1", DC_EINVAL, 0},
        {"lots", DC_EINVAL, 0},
        {"16777216TiB", DC_ERANGE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        int rc = dc_config_parse_size(cases[i].in, &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].bytes))
            fail_msg("size '%s': rc %d value %llu, want rc %d value %llu", cases[i].in, rc, (unsigned long long)v,
                     cases[i].rc, (unsigned long long)cases[i].bytes);
    }
}

static void test_parse_rate(void **state)
{
    static const struct {
        const char *in;
        int rc;
        uint32_t limit;
        uint64_t window;
    } cases[] = {
        {"45/1s", 0, 45, 1000},
        {"2700/60s", 0, 2700, 60000},
        {"10/s", 0, 10, 1000},
        {"600/m", 0, 600, 60000},
        {"5/h", 0, 5, 3600000},
        {"3/500ms", 0, 3, 500},
        {"7/2", 0, 7, 2000},
        {"1/1.5s", 0, 1, 1500},
        {"0/1s", DC_ERANGE, 0, 0},
        {"5/0s", DC_ERANGE, 0, 0},
        {"4294967296/s", DC_ERANGE, 0, 0},
        {"45", DC_EINVAL, 0, 0},
        {"/1s", DC_EINVAL, 0, 0},
        {"45/", DC_EINVAL, 0, 0},
        {"45/x", DC_EINVAL, 0, 0},
        {"-1/s", DC_EINVAL, 0, 0},
        {"lots", DC_EINVAL, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dc_config_rate_t r = {0, 0};
        int rc = dc_config_parse_rate(cases[i].in, &r);
        if (rc != cases[i].rc || (rc == 0 && (r.limit != cases[i].limit || r.window_ms != cases[i].window)))
            fail_msg("rate '%s': rc %d %u/%llums, want rc %d %u/%llums", cases[i].in, rc, r.limit,
                     (unsigned long long)r.window_ms, cases[i].rc, cases[i].limit, (unsigned long long)cases[i].window);
    }
}

static void test_parse_listen(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *host;
        uint16_t port;
        bool ipv6;
    } cases[] = {
        {"127.0.0.1:8080", 0, "127.0.0.1", 8080, false},
        {"0.0.0.0:80", 0, "0.0.0.0", 80, false},
        {":8080", 0, "0.0.0.0", 8080, false},
        {"[::1]:8080", 0, "::1", 8080, true},
        {"[::]:443", 0, "::", 443, true},
        {"[2001:db8::7]:65535", 0, "2001:db8::7", 65535, true},
        {"::1:8080", DC_EINVAL, NULL, 0, false},
        {"[::1]8080", DC_EINVAL, NULL, 0, false},
        {"[::1:8080", DC_EINVAL, NULL, 0, false},
        {"[]:8080", DC_EINVAL, NULL, 0, false},
        {"[127.0.0.1]:8080", DC_EINVAL, NULL, 0, false},
        {"localhost:8080", DC_EINVAL, NULL, 0, false},
        {"127.0.0.1", DC_EINVAL, NULL, 0, false},
        {"127.0.0.1:", DC_EINVAL, NULL, 0, false},
        {"127.0.0.1:http", DC_EINVAL, NULL, 0, false},
        {"127.0.0.1:0", DC_ERANGE, NULL, 0, false},
        {"127.0.0.1:65536", DC_ERANGE, NULL, 0, false},
        {"256.0.0.1:80", DC_EINVAL, NULL, 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dc_config_listen_t l = {0};
        int rc = dc_config_parse_listen(cases[i].in, &l);
        if (rc != cases[i].rc)
            fail_msg("listen '%s': rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(l.host, cases[i].host);
            assert_int_equal(l.port, cases[i].port);
            assert_int_equal(l.ipv6, cases[i].ipv6);
        } else {
            assert_null(l.host); /* nothing allocated on failure */
        }
        free(l.host);
    }
}

static void test_expand_env(void **state)
{
    setenv("DC_T_SET", "value", 1);
    setenv("DC_T_EMPTY", "", 1);
    unsetenv("DC_T_UNSET");
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"plain", "plain"},
        {"${DC_T_SET}", "value"},
        {"a-${DC_T_SET}-b", "a-value-b"},
        {"${DC_T_UNSET}", ""},
        {"${DC_T_UNSET:-fallback}", "fallback"},
        {"${DC_T_EMPTY:-fallback}", "fallback"},
        {"${DC_T_SET:-fallback}", "value"},
        {"${DC_T_UNSET:-}", ""},
        {"${DC_T_SET}${DC_T_SET}", "valuevalue"},
        {"cost $5 or $$", "cost $5 or $$"},
        {"$${DC_T_SET}", "${DC_T_SET}"},
        {"${DC_T_UNSET:-a:b/c}", "a:b/c"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char *out = NULL;
        size_t bad = 0;
        assert_int_equal(dc__config_expand_env(ok[i].in, &out, &bad, NULL, NULL), 0);
        assert_string_equal(out, ok[i].out);
        free(out);
    }
    static const struct {
        const char *in;
        size_t off;
    } bad[] = {{"${", 0}, {"x${DC_T_SET", 1}, {"${1X}", 0}, {"${}", 0}, {"ok ${A B}", 3}, {"${A:-never closed", 0}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = NULL;
        size_t off = 99;
        assert_int_equal(dc__config_expand_env(bad[i].in, &out, &off, NULL, NULL), DC_EINVAL);
        assert_null(out);
        assert_int_equal(off, bad[i].off);
    }
    unsetenv("DC_T_SET");
    unsetenv("DC_T_EMPTY");
}

static void test_parse_cidr_and_bool(void **state)
{
    char *n = NULL;
    assert_int_equal(dc__config_parse_cidr("10.0.0.0/8", &n), 0);
    assert_string_equal(n, "10.0.0.0/8");
    free(n);
    assert_int_equal(dc__config_parse_cidr("192.168.1.7", &n), 0);
    assert_string_equal(n, "192.168.1.7/32");
    free(n);
    assert_int_equal(dc__config_parse_cidr("2001:db8::/32", &n), 0);
    assert_string_equal(n, "2001:db8::/32");
    free(n);
    assert_int_equal(dc__config_parse_cidr("::1", &n), 0);
    assert_string_equal(n, "::1/128");
    free(n);
    n = NULL;
    assert_int_equal(dc__config_parse_cidr("10.0.0.0/33", &n), DC_EINVAL);
    assert_int_equal(dc__config_parse_cidr("::/129", &n), DC_EINVAL);
    assert_int_equal(dc__config_parse_cidr("10.0.0/8", &n), DC_EINVAL);
    assert_int_equal(dc__config_parse_cidr("10.0.0.0/", &n), DC_EINVAL);
    assert_int_equal(dc__config_parse_cidr("/8", &n), DC_EINVAL);
    assert_null(n);

    bool b = false;
    const char *yes[] = {"true", "yes", "on", "TRUE", "On"}, *no[] = {"false", "no", "off", "False", "OFF"};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(dc__config_parse_bool(yes[i], &b), 0);
        assert_true(b);
        assert_int_equal(dc__config_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(dc__config_parse_bool("1", &b), DC_EINVAL);
    assert_int_equal(dc__config_parse_bool("", &b), DC_EINVAL);
}

/* ---- a full config ------------------------------------------------------------------------------ */

static const char full_yaml[] =
    "listen: [\"127.0.0.1:18080\", \"[::1]:18080\"]\n"
    "workers: 4\n"
    "tls:\n"
    "  listen: [\":18443\"]\n"
    "  cert: \"${DC_TEST_CERT}\"\n"
    "  key: \"${DC_TEST_KEY}\"\n"
    "admin: { listen: \"127.0.0.1:19090\", token: \"${DC_TEST_TOKEN:-fallback-token}\" }\n"
    "log: { access: /tmp/dexcache-access.log, level: warn }\n"
    "cache: { memory: 1GiB, max_object: 10MB }\n"
    "redis: { url: \"redis://127.0.0.1:6379/2\", prefix: \"dc:\" }\n"
    "server:\n"
    "  max_body: 64KiB\n"
    "  max_uri: 4k\n"
    "  max_header_bytes: 32KiB\n"
    "  max_headers: 50\n"
    "  drain_timeout: 1.5s\n"
    "  idle_timeout: 1m\n"
    "  trusted_proxies: [10.0.0.0/8, \"::1\", 192.168.1.7]\n"
    "upstreams:\n"
    "  jupiter:\n"
    "    url: \"https://api.jup.ag/\"\n"
    "    keys: [\"${DC_TEST_APIKEY}\", \"${DC_TEST_UNSET}\", literal-key]\n"
    "    key_header: X-API-Key\n"
    "    rate: [45/1s, 2700/60s]\n"
    "    queue: { max: 10, timeout: 500ms }\n"
    "    connect_timeout: 1s\n"
    "    timeout: 5s\n"
    "    retries: 0\n"
    "    retry_backoff: 50ms\n"
    "    key_quarantine: 5m\n"
    "    http2: off\n"
    "    tls_verify: no\n"
    "  meteora:\n"
    "    url: http://127.0.0.1:18081/base//\n"
    "    rate: 10/s\n"
    "routes:\n"
    "  - prefix: /jup/\n"
    "    upstream: jupiter\n"
    "    cache:\n"
    "      - { path: /price/v3, ttl: 2s, stale_while_revalidate: 10s, stale_if_error: 5m, key_sets: [ids],\n"
    "          prefetch: 0.8 }\n"
    "      - { path: /swap/v1/quote, ttl: 1s, negative_ttl: 1s, ignore_params: [slippageBps, _],\n"
    "          client_no_cache: revalidate, public: true }\n"
    "      - { path: /tokens/v2/tag, ttl: 5m, respect_origin: true }\n"
    "    no_cache: [/swap/v1/swap]\n"
    "    batch: { path: /price/v3, param: ids, max: 100, window: 10ms }\n"
    "    limit: { rate: 10/1s, burst: 20, by: \"header:X-Client-Key\" }\n"
    "    cdn: { max_age: 1s, s_maxage: 2s, stale_while_revalidate: 30s, stale_if_error: 1h,\n"
    "           cdn_cache_control: true, tag_params: [ids] }\n"
    "    forward_client_key: true\n"
    "    max_body: 1KiB\n"
    "  - prefix: /met\n"
    "    upstream: meteora\n"
    "    limit: { rate: 600/m }\n"
    "streams:\n"
    "  - path: /jup/stream/price\n"
    "    upstream: jupiter\n"
    "    upstream_path: /price/v3\n"
    "    interval: 250ms\n"
    "    on_change: false\n";

/* Two readable files for tls.cert / tls.key, named through the environment. */
static void make_tls_files(char *cert, char *key)
{
    strcpy(cert, "/tmp/dc-test-cert-XXXXXX");
    strcpy(key, "/tmp/dc-test-key-XXXXXX");
    int fd = mkstemp(cert);
    assert_true(fd >= 0);
    close(fd);
    fd = mkstemp(key);
    assert_true(fd >= 0);
    close(fd);
    setenv("DC_TEST_CERT", cert, 1);
    setenv("DC_TEST_KEY", key, 1);
}

static void test_full_config(void **state)
{
    char cert[64], key[64];
    make_tls_files(cert, key);
    setenv("DC_TEST_APIKEY", "k-123", 1);
    unsetenv("DC_TEST_UNSET");
    unsetenv("DC_TEST_TOKEN");
    dc_config_t *cfg = load_ok(full_yaml);

    assert_int_equal(cfg->magic, DC_CONFIG_MAGIC);
    assert_string_equal(cfg->path, "ok.yaml");
    assert_int_equal(cfg->nlisten, 2);
    assert_string_equal(cfg->listen[0].text, "127.0.0.1:18080");
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen[0].port, 18080);
    assert_false(cfg->listen[0].ipv6);
    assert_string_equal(cfg->listen[1].text, "[::1]:18080");
    assert_string_equal(cfg->listen[1].host, "::1");
    assert_true(cfg->listen[1].ipv6);
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(cfg->tls.nlisten, 1);
    assert_string_equal(cfg->tls.listen[0].host, "0.0.0.0");
    assert_int_equal(cfg->tls.listen[0].port, 18443);
    assert_string_equal(cfg->tls.cert, cert);
    assert_string_equal(cfg->tls.key, key);

    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.host, "127.0.0.1");
    assert_int_equal(cfg->admin.listen.port, 19090);
    assert_string_equal(cfg->admin.token, "fallback-token");
    assert_string_equal(cfg->log.access, "/tmp/dexcache-access.log");
    assert_int_equal(cfg->log.level, DC_LOG_WARN);
    assert_int_equal(cfg->cache.memory, 1073741824ull);
    assert_int_equal(cfg->cache.max_object, 10000000);
    assert_true(cfg->redis.enabled);
    assert_string_equal(cfg->redis.url, "redis://127.0.0.1:6379/2");
    assert_string_equal(cfg->redis.prefix, "dc:");

    assert_int_equal(cfg->server.max_body, 65536);
    assert_int_equal(cfg->server.max_uri, 4096);
    assert_int_equal(cfg->server.max_header_bytes, 32768);
    assert_int_equal(cfg->server.max_headers, 50);
    assert_int_equal(cfg->server.drain_timeout_ms, 1500);
    assert_int_equal(cfg->server.idle_timeout_ms, 60000);
    assert_int_equal(cfg->server.ntrusted_proxies, 3);
    assert_string_equal(cfg->server.trusted_proxies[0], "10.0.0.0/8");
    assert_string_equal(cfg->server.trusted_proxies[1], "::1/128");
    assert_string_equal(cfg->server.trusted_proxies[2], "192.168.1.7/32");

    assert_int_equal(cfg->nupstreams, 2);
    const dc_config_upstream_t *jup = &cfg->upstreams[0], *met = &cfg->upstreams[1];
    assert_string_equal(jup->name, "jupiter");
    assert_string_equal(jup->url, "https://api.jup.ag");
    assert_int_equal(jup->nkeys, 2); /* the unset ${VAR} is dropped */
    assert_string_equal(jup->keys[0], "k-123");
    assert_string_equal(jup->keys[1], "literal-key");
    assert_string_equal(jup->key_header, "x-api-key");
    assert_int_equal(jup->nrates, 2);
    assert_int_equal(jup->rates[0].limit, 45);
    assert_int_equal(jup->rates[0].window_ms, 1000);
    assert_int_equal(jup->rates[1].limit, 2700);
    assert_int_equal(jup->rates[1].window_ms, 60000);
    assert_int_equal(jup->queue_max, 10);
    assert_int_equal(jup->queue_timeout_ms, 500);
    assert_int_equal(jup->connect_timeout_ms, 1000);
    assert_int_equal(jup->timeout_ms, 5000);
    assert_int_equal(jup->retries, 0);
    assert_int_equal(jup->retry_backoff_ms, 50);
    assert_int_equal(jup->key_quarantine_ms, 300000);
    assert_false(jup->http2);
    assert_false(jup->tls_verify);
    assert_string_equal(met->name, "meteora");
    assert_string_equal(met->url, "http://127.0.0.1:18081/base");
    assert_int_equal(met->nrates, 1);
    assert_int_equal(met->rates[0].limit, 10);
    assert_int_equal(met->rates[0].window_ms, 1000);

    assert_int_equal(cfg->nroutes, 2);
    const dc_config_route_t *r = &cfg->routes[0];
    assert_string_equal(r->prefix, "/jup");
    assert_string_equal(r->upstream_name, "jupiter");
    assert_ptr_equal(r->upstream, jup);
    assert_int_equal(r->ncache, 3);
    const dc_config_cache_rule_t *c0 = &r->cache[0], *c1 = &r->cache[1], *c2 = &r->cache[2];
    assert_string_equal(c0->path, "/price/v3");
    assert_int_equal(c0->ttl_ms, 2000);
    assert_int_equal(c0->stale_while_revalidate_ms, 10000);
    assert_int_equal(c0->stale_if_error_ms, 300000);
    assert_int_equal(c0->nkey_sets, 1);
    assert_string_equal(c0->key_sets[0], "ids");
    assert_true(c0->prefetch > 0.79 && c0->prefetch < 0.81);
    assert_int_equal(c0->client_no_cache, DC_CLIENT_NO_CACHE_IGNORE);
    assert_string_equal(c1->path, "/swap/v1/quote");
    assert_int_equal(c1->negative_ttl_ms, 1000);
    assert_int_equal(c1->nignore_params, 2);
    assert_string_equal(c1->ignore_params[1], "_");
    assert_int_equal(c1->client_no_cache, DC_CLIENT_NO_CACHE_REVALIDATE);
    assert_true(c1->is_public);
    assert_true(c2->respect_origin);
    assert_int_equal(c2->ttl_ms, 300000);
    assert_int_equal(r->nno_cache, 1);
    assert_string_equal(r->no_cache[0], "/swap/v1/swap");
    assert_true(r->batch.enabled);
    assert_string_equal(r->batch.path, "/price/v3");
    assert_string_equal(r->batch.param, "ids");
    assert_int_equal(r->batch.max, 100);
    assert_int_equal(r->batch.window_ms, 10);
    assert_true(r->limit.enabled);
    assert_int_equal(r->limit.rate.limit, 10);
    assert_int_equal(r->limit.rate.window_ms, 1000);
    assert_int_equal(r->limit.burst, 20);
    assert_int_equal(r->limit.by, DC_LIMIT_BY_HEADER);
    assert_string_equal(r->limit.by_header, "x-client-key");
    assert_true(r->cdn.enabled);
    assert_int_equal(r->cdn.max_age_ms, 1000);
    assert_int_equal(r->cdn.s_maxage_ms, 2000);
    assert_int_equal(r->cdn.stale_while_revalidate_ms, 30000);
    assert_int_equal(r->cdn.stale_if_error_ms, 3600000);
    assert_true(r->cdn.cdn_cache_control);
    assert_int_equal(r->cdn.ntag_params, 1);
    assert_string_equal(r->cdn.tag_params[0], "ids");
    assert_true(r->forward_client_key);
    assert_int_equal(r->max_body, 1024);

    r = &cfg->routes[1];
    assert_string_equal(r->prefix, "/met");
    assert_ptr_equal(r->upstream, met);
    assert_int_equal(r->ncache, 0);
    assert_false(r->batch.enabled);
    assert_true(r->limit.enabled);
    assert_int_equal(r->limit.rate.limit, 600);
    assert_int_equal(r->limit.rate.window_ms, 60000);
    assert_int_equal(r->limit.burst, 600); /* burst defaults to the rate's count */
    assert_int_equal(r->limit.by, DC_LIMIT_BY_CLIENT);
    assert_null(r->limit.by_header);
    assert_false(r->cdn.enabled);
    assert_int_equal(r->max_body, 65536); /* = server.max_body */

    assert_int_equal(cfg->nstreams, 1);
    assert_string_equal(cfg->streams[0].path, "/jup/stream/price");
    assert_ptr_equal(cfg->streams[0].upstream, jup);
    assert_string_equal(cfg->streams[0].upstream_name, "jupiter");
    assert_string_equal(cfg->streams[0].upstream_path, "/price/v3");
    assert_int_equal(cfg->streams[0].interval_ms, 250);
    assert_false(cfg->streams[0].on_change);

    dc_config_release(cfg);
    unlink(cert);
    unlink(key);
    unsetenv("DC_TEST_CERT");
    unsetenv("DC_TEST_KEY");
    unsetenv("DC_TEST_APIKEY");
}

/* cdn.purge.cloudflare: defaults, and the base_url's trailing slash dropped like an upstream url's. */
static void test_cdn_purge(void **state)
{
    (void)state;
    dc_config_t *cfg =
        load_ok(UPSTREAM_OK ROUTE_OK "cdn:\n  purge:\n    cloudflare:\n      zone: \"${DC_T_NOZONE:-}\"\n"
                                     "      token: tok\n      base_url: \"https://dex.example/\"\n");
    assert_true(cfg->cdn_purge_cf.enabled);
    assert_string_equal(cfg->cdn_purge_cf.zone, "");
    assert_string_equal(cfg->cdn_purge_cf.token, "tok");
    assert_string_equal(cfg->cdn_purge_cf.api, "https://api.cloudflare.com/client/v4");
    assert_string_equal(cfg->cdn_purge_cf.base_url, "https://dex.example");
    assert_int_equal(cfg->cdn_purge_cf.retries, 3);
    assert_int_equal(cfg->cdn_purge_cf.timeout_ms, 5000);
    assert_int_equal(cfg->cdn_purge_cf.backoff_ms, 1000);
    assert_int_equal(cfg->cdn_purge_cf.window_ms, 100);
    dc_config_release(cfg);
}

static void test_defaults(void **state)
{
    dc_config_t *cfg = load_ok(UPSTREAM_OK "routes:\n  - prefix: /\n    upstream: jupiter\n"
                                           "    cache: [{ path: /, ttl: 1s }]\n    limit: { rate: 5/s }\n"
                                           "streams: [{ path: /s, upstream: jupiter, upstream_path: /p }]\n");
    assert_int_equal(cfg->nlisten, 1);
    assert_string_equal(cfg->listen[0].text, "127.0.0.1:8080");
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen[0].port, 8080);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_int_equal(cfg->tls.nlisten, 0);
    assert_null(cfg->tls.cert);
    assert_false(cfg->admin.enabled);
    assert_null(cfg->admin.token);
    assert_string_equal(cfg->log.access, "stdout");
    assert_int_equal(cfg->log.level, DC_LOG_INFO);
    assert_int_equal(cfg->cache.memory, 256ull << 20);
    assert_int_equal(cfg->cache.max_object, 128ull << 20);
    assert_false(cfg->redis.enabled);
    assert_null(cfg->redis.url);
    assert_string_equal(cfg->redis.prefix, "dexcache:");
    assert_int_equal(cfg->server.max_body, 1 << 20);
    assert_int_equal(cfg->server.max_uri, 8192);
    assert_int_equal(cfg->server.max_header_bytes, 16384);
    assert_int_equal(cfg->server.max_headers, 100);
    assert_int_equal(cfg->server.drain_timeout_ms, 10000);
    assert_int_equal(cfg->server.idle_timeout_ms, 30000);
    assert_int_equal(cfg->server.ntrusted_proxies, 0);
    assert_false(cfg->cdn_purge_cf.enabled);

    const dc_config_upstream_t *u = &cfg->upstreams[0];
    assert_int_equal(u->nkeys, 0);
    assert_string_equal(u->key_header, "x-api-key");
    assert_int_equal(u->nrates, 0);
    assert_int_equal(u->queue_max, 1000);
    assert_int_equal(u->queue_timeout_ms, 2000);
    assert_int_equal(u->connect_timeout_ms, 2000);
    assert_int_equal(u->timeout_ms, 10000);
    assert_int_equal(u->idle_timeout_ms, 5000);
    assert_int_equal(u->retries, 2);
    assert_int_equal(u->retry_backoff_ms, 100);
    assert_int_equal(u->key_quarantine_ms, 60000);
    assert_true(u->http2);
    assert_true(u->tls_verify);

    const dc_config_route_t *r = &cfg->routes[0];
    assert_string_equal(r->prefix, "/");
    const dc_config_cache_rule_t *c = &r->cache[0];
    assert_int_equal(c->stale_while_revalidate_ms, 0);
    assert_int_equal(c->stale_if_error_ms, 0);
    assert_int_equal(c->negative_ttl_ms, 0);
    assert_false(c->respect_origin);
    assert_int_equal(c->nkey_sets, 0);
    assert_int_equal(c->nignore_params, 0);
    assert_true(c->prefetch == 0);
    assert_int_equal(c->client_no_cache, DC_CLIENT_NO_CACHE_IGNORE);
    assert_false(c->is_public);
    assert_false(r->batch.enabled);
    assert_int_equal(r->batch.max, 50);
    assert_int_equal(r->batch.window_ms, 5);
    assert_int_equal(r->limit.burst, 5);
    assert_int_equal(r->limit.by, DC_LIMIT_BY_CLIENT);
    assert_false(r->cdn.enabled);
    assert_false(r->cdn.cdn_cache_control);
    assert_false(r->forward_client_key);
    assert_int_equal(r->max_body, 1 << 20);
    assert_int_equal(cfg->streams[0].interval_ms, 1000);
    assert_true(cfg->streams[0].on_change);
    dc_config_release(cfg);

    /* a small cache.memory caps the default max_object instead of failing */
    cfg = load_ok("cache: { memory: 64MiB }\n" UPSTREAM_OK ROUTE_OK);
    assert_int_equal(cfg->cache.max_object, 64ull << 20);
    dc_config_release(cfg);

    /* listen takes a single address too; workers: auto is explicit; admin: {} enables defaults */
    cfg = load_ok("listen: \"[::]:9000\"\nworkers: auto\nadmin: {}\n" UPSTREAM_OK ROUTE_OK);
    assert_int_equal(cfg->nlisten, 1);
    assert_string_equal(cfg->listen[0].host, "::");
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.text, "127.0.0.1:9090");
    assert_true(cfg->workers >= 1);
    dc_config_release(cfg);
}

/* ---- matching ---------------------------------------------------------------------------------- */

/* issue 15: ttl 0 with respect_origin, heuristic, targeted fields */
static void test_rule_policy_keys(void **state)
{
    dc_config_t *cfg =
        load_ok(UPSTREAM_OK "routes:\n  - prefix: /\n    upstream: jupiter\n    cache:\n"
                            "      - { path: /a, ttl: 0, respect_origin: true, heuristic: 12.5%,\n"
                            "          heuristic_max: 10m, cdn_role: true, forward_cdn_cache_control: false }\n"
                            "      - { path: /b, ttl: 1s }\n");
    const dc_config_cache_rule_t *a = &cfg->routes[0].cache[0], *b = &cfg->routes[0].cache[1];
    assert_int_equal(a->ttl_ms, 0);
    assert_true(a->respect_origin);
    assert_true(a->heuristic > 0.1249 && a->heuristic < 0.1251);
    assert_int_equal(a->heuristic_max_ms, 600000);
    assert_true(a->cdn_role);
    assert_false(a->forward_cdn_cache_control);
    /* defaults */
    assert_true(b->heuristic == 0);
    assert_int_equal(b->heuristic_max_ms, 3600000);
    assert_false(b->cdn_role);
    assert_true(b->forward_cdn_cache_control);
    dc_config_release(cfg);
}

static void test_route_match(void **state)
{
    dc_config_t *cfg = load_ok(UPSTREAM_OK "routes:\n"
                                           "  - { prefix: /, upstream: jupiter }\n"
                                           "  - { prefix: /jup, upstream: jupiter }\n"
                                           "  - { prefix: /jup/v2/, upstream: jupiter }\n"
                                           "  - { prefix: /jupiter, upstream: jupiter }\n");
    static const struct {
        const char *path, *prefix;
    } cases[] = {
        {"/jup", "/jup"},
        {"/jup/", "/jup"},
        {"/jup/price/v3", "/jup"},
        {"/jup?ids=1", "/jup"},
        {"/jupiter", "/jupiter"},
        {"/jupiter/x", "/jupiter"},
        {"/jupiterx", "/"},
        {"/jupx", "/"},
        {"/jup/v2", "/jup/v2"},
        {"/jup/v2/quote", "/jup/v2"},
        {"/jup/v2x", "/jup"},
        {"/other", "/"},
        {"/", "/"},
        {"", "/"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const dc_config_route_t *r = dc_config_route_match(cfg, cases[i].path, strlen(cases[i].path));
        assert_non_null(r);
        if (strcmp(r->prefix, cases[i].prefix) != 0)
            fail_msg("path '%s' matched '%s', want '%s'", cases[i].path, r->prefix, cases[i].prefix);
    }
    /* pathlen bounds the match: "/jupiter" cut to 4 bytes is "/jup" */
    assert_string_equal(dc_config_route_match(cfg, "/jupiter", 4)->prefix, "/jup");
    dc_config_release(cfg);

    cfg = load_ok(UPSTREAM_OK ROUTE_OK);
    assert_null(dc_config_route_match(cfg, "/jupiter", 8));
    assert_null(dc_config_route_match(cfg, "/", 1));
    assert_null(dc_config_route_match(cfg, "/ju", 3));
    assert_non_null(dc_config_route_match(cfg, "/jup/x", 6));
    dc_config_release(cfg);
}

static void test_cache_rule_match(void **state)
{
    dc_config_t *cfg = load_ok(UPSTREAM_OK "routes:\n"
                                           "  - prefix: /jup\n"
                                           "    upstream: jupiter\n"
                                           "    no_cache: [/swap, /price/v3/private]\n"
                                           "    cache:\n"
                                           "      - { path: /price/v3, ttl: 2s }\n"
                                           "      - { path: /tokens, ttl: 5m }\n"
                                           "      - { path: /, ttl: 1s }\n"
                                           "  - prefix: /met\n"
                                           "    upstream: jupiter\n"
                                           "    cache: [{ path: /pair, ttl: 1s }]\n");
    const dc_config_route_t *jup = &cfg->routes[0], *met = &cfg->routes[1];
    static const struct {
        const char *path;
        int rule; /* -1 = not cached */
    } cases[] = {
        {"/price/v3?ids=a,b", 0},
        {"/price/v3", 0},
        {"/price/v3/private/x", -1},
        {"/swap", -1},
        {"/swap/v1/quote", -1},
        {"/tokens/v2/tag", 1},
        {"/tokens", 1},
        {"/misc", 2},
        {"/", 2},
        {"", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const dc_config_cache_rule_t *rule = dc_config_cache_rule_match(jup, cases[i].path, strlen(cases[i].path));
        const dc_config_cache_rule_t *want = cases[i].rule < 0 ? NULL : &jup->cache[cases[i].rule];
        if (rule != want)
            fail_msg("path '%s' matched rule %ld, want %d", cases[i].path, rule ? (long)(rule - jup->cache) : -1L,
                     cases[i].rule);
    }
    assert_ptr_equal(dc_config_cache_rule_match(met, "/pair/all", 9), &met->cache[0]);
    assert_null(dc_config_cache_rule_match(met, "/misc", 5));
    assert_null(dc_config_cache_rule_match(met, "/pa", 3));
    assert_null(dc_config_cache_rule_match(&cfg->routes[1], "/pair", 3)); /* len bounds the path */
    dc_config_release(cfg);
}

/* ---- life cycle ---------------------------------------------------------------------------------- */

static void test_refcount(void **state)
{
    dc_config_t *cfg = load_ok(UPSTREAM_OK ROUTE_OK);
    assert_int_equal(atomic_load(&cfg->refcnt), 1);
    assert_ptr_equal(dc_config_ref(cfg), cfg);
    assert_int_equal(atomic_load(&cfg->refcnt), 2);
    dc_config_release(cfg);
    assert_int_equal(atomic_load(&cfg->refcnt), 1);
    assert_string_equal(cfg->routes[0].prefix, "/jup"); /* still alive */
    dc_config_release(cfg);                             /* frees; LeakSanitizer checks the rest */
    dc_config_release(NULL);
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/dc-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *yaml = UPSTREAM_OK ROUTE_OK "workers: 3\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    dc_config_t *cfg = NULL;
    char err[DC_CONFIG_ERRLEN];
    assert_int_equal(dc_config_load_file(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->workers, 3);
    dc_config_release(cfg);

    /* a bad file names itself in the message */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "workers: 0\n", 11), 11);
    close(fd);
    assert_int_equal(dc_config_load_file(path, &cfg, err, sizeof(err)), DC_ECONFIG);
    assert_null(cfg);
    char want[256];
    snprintf(want, sizeof(want), "%s:1:10: workers: expected auto or an integer from 1 to 256, found '0'", path);
    assert_string_equal(err, want);
    unlink(path);

    assert_int_equal(dc_config_load_file("/nonexistent/dexcache.yaml", &cfg, err, sizeof(err)), DC_EIO);
    assert_null(cfg);
    assert_string_equal(err, "/nonexistent/dexcache.yaml: cannot read: No such file or directory");
    assert_int_equal(dc_config_load_file("/tmp", &cfg, err, sizeof(err)), DC_EIO);
    assert_string_equal(err, "/tmp: cannot read: not a regular file");
}

/* A tiny error buffer truncates the line but never overflows. */
static void test_small_error_buffer(void **state)
{
    dc_config_t *cfg = NULL;
    char err[16];
    memset(err, 'x', sizeof(err));
    assert_int_equal(dc_config_load_string("bad.yaml", "workers: 0\n", 11, &cfg, err, 12), DC_ECONFIG);
    assert_string_equal(err, "bad.yaml:1:");
    assert_int_equal(err[12], 'x');
    assert_int_equal(dc_config_load_string("bad.yaml", "workers: 0\n", 11, &cfg, NULL, 0), DC_ECONFIG);
}

/* ---- bad configs: the exact line an operator reads --------------------------------------------------- */

typedef struct bad_case {
    const char *name, *yaml, *error;
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"unknown top-level key", "listen: [\"127.0.0.1:8080\"]\ncolour: blue\n",
     "bad.yaml:2:1: colour: unknown key (expected one of: listen, workers, tls, admin, log, cache, redis, server, cdn, "
     "cors, upstreams, plugins, routes, streams)"},
    {"cdn purge base_url with a path",
     UPSTREAM_OK ROUTE_OK
     "cdn: { purge: { cloudflare: { zone: z, token: t, base_url: \"https://dex.example/x\" } } }\n",
     "bad.yaml:5:60: cdn.purge.cloudflare.base_url: expected a scheme and host without a path "
     "(https://dex.example.com), found 'https://dex.example/x'"},
    {"cdn purge without zone",
     UPSTREAM_OK ROUTE_OK "cdn: { purge: { cloudflare: { token: t, base_url: \"https://dex.example\" } } }\n",
     "bad.yaml:5:29: cdn.purge.cloudflare.zone: expected a string, found nothing (the key is required)"},
    {"unknown nested key", UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cahce: []\n",
     "bad.yaml:6:5: routes[0].cahce: unknown key (expected one of: prefix, upstream, cache, no_cache, batch, limit, "
     "cdn, forward_client_key, forward_headers, max_body, plugins, cors)"},
    {"forward_headers naming a header dexcache sets",
     UPSTREAM_OK "routes:\n  - { prefix: /jup, upstream: jupiter, forward_headers: [x-extra, X-Forwarded-Host] }\n",
     "bad.yaml:4:67: routes[0].forward_headers[1]: expected a header name dexcache does not set or decide itself "
     "(not hop-by-hop, Host, Via, X-Request-Id, Forwarded, X-Forwarded-*, conditionals, Range, Accept-Encoding), "
     "found 'X-Forwarded-Host'"},
    {"key_headers naming a hop-by-hop header",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cache:\n      - { path: /, ttl: 1s, "
                 "key_headers: [connection] }\n",
     "bad.yaml:7:43: routes[0].cache[0].key_headers[0]: expected a header name dexcache does not set or decide "
     "itself (not hop-by-hop, Host, Via, X-Request-Id, Forwarded, X-Forwarded-*, conditionals, Range, "
     "Accept-Encoding), found 'connection'"},
    {"bad duration", "upstreams:\n  jupiter:\n    url: \"https://api.jup.ag\"\n    timeout: soon\n" ROUTE_OK,
     "bad.yaml:4:14: upstreams.jupiter.timeout: expected a duration (500ms, 2s, 5m, 1h), found 'soon'"},
    {"duration out of range", "upstreams:\n  jupiter: { url: \"https://api.jup.ag\", timeout: 2h }\n" ROUTE_OK,
     "bad.yaml:2:50: upstreams.jupiter.timeout: expected a duration from 1ms to 1h, found '2h'"},
    {"bad size", "cache:\n  memory: 12 parsecs\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:2:11: cache.memory: expected a size (64KiB, 256MiB, 1GiB, 10KB), found '12 parsecs'"},
    {"size out of range", "server: { max_uri: 100 }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:20: server.max_uri: expected a size from 256 to 1MiB, found '100'"},
    {"out-of-range retries", "upstreams:\n  jupiter:\n    url: \"https://api.jup.ag\"\n    retries: 11\n" ROUTE_OK,
     "bad.yaml:4:14: upstreams.jupiter.retries: expected an integer from 0 to 10, found '11'"},
    {"bad rate", "upstreams:\n  jupiter:\n    url: \"https://api.jup.ag\"\n    rate: [45/1s, lots]\n" ROUTE_OK,
     "bad.yaml:4:19: upstreams.jupiter.rate[1]: expected a rate (45/1s, 2700/60s, 10/s), found 'lots'"},
    {"bad limit rate", UPSTREAM_OK "routes:\n  - { prefix: /jup, upstream: jupiter, limit: { rate: 0/s } }\n",
     "bad.yaml:4:55: routes[0].limit.rate: expected a rate (45/1s, 2700/60s, 10/s), found '0/s'"},
    {"bad listen", "listen: [\"127.0.0.1:8080\", \"::1:8080\"]\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:28: listen[1]: expected a listen address (127.0.0.1:8080, [::1]:8080, :8080), found '::1:8080'"},
    {"bad admin listen", "admin: { listen: 9090 }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:18: admin.listen: expected a listen address (127.0.0.1:8080, [::1]:8080, :8080), found '9090'"},
    {"undefined upstream", UPSTREAM_OK "routes:\n  - prefix: /orca\n    upstream: orca\n",
     "bad.yaml:5:15: routes[0].upstream: expected the name of an upstream (jupiter), found 'orca'"},
    {"no upstreams at all", ROUTE_OK,
     "bad.yaml:2:31: routes[0].upstream: expected the name of an upstream, found 'jupiter' (no upstreams are "
     "defined)"},
    {"duplicate route prefix", UPSTREAM_OK ROUTE_OK "  - { prefix: /jup/, upstream: jupiter }\n",
     "bad.yaml:5:15: routes[1].prefix: expected a prefix no other route has, found '/jup/' (routes[0] has it)"},
    {"route prefix without slash", UPSTREAM_OK "routes:\n  - { prefix: jup, upstream: jupiter }\n",
     "bad.yaml:4:15: routes[0].prefix: expected a path prefix starting with '/' (no spaces, '?' or '#'), found "
     "'jup'"},
    {"missing ttl",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cache:\n      - { path: /price/v3, ttl: 2s }\n"
                 "      - { path: /quote, stale_if_error: 5m }\n",
     "bad.yaml:8:9: routes[0].cache[1].ttl: expected a duration (500ms, 2s, 5m, 1h), found nothing (the key is "
     "required)"},
    {"empty ttl", UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cache: [{ path: /p, ttl: }]\n",
     "bad.yaml:6:30: routes[0].cache[0].ttl: expected a duration (500ms, 2s, 5m, 1h), found an empty value"},
    {"missing routes", UPSTREAM_OK,
     "bad.yaml:1:1: routes: expected a list of routes, found nothing (the key is required)"},
    {"empty routes", UPSTREAM_OK "routes: []\n",
     "bad.yaml:3:9: routes: expected a list of routes with at least 1 item, found an empty list"},
    {"map where a list is expected", UPSTREAM_OK "routes:\n  prefix: /jup\n  upstream: jupiter\n",
     "bad.yaml:4:3: routes: expected a list of routes, found a map"},
    {"list where a map is expected", "cache: [256MiB]\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:8: cache: expected a map, found a list"},
    {"map where a scalar is expected", "workers: { n: 2 }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:10: workers: expected auto or an integer from 1 to 256, found a map"},
    {"duplicate map key",
     "upstreams:\n  jupiter:\n    url: \"https://api.jup.ag\"\n    timeout: 5s\n    timeout: 6s\n" ROUTE_OK,
     "bad.yaml:5:5: upstreams.jupiter.timeout: expected each key once in a map, found a duplicate (first at line 4, "
     "column 5)"},
    {"bad url scheme", "upstreams:\n  jupiter: { url: \"ftp://api.jup.ag\" }\n" ROUTE_OK,
     "bad.yaml:2:19: upstreams.jupiter.url: expected an http:// or https:// URL (https://api.jup.ag), found "
     "'ftp://api.jup.ag'"},
    {"url without host", "upstreams:\n  jupiter: { url: \"https:///x\" }\n" ROUTE_OK,
     "bad.yaml:2:19: upstreams.jupiter.url: expected an http:// or https:// URL (https://api.jup.ag), found "
     "'https:///x'"},
    {"url beside tiers",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    tiers: [ { url: \"http://b\" } ]\n" ROUTE_OK,
     "bad.yaml:3:10: upstreams.jupiter.url: expected no url beside tiers: (give each tier its own), found one"},
    {"too many tiers",
     "upstreams:\n  jupiter:\n    tiers: [ {url: \"http://a\"}, {url: \"http://b\"}, {url: \"http://c\"}, "
     "{url: \"http://d\"}, {url: \"http://e\"} ]\n" ROUTE_OK,
     "bad.yaml:3:12: upstreams.jupiter.tiers: expected a list of 1 to 4 tiers, found a list"},
    {"tier without url", "upstreams:\n  jupiter:\n    tiers: [ { keys: [a] } ]\n" ROUTE_OK,
     "bad.yaml:3:14: upstreams.jupiter.tiers[0].url: expected an http:// or https:// URL, found nothing (the key is "
     "required)"},
    {"keys beside accounts",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    keys: [k]\n    accounts: [ { name: o, keys: [k1], rate: 6/1s "
     "} ]\n" ROUTE_OK,
     "bad.yaml:4:11: upstreams.jupiter.keys: expected no keys beside accounts: (give each account its keys and rate), "
     "found one"},
    {"group path covered by an earlier group",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    groups: [ { name: swaps, paths: [\"/swap/v1/*\"], rate: 6/1s "
     "},\n      { name: exec, paths: [/swap/v1/swap], rate: 1/1s } ]\n" ROUTE_OK,
     "bad.yaml:5:7: upstreams.jupiter.groups[1].paths: expected paths no earlier group covers, found /swap/v1/swap "
     "(group swaps has /swap/v1/* and comes first)"},
    {"weight over half the account rate",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    accounts: [ { name: o, keys: [k1], rate: 10/1s } ]\n"
     "    weights: { \"/tokens/*\": 20 }\n" ROUTE_OK,
     "bad.yaml:5:14: upstreams.jupiter.weights: expected every weight at most half the tightest rate's 10 requests "
     "per 1000 ms (a request of weight w leaves a budget of rate - (w - 1) for every other path), found /tokens/*: 20"},
    {"rate_per key with groups",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    rate_per: key\n    groups: [ { name: g, paths: [/x], rate: "
     "6/1s } ]\n" ROUTE_OK,
     "bad.yaml:4:15: upstreams.jupiter.rate_per: expected no rate_per: key with accounts or groups (an account is the "
     "keys sharing a rate), found one"},
    {"account without rate",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    accounts: [ { name: o, keys: [k1] } ]\n" ROUTE_OK,
     "bad.yaml:4:17: upstreams.jupiter.accounts[0].rate: expected a rate or a list of rates (45/1s, 2700/60s), found "
     "nothing (the key is required)"},
    {"account without keys",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    accounts: [ { name: o, keys: [\"${DC_T_UNSET_KEY:-}\"], rate: "
     "6/1s } ]\n" ROUTE_OK,
     "bad.yaml:4:17: upstreams.jupiter.accounts[0].keys: expected at least one key, found none (unset ${VAR}?)"},
    {"two accounts with one name",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    accounts: [ { name: o, keys: [a], rate: 6/1s }, { name: o, "
     "keys: [b], rate: 6/1s } ]\n" ROUTE_OK,
     "bad.yaml:4:53: upstreams.jupiter.accounts[1].name: expected a name no other account has, found \"o\" again"},
    {"group path without slash",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    groups: [ { name: g, paths: [swap], rate: 6/1s } ]\n" ROUTE_OK,
     "bad.yaml:4:34: upstreams.jupiter.groups[0].paths[0]: expected an upstream path (/swap/v2/execute) or a prefix "
     "ending in * (/v1/wallet/*), found 'swap'"},
    {"group path star inside",
     "upstreams:\n  jupiter:\n    url: \"http://a\"\n    groups: [ { name: g, paths: [\"/a/*/b\"], rate: 6/1s } "
     "]\n" ROUTE_OK,
     "bad.yaml:4:34: upstreams.jupiter.groups[0].paths[0]: expected an upstream path (/swap/v2/execute) or a prefix "
     "ending in * (/v1/wallet/*), found '/a/*/b'"},
    {"weight zero", "upstreams:\n  jupiter:\n    url: \"http://a\"\n    weights: { /quote: 0 }\n" ROUTE_OK,
     "bad.yaml:4:24: upstreams.jupiter.weights./quote: expected an integer from 1 to 1000, found '0'"},
    {"weight not a number", "upstreams:\n  jupiter:\n    url: \"http://a\"\n    weights: { /quote: [1] }\n" ROUTE_OK,
     "bad.yaml:4:24: upstreams.jupiter.weights./quote: expected an integer from 1 to 1000, found a list"},
    {"weights beside tiers",
     "upstreams:\n  jupiter:\n    tiers: [ { url: \"http://b\" } ]\n    weights: { /quote: 2 }\n" ROUTE_OK,
     "bad.yaml:4:14: upstreams.jupiter.weights: expected no weights beside tiers: (single-url upstreams only), found "
     "one"},
    {"retry_budget percent over 100",
     "upstreams:\n  jupiter: { url: \"http://a\", retry_budget: { percent: 101 } }\n" ROUTE_OK,
     "bad.yaml:2:56: upstreams.jupiter.retry_budget.percent: expected an integer from 0 to 100, found '101'"},
    {"missing url", "upstreams:\n  jupiter: { timeout: 1s }\n" ROUTE_OK,
     "bad.yaml:2:12: upstreams.jupiter.url: expected an http:// or https:// URL, found nothing (the key is "
     "required)"},
    {"tls cert without key",
     "tls:\n  listen: [\"0.0.0.0:8443\"]\n  cert: /etc/dexcache/cert.pem\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:2:3: tls.key: expected a PEM private key file (tls.listen, tls.cert and tls.key go together), found "
     "nothing"},
    {"tls listen without files", "tls: { listen: \":8443\" }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:6: tls.cert: expected a PEM certificate chain file (tls.listen, tls.cert and tls.key go together), "
     "found nothing"},
    {"tls files unreadable",
     "tls: { listen: \":8443\", cert: /nonexistent/c.pem, key: /nonexistent/k.pem }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:31: tls.cert: expected a readable file, found '/nonexistent/c.pem' (No such file or directory)"},
    {"tls cert not a file", "tls: { listen: \":8443\", cert: /tmp, key: /tmp }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:31: tls.cert: expected a readable file, found '/tmp' (not a regular file)"},
    {"YAML syntax error", "upstreams:\n  jupiter: { url: \"https://api.jup.ag\"\n" ROUTE_OK,
     "bad.yaml:3:1: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 2, "
     "column 12)"},
    {"YAML bad indentation", "log:\n  level: info\n access: off\n",
     "bad.yaml:3:2: YAML syntax error: did not find expected key (while parsing a block mapping at line 1, column "
     "1)"},
    {"invalid UTF-8", "log: { access: \"\xff\" }\n",
     "bad.yaml:1:17: YAML syntax error: invalid leading UTF-8 octet (byte 0xff)"},
    {"bad enum value", "log: { level: verbose }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:15: log.level: expected one of: debug, info, warn, error, found 'verbose'"},
    {"bad client_no_cache",
     UPSTREAM_OK
     "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cache: [{ path: /, ttl: 1s, client_no_cache: obey }]\n",
     "bad.yaml:6:50: routes[0].cache[0].client_no_cache: expected one of: ignore, revalidate, found 'obey'"},
    {"bad workers", "workers: lots\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:10: workers: expected auto or an integer from 1 to 256, found 'lots'"},
    {"too many workers", "workers: 257\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:10: workers: expected auto or an integer from 1 to 256, found '257'"},
    {"bad CIDR", "server:\n  trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:2:33: server.trusted_proxies[1]: expected a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address, found "
     "'10.0.0.0/33'"},
    {"bad bool", "upstreams:\n  jupiter: { url: \"https://api.jup.ag\", http2: maybe }\n" ROUTE_OK,
     "bad.yaml:2:48: upstreams.jupiter.http2: expected a boolean (true, false, yes, no, on, off), found 'maybe'"},
    {"bad upstream name", "upstreams:\n  Jupiter: { url: \"https://api.jup.ag\" }\n" ROUTE_OK,
     "bad.yaml:2:3: upstreams.Jupiter: expected an upstream name of 1 to 64 characters from a-z, 0-9, '_', '-', "
     "found 'Jupiter'"},
    {"anchor", "upstreams:\n  jupiter: &j { url: \"https://api.jup.ag\" }\n" ROUTE_OK,
     "bad.yaml:2:12: upstreams.jupiter: expected a plain value, found an anchor '&j' (anchors and aliases are not "
     "supported)"},
    {"alias", "x: &a 1\n",
     "bad.yaml:1:4: x: expected a plain value, found an anchor '&a' (anchors and aliases are not supported)"},
    {"alias use", UPSTREAM_OK "routes:\n  - { prefix: /jup, upstream: *up }\n",
     "bad.yaml:4:31: routes[0].upstream: expected a plain value, found an alias '*up' (anchors and aliases are not "
     "supported)"},
    {"tag", "upstreams:\n  jupiter: { url: \"https://api.jup.ag\", timeout: !!str 5s }\n" ROUTE_OK,
     "bad.yaml:2:50: upstreams.jupiter.timeout: expected a plain value, found a tag 'tag:yaml.org,2002:str' (tags are "
     "not supported)"},
    {"two documents", "workers: 1\n---\nworkers: 2\n",
     "bad.yaml:2:1: expected a single YAML document, found a second one"},
    {"top level list", "- a\n- b\n", "bad.yaml:1:1: expected a map of settings at the top level, found a list"},
    {"empty file", "", "bad.yaml:1:1: expected a map of settings at the top level, found an empty file"},
    {"comment only", "# nothing here\n",
     "bad.yaml:1:1: expected a map of settings at the top level, found an empty file"},
    {"bad ${VAR}", "admin: { token: \"${DC_T_NEVER\" }\n",
     "bad.yaml:1:17: admin.token: expected ${NAME} or ${NAME:-default}, found '${DC_T_NEVER'"},
    {"value from env reported with its source", "workers: \"${DC_T_UNSET_WORKERS:-many}\"\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:10: workers: expected auto or an integer from 1 to 256, found 'many' (from "
     "'${DC_T_UNSET_WORKERS:-many}')"},
    {"redis without url", "redis: { prefix: \"x:\" }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:8: redis.url: expected a Redis URL, found nothing (the key is required)"},
    {"bad redis url", "redis: { url: \"127.0.0.1:6379\" }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:15: redis.url: expected a Redis URL (redis://host:port/db, rediss://..., unix:///path), found "
     "'127.0.0.1:6379'"},
    {"shadowed cache rule",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n    cache:\n      - { path: /price, ttl: 2s }\n"
                 "      - { path: /price/v3, ttl: 1s }\n",
     "bad.yaml:8:17: routes[0].cache[1].path: expected a path no earlier rule covers, found '/price/v3' "
     "(routes[0].cache[0] has path '/price')"},
    {"bad limit.by", UPSTREAM_OK "routes:\n  - { prefix: /jup, upstream: jupiter, limit: { rate: 1/s, by: cookie } }\n",
     "bad.yaml:4:64: routes[0].limit.by: expected client, header:<name> or plugin, found 'cookie'"},
    {"bad prefetch",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n"
                 "    cache: [{ path: /, ttl: 1s, prefetch: 0.3 }]\n",
     "bad.yaml:6:43: routes[0].cache[0].prefetch: expected 0 or a fraction from 0.5 to 0.99, found '0.3'"},
    {"ttl 0 without respect_origin",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n"
                 "    cache: [{ path: /, ttl: 0 }]\n",
     "bad.yaml:6:29: routes[0].cache[0].ttl: expected a ttl above 0 (ttl 0 needs respect_origin: true: the origin "
     "decides), found '0'"},
    {"heuristic without respect_origin",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n"
                 "    cache: [{ path: /, ttl: 1s, heuristic: 10% }]\n",
     "bad.yaml:6:44: routes[0].cache[0].heuristic: expected heuristic only with respect_origin: true, found '10%'"},
    {"bad heuristic",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n"
                 "    cache: [{ path: /, ttl: 1s, respect_origin: true, heuristic: 0.1 }]\n",
     "bad.yaml:6:66: routes[0].cache[0].heuristic: expected a percentage from 0% to 100%, found '0.1'"},
    {"heuristic above 100%",
     UPSTREAM_OK "routes:\n  - prefix: /jup\n    upstream: jupiter\n"
                 "    cache: [{ path: /, ttl: 1s, respect_origin: true, heuristic: 101% }]\n",
     "bad.yaml:6:66: routes[0].cache[0].heuristic: expected a percentage from 0% to 100%, found '101%'"},
    {"max_object above memory", "cache: { memory: 64MiB, max_object: 1GiB }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:37: cache.max_object: expected a size of at most cache.memory (64MiB), found '1GiB'"},
    {"batch without param",
     UPSTREAM_OK "routes:\n  - { prefix: /jup, upstream: jupiter, batch: { path: /price/v3 } }\n",
     "bad.yaml:4:47: routes[0].batch.param: expected a string, found nothing (the key is required)"},
    {"non-scalar key", "? [a, b]\n: 1\n", "bad.yaml:1:1: expected a plain key, found a list used as a key"},
    {"empty string in list", "server: { trusted_proxies: [\"\"] }\n" UPSTREAM_OK ROUTE_OK,
     "bad.yaml:1:29: server.trusted_proxies[0]: expected a non-empty string, found ''"},
    {"duplicate stream path",
     UPSTREAM_OK ROUTE_OK "streams:\n  - { path: /s, upstream: jupiter, upstream_path: /p }\n"
                          "  - { path: /s, upstream: jupiter, upstream_path: /q }\n",
     "bad.yaml:7:13: streams[1].path: expected a path no other stream has, found '/s' (streams[0] has it)"},
    {"too deep", "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     "bad.yaml:1:35: a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: "
     "expected at most 32 levels of nesting, found more"},
};

static void test_bad_config(void **state)
{
    const bad_case_t *c = *state;
    unsetenv("DC_T_UNSET_WORKERS");
    expect_error(c->yaml, c->error);
}

/* ---- conf/REFERENCE.md ---------------------------------------------------------------------------- */

/* Compare the committed file SRC/relpath with what `write` generates (DC_UPDATE_REFERENCE=1
 * rewrites it first). */
static void check_generated(const char *relpath, void (*write)(FILE *))
{
    char *generated = NULL;
    size_t glen = 0;
    FILE *mem = open_memstream(&generated, &glen);
    assert_non_null(mem);
    write(mem);
    fclose(mem);

    char path[1024];
    const char *src = getenv("DC_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/%s", src != NULL ? src : ".", relpath);
    const char *update = getenv("DC_UPDATE_REFERENCE");
    if (update != NULL && strcmp(update, "1") == 0) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fwrite(generated, 1, glen, f);
        fclose(f);
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        free(generated);
        skip(); /* run from elsewhere without DC_SOURCE_DIR */
        return;
    }
    char *committed = malloc(glen + 2);
    size_t clen = fread(committed, 1, glen + 1, f);
    fclose(f);
    committed[clen] = '\0';
    bool same = clen == glen && memcmp(committed, generated, glen) == 0;
    free(committed);
    free(generated);
    if (!same)
        fail_msg("%s is out of date with proxy/config/tables.c; regenerate with DC_UPDATE_REFERENCE=1", path);
}

static void test_reference_up_to_date(void **state)
{
    (void)state;
    check_generated("conf/REFERENCE.md", dc__config_write_reference);
}

/* man/dexcache.yaml.5 and man/dexcache.8 come from the same tables as conf/REFERENCE.md. */
static void test_man_pages_up_to_date(void **state)
{
    (void)state;
    check_generated("man/dexcache.yaml.5", dc__config_write_man5);
    check_generated("man/dexcache.8", dc__config_write_man8);
}

int main(void)
{
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_rate),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_expand_env),
        cmocka_unit_test(test_parse_cidr_and_bool),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_cdn_purge),
        cmocka_unit_test(test_rule_policy_keys),
        cmocka_unit_test(test_route_match),
        cmocka_unit_test(test_cache_rule_match),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_reference_up_to_date),
        cmocka_unit_test(test_man_pages_up_to_date),
    };
    size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), nbad = sizeof(bad_cases) / sizeof(bad_cases[0]);
    /* one named test per bad config, so a failure names the case */
    struct CMUnitTest *tests = calloc(nfixed + nbad, sizeof(*tests));
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < nbad; i++) {
        tests[nfixed + i] = (struct CMUnitTest){
            .name = bad_cases[i].name, .test_func = test_bad_config, .initial_state = (void *)&bad_cases[i]};
    }
    int failed = _cmocka_run_group_tests("config", tests, nfixed + nbad, NULL, NULL);
    free(tests);
    return failed;
}
