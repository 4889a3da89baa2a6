/* Internal to plugin/: what loader.c, options.c, host.c and set.c share. */
#ifndef DC_PLUGIN_PRIVATE_H
#define DC_PLUGIN_PRIVATE_H

#include <sys/types.h>
#include <time.h>
#include <dexcache/plugin.h>
#include <stdbool.h>

#include "config/config.h"
#include "config/node.h"
#include "core/list.h"
#include "http/request.h"
#include "plugin/plugin.h"

#define DC_PLUGIN_RESUME_MAGIC 0x52534d45u /* "RSME" */

/* A loaded shared object (never unloaded). */
typedef struct dc__plugin_file {
    char *path; /* as resolved (absolute), the registry's key */
    void *dl;
    int memfd; /* the private copy dlopen mapped (open for the process's life), or -1 */
    const dexcache_plugin_t *p;
    bool inited; /* init() succeeded */
    /* the file as it was loaded: a reload that finds another file there says so (the loaded code
     * stays: plugins are never unloaded) */
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    off_t size;
} dc__plugin_file_t;

typedef struct dc__plugin_inst {
    const dc_config_plugin_t *cfg; /* name, on_error (in the snapshot's config) */
    dc_plugin_set_t *set;          /* the set it belongs to */
    dc__plugin_file_t *file;
    void *state;
    bool built; /* instance_new succeeded: instance_free is owed */
    unsigned nworkers;
    void **wstate;          /* [nworkers], each touched by its worker only */
    unsigned char *wstatus; /* [nworkers]: 0 not yet, 1 ready, 2 worker_init failed */
    /* What its view indexes are attached to a source body under (view.c): one address for every
     * instance of the same loaded file, name and config, so a reload that leaves a view's config
     * unchanged keeps the indexes built so far. Interned for the process's life (set.c). */
    const void *view_owner;
} dc__plugin_inst_t;

typedef struct dc__plugin_chain {
    size_t n;
    dc__plugin_inst_t **inst;
} dc__plugin_chain_t;

struct dc_plugin_set {
    _Atomic unsigned refs; /* the snapshot's, plus one per view index of its instances (view.c) */
    dc__plugin_inst_t *inst;
    size_t ninst;
    dc__plugin_chain_t *chains;     /* [cfg->nroutes] */
    const void **chain_ptrs;        /* [cfg->nroutes]: &chains[i] or NULL */
    dc__plugin_inst_t **chain_inst; /* what the chains point into */
};

enum { DC__PH_NONE = 0, DC__PH_REQUEST, DC__PH_KEY, DC__PH_DELIVER, DC__PH_VIEW, DC__PH_RENDER };

/* What a view_render call sees instead of the live request (view.c): the path and normalised query
 * of the view's cache key, a pool for host->alloc, the answer's bytes and an error it chose. */
typedef struct dc__view_render {
    const char *path, *query; /* NUL-terminated; query "" when none */
    size_t path_len, query_len;
    h2o_mem_pool_t pool;
    int err_status; /* respond_error was called: 400..599 */
    const char *err_message;
} dc__view_render_t;

struct dexcache_view_out {
    dc_body_t body;
    bool open; /* during view_render only */
};

/* The per-request state; plugins see it as dexcache_req_t (request pool memory). */
struct dexcache_req {
    dc_request_t *r;
    const dc__plugin_chain_t *chain;
    size_t next;                  /* on_request: index of the instance whose hook runs next */
    int phase;                    /* DC__PH_*: which host functions are allowed now */
    const dc__plugin_inst_t *cur; /* the instance whose hook runs */
    bool answered;                /* a plugin (or the host for it) answered: on_deliver is skipped */
    struct dexcache_resume *suspended;
    /* views (view.c): the instance whose view_source claimed the request and the source path it
     * named; during view_render, what the render sees */
    dc__plugin_inst_t *view_inst;
    const char *view_source;
    dc__view_render_t *render;
};

/* loader.c */
/* Load (or find loaded) the file at `path` (absolute). 0 or DC_EIO / DC_ECONFIG with err. */
int dc__plugin_load(const char *path, dc__plugin_file_t **out, char *err, size_t errlen);

/* options.c */
int dc__plugin_parse_int(const char *s, int64_t *out);
/* The config map of an instance without `config:` (conf_* functions treat it as an empty map). */
extern const dc_confnode_t *const dc__plugin_empty_conf;
/* options.c: check `node` (a map) against a table. 0 or DC_ECONFIG with FILE:LINE:COL in err. */
int dc__plugin_check_options(const dexcache_option_t *opts, const dc_confnode_t *node, char *err, size_t errlen);

/* events.c: host->metric_add, and the /metrics source of its series (registered by
 * dc_plugin_register). */
int dc__plugin_metric_add(const dexcache_plugin_t *self, dexcache_req_t *r, const char *event, const char *reason,
                          uint64_t n);
void dc__plugin_events_register(void);

/* host.c */
extern const dexcache_host_t dc__plugin_host;
/* The deadline / disposal side of a suspended request (host.c). */
void dc__plugin_suspend_dispose(struct dexcache_req *pr);
/* set.c: handle the rc of the current instance's on_request (or its resume callback) and run the
 * rest of the chain. Returns true when the request goes on now. */
bool dc__plugin_after_hook(struct dexcache_req *pr, int rc);
/* set.c: the per-worker state of an instance on r's worker (made on first use). */
void *dc__plugin_wstate(dc__plugin_inst_t *in, dc_worker_t *w, bool *ok);
/* set.c: references to a set (its instances live as long as it). The last unref frees it. */
void dc__plugin_set_ref(dc_plugin_set_t *set);
void dc__plugin_set_unref(dc_plugin_set_t *set);
/* set.c: a hook failed; on_error decides (true: the request goes on). */
bool dc__plugin_hook_failed(struct dexcache_req *pr, const dc__plugin_inst_t *in, const char *hook);
/* set.c: the request's plugin state (request pool), made on first use. */
struct dexcache_req *dc__plugin_preq(dc_request_t *r, const dc__plugin_chain_t *chain);

/* view.c: the view hooks registered with http (http/plugins.h). */
bool dc__plugin_view_claim(dc_request_t *r, const void *chain);
void dc__plugin_view_fill(dc_request_t *r, dc_flight_t *flight);

#endif
