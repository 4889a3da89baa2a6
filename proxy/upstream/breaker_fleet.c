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
    if (tier_key(key, sizeof(key), "brk:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return;
    uint64_t at = dc_now_wall_ms();
    snprintf(value, sizeof(value), "%llu:%llu:%u", (unsigned long long)at, (unsigned long long)o->pause_ms, o->trips);
    dc_bus_post_state(DC_BUS_BREAKER, at, body, (size_t)bl, key, value, o->pause_ms + max_backoff_ms);
}

void dc_breaker_fleet_closed(const char *upstream, unsigned tier)
{
    char key[256], body[300];
    int bl = snprintf(body, sizeof(body), "%s\t%u\tclose", upstream, tier + 1);
    if (tier_key(key, sizeof(key), "brk:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return;
    dc_bus_post_state(DC_BUS_BREAKER, dc_now_wall_ms(), body, (size_t)bl, key, NULL, 0);
}

bool dc_breaker_fleet_cordon(const char *upstream, unsigned tier, bool on)
{
    char key[256], body[300];
    int bl = snprintf(body, sizeof(body), "%s\t%u\t%s", upstream, tier + 1, on ? "cordon" : "uncordon");
    if (tier_key(key, sizeof(key), "cordon:", upstream, tier) < 0 || bl <= 0 || (size_t)bl >= sizeof(body))
        return false;
    return dc_bus_post_state(DC_BUS_BREAKER, dc_now_wall_ms(), body, (size_t)bl, key, on ? "1" : NULL, 0);
}

/* ---- the probe lock ---- */

static void on_lock_reply(const dc_fleet_call_t *c, int err, const redisReply *reply)
{
    bool won = false;
    if (err == 0 && reply->type == REDIS_REPLY_ERROR)
        err = DC_EPROTO;
    else if (err == 0)
        won = reply->type == REDIS_REPLY_STATUS; /* OK; nil = someone else holds it */
    ((dc_breaker_probe_cb)c->cb)(c->data, err, won);
}

int dc_breaker_fleet_probe_lock(dc_fleet_t *f, const char *upstream, unsigned tier, uint64_t ttl_ms,
                                dc_breaker_probe_cb cb, void *data)
{
    char rel[256], key[320], ttl[24];
    if (!dc_fleet_up(f) || tier_key(rel, sizeof(rel), "brkp:", upstream, tier) < 0)
        return DC_EIO;
    int kl = snprintf(key, sizeof(key), "%s%s", dc_fleet_prefix(f), rel);
    int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)(ttl_ms > 0 ? ttl_ms : 1000));
    if (kl <= 0 || (size_t)kl >= sizeof(key))
        return DC_EIO;
    const char *id = dc_fleet_instance_id(f);
    const char *argv[6] = {"SET", key, id, "NX", "PX", ttl};
    size_t lens[6] = {3, (size_t)kl, strlen(id), 2, 2, (size_t)tl};
    dc_fleet_call_t call = {on_lock_reply, (dc_fleet_fn)cb, data};
    return dc_fleet_command(f, &call, 6, argv, lens);
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
