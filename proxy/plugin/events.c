/*
 * host->metric_add: plugin event counters in /metrics, as
 * dexcache_plugin_events_total{plugin="<instance>",event="<event>",reason="<reason>"}.
 *
 * A process-wide append-only table of series (made on first use, never removed, so counters keep
 * counting across reloads): a lookup scans the published entries without a lock; only making a
 * series takes the mutex. Each counter is an atomic add (any thread may count).
 */
#include "plugin/plugin_private.h"
#include "core/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define EVENTS_MAX 1024
#define LABEL_MAX 32

typedef struct series {
    char plugin[LABEL_MAX + 1], event[LABEL_MAX + 1], reason[LABEL_MAX + 1];
    _Atomic uint64_t n;
} series_t;

static series_t table[EVENTS_MAX];
static atomic_size_t published; /* entries [0, published) are complete */
static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;

/* [a-z0-9_]{1,32}; "" only when empty_ok */
static bool label_ok(const char *s, bool empty_ok)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (n >= LABEL_MAX || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return false;
    return n > 0 || empty_ok;
}

static series_t *find(size_t upto, const char *plugin, const char *event, const char *reason)
{
    for (size_t i = 0; i < upto; i++)
        if (strcmp(table[i].event, event) == 0 && strcmp(table[i].reason, reason) == 0 &&
            strcmp(table[i].plugin, plugin) == 0)
            return &table[i];
    return NULL;
}

int dc__plugin_metric_add(const dexcache_plugin_t *self, dexcache_req_t *r, const char *event, const char *reason,
                          uint64_t n)
{
    if (reason == NULL)
        reason = "";
    /* the instance whose hook runs on r: its config name ([a-z0-9_-]{1,32}, config-checked) */
    const char *plugin = r != NULL && r->cur != NULL ? r->cur->cfg->name : self != NULL ? self->name : NULL;
    if (plugin == NULL || strlen(plugin) > LABEL_MAX || event == NULL || !label_ok(event, false) ||
        !label_ok(reason, true))
        return DEXCACHE_ERROR;
    series_t *s = find(atomic_load_explicit(&published, memory_order_acquire), plugin, event, reason);
    if (s == NULL) {
        pthread_mutex_lock(&make_lock);
        size_t k = atomic_load_explicit(&published, memory_order_relaxed);
        s = find(k, plugin, event, reason);
        if (s == NULL && k < EVENTS_MAX) {
            s = &table[k];
            strcpy(s->plugin, plugin);
            strcpy(s->event, event);
            strcpy(s->reason, reason);
            atomic_store_explicit(&published, k + 1, memory_order_release);
        }
        pthread_mutex_unlock(&make_lock);
        if (s == NULL)
            return DEXCACHE_ERROR;
    }
    atomic_fetch_add_explicit(&s->n, n, memory_order_relaxed);
    return DEXCACHE_CONTINUE;
}

static void render(void *ctx, dc_metrics_buf_t *b)
{
    (void)ctx;
    size_t k = atomic_load_explicit(&published, memory_order_acquire);
    if (k == 0)
        return;
    dc_metrics_printf(b, "# HELP dexcache_plugin_events_total Events plugins counted (host->metric_add).\n"
                         "# TYPE dexcache_plugin_events_total counter\n");
    for (size_t i = 0; i < k; i++)
        dc_metrics_printf(b, "dexcache_plugin_events_total{plugin=\"%s\",event=\"%s\",reason=\"%s\"} %llu\n",
                          table[i].plugin, table[i].event, table[i].reason,
                          (unsigned long long)atomic_load_explicit(&table[i].n, memory_order_relaxed));
}

void dc__plugin_events_register(void)
{
    dc_metrics_add_source(render, NULL);
}
