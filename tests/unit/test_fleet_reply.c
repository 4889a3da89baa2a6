/* Tests for the fleet reply interpreters (redis/fleet.h, ratelimit/gcra_fleet.h, upstream/budget_fleet.h,
 * cache/l2fleet.h, sse/sse_fleet.h): reply trees are built from RESP bytes by hiredis' own reader, as they are when
 * they come from Redis. */
#include "cmocka_prelude.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "cache/l2fleet.h"
#include "ratelimit/gcra_fleet.h"
#include "redis/fleet.h"
#include "sse/sse_fleet.h"
#include "upstream/budget_fleet.h"

#include "resp_text.h"

static redisReply *resp(const char *text)
{
    return resp_n(text, strlen(text));
}

static void test_gcra(void **state)
{
    dc_gcra_result_t res;
    unsigned granted;
    redisReply *r = resp("*5\r\n:1\r\n:16\r\n:200\r\n:0\r\n:160000\r\n");
    assert_int_equal(dc_fleet_reply_gcra(r, &res, &granted), 0);
    assert_true(res.allowed);
    assert_int_equal(granted, 16);
    assert_int_equal(res.remaining, 200);
    assert_int_equal(res.retry_after_us, 0);
    assert_int_equal(res.reset_us, 160000);
    freeReplyObject(r);

    /* refused; negative and non-integer fields read as 0 */
    r = resp("*5\r\n:0\r\n:-3\r\n$1\r\n9\r\n:99000\r\n:-1\r\n");
    assert_int_equal(dc_fleet_reply_gcra(r, &res, &granted), 0);
    assert_false(res.allowed);
    assert_int_equal(granted, 0);
    assert_int_equal(res.remaining, 0);
    assert_int_equal(res.retry_after_us, 99000);
    assert_int_equal(res.reset_us, 0);
    freeReplyObject(r);

    /* "allowed" is the integer 1 only */
    r = resp("*5\r\n:2\r\n:1\r\n:1\r\n:0\r\n:1\r\n");
    assert_int_equal(dc_fleet_reply_gcra(r, &res, &granted), 0);
    assert_false(res.allowed);
    freeReplyObject(r);

    /* a lease beyond 32 bits is clamped, not wrapped */
    r = resp("*5\r\n:1\r\n:8589934593\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(dc_fleet_reply_gcra(r, &res, &granted), 0);
    assert_int_equal(granted, UINT32_MAX);
    freeReplyObject(r);

    static const char *bad[] = {"*4\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
                                "*6\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n:1\r\n",
                                ":1\r\n",
                                "$-1\r\n",
                                "-ERR x\r\n",
                                "*-1\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = resp(bad[i]);
        assert_int_equal(dc_fleet_reply_gcra(r, &res, &granted), DC_EPROTO);
        assert_false(res.allowed);
        assert_int_equal(granted, 0);
        freeReplyObject(r);
    }
    assert_int_equal(dc_fleet_reply_gcra(NULL, &res, &granted), DC_EPROTO);
}

static void test_budget(void **state)
{
    int ok;
    uint64_t wait;
    redisReply *r = resp("*2\r\n:1\r\n:2500\r\n");
    assert_int_equal(dc_fleet_reply_budget(r, &ok, &wait), 0);
    assert_int_equal(ok, 1);
    assert_int_equal(wait, 2500);
    freeReplyObject(r);
    r = resp("*2\r\n:0\r\n:-5\r\n");
    assert_int_equal(dc_fleet_reply_budget(r, &ok, &wait), 0);
    assert_int_equal(ok, 0);
    assert_int_equal(wait, 0);
    freeReplyObject(r);
    r = resp("*2\r\n+1\r\n$-1\r\n");
    assert_int_equal(dc_fleet_reply_budget(r, &ok, &wait), 0);
    assert_int_equal(ok, 0);
    assert_int_equal(wait, 0);
    freeReplyObject(r);
    r = resp("*3\r\n:1\r\n:1\r\n:1\r\n");
    assert_int_equal(dc_fleet_reply_budget(r, &ok, &wait), DC_EPROTO);
    assert_int_equal(ok, 0);
    freeReplyObject(r);
    r = resp("-NOSCRIPT x\r\n");
    assert_int_equal(dc_fleet_reply_budget(r, &ok, &wait), DC_EPROTO);
    freeReplyObject(r);
}

static void test_l2_and_flag(void **state)
{
    const char *v;
    size_t len;
    bool flag;
    static const char with_nul[] = "*2\r\n$5\r\nab\0cd\r\n:1\r\n";
    redisReply *r = resp_n(with_nul, sizeof(with_nul) - 1);
    assert_int_equal(dc_fleet_reply_l2_and_flag(r, &v, &len, &flag), 0);
    assert_ptr_equal(v, r->element[0]->str);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "ab\0cd", 5);
    assert_true(flag);
    freeReplyObject(r);

    r = resp("*2\r\n$-1\r\n:0\r\n"); /* absent, lock not taken */
    assert_int_equal(dc_fleet_reply_l2_and_flag(r, &v, &len, &flag), 0);
    assert_null(v);
    assert_int_equal(len, 0);
    assert_false(flag);
    freeReplyObject(r);

    r = resp("*2\r\n:7\r\n$1\r\n1\r\n"); /* neither a string value nor the integer 1 */
    assert_int_equal(dc_fleet_reply_l2_and_flag(r, &v, &len, &flag), 0);
    assert_null(v);
    assert_false(flag);
    freeReplyObject(r);

    static const char *bad[] = {"*1\r\n$1\r\nx\r\n", "*3\r\n$1\r\nx\r\n:1\r\n:1\r\n", "$1\r\nx\r\n", "-ERR\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = resp(bad[i]);
        assert_int_equal(dc_fleet_reply_l2_and_flag(r, &v, &len, &flag), DC_EPROTO);
        assert_null(v);
        assert_false(flag);
        freeReplyObject(r);
    }
}

static void test_string_lease_publish_instances(void **state)
{
    size_t len;
    redisReply *r = resp("$6\r\n1|x|{}\r\n");
    assert_ptr_equal(dc_fleet_reply_string(r, &len), r->str);
    assert_int_equal(len, 6);
    freeReplyObject(r);
    r = resp("$-1\r\n");
    assert_null(dc_fleet_reply_string(r, &len));
    assert_int_equal(len, 0);
    freeReplyObject(r);
    r = resp("-ERR x\r\n"); /* an error's text is not a value */
    assert_null(dc_fleet_reply_string(r, &len));
    freeReplyObject(r);

    bool leader;
    r = resp(":1\r\n");
    assert_int_equal(dc_fleet_reply_lease(r, &leader), 0);
    assert_true(leader);
    freeReplyObject(r);
    r = resp(":0\r\n");
    assert_int_equal(dc_fleet_reply_lease(r, &leader), 0);
    assert_false(leader);
    freeReplyObject(r);
    r = resp("$1\r\n1\r\n");
    assert_int_equal(dc_fleet_reply_lease(r, &leader), DC_EPROTO);
    assert_false(leader);
    freeReplyObject(r);

    uint64_t id;
    r = resp(":42\r\n");
    assert_int_equal(dc_fleet_reply_publish(r, &id), 0);
    assert_int_equal(id, 42);
    freeReplyObject(r);
    r = resp(":-1\r\n");
    assert_int_equal(dc_fleet_reply_publish(r, &id), DC_EPROTO);
    assert_int_equal(id, 0);
    freeReplyObject(r);
    r = resp("+OK\r\n");
    assert_int_equal(dc_fleet_reply_publish(r, &id), DC_EPROTO);
    freeReplyObject(r);

    unsigned n = 5;
    r = resp(":3\r\n");
    assert_true(dc_fleet_reply_instances(r, &n));
    assert_int_equal(n, 3);
    freeReplyObject(r);
    r = resp(":0\r\n");
    n = 5;
    assert_false(dc_fleet_reply_instances(r, &n));
    assert_int_equal(n, 5); /* untouched: the caller keeps its count */
    freeReplyObject(r);
    r = resp(":99999999999\r\n");
    assert_true(dc_fleet_reply_instances(r, &n));
    assert_int_equal(n, UINT32_MAX);
    freeReplyObject(r);
    assert_false(dc_fleet_reply_instances(NULL, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_l2_and_flag),
        cmocka_unit_test(test_string_lease_publish_instances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
