#include "sse/sse.h"
#include "core/refcount.h"
#include "cache/key.h"
#include "cache/store.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/request.h"
#include "inflight/inflight.h"
#include "sse/sse_fleet.h"
#include "redis/redis.h"
#include "server/worker.h"
#include "sse/event.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 256
#define SUB_QMAX 256  /* events queued per subscriber (bytes are bounded separately) */
#define SEND_BATCH 16 /* events handed to h2o per send */
#define MAX_BACKOFF_MS 30000
#define CHANNEL_MAGIC 0x53534543u
#define FAN_SLICE 512 /* subscribers served per loop turn by a fan-out */

typedef struct dc_sse_channel dc_sse_channel_t;

struct dc_sse_sub {
    dc_request_t *r; /* a reference while attached; NULL once detached */
    dc_sse_channel_t *ch;
    dc_sse_sub_t *prev, *next; /* in ch->subs[worker] */
    dc_sse_event_t *q[SUB_QMAX];
    size_t qhead, qn, qbytes, qmax_bytes;
    dc_sse_event_t *sending[SEND_BATCH];
    size_t nsending;
    uint64_t last_id; /* highest id queued: events arriving twice (ring + broadcast) are skipped */
    bool send_inflight, dropping, final_sent;
};

struct dc_sse_channel {
    uint32_t magic;
    dc_sse_channel_t *bucket_next;
    dc_refcount_t refs;
    dc_sse_t *hub;
    char *key;
    size_t key_len;
    uint64_t hash;
    dc_snapshot_t *snap;
    const dc_config_stream_t *stream;
    const dc_config_route_t *route;
    const dc_config_cache_rule_t *rule;
    char *url;
    dc_worker_t *home;
    _Atomic unsigned nsubs; /* every worker */

    pthread_mutex_t lock; /* ring and ids */
    dc_sse_event_t *ring[DC_SSE_RING];
    size_t ring_head, ring_n;
    uint64_t last_id;

    /* home worker only */
    uv_timer_t timer;
    dc_waiter_t waiter;
    bool waiting, retired;
    unsigned errors;
    char last_etag[40];
    size_t last_etag_len;
    uint64_t last_event_ms;
    uint64_t poll_started_ms; /* the home loop's clock: polls are due at a fixed rate from here */
    dc_redis_sub_t *fsub;     /* fleet: this channel's pub/sub subscription (events of whoever polls) */
    bool leader;              /* fleet: this instance holds the channel's lease and polls */

    dc_sse_sub_t **subs; /* [nworkers]: list heads, each touched only by its worker */
};

struct fan_msg;
typedef struct fan_queue { /* one per worker, touched only by that worker */
    struct fan_msg *head, *tail;
    uv_idle_t idle;
    bool ready;
} fan_queue_t;

struct dc_sse {
    pthread_mutex_t lock;
    dc_sse_channel_t *buckets[NBUCKETS];
    dc_worker_t *workers;
    unsigned nworkers;
    fan_queue_t *fanq; /* [nworkers] */
};

static dc_sse_t *g_hub; /* set once at start, before workers run */
static _Atomic uint64_t st_channels, st_subscribers, st_events, st_drops, st_polls;
static atomic_bool trim_due; /* a channel retired with no subscriber left anywhere */

bool dc_sse_trim_due(void)
{
    return atomic_exchange(&trim_due, false) && atomic_load(&st_subscribers) == 0;
}

void dc_sse_get_stats(dc_sse_stats_t *out)
{
    out->channels = atomic_load(&st_channels);
    out->subscribers = atomic_load(&st_subscribers);
    out->events = atomic_load(&st_events);
    out->drops = atomic_load(&st_drops);
    out->polls = atomic_load(&st_polls);
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
    g_hub = h;
    dc_http_register_streams(&stream_ops);
    return h;
}

/* ---- channel references ---- */

static dc_sse_channel_t *channel_ref(dc_sse_channel_t *ch)
{
    dc_refcount_take(&ch->refs);
    return ch;
}

static void channel_release(dc_sse_channel_t *ch)
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
    atomic_fetch_sub(&st_channels, 1);
}

/* ---- one subscriber's queue and output ---- */

static void sub_release_queue(dc_sse_sub_t *s)
{
    while (s->qn > 0) {
        dc_sse_event_release(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % SUB_QMAX;
        s->qn--;
    }
    s->qbytes = 0;
}

static void sub_release_sending(dc_sse_sub_t *s)
{
    for (size_t i = 0; i < s->nsending; i++)
        dc_sse_event_release(s->sending[i]);
    s->nsending = 0;
}

static void sub_pump(dc_sse_sub_t *s)
{
    if (s->r == NULL || s->r->req == NULL || s->send_inflight || s->final_sent)
        return;
    sub_release_sending(s);
    h2o_iovec_t iov[SEND_BATCH];
    size_t n = 0;
    while (s->qn > 0 && n < SEND_BATCH) {
        dc_sse_event_t *e = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % SUB_QMAX;
        s->qn--;
        s->qbytes -= e->len;
        s->sending[s->nsending++] = e;
        iov[n++] = h2o_iovec_init(e->bytes, e->len);
    }
    if (n == 0 && !s->dropping)
        return;
    bool last = s->dropping && s->qn == 0;
    if (last)
        s->final_sent = true;
    else
        s->send_inflight = true;
    atomic_fetch_add(&st_events, n);
    h2o_send(s->r->req, iov, n, last ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void sub_push(dc_sse_sub_t *s, dc_sse_event_t *e)
{
    if (s->r == NULL || s->dropping)
        return;
    if (e->id != 0) {
        if (e->id <= s->last_id)
            return;
        s->last_id = e->id;
    }
    s->q[(s->qhead + s->qn) % SUB_QMAX] = dc_sse_event_ref(e);
    s->qn++;
    s->qbytes += e->len;
    sub_pump(s);
}

/* End the stream after what is queued, with one last event. */
static void sub_end(dc_sse_sub_t *s, dc_sse_event_t *final)
{
    if (s->dropping) {
        dc_sse_event_release(final);
        return;
    }
    s->q[(s->qhead + s->qn) % SUB_QMAX] = final;
    s->qn++;
    s->qbytes += final->len;
    s->dropping = true;
    sub_pump(s);
}

/* A subscriber that cannot keep up loses what it had not received: bounded memory per client.
 * One event always fits (the bound is on the backlog behind the one being sent). */
static void sub_deliver(dc_sse_sub_t *s, dc_sse_event_t *e)
{
    if (s->r == NULL || s->dropping)
        return;
    if (s->qn + 1 >= SUB_QMAX || (s->qn > 0 && s->qbytes + e->len > s->qmax_bytes)) {
        atomic_fetch_add(&st_drops, 1);
        sub_release_queue(s);
        static const char body[] = "{\"error\":\"subscriber too slow: dropped\"}";
        const char *parts[1] = {body};
        size_t lens[1] = {sizeof(body) - 1};
        sub_end(s, dc_sse_event_format(0, "dropped", parts, lens, 1));
        return;
    }
    sub_push(s, e);
}

void dc_sse_proceed(dc_sse_sub_t *s)
{
    s->send_inflight = false;
    dc_request_ref(s->r);
    dc_request_t *r = s->r;
    sub_pump(s);
    dc_request_unref(r);
}

/* ---- fan-out ---- */

/* One event for one worker's subscribers of a channel: a message to that worker, then a job in its
 * fan-out queue. Jobs run in order, FAN_SLICE subscribers per loop turn, so 10,000 subscribers do
 * not hold the loop (and every other request on it) for the whole fan-out. */
typedef struct fan_msg {
    dc_msg_t msg; /* first */
    dc_sse_channel_t *ch;
    dc_sse_event_t *ev;
    unsigned worker;
    dc_sse_sub_t *cursor; /* next subscriber to get it (fixed up when that one leaves) */
    struct fan_msg *qnext;
} fan_msg_t;

static void on_fan_idle(uv_idle_t *h);

static void fan_run(fan_queue_t *q)
{
    size_t budget = FAN_SLICE;
    while (q->head != NULL && budget > 0) {
        fan_msg_t *j = q->head;
        while (j->cursor != NULL && budget > 0) {
            dc_sse_sub_t *s = j->cursor;
            j->cursor = s->next; /* before: delivering may end s's request */
            sub_deliver(s, j->ev);
            budget--;
        }
        if (j->cursor != NULL)
            break;
        q->head = j->qnext;
        if (q->head == NULL)
            q->tail = NULL;
        dc_sse_event_release(j->ev);
        channel_release(j->ch);
        free(j);
    }
    if (q->head != NULL)
        uv_idle_start(&q->idle, on_fan_idle);
    else if (q->ready)
        uv_idle_stop(&q->idle);
}

static void on_fan_idle(uv_idle_t *h)
{
    fan_run(h->data);
}

/* On worker j->worker. */
static void fan_add(fan_msg_t *j)
{
    fan_queue_t *q = &j->ch->hub->fanq[j->worker];
    if (!q->ready) {
        uv_idle_init(&j->ch->hub->workers[j->worker].loop, &q->idle);
        q->idle.data = q;
        q->ready = true;
    }
    j->cursor = j->ch->subs[j->worker];
    j->qnext = NULL;
    if (q->tail != NULL)
        q->tail->qnext = j;
    else
        q->head = j;
    q->tail = j;
    if (q->head == j)
        fan_run(q); /* nothing ahead of it: start now */
}

static void run_fan(dc_msg_t *m)
{
    fan_add((fan_msg_t *)m);
}

static fan_msg_t *fan_new(dc_sse_channel_t *ch, dc_sse_event_t *ev, unsigned worker)
{
    fan_msg_t *f = dc_calloc(1, sizeof(*f));
    f->msg.run = run_fan;
    f->ch = channel_ref(ch);
    f->ev = dc_sse_event_ref(ev);
    f->worker = worker;
    return f;
}

/* From the home worker: every worker's subscribers get `ev`. */
static void broadcast(dc_sse_channel_t *ch, dc_sse_event_t *ev)
{
    dc_worker_t *workers = ch->hub->workers;
    for (unsigned i = 0; i < ch->hub->nworkers; i++) {
        fan_msg_t *f = fan_new(ch, ev, i);
        if (i == ch->home->id)
            fan_add(f);
        else
            dc_worker_post(&workers[i], &f->msg);
    }
    ch->last_event_ms = dc_now_mono_ms();
}

/* ---- polling (home worker) ---- */

static void schedule(dc_sse_channel_t *ch);
static void schedule_relay(dc_sse_channel_t *ch);

/* An event for this instance's subscribers: updates get `id` (0 = the next local id) and join the
 * ring; ids at or below the last one are duplicates (our own publication coming back). */
static void emit_local(dc_sse_channel_t *ch, uint64_t id, bool update, const char *body, size_t len)
{
    if (!update) {
        dc_sse_event_t *ev = dc_sse_event_format(0, "error", &body, &len, 1);
        broadcast(ch, ev);
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
    broadcast(ch, ev);
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
    channel_release(c->ch);
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
        *c = (publish_call_t){channel_ref(ch), update, body, len};
        if (dc_fleet_sse_publish(fleet, ch->key, ch->key_len, update ? "update" : "error", body, len, on_published,
                                 c) == 0)
            return;
        channel_release(ch);
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

static void on_fleet_event(void *data, const char *msg, size_t len);

static void on_last_event(void *data, const char *msg, size_t len)
{
    dc_sse_channel_t *ch = data;
    if (msg != NULL)
        on_fleet_event(ch, msg, len);
    channel_release(ch);
}

/* "<id>|<type>|<body>" from the channel's leader, whichever instance it is. msg NULL: subscribed
 * (again): catch up with the last update published. */
static void on_fleet_event(void *data, const char *msg, size_t len)
{
    dc_sse_channel_t *ch = data;
    if (ch->retired)
        return;
    if (msg == NULL) {
        channel_ref(ch);
        if (dc_fleet_sse_last(ch->home->fleet, ch->key, ch->key_len, on_last_event, ch) != 0)
            channel_release(ch);
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
    channel_release(ch); /* the wait's reference */
}

static void on_timer_closed(uv_handle_t *h)
{
    channel_release(h->data);
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
    if (atomic_load(&st_subscribers) == 0)
        atomic_store(&trim_due, true);
    return true;
}

static void poll_now(dc_sse_channel_t *ch);

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
    channel_release(ch);
}

static void tick(dc_sse_channel_t *ch)
{
    if (retire_if_unused(ch))
        return;
    uint64_t mono = dc_now_mono_ms();
    if (mono - ch->last_event_ms >= ch->stream->heartbeat_ms) {
        dc_sse_event_t *hb = dc_sse_event_comment("heartbeat");
        broadcast(ch, hb);
        dc_sse_event_release(hb);
    }
    dc_fleet_t *fleet = ch->home->fleet;
    if (fleet != NULL && dc_fleet_up(fleet)) {
        if (ch->fsub == NULL)
            ch->fsub = dc_fleet_sse_subscribe(fleet, ch->key, ch->key_len, on_fleet_event, ch);
        channel_ref(ch);
        if (dc_fleet_sse_lease(fleet, ch->key, ch->key_len, lease_ttl_ms(ch), on_lease, ch) == 0)
            return;
        channel_release(ch);
    }
    ch->leader = false;
    poll_now(ch);
}

static void poll_now(dc_sse_channel_t *ch)
{
    ch->poll_started_ms = uv_now(&ch->home->loop);
    atomic_fetch_add(&st_polls, 1);
    dc_worker_t *w = ch->home;
    uint64_t now = dc_now_wall_ms();
    dc_cache_entry_t *e = dc_cache_lookup(w->cache, ch->key, ch->key_len, ch->hash, now);
    if (e != NULL && !e->is_pass && dc_cache_entry_freshness(e, false, now) == DC_FRESH) { /* shared with plain GETs */
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
    dc_fill_fetch_as_waiter(w, ch->snap, ch->route, ch->rule, ch->key, ch->key_len, ch->hash, e, ch->url, &ch->waiter);
    dc_cache_entry_release(e);
    ch->waiting = true;
    channel_ref(ch); /* held by the wait until on_release */
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

/* ---- channels ---- */

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

/* The channel for this key, created with `w` as its home when absent. Returns a new reference,
 * with nsubs already counted for the caller. */
static dc_sse_channel_t *channel_get(dc_worker_t *w, dc_snapshot_t *snap, const dc_config_stream_t *st,
                                     const dc_config_cache_rule_t *rule, char *key, size_t key_len, const char *query,
                                     size_t qlen)
{
    dc_sse_t *hub = g_hub;
    uint64_t hash = dc_cache_hash(key, key_len);
    pthread_mutex_lock(&hub->lock);
    dc_sse_channel_t *ch = hub->buckets[hash % NBUCKETS];
    while (ch != NULL &&
           !(ch->hash == hash && ch->key_len == key_len && memcmp(ch->key, key, key_len) == 0 && ch->stream == st))
        ch = ch->bucket_next;
    if (ch != NULL) {
        atomic_fetch_add(&ch->nsubs, 1);
        channel_ref(ch);
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
    uv_timer_init(&w->loop, &ch->timer);
    ch->timer.data = ch;
    ch->bucket_next = hub->buckets[hash % NBUCKETS];
    hub->buckets[hash % NBUCKETS] = ch;
    pthread_mutex_unlock(&hub->lock);
    atomic_fetch_add(&st_channels, 1);
    tick(ch); /* the first subscriber should not wait an interval */
    return ch;
}

/* ---- subscribers ---- */

void dc_sse_detach(dc_sse_sub_t *s)
{
    dc_sse_channel_t *ch = s->ch;
    unsigned wid = s->r->worker->id;
    for (fan_msg_t *j = ch->hub->fanq[wid].head; j != NULL; j = j->qnext)
        if (j->cursor == s)
            j->cursor = s->next;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        ch->subs[wid] = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    sub_release_queue(s);
    sub_release_sending(s);
    s->r->sse = NULL;
    s->r = NULL;
    atomic_fetch_sub(&ch->nsubs, 1);
    atomic_fetch_sub(&st_subscribers, 1);
    channel_release(ch);
    free(s);
}

void dc_sse_subscribe(dc_request_t *r, const dc_config_stream_t *st)
{
    h2o_req_t *req = r->req;
    const char *query = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : "";
    size_t qlen = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
    const dc_config_cache_rule_t *rule =
        dc_config_cache_rule_match(st->route, st->upstream_path, strlen(st->upstream_path));
    if (rule == NULL)
        rule = &st->poll_rule;
    size_t key_len;
    char *key = channel_key(st, rule, query, qlen, &key_len);
    if (key == NULL) {
        dc_request_respond_error(r, 400, "malformed query");
        return;
    }
    dc_sse_sub_t *s = dc_calloc(1, sizeof(*s));
    s->qmax_bytes = st->max_subscriber_buffer;
    s->r = r;
    r->sse = s;
    /* no reference: r lives until its pool is disposed, and that detaches s first */
    atomic_fetch_add(&st_subscribers, 1);

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

    dc_sse_channel_t *ch = channel_get(r->worker, r->snap, st, rule, key, key_len, query, qlen);
    s->ch = ch;
    unsigned wid = r->worker->id;
    s->next = ch->subs[wid];
    if (s->next != NULL)
        s->next->prev = s;
    ch->subs[wid] = s;

    /* retry hint, then what the client missed (Last-Event-ID) or the latest state */
    dc_sse_event_t *retry = dc_sse_event_retry(st->interval_ms * 2 > 1000 ? st->interval_ms * 2 : 1000);
    sub_push(s, retry);
    dc_sse_event_release(retry);
    uint64_t last = 0;
    ssize_t hi = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    bool resume =
        hi >= 0 && dc_sse_parse_last_id(req->headers.entries[hi].value.base, req->headers.entries[hi].value.len, &last);
    dc_sse_event_t *backlog[DC_SSE_RING];
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
    for (size_t i = 0; i < nb; i++) {
        sub_push(s, backlog[i]);
        dc_sse_event_release(backlog[i]);
    }
}

/* This worker's subscribers, each as a new reference to its request: collected under the registry
 * lock (a channel cannot leave the registry's buckets while we read them), used after it. */
static dc_request_t **collect_subscribers(dc_sse_t *hub, dc_worker_t *w, size_t *n)
{
    size_t cap = 16, k = 0;
    dc_request_t **out = dc_malloc(cap * sizeof(*out));
    pthread_mutex_lock(&hub->lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (dc_sse_channel_t *ch = hub->buckets[b]; ch != NULL; ch = ch->bucket_next) {
            for (dc_sse_sub_t *s = ch->subs[w->id]; s != NULL; s = s->next) {
                if (k == cap) {
                    cap *= 2;
                    out = dc_realloc(out, cap * sizeof(*out));
                }
                dc_request_ref(s->r);
                out[k++] = s->r;
            }
        }
    }
    pthread_mutex_unlock(&hub->lock);
    *n = k;
    return out;
}

void dc_sse_worker_drain(dc_worker_t *w)
{
    dc_sse_t *hub = g_hub;
    if (hub == NULL)
        return;
    /* no lock is held while writing to sockets: collect first, then end each one on this loop.
     * Ending one may close its connection and detach others (HTTP/2): r->sse says if it still is. */
    size_t n;
    dc_request_t **rs = collect_subscribers(hub, w, &n);
    static const char body[] = "{\"reason\":\"server shutting down\"}";
    const char *parts[1] = {body};
    size_t lens[1] = {sizeof(body) - 1};
    for (size_t i = 0; i < n; i++) {
        if (rs[i]->sse != NULL)
            sub_end(rs[i]->sse, dc_sse_event_format(0, "close", parts, lens, 1));
        dc_request_unref(rs[i]);
    }
    free(rs);
}

/* ---- teardown ---- */

void dc_sse_worker_close(dc_worker_t *w)
{
    dc_sse_t *hub = g_hub;
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
    dc_sse_t *hub = g_hub;
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

void dc_sse_worker_finish(dc_worker_t *w)
{
    dc_sse_t *hub = g_hub;
    if (hub == NULL)
        return;
    fan_queue_t *q = &hub->fanq[w->id];
    while (q->head != NULL) { /* no subscriber is left: what is queued only releases */
        fan_msg_t *j = q->head;
        DC_ASSERT(j->cursor == NULL);
        q->head = j->qnext;
        dc_sse_event_release(j->ev);
        channel_release(j->ch);
        free(j);
    }
    q->tail = NULL;
    if (q->ready) {
        q->ready = false;
        uv_close((uv_handle_t *)&q->idle, NULL); /* the queue lives in the hub, freed after the loops */
    }
}

void dc_sse_destroy(dc_sse_t *hub)
{
    if (hub == NULL)
        return;
    for (unsigned b = 0; b < NBUCKETS; b++)
        DC_ASSERT(hub->buckets[b] == NULL);
    if (g_hub == hub)
        g_hub = NULL;
    pthread_mutex_destroy(&hub->lock);
    free(hub->fanq);
    free(hub);
}
