/*
 * The in-flight table: at most one upstream fetch per cache key across all worker threads.
 *
 * The first request to miss a key becomes the leader (dc_inflight_join returns LEADER and a
 * flight); later requests for the key, on any thread, join as waiters. The leader's fetch calls
 * dc_inflight_finish() exactly once with the outcome; every waiter then gets it on its own worker
 * thread, through a message, in its on_result callback.
 *
 * Waiter lifecycle (all on the waiter's worker thread except the shard-locked hand-off):
 *   WAITING  (in the flight's list)      -- finish -->  POSTED (message queued to its worker)
 *   POSTED   -- message runs -->  on_result (unless cancelled), then on_release
 *   dc_inflight_cancel(): WAITING -> removed, on_release runs now, returns true;
 *                         POSTED  -> marked cancelled, on_release runs when the message does,
 *                                    returns false (the result was already on its way).
 * The waiter struct is owned by the caller, who must keep it alive until on_release.
 */
#ifndef DC_INFLIGHT_INFLIGHT_H
#define DC_INFLIGHT_INFLIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"
#include "core/list.h"
#include "core/mailbox.h"

typedef struct dc_inflight dc_inflight_t;
typedef struct dc_flight dc_flight_t;
typedef struct dc_waiter dc_waiter_t;

typedef enum {
    DC_FLIGHT_ENTRY = 0, /* serve `entry` (stored now, or a stale copy because the origin failed) */
    DC_FLIGHT_PASS,      /* the answer is not shareable: go to the origin yourself */
    DC_FLIGHT_ERROR,     /* the origin failed and nothing can be served: answer `status` */
    DC_FLIGHT_STREAM,    /* the answer is arriving: start now with `entry`'s head, follow `growing` */
} dc_flight_outcome_t;

struct dc_growing;

/* The upstream exchange behind a result, for its receivers' access log lines (all 0: none, e.g. an
 * answer adopted from L2 or a stale copy). */
typedef struct dc_flight_upstream {
    uint64_t us;       /* from the fetch's start to its response head */
    unsigned attempts; /* attempts it made */
    unsigned tier;     /* 1-based tier that answered (0 = none) */
} dc_flight_upstream_t;

typedef struct dc_flight_result {
    dc_flight_outcome_t outcome;
    dc_cache_entry_t *entry;       /* ENTRY: a reference owned by the receiver */
    bool stale;                    /* ENTRY served stale because the origin failed */
    bool shared_only;              /* ENTRY is the leader's answer, shared with waiters but not stored */
    int fwd_status;                /* what the origin answered (0 = no answer), for Cache-Status */
    const char *detail;            /* PASS: why a fill's answer is not shareable (static: "too-big",
                                    * "content-encoding", "cors-origin" or a policy verdict name such as
                                    * "no-store"); NULL = not said (waiters only look again) */
    int status;                    /* ERROR: status to answer (502, 504) */
    const char *message;           /* ERROR: static message */
    unsigned retry_after_s;        /* ERROR: Retry-After to send (the upstream budget's next slot), 0 = none */
    char upstream[64];             /* ERROR: the failing upstream's name, "" = not said */
    char cause[256];               /* ERROR: what failed at the transport, without secrets; "" = not said */
    struct dc_growing *growing;    /* STREAM: the identity body being received (a reference owned by the receiver) */
    struct dc_growing *growing_gz; /* STREAM: the gzip body as the origin sends it, or NULL */
    dc_flight_upstream_t fetched;  /* the fetch behind it (set by the fill that produced it) */
} dc_flight_result_t;

/* Posts a message to a worker thread (provided by the server; `target` is opaque here). */
typedef void (*dc_inflight_post_fn)(void *target, dc_msg_t *msg);

struct dc_waiter {
    /* set by the caller before dc_inflight_join */
    void (*on_result)(dc_waiter_t *w, dc_flight_result_t *res); /* takes over res->entry */
    void (*on_release)(dc_waiter_t *w);
    void *target; /* the waiter's worker */
    void *data;
    /* private */
    dc_msg_t msg;
    dc_list_node_t link; /* in the flight's waiters (reset on each join: the struct may be reused) */
    dc_flight_t *flight; /* valid while state is WAITING (checked under the shard lock) */
    unsigned shard;
    int state;
    bool cancelled;
    dc_flight_result_t result;
};

typedef enum { DC_INFLIGHT_LEADER = 0, DC_INFLIGHT_JOINED = 1 } dc_inflight_role_t;

dc_inflight_t *dc_inflight_create(dc_inflight_post_fn post);
void dc_inflight_destroy(dc_inflight_t *t);

/*
 * Lead or join the fetch for `key`. LEADER: *flight is set and `w` is not used; the caller must
 * eventually call dc_inflight_finish(*flight). JOINED: `w` is queued.
 * `w` may be NULL to only test-and-lead (background refresh): then JOINED means someone else is
 * already fetching and nothing is queued.
 */
dc_inflight_role_t dc_inflight_join(dc_inflight_t *t, const char *key, size_t len, uint64_t hash, dc_waiter_t *w,
                                    dc_flight_t **flight);
/* The leader of `f` waits for its own flight like any joiner: queue `w` on it. `f` must still be
 * live (led by the caller and not finished: the work it started runs asynchronously). The one way
 * for a leader that hands its flight's work to someone else (a fill, a batcher) to get the answer. */
void dc_inflight_wait_on(dc_inflight_t *t, dc_flight_t *f, dc_waiter_t *w);
/* Is a flight for `key` under way right now? (A hint: it may end the moment after.) */
bool dc_inflight_active(dc_inflight_t *t, const char *key, size_t len, uint64_t hash);
/* Number of waiters queued right now on a flight (for Cache-Status "collapsed" on the leader). */
size_t dc_inflight_waiters(dc_inflight_t *t, dc_flight_t *f);

/* The answer will stream (a large body being received): every waiter now, and every request that
 * joins until dc_inflight_finish, gets `res` (outcome STREAM; entry and growing are referenced per
 * receiver, the caller keeps its own). The flight stays registered until finish. */
void dc_inflight_stream(dc_inflight_t *t, dc_flight_t *f, const dc_flight_result_t *res);

/* Hand `res` to every waiter and free the flight. res->entry (may be NULL) stays the caller's:
 * each waiter receives its own reference. Callable from any thread. */
void dc_inflight_finish(dc_inflight_t *t, dc_flight_t *f, const dc_flight_result_t *res);

/* Drop the references a result carries (entry, growing bodies) when the receiver does not use them. */
void dc_flight_result_release(dc_flight_result_t *res);
/* See the lifecycle above. Call on the waiter's worker thread. */
bool dc_inflight_cancel(dc_inflight_t *t, dc_waiter_t *w);

/* Number of keys being fetched now. */
size_t dc_inflight_count(dc_inflight_t *t);

#endif
