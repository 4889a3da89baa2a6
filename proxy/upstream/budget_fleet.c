#include "upstream/budget_fleet.h"
#include "core/error.h"

#include <stdio.h>

/* One slot free in every budget of a set (an account's and its endpoint group's), taken in all of
 * them at once. KEYS[2j-1] hash of budget j's per-window next free slots, KEYS[2j] its cooldown
 * (end of the pause after a 429, us). ARGV[1] number of budgets m, ARGV[2] queue timeout (us),
 * ARGV[3] "1" for background, then per budget: n windows, cost, n emission intervals (us, already
 * slowed by the AIMD share). A request of cost c moves each window's next slot c intervals past
 * its own. Returns {1, wait_us} (slot taken) or {0, wait_us} (refused). Values are written with
 * %.0f: Lua's default number format would round microsecond timestamps. */
static const char BUDGET_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local start = now\n"
    "local m = tonumber(ARGV[1])\n"
    "local a = 4\n"
    "for j = 1, m do\n"
    "  local cd = tonumber(redis.call('GET', KEYS[2 * j]) or '0')\n"
    "  if cd > start then start = cd end\n"
    "  local n = tonumber(ARGV[a])\n"
    "  for i = 1, n do\n"
    "    local tat = tonumber(redis.call('HGET', KEYS[2 * j - 1], i) or '0')\n"
    "    if tat > start then start = tat end\n"
    "  end\n"
    "  a = a + 2 + n\n"
    "end\n"
    "local wait = start - now\n"
    "if wait > 0 and (ARGV[3] == '1' or wait > tonumber(ARGV[2])) then return {0, wait} end\n"
    "a = 4\n"
    "for j = 1, m do\n"
    "  local n = tonumber(ARGV[a])\n"
    "  local cost = tonumber(ARGV[a + 1])\n"
    "  for i = 1, n do\n"
    "    redis.call('HSET', KEYS[2 * j - 1], i, string.format('%.0f', start + cost * tonumber(ARGV[a + 1 + i])))\n"
    "  end\n"
    "  if n > 0 then redis.call('PEXPIRE', KEYS[2 * j - 1], math.floor(wait / 1000) + 120000) end\n"
    "  a = a + 2 + n\n"
    "end\n"
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
    dc_fleet_budget_part_t part = {upstream, emission_us, nwin, 1};
    return dc_fleet_budget_reserve_multi(f, &part, 1, queue_timeout_us, background, cb, data);
}

#define MAX_ARGS (2 * DC_BUDGET_FLEET_MAX_PARTS + 3 + DC_BUDGET_FLEET_MAX_PARTS * (2 + DC_BUDGET_FLEET_MAX_WIN))

int dc_fleet_budget_reserve_multi(dc_fleet_t *f, const dc_fleet_budget_part_t *parts, size_t nparts,
                                  uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data)
{
    char keys[2 * DC_BUDGET_FLEET_MAX_PARTS][256], num[MAX_ARGS][24];
    const char *args[MAX_ARGS];
    size_t lens[MAX_ARGS];
    int na = 0, nn = 0;
    if (nparts > DC_BUDGET_FLEET_MAX_PARTS)
        nparts = DC_BUDGET_FLEET_MAX_PARTS;
    for (size_t j = 0; j < nparts; j++) {
        int l1 = snprintf(keys[2 * j], sizeof(keys[0]), "%sbud:%s", dc_fleet_prefix(f), parts[j].name);
        int l2 = snprintf(keys[2 * j + 1], sizeof(keys[0]), "%scd:%s", dc_fleet_prefix(f), parts[j].name);
        args[na] = keys[2 * j], lens[na++] = (size_t)l1;
        args[na] = keys[2 * j + 1], lens[na++] = (size_t)l2;
    }
#define PUSH_NUM(v)                                                                                                    \
    do {                                                                                                               \
        lens[na] = (size_t)snprintf(num[nn], sizeof(num[0]), "%llu", (unsigned long long)(v));                         \
        args[na++] = num[nn++];                                                                                        \
    } while (0)
    PUSH_NUM(nparts);
    PUSH_NUM(queue_timeout_us);
    args[na] = background ? "1" : "0", lens[na++] = 1;
    for (size_t j = 0; j < nparts; j++) {
        size_t nwin = parts[j].nwin < DC_BUDGET_FLEET_MAX_WIN ? parts[j].nwin : DC_BUDGET_FLEET_MAX_WIN;
        PUSH_NUM(nwin);
        PUSH_NUM(parts[j].cost ? parts[j].cost : 1);
        for (size_t i = 0; i < nwin; i++)
            PUSH_NUM(parts[j].emission_us[i]);
    }
#undef PUSH_NUM
    dc_fleet_call_t call = {on_budget_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_eval(f, BUDGET_LUA, &call, (int)(2 * nparts), na - (int)(2 * nparts), args, lens);
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
