#include "upstream/budget_fleet.h"
#include "core/error.h"

#include <stdio.h>

/* KEYS[1] hash of per-window next free slots, KEYS[2] cooldown (end of the pause after a 429, us).
 * ARGV[1] n windows, ARGV[2..n+1] emission intervals (us, already slowed by the AIMD share),
 * ARGV[n+2] queue timeout (us), ARGV[n+3] "1" for background. Returns {1, wait_us} (slot taken)
 * or {0, wait_us} (refused). Values are written with %.0f: Lua's default number format would
 * round microsecond timestamps. */
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

/* KEYS[1] cooldown; ARGV[1] pause (us). The end of the pause, in Redis time like the budget
 * script reads it; never shortened. */
static const char COOLDOWN_LUA[] = "local t = redis.call('TIME')\n"
                                   "local until_us = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])\n"
                                   "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                                   "if until_us > cur then redis.call('SET', KEYS[1], string.format('%.0f', until_us),"
                                   " 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000) end\n"
                                   "return 1\n";

static void on_budget_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    int ok = 0;
    uint64_t wait = 0;
    if (err == 0)
        err = dc_fleet_reply_budget(reply, &ok, &wait);
    ((dc_fleet_budget_cb)c->cb)(c->data, err, ok, wait);
}

int dc_fleet_budget_reserve(dc_fleet_t *f, const char *upstream, const uint64_t *emission_us, size_t nwin,
                            uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data)
{
    char k1[256], k2[256], nbuf[8], em[DC_BUDGET_FLEET_MAX_WIN][24], qt[24];
    const char *args[4 + DC_BUDGET_FLEET_MAX_WIN];
    size_t lens[4 + DC_BUDGET_FLEET_MAX_WIN];
    if (nwin > DC_BUDGET_FLEET_MAX_WIN)
        nwin = DC_BUDGET_FLEET_MAX_WIN;
    int l1 = snprintf(k1, sizeof(k1), "%sbud:%s", dc_fleet_prefix(f), upstream);
    int l2 = snprintf(k2, sizeof(k2), "%scd:%s", dc_fleet_prefix(f), upstream);
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
    dc_fleet_call_t call = {on_budget_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_eval(f, BUDGET_LUA, &call, 2, (int)(3 + nwin), args, lens);
}

void dc_fleet_cooldown(dc_fleet_t *f, const char *upstream, uint64_t retry_after_us)
{
    if (!dc_fleet_up(f))
        return;
    char key[256], delay[24];
    int kl = snprintf(key, sizeof(key), "%scd:%s", dc_fleet_prefix(f), upstream);
    int dl = snprintf(delay, sizeof(delay), "%llu", (unsigned long long)retry_after_us);
    const char *args[2] = {key, delay};
    size_t lens[2] = {(size_t)kl, (size_t)dl};
    dc_fleet_eval(f, COOLDOWN_LUA, NULL, 1, 1, args, lens);
}

int dc_fleet_reply_budget(const redisReply *reply, int *ok, uint64_t *wait_us)
{
    *ok = 0;
    *wait_us = 0;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
        return DC_EPROTO;
    *ok = reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[0]->integer == 1;
    *wait_us = dc_fleet_reply_nonneg(reply->element[1]);
    return 0;
}
