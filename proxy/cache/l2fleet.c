#include "cache/l2fleet.h"
#include "core/error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] L2 entry, KEYS[2] lock; ARGV[1] instance id, ARGV[2] ttl ms. {L2 value or nil, 1 = got it}. */
static const char LOCK_LUA[] = "local v = redis.call('GET', KEYS[1])\n"
                               "local ok = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])\n"
                               "return {v, ok and 1 or 0}\n";
/* KEYS[1] lock; ARGV[1] instance id, ARGV[2] notice channel, ARGV[3] key. Releasing the lock also
 * tells every instance's followers to look again now. */
static const char UNLOCK_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                 "redis.call('DEL', KEYS[1]) "
                                 "return redis.call('PUBLISH', ARGV[2], ARGV[3]) end return 0\n";
/* KEYS[1] lock; ARGV[1] instance id, ARGV[2] ttl (ms). Extends the lease only while it is ours. */
static const char RENEW_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0\n";
/* KEYS[1] L2 entry, KEYS[2] lock. {L2 value or nil, 1 = locked}. */
static const char PEEK_LUA[] = "return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2])}\n";

static _Atomic uint64_t l2_hits;

uint64_t dc_fleet_l2_hits(void)
{
    return atomic_load(&l2_hits);
}

/* ---- fill notices: this module's state on each fleet connection ---- */

typedef struct l2fleet {
    char *channel;     /* "<prefix>fill" */
    dc_list_t watches; /* the followers waiting on this worker, through w->link (oldest first) */
} l2fleet_t;

/* A notice (key) from any instance's leader, or NULL after (re)subscribing: whatever was announced
 * while we were not listening is unknown, so every follower looks again. */
static void on_fill_notice(void *data, const char *key, size_t len)
{
    l2fleet_t *l = data;
    dc_list_t fired;
    dc_list_init(&fired);
    dc_list_node_t *n, *tmp;
    dc_list_foreach_safe (n, tmp, &l->watches) { /* move the matches aside first: callbacks may unwatch others */
        dc_fleet_watch_t *w = dc_container_of(n, dc_fleet_watch_t, link);
        if (key == NULL || (w->len == len && memcmp(w->key, key, len) == 0)) {
            dc_list_remove(n);
            dc_list_push_back(&fired, n);
        }
    }
    while ((n = dc_list_pop_front(&fired)) != NULL) {
        dc_fleet_watch_t *w = dc_container_of(n, dc_fleet_watch_t, link);
        w->cb(w);
    }
}

static void *l2fleet_create(dc_fleet_t *f)
{
    l2fleet_t *l = dc_calloc(1, sizeof(*l));
    l->channel = dc_fleet_key(f, "fill", "", 0);
    dc_list_init(&l->watches);
    /* the subscription is owned by the fleet's subscriber and goes with it */
    dc_fleet_subscribe(f, l->channel, on_fill_notice, l);
    return l;
}

static void l2fleet_destroy(dc_fleet_t *f, void *state)
{
    l2fleet_t *l = state;
    while (!dc_list_empty(&l->watches)) /* followers still waiting are detached: no callback */
        dc_fleet_unwatch(f, dc_container_of(dc_list_first(&l->watches), dc_fleet_watch_t, link));
    free(l->channel);
    free(l);
}

/* The fleet closes: every follower looks again now (and finds Redis gone: it fetches itself or
 * gives up), instead of waiting for a notice that will not come. */
static void l2fleet_close(dc_fleet_t *f, void *state)
{
    (void)f;
    on_fill_notice(state, NULL, 0);
}

static const dc_fleet_ext_type_t L2FLEET = {l2fleet_create, l2fleet_destroy, l2fleet_close};

/* This module's state on f, created (and the notice channel subscribed) on the first L2 call, so
 * the subscription is usually in place before the first follower watches. */
static l2fleet_t *l2fleet(dc_fleet_t *f)
{
    return dc_fleet_ext(f, &L2FLEET);
}

void dc_fleet_watch(dc_fleet_t *f, dc_fleet_watch_t *w)
{
    l2fleet_t *l = l2fleet(f);
    dc_list_push_back(&l->watches, &w->link); /* asserts w is not watching */
}

void dc_fleet_unwatch(dc_fleet_t *f, dc_fleet_watch_t *w)
{
    (void)f;
    if (dc_list_node_linked(&w->link))
        dc_list_remove(&w->link);
}

/* ---- L2 ---- */

static void on_l2_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    size_t len = 0;
    const char *value = err == 0 ? dc_fleet_reply_string(reply, &len) : NULL;
    if (value != NULL)
        atomic_fetch_add(&l2_hits, 1);
    ((dc_fleet_l2_cb)c->cb)(c->data, err, value, len);
}

int dc_fleet_l2_get(dc_fleet_t *f, const char *key, size_t len, dc_fleet_l2_cb cb, void *data)
{
    l2fleet(f);
    dc_fleet_call_t call = {on_l2_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_get(f, "l2:", key, len, &call);
}

void dc_fleet_l2_set(dc_fleet_t *f, const char *key, size_t len, const char *value, size_t vlen, uint64_t ttl_ms)
{
    if (!dc_fleet_up(f) || vlen > DC_FLEET_L2_MAX || ttl_ms == 0)
        return;
    l2fleet(f);
    char *rkey = dc_fleet_key(f, "l2:", key, len);
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
    const char *argv[5] = {"SET", rkey, value, "PX", px};
    size_t lens[5] = {3, strlen(rkey), vlen, 2, (size_t)pl};
    dc_fleet_command(f, NULL, 5, argv, lens);
    free(rkey);
}

/* ---- lock, unlock, peek ---- */

/* The lock and peek scripts answer {L2 value or nil, 0/1}: split that, counting an L2 hit. */
static int l2_and_flag(int err, const redisReply *reply, const char **value, size_t *len, bool *flag)
{
    *value = NULL;
    *len = 0;
    *flag = false;
    if (err != 0)
        return err;
    err = dc_fleet_reply_l2_and_flag(reply, value, len, flag);
    if (*value != NULL)
        atomic_fetch_add(&l2_hits, 1);
    return err;
}

static void on_lock_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    const char *value;
    size_t len;
    bool got;
    err = l2_and_flag(err, reply, &value, &len, &got);
    ((dc_fleet_lock_cb)c->cb)(c->data, err, got, value, len);
}

int dc_fleet_lock(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lock_cb cb, void *data)
{
    l2fleet(f);
    char *k1 = dc_fleet_key(f, "l2:", key, len);
    char *k2 = dc_fleet_key(f, "lk:", key, len);
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
    const char *id = dc_fleet_instance_id(f);
    const char *args[4] = {k1, k2, id, px};
    size_t lens[4] = {strlen(k1), strlen(k2), strlen(id), (size_t)pl};
    dc_fleet_call_t call = {on_lock_reply, (dc_fleet_fn)cb, data};
    int rc = dc_fleet_eval(f, LOCK_LUA, &call, 2, 2, args, lens);
    free(k1);
    free(k2);
    return rc;
}

void dc_fleet_unlock(dc_fleet_t *f, const char *key, size_t len)
{
    l2fleet_t *l = l2fleet(f);
    char *rkey = dc_fleet_key(f, "lk:", key, len);
    const char *id = dc_fleet_instance_id(f);
    const char *args[4] = {rkey, id, l->channel, key};
    size_t lens[4] = {strlen(rkey), strlen(id), strlen(l->channel), len};
    dc_fleet_eval(f, UNLOCK_LUA, NULL, 1, 3, args, lens);
    free(rkey);
}

void dc_fleet_lock_renew(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms)
{
    char *rkey = dc_fleet_key(f, "lk:", key, len);
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
    const char *id = dc_fleet_instance_id(f);
    const char *args[3] = {rkey, id, px};
    size_t lens[3] = {strlen(rkey), strlen(id), (size_t)pl};
    dc_fleet_eval(f, RENEW_LUA, NULL, 1, 2, args, lens);
    free(rkey);
}

static void on_peek_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    const char *value;
    size_t len;
    bool locked;
    err = l2_and_flag(err, reply, &value, &len, &locked);
    ((dc_fleet_peek_cb)c->cb)(c->data, err, value, len, locked);
}

int dc_fleet_peek(dc_fleet_t *f, const char *key, size_t len, dc_fleet_peek_cb cb, void *data)
{
    l2fleet(f);
    char *k1 = dc_fleet_key(f, "l2:", key, len);
    char *k2 = dc_fleet_key(f, "lk:", key, len);
    const char *args[2] = {k1, k2};
    size_t lens[2] = {strlen(k1), strlen(k2)};
    dc_fleet_call_t call = {on_peek_reply, (dc_fleet_fn)cb, data};
    int rc = dc_fleet_eval(f, PEEK_LUA, &call, 2, 0, args, lens);
    free(k1);
    free(k2);
    return rc;
}

/* ---- reply interpretation (pure) ---- */

int dc_fleet_reply_l2_and_flag(const redisReply *reply, const char **value, size_t *len, bool *flag)
{
    *value = NULL;
    *len = 0;
    *flag = false;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return DC_EPROTO;
    const redisReply *v = reply->element[0], *fl = reply->element[1];
    *flag = fl->type == REDIS_REPLY_INTEGER && fl->integer == 1;
    *value = dc_fleet_reply_string(v, len);
    return 0;
}
