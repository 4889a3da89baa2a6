/*
 * Internal to http/: the steps of the request path, one file per concern, called from one another
 * in the order of the state machine (handler.c's comment). Every function here runs on the
 * request's worker thread; `r` is a live request (r->req != NULL) unless said otherwise.
 */
#ifndef DC_HTTP_STEPS_H
#define DC_HTTP_STEPS_H

#include <h2o.h>
#include <stdbool.h>

#include "http/request.h"

/* accesslog.c: the request's access log line (at disposal; r->req is still set). */
void dc__http_access_log(dc_request_t *r, h2o_req_t *req);

/* checks.c: 0, or the status to refuse the request with (*why says why). */
int dc__http_run_checks(dc_request_t *r, h2o_req_t *req, const char **why);

/* limit.c: start the route's per-client limit decision. Returns false when the request was answered
 * (429) at once; true when it goes on: dc__http_continue() runs (now or after Redis answered). */
bool dc__http_start_limit(dc_request_t *r);

/* handler.c: the dc_request_t of an h2o request of our path, or NULL (refused before our handler). */
dc_request_t *dc__http_request_of(h2o_req_t *req);

/* handler.c: after the limit, cacheable requests take the cache path, the rest pass through. */
void dc__http_continue(dc_request_t *r);

/* plugins.c: the registered plugin operations (http/plugins.h), for a route with a chain. */
bool dc__http_plugins_on_request(dc_request_t *r, const void *chain);
bool dc__http_plugins_cache_key(dc_request_t *r, const void *chain);
void dc__http_plugins_dispose(dc_request_t *r);
bool dc__http_plugins_view_claim(dc_request_t *r, const void *chain);
void dc__http_plugins_view_fill(dc_request_t *r, struct dc_flight *flight);
/* The on_deliver filter on the request path's pathconf. */
void dc__http_plugins_register_filter(h2o_pathconf_t *pathconf);

/* lookup.c */
void dc__http_cache_path(dc_request_t *r);
/* Look the key up in L1 (and, with may_ask_l2, in the fleet's L2) and act on what is found. */
void dc__http_cache_lookup(dc_request_t *r, bool may_ask_l2);
/* Wait in the flight for `key` with r->waiter (the wait holds a reference to r until on_release)
 * and return NULL, or, when nobody is on it yet, return the flight this request now leads. */
struct dc_flight *dc__http_join_or_lead(dc_request_t *r, const char *key, size_t len, uint64_t hash,
                                        void (*on_result)(dc_waiter_t *, dc_flight_result_t *),
                                        void (*on_release)(dc_waiter_t *));
/* Stop the request's in-flight wait deadline (at disposal, or when the wait ends). */
void dc__http_wait_timer_stop(dc_request_t *r);

/* collapse.c */
/* Lead the fill of r's key: in a fleet after the cross-instance lock (or following another
 * instance's fill), else at once. Takes over `flight`. */
/* `flight` NULL: a fetch of r's own that nobody joins (request no-store), never through the fleet. */
void dc__http_lead_fill(dc_request_t *r, dc_flight_t *flight);
/* Lead the fill of t's key for `flight`'s waiters only (no client): in a fleet after the
 * cross-instance lock, as dc__http_lead_fill does for a request. Takes over `flight`; the rest is
 * borrowed. */
void dc__http_lead_shared_fill(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                               dc_cache_entry_t *stale);
/* One background refresh of r's key (stale-while-revalidate, refresh-ahead), fleet-wide in a fleet.
 * `stale` is borrowed. */
void dc__http_start_refresh(dc_request_t *r, dc_cache_entry_t *stale);
/* Read r's key from L2 (one read per key at a time), then look it up again. */
void dc__http_ask_l2(dc_request_t *r);

#endif
