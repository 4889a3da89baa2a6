/*
 * A worker thread: its own uv loop, h2o context, listening sockets (SO_REUSEPORT), curl multi and
 * metrics. Everything in a dc_worker_t is touched only by its own thread, except the `inbox`
 * (mutex-protected) through which the main thread posts a new snapshot, a drain, a stop or the
 * finish, and the metrics block (single-writer counters read by the admin endpoint).
 *
 * This header is the per-worker context of the runtime layer (proxy/README.md): the modules above
 * it (http, sse) reach their worker through it. worker.c, which runs the thread and starts the
 * modules' per-worker state, is server wiring and may know every module.
 *
 * Teardown (after the drain, or at the drain timeout's stop), in two steps so that no thread ever
 * posts to a worker whose inbox is closed:
 *   close   the worker closes its listeners, shuts every client socket down (h2o then closes each
 *           connection, disposing its requests as on a client disconnect), retires the event-stream
 *           channels it polls, aborts its curl transfers and closes its Redis connections; once it
 *           has no request, connection, channel or transfer left it tells the server (quiet) and
 *           keeps running its loop, since other workers may still post to it until they are quiet.
 *   finish  when every worker is quiet the server posts the finish: the worker closes its inbox and
 *           timers, disposes its h2o context, runs its loop until no handle is left, frees the
 *           fleet, closes the loop and exits (dc_server_worker_exited).
 */
#ifndef DC_SERVER_WORKER_H
#define DC_SERVER_WORKER_H

#include <h2o.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "cache/store.h"
#include "core/mailbox.h"
#include "core/metrics.h"
#include "inflight/inflight.h"
#include "server/snapshot.h"
#include "upstream/curl_uv.h"

#define DC_WORKER_MAGIC 0x574f524bu /* "WORK" */

typedef struct dc_server dc_server_t;

typedef struct dc_worker_listener {
    uv_tcp_t handle;
    struct dc_worker *worker;
    h2o_accept_ctx_t *accept_ctx;
    int fd;
    bool open;
} dc_worker_listener_t;

typedef struct dc_worker {
    uint32_t magic;
    unsigned id;
    dc_server_t *server;
    pthread_t thread;
    uv_loop_t loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_plain;
    h2o_accept_ctx_t accept_tls;
    dc_worker_listener_t *listeners;
    size_t nlisteners;
    dc_curl_loop_t curl;
    dc_snapshot_t *snap;        /* this worker's reference to the current snapshot */
    dc_cache_t *cache;          /* process-wide, owned by the server */
    dc_inflight_t *inflight;    /* process-wide, owned by the server */
    struct dc_limiter *limiter; /* process-wide, owned by the server */
    struct dc_fleet *fleet;     /* this worker's Redis connection (NULL without redis:) */
    struct dc_h2guard *h2guard; /* HTTP/2 abuse guard state (http/h2guard.h), created on first use */
    dc_worker_metrics_t metrics;
    uint32_t reqid_prefix;
    uint64_t reqid_counter;
    bool draining;
    bool closing; /* teardown began (see above) */
    bool quiet_reported;
    size_t nconns;                         /* client connections accepted and not yet closed (uv handles) */
    uv_timer_t drain_timer;                /* the drain's, then the teardown's progress check */
    uv_prepare_t h2_probe;                 /* until the first HTTP/2 connection: finds libh2o's write-buffer cache */
    h2o_buffer_prototype_t *h2_wbuf_proto; /* that cache (per thread), emptied at exit */

    /* inbox, written by the main thread */
    pthread_mutex_t inbox_lock;
    uv_async_t inbox_async;
    dc_snapshot_t *inbox_snap;
    bool inbox_drain;
    bool inbox_stop;
    bool inbox_finish;
    dc_msg_t *inbox_head, *inbox_tail; /* cross-thread messages (in-flight wake-ups) */
} dc_worker_t;

/* The worker that owns an h2o context (every request knows its context). */
static inline dc_worker_t *dc_worker_from_ctx(h2o_context_t *ctx)
{
    dc_worker_t *w = (dc_worker_t *)((char *)ctx - offsetof(dc_worker_t, ctx));
    return w;
}

/* Prepare a worker (main thread): takes a reference to `snap` and the listening fds. */
void dc_worker_init(dc_worker_t *w, dc_server_t *server, unsigned id, dc_snapshot_t *snap, h2o_globalconf_t *gconf,
                    SSL_CTX *ssl_ctx, const int *plain_fds, size_t nplain, const int *tls_fds, size_t ntls,
                    dc_cache_t *cache, dc_inflight_t *inflight, struct dc_limiter *limiter);
int dc_worker_start(dc_worker_t *w);
/* Main thread -> worker messages. */
void dc_worker_post_snapshot(dc_worker_t *w, dc_snapshot_t *snap); /* takes a new reference */
void dc_worker_post_drain(dc_worker_t *w);
void dc_worker_post_stop(dc_worker_t *w);
void dc_worker_post_finish(dc_worker_t *w); /* once every worker is quiet; the last message */
void dc_worker_join(dc_worker_t *w);
/* Queue a message to run on worker `target` (a dc_worker_t *). Callable from any thread. */
void dc_worker_post(void *target, dc_msg_t *msg);

/* libh2o keeps freed pool chunks and socket buffers in per-thread caches (up to 16 of each) that
 * 2.2.5 offers no call to empty; a thread that used h2o and is about to end frees them with this.
 * h2_wbuf (may be NULL): the thread's HTTP/2 write-buffer cache, emptied as well. */
void dc_worker_free_h2o_thread_caches(h2o_buffer_prototype_t *h2_wbuf);

/* A fresh request id written into buf (at least 24 bytes); returns its length. */
size_t dc_worker_next_request_id(dc_worker_t *w, char *buf);

#endif
