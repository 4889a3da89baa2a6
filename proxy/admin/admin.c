#include "admin/admin.h"
#include "admin/cdnpurge.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "cache/key.h"
#include "http/respond.h"
#include "upstream/breaker_fleet.h"
#include "upstream/upstream_state.h"
#include "redis/redis.h"

#include <cjson/cJSON.h>
#include <mbedtls/constant_time.h>
#include <h2o.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct dc_admin {
    h2o_globalconf_t gconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    dc_admin_source_t src;
    dc_cdnpurge_t *cdn; /* purges forwarded to the CDN (cdn.purge); NULL once closed */
};

static char *append_line(char *part, char *line)
{
    char *n = dc_asprintf("%s%s", part, line);
    free(part);
    free(line);
    return n;
}

/* A counter family with three `outcome` values per upstream, read from counters of each upstream's
 * retry budget at the given offsets (each an _Atomic uint64_t of dc_retry_budget_t). */
static char *append_outcomes(char *part, dc_snapshot_t *snap, const char *family, const char *help,
                             const char *const outcomes[3], const size_t fields[3])
{
    part = append_line(part, dc_asprintf("# HELP %s %s\n# TYPE %s counter\n", family, help, family));
    for (size_t i = 0; i < snap->cfg->nupstreams; i++) {
        char *rb = (char *)&snap->ups[i].retry_budget;
        for (size_t k = 0; k < 3; k++)
            part = append_line(
                part, dc_asprintf("%s{upstream=\"%s\",outcome=\"%s\"} %llu\n", family, snap->cfg->upstreams[i].name,
                                  outcomes[k], (unsigned long long)atomic_load((_Atomic uint64_t *)(rb + fields[k]))));
    }
    return part;
}

/* A tier's circuit as /health and /metrics name it: "cordoned" first, else the breaker's state. */
static const char *tier_circuit(dc_upstream_state_t *h, uint64_t now)
{
    return atomic_load(&h->cordoned) ? "cordoned" : dc_upstream_state_breaker_name(h, now);
}

/* Failures / attempts in the tier's ratio window (0 when it is empty or the ratio is off). */
static double tier_failure_ratio(dc_upstream_state_t *h, const dc_config_upstream_t *u, uint64_t now,
                                 uint32_t *attempts)
{
    dc_breaker_params_t bp = dc_upstream_breaker_params(u, 0);
    uint32_t f;
    dc_upstream_state_window(h, &bp, now, attempts, &f);
    return *attempts > 0 ? (double)f / (double)*attempts : 0.0;
}

/* Per tier (breaker, cordon, answers, openings and who made the last one, failure ratio) and per
 * upstream retry budget (allowed, denied, failovers). */
static char *append_tier_metrics(dc_snapshot_t *snap, char *part, uint64_t now)
{
    part = append_line(
        part, dc_strdup("# HELP dexcache_upstream_tier_state 0 closed, 0.5 half-open, 1 open, 2 cordoned "
                        "by hand.\n# TYPE dexcache_upstream_tier_state gauge\n"
                        "# HELP dexcache_upstream_tier_answers_total Answers delivered from each tier.\n"
                        "# TYPE dexcache_upstream_tier_answers_total counter\n"
                        "# HELP dexcache_upstream_tier_breaker_opened_total Times the tier's breaker opened here "
                        "(by this instance, or on another instance's notice).\n"
                        "# TYPE dexcache_upstream_tier_breaker_opened_total counter\n"
                        "# HELP dexcache_upstream_tier_breaker_opened_by 1 for who opened the tier's breaker last "
                        "(local: this instance, fleet: another one), while it is not closed.\n"
                        "# TYPE dexcache_upstream_tier_breaker_opened_by gauge\n"
                        "# HELP dexcache_upstream_tier_failure_ratio Failed / all attempts in the breaker's window.\n"
                        "# TYPE dexcache_upstream_tier_failure_ratio gauge\n"));
    for (size_t i = 0; i < snap->cfg->nupstreams; i++)
        for (size_t t = 0; t < snap->ups[i].ntiers; t++) {
            dc_upstream_state_t *h = dc_upstream_rt_tier_health(&snap->ups[i], t);
            const char *st = tier_circuit(h, now);
            double v = strcmp(st, "cordoned") == 0    ? 2.0
                       : strcmp(st, "open") == 0      ? 1.0
                       : strcmp(st, "half-open") == 0 ? 0.5
                                                      : 0.0;
            const char *u = snap->cfg->upstreams[i].name;
            const char *by = dc_upstream_state_opened_by_name(h);
            uint32_t attempts;
            double ratio = tier_failure_ratio(h, &snap->cfg->upstreams[i], now, &attempts);
            part = append_line(
                part,
                dc_asprintf("dexcache_upstream_tier_state{upstream=\"%s\",tier=\"%zu\"} %g\n"
                            "dexcache_upstream_tier_answers_total{upstream=\"%s\",tier=\"%zu\"} %llu\n"
                            "dexcache_upstream_tier_breaker_opened_total{upstream=\"%s\",tier=\"%zu\"} %llu\n"
                            "dexcache_upstream_tier_breaker_opened_by{upstream=\"%s\",tier=\"%zu\",by=\"local\"} %d\n"
                            "dexcache_upstream_tier_breaker_opened_by{upstream=\"%s\",tier=\"%zu\",by=\"fleet\"} %d\n"
                            "dexcache_upstream_tier_failure_ratio{upstream=\"%s\",tier=\"%zu\"} %.4g\n",
                            u, t + 1, v, u, t + 1, (unsigned long long)atomic_load(&h->answered_total), u, t + 1,
                            (unsigned long long)atomic_load(&h->opened_total), u, t + 1, strcmp(by, "local") == 0, u,
                            t + 1, strcmp(by, "fleet") == 0, u, t + 1, ratio));
        }
    static const char *const rb_outcomes[3] = {"allowed", "denied", "failover"};
    static const size_t rb_fields[3] = {offsetof(dc_retry_budget_t, allowed_total),
                                        offsetof(dc_retry_budget_t, denied_total),
                                        offsetof(dc_retry_budget_t, failovers_total)};
    part = append_outcomes(part, snap, "dexcache_upstream_retry_budget_total",
                           "Retries and failovers the retry budget allowed or denied (failover: allowed, to another "
                           "tier).",
                           rb_outcomes, rb_fields);
    static const char *const hedge_outcomes[3] = {"won", "lost", "skipped_budget"};
    static const size_t hedge_fields[3] = {offsetof(dc_retry_budget_t, hedges_won_total),
                                           offsetof(dc_retry_budget_t, hedges_lost_total),
                                           offsetof(dc_retry_budget_t, hedges_skipped_budget_total)};
    part = append_outcomes(part, snap, "dexcache_upstream_hedges_total",
                           "Hedged GETs: the hedge's answer was used (won), it was cancelled or failed (lost), or it "
                           "was not sent for want of a retry-budget or upstream-budget slot (skipped_budget).",
                           hedge_outcomes, hedge_fields);
    return part;
}

/* The upstream breakers (state lives in the snapshot's upstream runtime, not in per-worker
 * counters): appended to the metrics text. Takes over `body` (malloc'd, `*len` bytes). */
static char *append_breaker_metrics(const dc_admin_source_t *src, char *body, size_t *len)
{
    dc_snapshot_t *snap = src->current_snapshot(src->ctx);
    uint64_t now = dc_now_mono_ms();
    static const char *const families[][2] = {
        {"dexcache_upstream_breaker_open", "gauge"},
        {"dexcache_upstream_breaker_opened_total", "counter"},
        {"dexcache_upstream_breaker_refused_total", "counter"},
    };
    static const char *const help[] = {
        "1 while the upstream's circuit breaker sends nothing (open), 0.5 half-open (one probe), 0 closed.",
        "Times the upstream's circuit breaker opened.",
        "Upstream attempts not sent because the breaker was open.",
    };
    for (size_t f = 0; f < 3; f++) {
        char *part =
            dc_asprintf("# HELP %s %s\n# TYPE %s %s\n", families[f][0], help[f], families[f][0], families[f][1]);
        for (size_t i = 0; i < snap->cfg->nupstreams; i++) {
            dc_upstream_state_t *h = &snap->ups[i].health;
            const char *st = dc_upstream_state_breaker_name(h, now);
            double v = f == 0   ? (strcmp(st, "open") == 0        ? 1.0
                                   : strcmp(st, "half-open") == 0 ? 0.5
                                                                  : 0.0)
                       : f == 1 ? (double)atomic_load(&h->opened_total)
                                : (double)atomic_load(&h->refused_total);
            char *line =
                dc_asprintf("%s%s{upstream=\"%s\"} %g\n", part, families[f][0], snap->cfg->upstreams[i].name, v);
            free(part);
            part = line;
        }
        if (f == 2)
            part = append_tier_metrics(snap, part, now);
        size_t pl = strlen(part);
        body = dc_realloc(body, *len + pl + 1);
        memcpy(body + *len, part, pl + 1);
        *len += pl;
        free(part);
    }
    dc_snapshot_release(snap);
    return body;
}

/* The upstream budgets (rate: and queue: of each upstream's first tier; with rate_per: key, the sum of
 * its keys' budgets): queue length, refusals (answered 503 + Retry-After), 429 cooldowns and the
 * rate in force (only for an upstream with rate:). Appended to `body`. */
static char *append_budget_metrics(const dc_admin_source_t *src, char *body, size_t *len)
{
    dc_snapshot_t *snap = src->current_snapshot(src->ctx);
    static const char *const families[][3] = {
        {"dexcache_upstream_budget_queue", "gauge", "Upstream attempts waiting in the budget queue for their slot."},
        {"dexcache_upstream_budget_rejected_total", "counter",
         "Upstream attempts refused by the budget (queue full, or no slot within the queue timeout)."},
        {"dexcache_upstream_budget_cooldowns_total", "counter",
         "Upstream 429 answers that paused the budget and halved its rate."},
        {"dexcache_upstream_budget_rate", "gauge",
         "Upstream attempts per second the budget lets through now (tightest window, pacing slack and 429 "
         "back-off applied)."},
    };
    for (size_t f = 0; f < 4; f++) {
        char *part =
            dc_asprintf("# HELP %s %s\n# TYPE %s %s\n", families[f][0], families[f][2], families[f][0], families[f][1]);
        for (size_t i = 0; i < snap->cfg->nupstreams; i++) {
            dc_upstream_rt_t *rt = &snap->ups[i];
            dc_budget_stats_t sum = {0}, st;
            size_t n = rt->key_budgets != NULL ? rt->keyring.nkeys : 1;
            for (size_t k = 0; k < n; k++) {
                dc_budget_stats(rt->key_budgets != NULL ? &rt->key_budgets[k] : &rt->budget, &st);
                sum.queued += st.queued;
                sum.rejected += st.rejected;
                sum.cooldowns += st.cooldowns;
                sum.rate_per_s += st.rate_per_s;
            }
            if (f == 3 && sum.rate_per_s <= 0)
                continue; /* no rate: no budget */
            double v = f == 0   ? (double)sum.queued
                       : f == 1 ? (double)sum.rejected
                       : f == 2 ? (double)sum.cooldowns
                                : sum.rate_per_s;
            char *line =
                dc_asprintf("%s%s{upstream=\"%s\"} %.15g\n", part, families[f][0], snap->cfg->upstreams[i].name, v);
            free(part);
            part = line;
        }
        size_t pl = strlen(part);
        body = dc_realloc(body, *len + pl + 1);
        memcpy(body + *len, part, pl + 1);
        *len += pl;
        free(part);
    }
    dc_snapshot_release(snap);
    return body;
}

/* {"cause","message","time"} (Unix seconds) of the last transport failure noted, or null. */
static cJSON *last_error_json(dc_upstream_state_t *h)
{
    dc_upstream_cause_t cause;
    char text[DC_CAUSE_TEXT_MAX];
    uint64_t wall_ms;
    if (!dc_upstream_state_last_error(h, &cause, text, sizeof(text), &wall_ms))
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "cause", dc_upstream_cause_name(cause));
    cJSON_AddStringToObject(o, "message", text);
    cJSON_AddNumberToObject(o, "time", (double)(wall_ms / 1000));
    return o;
}

/* {"message","time"} of the last Redis failure, or null. */
static cJSON *redis_error_json(void)
{
    char text[256];
    uint64_t wall_ms;
    if (!dc_redis_last_error(text, sizeof(text), &wall_ms))
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", text);
    cJSON_AddNumberToObject(o, "time", (double)(wall_ms / 1000));
    return o;
}

typedef struct admin_handler {
    h2o_handler_t super;
    dc_admin_t *admin;
} admin_handler_t;

char *dc_admin_health_json(const dc_admin_source_t *src)
{
    dc_snapshot_t *snap = src->current_snapshot(src->ctx);
    const char *state = src->state(src->ctx);
    cJSON *root = cJSON_CreateObject();
    bool degraded = false;
    cJSON *ups = cJSON_CreateObject();
    uint64_t now = dc_now_mono_ms();
    for (size_t i = 0; i < snap->cfg->nupstreams; i++) {
        dc_config_upstream_t *u = &snap->cfg->upstreams[i];
        dc_upstream_rt_t *rt = &snap->ups[i];
        cJSON *o = cJSON_CreateObject();
        const char *ustate = dc_upstream_state_name(&rt->health, now);
        if (strcmp(ustate, "down") == 0)
            degraded = true;
        cJSON_AddStringToObject(o, "state", ustate);
        cJSON_AddStringToObject(o, "url", u->url);
        uint32_t queued = dc_budget_queued(&rt->budget);
        for (size_t k = 0; rt->key_budgets != NULL && k < rt->keyring.nkeys; k++)
            queued += dc_budget_queued(&rt->key_budgets[k]);
        cJSON_AddNumberToObject(o, "queue", (double)queued);
        cJSON *keys = cJSON_CreateObject();
        cJSON_AddNumberToObject(keys, "total", (double)rt->keyring.nkeys);
        cJSON_AddNumberToObject(keys, "usable", (double)dc_keyring_usable(&rt->keyring, now));
        cJSON_AddItemToObject(o, "keys", keys);
        cJSON_AddNumberToObject(o, "consecutive_failures", (double)dc_upstream_state_failures(&rt->health));
        cJSON *br = cJSON_CreateObject();
        cJSON_AddStringToObject(br, "state", dc_upstream_state_breaker_name(&rt->health, dc_now_mono_ms()));
        cJSON_AddNumberToObject(br, "opened", (double)atomic_load(&rt->health.opened_total));
        cJSON_AddNumberToObject(br, "refused", (double)atomic_load(&rt->health.refused_total));
        cJSON_AddItemToObject(o, "breaker", br);
        cJSON_AddItemToObject(o, "last_error", last_error_json(&rt->health));
        cJSON *tiers = cJSON_CreateArray();
        for (size_t t = 0; t < rt->ntiers; t++) {
            dc_upstream_state_t *h = dc_upstream_rt_tier_health(rt, t);
            cJSON *to = cJSON_CreateObject();
            cJSON_AddNumberToObject(to, "tier", (double)(t + 1));
            cJSON_AddStringToObject(to, "url", rt->tiers[t].url);
            cJSON_AddStringToObject(to, "state", dc_upstream_state_name(h, now));
            cJSON_AddStringToObject(to, "breaker", dc_upstream_state_breaker_name(h, now));
            cJSON_AddBoolToObject(to, "cordoned", atomic_load(&h->cordoned));
            cJSON_AddStringToObject(to, "circuit", tier_circuit(h, now));
            cJSON_AddNumberToObject(to, "opened", (double)atomic_load(&h->opened_total));
            cJSON_AddStringToObject(to, "opened_by", dc_upstream_state_opened_by_name(h));
            uint32_t attempts;
            double ratio = tier_failure_ratio(h, u, now, &attempts);
            cJSON_AddNumberToObject(to, "failure_ratio", ratio);
            cJSON_AddNumberToObject(to, "window_attempts", (double)attempts);
            cJSON_AddNumberToObject(to, "consecutive_failures", (double)dc_upstream_state_failures(h));
            cJSON_AddNumberToObject(to, "answers", (double)atomic_load(&h->answered_total));
            cJSON_AddItemToObject(to, "last_error", last_error_json(h));
            cJSON_AddItemToArray(tiers, to);
        }
        cJSON_AddItemToObject(o, "tiers", tiers);
        cJSON_AddItemToObject(ups, u->name, o);
    }
    const char *redis = !snap->cfg->redis.enabled ? "disabled" : src->redis_state(src->ctx);
    if (strcmp(redis, "down") == 0 || strcmp(redis, "partial") == 0)
        degraded = true; /* still serving: limits run on this instance's share */
    if (strcmp(state, "ok") != 0)
        cJSON_AddStringToObject(root, "status", state);
    else
        cJSON_AddStringToObject(root, "status", degraded ? "degraded" : "ok");
    cJSON_AddStringToObject(root, "version", DC_VERSION);
    cJSON_AddNumberToObject(root, "uptime_s", (double)(dc_now_wall_ms() - dc_metrics_process.start_wall_ms) / 1000.0);
    cJSON_AddNumberToObject(root, "workers", src->nworkers(src->ctx));
    cJSON_AddNumberToObject(root, "connections", (double)dc_metrics_sum_connections_open());
    cJSON_AddNumberToObject(root, "requests_in_flight", (double)dc_metrics_sum_requests_active());
    cJSON_AddNumberToObject(root, "config_generation", (double)snap->generation);
    cJSON_AddStringToObject(root, "redis", redis);
    cJSON_AddItemToObject(root, "redis_last_error", redis_error_json());
    cJSON_AddNumberToObject(root, "instances", (double)src->instances(src->ctx));
    cJSON *cache = cJSON_CreateObject();
    dc_cache_stats_t st;
    dc_cache_get_stats(src->cache, &st);
    cJSON_AddNumberToObject(cache, "entries", (double)st.entries);
    cJSON_AddNumberToObject(cache, "bytes", (double)st.bytes);
    cJSON_AddNumberToObject(cache, "memory", (double)snap->cfg->cache.memory);
    cJSON_AddItemToObject(root, "cache", cache);
    uint64_t channels, subscribers;
    src->streams(src->ctx, &channels, &subscribers);
    cJSON *streams = cJSON_CreateObject();
    cJSON_AddNumberToObject(streams, "channels", (double)channels);
    cJSON_AddNumberToObject(streams, "subscribers", (double)subscribers);
    cJSON_AddItemToObject(root, "streams", streams);
    cJSON_AddItemToObject(root, "upstreams", ups);
    if (src->plugin_at != NULL) {
        cJSON *plugins = cJSON_CreateArray();
        const char *name, *plugin, *version;
        for (size_t i = 0; src->plugin_at(src->ctx, snap, i, &name, &plugin, &version); i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "plugin", plugin);
            cJSON_AddStringToObject(o, "version", version);
            cJSON_AddItemToArray(plugins, o);
        }
        cJSON_AddItemToObject(root, "plugins", plugins);
    }
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    dc_snapshot_release(snap);
    return txt;
}

static void send_owned(h2o_req_t *req, int status, const char *ctype, char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = dc_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
    free(body);
}

/* Bearer token check for mutating endpoints; constant time so the token can't be guessed byte by byte. */
static bool authorized(dc_admin_t *a, h2o_req_t *req, const dc_config_t *cfg)
{
    const char *token = cfg->admin.token;
    if (token == NULL || token[0] == '\0')
        return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t tlen = strlen(token);
    if (v.len != 7 + tlen || strncasecmp(v.base, "Bearer ", 7) != 0)
        return false;
    return mbedtls_ct_memcmp(v.base + 7, token, tlen) == 0;
}

/* Canonical cache key of a client URL ("/jup/price/v3?ids=B,A"), or NULL when no cache rule covers it. */
static char *key_of_url(const dc_config_t *cfg, const char *url)
{
    size_t len = strlen(url);
    const char *q = memchr(url, '?', len);
    size_t pathlen = q ? (size_t)(q - url) : len;
    const dc_config_route_t *route = dc_config_route_match(cfg, url, pathlen);
    if (route == NULL)
        return NULL;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    const dc_config_cache_rule_t *rule = dc_config_cache_rule_match(route, url + plen, pathlen - plen);
    if (rule == NULL)
        return NULL;
    dc_cache_key_opts_t opts = {rule->key_sets, rule->nkey_sets, rule->ignore_params, rule->nignore_params};
    size_t cap = dc_cache_key_bound(3, strlen(route->prefix), len - plen);
    char *key = malloc(cap);
    if (dc_cache_key_build("GET", 3, route->prefix, url + plen, len - plen, &opts, key, cap) < 0) {
        free(key);
        return NULL;
    }
    return key;
}

/*
 * POST /purge with a JSON body naming what to remove:
 *   {"url": "/jup/price/v3?ids=B,A"}   the entry that URL maps to (normalised like a request)
 *   {"key": "GET /jup/price/v3?ids=A,B"} an exact cache key
 *   {"prefix": "/jup/tokens"}           every entry whose URL starts with this (non-empty)
 *   {"tag": "So111..."}                 every entry carrying this tag (route name or tag_params value)
 *   {"all": true}                       every entry (its own explicit order: an empty prefix is refused)
 * Answers {"purged": N, "fleet": true|false}: N entries removed here; fleet = the purge was also
 * sent to every other instance (Redis configured; delivered when Redis is reachable).
 */
static void handle_purge(dc_admin_t *a, h2o_req_t *req)
{
    dc_snapshot_t *snap = a->src.current_snapshot(a->src.ctx);
    if (!authorized(a, req, snap->cfg)) {
        dc_snapshot_release(snap);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        dc_respond_error(req, 401, "admin token required", NULL);
        return;
    }
    cJSON *doc = req->entity.base ? cJSON_ParseWithLength(req->entity.base, req->entity.len) : NULL;
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(doc, "url");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(doc, "key");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(doc, "prefix");
    const cJSON *tag = cJSON_GetObjectItemCaseSensitive(doc, "tag");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(doc, "all");
    const char *err = "expected a JSON object with one of: url, key, prefix, tag, all";
    dc_purge_kind_t kind = DC_PURGE_KEY;
    char *arg = NULL;
    /* what the CDN is told: the URL as the client wrote it (the CDN keys on that), a key's path */
    dc_cdnpurge_kind_t cdn_kind = DC_CDNPURGE_FILES;
    const char *cdn_value = NULL;
    if (cJSON_IsString(url)) {
        arg = key_of_url(snap->cfg, url->valuestring);
        if (arg == NULL)
            err = "no cache rule covers this url";
        cdn_value = url->valuestring;
    } else if (cJSON_IsString(key)) {
        arg = dc_strdup(key->valuestring);
        cdn_value = strncmp(arg, "GET ", 4) == 0 ? key->valuestring + 4 : "";
    } else if (cJSON_IsString(prefix)) {
        kind = DC_PURGE_PREFIX;
        if (prefix->valuestring[0] == '\0')
            err = "empty prefix: send {\"all\":true} to purge everything";
        else
            arg = dc_asprintf("GET %s", prefix->valuestring);
        cdn_kind = DC_CDNPURGE_PREFIXES;
        cdn_value = prefix->valuestring;
    } else if (cJSON_IsString(tag)) {
        kind = DC_PURGE_TAG;
        arg = dc_strdup(tag->valuestring);
        cdn_kind = DC_CDNPURGE_TAGS;
        cdn_value = tag->valuestring;
    } else if (cJSON_IsTrue(all)) {
        kind = DC_PURGE_PREFIX; /* the empty prefix covers every key, here and on the bus */
        arg = dc_strdup("");
        cdn_kind = DC_CDNPURGE_EVERYTHING;
        cdn_value = "";
    }
    long purged = -1;
    bool fleet = false;
    if (arg != NULL) {
        /* here now, then every other instance through the bus, stamped with this moment so a copy
         * stored after it (anywhere) survives and one stored before it (in L2 too) does not */
        uint64_t at = dc_now_wall_ms();
        size_t len = strlen(arg);
        purged = (long)dc_cache_purge(a->src.cache, kind, arg, len, at);
        char *body = dc_malloc(len + 1);
        body[0] = (char)kind;
        memcpy(body + 1, arg, len);
        fleet = a->src.broadcast_purge(a->src.ctx, at, body, len + 1);
        free(body);
        free(arg);
    }
    /* the CDN's copy: queued only (sent on this loop after the answer); "cdn" is absent when the
     * config forwards nothing, "not queued" when this order cannot be forwarded or was dropped */
    const char *cdn = NULL;
    if (purged >= 0 && a->cdn != NULL && dc_cdnpurge_configured(snap->cfg))
        cdn = dc_cdnpurge_submit(a->cdn, snap->cfg, cdn_kind, cdn_value) ? "queued" : "not queued";
    cJSON_Delete(doc);
    dc_snapshot_release(snap);
    if (purged < 0) {
        dc_respond_error(req, 400, err, NULL);
        return;
    }
    char *body = dc_asprintf("{\"purged\":%ld,\"fleet\":%s%s%s%s}", purged, fleet ? "true" : "false",
                             cdn != NULL ? ",\"cdn\":\"" : "", cdn != NULL ? cdn : "", cdn != NULL ? "\"" : "");
    send_owned(req, 200, "application/json", body, strlen(body));
}

/*
 * POST /upstreams/<name>/tiers/<n>/cordon and .../uncordon (admin token): tier n (1-based) takes no
 * attempt while cordoned. With Redis, on every instance of the fleet, and kept in Redis so that an
 * instance started later finds it (upstream/breaker_fleet.h); kept across reloads while the tier
 * keeps its URL and place. Answers {"upstream":..,"tier":n,"cordoned":bool,"fleet":bool}.
 */
static bool handle_cordon(dc_admin_t *a, h2o_req_t *req, size_t plen)
{
    static const char prefix[] = "/upstreams/";
    if (plen < sizeof(prefix) - 1 || memcmp(req->path.base, prefix, sizeof(prefix) - 1) != 0)
        return false;
    char path[256];
    if (plen >= sizeof(path)) {
        dc_respond_error(req, 404, "no such admin endpoint", NULL);
        return true;
    }
    memcpy(path, req->path.base, plen);
    path[plen] = '\0';
    char name[80], verb[16];
    unsigned n;
    int used = 0;
    if (sscanf(path, "/upstreams/%79[a-z0-9_-]/tiers/%u/%15[a-z]%n", name, &n, verb, &used) != 3 ||
        (size_t)used != plen || (strcmp(verb, "cordon") != 0 && strcmp(verb, "uncordon") != 0)) {
        dc_respond_error(req, 404, "no such admin endpoint", NULL);
        return true;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        dc_respond_error(req, 405, "method not allowed", NULL);
        return true;
    }
    dc_snapshot_t *snap = a->src.current_snapshot(a->src.ctx);
    if (!authorized(a, req, snap->cfg)) {
        dc_snapshot_release(snap);
        dc_respond_error(req, 401, "admin token required", NULL);
        return true;
    }
    dc_upstream_rt_t *rt = NULL;
    for (size_t i = 0; i < snap->cfg->nupstreams; i++)
        if (strcmp(snap->cfg->upstreams[i].name, name) == 0)
            rt = &snap->ups[i];
    if (rt == NULL || n < 1 || n > rt->ntiers) {
        dc_snapshot_release(snap);
        dc_respond_error(req, 404, rt == NULL ? "no such upstream" : "no such tier", NULL);
        return true;
    }
    bool on = strcmp(verb, "cordon") == 0;
    atomic_store(&dc_upstream_rt_tier_health(rt, n - 1)->cordoned, on);
    dc_log_warn("admin: upstream %s tier %u (%s) %s", name, n, rt->tiers[n - 1].url, on ? "cordoned" : "uncordoned");
    bool fleet = dc_breaker_fleet_cordon(name, n - 1, on);
    dc_snapshot_release(snap);
    char *body = dc_asprintf("{\"upstream\":\"%s\",\"tier\":%u,\"cordoned\":%s,\"fleet\":%s}", name, n,
                             on ? "true" : "false", fleet ? "true" : "false");
    send_owned(req, 200, "application/json", body, strlen(body));
    return true;
}

static int on_admin_req(h2o_handler_t *self, h2o_req_t *req)
{
    dc_admin_t *a = ((admin_handler_t *)self)->admin;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (h2o_memis(req->path.base, plen, H2O_STRLIT("/health"))) {
        if (!get)
            goto not_allowed;
        char *body = dc_admin_health_json(&a->src);
        send_owned(req, 200, "application/json", body, strlen(body));
        return 0;
    }
    if (h2o_memis(req->path.base, plen, H2O_STRLIT("/metrics"))) {
        if (!get)
            goto not_allowed;
        size_t len;
        char *body =
            append_budget_metrics(&a->src, append_breaker_metrics(&a->src, dc_metrics_render(&len), &len), &len);
        send_owned(req, 200, "text/plain; version=0.0.4", body, len);
        return 0;
    }
    if (h2o_memis(req->path.base, plen, H2O_STRLIT("/purge"))) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
            dc_respond_error(req, 405, "method not allowed", NULL);
            return 0;
        }
        handle_purge(a, req);
        return 0;
    }
    if (handle_cordon(a, req, plen))
        return 0;
    dc_respond_error(req, 404, "no such admin endpoint", NULL);
    return 0;
not_allowed:
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
    dc_respond_error(req, 405, "method not allowed", NULL);
    return 0;
}

static void on_admin_accept(uv_stream_t *listener, int status)
{
    dc_admin_t *a = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = dc_calloc(1, sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, (uv_close_cb)free);
    h2o_accept(&a->accept_ctx, sock);
}

int dc_admin_create(uv_loop_t *loop, int fd, const dc_admin_source_t *src, dc_admin_t **out)
{
    dc_admin_t *a = dc_calloc(1, sizeof(*a));
    a->src = *src;
    h2o_config_init(&a->gconf);
    a->gconf.server_name = h2o_iovec_init(H2O_STRLIT("dexcache-admin"));
    a->gconf.max_request_entity_size = DC_ADMIN_MAX_BODY;
    h2o_hostconf_t *host = h2o_config_register_host(&a->gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    dc_respond_h2o_errors_as_json(host, NULL); /* the 413 above the cap is JSON like every admin error */
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    admin_handler_t *h = (admin_handler_t *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_admin_req;
    h->admin = a;
    h2o_context_init(&a->ctx, loop, &a->gconf);
    a->accept_ctx.ctx = &a->ctx;
    a->accept_ctx.hosts = a->gconf.hosts;
    uv_tcp_init(loop, &a->listener);
    a->listener.data = a;
    if (uv_tcp_open(&a->listener, fd) != 0 || uv_listen((uv_stream_t *)&a->listener, 128, on_admin_accept) != 0) {
        dc_log_error("admin: cannot listen");
        return DC_EBIND;
    }
    a->cdn = dc_cdnpurge_create(loop);
    dc_snapshot_t *snap = src->current_snapshot(src->ctx);
    const dc_config_t *cfg = snap->cfg;
    if (dc_cdnpurge_configured(cfg))
        dc_log_info("admin: purges are forwarded to cloudflare zone %s (%s)", cfg->cdn_purge_cf.zone,
                    cfg->cdn_purge_cf.api);
    else if (cfg->cdn_purge_cf.enabled)
        dc_log_warn("cdn.purge.cloudflare: zone or token is empty: purges stay local (set CF_ZONE_ID and "
                    "CF_API_TOKEN, or whatever the config names)");
    dc_snapshot_release(snap);
    *out = a;
    return 0;
}

void dc_admin_close(dc_admin_t *a)
{
    if (a == NULL)
        return;
    uv_close((uv_handle_t *)&a->listener, NULL);
    dc_cdnpurge_close(a->cdn);
    a->cdn = NULL;
}

void dc_admin_destroy(dc_admin_t *a)
{
    if (a == NULL)
        return;
    h2o_context_dispose(&a->ctx);
    h2o_config_dispose(&a->gconf);
    free(a);
}
