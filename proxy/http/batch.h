/*
 * Price-id batching (`batch:` on a route, for Jupiter's /price/v3 and other id-list APIs).
 *
 * A request for `ids=a,b,c` is answered from per-id cache entries: each id has the entry a
 * request for that id alone would have (same key, body {"a": <what the upstream said about a>},
 * or {} when the upstream left it out, so an absent id is remembered for the TTL). Missing ids
 * from every request on every worker within `window` are fetched together: the batcher (one per
 * route, process-wide) gathers the ids whose fetch this process leads (the in-flight table still
 * collapses each id across requests and workers), and when the window closes splits them into
 * upstream requests of at most `max` ids. Each upstream answer goes through the normal fill
 * (budget, retries, stale-if-error), and is split into per-id entries by the raw byte spans of
 * its members (cache/jsonobj.h): no re-serialisation, the bytes are the upstream's.
 *
 * The client gets one JSON object with its ids in its order, as the upstream would have answered
 * its own list. Requests with more than `max` ids are not batched (the upstream decides). In a
 * fleet, per-id entries are written to L2, and a request for a single id takes the normal path
 * (L2 read, cross-instance collapsing); the batcher itself gathers this instance's misses only.
 */
#ifndef DC_HTTP_BATCH_H
#define DC_HTTP_BATCH_H

#include <stdbool.h>

#include "config/config.h"

typedef struct dc_batcher dc_batcher_t;
struct dc_request;

/* One per batching route, shared by every worker: kept in a route slot of the snapshot
 * (server/snapshot.h), which creates it with the snapshot and destroys it with it. */
dc_batcher_t *dc_batcher_create(void);
void dc_batcher_destroy(dc_batcher_t *b);
/* Register that route slot (once, at start-up, before the first snapshot). */
void dc_batch_register(void);

/* Take over r (a cacheable GET on the route's batch path) when its id list can be batched.
 * Returns false (r untouched) when it cannot: no ids, more than `max`, or no batcher for the
 * route (dc_batch_register() not called). */
bool dc_batch_try(struct dc_request *r);

#endif
