#include "admin/cdnpurge.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "upstream/curl_uv.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER_MAX_MS (5 * 60 * 1000ull)
#define RESP_MAX 4096 /* kept of an answer's body: enough for Cloudflare's {"success":..,"errors":[..]} */

enum { RES_OK = 0, RES_RETRY, RES_FAILED, RES_REJECTED, RES_DROPPED, RES_N };
static const char *const result_names[RES_N] = {"ok", "retry", "failed", "rejected", "dropped"};
static uint64_t g_results[RES_N]; /* written on the admin's thread only */

static const char *const kind_fields[DC_CDNPURGE_NKINDS] = {"files", "tags", "prefixes", "purge_everything"};

/* What one CDN call needs, copied from a config snapshot. */
typedef struct cf_target {
    char *api, *zone, *token, *base_url;
    uint32_t retries;
    uint64_t timeout_ms, backoff_ms, window_ms;
} cf_target_t;

typedef struct cf_call {
    dc_curl_xfer_t xfer;
    dc_cdnpurge_t *p;
    dc_list_node_t link; /* in p->calls from creation to finish */
    uv_timer_t timer;    /* the pause before a retry; closed at finish, which frees the call */
    char *zone;          /* for logs */
    char *body;
    struct curl_slist *headers;
    dc_cdnpurge_kind_t kind;
    size_t nvalues;
    uint32_t attempt, retries;
    uint64_t backoff_ms;
    size_t resplen;
    char resp[RESP_MAX];
    char errbuf[CURL_ERROR_SIZE];
} cf_call_t;

struct dc_cdnpurge {
    uv_loop_t *loop;
    dc_curl_loop_t curl;
    uv_timer_t window; /* runs while orders are queued: their call goes out when it fires */
    bool have_target;  /* target is set: orders are queued */
    cf_target_t target;
    char *pending[DC_CDNPURGE_NKINDS][DC_CDNPURGE_MAX_VALUES];
    size_t npending[DC_CDNPURGE_NKINDS];
    dc_list_t calls;
    size_t ncalls;
    unsigned open; /* handles not closed yet (window timer, curl loop, one timer per call) */
    bool closing;
};

static void count(int r)
{
    dc_counter_add(&g_results[r], 1);
}

static void render_metrics(void *ctx, dc_metrics_buf_t *b)
{
    (void)ctx;
    dc_metrics_printf(b, "# HELP dexcache_cdn_purges_total Calls to the CDN's purge API (cdn.purge) by outcome: ok, "
                         "retry (an attempt to be retried), failed (given up after retries), rejected (a final "
                         "answer other than success), dropped (not sent: too many calls outstanding, or shutdown).\n"
                         "# TYPE dexcache_cdn_purges_total counter\n");
    for (int r = 0; r < RES_N; r++)
        dc_metrics_printf(b, "dexcache_cdn_purges_total{result=\"%s\"} %llu\n", result_names[r],
                          (unsigned long long)dc_counter_get(&g_results[r]));
}

bool dc_cdnpurge_configured(const dc_config_t *cfg)
{
    return cfg->cdn_purge_cf.enabled && cfg->cdn_purge_cf.zone != NULL && cfg->cdn_purge_cf.zone[0] != '\0' &&
           cfg->cdn_purge_cf.token != NULL && cfg->cdn_purge_cf.token[0] != '\0';
}

dc_cdnpurge_t *dc_cdnpurge_create(uv_loop_t *loop)
{
    static bool registered;
    if (!registered) {
        registered = true;
        dc_metrics_add_source(render_metrics, NULL);
    }
    dc_cdnpurge_t *p = dc_calloc(1, sizeof(*p));
    p->loop = loop;
    dc_list_init(&p->calls);
    if (dc_curl_loop_init(&p->curl, loop) != 0)
        dc_fatal("cdn purge: cannot create a curl multi handle");
    uv_timer_init(loop, &p->window);
    p->window.data = p;
    p->open = 2;
    return p;
}

static void maybe_free(dc_cdnpurge_t *p)
{
    if (p->closing && p->open == 0)
        free(p);
}

static void target_free(cf_target_t *t)
{
    free(t->api);
    free(t->zone);
    free(t->token);
    free(t->base_url);
    *t = (cf_target_t){0};
}

static bool target_is(const cf_target_t *t, const dc_config_t *cfg)
{
    const struct dc_config_cf_purge *c = &cfg->cdn_purge_cf;
    return strcmp(t->api, c->api) == 0 && strcmp(t->zone, c->zone) == 0 && strcmp(t->token, c->token) == 0 &&
           strcmp(t->base_url, c->base_url) == 0 && t->retries == c->retries && t->timeout_ms == c->timeout_ms &&
           t->backoff_ms == c->backoff_ms && t->window_ms == c->window_ms;
}

/* ---- one call ---- */

static void on_call_timer_closed(uv_handle_t *h)
{
    cf_call_t *c = h->data;
    dc_cdnpurge_t *p = c->p;
    free(c);
    p->open--;
    maybe_free(p);
}

static void call_finish(cf_call_t *c, int result)
{
    dc_cdnpurge_t *p = c->p;
    count(result);
    dc_list_remove(&c->link);
    p->ncalls--;
    if (c->xfer.active)
        dc_curl_loop_remove(&p->curl, &c->xfer);
    curl_easy_cleanup(c->xfer.easy);
    curl_slist_free_all(c->headers);
    free(c->body);
    free(c->zone);
    uv_close((uv_handle_t *)&c->timer, on_call_timer_closed);
}

static size_t on_body(char *ptr, size_t size, size_t n, void *userp)
{
    cf_call_t *c = userp;
    size_t len = size * n, room = sizeof(c->resp) - 1 - c->resplen;
    size_t take = len < room ? len : room;
    memcpy(c->resp + c->resplen, ptr, take);
    c->resplen += take;
    c->resp[c->resplen] = '\0';
    return len;
}

static void call_start(cf_call_t *c);

static void on_retry_timer(uv_timer_t *t)
{
    call_start(t->data);
}

/* An answer that says it failed although its status is 2xx ({"success":false}). */
static bool says_failure(const cf_call_t *c)
{
    cJSON *doc = cJSON_ParseWithLength(c->resp, c->resplen);
    bool failed = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "success"));
    cJSON_Delete(doc);
    return failed;
}

static void on_call_done(dc_curl_xfer_t *x, CURLcode rc)
{
    cf_call_t *c = x->data;
    dc_cdnpurge_t *p = c->p;
    const char *what = kind_fields[c->kind];
    if (p->closing) {
        dc_log_warn("cdn purge: cloudflare zone %s: %zu %s dropped (shutting down)", c->zone, c->nvalues, what);
        call_finish(c, RES_DROPPED);
        return;
    }
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    char why[CURL_ERROR_SIZE + 32];
    if (rc != CURLE_OK)
        snprintf(why, sizeof(why), "%s", c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(rc));
    else
        snprintf(why, sizeof(why), "HTTP %ld", status);
    bool transient = rc != CURLE_OK || status >= 500 || status == 429;
    if (rc == CURLE_OK && status >= 200 && status < 300 && !says_failure(c)) {
        dc_log_info("cdn purge: cloudflare zone %s: %zu %s purged (attempt %u)", c->zone, c->nvalues, what, c->attempt);
        call_finish(c, RES_OK);
        return;
    }
    if (transient && c->attempt <= c->retries) {
        uint64_t delay = c->backoff_ms << (c->attempt - 1 < 16 ? c->attempt - 1 : 16);
        curl_off_t ra = 0;
        if (rc == CURLE_OK && curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
            delay = (uint64_t)ra * 1000;
        if (delay > RETRY_AFTER_MAX_MS)
            delay = RETRY_AFTER_MAX_MS;
        dc_log_warn("cdn purge: cloudflare zone %s: %zu %s: %s (attempt %u of %u), retrying in %llu ms", c->zone,
                    c->nvalues, what, why, c->attempt, c->retries + 1, (unsigned long long)delay);
        count(RES_RETRY);
        uv_timer_start(&c->timer, on_retry_timer, delay, 0);
        return;
    }
    if (transient) {
        dc_log_error("cdn purge: cloudflare zone %s: %zu %s not purged: %s (gave up after %u attempts)", c->zone,
                     c->nvalues, what, why, c->attempt);
        call_finish(c, RES_FAILED);
    } else {
        dc_log_error("cdn purge: cloudflare zone %s: %zu %s not purged: %s, answer %.300s", c->zone, c->nvalues, what,
                     why, c->resp);
        call_finish(c, RES_REJECTED);
    }
}

static void call_start(cf_call_t *c)
{
    c->attempt++;
    c->resplen = 0;
    c->resp[0] = '\0';
    c->errbuf[0] = '\0';
    if (dc_curl_loop_add(&c->p->curl, &c->xfer) != 0) {
        dc_log_error("cdn purge: cloudflare zone %s: %zu %s dropped (cannot start a transfer)", c->zone, c->nvalues,
                     kind_fields[c->kind]);
        call_finish(c, RES_DROPPED);
    }
}

/* Send the queued values of `kind` (taken over) as one call. */
static void send_kind(dc_cdnpurge_t *p, dc_cdnpurge_kind_t kind)
{
    size_t n = p->npending[kind];
    p->npending[kind] = 0;
    const cf_target_t *t = &p->target;
    if (p->ncalls >= DC_CDNPURGE_MAX_CALLS) {
        dc_log_error("cdn purge: cloudflare zone %s: %zu %s dropped (%d calls outstanding)", t->zone, n,
                     kind_fields[kind], DC_CDNPURGE_MAX_CALLS);
        count(RES_DROPPED);
        for (size_t i = 0; i < n; i++)
            free(p->pending[kind][i]);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    if (kind == DC_CDNPURGE_EVERYTHING) {
        cJSON_AddTrueToObject(doc, "purge_everything");
    } else {
        cJSON *arr = cJSON_AddArrayToObject(doc, kind_fields[kind]);
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(p->pending[kind][i]));
    }
    for (size_t i = 0; i < n; i++)
        free(p->pending[kind][i]);

    cf_call_t *c = dc_calloc(1, sizeof(*c));
    c->p = p;
    c->kind = kind;
    c->nvalues = n;
    c->retries = t->retries;
    c->backoff_ms = t->backoff_ms;
    c->zone = dc_strdup(t->zone);
    c->body = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    char *auth = dc_asprintf("Authorization: Bearer %s", t->token);
    c->headers = curl_slist_append(NULL, auth);
    free(auth);
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Expect:");
    char *url = dc_asprintf("%s/zones/%s/purge_cache", t->api, t->zone);
    CURL *e = curl_easy_init();
    if (e == NULL || c->headers == NULL)
        dc_fatal("cdn purge: out of memory");
    curl_easy_setopt(e, CURLOPT_URL, url); /* curl copies strings it is given */
    free(url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "dexcache/" DC_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    c->xfer.easy = e;
    c->xfer.cb = on_call_done;
    c->xfer.data = c;
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    p->open++;
    dc_list_push_back(&p->calls, &c->link);
    p->ncalls++;
    call_start(c);
}

/* Send everything queued now (one call per kind) and forget the target. */
static void flush(dc_cdnpurge_t *p)
{
    uv_timer_stop(&p->window);
    if (!p->have_target)
        return;
    for (int k = 0; k < DC_CDNPURGE_NKINDS; k++)
        if (p->npending[k] > 0)
            send_kind(p, (dc_cdnpurge_kind_t)k);
    target_free(&p->target);
    p->have_target = false;
}

static void on_window(uv_timer_t *t)
{
    flush(t->data);
}

/* The value sent to Cloudflare for an order, or NULL when it cannot be forwarded. */
static char *cdn_value(const struct dc_config_cf_purge *c, dc_cdnpurge_kind_t kind, const char *value)
{
    switch (kind) {
    case DC_CDNPURGE_FILES:
        return value[0] == '/' ? dc_asprintf("%s%s", c->base_url, value) : NULL;
    case DC_CDNPURGE_PREFIXES:
        return value[0] == '/' ? dc_asprintf("%s%s", strstr(c->base_url, "://") + 3, value) : NULL;
    case DC_CDNPURGE_TAGS:
        return value[0] != '\0' ? dc_strdup(value) : NULL;
    case DC_CDNPURGE_EVERYTHING:
    case DC_CDNPURGE_NKINDS:
        break;
    }
    return dc_strdup("");
}

bool dc_cdnpurge_submit(dc_cdnpurge_t *p, const dc_config_t *cfg, dc_cdnpurge_kind_t kind, const char *value)
{
    DC_ASSERT(kind < DC_CDNPURGE_NKINDS);
    if (!dc_cdnpurge_configured(cfg))
        return false;
    const struct dc_config_cf_purge *c = &cfg->cdn_purge_cf;
    if (p->closing) {
        count(RES_DROPPED);
        return false;
    }
    char *v = cdn_value(c, kind, value);
    if (v == NULL)
        return false;
    if (p->have_target && !target_is(&p->target, cfg))
        flush(p); /* the settings changed (reload): what is queued goes to the CDN it was queued for */
    if (!p->have_target) {
        p->target = (cf_target_t){dc_strdup(c->api), dc_strdup(c->zone), dc_strdup(c->token), dc_strdup(c->base_url),
                                  c->retries,        c->timeout_ms,      c->backoff_ms,       c->window_ms};
        p->have_target = true;
    }
    for (size_t i = 0; i < p->npending[kind]; i++)
        if (strcmp(p->pending[kind][i], v) == 0) { /* already queued */
            free(v);
            return true;
        }
    p->pending[kind][p->npending[kind]++] = v;
    if (p->npending[kind] == DC_CDNPURGE_MAX_VALUES || kind == DC_CDNPURGE_EVERYTHING)
        send_kind(p, kind); /* a full call goes now; the window keeps running for the other kinds */
    if (!uv_is_active((uv_handle_t *)&p->window))
        uv_timer_start(&p->window, on_window, p->target.window_ms, 0);
    return true;
}

static void on_handle_closed(uv_handle_t *h)
{
    dc_cdnpurge_t *p = h->data;
    p->open--;
    maybe_free(p);
}

static void on_curl_closed(dc_curl_loop_t *cl)
{
    dc_cdnpurge_t *p = dc_container_of(cl, dc_cdnpurge_t, curl);
    p->open--;
    maybe_free(p);
}

void dc_cdnpurge_close(dc_cdnpurge_t *p)
{
    if (p == NULL)
        return;
    DC_ASSERT(!p->closing);
    p->closing = true;
    for (int k = 0; k < DC_CDNPURGE_NKINDS; k++) {
        if (p->npending[k] == 0)
            continue;
        dc_log_warn("cdn purge: cloudflare zone %s: %zu %s dropped (shutting down)", p->target.zone, p->npending[k],
                    kind_fields[k]);
        count(RES_DROPPED);
        for (size_t i = 0; i < p->npending[k]; i++)
            free(p->pending[k][i]);
        p->npending[k] = 0;
    }
    target_free(&p->target);
    p->have_target = false;
    /* calls waiting to be retried end here; calls in flight end in their done callback (aborted) */
    dc_list_node_t *n, *tmp;
    dc_list_foreach_safe (n, tmp, &p->calls) {
        cf_call_t *c = dc_container_of(n, cf_call_t, link);
        if (!c->xfer.active) {
            dc_log_warn("cdn purge: cloudflare zone %s: %zu %s dropped (shutting down before a retry)", c->zone,
                        c->nvalues, kind_fields[c->kind]);
            call_finish(c, RES_DROPPED);
        }
    }
    uv_close((uv_handle_t *)&p->window, on_handle_closed);
    dc_curl_loop_close(&p->curl, on_curl_closed);
}
