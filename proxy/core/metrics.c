#include "core/metrics.h"
#include "core/error.h"
#include "core/procstat.h"
#include "core/time.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dc_metrics_process_t dc_metrics_process;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static char *labels[2][DC_METRICS_MAX_IDS]; /* [kind][id]; id 0 = "other" */
static unsigned nlabels[2] = {1, 1};
static dc_worker_metrics_t *workers[DC_METRICS_MAX_WORKERS];
static void (*cache_source)(void *ctx, dc_metrics_cache_view_t *out);
static void *cache_source_ctx;

void dc_metrics_set_cache_source(void (*fn)(void *ctx, dc_metrics_cache_view_t *out), void *ctx)
{
    cache_source = fn;
    cache_source_ctx = ctx;
}
static unsigned nworkers;

/* histogram bucket upper bounds, microseconds */
static const uint64_t latency_bounds_us[DC_METRICS_LATENCY_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};

/* client request histogram bounds, microseconds (cache hits answer in well under a millisecond) */
static const uint64_t request_bounds_us[DC_METRICS_REQUEST_BUCKETS] = {
    100,    250,    500,    1000,    2500,    5000,    10000,    25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};

static const char *const cache_status_names[DC_METRICS_CS_COUNT] = {"none", "hit", "miss", "stale", "bypass", "stream"};

dc_metrics_cache_status_t dc_metrics_cache_status_of(const char *x_cache)
{
    static const char *const upper[DC_METRICS_CS_COUNT] = {"-", "HIT", "MISS", "STALE", "BYPASS", "STREAM"};
    if (x_cache != NULL)
        for (unsigned i = 1; i < DC_METRICS_CS_COUNT; i++)
            if (strcmp(x_cache, upper[i]) == 0)
                return (dc_metrics_cache_status_t)i;
    return DC_METRICS_CS_NONE;
}

unsigned dc_metrics_label_id(dc_metrics_kind_t kind, const char *value)
{
    pthread_mutex_lock(&registry_lock);
    unsigned id = 0;
    for (unsigned i = 1; i < nlabels[kind]; i++) {
        if (strcmp(labels[kind][i], value) == 0) {
            id = i;
            goto out;
        }
    }
    if (nlabels[kind] < DC_METRICS_MAX_IDS) {
        id = nlabels[kind]++;
        labels[kind][id] = dc_strdup(value);
    }
out:
    pthread_mutex_unlock(&registry_lock);
    return id;
}

void dc_metrics_register_worker(dc_worker_metrics_t *m)
{
    pthread_mutex_lock(&registry_lock);
    DC_ASSERT(nworkers < DC_METRICS_MAX_WORKERS);
    workers[nworkers++] = m;
    pthread_mutex_unlock(&registry_lock);
}

/* One observation in an upstream histogram (buckets: latency_bounds_us, then +Inf) and its sum. */
static void observe_upstream(uint64_t buckets[DC_METRICS_LATENCY_BUCKETS + 1], uint64_t *sum_us, uint64_t us)
{
    unsigned b = 0;
    while (b < DC_METRICS_LATENCY_BUCKETS && us > latency_bounds_us[b])
        b++;
    dc_counter_add(&buckets[b], 1);
    dc_counter_add(sum_us, us);
}

void dc_metrics_observe_upstream_latency(dc_worker_metrics_t *m, unsigned id, uint64_t us)
{
    observe_upstream(m->upstream_latency[id], &m->upstream_latency_sum_us[id], us);
}

void dc_metrics_observe_upstream_duration(dc_worker_metrics_t *m, unsigned id, uint64_t us)
{
    observe_upstream(m->upstream_duration[id], &m->upstream_duration_sum_us[id], us);
}

void dc_metrics_observe_request(dc_worker_metrics_t *m, unsigned route_id, dc_metrics_cache_status_t cs, uint64_t us)
{
    DC_ASSERT(route_id < DC_METRICS_MAX_IDS && (unsigned)cs < DC_METRICS_CS_COUNT);
    unsigned b = 0;
    while (b < DC_METRICS_REQUEST_BUCKETS && us > request_bounds_us[b])
        b++;
    dc_counter_add(&m->request_duration[route_id][cs][b], 1);
    dc_counter_add(&m->request_duration_sum_us[route_id][cs], us);
}

uint64_t dc_metrics_sum_connections_open(void)
{
    uint64_t acc = 0, closed = 0;
    pthread_mutex_lock(&registry_lock);
    for (unsigned w = 0; w < nworkers; w++) {
        acc += dc_counter_get(&workers[w]->connections_accepted);
        closed += dc_counter_get(&workers[w]->connections_closed);
    }
    pthread_mutex_unlock(&registry_lock);
    return acc >= closed ? acc - closed : 0;
}

uint64_t dc_metrics_sum_requests_active(void)
{
    uint64_t n = 0;
    pthread_mutex_lock(&registry_lock);
    for (unsigned w = 0; w < nworkers; w++)
        n += dc_counter_get(&workers[w]->requests_active);
    pthread_mutex_unlock(&registry_lock);
    return n;
}

struct dc_metrics_buf {
    char *p;
    size_t len, cap;
};
typedef dc_metrics_buf_t outbuf_t;

/* The modules' sources (dc_metrics_add_source), rendered after the per-worker families. */
#define MAX_SOURCES 16
static struct {
    void (*render)(void *ctx, dc_metrics_buf_t *b);
    void *ctx;
} sources[MAX_SOURCES];
static unsigned nsources;

void dc_metrics_add_source(void (*render)(void *ctx, dc_metrics_buf_t *b), void *ctx)
{
    pthread_mutex_lock(&registry_lock);
    DC_ASSERT(nsources < MAX_SOURCES);
    sources[nsources].render = render;
    sources[nsources].ctx = ctx;
    nsources++;
    pthread_mutex_unlock(&registry_lock);
}

static void vout(outbuf_t *b, const char *fmt, va_list ap0)
{
    for (;;) {
        va_list ap;
        va_copy(ap, ap0);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        DC_ASSERT(n >= 0);
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n;
        b->p = dc_realloc(b->p, b->cap);
    }
}

static void out(outbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(outbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vout(b, fmt, ap);
    va_end(ap);
}

void dc_metrics_printf(dc_metrics_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vout(b, fmt, ap);
    va_end(ap);
}

static const char *const class_names[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

#define SUM(field)                                                                                                     \
    ({                                                                                                                 \
        uint64_t s_ = 0;                                                                                               \
        for (unsigned w_ = 0; w_ < nworkers; w_++)                                                                     \
            s_ += dc_counter_get(&workers[w_]->field);                                                                 \
        s_;                                                                                                            \
    })

/* One counter family labelled by route or upstream, read from a per-label array at `offset` in
 * every worker's block. Caller holds registry_lock. */
static void label_counter_family(outbuf_t *b, dc_metrics_kind_t kind, const char *name, const char *help, size_t offset)
{
    const char *label = kind == DC_METRICS_ROUTE ? "route" : "upstream";
    out(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (unsigned id = 1; id < nlabels[kind]; id++) {
        uint64_t sum = 0;
        for (unsigned w = 0; w < nworkers; w++)
            sum += dc_counter_get((const uint64_t *)((const char *)workers[w] + offset) + id);
        out(b, "%s{%s=\"%s\"} %llu\n", name, label, labels[kind][id], (unsigned long long)sum);
    }
}

/* Client requests by route and status class, and requests the checks refused. Caller holds registry_lock. */
static void render_requests(outbuf_t *b)
{
    out(b, "# HELP dexcache_requests_total Client requests by route prefix and status class.\n"
           "# TYPE dexcache_requests_total counter\n");
    for (unsigned id = 0; id < nlabels[DC_METRICS_ROUTE]; id++) {
        for (unsigned c = 0; c < 6; c++) {
            uint64_t v = SUM(requests[id][c]);
            if (v == 0 && id == 0)
                continue;
            out(b, "dexcache_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
                id == 0 ? "none" : labels[DC_METRICS_ROUTE][id], class_names[c], (unsigned long long)v);
        }
    }
    out(b, "# HELP dexcache_rejected_requests_total Requests refused by the request checks, by status class.\n"
           "# TYPE dexcache_rejected_requests_total counter\n");
    for (unsigned c = 4; c < 6; c++)
        out(b, "dexcache_rejected_requests_total{code=\"%s\"} %llu\n", class_names[c],
            (unsigned long long)SUM(rejected[c]));
}

/* Upstream attempts by outcome; attempts, retries and timeouts per upstream. Caller holds registry_lock. */
static void render_upstream_counters(outbuf_t *b)
{
    out(b, "# HELP dexcache_upstream_responses_total Upstream attempts by outcome (error = no response).\n"
           "# TYPE dexcache_upstream_responses_total counter\n");
    for (unsigned id = 1; id < nlabels[DC_METRICS_UPSTREAM]; id++) {
        const char *u = labels[DC_METRICS_UPSTREAM][id];
        for (unsigned c = 0; c < 6; c++)
            out(b, "dexcache_upstream_responses_total{upstream=\"%s\",code=\"%s\"} %llu\n", u,
                c == 0 ? "error" : class_names[c], (unsigned long long)SUM(upstream_responses[id][c]));
    }
    label_counter_family(b, DC_METRICS_UPSTREAM, "dexcache_upstream_requests_total",
                         "Upstream attempts (each retry counts).", offsetof(dc_worker_metrics_t, upstream_attempts));
    label_counter_family(b, DC_METRICS_UPSTREAM, "dexcache_upstream_retries_total", "Retried upstream attempts.",
                         offsetof(dc_worker_metrics_t, upstream_retries));
    label_counter_family(b, DC_METRICS_UPSTREAM, "dexcache_upstream_timeouts_total",
                         "Upstream fetches that hit their deadline.", offsetof(dc_worker_metrics_t, upstream_timeouts));
}

/* One histogram series summed over the workers: cumulative _bucket lines from the array of nbounds + 1
 * counts at `buckets_offset` in every worker's block (the last one above every bound), _sum from the
 * microseconds at `sum_offset`, _count (= the +Inf bucket). `labels_text` is the series' labels
 * without braces. Caller holds registry_lock. */
static void histogram_series(outbuf_t *b, const char *name, const char *labels_text, const uint64_t *bounds_us,
                             unsigned nbounds, size_t buckets_offset, size_t sum_offset)
{
    uint64_t cum = 0;
    for (unsigned k = 0; k <= nbounds; k++) {
        for (unsigned w = 0; w < nworkers; w++)
            cum += dc_counter_get((const uint64_t *)((const char *)workers[w] + buckets_offset) + k);
        if (k < nbounds)
            out(b, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels_text, (double)bounds_us[k] / 1e6,
                (unsigned long long)cum);
        else
            out(b, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels_text, (unsigned long long)cum);
    }
    uint64_t sum = 0;
    for (unsigned w = 0; w < nworkers; w++)
        sum += dc_counter_get((const uint64_t *)((const char *)workers[w] + sum_offset));
    out(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels_text, (double)sum / 1e6, name, labels_text,
        (unsigned long long)cum);
}

/* The per-upstream histograms: head latency (start of a fetch to the response head) and the whole
 * exchange. Caller holds registry_lock. */
static void render_upstream_latency(outbuf_t *b)
{
    out(b, "# HELP dexcache_upstream_latency_seconds Time from the start of a fetch to the response head.\n"
           "# TYPE dexcache_upstream_latency_seconds histogram\n");
    for (unsigned id = 1; id < nlabels[DC_METRICS_UPSTREAM]; id++) {
        char lt[300];
        snprintf(lt, sizeof(lt), "upstream=\"%s\"", labels[DC_METRICS_UPSTREAM][id]);
        histogram_series(b, "dexcache_upstream_latency_seconds", lt, latency_bounds_us, DC_METRICS_LATENCY_BUCKETS,
                         offsetof(dc_worker_metrics_t, upstream_latency[id]),
                         offsetof(dc_worker_metrics_t, upstream_latency_sum_us[id]));
    }
    out(b, "# HELP dexcache_upstream_duration_seconds Whole upstream exchange: start of a fetch (budget wait "
           "included) to its last body byte or its error.\n"
           "# TYPE dexcache_upstream_duration_seconds histogram\n");
    for (unsigned id = 1; id < nlabels[DC_METRICS_UPSTREAM]; id++) {
        char lt[300];
        snprintf(lt, sizeof(lt), "upstream=\"%s\"", labels[DC_METRICS_UPSTREAM][id]);
        histogram_series(b, "dexcache_upstream_duration_seconds", lt, latency_bounds_us, DC_METRICS_LATENCY_BUCKETS,
                         offsetof(dc_worker_metrics_t, upstream_duration[id]),
                         offsetof(dc_worker_metrics_t, upstream_duration_sum_us[id]));
    }
}

/* Client request durations by route and cache status: the series that have seen a request (a
 * series never goes away once shown, the counts only grow). Caller holds registry_lock. */
static void render_request_duration(outbuf_t *b)
{
    out(b, "# HELP dexcache_request_duration_seconds Client requests from their arrival to their disposal by h2o "
           "(the last response byte written, or the client gone), by route prefix and cache status (X-Cache "
           "in lowercase; none = answered by dexcache itself).\n"
           "# TYPE dexcache_request_duration_seconds histogram\n");
    for (unsigned id = 0; id < nlabels[DC_METRICS_ROUTE]; id++) {
        for (unsigned cs = 0; cs < DC_METRICS_CS_COUNT; cs++) {
            uint64_t n = 0;
            for (unsigned k = 0; k <= DC_METRICS_REQUEST_BUCKETS; k++)
                n += SUM(request_duration[id][cs][k]);
            if (n == 0)
                continue;
            char lt[300];
            snprintf(lt, sizeof(lt), "route=\"%s\",cache_status=\"%s\"",
                     id == 0 ? "none" : labels[DC_METRICS_ROUTE][id], cache_status_names[cs]);
            histogram_series(b, "dexcache_request_duration_seconds", lt, request_bounds_us, DC_METRICS_REQUEST_BUCKETS,
                             offsetof(dc_worker_metrics_t, request_duration[id][cs]),
                             offsetof(dc_worker_metrics_t, request_duration_sum_us[id][cs]));
        }
    }
}

/* The per-route cache and limit counters. Caller holds registry_lock. */
static void render_cache_counters(outbuf_t *b)
{
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_hits_total", "Answers from a fresh cached entry.",
                         offsetof(dc_worker_metrics_t, cache_hits));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_misses_total",
                         "Cacheable requests that went to the origin.", offsetof(dc_worker_metrics_t, cache_misses));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_stale_total",
                         "Answers from a stale copy (revalidating or origin failing).",
                         offsetof(dc_worker_metrics_t, cache_stale));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_collapsed_total",
                         "Requests served by another request's fetch.", offsetof(dc_worker_metrics_t, cache_collapsed));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_stores_total", "Entries stored.",
                         offsetof(dc_worker_metrics_t, cache_stores));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_bypass_total",
                         "Requests not cacheable (method, rule, auth, hit-for-pass).",
                         offsetof(dc_worker_metrics_t, cache_bypass));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_cache_refreshes_total",
                         "Background refreshes started (stale-while-revalidate).",
                         offsetof(dc_worker_metrics_t, cache_refreshes));
    label_counter_family(b, DC_METRICS_ROUTE, "dexcache_limited_total", "Requests refused by the per-client limit.",
                         offsetof(dc_worker_metrics_t, limited));
}

/* The cache owner's gauges and totals (through the registered cache source), when there is one. Caller holds
 * registry_lock. */
static void render_cache_gauges(outbuf_t *b)
{
    if (cache_source != NULL) {
        dc_metrics_cache_view_t cv;
        cache_source(cache_source_ctx, &cv);
        out(b,
            "# HELP dexcache_cache_entries Entries in the cache.\n# TYPE dexcache_cache_entries gauge\n"
            "dexcache_cache_entries %llu\n"
            "# HELP dexcache_cache_bytes Bytes charged to the cache.\n# TYPE dexcache_cache_bytes gauge\n"
            "dexcache_cache_bytes %llu\n"
            "# HELP dexcache_cache_memory_bytes The cache budget.\n# TYPE dexcache_cache_memory_bytes gauge\n"
            "dexcache_cache_memory_bytes %llu\n"
            "# HELP dexcache_cache_evictions_total Entries evicted to stay within the budget.\n"
            "# TYPE dexcache_cache_evictions_total counter\ndexcache_cache_evictions_total %llu\n"
            "# HELP dexcache_cache_expired_total Entries dropped after their last stale window.\n"
            "# TYPE dexcache_cache_expired_total counter\ndexcache_cache_expired_total %llu\n"
            "# HELP dexcache_cache_purged_total Entries removed by purge.\n"
            "# TYPE dexcache_cache_purged_total counter\ndexcache_cache_purged_total %llu\n"
            "# HELP dexcache_cache_too_big_total Answers too large to store (cache.max_object).\n"
            "# TYPE dexcache_cache_too_big_total counter\ndexcache_cache_too_big_total %llu\n"
            "# HELP dexcache_inflight_fetches Keys being fetched now (collapsing).\n"
            "# TYPE dexcache_inflight_fetches gauge\ndexcache_inflight_fetches %llu\n",
            (unsigned long long)cv.entries, (unsigned long long)cv.bytes, (unsigned long long)cv.memory,
            (unsigned long long)cv.evictions, (unsigned long long)cv.expired, (unsigned long long)cv.purged,
            (unsigned long long)cv.too_big, (unsigned long long)cv.inflight);
    }
}

/* Client connections, requests in flight and bytes sent. Caller holds registry_lock. */
static void render_connections(outbuf_t *b)
{
    uint64_t acc = SUM(connections_accepted), closed = SUM(connections_closed);
    out(b,
        "# HELP dexcache_connections_open Client connections currently open.\n"
        "# TYPE dexcache_connections_open gauge\n"
        "dexcache_connections_open %llu\n"
        "# HELP dexcache_connections_total Client connections accepted.\n"
        "# TYPE dexcache_connections_total counter\n"
        "dexcache_connections_total %llu\n"
        "# HELP dexcache_requests_in_flight Requests being handled now.\n"
        "# TYPE dexcache_requests_in_flight gauge\n"
        "dexcache_requests_in_flight %llu\n"
        "# HELP dexcache_response_bytes_total Response body bytes sent to clients.\n"
        "# TYPE dexcache_response_bytes_total counter\n"
        "dexcache_response_bytes_total %llu\n",
        (unsigned long long)(acc >= closed ? acc - closed : 0), (unsigned long long)acc,
        (unsigned long long)SUM(requests_active), (unsigned long long)SUM(bytes_out));
}

/* The HTTP/2 guard's resets, closes and dropped deferrals. Caller holds registry_lock. */
static void render_h2_guard(outbuf_t *b)
{
    out(b,
        "# HELP dexcache_h2_early_resets_total HTTP/2 streams the client reset before their answer.\n"
        "# TYPE dexcache_h2_early_resets_total counter\n"
        "dexcache_h2_early_resets_total %llu\n"
        "# HELP dexcache_h2_abuse_closed_total HTTP/2 connections closed for abuse (GOAWAY ENHANCE_YOUR_CALM or "
        "abort).\n"
        "# TYPE dexcache_h2_abuse_closed_total counter\n"
        "dexcache_h2_abuse_closed_total{reason=\"resets\"} %llu\n"
        "dexcache_h2_abuse_closed_total{reason=\"stalled\"} %llu\n"
        "# HELP dexcache_h2_deferred_dropped_total HTTP/2 requests reset before their deferred upstream start.\n"
        "# TYPE dexcache_h2_deferred_dropped_total counter\n"
        "dexcache_h2_deferred_dropped_total %llu\n",
        (unsigned long long)SUM(h2_early_resets), (unsigned long long)SUM(h2_abuse_closed[0]),
        (unsigned long long)SUM(h2_abuse_closed[1]), (unsigned long long)SUM(h2_deferred_dropped));
}

/* Process-wide counters (reloads, key quarantines, late budget slots) and uptime. Caller holds registry_lock. */
static void render_process(outbuf_t *b)
{
    out(b,
        "# HELP dexcache_config_reloads_total Successful config reloads.\n"
        "# TYPE dexcache_config_reloads_total counter\n"
        "dexcache_config_reloads_total %llu\n"
        "# HELP dexcache_config_reload_failures_total Rejected config reloads.\n"
        "# TYPE dexcache_config_reload_failures_total counter\n"
        "dexcache_config_reload_failures_total %llu\n"
        "# HELP dexcache_upstream_key_quarantines_total API keys set aside after 401/403.\n"
        "# TYPE dexcache_upstream_key_quarantines_total counter\n"
        "dexcache_upstream_key_quarantines_total %llu\n"
        "# HELP dexcache_upstream_budget_late_slots_total Budget slots given up because the request would "
        "have left too late after its slot (CPU contention); it reserved again.\n"
        "# TYPE dexcache_upstream_budget_late_slots_total counter\n"
        "dexcache_upstream_budget_late_slots_total %llu\n"
        "# HELP dexcache_uptime_seconds Seconds since start.\n"
        "# TYPE dexcache_uptime_seconds gauge\n"
        "dexcache_uptime_seconds %.3f\n",
        (unsigned long long)__atomic_load_n(&dc_metrics_process.reloads, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&dc_metrics_process.reload_failures, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&dc_metrics_process.key_quarantines, __ATOMIC_RELAXED),
        (unsigned long long)__atomic_load_n(&dc_metrics_process.budget_late_rereserves, __ATOMIC_RELAXED),
        (double)(dc_now_wall_ms() - dc_metrics_process.start_wall_ms) / 1000.0);
}

/* Prometheus's standard process_* families (client libraries' names and units). Caller holds registry_lock. */
static void render_procstat(outbuf_t *b)
{
    dc_procstat_t ps;
    dc_procstat_read(&ps);
    if (ps.has_stat)
        out(b,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
            "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
            "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
            ps.cpu_seconds, (unsigned long long)ps.resident_bytes, (unsigned long long)ps.virtual_bytes);
    if (ps.has_fds)
        out(b,
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\nprocess_open_fds %llu\n",
            (unsigned long long)ps.open_fds);
    if (ps.has_max_fds)
        out(b,
            "# HELP process_max_fds Maximum number of open file descriptors.\n"
            "# TYPE process_max_fds gauge\nprocess_max_fds %.0f\n",
            ps.max_fds == UINT64_MAX ? 1.8446744073709552e19 : (double)ps.max_fds);
    out(b,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
        ps.has_start ? ps.start_time_s : (double)dc_metrics_process.start_wall_ms / 1000.0);
}

/* Families in a fixed order (scrapers and tests read them by name; the order is kept for diffs). */
char *dc_metrics_render(size_t *len)
{
    outbuf_t b = {dc_malloc(16384), 0, 16384};
    b.p[0] = '\0';
    pthread_mutex_lock(&registry_lock);
    render_requests(&b);
    render_upstream_counters(&b);
    render_upstream_latency(&b);
    render_request_duration(&b);
    render_cache_counters(&b);
    render_cache_gauges(&b);
    render_connections(&b);
    render_h2_guard(&b);
    for (unsigned i = 0; i < nsources; i++)
        sources[i].render(sources[i].ctx, &b);
    render_process(&b);
    render_procstat(&b);
    pthread_mutex_unlock(&registry_lock);
    *len = b.len;
    return b.p;
}
