/* Channels: the registry, references, polling on the home worker, the fleet's lease and relay,
 * and the ring of recent events (sse_private.h). */
#include "cache/store.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/time.h"
#include "sse/sse_fleet.h"
#include "sse/sse_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKOFF_MS 30000

static void schedule(dc_sse_channel_t *ch);
static void schedule_relay(dc_sse_channel_t *ch);
static void on_fleet_event(void *data, const char *msg, size_t len);
static void poll_now(dc_sse_channel_t *ch);

/* ---- channel references ---- */

dc_sse_channel_t *dc__sse_channel_ref(dc_sse_channel_t *ch)
{
    dc_refcount_take(&ch->refs);
    return ch;
}

void dc__sse_channel_release(dc_sse_channel_t *ch)
{
    if (!dc_refcount_drop(&ch->refs))
        return;
    for (size_t i = 0; i < ch->ring_n; i++)
        dc_sse_event_release(ch->ring[(ch->ring_head + i) % DC_SSE_RING]);
    pthread_mutex_destroy(&ch->lock);
    dc_snapshot_release(ch->snap);
    free(ch->subs);
    free(ch->key);
    free(ch->url);
    ch->magic = 0;
    free(ch);
    atomic_fetch_sub(&dc__sse_stats.channels, 1);
}

/* ---- polling (home worker) ---- */

/* An event for this instance's subscribers: updates get `id` (0 = the next local id) and join the
 * ring; ids at or below the last one are duplicates (our own publication coming back). */
static void emit_local(dc_sse_channel_t *ch, uint64_t id, bool update, const char *body, size_t len)
{
    if (!update) {
        dc_sse_event_t *ev = dc_sse_event_format(0, "error", &body, &len, 1);
        dc__sse_broadcast(ch, ev);
        dc_sse_event_release(ev);
        return;
    }
    pthread_mutex_lock(&ch->lock);
    if (id == 0)
        id = ch->last_id + 1;
    if (id <= ch->last_id) {
        pthread_mutex_unlock(&ch->lock);
        return;
    }
    dc_sse_event_t *ev = dc_sse_event_format(id, "update", &body, &len, 1);
    ch->last_id = id;
    if (ch->ring_n == DC_SSE_RING) {
        dc_sse_event_release(ch->ring[ch->ring_head]);
        ch->ring_head = (ch->ring_head + 1) % DC_SSE_RING;
        ch->ring_n--;
    }
    ch->ring[(ch->ring_head + ch->ring_n) % DC_SSE_RING] = dc_sse_event_ref(ev);
    ch->ring_n++;
    pthread_mutex_unlock(&ch->lock);
    dc__sse_broadcast(ch, ev);
    dc_sse_event_release(ev);
}

typedef struct publish_call {
    dc_sse_channel_t *ch; /* a reference */
    bool update;
    char *body; /* kept for the local fallback */
    size_t len;
} publish_call_t;

static void on_published(void *data, int err, uint64_t id)
{
    publish_call_t *c = data;
    if (err != 0 && !c->ch->retired) /* Redis went away: this instance's subscribers still get it */
        emit_local(c->ch, 0, c->update, c->body, c->len);
    dc__sse_channel_release(c->ch);
    free(c->body);
    free(c);
}

/* A poll's outcome (takes over the heap `body`): through the fleet when this instance is the
 * channel's leader (every instance, this one included, gets it from its subscription, numbered
 * fleet-wide), else locally. */
static void emit(dc_sse_channel_t *ch, bool update, char *body, size_t len)
{
    dc_fleet_t *fleet = ch->home->fleet;
    if (ch->leader && ch->fsub != NULL && fleet != NULL && dc_fleet_up(fleet)) {
        publish_call_t *c = dc_malloc(sizeof(*c));
        *c = (publish_call_t){dc__sse_channel_ref(ch), update, body, len};
        if (dc_fleet_sse_publish(fleet, ch->key, ch->key_len, update ? "update" : "error", body, len, on_published,
                                 c) == 0)
            return;
        dc__sse_channel_release(ch);
        free(c);
    }
    emit_local(ch, 0, update, body, len);
    free(body);
}

static void publish_error(dc_sse_channel_t *ch, int status, const char *message)
{
    char *body = dc_asprintf("{\"status\":%d,\"error\":\"%s\"}", status, message);
    emit(ch, false, body, strlen(body));
    ch->errors++;
}

static void publish_entry(dc_sse_channel_t *ch, const dc_cache_entry_t *e)
{
    ch->errors = 0;
    if (ch->stream->on_change && e->etag_len == ch->last_etag_len && memcmp(e->etag, ch->last_etag, e->etag_len) == 0)
        return;
    memcpy(ch->last_etag, e->etag, e->etag_len);
    ch->last_etag_len = e->etag_len;
    emit(ch, true, dc_body_flatten(&e->body->body), e->body->body.len);
}

static void on_last_event(void *data, const char *msg, size_t len)
{
    dc_sse_channel_t *ch = data;
    if (msg != NULL)
        on_fleet_event(ch, msg, len);
    dc__sse_channel_release(ch);
}

/* "<id>|<type>|<body>" from the channel's leader, whichever instance it is. msg NULL: subscribed
 * (again): catch up with the last update published. */
static void on_fleet_event(void *data, const char *msg, size_t len)
{
    dc_sse_channel_t *ch = data;
    if (ch->retired)
        return;
    if (msg == NULL) {
        dc__sse_channel_ref(ch);
        if (dc_fleet_sse_last(ch->home->fleet, ch->key, ch->key_len, on_last_event, ch) != 0)
            dc__sse_channel_release(ch);
        return;
    }
    const char *bar = memchr(msg, '|', len);
    uint64_t id;
    if (bar == NULL || !dc_parse_u64(msg, (size_t)(bar - msg), &id))
        return;
    const char *type = bar + 1, *bar2 = memchr(type, '|', len - (size_t)(type - msg));
    if (bar2 == NULL)
        return;
    const char *body = bar2 + 1;
    size_t blen = len - (size_t)(body - msg);
    bool update = (size_t)(bar2 - type) == 6 && memcmp(type, "update", 6) == 0;
    emit_local(ch, update ? id : 0, update, body, blen);
}

static void on_poll_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    dc_sse_channel_t *ch = w->data;
    if (res->fetched.attempts > 0) {
        atomic_fetch_add(&ch->up_fetches, res->fetched.attempts);
        atomic_fetch_add(&ch->up_us, res->fetched.us);
        atomic_store(&ch->up_tier, res->fetched.tier);
    }
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        if (res->stale)
            publish_error(ch, res->fwd_status ? res->fwd_status : 502, "upstream failed; no new data");
        else if (res->entry->status >= 400)
            publish_error(ch, res->entry->status, "upstream answered an error");
        else
            publish_entry(ch, res->entry);
        dc_cache_entry_release(res->entry);
        break;
    case DC_FLIGHT_ERROR:
        publish_error(ch, res->status, res->message != NULL ? res->message : "upstream failed");
        break;
    case DC_FLIGHT_PASS:
        publish_error(ch, 502, "upstream answer not cacheable");
        break;
    case DC_FLIGHT_STREAM: /* too large for an event stream */
        dc_flight_result_release(res);
        publish_error(ch, 502, "upstream answer too large for a stream");
        break;
    }
}

static void on_poll_release(dc_waiter_t *w)
{
    dc_sse_channel_t *ch = w->data;
    ch->waiting = false;
    if (!ch->retired)
        schedule(ch);
    dc__sse_channel_release(ch); /* the wait's reference */
}

static void on_timer_closed(uv_handle_t *h)
{
    dc__sse_channel_release(h->data);
}

/* The last subscriber left: unregister (unless one just joined) and stop. */
static bool retire_if_unused(dc_sse_channel_t *ch)
{
    dc_sse_t *hub = ch->hub;
    pthread_mutex_lock(&hub->lock);
    if (atomic_load(&ch->nsubs) > 0) {
        pthread_mutex_unlock(&hub->lock);
        return false;
    }
    dc_sse_channel_t **pp = &hub->buckets[ch->hash % NBUCKETS];
    while (*pp != ch)
        pp = &(*pp)->bucket_next;
    *pp = ch->bucket_next;
    pthread_mutex_unlock(&hub->lock);
    ch->retired = true;
    if (ch->fsub != NULL) {
        dc_fleet_sse_unsubscribe(ch->home->fleet, ch->fsub);
        ch->fsub = NULL;
    }
    uv_timer_stop(&ch->timer);
    uv_close((uv_handle_t *)&ch->timer, on_timer_closed); /* the registry's reference */
    /* thousands of subscribers leave many small freed blocks that glibc keeps: the main thread
     * gives the memory back once nobody is subscribed anywhere (dc_sse_trim_due; malloc_trim walks
     * every arena and would stall this loop) */
    if (atomic_load(&dc__sse_stats.subscribers) == 0)
        atomic_store(&dc__sse_stats.trim_due, true);
    return true;
}

/* Fleet: only the lease holder polls; the others relay what it publishes and try again for the
 * lease twice per interval, so a dead leader is replaced within about two intervals. */
static uint64_t lease_ttl_ms(const dc_sse_channel_t *ch)
{
    uint64_t i = ch->stream->interval_ms;
    return i + (i / 5 > 100 ? i / 5 : 100);
}

static void on_lease(void *data, int err, bool leader)
{
    dc_sse_channel_t *ch = data;
    if (!ch->retired) {
        if (err != 0) {
            ch->leader = false;
            poll_now(ch); /* Redis unavailable: poll locally */
        } else if (leader) {
            if (!ch->leader)
                dc_log_info("sse: this instance polls %s", ch->key);
            ch->leader = true;
            poll_now(ch);
        } else {
            ch->leader = false;
            schedule_relay(ch);
        }
    }
    dc__sse_channel_release(ch);
}

static void tick(dc_sse_channel_t *ch)
{
    if (retire_if_unused(ch))
        return;
    uint64_t mono = dc_now_mono_ms();
    if (mono - ch->last_event_ms >= ch->stream->heartbeat_ms) {
        dc_sse_event_t *hb = dc_sse_event_comment("heartbeat");
        dc__sse_broadcast(ch, hb);
        dc_sse_event_release(hb);
    }
    dc_fleet_t *fleet = ch->home->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        if (ch->fsub == NULL)
            ch->fsub = dc_fleet_sse_subscribe(fleet, ch->key, ch->key_len, on_fleet_event, ch);
        dc__sse_channel_ref(ch);
        if (dc_fleet_sse_lease(fleet, ch->key, ch->key_len, lease_ttl_ms(ch), on_lease, ch) == 0)
            return;
        dc__sse_channel_release(ch);
    }
    ch->leader = false;
    poll_now(ch);
}

static void poll_now(dc_sse_channel_t *ch)
{
    ch->poll_started_ms = uv_now(&ch->home->loop);
    atomic_fetch_add(&dc__sse_stats.polls, 1);
    dc_worker_t *w = ch->home;
    uint64_t now = dc_now_wall_ms();
    dc_cache_entry_t *e = dc_cache_lookup(w->cache, ch->key, ch->key_len, ch->hash, now);
    /* the stream's interval is how fresh its data must be: a fresh entry is shared (with plain GETs,
     * with other workers' polls) only while younger than half an interval, whatever the route's ttl;
     * an older one is refreshed now, and the new entry serves plain GETs too */
    if (e != NULL && !e->is_pass && dc_cache_entry_freshness(e, false, now) == DC_FRESH &&
        now < e->stored_at_ms + ch->stream->interval_ms / 2) {
        if (e->status < 400)
            publish_entry(ch, e);
        else
            publish_error(ch, e->status, "upstream answered an error");
        dc_cache_entry_release(e);
        schedule(ch);
        return;
    }
    if (e != NULL && (e->is_pass || e->is_vary)) { /* a vary record is no answer (cache/store.h) */
        dc_cache_entry_release(e);
        e = NULL;
    }
    ch->waiter.on_result = on_poll_result;
    ch->waiter.on_release = on_poll_release;
    ch->waiter.target = w;
    ch->waiter.data = ch;
    dc_route_ctx_t ctx = {.worker = w, .snap = ch->snap, .route = ch->route, .rule = ch->rule}; /* borrowed */
    dc_fill_target_t t = {ch->key, ch->key_len, ch->hash, ch->url, NULL};
    dc_fill_fetch_as_waiter(&ctx, &t, e, &ch->waiter, false);
    dc_cache_entry_release(e);
    ch->waiting = true;
    dc__sse_channel_ref(ch); /* held by the wait until on_release */
}

static void on_tick(uv_timer_t *t)
{
    tick(t->data);
}

static void schedule_relay(dc_sse_channel_t *ch)
{
    uint64_t d = ch->stream->interval_ms / 2;
    uv_timer_start(&ch->timer, on_tick, d > 0 ? d : 1, 0);
}

/* The next poll is due `interval` after the previous one started (a rate, not a pause after the
 * upstream answered and the fan-out ended); after errors, the backed-off delay. */
static void schedule(dc_sse_channel_t *ch)
{
    uint64_t d = ch->stream->interval_ms;
    for (unsigned i = 0; i < ch->errors && d < MAX_BACKOFF_MS; i++)
        d *= 2;
    if (d > MAX_BACKOFF_MS && ch->stream->interval_ms <= MAX_BACKOFF_MS)
        d = MAX_BACKOFF_MS;
    uv_loop_t *loop = &ch->home->loop;
    uv_update_time(loop); /* timers count from the loop's clock: read it after the fan-out */
    uint64_t now = uv_now(loop), due = ch->poll_started_ms + d;
    uv_timer_start(&ch->timer, on_tick, due > now ? due - now : 0, 0);
}

/* ---- the registry ---- */

/* The channel for this key, created with `w` as its home when absent. Returns a new reference,
 * with nsubs already counted for the caller. */
dc_sse_channel_t *dc__sse_channel_get(dc_worker_t *w, dc_snapshot_t *snap, const dc_config_stream_t *st,
                                      const dc_config_cache_rule_t *rule, char *key, size_t key_len, const char *query,
                                      size_t qlen)
{
    dc_sse_t *hub = dc__sse_hub;
    uint64_t hash = dc_cache_hash(key, key_len);
    pthread_mutex_lock(&hub->lock);
    dc_sse_channel_t *ch = hub->buckets[hash % NBUCKETS];
    while (ch != NULL &&
           !(ch->hash == hash && ch->key_len == key_len && memcmp(ch->key, key, key_len) == 0 && ch->stream == st))
        ch = ch->bucket_next;
    if (ch != NULL) {
        atomic_fetch_add(&ch->nsubs, 1);
        dc__sse_channel_ref(ch);
        pthread_mutex_unlock(&hub->lock);
        free(key);
        return ch;
    }
    ch = dc_calloc(1, sizeof(*ch));
    ch->magic = CHANNEL_MAGIC;
    dc_refcount_init(&ch->refs, 2); /* the registry's (dropped when retired) and the caller's */
    atomic_init(&ch->nsubs, 1);
    ch->hub = hub;
    ch->key = key;
    ch->key_len = key_len;
    ch->hash = hash;
    ch->snap = dc_snapshot_ref(snap);
    ch->stream = st;
    ch->route = st->route;
    ch->rule = rule;
    const char *base = st->upstream->url;
    ch->url = qlen > 0 ? dc_asprintf("%s%s?%.*s", base, st->upstream_path, (int)qlen, query)
                       : dc_asprintf("%s%s", base, st->upstream_path);
    ch->home = w;
    ch->last_event_ms = dc_now_mono_ms();
    pthread_mutex_init(&ch->lock, NULL);
    ch->subs = dc_calloc(hub->nworkers, sizeof(*ch->subs));
    for (unsigned i = 0; i < hub->nworkers; i++)
        dc_list_init(&ch->subs[i]);
    uv_timer_init(&w->loop, &ch->timer);
    ch->timer.data = ch;
    ch->bucket_next = hub->buckets[hash % NBUCKETS];
    hub->buckets[hash % NBUCKETS] = ch;
    pthread_mutex_unlock(&hub->lock);
    atomic_fetch_add(&dc__sse_stats.channels, 1);
    tick(ch); /* the first subscriber should not wait an interval */
    return ch;
}

/* ---- teardown ---- */

void dc_sse_worker_close(dc_worker_t *w)
{
    dc_sse_t *hub = dc__sse_hub;
    if (hub == NULL)
        return;
    dc_sse_worker_drain(w); /* idempotent: subscribers already ended are skipped */
    /* take the channels homed here out of the registry (each keeps the registry's reference) */
    dc_sse_channel_t *mine = NULL;
    pthread_mutex_lock(&hub->lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (dc_sse_channel_t **pp = &hub->buckets[b]; *pp != NULL;) {
            dc_sse_channel_t *ch = *pp;
            if (ch->home != w) {
                pp = &ch->bucket_next;
                continue;
            }
            *pp = ch->bucket_next;
            ch->bucket_next = mine;
            mine = ch;
        }
    }
    pthread_mutex_unlock(&hub->lock);
    while (mine != NULL) {
        dc_sse_channel_t *ch = mine;
        mine = ch->bucket_next;
        ch->bucket_next = NULL;
        ch->retired = true; /* pending lease, publish and poll answers see it and stop */
        if (ch->fsub != NULL) {
            dc_fleet_sse_unsubscribe(w->fleet, ch->fsub);
            ch->fsub = NULL;
        }
        if (ch->waiting) /* WAITING: released now; POSTED: when the message runs */
            dc_inflight_cancel(w->inflight, &ch->waiter);
        uv_timer_stop(&ch->timer);
        uv_close((uv_handle_t *)&ch->timer, on_timer_closed); /* the registry's reference */
    }
}

size_t dc_sse_worker_channels(dc_worker_t *w)
{
    dc_sse_t *hub = dc__sse_hub;
    size_t n = 0;
    if (hub == NULL)
        return 0;
    pthread_mutex_lock(&hub->lock);
    for (unsigned b = 0; b < NBUCKETS; b++)
        for (dc_sse_channel_t *ch = hub->buckets[b]; ch != NULL; ch = ch->bucket_next)
            n += ch->home == w;
    pthread_mutex_unlock(&hub->lock);
    return n;
}
