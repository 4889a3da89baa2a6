/* Unit tests for cache/policy.h: Cache-Control and HTTP-date parsing, storability and lifetimes,
 * freshness at a given time. Time is always injected (NOW). */
#include "cmocka_prelude.h"

#include <stdio.h>
#include <string.h>

#include "cache/policy.h"

#define NOW UINT64_C(1700000000000) /* 2023-11-14T22:13:20Z, in ms */
#define NOW_S INT64_C(1700000000)
#define DELTA_MAX INT64_C(2147483648)

/* ---- helpers ---------------------------------------------------------------------------------- */

static dc_cc_t cc_of(const char *v)
{
    dc_cc_t cc;
    dc_cc_init(&cc);
    dc_cc_parse(v, strlen(v), &cc);
    return cc;
}

static int64_t date_of(const char *v)
{
    return dc_http_date_parse(v, strlen(v));
}

/* ttl 10s, swr 20s, sie 60s, negative 5s, origin ignored, not public */
static dc_config_cache_rule_t rule_default(void)
{
    dc_config_cache_rule_t r;
    memset(&r, 0, sizeof(r));
    r.ttl_ms = 10000;
    r.stale_while_revalidate_ms = 20000;
    r.stale_if_error_ms = 60000;
    r.negative_ttl_ms = 5000;
    return r;
}

static dc_policy_request_t req_get(void)
{
    dc_policy_request_t q = {.method_cacheable = true};
    return q;
}

static dc_policy_response_t res_ok(void)
{
    dc_policy_response_t r;
    memset(&r, 0, sizeof(r));
    r.status = 200;
    dc_cc_init(&r.cc);
    r.expires_s = -1;
    r.date_s = -1;
    r.age_s = -1;
    r.last_modified_s = -1;
    dc_cc_init(&r.dcc);
    dc_cc_init(&r.cdncc);
    r.complete = true;
    return r;
}

static void res_cc(dc_policy_response_t *r, const char *v)
{
    r->has_cc = true;
    dc_cc_parse(v, strlen(v), &r->cc);
}

static dc_policy_decision_t decide(const dc_config_cache_rule_t *rule, const dc_policy_request_t *q,
                                   const dc_policy_response_t *r)
{
    dc_policy_decision_t d;
    memset(&d, 0xa5, sizeof(d)); /* every field must be written */
    dc_policy_decide(rule, q, r, NOW, &d);
    return d;
}

static void assert_times(const dc_policy_decision_t *d, uint64_t fresh, uint64_t swr, uint64_t sie)
{
    assert_int_equal(d->fresh_until_ms, NOW + fresh);
    assert_int_equal(d->swr_until_ms, NOW + fresh + swr);
    assert_int_equal(d->sie_until_ms, NOW + fresh + sie);
    assert_int_equal(d->keep_until_ms, NOW + fresh + (swr > sie ? swr : sie));
}

static void assert_refused(const dc_policy_decision_t *d, dc_policy_verdict_t v)
{
    assert_int_equal(d->verdict, v);
    assert_int_equal(d->fresh_until_ms, NOW);
    assert_int_equal(d->keep_until_ms, NOW);
}

/* ---- Cache-Control ---------------------------------------------------------------------------- */

static void test_cc_init(void **state)
{
    dc_cc_t cc = cc_of("");
    assert_false(cc.no_store || cc.no_cache || cc.private_ || cc.public_ || cc.must_revalidate || cc.proxy_revalidate ||
                 cc.immutable || cc.only_if_cached);
    assert_int_equal(cc.max_age, -1);
    assert_int_equal(cc.s_maxage, -1);
    assert_int_equal(cc.stale_while_revalidate, -1);
    assert_int_equal(cc.stale_if_error, -1);
    assert_int_equal(cc.max_stale, -1);
    assert_int_equal(cc.min_fresh, -1);
}

static void test_cc_all_directives(void **state)
{
    dc_cc_t cc = cc_of("no-store, no-cache, private, public, must-revalidate, proxy-revalidate, immutable, "
                       "only-if-cached, max-age=1, s-maxage=2, stale-while-revalidate=3, stale-if-error=4, "
                       "max-stale=5, min-fresh=6");
    assert_true(cc.no_store && cc.no_cache && cc.private_ && cc.public_ && cc.must_revalidate && cc.proxy_revalidate &&
                cc.immutable && cc.only_if_cached);
    assert_int_equal(cc.max_age, 1);
    assert_int_equal(cc.s_maxage, 2);
    assert_int_equal(cc.stale_while_revalidate, 3);
    assert_int_equal(cc.stale_if_error, 4);
    assert_int_equal(cc.max_stale, 5);
    assert_int_equal(cc.min_fresh, 6);
}

static void test_cc_case_and_whitespace(void **state)
{
    dc_cc_t cc = cc_of("  MAX-AGE=60 ,\tNo-Cache  ,PRIVATE\t,S-MaxAge=7");
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 7);
    assert_true(cc.no_cache);
    assert_true(cc.private_);
    /* OWS around "=" is tolerated (not in the grammar, but harmless) */
    assert_int_equal(cc_of("max-age = 60").max_age, 60);
    assert_int_equal(cc_of("max-age\t=\t61").max_age, 61);
}

static void test_cc_quoted_values(void **state)
{
    /* qualified private / no-cache: field-name lists, not the whole response */
    dc_cc_t cc = cc_of("private=\"set-cookie\", no-cache=\"x\", max-age=\"60\"");
    assert_false(cc.private_);
    assert_false(cc.no_cache);
    assert_true(cc.private_fields && cc.no_cache_fields);
    assert_int_equal(cc.max_age, 60);
    /* quoted but not a number, or empty: invalid (stale) */
    assert_int_equal(cc_of("max-age=\"6 0\"").max_age, DC_CC_INVALID);
    assert_int_equal(cc_of("max-age=\"\"").max_age, DC_CC_INVALID);
    assert_int_equal(cc_of("max-age=\"\\6\"").max_age, DC_CC_INVALID);
    /* an empty qualified list counts as the unqualified directive */
    assert_true(cc_of("no-cache=\"\"").no_cache);
}

static void test_cc_commas_in_quotes(void **state)
{
    dc_cc_t cc = cc_of("no-cache=\"set-cookie, max-age=5\", s-maxage=7");
    assert_true(cc.no_cache_fields && !cc.no_cache);
    assert_int_equal(cc.max_age, -1);
    assert_int_equal(cc.s_maxage, 7);
    /* escaped quote inside a quoted string does not end it */
    cc = cc_of("ext=\"a\\\",max-age=9,b\", max-age=3");
    assert_int_equal(cc.max_age, 3);
    /* a junk element with quotes is skipped as a whole */
    cc = cc_of("junk junk=\"x, no-store\", min-fresh=2");
    assert_false(cc.no_store);
    assert_int_equal(cc.min_fresh, 2);
}

static void test_cc_unterminated_quote(void **state)
{
    dc_cc_t cc = cc_of("private=\"abc, max-age=5");
    assert_true(cc.private_); /* malformed qualified form: the whole response */
    assert_int_equal(cc.max_age, -1);
    cc = cc_of("max-age=\"5");
    assert_int_equal(cc.max_age, DC_CC_INVALID);
    cc = cc_of("no-store=\"\\");
    assert_true(cc.no_store);
}

static void test_cc_malformed_numbers(void **state)
{
    static const char *const bad[] = {
        "max-age=abc", "max-age=-1",  "max-age=+5",   "max-age=",   "max-age=1.5", "max-age",
        "max-age=5x",  "max-age=5 6", "max-age=0x10", "max-age==5", "max-age=5;",  "max-age=\"5\"x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dc_cc_t cc = cc_of(bad[i]);
        if (cc.max_age != DC_CC_INVALID)
            fail_msg("\"%s\" gave max-age %lld", bad[i], (long long)cc.max_age);
    }
    /* a malformed directive does not hide the next one */
    dc_cc_t cc = cc_of("max-age=5x, s-maxage=4");
    assert_int_equal(cc.max_age, DC_CC_INVALID);
    assert_int_equal(cc.s_maxage, 4);
    /* stale-while-revalidate needs a value */
    assert_int_equal(cc_of("stale-while-revalidate").stale_while_revalidate, -1);
}

static void test_cc_overflow(void **state)
{
    assert_int_equal(cc_of("max-age=2147483647").max_age, 2147483647);
    assert_int_equal(cc_of("max-age=2147483648").max_age, DELTA_MAX);
    assert_int_equal(cc_of("max-age=2147483649").max_age, DELTA_MAX);
    assert_int_equal(cc_of("max-age=99999999999999999999999999999999999999").max_age, DELTA_MAX);
    /* leading zeros are not an overflow */
    assert_int_equal(cc_of("max-age=0000000000000000000000000000060").max_age, 60);
    assert_int_equal(cc_of("max-age=0").max_age, 0);
}

static void test_cc_duplicates_first_wins(void **state)
{
    assert_int_equal(cc_of("max-age=10, max-age=20").max_age, 10);
    /* max-age / s-maxage: the first occurrence, valid or not (RFC 9111 4.2.1) */
    assert_int_equal(cc_of("max-age=bad, max-age=20").max_age, DC_CC_INVALID);
    assert_int_equal(cc_of("max-age=1a, max-age=20").max_age, DC_CC_INVALID);
    /* the extensions: the first well-formed one */
    assert_int_equal(cc_of("stale-if-error=x, stale-if-error=20").stale_if_error, 20);
    dc_cc_t cc = cc_of("no-store, no-store, s-maxage=1, s-maxage=0");
    assert_true(cc.no_store);
    assert_int_equal(cc.s_maxage, 1);
}

static void test_cc_merge_lines(void **state)
{
    dc_cc_t cc;
    dc_cc_init(&cc);
    dc_cc_parse("max-age=10", strlen("max-age=10"), &cc);
    const char *line2 = "no-cache, max-age=99, stale-if-error=30";
    dc_cc_parse(line2, strlen(line2), &cc);
    assert_int_equal(cc.max_age, 10);
    assert_true(cc.no_cache);
    assert_int_equal(cc.stale_if_error, 30);
    /* same directives on one line, comma-joined */
    dc_cc_t one = cc_of("max-age=10, no-cache, max-age=99, stale-if-error=30");
    assert_memory_equal(&cc, &one, sizeof(cc));
}

static void test_cc_empty_and_garbage(void **state)
{
    static const char *const nothing[] = {"",           ",",          ",,, ,\t,",   "=",
                                          "=5",         "@@@",        "\"quoted\"", "  \"a,b\"  ",
                                          "max-agex=5", "xmax-age=5", "max_age=5",  "no store"};
    dc_cc_t none = cc_of("");
    for (size_t i = 0; i < sizeof(nothing) / sizeof(nothing[0]); i++) {
        dc_cc_t cc = cc_of(nothing[i]);
        if (memcmp(&cc, &none, sizeof(cc)) != 0)
            fail_msg("\"%s\" set something", nothing[i]);
    }
    dc_cc_t cc = cc_of("@@ junk, ,max-age=5, \x01\x02, =7, public");
    assert_int_equal(cc.max_age, 5);
    assert_true(cc.public_);
}

static void test_cc_flag_with_junk(void **state)
{
    /* a restrictive flag counts whatever follows its name in its element */
    assert_true(cc_of("no-store junk").no_store);
    assert_true(cc_of("no-store=1").no_store);
    assert_true(cc_of("private=set-cookie").private_fields); /* token form of the qualified directive */
    assert_true(cc_of("private=\"a\" junk").private_);       /* malformed: unqualified */
    assert_false(cc_of("no-storex").no_store);
    assert_false(cc_of("x-no-store").no_store);
}

static void test_cc_max_stale_bare(void **state)
{
    assert_int_equal(cc_of("max-stale").max_stale, DELTA_MAX);
    assert_int_equal(cc_of("max-stale=30").max_stale, 30);
    assert_int_equal(cc_of("max-stale=x").max_stale, -1);
}

static void test_cc_length_bounded(void **state)
{
    dc_cc_t cc;
    dc_cc_init(&cc);
    dc_cc_parse("max-age=600", 9, &cc); /* "max-age=6" */
    assert_int_equal(cc.max_age, 6);
    dc_cc_init(&cc);
    dc_cc_parse("no-store", 5, &cc); /* "no-st" */
    assert_false(cc.no_store);
    dc_cc_init(&cc);
    dc_cc_parse(NULL, 0, &cc);
    assert_int_equal(cc.max_age, -1);
    /* an embedded NUL is just an invalid byte */
    dc_cc_init(&cc);
    dc_cc_parse("max-age=5\0, no-store", 20, &cc);
    assert_int_equal(cc.max_age, DC_CC_INVALID);
    assert_true(cc.no_store);
}

/* ---- HTTP-date -------------------------------------------------------------------------------- */

#define RFC_EXAMPLE INT64_C(784111777) /* Sun, 06 Nov 1994 08:49:37 GMT */

static void test_date_imf_fixdate(void **state)
{
    assert_int_equal(date_of("Sun, 06 Nov 1994 08:49:37 GMT"), RFC_EXAMPLE);
    assert_int_equal(date_of("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(date_of("Tue, 14 Nov 2023 22:13:20 GMT"), NOW_S);
    assert_int_equal(date_of("Fri, 31 Dec 9999 23:59:59 GMT"), INT64_C(253402300799));
    assert_int_equal(date_of("Tue, 29 Feb 2000 12:00:00 GMT"), INT64_C(951825600));
    assert_int_equal(date_of("Sat, 01 Mar 2100 00:00:00 GMT"), INT64_C(4107542400));
}

static void test_date_rfc850(void **state)
{
    assert_int_equal(date_of("Sunday, 06-Nov-94 08:49:37 GMT"), RFC_EXAMPLE);
    assert_int_equal(date_of("Thursday, 01-Jan-70 00:00:00 GMT"), 0);
    /* two-digit year pivot: 00..69 -> 20xx, 70..99 -> 19xx */
    assert_int_equal(date_of("Tuesday, 14-Nov-23 22:13:20 GMT"), NOW_S);
    assert_int_equal(date_of("Wednesday, 31-Dec-69 23:59:59 GMT"), date_of("Tue, 31 Dec 2069 23:59:59 GMT"));
    assert_int_equal(date_of("Friday, 31-Dec-99 23:59:59 GMT"), date_of("Fri, 31 Dec 1999 23:59:59 GMT"));
    /* the short day name or a four-digit year is not this format */
    assert_int_equal(date_of("Sun, 06-Nov-94 08:49:37 GMT"), -1);
    assert_int_equal(date_of("Sunday, 06-Nov-1994 08:49:37 GMT"), -1);
}

static void test_date_asctime(void **state)
{
    assert_int_equal(date_of("Sun Nov  6 08:49:37 1994"), RFC_EXAMPLE);
    assert_int_equal(date_of("Sun Nov 06 08:49:37 1994"), RFC_EXAMPLE);
    assert_int_equal(date_of("Tue Nov 14 22:13:20 2023"), NOW_S);
    assert_int_equal(date_of("Sun Nov 6 08:49:37 1994"), -1);
    assert_int_equal(date_of("Sun Nov  6 08:49:37 1994 GMT"), -1);
    assert_int_equal(date_of("Sun Nov  6 08:49:37 94"), -1);
}

static void test_date_case_and_ows(void **state)
{
    assert_int_equal(date_of("sun, 06 nov 1994 08:49:37 gmt"), RFC_EXAMPLE);
    assert_int_equal(date_of("SUNDAY, 06-NOV-94 08:49:37 GMT"), RFC_EXAMPLE);
    assert_int_equal(date_of("sUN nOV  6 08:49:37 1994"), RFC_EXAMPLE);
    assert_int_equal(date_of(" \tSun, 06 Nov 1994 08:49:37 GMT\t "), RFC_EXAMPLE);
    /* the weekday is not checked against the date, only that it is a day name */
    assert_int_equal(date_of("Mon, 06 Nov 1994 08:49:37 GMT"), RFC_EXAMPLE);
    assert_int_equal(date_of("Xyz, 06 Nov 1994 08:49:37 GMT"), -1);
}

static void test_date_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "garbage",
        "0",
        "-1",
        "1700000000",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "Sun, 06 Nov 1994 08:49:37 GMT GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
        "Sun,  06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Apr 1994 08:49:37 GMT",
        "Sun, 29 Feb 1995 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 32 Jan 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Wed, 31 Dec 1969 23:59:59 GMT",
        "Sat, 01 Jan 0000 00:00:00 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nov 1994 08:49:3a GMT",
        "Sunday, 06-Nov-94 08:49:37",
        "Sunday 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37",
        "Sun Nov   6 08:49:37 1994",
        "Sun Nov 31 08:49:37 1994",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t = date_of(bad[i]);
        if (t != -1)
            fail_msg("\"%s\" parsed as %lld", bad[i], (long long)t);
    }
}

static void test_date_truncations(void **state)
{
    /* every proper prefix of a valid date is invalid, and nothing is read past len */
    static const char *const good[] = {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                                       "Sun Nov  6 08:49:37 1994"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(good[i]);
        for (size_t k = 0; k < n; k++) {
            char buf[64];
            memcpy(buf, good[i], k);
            buf[k] = '7'; /* a digit right past the end must not be seen */
            if (dc_http_date_parse(buf, k) != -1)
                fail_msg("prefix %zu of \"%s\" parsed", k, good[i]);
        }
        assert_int_equal(dc_http_date_parse(good[i], n), RFC_EXAMPLE);
    }
    assert_int_equal(dc_http_date_parse(NULL, 0), -1);
}

static void test_date_leap_second(void **state)
{
    assert_int_equal(date_of("Sat, 31 Dec 2016 23:59:60 GMT"), date_of("Sun, 01 Jan 2017 00:00:00 GMT"));
    /* but not out of the supported range (found by the fuzzer) */
    assert_int_equal(date_of("Fri, 31 Dec 9999 23:59:60 GMT"), -1);
}

static void test_date_format(void **state)
{
    char buf[30];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(dc_http_date_format(RFC_EXAMPLE, buf), 29);
    assert_string_equal(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    dc_http_date_format(0, buf);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    dc_http_date_format(NOW_S, buf);
    assert_string_equal(buf, "Tue, 14 Nov 2023 22:13:20 GMT");
    dc_http_date_format(INT64_C(951825600), buf);
    assert_string_equal(buf, "Tue, 29 Feb 2000 12:00:00 GMT");
    /* out of range is clamped to 1970..9999 */
    dc_http_date_format(-5, buf);
    assert_string_equal(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(dc_http_date_format(INT64_MAX, buf), 29);
    assert_string_equal(buf, "Fri, 31 Dec 9999 23:59:59 GMT");
}

static void test_date_roundtrip(void **state)
{
    /* parse(format(t)) == t across the whole range, including the first and last second of days,
     * leap days and century years */
    char buf[30];
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t t = (int64_t)(x % UINT64_C(253402300800));
        if (i % 3 == 0)
            t -= t % 86400;
        else if (i % 3 == 1)
            t += 86399 - t % 86400;
        assert_int_equal(dc_http_date_format(t, buf), 29);
        if (date_of(buf) != t)
            fail_msg("%lld -> \"%s\" -> %lld", (long long)t, buf, (long long)date_of(buf));
    }
    /* and weekdays are right on known dates */
    dc_http_date_format(date_of("Sun, 01 Jan 2017 00:00:00 GMT") + 86400 * 59, buf);
    assert_string_equal(buf, "Wed, 01 Mar 2017 00:00:00 GMT");
}

/* ---- dc_policy_decide: refusals --------------------------------------------------------------- */

static void test_decide_no_rule(void **state)
{
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(NULL, &q, &r);
    assert_refused(&d, DC_POLICY_NO_RULE);
}

static void test_decide_method(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    q.method_cacheable = false;
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_METHOD);
}

static void test_decide_authorization(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    q.has_authorization = true;
    dc_policy_response_t r = res_ok();
    res_cc(&r, "public, s-maxage=60"); /* origin consent does not lift it: only the rule does */
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_AUTHORIZATION);
}

static void test_decide_authorization_public_rule(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.is_public = true;
    dc_policy_request_t q = req_get();
    q.has_authorization = true;
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 10000, 20000, 60000);
}

static void test_decide_positive_statuses(void **state)
{
    static const int ok[] = {200, 203, 204, 300, 301, 308};
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        dc_policy_response_t r = res_ok();
        r.status = ok[i];
        dc_policy_decision_t d = decide(&rule, &q, &r);
        assert_int_equal(d.verdict, DC_POLICY_STORE);
        assert_false(d.negative);
        assert_false(d.no_stale);
        assert_times(&d, 10000, 20000, 60000);
    }
}

static void test_decide_uncacheable_statuses(void **state)
{
    static const int no[] = {0,   100, 101, 103, 199, 201, 202, 205, 206, 207, 226, 302, 303, 304, 305, 307,
                             401, 402, 403, 406, 408, 409, 413, 415, 429, 500, 502, 503, 504, 599, 999};
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        dc_policy_response_t r = res_ok();
        r.status = no[i];
        dc_policy_decision_t d = decide(&rule, &q, &r);
        if (d.verdict != DC_POLICY_STATUS)
            fail_msg("status %d: verdict %s", no[i], dc_policy_verdict_name(d.verdict));
        assert_int_equal(d.negative, no[i] >= 400);
    }
}

static void test_decide_negative(void **state)
{
    static const int neg[] = {400, 404, 405, 410, 414, 451, 501};
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    for (size_t i = 0; i < sizeof(neg) / sizeof(neg[0]); i++) {
        dc_policy_response_t r = res_ok();
        r.status = neg[i];
        dc_policy_decision_t d = decide(&rule, &q, &r);
        assert_int_equal(d.verdict, DC_POLICY_STORE);
        assert_true(d.negative);
        assert_times(&d, 5000, 20000, 60000);
    }
}

static void test_decide_negative_ttl_zero(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.negative_ttl_ms = 0;
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.status = 404;
    dc_policy_decision_t d = decide(&rule, &q, &r); /* the origin says nothing: not stored */
    assert_refused(&d, DC_POLICY_STATUS);
    assert_true(d.negative);
    /* an origin lifetime makes it storable under respect_origin (RFC 9111 3) */
    res_cc(&r, "max-age=60");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 60000, 20000, 60000);
    /* not without respect_origin */
    rule.respect_origin = false;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_STATUS);
}

static void test_decide_negative_respect_origin(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.status = 410;
    res_cc(&r, "max-age=30");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_true(d.negative);
    assert_times(&d, 30000, 20000, 60000);
}

static void test_decide_no_store(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=60, no-store");
    dc_policy_decision_t d = decide(&rule, &q, &r); /* respect_origin off: still refused */
    assert_refused(&d, DC_POLICY_NO_STORE);
    rule.respect_origin = true;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_NO_STORE);
}

static void test_decide_private(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "private");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_PRIVATE);
    r = res_ok();
    /* qualified private (RFC 9111 5.2.2.7): stored, the named fields are not (strip_fields) */
    res_cc(&r, "max-age=60, private=\"x-user\"");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_true(d.strip_fields);
    assert_int_equal(d.cc_source, DC_CC_FROM_CACHE_CONTROL);
}

static void test_decide_set_cookie(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.is_public = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.has_set_cookie = true;
    res_cc(&r, "public, max-age=60");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_SET_COOKIE);
}

static void test_decide_vary(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.vary_star = true;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_VARY);
    r = res_ok();
    r.vary_other = true;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_VARY);
}

static void test_decide_incomplete(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.complete = false;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_INCOMPLETE);
}

static void test_decide_refusal_order(void **state)
{
    /* everything wrong at once: the request side is reported first, then status, then directives */
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    q.method_cacheable = false;
    q.has_authorization = true;
    dc_policy_response_t r = res_ok();
    r.status = 500;
    res_cc(&r, "no-store, private");
    r.has_set_cookie = r.vary_star = true;
    r.complete = false;
    static const dc_policy_verdict_t order[] = {DC_POLICY_METHOD,   DC_POLICY_AUTHORIZATION, DC_POLICY_STATUS,
                                                DC_POLICY_NO_STORE, DC_POLICY_PRIVATE,       DC_POLICY_SET_COOKIE,
                                                DC_POLICY_VARY,     DC_POLICY_INCOMPLETE,    DC_POLICY_STORE};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        dc_policy_decision_t d = decide(&rule, &q, &r);
        assert_int_equal(d.verdict, order[i]);
        switch (order[i]) { /* fix that reason and look again */
        case DC_POLICY_METHOD:
            q.method_cacheable = true;
            break;
        case DC_POLICY_AUTHORIZATION:
            q.has_authorization = false;
            break;
        case DC_POLICY_STATUS:
            r.status = 200;
            break;
        case DC_POLICY_NO_STORE:
            r.cc.no_store = false;
            break;
        case DC_POLICY_PRIVATE:
            r.cc.private_ = false;
            break;
        case DC_POLICY_SET_COOKIE:
            r.has_set_cookie = false;
            break;
        case DC_POLICY_VARY:
            r.vary_star = false;
            break;
        case DC_POLICY_INCOMPLETE:
            r.complete = true;
            break;
        default:
            break;
        }
    }
}

static void test_decide_cc_ignored_without_has_cc(void **state)
{
    /* res->cc is only valid when has_cc */
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.cc.no_store = true;
    r.cc.max_age = 600;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 10000, 20000, 60000);
}

/* ---- dc_policy_decide: lifetimes -------------------------------------------------------------- */

static void test_decide_origin_ignored_without_respect(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=600, s-maxage=300, stale-while-revalidate=1, stale-if-error=2");
    r.expires_s = NOW_S + 1000;
    r.age_s = 5;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 10000, 20000, 60000); /* rule ttl, not minus Age */
    assert_int_equal(d.origin_age_s, 5);   /* but Age is still reported */
}

static void test_decide_respect_max_age(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=600");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 600000, 20000, 60000);
}

static void test_decide_respect_without_origin_lifetime(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "public");
    r.date_s = NOW_S; /* a Date alone gives no lifetime */
    r.age_s = 3;      /* and Age is not subtracted from the rule's ttl */
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 10000, 20000, 60000);
    /* an invalid max-age is invalid freshness information: stale on arrival (RFC 9111 4.2.1) */
    r = res_ok();
    res_cc(&r, "public, max-age=oops");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 20000, 60000);
}

static void test_decide_s_maxage_beats_max_age(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=600, s-maxage=30");
    r.expires_s = NOW_S + 9999;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_true(d.no_stale); /* s-maxage implies proxy-revalidate (RFC 9111 5.2.2.10): no window */
    assert_times(&d, 30000, 0, 0);
    /* s-maxage=0 also wins over a larger max-age: nothing to keep without a validator */
    r = res_ok();
    res_cc(&r, "s-maxage=0, max-age=600");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    /* with one: kept, stale at once, for revalidation */
    r.has_validator = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 0, 0);
}

static void test_decide_max_age_beats_expires(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=7");
    r.expires_s = -2; /* even an invalid Expires */
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_times(&d, 7000, 20000, 60000);
}

static void test_decide_expires_minus_date(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.date_s = NOW_S;
    r.expires_s = NOW_S + 120;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_times(&d, 120000, 20000, 60000);
    /* Expires counts from Date, and an old Date is apparent age (RFC 9111 4.2.3): a Date 1h behind
     * (from the end of its second: 3599 s) leaves nothing of a 120 s lifetime */
    r.date_s = NOW_S - 3600;
    r.expires_s = NOW_S - 3600 + 120;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 3599);
    /* stale for 3479 s already: the rule's 20 s / 60 s windows, counted from then (RFC 5861), are over */
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    assert_times(&d, 0, 0, 0);
    r.date_s = NOW_S;
    r.expires_s = NOW_S + 120;
    /* Cache-Control without a lifetime does not hide Expires */
    res_cc(&r, "public");
    d = decide(&rule, &q, &r);
    assert_times(&d, 120000, 20000, 60000);
}

static void test_decide_expires_without_date(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.expires_s = NOW_S + 42;
    dc_policy_decision_t d;
    dc_policy_decide(&rule, &q, &r, NOW + 250, &d); /* against now, to the ms */
    assert_int_equal(d.fresh_until_ms, NOW + 42000);
    assert_int_equal(d.swr_until_ms, NOW + 42000 + 20000);
}

static void test_decide_expires_past_and_invalid(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    rule.stale_while_revalidate_ms = rule.stale_if_error_ms = 0;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.date_s = NOW_S;
    r.expires_s = NOW_S - 10; /* before Date: lifetime 0, not negative */
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    assert_times(&d, 0, 0, 0);
    r.expires_s = -2;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    /* with a stale window the expired response is still worth keeping */
    rule.stale_if_error_ms = 30000;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 0, 30000);
}

static void test_decide_age_subtracted(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=600");
    r.age_s = 100;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_times(&d, 500000, 20000, 60000);
    assert_int_equal(d.origin_age_s, 100);
    /* Age beyond the lifetime: 0, and the stale windows count from when it became stale (RFC
     * 5861): 10 s past a 600 s lifetime leaves 10 s of the 20 s SWR and 50 s of the 60 s SIE */
    r.age_s = 610;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 10000, 50000);
    r.age_s = 700; /* past both windows: nothing worth keeping */
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    /* also from Expires */
    r = res_ok();
    r.date_s = NOW_S;
    r.expires_s = NOW_S + 60;
    r.age_s = 15;
    d = decide(&rule, &q, &r);
    assert_times(&d, 45000, 20000, 60000);
}

static void test_decide_origin_age_reported(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 0); /* absent */
    r.age_s = INT64_C(1) << 40;          /* capped at 2^31 (RFC 9111 1.2.2) */
    d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, UINT32_C(2147483648));
    /* reported on refusals too */
    r.age_s = 9;
    r.complete = false;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_INCOMPLETE);
    assert_int_equal(d.origin_age_s, 9);
}

static void test_decide_origin_windows(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=5, stale-while-revalidate=100, stale-if-error=7");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_times(&d, 5000, 100000, 7000);
    assert_int_equal(d.keep_until_ms, NOW + 105000);
    /* only the one sent replaces the rule's; 0 is a real value */
    r = res_ok();
    res_cc(&r, "stale-while-revalidate=0");
    d = decide(&rule, &q, &r);
    assert_times(&d, 10000, 0, 60000);
    /* without respect_origin the rule's windows stay */
    rule.respect_origin = false;
    r = res_ok();
    res_cc(&r, "stale-while-revalidate=100, stale-if-error=7");
    d = decide(&rule, &q, &r);
    assert_times(&d, 10000, 20000, 60000);
}

static void test_decide_no_stale_directives(void **state)
{
    static const char *const cc[] = {"must-revalidate", "proxy-revalidate", "no-cache", "no-cache=\"\""};
    dc_policy_request_t q = req_get();
    for (int respect = 0; respect <= 1; respect++) {
        for (size_t i = 0; i < sizeof(cc) / sizeof(cc[0]); i++) {
            dc_config_cache_rule_t rule = rule_default();
            rule.respect_origin = respect;
            dc_policy_response_t r = res_ok();
            res_cc(&r, cc[i]);
            res_cc(&r, "stale-while-revalidate=100, stale-if-error=100");
            dc_policy_decision_t d = decide(&rule, &q, &r);
            assert_true(d.no_stale);
            bool no_cache = strncmp(cc[i], "no-cache", 8) == 0;
            if (no_cache) {                                      /* a lifetime of 0 whatever respect_origin says */
                assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL); /* lifetime 0, no window */
                assert_times(&d, 0, 0, 0);
            } else {
                assert_int_equal(d.verdict, DC_POLICY_STORE);
                assert_times(&d, 10000, 0, 0);
            }
        }
    }
}

static void test_decide_no_stale_with_origin_lifetime(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=60, must-revalidate, stale-if-error=600");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_true(d.no_stale);
    assert_times(&d, 60000, 0, 0);
    /* no-cache beats max-age under respect_origin */
    r = res_ok();
    res_cc(&r, "max-age=60, no-cache");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
}

static void test_decide_pragma(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.pragma_no_cache = true;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    assert_true(d.no_stale);
    /* with Cache-Control present, Pragma is not considered */
    res_cc(&r, "max-age=30");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_false(d.no_stale);
    assert_times(&d, 30000, 20000, 60000);
    /* without respect_origin: like no-cache, a lifetime of 0 (not stored without a validator) */
    rule.respect_origin = false;
    r = res_ok();
    r.pragma_no_cache = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    assert_true(d.no_stale);
    assert_times(&d, 0, 0, 0);
}

static void test_decide_zero_ttl(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.ttl_ms = rule.stale_while_revalidate_ms = rule.stale_if_error_ms = 0;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    assert_times(&d, 0, 0, 0);
    /* ttl 0 with a stale window: kept, served stale right away */
    rule.stale_while_revalidate_ms = 3000;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 3000, 0);
    /* ... unless the origin forbids stale */
    res_cc(&r, "must-revalidate");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
    /* origin max-age=0 under respect_origin with rule windows: kept */
    rule = rule_default();
    rule.respect_origin = true;
    r = res_ok();
    res_cc(&r, "max-age=0");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 0, 20000, 60000);
    /* and both origin windows 0 too: not kept */
    res_cc(&r, "stale-while-revalidate=0, stale-if-error=0");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL);
}

static void test_decide_clamping(void **state)
{
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=99999999999999, stale-if-error=99999999999999");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_times(&d, UINT64_C(2147483648000), 20000, UINT64_C(2147483648000));
    /* Expires far away is capped the same way; absurd Date/Expires values do not wrap */
    r = res_ok();
    r.date_s = NOW_S;
    r.expires_s = INT64_MAX;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.fresh_until_ms, NOW + UINT64_C(2147483648000));
    r.date_s = INT64_MAX;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.fresh_until_ms, NOW);
    /* huge rule values saturate instead of wrapping */
    rule = rule_default();
    rule.ttl_ms = UINT64_MAX - 5;
    rule.stale_if_error_ms = UINT64_MAX;
    r = res_ok();
    d = decide(&rule, &q, &r);
    assert_int_equal(d.fresh_until_ms, UINT64_MAX);
    assert_int_equal(d.sie_until_ms, UINT64_MAX);
    assert_int_equal(d.keep_until_ms, UINT64_MAX);
}

/* ---- issue 15: statuses, ttl 0, heuristic, Age, targeted fields ------------------------------ */

static dc_config_cache_rule_t rule_respect(void)
{
    dc_config_cache_rule_t r = rule_default();
    r.respect_origin = true;
    r.negative_ttl_ms = 0;
    r.heuristic_max_ms = 3600000;
    return r;
}

static void test_decide_any_status_with_explicit_freshness(void **state)
{
    static const int ok[] = {200, 201, 203, 204, 300, 301, 302, 303, 307, 308, 403, 404, 410, 429, 451, 500, 503};
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        dc_policy_response_t r = res_ok();
        r.status = ok[i];
        res_cc(&r, "max-age=5");
        dc_policy_decision_t d = decide(&rule, &q, &r);
        if (d.verdict != DC_POLICY_STORE)
            fail_msg("status %d with max-age: %s", ok[i], dc_policy_verdict_name(d.verdict));
        assert_int_equal(d.fresh_until_ms, NOW + 5000);
        assert_int_equal(d.negative, ok[i] >= 400);
        /* the same with s-maxage, or Expires */
        r = res_ok();
        r.status = ok[i];
        r.date_s = NOW_S;
        r.expires_s = NOW_S + 7;
        d = decide(&rule, &q, &r);
        assert_int_equal(d.verdict, DC_POLICY_STORE);
        assert_int_equal(d.fresh_until_ms, NOW + 7000);
        /* without explicit freshness: only the rule's own statuses (negative_ttl 0 here) */
        r = res_ok();
        r.status = ok[i];
        d = decide(&rule, &q, &r);
        bool rule_status = ok[i] == 200 || ok[i] == 203 || ok[i] == 204 || ok[i] == 300 || ok[i] == 301 || ok[i] == 308;
        assert_int_equal(d.verdict, rule_status ? DC_POLICY_STORE : DC_POLICY_STATUS);
    }
    /* never: 1xx, 206, 304, outside 200..599, whatever the headers */
    static const int never[] = {100, 103, 206, 304, 600, 999};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        dc_policy_response_t r = res_ok();
        r.status = never[i];
        res_cc(&r, "public, max-age=60");
        dc_policy_decision_t d = decide(&rule, &q, &r);
        assert_refused(&d, DC_POLICY_STATUS);
    }
    /* without respect_origin an origin lifetime adds no status */
    rule.respect_origin = false;
    dc_policy_response_t r = res_ok();
    r.status = 503;
    res_cc(&r, "max-age=5");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_STATUS);
}

static void test_decide_public_adds_statuses(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.status = 302;
    res_cc(&r, "public");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 10000, 20000, 60000); /* the rule's ttl */
    r.status = 403;                        /* negative: negative_ttl, 0 here */
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_STATUS);
    rule.negative_ttl_ms = 3000;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 3000, 20000, 60000);
    rule.respect_origin = false; /* public does nothing without respect_origin */
    r.status = 302;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_STATUS);
}

static void test_decide_ttl_zero_origin_decides(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    rule.ttl_ms = 0;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_NO_FRESHNESS); /* windows do not keep it either */
    assert_string_equal(dc_policy_verdict_name(d.verdict), "no-origin-freshness");
    res_cc(&r, "max-age=9");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 9000, 20000, 60000);
    /* a negative status keeps its own rule: negative_ttl */
    r = res_ok();
    r.status = 404;
    rule.negative_ttl_ms = 2000;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 2000, 20000, 60000);
}

static void test_decide_heuristic(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    rule.heuristic = 0.10;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    r.date_s = NOW_S;
    r.last_modified_s = NOW_S - 1000; /* 10% of 1000 s */
    r.has_validator = true;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_true(d.heuristic);
    assert_times(&d, 100000, 20000, 60000);
    /* capped */
    r.last_modified_s = NOW_S - 10 * 86400;
    d = decide(&rule, &q, &r);
    assert_times(&d, 3600000, 20000, 60000);
    /* explicit freshness wins */
    res_cc(&r, "max-age=4");
    d = decide(&rule, &q, &r);
    assert_false(d.heuristic);
    assert_times(&d, 4000, 20000, 60000);
    /* a 404 is heuristically cacheable (even with negative_ttl 0); a 302 is not, unless public */
    r = res_ok();
    r.status = 404;
    r.last_modified_s = NOW_S - 1000;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_int_equal(d.fresh_until_ms, NOW + 100000);
    r.status = 302;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_STATUS);
    res_cc(&r, "public");
    d = decide(&rule, &q, &r);
    assert_int_equal(d.fresh_until_ms, NOW + 100000);
    /* no Last-Modified, or one after Date: the rule's ttl */
    r = res_ok();
    d = decide(&rule, &q, &r);
    assert_false(d.heuristic);
    assert_times(&d, 10000, 20000, 60000);
    r.date_s = NOW_S;
    r.last_modified_s = NOW_S + 5;
    d = decide(&rule, &q, &r);
    assert_times(&d, 10000, 20000, 60000);
    /* with ttl 0 the heuristic is the origin's freshness */
    rule.ttl_ms = 0;
    r.last_modified_s = NOW_S - 50;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 5000, 20000, 60000);
    /* never without respect_origin */
    rule = rule_default();
    rule.heuristic = 0.10;
    rule.heuristic_max_ms = 3600000;
    d = decide(&rule, &q, &r);
    assert_false(d.heuristic);
    assert_times(&d, 10000, 20000, 60000);
}

static void test_age_parse(void **state)
{
    static const struct {
        const char *v;
        int64_t want;
    } cases[] = {
        {"0", 0},
        {"42", 42},
        {" 42 ", 42},
        {"7, 9", 7},
        {"7,9", 7},
        {"-1", -1},
        {"1.5", -1},
        {"abc", -1},
        {"", -1},
        {"5a", -1},
        {"+5", -1},
        {"2147483649", DELTA_MAX},
        {"99999999999999999999999", DELTA_MAX},
        {", 5", -1},
        {"x, 5", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t got = dc_age_parse(cases[i].v, strlen(cases[i].v));
        if (got != cases[i].want)
            fail_msg("Age \"%s\": %lld, want %lld", cases[i].v, (long long)got, (long long)cases[i].want);
    }
}

static void test_decide_corrected_age(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=100");
    /* Age + response_delay */
    r.age_s = 10;
    r.response_delay_ms = 2500;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 12);
    assert_int_equal(d.fresh_until_ms, NOW + 88000);
    /* apparent age from Date, when larger (from the end of Date's second) */
    r.date_s = NOW_S - 30;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 29);
    assert_int_equal(d.fresh_until_ms, NOW + 71000);
    /* a Date in the same second, or in the future: no apparent age */
    r = res_ok();
    res_cc(&r, "max-age=100");
    r.date_s = NOW_S;
    dc_policy_decide(&rule, &q, &r, NOW + 999, &d);
    assert_int_equal(d.origin_age_s, 0);
    dc_policy_decide(&rule, &q, &r, NOW + 1999, &d);
    assert_int_equal(d.origin_age_s, 0);
    r.date_s = NOW_S + 3600;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 0);
    /* a rule ttl is not shortened by the age, but the age is reported */
    rule.respect_origin = false;
    r.date_s = NOW_S - 30;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.origin_age_s, 29);
    assert_times(&d, 10000, 20000, 60000);
}

static void test_decide_must_understand(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "must-understand, no-store, max-age=60");
    dc_policy_decision_t d = decide(&rule, &q, &r); /* understood: no-store ignored */
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_times(&d, 60000, 20000, 60000);
    static const int not_understood[] = {201, 299, 418, 422, 599};
    for (size_t i = 0; i < sizeof(not_understood) / sizeof(not_understood[0]); i++) {
        r.status = not_understood[i];
        d = decide(&rule, &q, &r);
        assert_refused(&d, DC_POLICY_MUST_UNDERSTAND);
    }
    /* without must-understand, no-store wins as usual */
    r = res_ok();
    res_cc(&r, "no-store, max-age=60");
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_NO_STORE);
}

static void test_decide_no_cache_kept_for_revalidation(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "no-cache, max-age=60");
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_ZERO_TTL); /* nothing to revalidate with */
    r.has_validator = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_true(d.no_stale);
    assert_times(&d, 0, 0, 0);
    assert_int_equal(dc_policy_freshness(d.fresh_until_ms, d.swr_until_ms, d.sie_until_ms, d.no_stale, false, NOW),
                     DC_EXPIRED);
    /* the qualified form: stored as usual, fields stripped */
    r = res_ok();
    res_cc(&r, "no-cache=\"set-cookie\", max-age=60");
    r.has_set_cookie = true;
    r.set_cookie_named[DC_CC_FROM_CACHE_CONTROL] = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_false(d.no_stale);
    assert_true(d.strip_fields);
    /* Set-Cookie not named: refused */
    r.set_cookie_named[DC_CC_FROM_CACHE_CONTROL] = false;
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_SET_COOKIE);
}

static void test_cc_names_field(void **state)
{
    const char *v = "max-age=5, no-cache=\"Set-Cookie, X-A\", private=x-b";
    assert_true(dc_cc_names_field(v, strlen(v), "set-cookie", 10));
    assert_true(dc_cc_names_field(v, strlen(v), "x-a", 3));
    assert_true(dc_cc_names_field(v, strlen(v), "x-b", 3));
    assert_false(dc_cc_names_field(v, strlen(v), "x-c", 3));
    assert_false(dc_cc_names_field(v, strlen(v), "max-age", 7));
    const char *w = "no-cache, private, ext=\"set-cookie\"";
    assert_false(dc_cc_names_field(w, strlen(w), "set-cookie", 10));
    const char *sf = "no-cache=\"x-foo\";a=1, max-age=5";        /* an sf-dictionary with a parameter */
    assert_false(dc_cc_names_field(sf, strlen(sf), "x-foo", 5)); /* parameters make it junk: not named */
}

static dc_cc_t tcc_of(const char *v, bool *ok)
{
    dc_cc_t cc;
    dc_cc_init(&cc);
    *ok = dc_cc_parse_targeted(v, strlen(v), &cc);
    return cc;
}

static void test_cc_targeted_parse(void **state)
{
    bool ok;
    dc_cc_t cc = tcc_of("max-age=60, must-revalidate, stale-if-error=5", &ok);
    assert_true(ok);
    assert_int_equal(cc.max_age, 60);
    assert_true(cc.must_revalidate);
    assert_int_equal(cc.stale_if_error, 5);
    cc = tcc_of("no-store;p=1, private=\"x-a, x-b\", no-cache=?0, s-maxage=2147483649", &ok);
    assert_true(ok);
    assert_true(cc.no_store);
    assert_true(cc.private_fields && !cc.private_);
    assert_false(cc.no_cache);
    assert_int_equal(cc.s_maxage, DELTA_MAX);
    /* wrong types: the directive is absent */
    cc = tcc_of("max-age=\"60\", s-maxage=1.5, stale-while-revalidate=-3, no-store=5, public=tok", &ok);
    assert_true(ok);
    assert_int_equal(cc.max_age, -1);
    assert_int_equal(cc.s_maxage, -1);
    assert_int_equal(cc.stale_while_revalidate, -1);
    assert_false(cc.no_store || cc.public_);
    /* later duplicates override (a dictionary) */
    cc = tcc_of("max-age=10, max-age=20", &ok);
    assert_int_equal(cc.max_age, 20);
    /* inner lists and byte sequences parse (and are ignored) */
    cc = tcc_of("x=(a \"b\" 1);q, y=:YWJj:, max-age=3", &ok);
    assert_true(ok);
    assert_int_equal(cc.max_age, 3);
    /* invalid dictionaries: the whole field is ignored, *cc untouched */
    static const char *const bad[] = {"",
                                      "   ",
                                      "Max-Age=60",
                                      "max-age=60,",
                                      "max-age=60;;",
                                      "max-age = 60",
                                      "max-age=1a",
                                      "a=\"unterminated",
                                      "=5",
                                      "max-age=60 x",
                                      "a=?2",
                                      "a=:@@:",
                                      "a=(1",
                                      "max-age=1234567890123456",
                                      "no-cache=\"\\x\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cc = tcc_of(bad[i], &ok);
        if (ok)
            fail_msg("\"%s\" parsed as a dictionary", bad[i]);
        assert_int_equal(cc.max_age, -1);
    }
}

static void test_decide_targeted(void **state)
{
    dc_config_cache_rule_t rule = rule_respect();
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "no-store");
    r.date_s = NOW_S;
    r.expires_s = NOW_S + 500;
    bool ok;
    r.cdncc = tcc_of("max-age=30", &ok);
    r.has_cdncc = true;
    /* without cdn_role, CDN-Cache-Control is not ours: Cache-Control's no-store decides */
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_NO_STORE);
    rule.cdn_role = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
    assert_int_equal(d.cc_source, DC_CC_FROM_CDN);
    assert_times(&d, 30000, 20000, 60000);
    /* Expires is ignored when a targeted field decides */
    r.cdncc = tcc_of("public", &ok);
    d = decide(&rule, &q, &r);
    assert_times(&d, 10000, 20000, 60000);
    /* Dexcache-Cache-Control comes first, with or without cdn_role */
    r.dcc = tcc_of("max-age=7", &ok);
    r.has_dcc = true;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.cc_source, DC_CC_FROM_DEXCACHE);
    assert_times(&d, 7000, 20000, 60000);
    rule.cdn_role = false;
    d = decide(&rule, &q, &r);
    assert_int_equal(d.cc_source, DC_CC_FROM_DEXCACHE);
    r.dcc = tcc_of("no-store", &ok);
    d = decide(&rule, &q, &r);
    assert_refused(&d, DC_POLICY_NO_STORE);
}

static void test_verdict_names(void **state)
{
    const char *seen[DC_POLICY_MUST_UNDERSTAND + 1];
    for (int v = DC_POLICY_STORE; v <= DC_POLICY_MUST_UNDERSTAND; v++) {
        seen[v] = dc_policy_verdict_name((dc_policy_verdict_t)v);
        assert_non_null(seen[v]);
        assert_string_not_equal(seen[v], "unknown");
        for (int w = 0; w < v; w++)
            assert_string_not_equal(seen[v], seen[w]);
    }
    assert_string_equal(dc_policy_verdict_name(DC_POLICY_NO_STORE), "no-store");
    assert_string_equal(dc_policy_verdict_name(DC_POLICY_SET_COOKIE), "set-cookie");
    assert_string_equal(dc_policy_verdict_name((dc_policy_verdict_t)99), "unknown");
}

/* ---- dc_policy_freshness ---------------------------------------------------------------------- */

#define T_F NOW
#define T_SWR (NOW + 20000)
#define T_SIE (NOW + 60000)

static void test_freshness_boundaries(void **state)
{
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_F - 1), DC_FRESH);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_F),
                     DC_STALE_SWR); /* at fresh_until: stale */
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_SWR - 1), DC_STALE_SWR);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_SWR), DC_STALE_SIE);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_SIE - 1), DC_STALE_SIE);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, T_SIE), DC_EXPIRED);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, UINT64_MAX), DC_EXPIRED);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, false, 0), DC_FRESH);
}

static void test_freshness_swr_longer_than_sie(void **state)
{
    /* SWR wins where both windows cover now */
    assert_int_equal(dc_policy_freshness(T_F, T_SIE, T_SWR, false, false, T_SWR - 1), DC_STALE_SWR);
    assert_int_equal(dc_policy_freshness(T_F, T_SIE, T_SWR, false, false, T_SWR), DC_STALE_SWR);
    assert_int_equal(dc_policy_freshness(T_F, T_SIE, T_SWR, false, false, T_SIE), DC_EXPIRED);
    /* no windows at all */
    assert_int_equal(dc_policy_freshness(T_F, T_F, T_F, false, false, T_F), DC_EXPIRED);
}

static void test_freshness_no_stale(void **state)
{
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, true, false, T_F - 1), DC_FRESH);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, true, false, T_F), DC_EXPIRED);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, true, false, T_SWR + 1), DC_EXPIRED);
}

static void test_freshness_client_revalidate(void **state)
{
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, true, T_F - 1), DC_STALE_SIE);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, true, T_F), DC_STALE_SIE);   /* SWR -> SIE */
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, true, T_SWR), DC_STALE_SIE); /* normal SIE */
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, false, true, T_SIE), DC_EXPIRED);
    /* T_SWR window longer than SIE: still an origin attempt first, never SWR */
    assert_int_equal(dc_policy_freshness(T_F, T_SIE, T_SWR, false, true, T_SWR + 1), DC_STALE_SIE);
    /* with no_stale: a fresh entry may back up the attempt, a stale one may not */
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, true, true, T_F - 1), DC_STALE_SIE);
    assert_int_equal(dc_policy_freshness(T_F, T_SWR, T_SIE, true, true, T_F), DC_EXPIRED);
}

static void test_decide_then_freshness(void **state)
{
    /* a stored decision walked through time */
    dc_config_cache_rule_t rule = rule_default();
    rule.respect_origin = true;
    dc_policy_request_t q = req_get();
    dc_policy_response_t r = res_ok();
    res_cc(&r, "max-age=60, stale-while-revalidate=30, stale-if-error=300");
    r.age_s = 20;
    dc_policy_decision_t d = decide(&rule, &q, &r);
    assert_int_equal(d.verdict, DC_POLICY_STORE);
#define AT(ms) dc_policy_freshness(d.fresh_until_ms, d.swr_until_ms, d.sie_until_ms, d.no_stale, false, NOW + (ms))
    assert_int_equal(AT(0), DC_FRESH);
    assert_int_equal(AT(39999), DC_FRESH);
    assert_int_equal(AT(40000), DC_STALE_SWR);
    assert_int_equal(AT(69999), DC_STALE_SWR);
    assert_int_equal(AT(70000), DC_STALE_SIE);
    assert_int_equal(AT(339999), DC_STALE_SIE);
    assert_int_equal(AT(340000), DC_EXPIRED);
    assert_int_equal(d.keep_until_ms, NOW + 340000);
#undef AT
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_init),
        cmocka_unit_test(test_decide_any_status_with_explicit_freshness),
        cmocka_unit_test(test_decide_public_adds_statuses),
        cmocka_unit_test(test_decide_ttl_zero_origin_decides),
        cmocka_unit_test(test_decide_heuristic),
        cmocka_unit_test(test_age_parse),
        cmocka_unit_test(test_decide_corrected_age),
        cmocka_unit_test(test_decide_must_understand),
        cmocka_unit_test(test_decide_no_cache_kept_for_revalidation),
        cmocka_unit_test(test_cc_names_field),
        cmocka_unit_test(test_cc_targeted_parse),
        cmocka_unit_test(test_decide_targeted),
        cmocka_unit_test(test_cc_all_directives),
        cmocka_unit_test(test_cc_case_and_whitespace),
        cmocka_unit_test(test_cc_quoted_values),
        cmocka_unit_test(test_cc_commas_in_quotes),
        cmocka_unit_test(test_cc_unterminated_quote),
        cmocka_unit_test(test_cc_malformed_numbers),
        cmocka_unit_test(test_cc_overflow),
        cmocka_unit_test(test_cc_duplicates_first_wins),
        cmocka_unit_test(test_cc_merge_lines),
        cmocka_unit_test(test_cc_empty_and_garbage),
        cmocka_unit_test(test_cc_flag_with_junk),
        cmocka_unit_test(test_cc_max_stale_bare),
        cmocka_unit_test(test_cc_length_bounded),
        cmocka_unit_test(test_date_imf_fixdate),
        cmocka_unit_test(test_date_rfc850),
        cmocka_unit_test(test_date_asctime),
        cmocka_unit_test(test_date_case_and_ows),
        cmocka_unit_test(test_date_invalid),
        cmocka_unit_test(test_date_truncations),
        cmocka_unit_test(test_date_leap_second),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_date_roundtrip),
        cmocka_unit_test(test_decide_no_rule),
        cmocka_unit_test(test_decide_method),
        cmocka_unit_test(test_decide_authorization),
        cmocka_unit_test(test_decide_authorization_public_rule),
        cmocka_unit_test(test_decide_positive_statuses),
        cmocka_unit_test(test_decide_uncacheable_statuses),
        cmocka_unit_test(test_decide_negative),
        cmocka_unit_test(test_decide_negative_ttl_zero),
        cmocka_unit_test(test_decide_negative_respect_origin),
        cmocka_unit_test(test_decide_no_store),
        cmocka_unit_test(test_decide_private),
        cmocka_unit_test(test_decide_set_cookie),
        cmocka_unit_test(test_decide_vary),
        cmocka_unit_test(test_decide_incomplete),
        cmocka_unit_test(test_decide_refusal_order),
        cmocka_unit_test(test_decide_cc_ignored_without_has_cc),
        cmocka_unit_test(test_decide_origin_ignored_without_respect),
        cmocka_unit_test(test_decide_respect_max_age),
        cmocka_unit_test(test_decide_respect_without_origin_lifetime),
        cmocka_unit_test(test_decide_s_maxage_beats_max_age),
        cmocka_unit_test(test_decide_max_age_beats_expires),
        cmocka_unit_test(test_decide_expires_minus_date),
        cmocka_unit_test(test_decide_expires_without_date),
        cmocka_unit_test(test_decide_expires_past_and_invalid),
        cmocka_unit_test(test_decide_age_subtracted),
        cmocka_unit_test(test_decide_origin_age_reported),
        cmocka_unit_test(test_decide_origin_windows),
        cmocka_unit_test(test_decide_no_stale_directives),
        cmocka_unit_test(test_decide_no_stale_with_origin_lifetime),
        cmocka_unit_test(test_decide_pragma),
        cmocka_unit_test(test_decide_zero_ttl),
        cmocka_unit_test(test_decide_clamping),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_freshness_boundaries),
        cmocka_unit_test(test_freshness_swr_longer_than_sie),
        cmocka_unit_test(test_freshness_no_stale),
        cmocka_unit_test(test_freshness_client_revalidate),
        cmocka_unit_test(test_decide_then_freshness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
