/*
 * dexcache plugin ABI, version 1.3.
 *
 * History: 1.0 first version; 1.1 adds host->req_remove_header; 1.2 adds host->req_remove_query and
 * host->metric_add; 1.3 makes views work: the host calls view_source / view_prepare / view_render /
 * view_free; view_source may answer a bad query (ANSWERED); the source body handed to view_prepare
 * stays valid as long as the index built from it (dexcache_view_source_t.flags); view_render sees
 * the normalised query only.
 *
 * This header is the whole contract between dexcache (the "host") and a plugin. A plugin is a
 * shared object that exports ONE symbol, `dexcache_plugin`, of type `dexcache_plugin_t`:
 *
 *     #include <dexcache/plugin.h>
 *     DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t dexcache_plugin = {
 *         DEXCACHE_PLUGIN_HEADER,            // magic, ABI major/minor, struct size
 *         .name = "hello", .version = "1.0.0",
 *         .options = hello_options, .instance_new = hello_new, .on_deliver = hello_deliver,
 *     };
 *
 * Build it with `cc $(pkg-config --cflags dexcache-plugin) -shared -fPIC -o hello.so hello.c`
 * (lua-free-plugins/example/README.md walks through it). The header needs only the C library.
 *
 * Loading. dexcache loads each file named under the top-level `plugins:` key with
 * dlopen(RTLD_NOW | RTLD_LOCAL) when it starts (and when `dexcache -t` checks a config), and never
 * unloads it: pointers into a plugin (strings, functions) stay valid for the life of the process.
 * It refuses a plugin (naming the file) whose magic is not DEXCACHE_PLUGIN_MAGIC, whose abi_major
 * differs from the host's, whose abi_minor is above the host's, or whose `size` is not
 * sizeof(dexcache_plugin_t). A plugin built against an older minor of the same major always loads:
 * a new hook takes one of the reserved slots (the struct never changes size within a major) and a
 * new host function is appended to dexcache_host_t (whose `size` grows). Removing or changing
 * anything is a major bump.
 *
 * Instances. A plugin file may back several instances (`plugins: [{name: a, path: x.so}, {name: b,
 * path: x.so}]`), each with its own config map and its own `void *instance` state. Routes list
 * instance names (`routes[].plugins: [a, b]`); their hooks run in that order. A reload (SIGHUP)
 * builds a fresh set of instances from the new config; if any fails, the reload is refused and the
 * old instances keep serving. Old instances are freed once no request uses them.
 *
 * Threads. Hooks run on the event-loop thread of the worker that owns the request, except
 * init / instance_new / instance_free (main thread or the thread that releases the last config
 * reference, never concurrently with a hook of that instance) and view_prepare (a thread-pool
 * thread). Never block in a request hook: suspend (host->suspend) and resume from any thread.
 * Per-worker state from worker_init is only ever used by one thread at a time: keep contexts that
 * are not thread-safe there (mbedtls, caches).
 *
 * Memory. Strings the host hands to a hook (header values, paths, config values) are valid until
 * the hook returns unless a function says otherwise; copy what you keep. host->alloc() gives
 * memory freed with the request. A plugin frees whatever it allocated itself.
 */
#ifndef DEXCACHE_PLUGIN_H
#define DEXCACHE_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DEXCACHE_PLUGIN_MAGIC 0x44584350u /* "DXCP" */
#define DEXCACHE_PLUGIN_ABI_MAJOR 1
#define DEXCACHE_PLUGIN_ABI_MINOR 3
#define DEXCACHE_PLUGIN_SYMBOL "dexcache_plugin"

#if defined(__cplusplus)
#define DEXCACHE_EXTERN_C extern "C"
#else
#define DEXCACHE_EXTERN_C
#endif
#if defined(__GNUC__)
#define DEXCACHE_PLUGIN_EXPORT DEXCACHE_EXTERN_C __attribute__((visibility("default")))
#define DEXCACHE_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DEXCACHE_PLUGIN_EXPORT DEXCACHE_EXTERN_C
#define DEXCACHE_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------------------------------------
 * Return codes of hooks and host functions.
 * ------------------------------------------------------------------------------------------- */
typedef enum dexcache_rc {
    DEXCACHE_CONTINUE = 0, /* go on with the request (host functions: success) */
    DEXCACHE_ANSWERED = 1, /* the hook answered the request (host->respond_error): stop here */
    DEXCACHE_PENDING = 2,  /* the hook called host->suspend() and will call host->resume() */
    DEXCACHE_ERROR = -1,   /* the hook failed: the instance's `on_error` decides (closed: 500
                            * JSON error, nothing cached, nothing sent upstream; open: the
                            * request goes on as if the plugin were absent). Host functions
                            * return it for a bad argument or a call at the wrong time. */
} dexcache_rc_t;

/* ---------------------------------------------------------------------------------------------
 * Opaque handles. Their layout is the host's business; plugins only pass them back.
 * ------------------------------------------------------------------------------------------- */
typedef struct dexcache_req dexcache_req_t;       /* one client request, on its worker thread */
typedef struct dexcache_resume dexcache_resume_t; /* a suspended hook's way back (any thread) */
typedef struct dexcache_conf dexcache_conf_t;     /* a node of the plugin's YAML config map */
typedef struct dexcache_plugin dexcache_plugin_t;
typedef struct dexcache_host dexcache_host_t;

/* Log levels of host->log (the host's `log_level` filters them). */
enum { DEXCACHE_LOG_DEBUG = 0, DEXCACHE_LOG_INFO = 1, DEXCACHE_LOG_WARN = 2, DEXCACHE_LOG_ERROR = 3 };

/* ---------------------------------------------------------------------------------------------
 * The options table: what the plugin's `config:` map may hold. The host checks the YAML against
 * it before instance_new runs; an unknown key, a missing required key, a value of the wrong type
 * or out of [min, max] is an error naming file:line:col of the config YAML. Values get the
 * host's usual treatment (`${VAR}` environment expansion in every scalar, durations "30s",
 * "250ms", sizes "10MB").
 * ------------------------------------------------------------------------------------------- */
typedef enum dexcache_opt_type {
    DEXCACHE_OPT_STRING = 1,   /* any scalar, read with conf_string */
    DEXCACHE_OPT_INT = 2,      /* integer in [min, max] (both 0: any int64) */
    DEXCACHE_OPT_BOOL = 3,     /* true / false */
    DEXCACHE_OPT_DURATION = 4, /* "30s", "250ms", "5m": milliseconds in [min, max] (both 0: any) */
    DEXCACHE_OPT_SIZE = 5,     /* "64KB", "10MB" or bytes: bytes in [min, max] (both 0: any) */
    DEXCACHE_OPT_MAP = 6,      /* a map checked against `children` (NULL: any keys, unchecked) */
    DEXCACHE_OPT_LIST = 7,     /* a sequence; each element checked against children[0] (its name
                                * is ignored; NULL children: any elements). A single scalar is
                                * NOT accepted as a one-element list. */
    DEXCACHE_OPT_ANY = 8,      /* anything; the plugin checks it in instance_new (conf_error) */
} dexcache_opt_type_t;

enum { DEXCACHE_OPT_REQUIRED = 1 };

/* One key of a map. Tables end with an entry whose name is NULL. */
typedef struct dexcache_option {
    const char *name;
    dexcache_opt_type_t type;
    unsigned flags; /* DEXCACHE_OPT_REQUIRED */
    int64_t min, max;
    const struct dexcache_option *children; /* MAP: its keys; LIST: children[0] is the element */
    const char *doc;                        /* one line, shown in errors */
} dexcache_option_t;

/* Arguments of instance_new. `size` = sizeof as the host was built: fields appended in a later
 * minor exist only when size covers them. Everything here is valid during the call only. */
typedef struct dexcache_instance_args {
    uint32_t size;
    const char *name;              /* the instance's `name:` in the config */
    const dexcache_conf_t *config; /* its `config:` map, already checked against `options` (an
                                    * empty map when the key is absent) */
    const char *config_dir;        /* folder of the config file: resolve relative file names here */
} dexcache_instance_args_t;

/* ---------------------------------------------------------------------------------------------
 * Derived views (json_view and alike): a view path on a route is answered from a cached source
 * object on the same route. The host fetches and caches the source as any object; once per source
 * version it calls view_prepare (off the event loop) to build an index, charged to the cache
 * budget; each view request calls view_render on the worker thread.
 * ------------------------------------------------------------------------------------------- */
typedef struct dexcache_view_source {
    uint32_t size;    /* sizeof as the host was built */
    const char *body; /* the complete, decoded source body, contiguous (valid during view_prepare;
                       * with DEXCACHE_VIEW_BODY_KEPT until view_free of the index built from it) */
    size_t body_len;
    const char *path;      /* its upstream-side path (and query), NUL-terminated */
    const char *etag;      /* its validator, or NULL */
    uint64_t version;      /* changes with every stored version of the source */
    uint64_t expires_unix; /* when it stops being fresh (seconds) */
    /* ---- since ABI 1.3 (present when size covers it) ---- */
    uint32_t flags; /* DEXCACHE_VIEW_* */
} dexcache_view_source_t;

/* dexcache_view_source_t.flags: `body` stays valid, unchanged, until view_free of the index built
 * from it: an index may point into it (member spans) instead of copying. Always set by 1.3 hosts. */
#define DEXCACHE_VIEW_BODY_KEPT 1u

/* Reply callbacks of view_render: the answer's body is the bytes appended, in order. */
typedef struct dexcache_view_out dexcache_view_out_t;

/* ---------------------------------------------------------------------------------------------
 * The plugin: the exported struct. Every hook is optional (NULL = not used).
 * `instance` is what instance_new returned; `wstate` what worker_init returned on this worker
 * (NULL when the plugin has no worker_init).
 * ------------------------------------------------------------------------------------------- */
struct dexcache_plugin {
    /* Identity: fill with DEXCACHE_PLUGIN_HEADER. */
    uint32_t magic;     /* DEXCACHE_PLUGIN_MAGIC */
    uint16_t abi_major; /* DEXCACHE_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor; /* DEXCACHE_PLUGIN_ABI_MINOR the plugin was built with */
    uint32_t size;      /* sizeof(dexcache_plugin_t) the plugin was built with */
    uint32_t flags;     /* 0 (reserved) */

    const char *name;                 /* the plugin's name: [a-z0-9_-]{1,32}; two files may not share it */
    const char *version;              /* the plugin's own version, shown in `dexcache -v` and /health */
    const char *description;          /* one line, may be NULL */
    const dexcache_option_t *options; /* its config map's keys; NULL: `config:` must be empty */

    /* Once per loaded file, main thread, before any instance. `host` stays valid forever: keep
     * it. Return DEXCACHE_CONTINUE, or DEXCACHE_ERROR with a message in err (NUL-terminated,
     * at most errlen bytes): the load fails. */
    int (*init)(const dexcache_host_t *host, char *err, size_t errlen);

    /* Build one instance from its config (main thread; at start, on `dexcache -t` and on every
     * reload). Set *instance (may stay NULL). Return DEXCACHE_CONTINUE, or DEXCACHE_ERROR with a
     * message in err (use host->conf_error to point at a config node): the config is refused
     * (start: exit 1 before binding; reload: the old config keeps serving). */
    int (*instance_new)(const dexcache_instance_args_t *args, void **instance, char *err, size_t errlen);
    /* Free an instance once no request uses it and every worker_fini of it ran. Any thread, never
     * concurrently with another hook of this instance. Also called right after a failed reload for
     * the instances that were built. */
    void (*instance_free)(void *instance);

    /* Per-worker state of an instance: called on the worker's thread before the first hook of
     * this instance on that worker (at worker start-up, or lazily after a reload). `worker` is the
     * worker's index, 0-based. DEXCACHE_ERROR: the hooks of this instance fail on that worker
     * (on_error decides). */
    int (*worker_init)(void *instance, unsigned worker, void **wstate);
    /* Free it: when the instance retires or the worker stops. Any thread, never concurrently with
     * a hook using that state. */
    void (*worker_fini)(void *instance, unsigned worker, void *wstate);

    /* After routing, before the client limit and the cache (authentication, per-client identity:
     * host->set_client_id). Returns CONTINUE, ANSWERED (after host->respond_error: the answer is
     * never cached and nothing goes upstream), PENDING (after host->suspend) or ERROR. */
    int (*on_request)(dexcache_req_t *r, void *instance, void *wstate);
    /* Before the cache lookup of a cacheable request: add what distinguishes answers with
     * host->cache_key_add. Must be pure: the same request gives the same bytes. Returns CONTINUE
     * or ERROR (PENDING is not allowed here). Not called for requests that are not cached. */
    int (*cache_key)(dexcache_req_t *r, void *instance, void *wstate);
    /* Before the response head leaves, on hits, misses, pass-through and error answers of routes
     * that run the plugin (not on answers the plugin's own on_request gave): read the status with
     * host->resp_status, add headers with host->resp_set_header. Returns CONTINUE or ERROR (ERROR
     * is logged; the response goes on). */
    int (*on_deliver)(dexcache_req_t *r, void *instance, void *wstate);

    /* Derived views. view_source: does this request ask for a view of this instance? Return
     * CONTINUE with *source_path (upstream-side path and query of the source, plugin-owned,
     * valid until instance_free) set, or set it to NULL for "not a view". Worker thread. Called
     * for cacheable requests of routes that run the plugin, after cache_key, before the lookup
     * of the view's own key. Since 1.3 it may check the query and answer a bad one itself
     * (host->respond_error, 400 naming the parameter) and return ANSWERED: nothing is looked up,
     * fetched or cached. The source is an object on the same route, cached under its own key
     * (as a plain GET of that path would be), so it needs a cache rule of that route. */
    int (*view_source)(dexcache_req_t *r, void *instance, void *wstate, const char **source_path);
    /* Build the index of one source version. A thread-pool thread, maybe concurrently for two
     * versions. Set *index and *index_bytes (charged to the cache budget while the index lives).
     * Return CONTINUE or ERROR (logged; views answer 502 until the next version). The host calls
     * it once per source version and view (concurrent view requests wait for it): instances of
     * the same file with the same name and config share indexes, so after a reload that leaves a
     * view's config unchanged, view_render gets indexes the previous instance built (view_free
     * always gets the instance that built the index). */
    int (*view_prepare)(void *instance, const dexcache_view_source_t *src, void **index, size_t *index_bytes);
    /* Free an index (any thread) once no render uses it. */
    void (*view_free)(void *instance, void *index);
    /* Answer a view request from an index: write the body with host->view_write (the host sends
     * 200 application/json, caches it per normalised query no longer than the source stays
     * fresh), or host->respond_error (400 naming a bad parameter) and return ANSWERED.
     * Worker thread. Since 1.3: the answer is shared by every request with the same cache key, so
     * only req_path / req_query / req_query_string (the path and normalised query of that key,
     * route prefix included as in req_path), alloc (freed after the render), log, view_write and
     * respond_error may be called; the client may be gone by then. */
    int (*view_render)(dexcache_req_t *r, void *instance, void *wstate, const void *index, dexcache_view_out_t *out);

    /* Room for hooks of later minors (must be NULL). */
    void (*reserved[16])(void);
};

#define DEXCACHE_PLUGIN_HEADER                                                                                         \
    .magic = DEXCACHE_PLUGIN_MAGIC, .abi_major = DEXCACHE_PLUGIN_ABI_MAJOR, .abi_minor = DEXCACHE_PLUGIN_ABI_MINOR,    \
    .size = sizeof(dexcache_plugin_t)

/* A suspended hook's continuation (host->suspend): runs on the request's worker thread after
 * host->resume, with the rc given to resume. `r` is NULL when the request is gone (the client
 * left, or the route's deadline already answered 504): then only free `arg`. With a live `r` the
 * callback may use every request function and returns CONTINUE, ANSWERED or ERROR (not PENDING:
 * a hook resumes exactly once). */
typedef int (*dexcache_resume_cb)(dexcache_req_t *r, void *arg, int rc);

/* ---------------------------------------------------------------------------------------------
 * The host function table, handed to init(). `size` is sizeof(dexcache_host_t) as the host was
 * built; functions of a later minor are appended, so a plugin built with minor N can call every
 * function of minors <= N (the host's minor is at least N, or the plugin was refused).
 *
 * Unless said otherwise, request functions (taking dexcache_req_t *) may be called only on the
 * request's worker thread, during a hook call on that request or its resume callback, and
 * returned strings are valid until the request ends (they live in its pool). Lengths never count
 * a NUL; returned strings are NUL-terminated too.
 * ------------------------------------------------------------------------------------------- */
struct dexcache_host {
    uint32_t size;
    uint16_t abi_major, abi_minor; /* the host's ABI version */
    const char *version;           /* dexcache's version string */

    /* ---- reading the request ---- */
    /* First value of request header `name` (case-insensitive). CONTINUE with *value and *len set, or
     * ERROR when absent. Repeated headers: use req_header_at. */
    int (*req_header)(dexcache_req_t *r, const char *name, size_t name_len, const char **value, size_t *len);
    /* The index-th occurrence (0-based) of header `name`; ERROR past the last one. */
    int (*req_header_at)(dexcache_req_t *r, const char *name, size_t name_len, size_t index, const char **value,
                         size_t *len);
    /* First value of query parameter `name`, percent-decoded ('+' is a space). CONTINUE with the
     * value (possibly empty), or ERROR when absent. */
    int (*req_query)(dexcache_req_t *r, const char *name, size_t name_len, const char **value, size_t *len);
    /* The request path as the client sent it, without the query (route prefix included). */
    int (*req_path)(dexcache_req_t *r, const char **path, size_t *len);
    /* The raw query string without '?' ("" when none). */
    int (*req_query_string)(dexcache_req_t *r, const char **query, size_t *len);
    /* "GET", "HEAD", ... */
    int (*req_method)(dexcache_req_t *r, const char **method, size_t *len);
    /* The request id dexcache logs and puts in X-Request-Id and JSON errors. */
    const char *(*req_id)(dexcache_req_t *r);
    /* The client's address (after trusted_proxies: X-Forwarded-For / CF-Connecting-IP only from a
     * trusted peer, as the limit's `by: client`), as text. */
    const char *(*req_client_ip)(dexcache_req_t *r);
    /* The route's prefix, as configured. */
    const char *(*req_route)(dexcache_req_t *r);

    /* ---- shaping the answer ---- */
    /* Add a response header (name and value are copied). In on_request / the resume callback it
     * applies to whatever answer the request gets (also a respond_error); in on_deliver to the
     * answer about to leave. ERROR for a name or value with CR, LF or NUL, or a hop-by-hop name. */
    int (*resp_set_header)(dexcache_req_t *r, const char *name, size_t name_len, const char *value, size_t value_len);
    /* The status of the answer about to leave (on_deliver), 0 before one is chosen. */
    int (*resp_status)(dexcache_req_t *r);
    /* Answer with dexcache's JSON error body {"error": message, "status": status, "request_id":
     * ...}; the hook then returns ANSWERED. status in [400, 599]. The answer is never cached and
     * nothing goes upstream. `message` is copied. ERROR when called twice or outside on_request /
     * view_render / a resume callback. */
    int (*respond_error)(dexcache_req_t *r, int status, const char *message);

    /* ---- identity, cache key ---- */
    /* The client identity of the route's `limit` when it says `by: plugin` (copied; at most 128
     * bytes), and a tier name (may be NULL) selecting a rate among the limit's `tiers:`. Only in
     * on_request / its resume callback; the last call wins. A request with no identity set is
     * limited by its client IP. */
    int (*set_client_id)(dexcache_req_t *r, const char *id, size_t id_len, const char *tier);
    /* Append bytes to the cache key (copied). Only inside cache_key. */
    int (*cache_key_add)(dexcache_req_t *r, const void *bytes, size_t len);

    /* ---- memory, log ---- */
    /* Memory freed with the request (aligned for any type; never NULL: out of memory aborts). */
    void *(*alloc)(dexcache_req_t *r, size_t len);
    /* A log line "plugin <name>: ..." on the host's error log, with the request id when r is not
     * NULL. Any thread (pass r = NULL off the request's worker). */
    void (*log)(const dexcache_plugin_t *self, dexcache_req_t *r, int level, const char *fmt, ...)
        DEXCACHE_PRINTF(4, 5);

    /* ---- suspend / resume ---- */
    /* Take the request off the event loop: the hook returns PENDING right after. Only in
     * on_request. `cb` (may be NULL: the rc given to resume is the result) runs after resume.
     * The handle is the plugin's until it calls resume, which it must do exactly once, from any
     * thread, also when the request is long gone (the only way the handle and `arg` are freed).
     * If resume does not come before the route's deadline (its upstream `timeout`), the client
     * gets a 504 and the later resume only runs cb(NULL, arg, rc). Returns NULL (and nothing is
     * suspended) when called at the wrong time. */
    dexcache_resume_t *(*suspend)(dexcache_req_t *r, dexcache_resume_cb cb, void *arg);
    /* rc: CONTINUE, ANSWERED (only with a cb that answered) or ERROR. Any thread; never blocks.
     * The handle is invalid once this returns. */
    void (*resume)(dexcache_resume_t *h, int rc);

    /* ---- config (only during instance_new; nodes are invalid once it returns) ---- */
    /* The value at `key` of a map node, or NULL when absent or `map` is not a map. */
    const dexcache_conf_t *(*conf_get)(const dexcache_conf_t *map, const char *key);
    /* Number of elements of a list or entries of a map (0 for a scalar). */
    size_t (*conf_len)(const dexcache_conf_t *node);
    /* The index-th element of a list, or value of a map entry (then *key, if not NULL, is its key). */
    const dexcache_conf_t *(*conf_at)(const dexcache_conf_t *node, size_t index, const char **key);
    /* Scalar readers: CONTINUE, or ERROR when the node is absent (NULL) or not of that form. */
    int (*conf_string)(const dexcache_conf_t *node, const char **value, size_t *len);
    int (*conf_int)(const dexcache_conf_t *node, int64_t *value);
    int (*conf_bool)(const dexcache_conf_t *node, int *value);
    int (*conf_duration_ms)(const dexcache_conf_t *node, uint64_t *ms);
    int (*conf_size)(const dexcache_conf_t *node, uint64_t *bytes);
    /* Format "file:line:col: message" for `node` into err (the config YAML's position); returns
     * DEXCACHE_ERROR so that `return host->conf_error(...)` ends instance_new. */
    int (*conf_error)(const dexcache_conf_t *node, char *err, size_t errlen, const char *fmt, ...)
        DEXCACHE_PRINTF(4, 5);

    /* ---- views ---- */
    /* Append bytes to a view answer (copied). Only inside view_render. */
    int (*view_write)(dexcache_view_out_t *out, const void *bytes, size_t len);

    /* ---- since ABI 1.1 ---- */
    /* Remove every occurrence of request header `name` (case-insensitive) before the request goes
     * on: it is neither forwarded upstream nor seen by the cache (a verified `Authorization:
     * Bearer` token removed here no longer makes the answer personal, and the upstream never sees
     * it). Only in on_request / its resume callback. CONTINUE (also when absent) or ERROR. */
    int (*req_remove_header)(dexcache_req_t *r, const char *name, size_t name_len);

    /* ---- since ABI 1.2 ---- */
    /* Remove every occurrence of query parameter `name` (compared percent-decoded, as req_query
     * reads it) from the request's URL before the request goes on: the upstream never sees it and
     * it is not part of the cache key (an API key sent as ?api_key=... then leaves one shared
     * answer for every client). The other parameters keep their bytes and order; a query left
     * empty loses its '?'. The access log shows its value as REDACTED (what a plugin removes is
     * a credential, as a rule). Only in on_request / its resume callback. CONTINUE (also when
     * absent) or ERROR. */
    int (*req_remove_query)(dexcache_req_t *r, const char *name, size_t name_len);
    /* Count an event of the plugin in /metrics, as
     * dexcache_plugin_events_total{plugin="<instance name>",event="<event>",reason="<reason>"}
     * (the instance is the one whose hook runs on `r`; with r NULL, the plugin's own name). `event`
     * and `reason` are [a-z0-9_]{1,32} (reason may be NULL or "": label ""). A series is made on
     * first use and lives for the process (across reloads); at most 1024 series per process (ERROR
     * past that). Any thread; cheap enough for every request (a lock-free lookup once made). */
    int (*metric_add)(const dexcache_plugin_t *self, dexcache_req_t *r, const char *event, const char *reason,
                      uint64_t n);
};

/* Does `host` have function `field`? (Always true for functions of the plugin's own minor.) */
#define DEXCACHE_HOST_HAS(host, field)                                                                                 \
    ((host)->size >= offsetof(dexcache_host_t, field) + sizeof((host)->field) && (host)->field != NULL)

#ifdef __cplusplus
}
#endif

#endif
