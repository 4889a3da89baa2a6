#include "ratelimit/fleet_reply.h"
#include "core/error.h"

#include <string.h>

static uint64_t nonneg(const redisReply *e)
{
    return e->type == REDIS_REPLY_INTEGER && e->integer > 0 ? (uint64_t)e->integer : 0;
}

int dc_fleet_reply_gcra(const redisReply *reply, dc_gcra_result_t *res, unsigned *granted)
{
    memset(res, 0, sizeof(*res));
    *granted = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5)
        return DC_EPROTO;
    res->allowed = reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1;
    uint64_t g = nonneg(reply->element[1]);
    *granted = g > UINT32_MAX ? UINT32_MAX : (unsigned)g;
    res->remaining = nonneg(reply->element[2]);
    res->retry_after_us = nonneg(reply->element[3]);
    res->reset_us = nonneg(reply->element[4]);
    return 0;
}

int dc_fleet_reply_budget(const redisReply *reply, int *ok, uint64_t *wait_us)
{
    *ok = 0;
    *wait_us = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return DC_EPROTO;
    *ok = reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1;
    *wait_us = nonneg(reply->element[1]);
    return 0;
}

int dc_fleet_reply_l2_and_flag(const redisReply *reply, const char **value, size_t *len, bool *flag)
{
    *value = NULL;
    *len = 0;
    *flag = false;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return DC_EPROTO;
    const redisReply *v = reply->element[0], *f = reply->element[1];
    *flag = f->type == REDIS_REPLY_INTEGER && f->integer == 1;
    *value = dc_fleet_reply_string(v, len);
    return 0;
}

const char *dc_fleet_reply_string(const redisReply *reply, size_t *len)
{
    *len = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING)
        return NULL;
    *len = reply->len;
    return reply->str;
}

int dc_fleet_reply_lease(const redisReply *reply, bool *leader)
{
    *leader = false;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        return DC_EPROTO;
    *leader = reply->integer == 1;
    return 0;
}

int dc_fleet_reply_publish(const redisReply *reply, uint64_t *id)
{
    *id = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer < 0)
        return DC_EPROTO;
    *id = (uint64_t)reply->integer;
    return 0;
}

bool dc_fleet_reply_instances(const redisReply *reply, unsigned *n)
{
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0)
        return false;
    *n = reply->integer > UINT32_MAX ? UINT32_MAX : (unsigned)reply->integer;
    return true;
}
