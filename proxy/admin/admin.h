/*
 * The admin listener: GET /health (JSON) and GET /metrics (Prometheus text), served by its own h2o
 * context on the main thread's loop, so a busy worker never delays a health check.
 * It reads process state only through the source callbacks below (filled in by the server, which
 * wires the modules together) and the metrics module (whose families the modules registered
 * themselves): it includes no module that owns process-wide state (proxy/README.md).
 */
#ifndef DC_ADMIN_ADMIN_H
#define DC_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cache/store.h"
#include "server/snapshot.h"

/*
 * The largest admin request body (a purge order is a few hundred bytes). libh2o buffers request
 * bodies whole before a handler runs, so this is its max_request_entity_size for the admin
 * listener: a larger Content-Length is answered 413 (JSON) as soon as the head is read, a chunked
 * body as soon as it outgrows the cap, and the connection is closed without reading further.
 */
#define DC_ADMIN_MAX_BODY (64 * 1024)

typedef struct dc_admin dc_admin_t;

typedef struct dc_admin_source {
    /* A new reference to the current snapshot (the admin releases it). */
    dc_snapshot_t *(*current_snapshot)(void *ctx);
    unsigned (*nworkers)(void *ctx);
    /* "ok" or "draining" */
    const char *(*state)(void *ctx);
    /* The fleet (asked only when the config has redis:): "up", "partial" or "down"; and the live
     * instances last seen in Redis (0 without Redis). */
    const char *(*redis_state)(void *ctx);
    unsigned (*instances)(void *ctx);
    /* Event-stream channels and connected subscribers. */
    void (*streams)(void *ctx, uint64_t *channels, uint64_t *subscribers);
    /* Send a purge order (already applied here) to every other instance: the message body is the
     * purge kind byte then its argument. Returns false when there is no fleet (stays local). */
    bool (*broadcast_purge)(void *ctx, uint64_t at_ms, const char *body, size_t len);
    /* The i-th plugin instance of `snap`: instance name, plugin name, version; false past the last
     * (may be NULL: no plugins section in /health). */
    bool (*plugin_at)(void *ctx, const dc_snapshot_t *snap, size_t i, const char **name, const char **plugin,
                      const char **version);
    dc_cache_t *cache;
    void *ctx;
} dc_admin_source_t;

/* Serve on the listening `fd` (taken over). Returns 0 or a DC_E* code. */
int dc_admin_create(uv_loop_t *loop, int fd, const dc_admin_source_t *src, dc_admin_t **out);
/* Stop accepting (the listener closes on the loop's next turn). */
void dc_admin_close(dc_admin_t *a);
/* Free it, after dc_admin_close, once the loop has closed the listener and every admin connection
 * and has returned (h2o_context_dispose runs the loop: never call this from a loop callback). */
void dc_admin_destroy(dc_admin_t *a);

/* Render /health's JSON (caller frees). Exposed for tests. */
char *dc_admin_health_json(const dc_admin_source_t *src);

#endif
