#include "redis/fleet.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* KEYS[1] instances zset; ARGV[1] now (ms), ARGV[2] instance id. Returns live instances. */
static const char HEARTBEAT_LUA[] = "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
                                    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 5000)\n"
                                    "return redis.call('ZCARD', KEYS[1])\n";

/* A feature's script on this connection, found by the address of its source. */
typedef struct fleet_script {
    struct fleet_script *next;
    const char *lua;
    dc_redis_script_t *script; /* owned by f->redis */
} fleet_script_t;

typedef struct fleet_ext {
    struct fleet_ext *next;
    const dc_fleet_ext_type_t *type;
    void *state;
} fleet_ext_t;

struct dc_fleet {
    dc_redis_t *redis;
    dc_redis_t *sub; /* subscriber; NULL if it could not be created */
    char *prefix;
    char instance_id[96];
    fleet_script_t *scripts;
    fleet_ext_t *exts;
    bool heartbeat;
    uv_timer_t hb_timer;
    bool up;
    int closing; /* handles of ours still closing after dc_fleet_close */
};

static _Atomic unsigned instances = 1;
static _Atomic int connections_up;
static _Atomic int connections_total;

unsigned dc_fleet_instances(void)
{
    unsigned n = atomic_load(&instances);
    return n > 0 ? n : 1;
}

bool dc_fleet_any_up(void)
{
    return atomic_load(&connections_up) > 0;
}

const char *dc_fleet_state(void)
{
    int up = atomic_load(&connections_up), total = atomic_load(&connections_total);
    return up <= 0 ? "down" : (up >= total ? "up" : "partial");
}

void dc_fleet_connections(unsigned *up, unsigned *total)
{
    int u = atomic_load(&connections_up), t = atomic_load(&connections_total);
    *up = u > 0 ? (unsigned)u : 0;
    *total = t > 0 ? (unsigned)t : 0;
}

bool dc_fleet_up(const dc_fleet_t *f)
{
    return f != NULL && f->redis != NULL && dc_redis_connected(f->redis);
}

const char *dc_fleet_prefix(const dc_fleet_t *f)
{
    return f->prefix;
}

const char *dc_fleet_instance_id(const dc_fleet_t *f)
{
    return f->instance_id;
}

char *dc_fleet_key(const dc_fleet_t *f, const char *kind, const char *key, size_t len)
{
    return dc_asprintf("%s%s%.*s", f->prefix, kind, (int)len, key);
}

static void on_state(void *data, bool up)
{
    dc_fleet_t *f = data;
    if (up == f->up)
        return;
    f->up = up;
    atomic_fetch_add(&connections_up, up ? 1 : -1);
    if (up)
        dc_log_info("redis: connected");
    else
        dc_log_warn("redis: connection lost; limits fall back to this instance's share until it returns");
}

/* ---- the call record ---- */

static void on_call_reply(void *data, int err, const redisReply *reply)
{
    dc_fleet_call_t *c = data;
    c->on_reply(c, err, reply);
    free(c);
}

static void on_ignore(void *data, int err, const redisReply *reply) {}

static dc_redis_script_t *script_of(dc_fleet_t *f, const char *lua)
{
    for (fleet_script_t *s = f->scripts; s != NULL; s = s->next)
        if (s->lua == lua)
            return s->script;
    fleet_script_t *s = dc_malloc(sizeof(*s));
    s->lua = lua;
    s->script = dc_redis_script_register(f->redis, lua);
    s->next = f->scripts;
    f->scripts = s;
    return s->script;
}

int dc_fleet_eval(dc_fleet_t *f, const char *lua, const dc_fleet_call_t *call, int nkeys, int nargs, const char **args,
                  const size_t *lens)
{
    if (f->redis == NULL)
        return DC_EAGAIN; /* closed */
    dc_redis_script_t *s = script_of(f, lua);
    if (call == NULL)
        return dc_redis_eval(f->redis, s, on_ignore, NULL, nkeys, nargs, args, lens);
    dc_fleet_call_t *c = dc_malloc(sizeof(*c));
    *c = *call;
    int rc = dc_redis_eval(f->redis, s, on_call_reply, c, nkeys, nargs, args, lens);
    if (rc != 0)
        free(c);
    return rc;
}

int dc_fleet_command(dc_fleet_t *f, const dc_fleet_call_t *call, int argc, const char **argv, const size_t *lens)
{
    if (f->redis == NULL)
        return DC_EAGAIN; /* closed */
    if (call == NULL)
        return dc_redis_commandargv(f->redis, on_ignore, NULL, argc, argv, lens);
    dc_fleet_call_t *c = dc_malloc(sizeof(*c));
    *c = *call;
    int rc = dc_redis_commandargv(f->redis, on_call_reply, c, argc, argv, lens);
    if (rc != 0)
        free(c);
    return rc;
}

int dc_fleet_get(dc_fleet_t *f, const char *kind, const char *key, size_t len, const dc_fleet_call_t *call)
{
    char *rkey = dc_fleet_key(f, kind, key, len);
    const char *argv[2] = {"GET", rkey};
    size_t lens[2] = {3, strlen(rkey)};
    int rc = dc_fleet_command(f, call, 2, argv, lens);
    free(rkey);
    return rc;
}

/* ---- pub/sub and per-feature state ---- */

dc_redis_sub_t *dc_fleet_subscribe(dc_fleet_t *f, const char *channel, dc_redis_msg_cb cb, void *data)
{
    return f->sub != NULL ? dc_redis_subscribe(f->sub, channel, cb, data) : NULL;
}

void dc_fleet_unsubscribe(dc_fleet_t *f, dc_redis_sub_t *s)
{
    if (s != NULL && f->sub != NULL)
        dc_redis_unsubscribe(f->sub, s);
}

void *dc_fleet_ext(dc_fleet_t *f, const dc_fleet_ext_type_t *type)
{
    for (fleet_ext_t *e = f->exts; e != NULL; e = e->next)
        if (e->type == type)
            return e->state;
    fleet_ext_t *e = dc_malloc(sizeof(*e));
    e->type = type;
    e->state = type->create(f);
    e->next = f->exts;
    f->exts = e;
    return e->state;
}

/* ---- the instance registry ---- */

static void on_heartbeat_reply(void *data, int err, const redisReply *reply)
{
    unsigned n;
    if (err == 0 && dc_fleet_reply_instances(reply, &n))
        atomic_store(&instances, n);
    /* on failure the last count stays: "N = live instances last seen in Redis" */
}

static void on_heartbeat_timer(uv_timer_t *t)
{
    dc_fleet_t *f = t->data;
    if (!dc_fleet_up(f))
        return;
    char key[256], now[32];
    snprintf(key, sizeof(key), "%sinstances", f->prefix);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)dc_now_wall_ms());
    const char *args[3] = {key, now, f->instance_id};
    size_t lens[3] = {strlen(key), strlen(now), strlen(f->instance_id)};
    dc_redis_eval(f->redis, script_of(f, HEARTBEAT_LUA), on_heartbeat_reply, f, 1, 2, args, lens);
}

int dc_fleet_create(uv_loop_t *loop, const dc_fleet_opts_t *o, dc_fleet_t **out)
{
    dc_fleet_t *f = dc_calloc(1, sizeof(*f));
    /* reconnect attempts at most 1 s apart: back within 2 s of Redis returning */
    dc_redis_opts_t opts = {.url = o->url, .backoff_max_ms = 1000};
    int rc = dc_redis_create(loop, &opts, &f->redis);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->prefix = dc_strdup(o->prefix != NULL ? o->prefix : "dexcache:");
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(f->instance_id, sizeof(f->instance_id), "%s:%d:%08lx", host, (int)getpid(), (unsigned long)random());
    script_of(f, HEARTBEAT_LUA);
    if (dc_redis_create(loop, &opts, &f->sub) != 0)
        f->sub = NULL;
    dc_redis_set_state_cb(f->redis, on_state, f);
    atomic_fetch_add(&connections_total, 1);
    f->heartbeat = o->heartbeat;
    if (o->heartbeat) {
        uv_timer_init(loop, &f->hb_timer);
        f->hb_timer.data = f;
        uv_timer_start(&f->hb_timer, on_heartbeat_timer, 100, 1000);
    }
    *out = f;
    return 0;
}

/* ---- close ---- */

static void on_hb_closed(uv_handle_t *h)
{
    dc_fleet_t *f = h->data;
    f->closing--;
}

void dc_fleet_close(dc_fleet_t *f)
{
    if (f == NULL || f->redis == NULL)
        return;
    if (f->heartbeat) {
        f->closing++;
        uv_close((uv_handle_t *)&f->hb_timer, on_hb_closed);
    }
    if (f->up)
        atomic_fetch_sub(&connections_up, 1);
    f->up = false;
    atomic_fetch_sub(&connections_total, 1);
    dc_redis_t *redis = f->redis, *sub = f->sub;
    f->redis = NULL; /* from here every call fails at once */
    f->sub = NULL;
    for (fleet_ext_t *e = f->exts; e != NULL; e = e->next)
        if (e->type->close != NULL)
            e->type->close(f, e->state);
    if (sub != NULL)
        dc_redis_close(sub, NULL, NULL);
    dc_redis_close(redis, NULL, NULL); /* pending calls complete with DC_EIO on the next turns */
}

void dc_fleet_destroy(dc_fleet_t *f)
{
    if (f == NULL)
        return;
    DC_ASSERT(f->redis == NULL && f->closing == 0);
    while (f->exts != NULL) {
        fleet_ext_t *e = f->exts;
        f->exts = e->next;
        e->type->destroy(f, e->state);
        free(e);
    }
    while (f->scripts != NULL) { /* the dc_redis_script_t themselves were freed with the connection */
        fleet_script_t *s = f->scripts;
        f->scripts = s->next;
        free(s);
    }
    free(f->prefix);
    free(f);
}

/* ---- reply interpretation (pure) ---- */

const char *dc_fleet_reply_string(const redisReply *reply, size_t *len)
{
    *len = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_STRING)
        return NULL;
    *len = reply->len;
    return reply->str;
}

uint64_t dc_fleet_reply_nonneg(const redisReply *e)
{
    return e->type == REDIS_REPLY_INTEGER && e->integer > 0 ? (uint64_t)e->integer : 0;
}

bool dc_fleet_reply_instances(const redisReply *reply, unsigned *n)
{
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0)
        return false;
    *n = reply->integer > UINT32_MAX ? UINT32_MAX : (unsigned)reply->integer;
    return true;
}
