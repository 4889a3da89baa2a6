/*
 * Live streams (streams: in the config): Server-Sent Events fed by one upstream poll per channel.
 *
 * A channel is one stream path plus one canonical query (GET /jup/stream/price?ids=b,a and
 * ?ids=a,b are the same channel when the route's cache rule sorts `ids`). Channels are
 * process-wide: the worker where the first subscriber arrived is the channel's home and runs its
 * poll timer; subscribers on any worker get each event through their worker's inbox, from one
 * formatted, reference-counted buffer (no copy per subscriber). A channel lives while it has
 * subscribers; the home retires it at its next tick after the last one leaves.
 *
 * Polls go through the route's cache and in-flight table (dc_fill_start): a stream and plain GETs
 * for the same key share one upstream call, and the upstream budget applies. Upstream errors
 * become `event: error` (the stream stays open) and the poll backs off (x2 per error, up to 30 s).
 *
 * Each subscriber has a bounded queue (max_subscriber_buffer bytes): one that falls behind is sent
 * a final `event: dropped` and ended, so a stalled client never grows memory. Heartbeat comments
 * go out when a channel has been quiet for `heartbeat`. Last-Event-ID resumes from a ring of the
 * last DC_SSE_RING events when it can, else the client gets the latest event.
 *
 * Threads: the registry and each channel's ring are guarded by mutexes; a channel's subscriber
 * list for worker i is only touched on worker i; the poll state only on the home worker.
 */
#ifndef DC_SSE_SSE_H
#define DC_SSE_SSE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

#define DC_SSE_RING 64

typedef struct dc_sse dc_sse_t;
typedef struct dc_sse_sub dc_sse_sub_t;
struct dc_request;

struct dc_worker;
/* The process-wide registry (owned by the server; lives until exit) over the server's workers.
 * Registers the stream operations below with the request path (dc_http_register_streams): call it
 * once at start-up, before the workers run. */
dc_sse_t *dc_sse_create(struct dc_worker *workers, unsigned nworkers);

/* Answer r (a GET on a stream path) with an event stream. Takes over the response. */
void dc_sse_subscribe(struct dc_request *r, const dc_config_stream_t *stream);
/* h2o's proceed for a stream response; and the request going away (from detach_sources). */
void dc_sse_proceed(dc_sse_sub_t *s);
void dc_sse_detach(dc_sse_sub_t *s);
/* Worker draining (on that worker): end each of its subscribers with a final `event: close`. The
 * registry lock is held only to collect them, never while writing to a socket. */
void dc_sse_worker_drain(struct dc_worker *w);

/* Worker teardown, on that worker. close: end its subscribers (as drain), retire every channel
 * homed on it (poll stopped, fleet subscription dropped, timer closed); channels_homed counts those
 * still registered (0 after close). finish, once no worker can post to it any more: drop what its
 * fan-out queue still holds and close the queue's handle. destroy (main thread, after every
 * worker's loop has closed): free the registry, which must be empty. */
void dc_sse_worker_close(struct dc_worker *w);
size_t dc_sse_worker_channels(struct dc_worker *w);
void dc_sse_worker_finish(struct dc_worker *w);
void dc_sse_destroy(dc_sse_t *hub);

/* Main thread: true once after the last subscriber anywhere left (a channel retired with none
 * left) while none is there now: time to give freed memory back (malloc_trim), off the workers. */
bool dc_sse_trim_due(void);

typedef struct dc_sse_stats {
    uint64_t channels, subscribers, events, drops, polls;
} dc_sse_stats_t;
void dc_sse_get_stats(dc_sse_stats_t *out);
/* Add the dexcache_sse_* families to /metrics (core/metrics.h source; once, at start-up). */
void dc_sse_metrics_register(void);

#endif
