#include "upstream/breaker_fleet.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/time.h"
#include "redis/bus.h"

#include <stdio.h>
#include <string.h>

/* "<upstream>~<tier 1-based>" after `kind`, into buf. */
static int tier_key(char *buf, size_t size, const char *kind, const char *upstream, unsigned tier)
{
    int n = snprintf(buf, size, "%s%s~%u", kind, upstream, tier + 1);
    return n > 0 && (size_t)n < size ? n : -1;
}

void dc_breaker_fleet_opened(const char *upstream, unsigned tier, const dc_breaker_opening_t *o,
                             uint64_t max_backoff_ms)
{
    char key[256], body[320], value[80];
    int bl = snprintf(body, sizeof(body), "%s\t%u\topen\t%llu\t%u", upstream, tier + 1, (unsigned long long)o->pause_ms,
                      o->trips);
    char lock[256];
    if (tier_key(key, sizeof(key), "brk:", upstream, tier) < 0 ||
        tier_key(lock, sizeof(lock), "brkp:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return;
    uint64_t at = dc_now_wall_ms();
    snprintf(value, sizeof(value), "%llu:%llu:%u", (unsigned long long)at, (unsigned long long)o->pause_ms, o->trips);
    dc_bus_post_state(DC_BUS_BREAKER, at, body, (size_t)bl, key, value, o->pause_ms + max_backoff_ms, lock);
}

void dc_breaker_fleet_closed(const char *upstream, unsigned tier)
{
    char key[256], lock[256], body[300];
    int bl = snprintf(body, sizeof(body), "%s\t%u\tclose", upstream, tier + 1);
    if (tier_key(key, sizeof(key), "brk:", upstream, tier) < 0 ||
        tier_key(lock, sizeof(lock), "brkp:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return;
    dc_bus_post_state(DC_BUS_BREAKER, dc_now_wall_ms(), body, (size_t)bl, key, NULL, 0, lock);
}

bool dc_breaker_fleet_cordon(const char *upstream, unsigned tier, bool on)
{
    char key[256], body[300];
    int bl = snprintf(body, sizeof(body), "%s\t%u\t%s", upstream, tier + 1, on ? "cordon" : "uncordon");
    if (tier_key(key, sizeof(key), "cordon:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return false;
    return dc_bus_post_state(DC_BUS_BREAKER, dc_now_wall_ms(), body, (size_t)bl, key, on ? "1" : NULL, 0, NULL);
}

/* ---- the probe lock ---- */

/* KEYS[1] the lock, KEYS[2] the brk key; ARGV[1] our id, ARGV[2] the lock's lifetime (ms). Refused
 * with the brk value while the opening it records still runs (by Redis's clock): a probe that failed
 * elsewhere reopened it (and deleted the lock in the same step, see dc_breaker_fleet_opened), and
 * its notice has not reached us yet. Else {1} when the lock is ours, {0} when another holds it. */
static const char LOCK_LUA[] = "local v = redis.call('GET', KEYS[2])\n"
                               "if v then\n"
                               "  local at, pause = string.match(v, '^(%d+):(%d+):')\n"
                               "  local t = redis.call('TIME')\n"
                               "  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
                               "  if at and tonumber(at) + tonumber(pause) > now then return {0, v} end\n"
                               "end\n"
                               "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end\n"
                               "return {0}\n";

static void on_lock_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    bool won = false;
    const char *open = NULL;
    size_t open_len = 0;
    if (err == 0 &&
        (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 || reply->element[0]->type != REDIS_REPLY_INTEGER))
        err = DC_EPROTO;
    if (err == 0) {
        won = reply->element[0]->integer == 1;
        if (reply->elements == 2 && reply->element[1]->type == REDIS_REPLY_STRING)
            open = reply->element[1]->str, open_len = reply->element[1]->len;
    }
    ((dc_breaker_probe_cb)c->cb)(c->data, err, won, open, open_len);
}

int dc_breaker_fleet_probe_lock(dc_fleet_t *f, const char *upstream, unsigned tier, uint64_t ttl_ms,
                                dc_breaker_probe_cb cb, void *data)
{
    char rel[256], key[320], brel[256], bkey[320], ttl[24];
    if (!dc_fleet_up(f) || tier_key(rel, sizeof(rel), "brkp:", upstream, tier) < 0 ||
        tier_key(brel, sizeof(brel), "brk:", upstream, tier) < 0)
        return DC_EIO;
    int kl = snprintf(key, sizeof(key), "%s%s", dc_fleet_prefix(f), rel);
    int bl = snprintf(bkey, sizeof(bkey), "%s%s", dc_fleet_prefix(f), brel);
    int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms > 0 ? ttl_ms : 1000));
    if (kl <= 0 || (size_t)kl >= sizeof(key) || bl <= 0 || (size_t)bl >= sizeof(bkey))
        return DC_EIO;
    const char *id = dc_fleet_instance_id(f);
    const char *args[4] = {key, bkey, id, ttl};
    size_t lens[4] = {(size_t)kl, (size_t)bl, strlen(id), (size_t)tl};
    dc_fleet_call_t call = {on_lock_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_eval(f, LOCK_LUA, &call, 2, 2, args, lens);
}

void dc_breaker_fleet_probe_unlock(dc_fleet_t *f, const char *upstream, unsigned tier)
{
    char rel[256], key[320];
    if (!dc_fleet_up(f) || tier_key(rel, sizeof(rel), "brkp:", upstream, tier) < 0)
        return;
    int kl = snprintf(key, sizeof(key), "%s%s", dc_fleet_prefix(f), rel);
    if (kl <= 0 || (size_t)kl >= sizeof(key))
        return;
    const char *argv[2] = {"DEL", key};
    size_t lens[2] = {3, (size_t)kl};
    dc_fleet_command(f, NULL, 2, argv, lens);
}

/* ---- pure parts ---- */

/* The next tab-separated field of [*p, end): its start and length; advances past the tab. */
static bool field(const char **p, const char *end, const char **s, size_t *len)
{
    if (*p > end)
        return false;
    const char *t = memchr(*p, '\t', (size_t)(end - *p));
    *s = *p;
    *len = (size_t)((t != NULL ? t : end) - *p);
    *p = t != NULL ? t + 1 : end + 1;
    return true;
}

bool dc_brk_notice_parse(const char *body, size_t len, dc_brk_notice_t *n)
{
    const char *p = body, *end = body + len, *s;
    size_t l;
    uint64_t v;
    memset(n, 0, sizeof(*n));
    if (!field(&p, end, &n->upstream, &n->upstream_len) || n->upstream_len == 0)
        return false;
    if (!field(&p, end, &s, &l) || !dc_parse_u64(s, l, &v) || v == 0 || v > 64)
        return false;
    n->tier = (unsigned)v;
    if (!field(&p, end, &s, &l))
        return false;
    static const char *const verbs[] = {"open", "close", "cordon", "uncordon"};
    size_t k = 0;
    while (k < 4 && !(strlen(verbs[k]) == l && memcmp(verbs[k], s, l) == 0))
        k++;
    if (k == 4)
        return false;
    n->verb = (dc_brk_verb_t)k;
    if (n->verb != DC_BRK_OPEN)
        return p > end; /* nothing after the verb */
    if (!field(&p, end, &s, &l) || !dc_parse_u64(s, l, &n->pause_ms) || n->pause_ms == 0)
        return false;
    if (!field(&p, end, &s, &l) || !dc_parse_u64(s, l, &v) || v == 0 || v > UINT32_MAX)
        return false;
    n->trips = (uint32_t)v;
    return p > end;
}

bool dc_brk_value_parse(const char *v, size_t len, uint64_t *at_ms, uint64_t *pause_ms, uint32_t *trips)
{
    const char *end = v + len, *c1 = memchr(v, ':', len);
    if (c1 == NULL)
        return false;
    const char *c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
    uint64_t t;
    if (c2 == NULL || !dc_parse_u64(v, (size_t)(c1 - v), at_ms) ||
        !dc_parse_u64(c1 + 1, (size_t)(c2 - c1 - 1), pause_ms) || !dc_parse_u64(c2 + 1, (size_t)(end - c2 - 1), &t) ||
        t == 0 || t > UINT32_MAX)
        return false;
    *trips = (uint32_t)t;
    return true;
}

/* Time left of a pause that started at at_ms (wall) for pause_ms. */
static uint64_t remaining(uint64_t at_ms, uint64_t pause_ms, uint64_t wall_ms)
{
    return at_ms + pause_ms > wall_ms ? at_ms + pause_ms - wall_ms : 0;
}

bool dc_brk_notice_apply(dc_upstream_state_t *h, const dc_brk_notice_t *n, uint64_t at_ms, uint64_t wall_ms,
                         uint64_t mono_ms)
{
    if (n->verb == DC_BRK_OPEN)
        return dc_upstream_state_fleet_open(h, mono_ms, remaining(at_ms, n->pause_ms, wall_ms), n->trips);
    if (n->verb == DC_BRK_CLOSE)
        return dc_upstream_state_fleet_close(h);
    return false;
}

bool dc_brk_value_apply(dc_upstream_state_t *h, const char *v, size_t len, uint64_t wall_ms, uint64_t mono_ms)
{
    uint64_t at, pause;
    uint32_t trips;
    return dc_brk_value_parse(v, len, &at, &pause, &trips) &&
           dc_upstream_state_fleet_open(h, mono_ms, remaining(at, pause, wall_ms), trips);
}

void dc_brk_sync_apply(dc_upstream_state_t *h, const char *brk, size_t brk_len, bool cordoned, uint64_t wall_ms,
                       uint64_t mono_ms)
{
    atomic_store(&h->cordoned, cordoned);
    uint64_t at, pause;
    uint32_t trips;
    if (brk != NULL && dc_brk_value_parse(brk, brk_len, &at, &pause, &trips)) {
        dc_upstream_state_fleet_open(h, mono_ms, remaining(at, pause, wall_ms), trips);
        return;
    }
    if (brk == NULL && atomic_load(&h->opened_by) == DC_OPENED_FLEET)
        dc_upstream_state_fleet_close(h);
}
