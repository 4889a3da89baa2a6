/*
 * The host function table plugins call (dexcache/plugin.h states each contract), and suspend /
 * resume: a suspended on_request holds a reference to its request; resume (any thread) posts a
 * message to the request's worker; the route's deadline answers 504 if resume is late; a resume
 * after the client left (or after the 504) only runs the plugin's callback with no request.
 */
#include "plugin/plugin_private.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/mailbox.h"
#include "http/plugins.h"
#include "ratelimit/clientid.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

typedef struct dexcache_req preq_t;

/* A hook on a live request (view_render never reads the live request: only its key). */
static bool live(preq_t *pr)
{
    return pr != NULL && pr->phase != DC__PH_NONE && pr->phase != DC__PH_RENDER && pr->r != NULL && pr->r->req != NULL;
}

static bool rendering(preq_t *pr)
{
    return pr != NULL && pr->phase == DC__PH_RENDER && pr->render != NULL;
}

/* ---- reading the request ---- */

static int req_header_at(dexcache_req_t *pr, const char *name, size_t name_len, size_t index, const char **value,
                         size_t *len)
{
    if (!live(pr) || name == NULL || value == NULL)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    size_t seen = 0;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len != name_len || strncasecmp(h->name->base, name, name_len) != 0)
            continue;
        if (seen++ < index)
            continue;
        /* h2o's values are not NUL-terminated: a copy that is */
        *value = h2o_strdup(&req->pool, h->value.base, h->value.len).base;
        if (len != NULL)
            *len = h->value.len;
        return DEXCACHE_CONTINUE;
    }
    return DEXCACHE_ERROR;
}

static int req_header(dexcache_req_t *pr, const char *name, size_t name_len, const char **value, size_t *len)
{
    return req_header_at(pr, name, name_len, 0, value, len);
}

static int req_query(dexcache_req_t *pr, const char *name, size_t name_len, const char **value, size_t *len)
{
    if ((!live(pr) && !rendering(pr)) || name == NULL || value == NULL)
        return DEXCACHE_ERROR;
    h2o_mem_pool_t *pool;
    const char *q, *end;
    if (rendering(pr)) {
        pool = &pr->render->pool;
        q = pr->render->query;
        end = q + pr->render->query_len;
    } else {
        h2o_req_t *req = pr->r->req;
        if (req->query_at == SIZE_MAX)
            return DEXCACHE_ERROR;
        pool = &req->pool;
        q = req->path.base + req->query_at + 1;
        end = req->path.base + req->path.len;
    }
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp != NULL ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq != NULL ? eq : pe;
        char *k = h2o_mem_alloc_pool(pool, (size_t)(ke - q) + 1);
        size_t kl = dc_query_decode(k, q, (size_t)(ke - q));
        if (kl == name_len && memcmp(k, name, name_len) == 0) {
            const char *vs = eq != NULL ? eq + 1 : pe;
            char *v = h2o_mem_alloc_pool(pool, (size_t)(pe - vs) + 1);
            size_t vl = dc_query_decode(v, vs, (size_t)(pe - vs));
            *value = v;
            if (len != NULL)
                *len = vl;
            return DEXCACHE_CONTINUE;
        }
        q = pe + 1;
    }
    return DEXCACHE_ERROR;
}

static int req_remove_header(dexcache_req_t *pr, const char *name, size_t name_len)
{
    if (!live(pr) || pr->phase != DC__PH_REQUEST || name == NULL)
        return DEXCACHE_ERROR;
    h2o_headers_t *hs = &pr->r->req->headers;
    for (size_t i = 0; i < hs->size;) {
        const h2o_header_t *h = &hs->entries[i];
        if (h->name->len == name_len && strncasecmp(h->name->base, name, name_len) == 0)
            h2o_delete_header(hs, (ssize_t)i);
        else
            i++;
    }
    return DEXCACHE_CONTINUE;
}

/* Rebuild the URL without parameter `name` (pool memory, like checks.c's normalised target). */
static int req_remove_query(dexcache_req_t *pr, const char *name, size_t name_len)
{
    if (!live(pr) || pr->phase != DC__PH_REQUEST || name == NULL)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    if (req->query_at == SIZE_MAX)
        return DEXCACHE_CONTINUE;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    char *out = h2o_mem_alloc_pool(&req->pool, req->path.len + 1);
    char *k = h2o_mem_alloc_pool(&req->pool, req->path.len + 1);
    memcpy(out, req->path.base, req->query_at);
    size_t o = req->query_at;
    bool removed = false, kept = false;
    dc_query_part_t pt;
    while (dc_query_next(&q, end, &pt)) {
        size_t kl = dc_query_decode(k, pt.start, (size_t)((pt.eq != NULL ? pt.eq : pt.end) - pt.start));
        if (kl == name_len && memcmp(k, name, name_len) == 0) {
            removed = true;
        } else {
            out[o++] = kept ? '&' : '?';
            memcpy(out + o, pt.start, (size_t)(pt.end - pt.start));
            o += (size_t)(pt.end - pt.start);
            kept = true;
        }
    }
    if (!removed)
        return DEXCACHE_CONTINUE;
    dc_request_redact_query(pr->r, name, name_len); /* a credential, as a rule: not in the access log */
    out[o] = '\0';
    req->path = h2o_iovec_init(out, o);
    req->query_at = kept ? req->query_at : SIZE_MAX; /* out[query_at] is the '?' when kept */
    return DEXCACHE_CONTINUE;
}

static int req_path(dexcache_req_t *pr, const char **path, size_t *len)
{
    if (rendering(pr) && path != NULL) {
        *path = pr->render->path;
        if (len != NULL)
            *len = pr->render->path_len;
        return DEXCACHE_CONTINUE;
    }
    if (!live(pr) || path == NULL)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    size_t n = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    *path = h2o_strdup(&req->pool, req->path.base, n).base;
    if (len != NULL)
        *len = n;
    return DEXCACHE_CONTINUE;
}

static int req_query_string(dexcache_req_t *pr, const char **query, size_t *len)
{
    if (rendering(pr) && query != NULL) {
        *query = pr->render->query;
        if (len != NULL)
            *len = pr->render->query_len;
        return DEXCACHE_CONTINUE;
    }
    if (!live(pr) || query == NULL)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    size_t n = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
    *query = h2o_strdup(&req->pool, n ? req->path.base + req->query_at + 1 : "", n).base;
    if (len != NULL)
        *len = n;
    return DEXCACHE_CONTINUE;
}

static int req_method(dexcache_req_t *pr, const char **method, size_t *len)
{
    if (!live(pr) || method == NULL)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    *method = h2o_strdup(&req->pool, req->method.base, req->method.len).base;
    if (len != NULL)
        *len = req->method.len;
    return DEXCACHE_CONTINUE;
}

static const char *req_id(dexcache_req_t *pr)
{
    return pr != NULL && pr->r != NULL ? pr->r->request_id : "";
}

/* The address the limit uses for `by: client` (X-Forwarded-For / CF-Connecting-IP only from a
 * trusted proxy), as the contract says: a plugin keyed on it sees clients, not the proxy. */
static const char *req_client_ip(dexcache_req_t *pr)
{
    if (!live(pr))
        return "";
    return dc_request_real_ip(pr->r);
}

static const char *req_route(dexcache_req_t *pr)
{
    return pr != NULL && pr->r != NULL && pr->r->ctx.route != NULL ? pr->r->ctx.route->prefix : "";
}

/* ---- the answer ---- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c);
}

static bool forbidden_name(const char *n, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive",       "transfer-encoding", "upgrade", "te",
                                        "trailer",    "proxy-connection", "content-length",    NULL};
    for (const char *const *p = names; *p != NULL; p++)
        if (strlen(*p) == len && strncasecmp(*p, n, len) == 0)
            return true;
    return false;
}

static int resp_set_header(dexcache_req_t *pr, const char *name, size_t name_len, const char *value, size_t value_len)
{
    if (!live(pr) || name == NULL || name_len == 0 || (value == NULL && value_len > 0) ||
        (pr->phase != DC__PH_REQUEST && pr->phase != DC__PH_DELIVER))
        return DEXCACHE_ERROR;
    for (size_t i = 0; i < name_len; i++)
        if (!is_tchar((unsigned char)name[i]))
            return DEXCACHE_ERROR;
    for (size_t i = 0; i < value_len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return DEXCACHE_ERROR;
    if (forbidden_name(name, name_len))
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    char *lname = h2o_mem_alloc_pool(&req->pool, name_len + 1);
    for (size_t i = 0; i < name_len; i++)
        lname[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    lname[name_len] = '\0';
    char *v = h2o_strdup(&req->pool, value_len ? value : "", value_len).base;
    h2o_set_header_by_str(&req->pool, &req->res.headers, lname, name_len, 1, v, value_len, 1);
    return DEXCACHE_CONTINUE;
}

static int resp_status(dexcache_req_t *pr)
{
    return live(pr) ? pr->r->req->res.status : 0;
}

static int respond_error(dexcache_req_t *pr, int status, const char *message)
{
    if (rendering(pr)) { /* the host answers for the render (every request waiting on this key) */
        if (pr->render->err_status != 0 || status < 400 || status > 599)
            return DEXCACHE_ERROR;
        const char *m = message != NULL ? message : "";
        pr->render->err_status = status;
        pr->render->err_message = h2o_strdup(&pr->render->pool, m, strlen(m)).base;
        return DEXCACHE_CONTINUE;
    }
    if (!live(pr) || pr->answered || status < 400 || status > 599 ||
        (pr->phase != DC__PH_REQUEST && pr->phase != DC__PH_VIEW) || pr->r->req->_generator != NULL)
        return DEXCACHE_ERROR;
    pr->answered = true; /* before the head goes: on_deliver does not run on a plugin's own answer */
    dc_request_respond_error(pr->r, status, message != NULL ? message : "");
    return DEXCACHE_CONTINUE;
}

/* ---- identity, key ---- */

static int set_client_id(dexcache_req_t *pr, const char *id, size_t id_len, const char *tier)
{
    if (!live(pr) || pr->phase != DC__PH_REQUEST || id == NULL || id_len == 0 || id_len > 128)
        return DEXCACHE_ERROR;
    h2o_req_t *req = pr->r->req;
    pr->r->limit_id = h2o_strdup(&req->pool, id, id_len).base;
    pr->r->limit_id_len = id_len;
    pr->r->limit_tier = tier != NULL ? h2o_strdup(&req->pool, tier, strlen(tier)).base : NULL;
    return DEXCACHE_CONTINUE;
}

static int cache_key_add(dexcache_req_t *pr, const void *bytes, size_t len)
{
    if (!live(pr) || pr->phase != DC__PH_KEY || (bytes == NULL && len > 0))
        return DEXCACHE_ERROR;
    dc_request_key_append(pr->r, pr->cur->cfg->name, bytes, len);
    return DEXCACHE_CONTINUE;
}

/* ---- memory, log ---- */

static void *alloc(dexcache_req_t *pr, size_t len)
{
    bool in_render = rendering(pr);
    DC_ASSERT(pr != NULL && pr->r != NULL && (in_render || pr->r->req != NULL));
    char *p = h2o_mem_alloc_pool(in_render ? &pr->render->pool : &pr->r->req->pool, len + 15);
    return (void *)(((uintptr_t)p + 15) & ~(uintptr_t)15);
}

static void plugin_log(const dexcache_plugin_t *self, dexcache_req_t *pr, int level, const char *fmt, ...)
{
    dc_log_level_t lv = level <= DEXCACHE_LOG_DEBUG  ? DC_LOG_DEBUG
                        : level == DEXCACHE_LOG_INFO ? DC_LOG_INFO
                        : level == DEXCACHE_LOG_WARN ? DC_LOG_WARN
                                                     : DC_LOG_ERROR;
    if (lv < dc_log_get_level())
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *name = self != NULL && self->name != NULL ? self->name : "?";
    if (pr != NULL && pr->r != NULL)
        dc_log(lv, "plugin %s: %s (request %s)", name, msg, pr->r->request_id);
    else
        dc_log(lv, "plugin %s: %s", name, msg);
}

/* ---- suspend / resume ---- */

typedef struct suspend_timer {
    uv_timer_t timer;
    struct dexcache_resume *h; /* NULL once stopped */
} suspend_timer_t;

struct dexcache_resume {
    uint32_t magic;
    dc_msg_t msg;
    dc_list_node_t link; /* in `handles` until the worker runs the resume (or forever, see finish) */
    dc_worker_t *w;      /* the request's worker; NULL once that worker finished */
    dc_request_t *r;     /* a reference, until the resume ran (or the worker finished) */
    preq_t *pr;          /* the request's plugin state while it waits (NULL: not waiting any more) */
    dexcache_resume_cb cb;
    void *arg;
    int rc;
    atomic_bool resumed;
    suspend_timer_t *timer;
};

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static dc_list_t handles = {{&handles._head, &handles._head}};

static void stop_timer(struct dexcache_resume *h)
{
    if (h->timer == NULL)
        return;
    h->timer->h = NULL;
    uv_timer_stop(&h->timer->timer);
    uv_close((uv_handle_t *)&h->timer->timer, (uv_close_cb)free);
    h->timer = NULL;
}

/* The route's deadline passed and the plugin has not resumed: 504. */
static void on_deadline(uv_timer_t *t)
{
    suspend_timer_t *st = (suspend_timer_t *)t;
    struct dexcache_resume *h = st->h;
    if (h == NULL)
        return;
    stop_timer(h);
    preq_t *pr = h->pr;
    if (pr == NULL)
        return;
    h->pr = NULL;
    pr->suspended = NULL;
    dc_request_t *r = h->r;
    if (r->req == NULL)
        return;
    char msg[128];
    snprintf(msg, sizeof(msg), "plugin %s did not answer in time", pr->cur != NULL ? pr->cur->cfg->name : "?");
    pr->answered = true;
    dc_request_respond_error(r, 504, msg);
}

void dc__plugin_suspend_dispose(preq_t *pr)
{
    struct dexcache_resume *h = pr->suspended;
    if (h == NULL)
        return;
    stop_timer(h);
    h->pr = NULL;
    pr->suspended = NULL;
}

/* On the request's worker: the plugin resumed. */
static void on_resume_msg(dc_msg_t *m)
{
    struct dexcache_resume *h = dc_container_of(m, struct dexcache_resume, msg);
    DC_CHECK_MAGIC(h, DC_PLUGIN_RESUME_MAGIC);
    pthread_mutex_lock(&handles_lock);
    dc_list_remove(&h->link);
    pthread_mutex_unlock(&handles_lock);
    stop_timer(h);
    dc_request_t *r = h->r;
    preq_t *pr = h->pr;
    if (pr == NULL || r->req == NULL) { /* the client left, or the deadline answered */
        if (h->cb != NULL)
            h->cb(NULL, h->arg, h->rc);
    } else {
        pr->suspended = NULL;
        int rc = h->rc;
        if (h->cb != NULL) {
            pr->phase = DC__PH_REQUEST;
            rc = h->cb(pr, h->arg, h->rc);
        }
        if (r->req != NULL && dc__plugin_after_hook(pr, rc))
            dc_http_plugins_continue(r);
    }
    h->magic = 0;
    free(h);
    dc_request_unref(r);
}

static dexcache_resume_t *suspend(dexcache_req_t *pr, dexcache_resume_cb cb, void *arg)
{
    if (!live(pr) || pr->phase != DC__PH_REQUEST || pr->suspended != NULL || pr->answered)
        return NULL;
    dc_request_t *r = pr->r;
    struct dexcache_resume *h = dc_calloc(1, sizeof(*h));
    h->magic = DC_PLUGIN_RESUME_MAGIC;
    h->msg.run = on_resume_msg;
    h->w = r->ctx.worker;
    h->r = r;
    dc_request_ref(r);
    h->pr = pr;
    h->cb = cb;
    h->arg = arg;
    h->timer = dc_malloc(sizeof(*h->timer));
    h->timer->h = h;
    uv_timer_init(&r->ctx.worker->loop, &h->timer->timer);
    uint64_t deadline = r->ctx.route->upstream->timeout_ms;
    uv_timer_start(&h->timer->timer, on_deadline, deadline > 0 ? deadline : 1, 0);
    pthread_mutex_lock(&handles_lock);
    dc_list_push_back(&handles, &h->link);
    pthread_mutex_unlock(&handles_lock);
    pr->suspended = h;
    return h;
}

static void resume(dexcache_resume_t *h, int rc)
{
    DC_CHECK_MAGIC(h, DC_PLUGIN_RESUME_MAGIC);
    bool was = atomic_exchange(&h->resumed, true);
    DC_ASSERT(!was); /* a hook resumes exactly once */
    pthread_mutex_lock(&handles_lock);
    h->rc = rc;
    if (h->w != NULL) {
        dc_worker_post(h->w, &h->msg); /* under the lock: the worker cannot finish in between */
        pthread_mutex_unlock(&handles_lock);
        return;
    }
    /* the worker has finished (shutdown): nothing left to answer */
    dc_list_remove(&h->link);
    pthread_mutex_unlock(&handles_lock);
    if (h->cb != NULL)
        h->cb(NULL, h->arg, rc);
    h->magic = 0;
    free(h);
}

void dc_plugin_worker_finish(dc_worker_t *w)
{
    pthread_mutex_lock(&handles_lock);
    for (dc_list_node_t *n = handles._head._next; n != &handles._head; n = n->_next) {
        struct dexcache_resume *h = dc_container_of(n, struct dexcache_resume, link);
        if (h->w != w)
            continue;
        /* a resume posted now would never run; one that comes later runs its callback in place */
        h->w = NULL;
        stop_timer(h);
        h->pr = NULL;
        if (h->r != NULL) {
            dc_request_unref(h->r);
            h->r = NULL;
        }
    }
    pthread_mutex_unlock(&handles_lock);
}

/* ---- config ---- */

const dc_confnode_t *const dc__plugin_empty_conf = (const dc_confnode_t *)&dc__plugin_empty_conf;

static const dc_confnode_t *node_of(const dexcache_conf_t *c)
{
    return (const dc_confnode_t *)c == dc__plugin_empty_conf ? NULL : (const dc_confnode_t *)c;
}

static const dexcache_conf_t *conf_get(const dexcache_conf_t *map, const char *key)
{
    const dc_confnode_t *n = node_of(map);
    return n != NULL && key != NULL ? (const dexcache_conf_t *)dc_confnode_get(n, key) : NULL;
}

static size_t conf_len(const dexcache_conf_t *c)
{
    const dc_confnode_t *n = node_of(c);
    return n != NULL ? dc_confnode_len(n) : 0;
}

static const dexcache_conf_t *conf_at(const dexcache_conf_t *c, size_t i, const char **key)
{
    const dc_confnode_t *n = node_of(c);
    return n != NULL ? (const dexcache_conf_t *)dc_confnode_at(n, i, key) : NULL;
}

static const char *scalar(const dexcache_conf_t *c)
{
    const dc_confnode_t *n = node_of(c);
    return n != NULL ? dc_confnode_value(n) : NULL;
}

static int conf_string(const dexcache_conf_t *c, const char **value, size_t *len)
{
    const char *v = scalar(c);
    if (v == NULL || value == NULL)
        return DEXCACHE_ERROR;
    *value = v;
    if (len != NULL)
        *len = strlen(v);
    return DEXCACHE_CONTINUE;
}

static int conf_int(const dexcache_conf_t *c, int64_t *value)
{
    const char *v = scalar(c);
    return v != NULL && value != NULL && dc__plugin_parse_int(v, value) == 0 ? DEXCACHE_CONTINUE : DEXCACHE_ERROR;
}

static int conf_bool(const dexcache_conf_t *c, int *value)
{
    const char *v = scalar(c);
    if (v == NULL || value == NULL || (strcmp(v, "true") != 0 && strcmp(v, "false") != 0))
        return DEXCACHE_ERROR;
    *value = v[0] == 't';
    return DEXCACHE_CONTINUE;
}

static int conf_duration_ms(const dexcache_conf_t *c, uint64_t *ms)
{
    const char *v = scalar(c);
    return v != NULL && ms != NULL && dc_config_parse_duration_ms(v, ms) == 0 ? DEXCACHE_CONTINUE : DEXCACHE_ERROR;
}

static int conf_size(const dexcache_conf_t *c, uint64_t *bytes)
{
    const char *v = scalar(c);
    return v != NULL && bytes != NULL && dc_config_parse_size(v, bytes) == 0 ? DEXCACHE_CONTINUE : DEXCACHE_ERROR;
}

static int conf_error(const dexcache_conf_t *c, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const dc_confnode_t *n = node_of(c);
    if (n != NULL) {
        dc_confnode_vfail(n, err, errlen, fmt, ap);
    } else if (err != NULL && errlen > 0) {
        vsnprintf(err, errlen, fmt, ap);
    }
    va_end(ap);
    return DEXCACHE_ERROR;
}

static int view_write(dexcache_view_out_t *out, const void *bytes, size_t len)
{
    if (out == NULL || !out->open || (bytes == NULL && len > 0))
        return DEXCACHE_ERROR;
    if (len > 0)
        dc_body_append(&out->body, bytes, len);
    return DEXCACHE_CONTINUE;
}

const dexcache_host_t dc__plugin_host = {
    .size = sizeof(dexcache_host_t),
    .abi_major = DEXCACHE_PLUGIN_ABI_MAJOR,
    .abi_minor = DEXCACHE_PLUGIN_ABI_MINOR,
    .version = DC_VERSION,
    .req_header = req_header,
    .req_header_at = req_header_at,
    .req_query = req_query,
    .req_path = req_path,
    .req_query_string = req_query_string,
    .req_method = req_method,
    .req_id = req_id,
    .req_client_ip = req_client_ip,
    .req_route = req_route,
    .resp_set_header = resp_set_header,
    .resp_status = resp_status,
    .respond_error = respond_error,
    .set_client_id = set_client_id,
    .cache_key_add = cache_key_add,
    .alloc = alloc,
    .log = plugin_log,
    .suspend = suspend,
    .resume = resume,
    .conf_get = conf_get,
    .conf_len = conf_len,
    .conf_at = conf_at,
    .conf_string = conf_string,
    .conf_int = conf_int,
    .conf_bool = conf_bool,
    .conf_duration_ms = conf_duration_ms,
    .conf_size = conf_size,
    .conf_error = conf_error,
    .view_write = view_write,
    .req_remove_header = req_remove_header,
    .req_remove_query = req_remove_query,
    .metric_add = dc__plugin_metric_add,
};
