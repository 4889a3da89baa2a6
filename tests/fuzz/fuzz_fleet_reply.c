/* libFuzzer target for the interpretation of the fleet's script and command replies (redis/fleet.h
 * and the features on it: ratelimit/gcra_fleet.h, upstream/budget_fleet.h, cache/l2fleet.h,
 * sse/sse_fleet.h): the fuzz bytes go through hiredis' reader, and every reply tree it produces is
 * handed to every interpreter. Never crash or overread; results stay within their contracts (an
 * error leaves the outputs at their neutral values, pointers point into the reply). */
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "cache/l2fleet.h"
#include "ratelimit/gcra_fleet.h"
#include "redis/fleet.h"
#include "sse/sse_fleet.h"
#include "upstream/budget_fleet.h"
#include "resp_feed.h"

static void check_reply(const redisReply *reply)
{
    dc_gcra_result_t res;
    unsigned granted;
    if (dc_fleet_reply_gcra(reply, &res, &granted) != 0) {
        if (res.allowed || res.remaining || res.retry_after_us || res.reset_us || granted)
            abort();
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        abort();
    }

    int ok;
    uint64_t wait;
    int rc = dc_fleet_reply_budget(reply, &ok, &wait);
    if ((rc != 0 && (ok || wait)) || (ok != 0 && ok != 1) || (rc != 0 && rc != DC_EPROTO))
        abort();

    const char *v;
    size_t len;
    bool flag;
    rc = dc_fleet_reply_l2_and_flag(reply, &v, &len, &flag);
    if (rc == 0) {
        const redisReply *e = reply->element[0];
        if (v != NULL && (e->type != REDIS_REPLY_STRING || v != e->str || len != e->len))
            abort();
        if (flag && (reply->element[1]->type != REDIS_REPLY_INTEGER || reply->element[1]->integer != 1))
            abort();
    } else if (v != NULL || len != 0 || flag) {
        abort();
    }

    v = dc_fleet_reply_string(reply, &len);
    if (v != NULL ? (v != reply->str || len != reply->len) : len != 0)
        abort();

    bool leader;
    if (dc_fleet_reply_lease(reply, &leader) != 0 && leader)
        abort();
    uint64_t id;
    if (dc_fleet_reply_publish(reply, &id) != 0 && id != 0)
        abort();
    unsigned n = 0;
    if (dc_fleet_reply_instances(reply, &n) && n == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dc_fuzz_resp_each(data, size, check_reply);
    return 0;
}
