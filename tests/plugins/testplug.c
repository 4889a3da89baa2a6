/*
 * The test plugin of tests/integration/test_plugin_*.py, built by CMake in several ABI variants
 * (TP_* defines: see CMakeLists.txt). Its config switches each behaviour on:
 *   deny: { header, value }      on_request: 401 (with WWW-Authenticate) unless header == value
 *   key_header: NAME             cache_key: the value of header NAME goes into the key
 *   deliver: { name, value }     on_deliver: sets the header, plus x-plugin-status: <status>
 *   identity_header: NAME        on_request: set_client_id(value of NAME, tier from x-tier)
 *   strip_header: NAME           on_request: req_remove_header(NAME) (ABI 1.1)
 *   suspend: thread | never      on_request suspends; `thread` resumes from a new thread after
 *   delay: 100ms                 `delay` (the callback sets x-resumed, or logs when r is gone)
 *   fail_new: true               instance_new fails, pointing at that key
 *   crash_header: NAME           on_request: a request with header NAME dies of the signal its value
 *                                names (segv, bus, abort, fpe): the crash report's test
 */
#include <dexcache/plugin.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef TP_MAGIC
#define TP_MAGIC DEXCACHE_PLUGIN_MAGIC
#endif
#ifndef TP_MAJOR
#define TP_MAJOR DEXCACHE_PLUGIN_ABI_MAJOR
#endif
#ifdef TP_MINOR_PLUS /* the host's minor + 1, whatever it is */
#define TP_MINOR (DEXCACHE_PLUGIN_ABI_MINOR + 1)
#endif
#ifndef TP_MINOR
#define TP_MINOR DEXCACHE_PLUGIN_ABI_MINOR
#endif
#ifndef TP_SIZE_DELTA
#define TP_SIZE_DELTA 0
#endif
#ifndef TP_NAME
#define TP_NAME "testhooks"
#endif
#ifdef TP_NOSYM
#define TP_SYMBOL not_the_dexcache_plugin
#else
#define TP_SYMBOL dexcache_plugin
#endif

static const dexcache_host_t *H;
extern const dexcache_plugin_t TP_SYMBOL;

typedef struct {
    char *deny_header, *deny_value, *key_header, *deliver_name, *deliver_value, *identity_header, *strip_header;
    char *crash_header;
    int suspend; /* 0 no, 1 thread, 2 never */
    uint64_t delay_ms;
} inst_t;

static const dexcache_option_t deny_opts[] = {
    {"header", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "request header to check"},
    {"value", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "the value it must have"},
    {0},
};
static const dexcache_option_t deliver_opts[] = {
    {"name", DEXCACHE_OPT_STRING, DEXCACHE_OPT_REQUIRED, 0, 0, NULL, "response header name"},
    {"value", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "its value"},
    {0},
};
static const dexcache_option_t options[] = {
    {"deny", DEXCACHE_OPT_MAP, 0, 0, 0, deny_opts, "answer 401 unless a header has a value"},
    {"key_header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "header added to the cache key"},
    {"deliver", DEXCACHE_OPT_MAP, 0, 0, 0, deliver_opts, "response header added on delivery"},
    {"identity_header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "header naming the client for limit.by: plugin"},
    {"strip_header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "request header removed"},
    {"suspend", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "thread or never"},
    {"delay", DEXCACHE_OPT_DURATION, 0, 0, 60000, NULL, "resume delay"},
    {"fail_new", DEXCACHE_OPT_BOOL, 0, 0, 0, NULL, "make instance_new fail"},
    {"crash_header", DEXCACHE_OPT_STRING, 0, 0, 0, NULL, "request header whose value names a signal to die of"},
    {0},
};

static int tp_init(const dexcache_host_t *host, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    H = host;
    return DEXCACHE_CONTINUE;
}

static char *str(const dexcache_conf_t *map, const char *key)
{
    const char *v;
    return H->conf_string(H->conf_get(map, key), &v, NULL) == DEXCACHE_CONTINUE ? strdup(v) : NULL;
}

static void tp_free(void *p)
{
    inst_t *in = p;
    if (in == NULL)
        return;
    free(in->deny_header), free(in->deny_value), free(in->key_header), free(in->deliver_name);
    free(in->deliver_value), free(in->identity_header), free(in->strip_header), free(in->crash_header);
    free(in);
}

static int tp_new(const dexcache_instance_args_t *a, void **out, char *err, size_t errlen)
{
    const dexcache_conf_t *c = a->config;
    int fail = 0;
    if (H->conf_bool(H->conf_get(c, "fail_new"), &fail) == DEXCACHE_CONTINUE && fail)
        return H->conf_error(H->conf_get(c, "fail_new"), err, errlen, "instance %s refused to start", a->name);
    inst_t *in = calloc(1, sizeof(*in));
    const dexcache_conf_t *deny = H->conf_get(c, "deny"), *deliver = H->conf_get(c, "deliver");
    in->deny_header = str(deny, "header");
    in->deny_value = str(deny, "value");
    in->deliver_name = str(deliver, "name");
    in->deliver_value = str(deliver, "value");
    in->key_header = str(c, "key_header");
    in->identity_header = str(c, "identity_header");
    in->strip_header = str(c, "strip_header");
    in->crash_header = str(c, "crash_header");
    char *s = str(c, "suspend");
    in->suspend = s == NULL ? 0 : strcmp(s, "thread") == 0 ? 1 : strcmp(s, "never") == 0 ? 2 : 0;
    free(s);
    in->delay_ms = 100;
    H->conf_duration_ms(H->conf_get(c, "delay"), &in->delay_ms);
    *out = in;
    return DEXCACHE_CONTINUE;
}

typedef struct {
    dexcache_resume_t *h;
    uint64_t delay_ms;
} waker_t;

static void *waker(void *p)
{
    waker_t *w = p;
    struct timespec ts = {(time_t)(w->delay_ms / 1000), (long)(w->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    dexcache_resume_t *h = w->h;
    free(w);
    H->resume(h, DEXCACHE_CONTINUE);
    return NULL;
}

static int on_resumed(dexcache_req_t *r, void *arg, int rc)
{
    (void)arg;
    if (r == NULL) {
        H->log(&TP_SYMBOL, NULL, DEXCACHE_LOG_WARN, "resumed after the request was gone (rc %d)", rc);
        return rc;
    }
    H->resp_set_header(r, "x-resumed", 9, "thread", 6);
    return rc;
}

static int tp_request(dexcache_req_t *r, void *inst, void *ws)
{
    inst_t *in = inst;
    (void)ws;
    const char *v;
    size_t n;
    if (in->crash_header != NULL &&
        H->req_header(r, in->crash_header, strlen(in->crash_header), &v, &n) == DEXCACHE_CONTINUE) {
        if (strcmp(v, "abort") == 0)
            abort();
        raise(strcmp(v, "bus") == 0 ? SIGBUS : strcmp(v, "fpe") == 0 ? SIGFPE : SIGSEGV);
    }
    if (in->identity_header != NULL &&
        H->req_header(r, in->identity_header, strlen(in->identity_header), &v, &n) == DEXCACHE_CONTINUE) {
        const char *tier = NULL;
        size_t tn;
        H->req_header(r, "x-tier", 6, &tier, &tn);
        H->set_client_id(r, v, n, tier);
    }
    if (in->deny_header != NULL) {
        if (H->req_header(r, in->deny_header, strlen(in->deny_header), &v, &n) != DEXCACHE_CONTINUE ||
            strcmp(v, in->deny_value) != 0) {
            H->resp_set_header(r, "WWW-Authenticate", 16, "Bearer error=\"invalid_token\"", 28);
            H->respond_error(r, 401, "missing or bad key");
            return DEXCACHE_ANSWERED;
        }
    }
    if (in->strip_header != NULL) /* after the check: the origin never sees a verified key */
        H->req_remove_header(r, in->strip_header, strlen(in->strip_header));
    if (in->suspend != 0) {
        dexcache_resume_t *h = H->suspend(r, on_resumed, NULL);
        if (h == NULL)
            return DEXCACHE_ERROR;
        if (in->suspend == 1) {
            waker_t *w = malloc(sizeof(*w));
            w->h = h;
            w->delay_ms = in->delay_ms;
            pthread_t t;
            pthread_create(&t, NULL, waker, w);
            pthread_detach(t);
        }
        return DEXCACHE_PENDING;
    }
    return DEXCACHE_CONTINUE;
}

static int tp_key(dexcache_req_t *r, void *inst, void *ws)
{
    inst_t *in = inst;
    (void)ws;
    const char *v;
    size_t n;
    if (in->key_header != NULL && H->req_header(r, in->key_header, strlen(in->key_header), &v, &n) == DEXCACHE_CONTINUE)
        return H->cache_key_add(r, v, n);
    return DEXCACHE_CONTINUE;
}

static int tp_deliver(dexcache_req_t *r, void *inst, void *ws)
{
    inst_t *in = inst;
    (void)ws;
    if (in->deliver_name == NULL)
        return DEXCACHE_CONTINUE;
    const char *val = in->deliver_value != NULL ? in->deliver_value : "";
    H->resp_set_header(r, in->deliver_name, strlen(in->deliver_name), val, strlen(val));
    char st[16];
    int k = 0, s = H->resp_status(r);
    st[k++] = (char)('0' + s / 100), st[k++] = (char)('0' + s / 10 % 10), st[k++] = (char)('0' + s % 10);
    return H->resp_set_header(r, "x-plugin-status", 15, st, 3);
}

static int tp_worker_init(void *inst, unsigned worker, void **ws)
{
    (void)inst, (void)worker;
    *ws = malloc(16); /* freed by worker_fini: LeakSanitizer checks the pairing */
    return DEXCACHE_CONTINUE;
}

static void tp_worker_fini(void *inst, unsigned worker, void *ws)
{
    (void)inst, (void)worker;
    free(ws);
}

DEXCACHE_PLUGIN_EXPORT const dexcache_plugin_t TP_SYMBOL = {
    .magic = TP_MAGIC,
    .abi_major = TP_MAJOR,
    .abi_minor = TP_MINOR,
    .size = sizeof(dexcache_plugin_t) + TP_SIZE_DELTA,
    .name = TP_NAME,
    .version = "0.3.1",
    .description = "dexcache's test plugin",
    .options = options,
    .init = tp_init,
    .instance_new = tp_new,
    .instance_free = tp_free,
    .worker_init = tp_worker_init,
    .worker_fini = tp_worker_fini,
    .on_request = tp_request,
    .cache_key = tp_key,
    .on_deliver = tp_deliver,
};
