/*
 * Metrics: per-worker counters (written only by their worker, without locks or atomic RMW), summed
 * when /metrics is scraped. Label values (route prefixes, upstream names) are registered once per
 * config snapshot in a process-wide append-only registry and referred to by small integer ids, so
 * counters survive reloads.
 */
#ifndef DC_CORE_METRICS_H
#define DC_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define DC_METRICS_MAX_IDS 128 /* per label kind; id 0 is reserved for "other" */
#define DC_METRICS_MAX_WORKERS 256
#define DC_METRICS_LATENCY_BUCKETS 14 /* upstream histograms: 1 ms .. 30 s */
#define DC_METRICS_REQUEST_BUCKETS 17 /* client request histogram: 100 us .. 30 s */

/*
 * How a client request was answered, the label cache_status of dexcache_request_duration_seconds:
 * X-Cache's values in lowercase, and `none` for answers dexcache made itself without X-Cache
 * (refused by the checks, no route, 429, an upstream failure without a stale copy, CORS preflight).
 */
typedef enum {
    DC_METRICS_CS_NONE = 0,
    DC_METRICS_CS_HIT,
    DC_METRICS_CS_MISS,
    DC_METRICS_CS_STALE,
    DC_METRICS_CS_BYPASS,
    DC_METRICS_CS_STREAM,
    DC_METRICS_CS_COUNT
} dc_metrics_cache_status_t;

/* The cache_status index of an X-Cache value (NULL or unknown values: DC_METRICS_CS_NONE). */
dc_metrics_cache_status_t dc_metrics_cache_status_of(const char *x_cache);

typedef enum { DC_METRICS_ROUTE = 0, DC_METRICS_UPSTREAM = 1 } dc_metrics_kind_t;

/* status class index: 0 = other/none, 1..5 = 1xx..5xx */
static inline unsigned dc_metrics_status_class(int status)
{
    return (status >= 100 && status < 600) ? (unsigned)(status / 100) : 0;
}

typedef struct dc_worker_metrics {
    uint64_t requests[DC_METRICS_MAX_IDS][6];           /* by route id, status class (0 = no route) */
    uint64_t upstream_responses[DC_METRICS_MAX_IDS][6]; /* by upstream, class; [0] = error (no response) */
    uint64_t upstream_attempts[DC_METRICS_MAX_IDS];
    uint64_t upstream_retries[DC_METRICS_MAX_IDS];
    uint64_t upstream_timeouts[DC_METRICS_MAX_IDS];
    uint64_t upstream_latency[DC_METRICS_MAX_IDS][DC_METRICS_LATENCY_BUCKETS + 1]; /* head latency */
    uint64_t upstream_latency_sum_us[DC_METRICS_MAX_IDS];
    uint64_t upstream_duration[DC_METRICS_MAX_IDS][DC_METRICS_LATENCY_BUCKETS + 1]; /* whole exchange */
    uint64_t upstream_duration_sum_us[DC_METRICS_MAX_IDS];
    /* client requests by route id (0 = no route) and cache status, start to disposal */
    uint64_t request_duration[DC_METRICS_MAX_IDS][DC_METRICS_CS_COUNT][DC_METRICS_REQUEST_BUCKETS + 1];
    uint64_t request_duration_sum_us[DC_METRICS_MAX_IDS][DC_METRICS_CS_COUNT];
    uint64_t rejected[6]; /* requests refused by the request checks, by class */
    /* cache, by route id */
    uint64_t cache_hits[DC_METRICS_MAX_IDS];
    uint64_t cache_misses[DC_METRICS_MAX_IDS];
    uint64_t cache_stale[DC_METRICS_MAX_IDS];     /* answered with a stale copy (SWR or SIE) */
    uint64_t cache_collapsed[DC_METRICS_MAX_IDS]; /* waiters served by another request's fetch */
    uint64_t cache_stores[DC_METRICS_MAX_IDS];
    uint64_t cache_bypass[DC_METRICS_MAX_IDS];    /* not cacheable, or hit-for-pass */
    uint64_t cache_refreshes[DC_METRICS_MAX_IDS]; /* background refreshes started */
    uint64_t limited[DC_METRICS_MAX_IDS];         /* answered 429 by the per-client limit */
    uint64_t connections_accepted;
    uint64_t connections_closed;
    uint64_t requests_active; /* gauge: requests currently being handled (single writer) */
    uint64_t bytes_out;
    /* HTTP/2 abuse guard (http/h2guard.h) */
    uint64_t h2_early_resets;     /* streams the client reset before their answer */
    uint64_t h2_abuse_closed[2];  /* connections closed for abuse: [0] resets, [1] stalled output */
    uint64_t h2_deferred_dropped; /* upstream starts skipped: the request was reset while deferred */
} dc_worker_metrics_t;

/* Single-writer counter update: a relaxed load + store (no lock prefix), readable from other threads. */
static inline void dc_counter_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void dc_counter_sub(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) - n, __ATOMIC_RELAXED);
}
static inline uint64_t dc_counter_get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Id for a label value (registering it on first use); 0 when the registry is full. Thread-safe. */
unsigned dc_metrics_label_id(dc_metrics_kind_t kind, const char *value);

/* Workers register their counter block once at start (the block must stay alive until exit). */
void dc_metrics_register_worker(dc_worker_metrics_t *m);

/* Record an upstream head latency (microseconds) into upstream `id`'s histogram. Owner thread only. */
void dc_metrics_observe_upstream_latency(dc_worker_metrics_t *m, unsigned id, uint64_t us);
/* Record a whole upstream exchange (start of the fetch, budget wait included, to its end: last body
 * byte or error) into dexcache_upstream_duration_seconds. Owner thread only. */
void dc_metrics_observe_upstream_duration(dc_worker_metrics_t *m, unsigned id, uint64_t us);
/* Record a client request (route id, 0 = none; cache status) into dexcache_request_duration_seconds.
 * Owner thread only. */
void dc_metrics_observe_request(dc_worker_metrics_t *m, unsigned route_id, dc_metrics_cache_status_t cs, uint64_t us);

/* Process-wide gauges/counters owned by the main thread, shown in /metrics. */
typedef struct dc_metrics_process {
    uint64_t start_wall_ms;
    uint64_t reloads;
    uint64_t reload_failures;
    uint64_t key_quarantines;
    uint64_t budget_late_rereserves; /* budget slots given up: the request would have left too late */
} dc_metrics_process_t;
extern dc_metrics_process_t dc_metrics_process;

/* Sum of one counter across workers, with an accessor. */
uint64_t dc_metrics_sum_connections_open(void);
uint64_t dc_metrics_sum_requests_active(void);

/* Process-wide cache gauges, provided by the owner of the cache (set once at start). */
typedef struct dc_metrics_cache_view {
    uint64_t entries, bytes, memory, evictions, expired, purged, inserts, too_big, inflight;
} dc_metrics_cache_view_t;
void dc_metrics_set_cache_source(void (*fn)(void *ctx, dc_metrics_cache_view_t *out), void *ctx);

/*
 * A module's own families in /metrics. Core knows no module above it: a module that owns state
 * worth exposing registers a source at start-up (main thread, before the first scrape; never
 * removed), and dc_metrics_render() calls each source in registration order, after the per-worker
 * families, to append its text with dc_metrics_printf(). A source reads its own module's state
 * (atomics or its own locks) and must not call back into this module's registry functions.
 */
typedef struct dc_metrics_buf dc_metrics_buf_t;
void dc_metrics_printf(dc_metrics_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dc_metrics_add_source(void (*render)(void *ctx, dc_metrics_buf_t *b), void *ctx);

/* Render the Prometheus text exposition into a heap buffer (caller frees). */
char *dc_metrics_render(size_t *len);

#endif
