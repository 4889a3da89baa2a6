#include "ratelimit/gcra_fleet.h"
#include "core/error.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

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

static _Atomic uint64_t fallbacks;

uint64_t dc_fleet_fallbacks(void)
{
    return atomic_load(&fallbacks);
}

void dc_fleet_count_fallback(void)
{
    atomic_fetch_add(&fallbacks, 1);
}

static void on_gcra_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    dc_gcra_result_t res = {0};
    unsigned granted = 0;
    if (err == 0)
        err = dc_fleet_reply_gcra(reply, &res, &granted);
    ((dc_fleet_gcra_cb)c->cb)(c->data, err, &res, granted);
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
    int kl = snprintf(rkey, sizeof(rkey), "%srl:%.*s", dc_fleet_prefix(f), (int)(len > 400 ? 400 : len), key);
    int el = snprintf(emission, sizeof(emission), "%llu", (unsigned long long)p->emission_us);
    int bl = snprintf(burst, sizeof(burst), "%llu", (unsigned long long)p->burst);
    int ll = snprintf(lease, sizeof(lease), "%u", dc_fleet_lease_size(p));
    const char *args[4] = {rkey, emission, burst, lease};
    size_t lens[4] = {(size_t)kl, (size_t)el, (size_t)bl, (size_t)ll};
    dc_fleet_call_t call = {on_gcra_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_eval(f, GCRA_LUA, &call, 1, 3, args, lens);
}

void dc_fleet_local_share(const dc_gcra_params_t *in, dc_gcra_params_t *out)
{
    unsigned n = dc_fleet_instances();
    uint32_t limit = in->limit / n > 0 ? in->limit / n : 1;
    uint64_t burst = in->burst / n > 0 ? in->burst / n : 1;
    dc_gcra_params_init(out, limit, in->window_ms, (uint32_t)burst);
}

int dc_fleet_reply_gcra(const redisReply *reply, dc_gcra_result_t *res, unsigned *granted)
{
    memset(res, 0, sizeof(*res));
    *granted = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5)
        return DC_EPROTO;
    res->allowed = reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1;
    uint64_t g = dc_fleet_reply_nonneg(reply->element[1]);
    *granted = g > UINT32_MAX ? UINT32_MAX : (unsigned)g;
    res->remaining = dc_fleet_reply_nonneg(reply->element[2]);
    res->retry_after_us = dc_fleet_reply_nonneg(reply->element[3]);
    res->reset_us = dc_fleet_reply_nonneg(reply->element[4]);
    return 0;
}
