/* The public face of sse/ (sse.h): the hub, its metrics, subscribing (the channel key, the first
 * events of a new subscriber) and teardown. Channels are in channel.c, subscribers in fanout.c. */
#include "sse/sse.h"
#include "cache/key.h"
#include "cache/store.h"
#include "core/error.h"
#include "core/metrics.h"
#include "sse/sse_private.h"

#include <stdlib.h>
#include <string.h>

dc_sse_t *dc__sse_hub;
dc__sse_stats_t dc__sse_stats;

bool dc_sse_trim_due(void)
{
    return atomic_exchange(&dc__sse_stats.trim_due, false) && atomic_load(&dc__sse_stats.subscribers) == 0;
}

void dc_sse_get_stats(dc_sse_stats_t *out)
{
    out->channels = atomic_load(&dc__sse_stats.channels);
    out->subscribers = atomic_load(&dc__sse_stats.subscribers);
    out->events = atomic_load(&dc__sse_stats.events);
    out->drops = atomic_load(&dc__sse_stats.drops);
    out->polls = atomic_load(&dc__sse_stats.polls);
}

static void render_metrics(void *ctx, dc_metrics_buf_t *b)
{
    dc_sse_stats_t sse;
    dc_sse_get_stats(&sse);
    dc_metrics_printf(
        b,
        "# HELP dexcache_sse_channels Event-stream channels with subscribers (one upstream poll each).\n"
        "# TYPE dexcache_sse_channels gauge\ndexcache_sse_channels %llu\n"
        "# HELP dexcache_sse_subscribers Event-stream clients connected.\n"
        "# TYPE dexcache_sse_subscribers gauge\ndexcache_sse_subscribers %llu\n"
        "# HELP dexcache_sse_events_total Events handed to subscribers (one per subscriber).\n"
        "# TYPE dexcache_sse_events_total counter\ndexcache_sse_events_total %llu\n"
        "# HELP dexcache_sse_drops_total Subscribers dropped for falling behind.\n"
        "# TYPE dexcache_sse_drops_total counter\ndexcache_sse_drops_total %llu\n"
        "# HELP dexcache_sse_polls_total Channel polls (through the cache; upstream calls are counted apart).\n"
        "# TYPE dexcache_sse_polls_total counter\ndexcache_sse_polls_total %llu\n",
        (unsigned long long)sse.channels, (unsigned long long)sse.subscribers, (unsigned long long)sse.events,
        (unsigned long long)sse.drops, (unsigned long long)sse.polls);
}

void dc_sse_metrics_register(void)
{
    dc_metrics_add_source(render_metrics, NULL);
}

static const dc_http_stream_ops_t stream_ops = {dc_sse_subscribe, dc_sse_proceed, dc_sse_detach};

dc_sse_t *dc_sse_create(struct dc_worker *workers, unsigned nworkers)
{
    dc_sse_t *h = dc_calloc(1, sizeof(*h));
    pthread_mutex_init(&h->lock, NULL);
    h->workers = workers;
    h->nworkers = nworkers;
    h->fanq = dc_calloc(nworkers, sizeof(*h->fanq));
    for (unsigned i = 0; i < nworkers; i++)
        dc_list_init(&h->fanq[i].jobs);
    dc__sse_hub = h;
    dc_http_register_streams(&stream_ops);
    return h;
}

/* Key and upstream URL of a stream request: the key a plain GET of the same upstream URL through
 * the stream's route would have, so both share cache entries and in-flight fetches. */
static char *channel_key(const dc_config_stream_t *st, const dc_config_cache_rule_t *rule, const char *query,
                         size_t qlen, size_t *key_len)
{
    size_t uplen = strlen(st->upstream_path);
    char *pq = dc_malloc(uplen + qlen + 2);
    memcpy(pq, st->upstream_path, uplen);
    size_t pql = uplen;
    if (qlen > 0) {
        pq[pql++] = '?';
        memcpy(pq + pql, query, qlen);
        pql += qlen;
    }
    dc_cache_key_opts_t opts = {rule->key_sets, rule->nkey_sets, rule->ignore_params, rule->nignore_params};
    const char *prefix = st->route->prefix;
    size_t cap = dc_cache_key_bound(3, strlen(prefix), pql);
    char *key = dc_malloc(cap);
    long n = dc_cache_key_build("GET", 3, prefix, pq, pql, &opts, key, cap);
    free(pq);
    if (n < 0) {
        free(key);
        return NULL;
    }
    *key_len = (size_t)n;
    return key;
}

/* The cache rule a stream's polls follow: its route's rule for the upstream path, else the stream's own. */
static const dc_config_cache_rule_t *stream_rule(const dc_config_stream_t *st)
{
    const dc_config_cache_rule_t *rule =
        dc_config_cache_rule_match(st->route, st->upstream_path, strlen(st->upstream_path));
    return rule != NULL ? rule : &st->poll_rule;
}

/* The 200 head of an event stream, sent now (the body follows as events arrive). */
static void start_event_stream(dc_request_t *r)
{
    h2o_req_t *req = r->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache, no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, r->request_id,
                          strlen(r->request_id));
    r->x_cache = "STREAM";
    r->out = DC_OUT_SSE;
    r->generator.proceed = dc_out_proceed;
    r->generator.stop = dc_out_stop;
    h2o_start_response(req, &r->generator);
}

/* What a new subscriber is owed from the channel's ring, as new references in backlog[] (returns
 * the count): resuming (`resume`, after event `last`), the events after `last`, or only the newest
 * when some were lost between `last` and the ring's oldest; else the latest state. */
static size_t collect_backlog(dc_sse_channel_t *ch, bool resume, uint64_t last, dc_sse_event_t **backlog)
{
    size_t nb = 0;
    pthread_mutex_lock(&ch->lock);
    for (size_t i = 0; i < ch->ring_n; i++) {
        dc_sse_event_t *e = ch->ring[(ch->ring_head + i) % DC_SSE_RING];
        if (resume && e->id > last)
            backlog[nb++] = dc_sse_event_ref(e);
    }
    /* resumable only if nothing between `last` and the ring's oldest was lost */
    if (resume && ch->ring_n > 0 && ch->ring[ch->ring_head]->id > last + 1) {
        for (size_t i = 0; i + 1 < nb; i++)
            dc_sse_event_release(backlog[i]);
        if (nb > 0) {
            backlog[0] = backlog[nb - 1];
            nb = 1;
        }
    }
    if (!resume && ch->ring_n > 0)
        backlog[nb++] = dc_sse_event_ref(ch->ring[(ch->ring_head + ch->ring_n - 1) % DC_SSE_RING]);
    pthread_mutex_unlock(&ch->lock);
    return nb;
}

/* A new subscriber's first events: the retry hint, then what it missed (Last-Event-ID) or the
 * latest state. */
static void send_first_events(dc_sse_sub_t *s, const dc_config_stream_t *st, h2o_req_t *req)
{
    dc_sse_event_t *retry = dc_sse_event_retry(st->interval_ms * 2 > 1000 ? st->interval_ms * 2 : 1000);
    dc__sse_sub_push(s, retry);
    dc_sse_event_release(retry);
    uint64_t last = 0;
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    bool resume =
        hi >= 0 && dc_sse_parse_last_id(req->headers.entries[hi].value.base, req->headers.entries[hi].value.len, &last);
    dc_sse_event_t *backlog[DC_SSE_RING];
    size_t nb = collect_backlog(s->ch, resume, last, backlog);
    for (size_t i = 0; i < nb; i++) {
        dc__sse_sub_push(s, backlog[i]);
        dc_sse_event_release(backlog[i]);
    }
}

void dc_sse_subscribe(dc_request_t *r, const dc_config_stream_t *st)
{
    h2o_req_t *req = r->req;
    const char *query = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : "";
    size_t qlen = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
    const dc_config_cache_rule_t *rule = stream_rule(st);
    size_t key_len;
    char *key = channel_key(st, rule, query, qlen, &key_len);
    if (key == NULL) {
        dc_request_respond_error(r, 400, "malformed query");
        return;
    }
    (void)dc_request_real_ip(r); /* now: the access log line is written once the client is gone */
    dc_sse_sub_t *s = dc_calloc(1, sizeof(*s));
    s->qmax_bytes = st->max_subscriber_buffer;
    s->r = r;
    r->sse = s;
    /* no reference: r lives until its pool is disposed, and that detaches s first */
    atomic_fetch_add(&dc__sse_stats.subscribers, 1);
    start_event_stream(r);
    dc_sse_channel_t *ch = dc__sse_channel_get(r->ctx.worker, r->ctx.snap, st, rule, key, key_len, query, qlen);
    s->ch = ch;
    s->up_fetches0 = atomic_load(&ch->up_fetches);
    s->up_us0 = atomic_load(&ch->up_us);
    dc_list_push_front(&ch->subs[r->ctx.worker->id], &s->link);
    send_first_events(s, st, req);
}

void dc_sse_destroy(dc_sse_t *hub)
{
    if (hub == NULL)
        return;
    for (unsigned b = 0; b < NBUCKETS; b++)
        DC_ASSERT(hub->buckets[b] == NULL);
    if (dc__sse_hub == hub)
        dc__sse_hub = NULL;
    pthread_mutex_destroy(&hub->lock);
    free(hub->fanq);
    free(hub);
}
