/*
 * Plugin sets (plugin.h): the instances one config names, a chain per route, their per-worker
 * states, and the request hooks registered with http (http/plugins.h).
 */
#include "plugin/plugin_private.h"
#include "core/error.h"
#include "core/log.h"
#include "http/plugins.h"

#include <errno.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct dexcache_req preq_t;

/* ---- building (main thread) ---- */

static void inst_release(dc__plugin_inst_t *in)
{
    const dexcache_plugin_t *p = in->file != NULL ? in->file->p : NULL;
    for (unsigned w = 0; p != NULL && w < in->nworkers; w++)
        if (in->wstatus[w] == 1 && p->worker_fini != NULL)
            p->worker_fini(in->state, w, in->wstate[w]);
    if (p != NULL && in->built && p->instance_free != NULL)
        p->instance_free(in->state);
    free(in->wstate);
    free(in->wstatus);
}

void dc__plugin_set_ref(dc_plugin_set_t *set)
{
    atomic_fetch_add(&set->refs, 1);
}

void dc__plugin_set_unref(dc_plugin_set_t *set)
{
    if (set != NULL && atomic_fetch_sub(&set->refs, 1) == 1)
        dc_plugin_set_free(set);
}

void dc_plugin_set_free(dc_plugin_set_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->ninst; i++)
        inst_release(&set->inst[i]);
    free(set->inst);
    free(set->chain_inst);
    free(set->chains);
    free(set->chain_ptrs);
    free(set);
}

/* The snapshot's reference; view indexes of its instances may keep the set a while longer. */
static void set_release(void *set)
{
    dc__plugin_set_unref(set);
}

/* ---- view identities (dc__plugin_inst_t.view_owner) ---- */

typedef struct view_ident {
    struct view_ident *next;
    const dc__plugin_file_t *file;
    unsigned char digest[32]; /* of the instance's name and config */
} view_ident_t;

/* Never freed: like loaded files, one per distinct (file, name, config) ever built, a few dozen
 * bytes each. Sets are built on the main thread; the lock makes that an assumption nobody relies on. */
static view_ident_t *view_idents;
static pthread_mutex_t view_idents_lock = PTHREAD_MUTEX_INITIALIZER;

static void digest_str(mbedtls_sha256_context *sha, const char *s)
{
    s = s != NULL ? s : "";
    mbedtls_sha256_update_ret(sha, (const unsigned char *)s, strlen(s) + 1); /* NUL: "ab","c" != "a","bc" */
}

/* The config's structure and values (not where they are in the file: moving a block changes nothing). */
static void digest_node(mbedtls_sha256_context *sha, const dc_confnode_t *n)
{
    static const char *const kinds[] = {"s", "m", "l", "~"};
    bool null = n == NULL || dc_confnode_is_null(n);
    dc_confnode_kind_t kind = null ? DC_CONFNODE_SCALAR : dc_confnode_kind(n);
    digest_str(sha, null ? kinds[3] : kinds[kind]);
    if (null)
        return;
    if (kind == DC_CONFNODE_SCALAR) {
        digest_str(sha, dc_confnode_value(n));
        return;
    }
    size_t len = dc_confnode_len(n);
    for (size_t i = 0; i < len; i++) {
        const char *key = NULL;
        const dc_confnode_t *child = dc_confnode_at(n, i, &key);
        if (kind == DC_CONFNODE_MAP)
            digest_str(sha, key);
        digest_node(sha, child);
    }
    digest_str(sha, "end");
}

static const void *view_owner_of(const dc__plugin_file_t *file, const char *name, const dc_confnode_t *conf)
{
    unsigned char digest[32];
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    digest_str(&sha, name);
    digest_node(&sha, conf);
    mbedtls_sha256_finish_ret(&sha, digest);
    mbedtls_sha256_free(&sha);
    pthread_mutex_lock(&view_idents_lock);
    view_ident_t *v = view_idents;
    while (v != NULL && !(v->file == file && memcmp(v->digest, digest, sizeof(digest)) == 0))
        v = v->next;
    if (v == NULL) {
        v = dc_calloc(1, sizeof(*v));
        v->file = file;
        memcpy(v->digest, digest, sizeof(digest));
        v->next = view_idents;
        view_idents = v;
    }
    pthread_mutex_unlock(&view_idents_lock);
    return v;
}

/* `path` as the config names it: absolute, or relative to the config file's folder (the caller
 * falls back to DC_PLUGINDIR, the compiled-in folder of the shipped plugins, when that is absent). */
static char *resolve(const dc_config_t *cfg, const char *path)
{
    if (path[0] == '/' || cfg->path == NULL)
        return dc_strdup(path);
    const char *slash = strrchr(cfg->path, '/');
    size_t dlen = slash != NULL ? (size_t)(slash - cfg->path) : 1;
    const char *dir = slash != NULL ? cfg->path : ".";
    size_t n = dlen + 1 + strlen(path) + 1;
    char *out = dc_malloc(n);
    snprintf(out, n, "%.*s/%s", (int)dlen, dlen == 0 ? "/" : dir, path);
    return out;
}

static char *config_dir(const dc_config_t *cfg)
{
    char *any = resolve(cfg, "x");
    any[strlen(any) - 2] = '\0'; /* drop "/x" */
    if (any[0] == '\0')
        strcpy(any, "/");
    return any;
}

int dc_plugin_set_build(const dc_config_t *cfg, unsigned nworkers, dc_plugin_set_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->nplugins == 0)
        return 0;
    dc_plugin_set_t *set = dc_calloc(1, sizeof(*set));
    atomic_init(&set->refs, 1);
    set->inst = dc_calloc(cfg->nplugins, sizeof(*set->inst));
    char *dir = config_dir(cfg);
    int rc = 0;
    for (size_t i = 0; i < cfg->nplugins && rc == 0; i++) {
        const dc_config_plugin_t *pc = &cfg->plugins[i];
        dc__plugin_inst_t *in = &set->inst[i];
        set->ninst = i + 1;
        in->cfg = pc;
        in->set = set;
        in->nworkers = nworkers;
        in->wstate = dc_calloc(nworkers ? nworkers : 1, sizeof(void *));
        in->wstatus = dc_calloc(nworkers ? nworkers : 1, 1);
        char *path = resolve(cfg, pc->path);
        if (pc->path[0] != '/' && access(path, F_OK) != 0 && errno == ENOENT) {
            /* not next to the config: the folder the shipped plugins install to */
            size_t n = strlen(DC_PLUGINDIR) + 1 + strlen(pc->path) + 1;
            char *shipped = dc_malloc(n);
            snprintf(shipped, n, "%s/%s", DC_PLUGINDIR, pc->path);
            if (access(shipped, F_OK) == 0) {
                free(path);
                path = shipped;
            } else {
                free(shipped);
            }
        }
        rc = dc__plugin_load(path, &in->file, err, errlen);
        free(path);
        if (rc != 0)
            break;
        const dexcache_plugin_t *p = in->file->p;
        const dc_confnode_t *conf = pc->config != NULL ? (const dc_confnode_t *)pc->config : NULL;
        if (conf != NULL && (rc = dc__plugin_check_options(p->options, conf, err, errlen)) != 0)
            break;
        if (p->instance_new != NULL) {
            char why[768] = "";
            dexcache_instance_args_t args = {
                .size = sizeof(args),
                .name = pc->name,
                .config = (const dexcache_conf_t *)(conf != NULL ? conf : dc__plugin_empty_conf),
                .config_dir = dir,
            };
            if (p->instance_new(&args, &in->state, why, sizeof(why)) != DEXCACHE_CONTINUE) {
                snprintf(err, errlen, "plugin %s (%s): instance_new failed: %s", pc->name, in->file->path,
                         why[0] ? why : "(no message)");
                rc = DC_ECONFIG;
                break;
            }
        }
        in->built = true;
        in->view_owner = view_owner_of(in->file, pc->name, conf);
        if (p->on_deliver != NULL)
            dc_http_plugins_want_deliver();
    }
    free(dir);
    if (rc != 0) {
        dc_plugin_set_free(set);
        return rc;
    }
    /* one chain per route that lists plugins (config/ checked that the names exist) */
    size_t total = 0;
    for (size_t r = 0; r < cfg->nroutes; r++)
        total += cfg->routes[r].nplugins;
    set->chains = dc_calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*set->chains));
    set->chain_ptrs = dc_calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(*set->chain_ptrs));
    set->chain_inst = dc_calloc(total ? total : 1, sizeof(*set->chain_inst));
    size_t at = 0;
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const dc_config_route_t *route = &cfg->routes[r];
        if (route->nplugins == 0)
            continue;
        set->chains[r].inst = &set->chain_inst[at];
        for (size_t k = 0; k < route->nplugins; k++)
            for (size_t i = 0; i < set->ninst; i++)
                if (strcmp(set->inst[i].cfg->name, route->plugins[k]) == 0)
                    set->chain_inst[at + set->chains[r].n++] = &set->inst[i];
        DC_ASSERT(set->chains[r].n == route->nplugins);
        at += route->nplugins;
        set->chain_ptrs[r] = &set->chains[r];
    }
    *out = set;
    return 0;
}

void dc_plugin_attach(dc_snapshot_t *snap, dc_plugin_set_t *set)
{
    if (set != NULL)
        dc_snapshot_attach_plugins(snap, set, set->chain_ptrs);
}

bool dc_plugin_set_info(const dc_plugin_set_t *set, size_t i, const char **name, const char **plugin,
                        const char **version, const char **path)
{
    if (set == NULL || i >= set->ninst)
        return false;
    const dc__plugin_inst_t *in = &set->inst[i];
    *name = in->cfg->name;
    *plugin = in->file->p->name;
    *version = in->file->p->version;
    *path = in->file->path;
    return true;
}

bool dc_plugin_info(const dc_snapshot_t *snap, size_t i, const char **name, const char **plugin, const char **version,
                    const char **path)
{
    return dc_plugin_set_info(snap->plugins, i, name, plugin, version, path);
}

void dc_plugin_describe(const dc_snapshot_t *snap, char *buf, size_t len)
{
    const dc_plugin_set_t *set = snap->plugins;
    size_t o = 0;
    if (len == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; set != NULL && i < set->ninst && o < len; i++) {
        const dc__plugin_inst_t *in = &set->inst[i];
        const dexcache_plugin_t *p = in->file->p;
        int n = snprintf(buf + o, len - o, "plugin %s: %s %s (ABI %u.%u, %s)\n", in->cfg->name, p->name,
                         p->version != NULL ? p->version : "?", (unsigned)p->abi_major, (unsigned)p->abi_minor,
                         in->file->path);
        if (n < 0)
            break;
        o += (size_t)n;
    }
}

/* ---- per-worker states (each worker's thread) ---- */

void *dc__plugin_wstate(dc__plugin_inst_t *in, dc_worker_t *w, bool *ok)
{
    unsigned id = w->id;
    *ok = true;
    if (id >= in->nworkers)
        return NULL;
    if (in->wstatus[id] == 0) {
        const dexcache_plugin_t *p = in->file->p;
        in->wstatus[id] = 1;
        if (p->worker_init != NULL && p->worker_init(in->state, id, &in->wstate[id]) != DEXCACHE_CONTINUE) {
            in->wstatus[id] = 2;
            dc_log_error("plugin %s: worker_init failed on worker %u", in->cfg->name, id);
        }
    }
    *ok = in->wstatus[id] == 1;
    return in->wstate[id];
}

void dc_plugin_worker_start(dc_worker_t *w)
{
    dc_plugin_set_t *set = w->snap->plugins;
    bool ok;
    for (size_t i = 0; set != NULL && i < set->ninst; i++)
        (void)dc__plugin_wstate(&set->inst[i], w, &ok);
}

/* ---- the hooks (the request's worker) ---- */

preq_t *dc__plugin_preq(dc_request_t *r, const dc__plugin_chain_t *chain)
{
    if (r->plugin == NULL) {
        preq_t *pr = h2o_mem_alloc_pool(&r->req->pool, sizeof(*pr));
        memset(pr, 0, sizeof(*pr));
        pr->r = r;
        pr->chain = chain;
        r->plugin = pr;
    }
    return r->plugin;
}

/* A hook failed (ERROR, or a worker state that could not be made): on_error decides. Returns true
 * when the request goes on. */
bool dc__plugin_hook_failed(preq_t *pr, const dc__plugin_inst_t *in, const char *hook)
{
    if (in->cfg->on_error == DC_PLUGIN_ON_ERROR_OPEN) {
        dc_log_warn("plugin %s: %s failed (on_error: open, request %s goes on)", in->cfg->name, hook,
                    pr->r->request_id);
        return true;
    }
    char msg[96];
    snprintf(msg, sizeof(msg), "plugin %s failed", in->cfg->name);
    if (pr->r->req != NULL && !pr->answered && pr->r->req->_generator == NULL) {
        pr->answered = true;
        dc_request_respond_error(pr->r, 500, msg);
    }
    return false;
}

/* Run on_request from pr->next on; true when the request goes on now. */
static bool run_on_request(preq_t *pr)
{
    const dc__plugin_chain_t *chain = pr->chain;
    while (pr->next < chain->n) {
        dc__plugin_inst_t *in = chain->inst[pr->next++];
        const dexcache_plugin_t *p = in->file->p;
        if (p->on_request == NULL)
            continue;
        bool ok;
        void *ws = dc__plugin_wstate(in, pr->r->ctx.worker, &ok);
        if (!ok) {
            if (!dc__plugin_hook_failed(pr, in, "worker_init"))
                return false;
            continue;
        }
        pr->cur = in;
        pr->phase = DC__PH_REQUEST;
        int rc = p->on_request(pr, in->state, ws);
        if (rc == DEXCACHE_PENDING && pr->suspended != NULL) {
            pr->phase = DC__PH_NONE;
            return false; /* resumed through host.c, which calls dc__plugin_after_hook */
        }
        if (!dc__plugin_after_hook(pr, rc))
            return false;
    }
    pr->phase = DC__PH_NONE;
    return true;
}

bool dc__plugin_after_hook(preq_t *pr, int rc)
{
    const dc__plugin_inst_t *in = pr->cur;
    pr->phase = DC__PH_NONE;
    if (pr->r->req == NULL)
        return false;
    if (pr->answered || pr->r->req->_generator != NULL) /* whatever it returned, it answered */
        return false;
    if (rc == DEXCACHE_CONTINUE) {
        /* the chain's remaining hooks, when called from a resume */
        return pr->next >= pr->chain->n ? true : run_on_request(pr);
    }
    if (rc == DEXCACHE_ANSWERED || rc == DEXCACHE_PENDING) {
        /* ANSWERED without an answer, PENDING without suspend: a plugin bug */
        dc_log_error("plugin %s: on_request returned %s without %s", in->cfg->name,
                     rc == DEXCACHE_ANSWERED ? "ANSWERED" : "PENDING",
                     rc == DEXCACHE_ANSWERED ? "answering" : "suspending");
    }
    if (!dc__plugin_hook_failed(pr, in, "on_request"))
        return false;
    return pr->next >= pr->chain->n ? true : run_on_request(pr);
}

static bool on_request(dc_request_t *r, const void *chain_)
{
    preq_t *pr = dc__plugin_preq(r, chain_);
    pr->next = 0;
    return run_on_request(pr);
}

static bool cache_key(dc_request_t *r, const void *chain_)
{
    const dc__plugin_chain_t *chain = chain_;
    preq_t *pr = dc__plugin_preq(r, chain);
    for (size_t i = 0; i < chain->n; i++) {
        dc__plugin_inst_t *in = chain->inst[i];
        const dexcache_plugin_t *p = in->file->p;
        if (p->cache_key == NULL)
            continue;
        bool ok;
        void *ws = dc__plugin_wstate(in, r->ctx.worker, &ok);
        pr->cur = in;
        pr->phase = DC__PH_KEY;
        int rc = ok ? p->cache_key(pr, in->state, ws) : DEXCACHE_ERROR;
        pr->phase = DC__PH_NONE;
        if (rc != DEXCACHE_CONTINUE && !dc__plugin_hook_failed(pr, in, "cache_key"))
            return false;
    }
    return true;
}

static void on_deliver(dc_request_t *r, const void *chain_)
{
    const dc__plugin_chain_t *chain = chain_;
    preq_t *pr = r->plugin;
    if (pr == NULL || pr->answered)
        return;
    for (size_t i = 0; i < chain->n; i++) {
        dc__plugin_inst_t *in = chain->inst[i];
        const dexcache_plugin_t *p = in->file->p;
        if (p->on_deliver == NULL)
            continue;
        bool ok;
        void *ws = dc__plugin_wstate(in, r->ctx.worker, &ok);
        pr->cur = in;
        pr->phase = DC__PH_DELIVER;
        int rc = ok ? p->on_deliver(pr, in->state, ws) : DEXCACHE_ERROR;
        pr->phase = DC__PH_NONE;
        if (rc != DEXCACHE_CONTINUE)
            dc_log_warn("plugin %s: on_deliver failed (request %s)", in->cfg->name, r->request_id);
    }
}

static void dispose(dc_request_t *r)
{
    preq_t *pr = r->plugin;
    dc__plugin_suspend_dispose(pr);
    pr->phase = DC__PH_NONE;
    pr->r = NULL;
    r->plugin = NULL;
}

static const dc_http_plugin_ops_t ops = {
    .on_request = on_request,
    .cache_key = cache_key,
    .on_deliver = on_deliver,
    .dispose = dispose,
    .view_claim = dc__plugin_view_claim,
    .view_fill = dc__plugin_view_fill,
};

void dc_plugin_register(void)
{
    dc_http_register_plugins(&ops);
    dc_snapshot_register_plugins_release(set_release);
    dc__plugin_events_register();
}
