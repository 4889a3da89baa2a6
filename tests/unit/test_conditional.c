#include "cmocka_prelude.h"

#include <string.h>

#include "http/conditional.h"

#define LM 1445412480 /* Wed, 21 Oct 2015 07:28:00 GMT */
#define NOW 1700000000
static const char *LM_S = "Wed, 21 Oct 2015 07:28:00 GMT";
static const char *BEFORE_S = "Wed, 21 Oct 2015 07:27:59 GMT";
static const char *AFTER_S = "Wed, 21 Oct 2015 07:28:01 GMT";

static void add(dc_cond_field_t *f, const char *v)
{
    f->v[f->n] = v;
    f->len[f->n] = strlen(v);
    f->n++;
}

static dc_cond_validators_t val(const char *etag, int64_t lm)
{
    dc_cond_validators_t v = {
        .etag = etag, .etag_len = etag ? strlen(etag) : 0, .last_modified_s = lm, .ims_fallback_s = -1};
    return v;
}

static dc_cond_request_t get(void)
{
    dc_cond_request_t r;
    memset(&r, 0, sizeof(r));
    r.get_or_head = true;
    return r;
}

static void test_etag_parse(void **state)
{
    dc_etag_t t;
    assert_true(dc_etag_parse("\"abc\"", 5, &t));
    assert_false(t.weak);
    assert_int_equal(t.opaque_len, 5);
    assert_true(dc_etag_parse(" W/\"x,y\" ", 9, &t));
    assert_true(t.weak);
    assert_int_equal(t.opaque_len, 5);
    assert_true(dc_etag_parse("\"\"", 2, &t));
    assert_false(dc_etag_parse("abc", 3, &t));
    assert_false(dc_etag_parse("w/\"a\"", 5, &t)); /* W/ is case-sensitive */
    assert_false(dc_etag_parse("\"a\" x", 5, &t));
    assert_false(dc_etag_parse("\"a", 2, &t));
    assert_false(dc_etag_parse("\"a b\"", 5, &t)); /* SP is not etagc */
    assert_false(dc_etag_parse(NULL, 0, &t));
    dc_etag_t a, b, c;
    dc_etag_parse("\"1\"", 3, &a);
    dc_etag_parse("W/\"1\"", 5, &b);
    dc_etag_parse("\"2\"", 3, &c);
    assert_true(dc_etag_strong_eq(&a, &a));
    assert_false(dc_etag_strong_eq(&a, &b));
    assert_false(dc_etag_strong_eq(&b, &b));
    assert_true(dc_etag_weak_eq(&a, &b));
    assert_true(dc_etag_weak_eq(&b, &b));
    assert_false(dc_etag_weak_eq(&a, &c));
}

static void test_if_none_match(void **state)
{
    dc_cond_validators_t v = val("\"v1\"", LM);
    dc_cond_request_t r = get();
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    add(&r.if_none_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_none_match, "W/\"v1\""); /* weak comparison */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_none_match, "\"a\", junk,, \"b,c\" ,W/\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_none_match, "\"a\"");
    add(&r.if_none_match, "\"v1\""); /* second line */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_none_match, "\"v2\", \"v1x\", v1");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_none_match, "*");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r.get_or_head = false; /* other methods: 412 */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PRECONDITION_FAIL);
    /* weak stored tag still matches weakly */
    dc_cond_validators_t w = val("W/\"v1\"", -1);
    r = get();
    add(&r.if_none_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &w, NOW), DC_COND_NOT_MODIFIED);
    /* no stored tag: only * matches */
    dc_cond_validators_t none = val(NULL, LM);
    assert_int_equal(dc_cond_evaluate(&r, &none, NOW), DC_COND_PROCEED);
    /* If-None-Match present and failing to match: If-Modified-Since is not looked at */
    r = get();
    add(&r.if_none_match, "\"other\"");
    add(&r.if_modified_since, LM_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
}

static void test_if_modified_since(void **state)
{
    dc_cond_validators_t v = val("\"v1\"", LM);
    dc_cond_request_t r = get();
    add(&r.if_modified_since, LM_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_modified_since, AFTER_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    r = get();
    add(&r.if_modified_since, BEFORE_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_modified_since, "yesterday"); /* invalid: ignored */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_modified_since, LM_S);
    add(&r.if_modified_since, LM_S); /* several members: ignored */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_modified_since, AFTER_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, LM), DC_COND_PROCEED); /* later than our Date: ignored */
    r = get();
    r.get_or_head = false;
    add(&r.if_modified_since, LM_S); /* only GET/HEAD */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    /* no Last-Modified: the fallback (stored Date) is used, when given */
    dc_cond_validators_t n = val(NULL, -1);
    r = get();
    add(&r.if_modified_since, LM_S);
    assert_int_equal(dc_cond_evaluate(&r, &n, NOW), DC_COND_PROCEED);
    n.ims_fallback_s = LM;
    assert_int_equal(dc_cond_evaluate(&r, &n, NOW), DC_COND_NOT_MODIFIED);
}

static void test_if_match(void **state)
{
    dc_cond_validators_t v = val("\"v1\"", LM);
    dc_cond_request_t r = get();
    add(&r.if_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_match, "\"x\", \"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_match, "W/\"v1\""); /* strong comparison: weak never matches */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PRECONDITION_FAIL);
    r = get();
    add(&r.if_match, "\"v2\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PRECONDITION_FAIL);
    r = get();
    add(&r.if_match, "*");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    dc_cond_validators_t w = val("W/\"v1\"", LM);
    r = get();
    add(&r.if_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &w, NOW), DC_COND_PRECONDITION_FAIL);
    /* If-Match wins over If-Unmodified-Since (which is then not evaluated) */
    r = get();
    add(&r.if_match, "\"v1\"");
    add(&r.if_unmodified_since, BEFORE_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    /* If-Match passes, If-None-Match then decides */
    r = get();
    add(&r.if_match, "\"v1\"");
    add(&r.if_none_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_NOT_MODIFIED);
    /* If-Match fails first: 412 even though If-None-Match would give 304 */
    r = get();
    add(&r.if_match, "\"nope\"");
    add(&r.if_none_match, "\"v1\"");
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PRECONDITION_FAIL);
}

static void test_if_unmodified_since(void **state)
{
    dc_cond_validators_t v = val("\"v1\"", LM);
    dc_cond_request_t r = get();
    add(&r.if_unmodified_since, BEFORE_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PRECONDITION_FAIL);
    r = get();
    add(&r.if_unmodified_since, LM_S);
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    r = get();
    add(&r.if_unmodified_since, "garbage"); /* invalid: ignored */
    assert_int_equal(dc_cond_evaluate(&r, &v, NOW), DC_COND_PROCEED);
    dc_cond_validators_t n = val("\"v1\"", -1);
    r = get();
    add(&r.if_unmodified_since, BEFORE_S); /* no Last-Modified: cannot fail */
    assert_int_equal(dc_cond_evaluate(&r, &n, NOW), DC_COND_PROCEED);
}

static void test_if_range(void **state)
{
    dc_cond_validators_t v = val("\"v1\"", LM);
    assert_true(dc_cond_if_range_ok("\"v1\"", 4, &v));
    assert_false(dc_cond_if_range_ok("\"v2\"", 4, &v));
    assert_false(dc_cond_if_range_ok("W/\"v1\"", 6, &v));
    assert_true(dc_cond_if_range_ok(LM_S, strlen(LM_S), &v)); /* a date starting with W */
    assert_false(dc_cond_if_range_ok(AFTER_S, strlen(AFTER_S), &v));
    assert_false(dc_cond_if_range_ok("junk", 4, &v));
    assert_false(dc_cond_if_range_ok("\"v1\", \"v2\"", 10, &v));
    dc_cond_validators_t w = val("W/\"v1\"", -1);
    assert_false(dc_cond_if_range_ok("\"v1\"", 4, &w));
    assert_false(dc_cond_if_range_ok(LM_S, strlen(LM_S), &w));
    assert_false(dc_cond_if_range_ok(NULL, 0, &v));
}

static void test_present(void **state)
{
    dc_cond_request_t r = get();
    assert_false(dc_cond_present(&r));
    add(&r.if_unmodified_since, LM_S);
    assert_true(dc_cond_present(&r));
    assert_string_equal(dc_cond_result_name(DC_COND_NOT_MODIFIED), "304");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_parse),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_if_modified_since),
        cmocka_unit_test(test_if_match),
        cmocka_unit_test(test_if_unmodified_since),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_present),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
