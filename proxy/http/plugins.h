/*
 * Plugins plug into the request path here, from the layer above (plugin/, which owns the loaded
 * shared objects and their instances). That module registers its operations once at start-up,
 * before any worker runs; http calls them only for a route whose runtime has a plugin chain
 * (dc_route_rt_t.plugins != NULL), so a route without plugins pays one pointer check per hook
 * point and nothing else.
 *
 * Hook points (design "Plugins"):
 *   on_request  after routing, before the client limit
 *   cache_key   after the cache key is built, before the lookup (cacheable requests only)
 *   view_claim  right after cache_key: is this a view of a cached source object (r->view)?
 *   view_fill   a view request missed its own key: the plugin module renders it from the source
 *               instead of an upstream fetch (lookup, collapsing and serving stay http's)
 *   on_deliver  before the response head leaves (an h2o filter: hits, misses, pass-through, errors)
 */
#ifndef DC_HTTP_PLUGINS_H
#define DC_HTTP_PLUGINS_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

typedef struct dc_http_plugin_ops {
    /* Run the chain's on_request for live request r. Returns true when r goes on now; false when
     * it was answered, or is suspended: then the module later calls dc_http_plugins_continue(r)
     * (or answers it) on r's worker. */
    bool (*on_request)(dc_request_t *r, const void *chain);
    /* The chain's cache_key: may extend the key (dc_request_key_append). false: r was answered. */
    bool (*cache_key)(dc_request_t *r, const void *chain);
    /* Before r's response head leaves (r->req live, its status and headers set). */
    void (*on_deliver)(dc_request_t *r, const void *chain);
    /* r (r->plugin != NULL) is being disposed: the client is gone or the answer is done. */
    void (*dispose)(dc_request_t *r);
    /* Views: after cache_key, before the lookup of a cacheable request. Sets r->view when one of
     * the chain's plugins answers it from a source object; false when r was answered (a bad view
     * query: 400). */
    bool (*view_claim)(dc_request_t *r, const void *chain);
    /* A view request (r->view) missed its own key: answer it, and finish `flight` (the view key's
     * flight this request leads; NULL: a fetch of its own that nobody joins), from the source. */
    void (*view_fill)(dc_request_t *r, dc_flight_t *flight);
} dc_http_plugin_ops_t;

/* Start-up only. `ops` must stay valid for the life of the process. */
void dc_http_register_plugins(const dc_http_plugin_ops_t *ops);
/* Whether on_deliver is wanted at all (the filter's one check on every response): set once any
 * loaded plugin has an on_deliver hook; never cleared. */
void dc_http_plugins_want_deliver(void);

/* After the chain's on_request: the client limit, then the cache or pass-through. r is live. */
void dc_http_plugins_continue(dc_request_t *r);

/* Append " ~<tag>=<bytes>" to r->key (bytes escaped: no space, no control byte, no '%' unescaped)
 * and recompute r->hash. Keys without plugin bytes are unchanged, so the same request on a route
 * without plugins keeps its key. */
void dc_request_key_append(dc_request_t *r, const char *tag, const void *bytes, size_t len);

#endif
