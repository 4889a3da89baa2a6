#include "ratelimit/fleet.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "ratelimit/fleet_reply.h"
#include "redis/redis.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* KEYS[1] bucket; ARGV[1] emission interval (us), ARGV[2] burst, ARGV[3] lease (tokens wanted).
 * Time is Redis's own (TIME), so instances with skewed clocks share one exact bucket. Grants the
 * lease only when at least twice that many tokens are free (far from the limit), else exactly one:
 * at the boundary every decision is made here. Returns {allowed, granted, remaining,
 * retry_after_us, reset_us}; TATs are written with %.0f (Lua would round them). */
static const char GCRA_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = T * tonumber(ARGV[2])\n"
    "local lease = tonumber(ARGV[3])\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if tat < now then tat = now end\n"
    "local avail = math.floor((now + tau - tat) / T)\n"
    "if avail < 1 then return {0, 0, 0, tat + T - tau - now, tat - now} end\n"
    "local grant = 1\n"
    "if lease > 1 and avail >= 2 * lease then grant = lease end\n"
    "local new_tat = tat + grant * T\n"
    "redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)\n"
    "return {1, grant, avail - grant, 0, new_tat - now}\n";

/* The fleet-wide upstream budget. KEYS[1] hash of per-window next free slots, KEYS[2] cooldown
 * (end of the pause after a 429, us). ARGV[1] n windows, ARGV[2..n+1] emission intervals (us,
 * already slowed by the AIMD share), ARGV[n+2] queue timeout (us), ARGV[n+3] "1" for background.
 * Returns {1, wait_us} (slot taken) or {0, wait_us} (refused). Values are written with %.0f:
 * Lua's default number format would round microsecond timestamps. */
static const char BUDGET_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local start = now\n"
    "local cd = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "if cd > start then start = cd end\n"
    "local n = tonumber(ARGV[1])\n"
    "for i = 1, n do\n"
    "  local tat = tonumber(redis.call('HGET', KEYS[1], i) or '0')\n"
    "  if tat > start then start = tat end\n"
    "end\n"
    "local wait = start - now\n"
    "if wait > 0 and (ARGV[n + 3] == '1' or wait > tonumber(ARGV[n + 2])) then return {0, wait} end\n"
    "for i = 1, n do redis.call('HSET', KEYS[1], i, string.format('%.0f', start + tonumber(ARGV[1 + i]))) end\n"
    "redis.call('PEXPIRE', KEYS[1], math.floor(wait / 1000) + 120000)\n"
    "return {1, wait}\n";

/* KEYS[1] lease; ARGV[1] instance id, ARGV[2] ttl ms. 1 = ours (taken or renewed), 0 = another's. */
static const char SSE_LEASE_LUA[] = "local v = redis.call('GET', KEYS[1])\n"
                                    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
                                    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end\n"
                                    "return 0\n";
/* KEYS[1] id counter, KEYS[2] last update; ARGV[1] channel, ARGV[2] type, ARGV[3] body. Returns the
 * event id. The last update is kept for instances that start relaying the channel later. */
static const char SSE_PUBLISH_LUA[] = "local id = redis.call('INCR', KEYS[1])\n"
                                      "redis.call('PEXPIRE', KEYS[1], 86400000)\n"
                                      "local msg = id .. '|' .. ARGV[2] .. '|' .. ARGV[3]\n"
                                      "if ARGV[2] == 'update' then redis.call('SET', KEYS[2], msg, 'PX', 86400000) end\n"
                                      "redis.call('PUBLISH', ARGV[1], msg)\n"
                                      "return id\n";

/* KEYS[1] instances zset; ARGV[1] now (ms), ARGV[2] instance id. Returns live instances. */
static const char HEARTBEAT_LUA[] =
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - 5000)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

struct dc_fleet {
    dc_redis_t *redis;
    dc_redis_script_t *gcra;
    dc_redis_script_t *heartbeat;
    dc_redis_script_t *budget;
    dc_redis_script_t *cooldown;
    dc_redis_script_t *unlock;
    dc_redis_script_t *peek;
    dc_redis_script_t *lock;
    dc_redis_script_t *sse_lease;
    dc_redis_script_t *sse_publish;
    char *prefix;
    char instance_id[96];
    dc_redis_t *sub;    /* subscriber: fill notices */
    char *fill_channel;
    dc_fleet_watch_t watches; /* sentinel of the followers waiting on this worker */
    uv_timer_t hb_timer;
    bool up;
};

static _Atomic unsigned instances = 1;
static _Atomic int connections_up;
static _Atomic int connections_total;
static _Atomic uint64_t fallbacks;
static _Atomic uint64_t l2_hits;

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

uint64_t dc_fleet_fallbacks(void)
{
    return atomic_load(&fallbacks);
}

void dc_fleet_count_fallback(void)
{
    atomic_fetch_add(&fallbacks, 1);
}

bool dc_fleet_up(const dc_fleet_t *f)
{
    return f != NULL && dc_redis_connected(f->redis);
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
    if (!dc_redis_connected(f->redis))
        return;
    char key[256], now[32];
    snprintf(key, sizeof(key), "%sinstances", f->prefix);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)dc_now_wall_ms());
    const char *args[3] = {key, now, f->instance_id};
    size_t lens[3] = {strlen(key), strlen(now), strlen(f->instance_id)};
    dc_redis_eval(f->redis, f->heartbeat, on_heartbeat_reply, f, 1, 2, args, lens);
}

/* A notice (key) from any instance's leader, or NULL after (re)subscribing: whatever was announced
 * while we were not listening is unknown, so every follower looks again. */
static void on_fill_notice(void *data, const char *key, size_t len)
{
    dc_fleet_t *f = data;
    dc_fleet_watch_t fired = {.next = &fired, .prev = &fired};
    dc_fleet_watch_t *w = f->watches.next;
    while (w != &f->watches) { /* move the matches aside first: callbacks may unwatch others */
        dc_fleet_watch_t *next = w->next;
        if (key == NULL || (w->len == len && memcmp(w->key, key, len) == 0)) {
            w->prev->next = w->next;
            w->next->prev = w->prev;
            w->next = &fired;
            w->prev = fired.prev;
            fired.prev->next = w;
            fired.prev = w;
        }
        w = next;
    }
    while (fired.next != &fired) {
        w = fired.next;
        w->prev->next = w->next;
        w->next->prev = w->prev;
        w->next = w->prev = NULL;
        w->cb(w);
    }
}

void dc_fleet_watch(dc_fleet_t *f, dc_fleet_watch_t *w)
{
    DC_ASSERT(w->next == NULL);
    w->next = &f->watches;
    w->prev = f->watches.prev;
    f->watches.prev->next = w;
    f->watches.prev = w;
}

void dc_fleet_unwatch(dc_fleet_t *f, dc_fleet_watch_t *w)
{
    if (w->next == NULL)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

int dc_fleet_create(uv_loop_t *loop, const dc_config_t *cfg, bool heartbeat, dc_fleet_t **out)
{
    dc_fleet_t *f = dc_calloc(1, sizeof(*f));
    /* reconnect attempts at most 1 s apart: back within 2 s of Redis returning */
    dc_redis_opts_t opts = {.url = cfg->redis.url, .backoff_max_ms = 1000};
    int rc = dc_redis_create(loop, &opts, &f->redis);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->prefix = dc_strdup(cfg->redis.prefix != NULL ? cfg->redis.prefix : "dexcache:");
    f->watches.next = f->watches.prev = &f->watches;
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(f->instance_id, sizeof(f->instance_id), "%s:%d:%08lx", host, (int)getpid(), (unsigned long)random());
    f->gcra = dc_redis_script_register(f->redis, GCRA_LUA);
    f->heartbeat = dc_redis_script_register(f->redis, HEARTBEAT_LUA);
    f->budget = dc_redis_script_register(f->redis, BUDGET_LUA);
    /* releasing the lock also tells every instance's followers to look again now */
    f->unlock = dc_redis_script_register(f->redis, "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                                   "redis.call('DEL', KEYS[1]) "
                                                   "return redis.call('PUBLISH', ARGV[2], ARGV[3]) end return 0\n");
    f->fill_channel = dc_asprintf("%sfill", f->prefix);
    f->sse_lease = dc_redis_script_register(f->redis, SSE_LEASE_LUA);
    f->sse_publish = dc_redis_script_register(f->redis, SSE_PUBLISH_LUA);
    if (dc_redis_create(loop, &opts, &f->sub) == 0)
        dc_redis_subscribe(f->sub, f->fill_channel, on_fill_notice, f);
    f->peek = dc_redis_script_register(f->redis, "return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2])}\n");
    f->lock = dc_redis_script_register(f->redis, "local v = redis.call('GET', KEYS[1])\n"
                                                 "local ok = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2])\n"
                                                 "return {v, ok and 1 or 0}\n");
    dc_redis_set_state_cb(f->redis, on_state, f);
    atomic_fetch_add(&connections_total, 1);
    if (heartbeat) {
        uv_timer_init(loop, &f->hb_timer);
        f->hb_timer.data = f;
        uv_timer_start(&f->hb_timer, on_heartbeat_timer, 100, 1000);
    }
    *out = f;
    return 0;
}

typedef struct gcra_call {
    dc_fleet_gcra_cb cb;
    void *data;
} gcra_call_t;

static void on_gcra_reply(void *data, int err, const redisReply *reply)
{
    gcra_call_t *c = data;
    dc_gcra_result_t res = {0};
    unsigned granted = 0;
    if (err == 0)
        err = dc_fleet_reply_gcra(reply, &res, &granted);
    c->cb(c->data, err, &res, granted);
    free(c);
}

unsigned dc_fleet_lease_size(const dc_gcra_params_t *p)
{
    uint64_t l = p->burst / (16 * (uint64_t)dc_fleet_instances());
    return l < 1 ? 1 : (l > 256 ? 256 : (unsigned)l);
}

int dc_fleet_gcra(dc_fleet_t *f, const char *key, size_t len, const dc_gcra_params_t *p, dc_fleet_gcra_cb cb,
                  void *data)
{
    char rkey[512], emission[24], burst[24], lease[16];
    int kl = snprintf(rkey, sizeof(rkey), "%srl:%.*s", f->prefix, (int)(len > 400 ? 400 : len), key);
    int el = snprintf(emission, sizeof(emission), "%llu", (unsigned long long)p->emission_us);
    int bl = snprintf(burst, sizeof(burst), "%llu", (unsigned long long)p->burst);
    int ll = snprintf(lease, sizeof(lease), "%u", dc_fleet_lease_size(p));
    const char *args[4] = {rkey, emission, burst, lease};
    size_t lens[4] = {(size_t)kl, (size_t)el, (size_t)bl, (size_t)ll};
    gcra_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->gcra, on_gcra_reply, c, 1, 3, args, lens);
    if (rc != 0)
        free(c);
    return rc;
}

void dc_fleet_local_share(const dc_gcra_params_t *in, dc_gcra_params_t *out)
{
    unsigned n = dc_fleet_instances();
    uint32_t limit = in->limit / n > 0 ? in->limit / n : 1;
    uint64_t burst = in->burst / n > 0 ? in->burst / n : 1;
    dc_gcra_params_init(out, limit, in->window_ms, (uint32_t)burst);
}

typedef struct budget_call {
    dc_fleet_budget_cb cb;
    void *data;
} budget_call_t;

static void on_budget_reply(void *data, int err, const redisReply *reply)
{
    budget_call_t *c = data;
    int ok = 0;
    uint64_t wait = 0;
    if (err == 0)
        err = dc_fleet_reply_budget(reply, &ok, &wait);
    c->cb(c->data, err, ok, wait);
    free(c);
}

int dc_fleet_budget_reserve(dc_fleet_t *f, const char *upstream, const uint64_t *emission_us, size_t nwin,
                            uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data)
{
    char k1[256], k2[256], nbuf[8], em[DC_BUDGET_FLEET_MAX_WIN][24], qt[24];
    const char *args[4 + DC_BUDGET_FLEET_MAX_WIN];
    size_t lens[4 + DC_BUDGET_FLEET_MAX_WIN];
    if (nwin > DC_BUDGET_FLEET_MAX_WIN)
        nwin = DC_BUDGET_FLEET_MAX_WIN;
    int l1 = snprintf(k1, sizeof(k1), "%sbud:%s", f->prefix, upstream);
    int l2 = snprintf(k2, sizeof(k2), "%scd:%s", f->prefix, upstream);
    args[0] = k1, lens[0] = (size_t)l1;
    args[1] = k2, lens[1] = (size_t)l2;
    args[2] = nbuf, lens[2] = (size_t)snprintf(nbuf, sizeof(nbuf), "%zu", nwin);
    for (size_t i = 0; i < nwin; i++) {
        args[3 + i] = em[i];
        lens[3 + i] = (size_t)snprintf(em[i], sizeof(em[i]), "%llu", (unsigned long long)emission_us[i]);
    }
    args[3 + nwin] = qt;
    lens[3 + nwin] = (size_t)snprintf(qt, sizeof(qt), "%llu", (unsigned long long)queue_timeout_us);
    args[4 + nwin] = background ? "1" : "0";
    lens[4 + nwin] = 1;
    budget_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->budget, on_budget_reply, c, 2, (int)(3 + nwin), args, lens);
    if (rc != 0)
        free(c);
    return rc;
}

static void on_ignore(void *data, int err, const redisReply *reply)
{
}

void dc_fleet_cooldown(dc_fleet_t *f, const char *upstream, uint64_t retry_after_us)
{
    if (!dc_redis_connected(f->redis))
        return;
    /* the end of the pause, in Redis time like the budget script reads it */
    char key[256], delay[24];
    int kl = snprintf(key, sizeof(key), "%scd:%s", f->prefix, upstream);
    int dl = snprintf(delay, sizeof(delay), "%llu", (unsigned long long)retry_after_us);
    static const char *COOLDOWN = "local t = redis.call('TIME')\n"
                                  "local until_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])\n"
                                  "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                                  "if until_us > cur then redis.call('SET', KEYS[1], string.format('%.0f', until_us),"
                                  " 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000) end\n"
                                  "return 1\n";
    if (f->cooldown == NULL)
        f->cooldown = dc_redis_script_register(f->redis, COOLDOWN);
    const char *args[2] = {key, delay};
    size_t lens[2] = {(size_t)kl, (size_t)dl};
    dc_redis_eval(f->redis, f->cooldown, on_ignore, NULL, 1, 1, args, lens);
}

uint64_t dc_fleet_l2_hits(void)
{
    return atomic_load(&l2_hits);
}

typedef struct l2_call {
    dc_fleet_l2_cb cb;
    void *data;
} l2_call_t;

static void on_l2_reply(void *data, int err, const redisReply *reply)
{
    l2_call_t *c = data;
    size_t len = 0;
    const char *value = err == 0 ? dc_fleet_reply_string(reply, &len) : NULL;
    if (value != NULL)
        atomic_fetch_add(&l2_hits, 1);
    c->cb(c->data, err, value, len);
    free(c);
}

int dc_fleet_l2_get(dc_fleet_t *f, const char *key, size_t len, dc_fleet_l2_cb cb, void *data)
{
    char *rkey = dc_asprintf("%sl2:%.*s", f->prefix, (int)len, key);
    const char *argv[2] = {"GET", rkey};
    size_t lens[2] = {3, strlen(rkey)};
    l2_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_commandargv(f->redis, on_l2_reply, c, 2, argv, lens);
    free(rkey);
    if (rc != 0)
        free(c);
    return rc;
}

void dc_fleet_l2_set(dc_fleet_t *f, const char *key, size_t len, const char *value, size_t vlen, uint64_t ttl_ms)
{
    if (!dc_redis_connected(f->redis) || vlen > DC_FLEET_L2_MAX || ttl_ms == 0)
        return;
    char *rkey = dc_asprintf("%sl2:%.*s", f->prefix, (int)len, key);
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
    const char *argv[5] = {"SET", rkey, value, "PX", px};
    size_t lens[5] = {3, strlen(rkey), vlen, 2, (size_t)pl};
    dc_redis_commandargv(f->redis, on_ignore, NULL, 5, argv, lens);
    free(rkey);
}

typedef struct lock_call {
    dc_fleet_lock_cb cb;
    void *data;
} lock_call_t;

/* The lock and peek scripts answer {L2 value or nil, 0/1} (fleet_reply.h): split that, counting
 * an L2 hit. */
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

static void on_lock_reply(void *data, int err, const redisReply *reply)
{
    lock_call_t *c = data;
    const char *value;
    size_t len;
    bool got;
    err = l2_and_flag(err, reply, &value, &len, &got);
    c->cb(c->data, err, got, value, len);
    free(c);
}

int dc_fleet_lock(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lock_cb cb, void *data)
{
    char *k1 = dc_asprintf("%sl2:%.*s", f->prefix, (int)len, key);
    char *k2 = dc_asprintf("%slk:%.*s", f->prefix, (int)len, key);
    char px[24];
    int pl = snprintf(px, sizeof(px), "%llu", (unsigned long long)ttl_ms);
    const char *args[4] = {k1, k2, f->instance_id, px};
    size_t lens[4] = {strlen(k1), strlen(k2), strlen(f->instance_id), (size_t)pl};
    lock_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->lock, on_lock_reply, c, 2, 2, args, lens);
    free(k1);
    free(k2);
    if (rc != 0)
        free(c);
    return rc;
}

void dc_fleet_unlock(dc_fleet_t *f, const char *key, size_t len)
{
    char *rkey = dc_asprintf("%slk:%.*s", f->prefix, (int)len, key);
    const char *args[4] = {rkey, f->instance_id, f->fill_channel, key};
    size_t lens[4] = {strlen(rkey), strlen(f->instance_id), strlen(f->fill_channel), len};
    dc_redis_eval(f->redis, f->unlock, on_ignore, NULL, 1, 3, args, lens);
    free(rkey);
}

typedef struct peek_call {
    dc_fleet_peek_cb cb;
    void *data;
} peek_call_t;

static void on_peek_reply(void *data, int err, const redisReply *reply)
{
    peek_call_t *c = data;
    const char *value;
    size_t len;
    bool locked;
    err = l2_and_flag(err, reply, &value, &len, &locked);
    c->cb(c->data, err, value, len, locked);
    free(c);
}

int dc_fleet_peek(dc_fleet_t *f, const char *key, size_t len, dc_fleet_peek_cb cb, void *data)
{
    char *k1 = dc_asprintf("%sl2:%.*s", f->prefix, (int)len, key);
    char *k2 = dc_asprintf("%slk:%.*s", f->prefix, (int)len, key);
    const char *args[2] = {k1, k2};
    size_t lens[2] = {strlen(k1), strlen(k2)};
    peek_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->peek, on_peek_reply, c, 2, 0, args, lens);
    free(k1);
    free(k2);
    if (rc != 0)
        free(c);
    return rc;
}

/* ---- event streams ---- */

typedef struct sse_call {
    dc_fleet_lease_cb lease_cb;
    dc_fleet_publish_cb publish_cb;
    void *data;
} sse_call_t;

static void on_sse_lease_reply(void *data, int err, const redisReply *reply)
{
    sse_call_t *c = data;
    bool leader = false;
    if (err == 0)
        err = dc_fleet_reply_lease(reply, &leader);
    c->lease_cb(c->data, err, leader);
    free(c);
}

int dc_fleet_sse_lease(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lease_cb cb, void *data)
{
    char *rkey = dc_asprintf("%sssel:%.*s", f->prefix, (int)len, key);
    char ttl[24];
    int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
    const char *args[3] = {rkey, f->instance_id, ttl};
    size_t lens[3] = {strlen(rkey), strlen(f->instance_id), (size_t)tl};
    sse_call_t *c = dc_calloc(1, sizeof(*c));
    c->lease_cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->sse_lease, on_sse_lease_reply, c, 1, 2, args, lens);
    free(rkey);
    if (rc != 0)
        free(c);
    return rc;
}

static void on_sse_publish_reply(void *data, int err, const redisReply *reply)
{
    sse_call_t *c = data;
    uint64_t id = 0;
    if (err == 0)
        err = dc_fleet_reply_publish(reply, &id);
    c->publish_cb(c->data, err, id);
    free(c);
}

int dc_fleet_sse_publish(dc_fleet_t *f, const char *key, size_t len, const char *type, const char *body, size_t blen,
                         dc_fleet_publish_cb cb, void *data)
{
    char *idkey = dc_asprintf("%sssei:%.*s", f->prefix, (int)len, key);
    char *lastkey = dc_asprintf("%sssev:%.*s", f->prefix, (int)len, key);
    char *chan = dc_asprintf("%ssse:%.*s", f->prefix, (int)len, key);
    const char *args[5] = {idkey, lastkey, chan, type, body};
    size_t lens[5] = {strlen(idkey), strlen(lastkey), strlen(chan), strlen(type), blen};
    sse_call_t *c = dc_calloc(1, sizeof(*c));
    c->publish_cb = cb;
    c->data = data;
    int rc = dc_redis_eval(f->redis, f->sse_publish, on_sse_publish_reply, c, 2, 3, args, lens);
    free(idkey);
    free(lastkey);
    free(chan);
    if (rc != 0)
        free(c);
    return rc;
}

dc_redis_sub_t *dc_fleet_sse_subscribe(dc_fleet_t *f, const char *key, size_t len,
                                       void (*cb)(void *data, const char *msg, size_t len), void *data)
{
    if (f->sub == NULL)
        return NULL;
    char *chan = dc_asprintf("%ssse:%.*s", f->prefix, (int)len, key);
    dc_redis_sub_t *s = dc_redis_subscribe(f->sub, chan, cb, data);
    free(chan);
    return s;
}

void dc_fleet_sse_unsubscribe(dc_fleet_t *f, dc_redis_sub_t *s)
{
    if (s != NULL && f->sub != NULL)
        dc_redis_unsubscribe(f->sub, s);
}

typedef struct sse_last_call {
    void (*cb)(void *data, const char *msg, size_t len);
    void *data;
} sse_last_call_t;

static void on_sse_last_reply(void *data, int err, const redisReply *reply)
{
    sse_last_call_t *c = data;
    size_t len = 0;
    const char *msg = err == 0 ? dc_fleet_reply_string(reply, &len) : NULL;
    c->cb(c->data, msg, len);
    free(c);
}

int dc_fleet_sse_last(dc_fleet_t *f, const char *key, size_t len, void (*cb)(void *data, const char *msg, size_t len),
                      void *data)
{
    char *lastkey = dc_asprintf("%sssev:%.*s", f->prefix, (int)len, key);
    sse_last_call_t *c = dc_malloc(sizeof(*c));
    c->cb = cb;
    c->data = data;
    int rc = dc_redis_command(f->redis, on_sse_last_reply, c, "GET %s", lastkey);
    free(lastkey);
    if (rc != 0)
        free(c);
    return rc;
}

/* ---- teardown ---- */

void dc_fleet_close(dc_fleet_t *f)
{
    if (f == NULL || f->redis == NULL)
        return;
    if (f->hb_timer.data == f) {
        uv_timer_stop(&f->hb_timer);
        uv_close((uv_handle_t *)&f->hb_timer, NULL); /* f outlives the loop's last turn */
    }
    if (f->up)
        atomic_fetch_add(&connections_up, -1);
    f->up = false;
    atomic_fetch_add(&connections_total, -1);
    dc_redis_t *redis = f->redis, *sub = f->sub;
    f->redis = NULL; /* from here every call fails at once (dc_redis_close's NULL contract) */
    f->sub = NULL;
    on_fill_notice(f, NULL, 0);        /* followers look again now, and find Redis gone */
    dc_redis_close(redis, NULL, NULL); /* pending commands complete with DC_EIO on the next turn */
    if (sub != NULL)
        dc_redis_close(sub, NULL, NULL);
}

void dc_fleet_destroy(dc_fleet_t *f)
{
    if (f == NULL)
        return;
    DC_ASSERT(f->redis == NULL && f->watches.next == &f->watches);
    free(f->prefix);
    free(f->fill_channel);
    free(f);
}
