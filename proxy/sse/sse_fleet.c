#include "sse/sse_fleet.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] lease; ARGV[1] instance id, ARGV[2] ttl ms. 1 = ours (taken or renewed), 0 = another's. */
static const char SSE_LEASE_LUA[] = "local v = redis.call('GET', KEYS[1])\n"
                                    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
                                    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
                                    "return 0\n";
/* KEYS[1] id counter, KEYS[2] last update; ARGV[1] channel, ARGV[2] type, ARGV[3] body. Returns the
 * event id. The last update is kept for instances that start relaying the channel later. */
static const char SSE_PUBLISH_LUA[] =
    "local id = redis.call('INCR', KEYS[1])\n"
    "redis.call('PEXPIRE', KEYS[1], 86400000)\n"
    "local msg = id .. '|' .. ARGV[2] .. '|' .. ARGV[3]\n"
    "if ARGV[2] == 'update' then redis.call('SET', KEYS[2], msg, 'PX', 86400000) end\n"
    "redis.call('PUBLISH', ARGV[1], msg)\n"
    "return id\n";

static void on_lease_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    bool leader = false;
    if (err == 0)
        err = dc_fleet_reply_lease(reply, &leader);
    ((dc_fleet_lease_cb)c->cb)(c->data, err, leader);
}

int dc_fleet_sse_lease(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lease_cb cb, void *data)
{
    char *rkey = dc_fleet_key(f, "ssel:", key, len);
    char ttl[24];
    int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
    const char *id = dc_fleet_instance_id(f);
    const char *args[3] = {rkey, id, ttl};
    size_t lens[3] = {strlen(rkey), strlen(id), (size_t)tl};
    dc_fleet_call_t call = {on_lease_reply, (dc_fleet_fn)cb, data};
    int rc = dc_fleet_eval(f, SSE_LEASE_LUA, &call, 1, 2, args, lens);
    free(rkey);
    return rc;
}

static void on_publish_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    uint64_t id = 0;
    if (err == 0)
        err = dc_fleet_reply_publish(reply, &id);
    ((dc_fleet_publish_cb)c->cb)(c->data, err, id);
}

int dc_fleet_sse_publish(dc_fleet_t *f, const char *key, size_t len, const char *type, const char *body, size_t blen,
                         dc_fleet_publish_cb cb, void *data)
{
    char *idkey = dc_fleet_key(f, "ssei:", key, len);
    char *lastkey = dc_fleet_key(f, "ssev:", key, len);
    char *chan = dc_fleet_key(f, "sse:", key, len);
    const char *args[5] = {idkey, lastkey, chan, type, body};
    size_t lens[5] = {strlen(idkey), strlen(lastkey), strlen(chan), strlen(type), blen};
    dc_fleet_call_t call = {on_publish_reply, (dc_fleet_fn)cb, data};
    int rc = dc_fleet_eval(f, SSE_PUBLISH_LUA, &call, 2, 3, args, lens);
    free(idkey);
    free(lastkey);
    free(chan);
    return rc;
}

dc_redis_sub_t *dc_fleet_sse_subscribe(dc_fleet_t *f, const char *key, size_t len,
                                       void (*cb)(void *data, const char *msg, size_t len), void *data)
{
    char *chan = dc_fleet_key(f, "sse:", key, len);
    dc_redis_sub_t *s = dc_fleet_subscribe(f, chan, cb, data);
    free(chan);
    return s;
}

void dc_fleet_sse_unsubscribe(dc_fleet_t *f, dc_redis_sub_t *s)
{
    dc_fleet_unsubscribe(f, s);
}

typedef void (*sse_last_cb)(void *data, const char *msg, size_t len);

static void on_last_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    size_t len = 0;
    const char *msg = err == 0 ? dc_fleet_reply_string(reply, &len) : NULL;
    ((sse_last_cb)c->cb)(c->data, msg, len);
}

int dc_fleet_sse_last(dc_fleet_t *f, const char *key, size_t len, void (*cb)(void *data, const char *msg, size_t len),
                      void *data)
{
    dc_fleet_call_t call = {on_last_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_get(f, "ssev:", key, len, &call);
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
