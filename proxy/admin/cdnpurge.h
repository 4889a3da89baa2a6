/*
 * The purge forwarder: a purge order applied at the admin listener is also sent to the CDN in front
 * of dexcache (config cdn.purge.cloudflare), so the edge drops what dexcache dropped.
 *
 * Runs on the admin's loop (the main thread) with its own libcurl multi: dc_cdnpurge_submit() only
 * queues and returns, so the admin answers as soon as the local purge is done. Orders of one kind
 * arriving within `window` go out as one call (at most DC_CDNPURGE_MAX_VALUES values; Cloudflare
 * rate-limits purge calls):
 *   POST {api}/zones/{zone}/purge_cache   Authorization: Bearer {token}
 *   {"tags":[...]} | {"files":["https://host/path?q"]} | {"prefixes":["host/path"]} | {"purge_everything":true}
 * A call answered 5xx or 429, or not answered (connect error, timeout), is retried `retries` times
 * after `backoff` doubling each time (a Retry-After wins, up to 5 minutes); other answers are final.
 * Outcomes are logged (never the token) and counted in dexcache_cdn_purges_total{result}.
 * Not thread-safe: every call is made on the thread that runs the loop.
 */
#ifndef DC_ADMIN_CDNPURGE_H
#define DC_ADMIN_CDNPURGE_H

#include <stdbool.h>
#include <uv.h>

#include "config/config.h"

#define DC_CDNPURGE_MAX_VALUES 30 /* values in one call: Cloudflare's smallest per-request limit */
#define DC_CDNPURGE_MAX_CALLS 64  /* calls sent or waiting to be retried; past it orders are dropped */

typedef enum {
    DC_CDNPURGE_FILES = 0,  /* a path with its query ("/jup/price/v3?ids=A"): sent as base_url + path */
    DC_CDNPURGE_TAGS,       /* a cache tag (the Cache-Tag values dexcache sends) */
    DC_CDNPURGE_PREFIXES,   /* a path prefix ("/jup/tokens"): sent as host + prefix */
    DC_CDNPURGE_EVERYTHING, /* the whole zone (value ignored) */
    DC_CDNPURGE_NKINDS
} dc_cdnpurge_kind_t;

typedef struct dc_cdnpurge dc_cdnpurge_t;

/* A forwarder on `loop`; registers its /metrics family on the first call in the process. */
dc_cdnpurge_t *dc_cdnpurge_create(uv_loop_t *loop);

/* Does `cfg` forward purges (cdn.purge.cloudflare present with a non-empty zone and token)? */
bool dc_cdnpurge_configured(const dc_config_t *cfg);

/* Queue one order for the CDN `cfg` names (values and settings are copied: `cfg` may go after).
 * Returns true when queued; false when `cfg` forwards nothing, the value cannot be forwarded (a path
 * not starting with '/'), or it was dropped (too many calls outstanding, closing; counted). */
bool dc_cdnpurge_submit(dc_cdnpurge_t *p, const dc_config_t *cfg, dc_cdnpurge_kind_t kind, const char *value);

/* Stop: queued orders and calls in flight or waiting to be retried are dropped (counted, logged).
 * The forwarder frees itself once the loop has closed its handles (NULL is ignored). */
void dc_cdnpurge_close(dc_cdnpurge_t *p);

#endif
