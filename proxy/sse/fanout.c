/* Subscribers: each one's bounded queue and output, the fan-out of one event to one worker's
 * subscribers in slices, detach and drain (sse_private.h). */
#include "core/error.h"
#include "core/time.h"
#include "sse/sse_private.h"

#include <stdlib.h>

#define FAN_SLICE 512 /* subscribers served per loop turn by a fan-out */

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
    atomic_fetch_add(&dc__sse_stats.events, n);
    h2o_send(s->r->req, iov, n, last ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

void dc__sse_sub_push(dc_sse_sub_t *s, dc_sse_event_t *e)
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
        atomic_fetch_add(&dc__sse_stats.drops, 1);
        sub_release_queue(s);
        static const char body[] = "{\"error\":\"subscriber too slow: dropped\"}";
        const char *parts[1] = {body};
        size_t lens[1] = {sizeof(body) - 1};
        sub_end(s, dc_sse_event_format(0, "dropped", parts, lens, 1));
        return;
    }
    dc__sse_sub_push(s, e);
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
    dc_list_node_t link;  /* in the worker's fan_queue_t */
} fan_msg_t;

/* The subscriber after `s` in its channel's list for worker `wid`, or NULL. */
static dc_sse_sub_t *sub_next(dc_sse_channel_t *ch, unsigned wid, dc_sse_sub_t *s)
{
    dc_list_node_t *n = dc_list_next(&ch->subs[wid], &s->link);
    return n != NULL ? dc_container_of(n, dc_sse_sub_t, link) : NULL;
}

static fan_msg_t *fan_first(fan_queue_t *q)
{
    dc_list_node_t *n = dc_list_first(&q->jobs);
    return n != NULL ? dc_container_of(n, fan_msg_t, link) : NULL;
}

static void on_fan_idle(uv_idle_t *h);

static void fan_run(fan_queue_t *q)
{
    size_t budget = FAN_SLICE;
    fan_msg_t *j;
    while ((j = fan_first(q)) != NULL && budget > 0) {
        while (j->cursor != NULL && budget > 0) {
            dc_sse_sub_t *s = j->cursor;
            j->cursor = sub_next(j->ch, j->worker, s); /* before: delivering may end s's request */
            sub_deliver(s, j->ev);
            budget--;
        }
        if (j->cursor != NULL)
            break;
        dc_list_remove(&j->link);
        dc_sse_event_release(j->ev);
        dc__sse_channel_release(j->ch);
        free(j);
    }
    if (!dc_list_empty(&q->jobs))
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
    dc_list_node_t *first = dc_list_first(&j->ch->subs[j->worker]);
    j->cursor = first != NULL ? dc_container_of(first, dc_sse_sub_t, link) : NULL;
    dc_list_push_back(&q->jobs, &j->link);
    if (fan_first(q) == j)
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
    f->ch = dc__sse_channel_ref(ch);
    f->ev = dc_sse_event_ref(ev);
    f->worker = worker;
    return f;
}

/* From the home worker: every worker's subscribers get `ev`. */
void dc__sse_broadcast(dc_sse_channel_t *ch, dc_sse_event_t *ev)
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

/* ---- subscribers leave ---- */

void dc_sse_detach(dc_sse_sub_t *s)
{
    dc_sse_channel_t *ch = s->ch;
    unsigned wid = s->r->ctx.worker->id;
    dc_list_node_t *n;
    dc_list_foreach (n, &ch->hub->fanq[wid].jobs) {
        fan_msg_t *j = dc_container_of(n, fan_msg_t, link);
        if (j->cursor == s)
            j->cursor = sub_next(ch, wid, s);
    }
    dc_list_remove(&s->link);
    sub_release_queue(s);
    sub_release_sending(s);
    /* the access log: the upstream attempts and time this instance spent on the channel while the
     * request was subscribed (its polls), and the tier of the last one */
    s->r->attempts = (unsigned)(atomic_load(&ch->up_fetches) - s->up_fetches0);
    s->r->upstream_us = atomic_load(&ch->up_us) - s->up_us0;
    s->r->tier = atomic_load(&ch->up_tier);
    s->r->sse = NULL;
    s->r = NULL;
    atomic_fetch_sub(&ch->nsubs, 1);
    atomic_fetch_sub(&dc__sse_stats.subscribers, 1);
    dc__sse_channel_release(ch);
    free(s);
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
            dc_list_node_t *node;
            dc_list_foreach (node, &ch->subs[w->id]) {
                dc_sse_sub_t *s = dc_container_of(node, dc_sse_sub_t, link);
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
    dc_sse_t *hub = dc__sse_hub;
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

void dc_sse_worker_finish(dc_worker_t *w)
{
    dc_sse_t *hub = dc__sse_hub;
    if (hub == NULL)
        return;
    fan_queue_t *q = &hub->fanq[w->id];
    dc_list_node_t *n;
    while ((n = dc_list_pop_front(&q->jobs)) != NULL) { /* no subscriber is left: what is queued only releases */
        fan_msg_t *j = dc_container_of(n, fan_msg_t, link);
        DC_ASSERT(j->cursor == NULL);
        dc_sse_event_release(j->ev);
        dc__sse_channel_release(j->ch);
        free(j);
    }
    if (q->ready) {
        q->ready = false;
        uv_close((uv_handle_t *)&q->idle, NULL); /* the queue lives in the hub, freed after the loops */
    }
}
