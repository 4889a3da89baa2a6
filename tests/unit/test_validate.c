/* cache/validate.h: JSON pointers (RFC 6901), payload timestamps, the body checks of a rule, and the
 * config keys that fill a rule (validate, validate_rules, fail_statuses, payload_time, absent_ids). */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <string.h>

#include "cache/validate.h"
#include "config/config.h"
#include "core/error.h"

static const char *DOC = "{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,\"g|h\":4,\"i\\\\j\":5,"
                         "\"k\\\"l\":6,\" \":7,\"m~n\":8,\"arr\":[[1,{\"x\":null}]]}";

static void test_pointer_rfc6901_examples(void **state)
{
    (void)state;
    cJSON *root = cJSON_Parse(DOC);
    assert_non_null(root);
    assert_ptr_equal(dc_json_pointer_get(root, ""), root);
    assert_true(cJSON_IsArray(dc_json_pointer_get(root, "/foo")));
    assert_string_equal(dc_json_pointer_get(root, "/foo/0")->valuestring, "bar");
    static const struct {
        const char *p;
        int v;
    } nums[] = {{"/", 0},     {"/a~1b", 1}, {"/c%d", 2}, {"/e^f", 3}, {"/g|h", 4},
                {"/i\\j", 5}, {"/k\"l", 6}, {"/ ", 7},   {"/m~0n", 8}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        const cJSON *v = dc_json_pointer_get(root, nums[i].p);
        assert_non_null(v);
        assert_int_equal(v->valueint, nums[i].v);
    }
    assert_true(cJSON_IsNull(dc_json_pointer_get(root, "/arr/0/1/x")));
    /* absent: missing member, index past the end, "-", leading zeros, not a number, into a scalar */
    const char *absent[] = {"/nope", "/foo/2", "/foo/-", "/foo/01", "/foo/x", "/foo/0/0", "/a/b", "/arr/0/1/x/y"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
        assert_null(dc_json_pointer_get(root, absent[i]));
    /* invalid syntax never resolves */
    assert_false(dc_json_pointer_valid("foo"));
    assert_false(dc_json_pointer_valid("/a~2"));
    assert_false(dc_json_pointer_valid("/a~"));
    assert_true(dc_json_pointer_valid("/a~0~1"));
    assert_null(dc_json_pointer_get(root, "foo"));
    cJSON_Delete(root);
}

static void test_rfc3339(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(dc_rfc3339_parse_ms("1970-01-01T00:00:00Z", 20, &ms), 0);
    assert_int_equal(ms, 0);
    const char *s = "2024-06-05T08:55:25.527Z";
    assert_int_equal(dc_rfc3339_parse_ms(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 1717577725527LL);
    s = "2024-06-05T10:55:25.527+02:00";
    assert_int_equal(dc_rfc3339_parse_ms(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 1717577725527LL);
    s = "2024-06-05 08:55:25z";
    assert_int_equal(dc_rfc3339_parse_ms(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 1717577725000LL);
    s = "2000-02-29T00:00:00-00:30";
    assert_int_equal(dc_rfc3339_parse_ms(s, strlen(s), &ms), 0);
    assert_int_equal(ms, 951782400000LL + 1800000);
    const char *bad[] = {
        "2024-06-05T08:55:25",   "2024-13-05T08:55:25Z",     "2024-06-32T08:55:25Z",     "2024-06-05T24:00:00Z",
        "2024-06-05T08:55:25.Z", "2024-06-05T08:55:25+0200", "2024-06-05T08:55:25Zjunk", "yesterday",
        "2024-06-05X08:55:25Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(dc_rfc3339_parse_ms(bad[i], strlen(bad[i]), &ms), DC_EINVAL);
}

static int64_t ts_of(const char *json)
{
    cJSON *v = cJSON_Parse(json);
    int64_t ms = -1;
    if (dc_payload_time_ms(v, &ms) != 0)
        ms = -1;
    cJSON_Delete(v);
    return ms;
}

static void test_payload_time(void **state)
{
    (void)state;
    assert_int_equal(ts_of("1717577725"), 1717577725000LL);     /* seconds */
    assert_int_equal(ts_of("1717577725.5"), 1717577725500LL);   /* fractional seconds */
    assert_int_equal(ts_of("1717577725527"), 1717577725527LL);  /* milliseconds */
    assert_int_equal(ts_of("\"1717577725\""), 1717577725000LL); /* as a string */
    assert_int_equal(ts_of("\"1970-01-01T00:00:01Z\""), 1000);  /* RFC 3339 */
    assert_int_equal(ts_of("99999999999"), 99999999999000LL);   /* just below the ms threshold */
    assert_int_equal(ts_of("100000000000"), 100000000000LL);    /* from 1e11 on: ms */
    assert_int_equal(ts_of("-5"), -1);
    assert_int_equal(ts_of("true"), -1);
    assert_int_equal(ts_of("null"), -1);
    assert_int_equal(ts_of("\"12x\""), -1);
    assert_int_equal(ts_of("1e300"), -1);
    assert_int_equal(dc_payload_time_ms(NULL, &(int64_t){0}), DC_EINVAL);
}

static dc_config_t *load(const char *rule_yaml, char *err, size_t errlen)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "listen: [\"127.0.0.1:1\"]\n"
             "upstreams: { u: { url: \"http://127.0.0.1:2\" } }\n"
             "routes:\n"
             "  - prefix: /p\n"
             "    upstream: u\n"
             "    cache:\n"
             "      - %s\n"
             "    batch: { path: /price/v3, param: ids, absent_ids: refetch }\n",
             rule_yaml);
    dc_config_t *cfg = NULL;
    err[0] = '\0';
    if (dc_config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, errlen) != 0)
        return NULL;
    return cfg;
}

static void test_rule_checks(void **state)
{
    (void)state;
    char err[512];
    dc_config_t *cfg = load("{ path: /, ttl: 1s, validate_rules: [{ pointer: /error, absent: true }, "
                            "{ pointer: /data, nonempty_array: true }, { pointer: /ok, present: true }], "
                            "payload_time: /ts, max_payload_age: 30s, fail_statuses: [400, 503] }",
                            err, sizeof(err));
    assert_non_null(cfg);
    const dc_config_cache_rule_t *r = &cfg->routes[0].cache[0];
    assert_int_equal(cfg->routes[0].batch.absent_ids, DC_ABSENT_IDS_REFETCH);
    assert_true(dc_validate_wants_body(r));
    assert_true(dc_validate_status_fails(r, 400));
    assert_true(dc_validate_status_fails(r, 503));
    assert_false(dc_validate_status_fails(r, 200));
    assert_false(dc_validate_status_fails(r, 404));
    assert_false(dc_validate_status_fails(r, 9999));
    uint64_t now = 1717577725000ULL;
    char why[256];
    static const struct {
        const char *body;
        const char *reason; /* NULL = passes */
    } cases[] = {
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725}", NULL},
        {"{\"ok\":null,\"data\":[{}],\"ts\":1717577700000}", NULL},         /* 25 s old, in ms */
        {"{\"ok\":1,\"data\":[1],\"ts\":\"2024-06-05T08:55:00Z\"}", NULL},  /* 25 s old */
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577750}", NULL},                /* 25 s ahead: clock skew */
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577999}", "/ts in the future"}, /* 274 s ahead: no clock */
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725} \n", NULL},             /* whitespace after: fine */
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725} xx", "not JSON (bytes after the value)"},
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725}{}", "not JSON (bytes after the value)"},
        {"{\"ok\":1,\"data\":[1],\"data\":[],\"ts\":1717577725}", "/data: a member on the way is named twice"},
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725,\"ts\":1}", "/ts not a timestamp"},
        {"{\"error\":\"x\",\"ok\":1,\"data\":[1],\"ts\":1717577725}", "/error present"},
        {"{\"error\":null,\"ok\":1,\"data\":[1],\"ts\":1717577725}", "/error present"},
        {"{\"ok\":1,\"data\":[],\"ts\":1717577725}", "/data not a non-empty array"},
        {"{\"ok\":1,\"data\":{\"a\":1},\"ts\":1717577725}", "/data not a non-empty array"},
        {"{\"data\":[1],\"ts\":1717577725}", "/ok absent"},
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577694}", "/ts older than max_payload_age"}, /* 31 s */
        {"{\"ok\":1,\"data\":[1]}", "/ts not a timestamp"},
        {"{\"ok\":1,\"data\":[1],\"ts\":\"soon\"}", "/ts not a timestamp"},
        {"{\"ok\":1,\"data\":[1],\"ts\":1717577725", "not JSON"},
        {"", "not JSON"},
        {"<html>", "not JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = dc_validate_body(r, cases[i].body, strlen(cases[i].body), now, why, sizeof(why));
        if (cases[i].reason == NULL) {
            assert_int_equal(rc, 0);
            assert_string_equal(why, "");
        } else {
            assert_int_equal(rc, DC_EINVAL);
            assert_string_equal(why, cases[i].reason);
        }
    }
    dc_config_release(cfg);

    /* validate: json alone; no validation at all */
    cfg = load("{ path: /, ttl: 1s, validate: json }", err, sizeof(err));
    assert_non_null(cfg);
    r = &cfg->routes[0].cache[0];
    assert_int_equal(dc_validate_body(r, "[1]", 3, now, why, sizeof(why)), 0);
    assert_int_equal(dc_validate_body(r, "[1", 2, now, why, sizeof(why)), DC_EINVAL);
    dc_config_release(cfg);
    cfg = load("{ path: /, ttl: 1s }", err, sizeof(err));
    assert_non_null(cfg);
    r = &cfg->routes[0].cache[0];
    assert_false(dc_validate_wants_body(r));
    assert_int_equal(dc_validate_body(r, "[1", 2, now, why, sizeof(why)), 0);
    assert_int_equal(cfg->routes[0].batch.absent_ids, DC_ABSENT_IDS_REFETCH);
    dc_config_release(cfg);
}

static void test_bad_config(void **state)
{
    (void)state;
    char err[512];
    static const struct {
        const char *rule;
        const char *want; /* part of the error */
    } bad[] = {
        {"{ path: /, ttl: 1s, validate_rules: [{ pointer: error, absent: true }] }", "expected a JSON pointer"},
        {"{ path: /, ttl: 1s, validate_rules: [{ pointer: /a~2, absent: true }] }", "expected a JSON pointer"},
        {"{ path: /, ttl: 1s, validate_rules: [{ pointer: /a }] }", "exactly one of absent, present, nonempty_array"},
        {"{ path: /, ttl: 1s, validate_rules: [{ pointer: /a, absent: true, present: true }] }", "exactly one of"},
        {"{ path: /, ttl: 1s, validate_rules: [{ absent: true }] }", "pointer"},
        {"{ path: /, ttl: 1s, fail_statuses: [600] }", "expected an HTTP status from 100 to 599"},
        {"{ path: /, ttl: 1s, fail_statuses: [4000] }", "expected an HTTP status from 100 to 599"},
        {"{ path: /, ttl: 1s, payload_time: /ts }", "expected payload_time and max_payload_age together"},
        {"{ path: /, ttl: 1s, max_payload_age: 3s }", "expected payload_time and max_payload_age together"},
        {"{ path: /, ttl: 1s, validate: yaml }", "validate"},
        {"{ path: /, ttl: 1s, validate_rules: [{ pointer: /a, absent: true, bogus: 1 }] }", "bogus"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dc_config_t *cfg = load(bad[i].rule, err, sizeof(err));
        if (cfg != NULL)
            fail_msg("accepted: %s", bad[i].rule);
        if (strstr(err, bad[i].want) == NULL)
            fail_msg("%s: error '%s' lacks '%s'", bad[i].rule, err, bad[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pointer_rfc6901_examples),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_payload_time),
        cmocka_unit_test(test_rule_checks),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
