#include "server/server.h"
#include "admin/admin.h"
#include "core/crash.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/batch.h"
#include "http/handler.h"
#include "http/respond.h"
#include "plugin/plugin.h"
#include "redis/fleet.h"
#include "ratelimit/fleet_metrics.h"
#include "ratelimit/local.h"
#include "redis/bus.h"
#include "sse/sse.h"
#include "server/listener.h"
#include "server/snapshot.h"
#include "server/worker.h"
#include "upstream/breaker_fleet.h"
#include "upstream/curl_uv.h"

#include <dexcache/plugin.h>
#include <h2o.h>
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

struct dc_server {
    char *config_path;
    dc_snapshot_t *snap;       /* main thread's reference to the current snapshot */
    pthread_mutex_t snap_lock; /* guards `snap` for readers on other threads (none today) */
    uint64_t generation;
    h2o_globalconf_t gconf;
    SSL_CTX *ssl_ctx;
    dc_worker_t *workers;
    unsigned nworkers;
    int *plain_fds; /* [worker][addr] */
    int *tls_fds;
    size_t nplain, ntls;
    int admin_fd;
    dc_admin_t *admin;
    dc_bus_t *bus;
    dc_cache_t *cache;
    dc_inflight_t *inflight;
    dc_limiter_t *limiter;
    dc_sse_t *sse;
    uv_loop_t *loop;
    uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
    uv_timer_t drain_timer; /* the drain timeout, then the teardown's progress check */
    uv_timer_t trim_timer;  /* gives memory back after event-stream subscribers left */
    uv_async_t worker_exit_async;
    _Atomic unsigned workers_quiet, workers_exited;
    int draining;
    int finishing; /* every worker is quiet: nothing more is posted to them */
    int forced;
};

static SSL_CTX *make_ssl_ctx(const dc_config_t *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
        snprintf(err, errlen, "tls.cert %s: %s", cfg->tls.cert, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls.key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.key %s: %s", cfg->tls.key, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
}

/* ---- metrics source for the process-wide cache ---- */

static void cache_view(void *ctx, dc_metrics_cache_view_t *out)
{
    dc_server_t *s = ctx;
    dc_cache_stats_t st;
    dc_cache_get_stats(s->cache, &st);
    out->entries = st.entries;
    out->bytes = st.bytes;
    out->memory = s->snap->cfg->cache.memory;
    out->evictions = st.evictions;
    out->expired = st.expired;
    out->purged = st.purged;
    out->inserts = st.inserts;
    out->too_big = st.too_big;
    out->inflight = dc_inflight_count(s->inflight);
}

/* The id of a request that libh2o refused before our handler ran (dc_respond_h2o_errors_as_json). */
static size_t next_request_id(h2o_req_t *req, char *buf)
{
    return dc_worker_next_request_id(dc_worker_from_ctx(req->conn->ctx), buf);
}

static uint64_t max_route_body(const dc_config_t *cfg)
{
    uint64_t m = cfg->server.max_body;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].max_body > m)
            m = cfg->routes[i].max_body;
    return m;
}

/* The modules' start-up registrations with the layers below them (proxy/README.md): route slots
 * before the first snapshot, and the /metrics sources, whose order is the order of their families
 * in the exposition. Once per process. */
/* What a crash report says besides the signal and the backtrace (core/crash.h): formatted now, on
 * the main thread, for the snapshot about to serve. */
static void crash_info(const dc_snapshot_t *snap)
{
    char plugins[6144], text[8192];
    dc_plugin_describe(snap, plugins, sizeof(plugins));
    snprintf(text, sizeof(text), "dexcache %s (plugin ABI %d.%d), config generation %llu\n%s", DC_VERSION,
             DEXCACHE_PLUGIN_ABI_MAJOR, DEXCACHE_PLUGIN_ABI_MINOR, (unsigned long long)snap->generation, plugins);
    dc_crash_set_info(text);
}

/* dexcache_build_info: the release, the plugin ABI it loads, and the HTTP libraries it runs on
 * (libcurl as loaded at run time). */
static void render_build_info(void *ctx, dc_metrics_buf_t *b)
{
    (void)ctx;
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    dc_metrics_printf(b,
                      "# HELP dexcache_build_info Always 1; the labels name the build.\n"
                      "# TYPE dexcache_build_info gauge\n"
                      "dexcache_build_info{version=\"%s\",abi=\"%d.%d\",h2o=\"%s\",curl=\"%s\"} 1\n",
                      DC_VERSION, DEXCACHE_PLUGIN_ABI_MAJOR, DEXCACHE_PLUGIN_ABI_MINOR, H2O_VERSION,
                      cv != NULL && cv->version != NULL ? cv->version : "unknown");
}

static void register_modules(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    dc_batch_register();
    dc_plugin_register();
    dc_fleet_metrics_register();
    dc_bus_metrics_register();
    dc_sse_metrics_register();
    dc_metrics_add_source(render_build_info, NULL);
}

int dc_server_create(const char *config_path, dc_config_t *cfg, dc_server_t **out, char *err, size_t errlen)
{
    register_modules();
    /* plugins first: a file, ABI or plugin config error stops start-up before anything is bound */
    dc_plugin_set_t *plugins = NULL;
    if (dc_plugin_set_build(cfg, cfg->workers, &plugins, err, errlen) != 0) {
        dc_config_release(cfg);
        return DC_ECONFIG;
    }
    dc_server_t *s = dc_calloc(1, sizeof(*s));
    s->config_path = dc_strdup(config_path);
    s->admin_fd = -1;
    pthread_mutex_init(&s->snap_lock, NULL);
    s->nworkers = cfg->workers;
    s->generation = 1;
    s->snap = dc_snapshot_create(cfg, NULL, s->generation);
    dc_plugin_attach(s->snap, plugins);
    crash_info(s->snap);
    s->cache = dc_cache_create(cfg->cache.memory, cfg->cache.max_object);
    s->inflight = dc_inflight_create(dc_worker_post);
    s->limiter = dc_limiter_create();
    dc_metrics_set_cache_source(cache_view, s);

    /* bind everything first: a port in use stops start-up here */
    s->nplain = cfg->nlisten;
    s->ntls = cfg->tls.nlisten;
    s->plain_fds = dc_calloc(s->nworkers * (s->nplain ? s->nplain : 1), sizeof(int));
    s->tls_fds = dc_calloc(s->nworkers * (s->ntls ? s->ntls : 1), sizeof(int));
    /* SO_REUSEPORT is for this process's workers only: an address anyone else holds stops start-up */
    for (size_t i = 0; i < s->nplain; i++)
        if (dc_listener_probe(&cfg->listen[i], err, errlen) != 0)
            goto fail;
    for (size_t i = 0; i < s->ntls; i++)
        if (dc_listener_probe(&cfg->tls.listen[i], err, errlen) != 0)
            goto fail;
    for (unsigned w = 0; w < s->nworkers; w++) {
        for (size_t i = 0; i < s->nplain; i++) {
            int fd = dc_listener_open(&cfg->listen[i], true, err, errlen);
            if (fd < 0)
                goto fail;
            s->plain_fds[w * s->nplain + i] = fd;
        }
        for (size_t i = 0; i < s->ntls; i++) {
            int fd = dc_listener_open(&cfg->tls.listen[i], true, err, errlen);
            if (fd < 0)
                goto fail;
            s->tls_fds[w * s->ntls + i] = fd;
        }
    }
    /* ... and no one joins later: each address's group hands connections to our sockets only */
    {
        int *group = dc_calloc(s->nworkers, sizeof(int));
        int prc = 0;
        for (size_t i = 0; i < s->nplain && prc == 0; i++) {
            for (unsigned w = 0; w < s->nworkers; w++)
                group[w] = s->plain_fds[w * s->nplain + i];
            prc = dc_listener_pin_group(&cfg->listen[i], group, s->nworkers, err, errlen);
        }
        for (size_t i = 0; i < s->ntls && prc == 0; i++) {
            for (unsigned w = 0; w < s->nworkers; w++)
                group[w] = s->tls_fds[w * s->ntls + i];
            prc = dc_listener_pin_group(&cfg->tls.listen[i], group, s->nworkers, err, errlen);
        }
        free(group);
        if (prc != 0)
            goto fail;
    }
    if (cfg->admin.enabled) {
        s->admin_fd = dc_listener_open(&cfg->admin.listen, false, err, errlen);
        if (s->admin_fd < 0)
            goto fail;
        if (cfg->admin.token == NULL || cfg->admin.token[0] == '\0') /* only on loopback (config) */
            dc_log_warn("admin listener %s has no token: anyone on this host may POST /purge (set admin.token)",
                        cfg->admin.listen.text);
    }
    if (s->ntls > 0 && (s->ssl_ctx = make_ssl_ctx(cfg, err, errlen)) == NULL)
        goto fail;

    /* h2o global configuration: fixed for the process lifetime (listeners, body cap, timeouts) */
    h2o_config_init(&s->gconf);
    s->gconf.server_name = h2o_iovec_init(H2O_STRLIT("dexcache"));
    s->gconf.max_request_entity_size = (size_t)max_route_body(cfg);
    s->gconf.http1.req_timeout = cfg->server.idle_timeout_ms;
    s->gconf.http2.idle_timeout = cfg->server.idle_timeout_ms;
    s->gconf.http2.graceful_shutdown_timeout = cfg->server.drain_timeout_ms;
    h2o_hostconf_t *host = h2o_config_register_host(&s->gconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    dc_http_handler_register(path);
    dc_respond_h2o_errors_as_json(host, next_request_id);
    dc_http_log_h2o_answered(host);
    *out = s;
    return 0;
fail:
    for (size_t i = 0; i < s->nworkers * s->nplain; i++)
        if (s->plain_fds[i] > 0)
            close(s->plain_fds[i]);
    for (size_t i = 0; i < s->nworkers * s->ntls; i++)
        if (s->tls_fds[i] > 0)
            close(s->tls_fds[i]);
    if (s->admin_fd >= 0)
        close(s->admin_fd);
    dc_limiter_destroy(s->limiter);
    dc_inflight_destroy(s->inflight);
    dc_cache_destroy(s->cache);
    dc_snapshot_release(s->snap);
    pthread_mutex_destroy(&s->snap_lock);
    free(s->config_path);
    free(s->plain_fds);
    free(s->tls_fds);
    free(s);
    return DC_EBIND;
}

/* ---- admin source ---- */

static dc_snapshot_t *admin_current_snapshot(void *ctx)
{
    dc_server_t *s = ctx;
    pthread_mutex_lock(&s->snap_lock);
    dc_snapshot_t *snap = dc_snapshot_ref(s->snap);
    pthread_mutex_unlock(&s->snap_lock);
    return snap;
}

static unsigned admin_nworkers(void *ctx)
{
    return ((dc_server_t *)ctx)->nworkers;
}

static const char *admin_state(void *ctx)
{
    return ((dc_server_t *)ctx)->draining ? "draining" : "ok";
}

static const char *admin_redis_state(void *ctx)
{
    return dc_fleet_state();
}

static unsigned admin_instances(void *ctx)
{
    return dc_fleet_instances();
}

static void admin_streams(void *ctx, uint64_t *channels, uint64_t *subscribers)
{
    dc_sse_stats_t st;
    dc_sse_get_stats(&st);
    *channels = st.channels;
    *subscribers = st.subscribers;
}

static bool admin_plugin_at(void *ctx, const dc_snapshot_t *snap, size_t i, const char **name, const char **plugin,
                            const char **version)
{
    const char *path;
    return dc_plugin_info(snap, i, name, plugin, version, &path);
}

static bool admin_broadcast_purge(void *ctx, uint64_t at_ms, const char *body, size_t len)
{
    return dc_bus_post(DC_BUS_PURGE, at_ms, body, len);
}

/* ---- the fleet's bus: what other instances ask every instance to apply ---- */

static void apply_fleet_purge(dc_server_t *s, const dc_bus_msg_t *m)
{
    char kind = m->len > 0 ? m->body[0] : 0;
    if (kind != DC_PURGE_KEY && kind != DC_PURGE_PREFIX && kind != DC_PURGE_TAG) {
        dc_log_warn("bus: unknown purge kind");
        return;
    }
    size_t n = dc_cache_purge(s->cache, (dc_purge_kind_t)kind, m->body + 1, m->len - 1, m->at_ms);
    if (!m->replay || n > 0)
        dc_log_info("fleet purge (%s) %c %.*s: %zu entries", m->replay ? "caught up" : "live", kind, (int)(m->len - 1),
                    m->body + 1, n);
}

static void apply_fleet_quarantine(dc_server_t *s, const dc_bus_msg_t *m)
{
    const char *tab = memchr(m->body, '\t', m->len);
    if (tab == NULL)
        return;
    const dc_config_t *cfg = s->snap->cfg;
    size_t nlen = (size_t)(tab - m->body);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (strlen(cfg->upstreams[i].name) != nlen || memcmp(cfg->upstreams[i].name, m->body, nlen) != 0)
            continue;
        dc_keyring_t *kr = &s->snap->ups[i].keyring;
        int idx = dc_keyring_find_id(kr, tab + 1, m->len - nlen - 1);
        uint64_t wall = dc_now_wall_ms(), end = m->at_ms + kr->quarantine_ms, now = dc_now_mono_ms();
        if (idx < 0 || end <= wall)
            return;
        if (dc_keyring_quarantine_until(kr, idx, now, now + (end - wall))) {
            __atomic_fetch_add(&dc_metrics_process.key_quarantines, 1, __ATOMIC_RELAXED);
            dc_log_warn("upstream %s: key #%d (id %s) set aside for %llums: rejected at another instance",
                        cfg->upstreams[i].name, idx, kr->ids[idx], (unsigned long long)(end - wall));
        }
        return;
    }
}

/* Tier `tier` (1-based) of the upstream named [name, name + len) in snap, or NULL. */
static dc_upstream_state_t *find_tier(dc_snapshot_t *snap, const char *name, size_t len, unsigned tier)
{
    for (size_t i = 0; i < snap->cfg->nupstreams; i++) {
        const char *u = snap->cfg->upstreams[i].name;
        if (strlen(u) == len && memcmp(u, name, len) == 0)
            return tier >= 1 && tier <= snap->ups[i].ntiers ? dc_upstream_rt_tier_health(&snap->ups[i], tier - 1)
                                                            : NULL;
    }
    return NULL;
}

/* Another instance opened, closed or cordoned a tier (upstream/breaker_fleet.h). Notices replayed
 * from the log are history: the sync that follows every catch-up reads the state itself. */
static void apply_fleet_breaker(dc_server_t *s, const dc_bus_msg_t *m)
{
    dc_brk_notice_t n;
    if (m->replay)
        return;
    if (!dc_brk_notice_parse(m->body, m->len, &n)) {
        dc_log_warn("bus: malformed breaker notice");
        return;
    }
    dc_upstream_state_t *h = find_tier(s->snap, n.upstream, n.upstream_len, n.tier);
    if (h == NULL)
        return;
    if (n.verb == DC_BRK_CORDON || n.verb == DC_BRK_UNCORDON) {
        atomic_store(&h->cordoned, n.verb == DC_BRK_CORDON);
        dc_log_warn("upstream %.*s tier %u %s by another instance", (int)n.upstream_len, n.upstream, n.tier,
                    n.verb == DC_BRK_CORDON ? "cordoned" : "uncordoned");
        return;
    }
    if (dc_brk_notice_apply(h, &n, m->at_ms, dc_now_wall_ms(), dc_now_mono_ms()))
        dc_log_warn("upstream %.*s tier %u: breaker %s by another instance", (int)n.upstream_len, n.upstream, n.tier,
                    n.verb == DC_BRK_OPEN ? "opened" : "closed");
}

static void on_bus_message(void *data, const dc_bus_msg_t *m)
{
    dc_server_t *s = data;
    if (m->type == DC_BUS_PURGE)
        apply_fleet_purge(s, m);
    else if (m->type == DC_BUS_QUARANTINE)
        apply_fleet_quarantine(s, m);
    else if (m->type == DC_BUS_BREAKER)
        apply_fleet_breaker(s, m);
}

/* The fleet's breaker and cordon keys of every tier (a sync of the bus: at each (re)connection, and
 * every second as the fallback of pub/sub). The snapshot read is kept until the answer. */
typedef struct brk_sync {
    dc_snapshot_t *snap;
} brk_sync_t;

static void on_breaker_sync_reply(void *data, int err, const redisReply *reply)
{
    brk_sync_t *bs = data;
    dc_snapshot_t *snap = bs->snap;
    size_t k = 0;
    uint64_t wall = dc_now_wall_ms(), mono = dc_now_mono_ms();
    if (err == 0 && reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < snap->cfg->nupstreams; i++)
            for (size_t t = 0; t < snap->ups[i].ntiers; t++, k += 2) {
                if (k + 1 >= reply->elements)
                    break;
                const redisReply *b = reply->element[k], *c = reply->element[k + 1];
                bool has_b = b->type == REDIS_REPLY_STRING;
                dc_brk_sync_apply(dc_upstream_rt_tier_health(&snap->ups[i], t), has_b ? b->str : NULL,
                                  has_b ? b->len : 0, c->type == REDIS_REPLY_STRING, wall, mono);
            }
    dc_snapshot_release(snap);
    free(bs);
}

static void on_breaker_sync(void *data)
{
    dc_server_t *s = data;
    dc_snapshot_t *snap = s->snap;
    size_t n = 0;
    for (size_t i = 0; i < snap->cfg->nupstreams; i++)
        n += 2 * snap->ups[i].ntiers;
    if (n == 0)
        return;
    char **keys = dc_calloc(n, sizeof(*keys));
    size_t k = 0;
    for (size_t i = 0; i < snap->cfg->nupstreams; i++)
        for (size_t t = 0; t < snap->ups[i].ntiers; t++) {
            keys[k++] = dc_asprintf("brk:%s~%zu", snap->cfg->upstreams[i].name, t + 1);
            keys[k++] = dc_asprintf("cordon:%s~%zu", snap->cfg->upstreams[i].name, t + 1);
        }
    brk_sync_t *bs = dc_malloc(sizeof(*bs));
    bs->snap = dc_snapshot_ref(snap);
    if (dc_bus_mget(s->bus, (const char *const *)keys, n, on_breaker_sync_reply, bs) != 0) {
        dc_snapshot_release(bs->snap);
        free(bs);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* ---- signals ---- */

static bool listen_sets_equal(const dc_config_listen_t *a, size_t na, const dc_config_listen_t *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].host, b[i].host) != 0 || a[i].port != b[i].port)
            return false;
    return true;
}

static void reload(dc_server_t *s)
{
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s", (unsigned long long)dc_now_mono_us(),
               s->config_path);
    char err[DC_CONFIG_ERRLEN];
    dc_config_t *cfg = NULL;
    if (dc_config_load_file(s->config_path, &cfg, err, sizeof(err)) != 0) {
        dc_log_error("reload rejected, the running config keeps serving: %s", err);
        __atomic_fetch_add(&dc_metrics_process.reload_failures, 1, __ATOMIC_RELAXED);
        sd_notify(0, "READY=1\nSTATUS=reload rejected; running the previous config");
        return;
    }
    for (const char *w = cfg->warnings; w != NULL && *w != '\0';) { /* as at start-up */
        const char *nl = strchr(w, '\n');
        int len = nl != NULL ? (int)(nl - w) : (int)strlen(w);
        dc_log_warn("reload: %.*s", len, w);
        w += len + (nl != NULL);
    }
    /* new instances from the new config; any failure keeps the running config (and its instances) */
    dc_plugin_set_t *plugins = NULL;
    if (dc_plugin_set_build(cfg, s->nworkers, &plugins, err, sizeof(err)) != 0) {
        dc_log_error("reload rejected, the running config keeps serving: %s", err);
        __atomic_fetch_add(&dc_metrics_process.reload_failures, 1, __ATOMIC_RELAXED);
        sd_notify(0, "READY=1\nSTATUS=reload rejected; running the previous config");
        dc_config_release(cfg);
        return;
    }
    const dc_config_t *old = s->snap->cfg;
    if (!listen_sets_equal(old->listen, old->nlisten, cfg->listen, cfg->nlisten) ||
        !listen_sets_equal(old->tls.listen, old->tls.nlisten, cfg->tls.listen, cfg->tls.nlisten) ||
        old->workers != cfg->workers)
        dc_log_warn("reload: listen addresses and workers only change on restart; keeping the current ones");
    if (cfg->log.access != NULL && (old->log.access == NULL || strcmp(cfg->log.access, old->log.access) != 0))
        dc_log_set_access(cfg->log.access);
    dc_log_set_level((dc_log_level_t)cfg->log.level);
    dc_cache_set_limits(s->cache, cfg->cache.memory, cfg->cache.max_object, dc_now_wall_ms());
    dc_snapshot_t *snap = dc_snapshot_create(cfg, s->snap, ++s->generation);
    dc_plugin_attach(snap, plugins);
    for (unsigned i = 0; i < s->nworkers; i++)
        dc_worker_post_snapshot(&s->workers[i], snap);
    pthread_mutex_lock(&s->snap_lock);
    dc_snapshot_t *prev = s->snap;
    s->snap = snap;
    pthread_mutex_unlock(&s->snap_lock);
    dc_snapshot_release(prev);
    crash_info(snap);
    __atomic_fetch_add(&dc_metrics_process.reloads, 1, __ATOMIC_RELAXED);
    dc_log_info("config reloaded from %s (generation %llu)", s->config_path, (unsigned long long)s->generation);
    sd_notify(0, "READY=1\nSTATUS=serving");
}

static void on_drain_timeout(uv_timer_t *t)
{
    dc_server_t *s = t->data;
    dc_log_warn("drain timeout reached; stopping with requests still in flight");
    s->forced = 1;
    for (unsigned i = 0; i < s->nworkers; i++)
        dc_worker_post_stop(&s->workers[i]);
}

static void begin_drain(dc_server_t *s)
{
    if (s->draining)
        return;
    s->draining = 1;
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
    dc_log_info("draining: no new connections, finishing requests in flight (up to %llums)",
                (unsigned long long)s->snap->cfg->server.drain_timeout_ms);
    for (unsigned i = 0; i < s->nworkers; i++)
        dc_worker_post_drain(&s->workers[i]);
    uv_timer_start(&s->drain_timer, on_drain_timeout, s->snap->cfg->server.drain_timeout_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    dc_server_t *s = h->data;
    if (signum == SIGUSR1) {
        dc_log_reopen(); /* log rotation: the access log file is reopened at its path */
    } else if (signum == SIGHUP && s->finishing) {
        dc_log_warn("reload ignored: stopping");
    } else if (signum == SIGHUP) {
        reload(s);
        dc_log_reopen(); /* SIGHUP rotates too (also when the reload is rejected) */
    } else {
        begin_drain(s);
    }
}

/* ---- teardown of the main thread's loop ---- */

static void shutdown_admin_conn(uv_handle_t *h, void *arg)
{
    (void)arg;
    uv_os_fd_t fd;
    if (h->type == UV_TCP && !uv_is_closing(h) && uv_fileno(h, &fd) == 0)
        shutdown(fd, SHUT_RDWR); /* h2o reads EOF and closes the connection */
}

static void count_tcp(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP)
        ++*(unsigned *)arg;
}

/* Every admin connection closed: the loop may stop (dc_server_run closes the rest). */
static void on_close_tick(uv_timer_t *t)
{
    dc_server_t *s = t->data;
    unsigned ntcp = 0;
    uv_walk(s->loop, count_tcp, &ntcp);
    if (ntcp > 0)
        return;
    uv_close((uv_handle_t *)t, NULL);
    uv_stop(s->loop);
}

static void close_main_loop(dc_server_t *s)
{
    uv_timer_stop(&s->drain_timer);
    if (s->bus != NULL) {
        dc_bus_close(s->bus);
        s->bus = NULL;
    }
    dc_admin_close(s->admin);
    uv_walk(s->loop, shutdown_admin_conn, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_usr1, NULL);
    uv_close((uv_handle_t *)&s->trim_timer, NULL);
    uv_close((uv_handle_t *)&s->worker_exit_async, NULL);
    uv_timer_start(&s->drain_timer, on_close_tick, 0, 10);
}

static void on_worker_exit(uv_async_t *a)
{
    dc_server_t *s = a->data;
    if (!s->finishing && atomic_load(&s->workers_quiet) == s->nworkers) {
        s->finishing = 1; /* no worker can post to another any more: each may close its inbox */
        for (unsigned i = 0; i < s->nworkers; i++)
            dc_worker_post_finish(&s->workers[i]);
    }
    if (s->finishing && atomic_load(&s->workers_exited) == s->nworkers)
        close_main_loop(s);
}

void dc_server_worker_quiet(dc_server_t *s, struct dc_worker *w)
{
    (void)w;
    atomic_fetch_add(&s->workers_quiet, 1);
    uv_async_send(&s->worker_exit_async);
}

void dc_server_worker_exited(dc_server_t *s, struct dc_worker *w)
{
    (void)w;
    atomic_fetch_add(&s->workers_exited, 1);
    uv_async_send(&s->worker_exit_async);
}

/* Thousands of event-stream subscribers leave many small freed blocks that glibc keeps: give them
 * back once nobody is subscribed (measured: 138 MiB kept after 10,000 left, 17 MiB after). Here on
 * the main thread, because malloc_trim walks every arena and would stall a worker's loop. */
static void on_trim_timer(uv_timer_t *t)
{
    (void)t;
    if (dc_sse_trim_due())
        malloc_trim(0);
}

static void report_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    dc_log_error("main loop: a %s handle is still open at exit; closing it", uv_handle_type_name(h->type));
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int dc_server_run(dc_server_t *s)
{
    s->loop = uv_default_loop();
    dc_metrics_process.start_wall_ms = dc_now_wall_ms();
    uv_async_init(s->loop, &s->worker_exit_async, on_worker_exit);
    s->worker_exit_async.data = s;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_init(s->loop, &s->trim_timer);
    uv_timer_start(&s->trim_timer, on_trim_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&s->trim_timer);
    uv_signal_t *sigs[] = {&s->sig_hup, &s->sig_term, &s->sig_int, &s->sig_usr1};
    int signums[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(s->loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    signal(SIGPIPE, SIG_IGN);

    if (s->admin_fd >= 0) {
        dc_admin_source_t src = {
            .current_snapshot = admin_current_snapshot,
            .nworkers = admin_nworkers,
            .state = admin_state,
            .redis_state = admin_redis_state,
            .instances = admin_instances,
            .streams = admin_streams,
            .broadcast_purge = admin_broadcast_purge,
            .plugin_at = admin_plugin_at,
            .cache = s->cache,
            .ctx = s,
        };
        if (dc_admin_create(s->loop, s->admin_fd, &src, &s->admin) != 0)
            return 1;
    }

    if (s->snap->cfg->redis.enabled) {
        const dc_config_t *c = s->snap->cfg;
        if (dc_bus_create(s->loop, c->redis.url,
                          c->redis.prefix != NULL ? c->redis.prefix : "dexcache:", on_bus_message, s, &s->bus) != 0)
            return 1;
        dc_bus_set_sync(s->bus, 1000, on_breaker_sync, s);
    }

    s->workers = dc_calloc(s->nworkers, sizeof(*s->workers));
    s->sse = dc_sse_create(s->workers, s->nworkers);
    for (unsigned i = 0; i < s->nworkers; i++)
        dc_worker_init(&s->workers[i], s, i, s->snap, &s->gconf, s->ssl_ctx, s->plain_fds + i * s->nplain, s->nplain,
                       s->tls_fds + i * s->ntls, s->ntls, s->cache, s->inflight, s->limiter);
    for (unsigned i = 0; i < s->nworkers; i++)
        if (dc_worker_start(&s->workers[i]) != 0)
            dc_fatal("cannot start worker thread %u", i);

    const dc_config_t *cfg = s->snap->cfg;
    for (size_t i = 0; i < cfg->nlisten; i++)
        dc_log_info("listening on http://%s (HTTP/1.1, h2c)", cfg->listen[i].text);
    for (size_t i = 0; i < cfg->tls.nlisten; i++)
        dc_log_info("listening on https://%s (HTTP/1.1, HTTP/2 via ALPN)", cfg->tls.listen[i].text);
    if (cfg->admin.enabled)
        dc_log_info("admin on http://%s", cfg->admin.listen.text);
    dc_log_info("dexcache %s ready: %u workers, %zu routes, %zu upstreams", DC_VERSION, s->nworkers, cfg->nroutes,
                cfg->nupstreams);
    sd_notifyf(0, "READY=1\nMAINPID=%lu\nSTATUS=serving", (unsigned long)getpid());

    uv_run(s->loop, UV_RUN_DEFAULT); /* until every worker exited and the admin connections closed */

    for (unsigned i = 0; i < s->nworkers; i++)
        dc_worker_join(&s->workers[i]);
    dc_admin_destroy(s->admin); /* disposes its h2o context: runs the loop, so not from a callback */
    s->admin = NULL;
    uv_run(s->loop, UV_RUN_DEFAULT); /* the bus's connections and the last closes */
    if (uv_loop_close(s->loop) != 0) {
        uv_walk(s->loop, report_open_handle, NULL);
        uv_run(s->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(s->loop) != 0)
            dc_log_error("main loop: cannot be closed");
    }
    dc_worker_free_h2o_thread_caches(NULL); /* the admin's, on this thread */
    dc_log_info("stopped%s", s->forced ? " (drain timeout)" : "");
    return 0;
}

void dc_server_destroy(dc_server_t *s)
{
    if (s == NULL)
        return;
    /* the workers have closed their loops (dc_server_run joined them): what they shared goes */
    free(s->workers);
    dc_sse_destroy(s->sse);
    dc_limiter_destroy(s->limiter);
    dc_inflight_destroy(s->inflight);
    dc_metrics_set_cache_source(NULL, NULL);
    dc_cache_destroy(s->cache);
    dc_snapshot_release(s->snap);
    h2o_config_dispose(&s->gconf);
    if (s->ssl_ctx != NULL)
        SSL_CTX_free(s->ssl_ctx);
    pthread_mutex_destroy(&s->snap_lock);
    free(s->config_path);
    free(s->plain_fds);
    free(s->tls_fds);
    free(s);
}
