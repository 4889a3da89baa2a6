/*
 * Internal to sse/ (never included outside it): the types and helpers its three files share.
 *   sse.c      the public face: the hub, metrics, subscribing (channel key, first events), teardown
 *   channel.c  channels: the registry, references, the home worker's poll (through the cache and the
 *              in-flight table), the fleet lease and relay, emitting events into the ring
 *   fanout.c   subscribers: each one's bounded queue and output, the per-worker fan-out of an
 *              event, detach, drain
 * Threads: as sse.h says (registry and ring under mutexes; subs[i] and fanq[i] on worker i only; the
 * poll state on the home worker only).
 */
#ifndef DC_SSE_SSE_PRIVATE_H
#define DC_SSE_SSE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/list.h"
#include "core/refcount.h"
#include "http/request.h"
#include "inflight/inflight.h"
#include "redis/redis.h"
#include "server/worker.h"
#include "sse/event.h"
#include "sse/sse.h"

#define NBUCKETS 256
#define SUB_QMAX 256  /* events queued per subscriber (bytes are bounded separately) */
#define SEND_BATCH 16 /* events handed to h2o per send */
#define CHANNEL_MAGIC 0x53534543u

typedef struct dc_sse_channel dc_sse_channel_t;

struct dc_sse_sub {
    dc_request_t *r; /* a reference while attached; NULL once detached */
    dc_sse_channel_t *ch;
    dc_list_node_t link; /* in ch->subs[worker] */
    dc_sse_event_t *q[SUB_QMAX];
    size_t qhead, qn, qbytes, qmax_bytes;
    dc_sse_event_t *sending[SEND_BATCH];
    size_t nsending;
    uint64_t last_id; /* highest id queued: events arriving twice (ring + dc__sse_broadcast) are skipped */
    bool send_inflight, dropping, final_sent;
    uint64_t up_fetches0, up_us0; /* the channel's upstream totals when it subscribed (access log) */
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
    /* this instance's upstream work for the channel (its polls' attempts, time to head, last tier):
     * written by the home worker, read by subscribers' workers for their access log lines */
    _Atomic uint64_t up_fetches, up_us;
    _Atomic unsigned up_tier;

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

    dc_list_t *subs; /* [nworkers]: subscribers through s->link (newest first), each touched only by its worker */
};

typedef struct fan_queue { /* one per worker, touched only by that worker */
    dc_list_t jobs;        /* fan_msg_t through j->link, in order */
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

extern dc_sse_t *dc__sse_hub; /* set once at start, before workers run */

/* Process-wide figures (dc_sse_get_stats). */
typedef struct dc__sse_stats {
    _Atomic uint64_t channels, subscribers, events, drops, polls;
    atomic_bool trim_due; /* a channel retired with no subscriber left anywhere */
} dc__sse_stats_t;
extern dc__sse_stats_t dc__sse_stats;

/* channel.c */
dc_sse_channel_t *dc__sse_channel_ref(dc_sse_channel_t *ch);
void dc__sse_channel_release(dc_sse_channel_t *ch);
/* The channel for this key (takes over the heap `key`), created with `w` as its home when absent.
 * Returns a new reference, with nsubs already counted for the caller. */
dc_sse_channel_t *dc__sse_channel_get(dc_worker_t *w, dc_snapshot_t *snap, const dc_config_stream_t *st,
                                      const dc_config_cache_rule_t *rule, char *key, size_t key_len, const char *query,
                                      size_t qlen);

/* fanout.c */
/* Queue `e` (a reference is taken) for subscriber s and send what it can; skips an event id already queued. */
void dc__sse_sub_push(dc_sse_sub_t *s, dc_sse_event_t *e);
/* From the home worker: every worker's subscribers of ch get `ev`. */
void dc__sse_broadcast(dc_sse_channel_t *ch, dc_sse_event_t *ev);

#endif
