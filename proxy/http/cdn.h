/*
 * Headers toward CDNs and browsers (design: "Response headers"), built from a route's `cdn:`
 * block (pure). When a route has a cdn block, cacheable answers carry:
 *   Cache-Control:     public, max-age=M, s-maxage=S[, stale-while-revalidate=W][, stale-if-error=E]
 *                      (replacing the origin's; negative answers use the rule's negative_ttl for
 *                      both ages so a CDN never keeps a 404 longer than dexcache does)
 *   CDN-Cache-Control: max-age=S[, stale-while-revalidate=W][, stale-if-error=E]   (cdn_cache_control)
 *   Surrogate-Key:     tags separated by spaces   (Fastly/Varnish style purge keys)
 *   Cache-Tag:         tags separated by commas   (Cloudflare purge by tag)
 * Tags are the route name (its prefix without the slash) and the values of cdn.tag_params.
 */
#ifndef DC_HTTP_CDN_H
#define DC_HTTP_CDN_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

typedef struct dc_cdn_headers {
    char cache_control[192];
    char cdn_cache_control[160]; /* "" when not configured */
    char *surrogate_key;         /* heap, "" when no tags; free with dc_cdn_headers_dispose */
    char *cache_tag;
} dc_cdn_headers_t;

/* Fill `out` for an answer of `route` stored under `rule`; `negative` = stored under negative_ttl. */
void dc_cdn_headers_build(const dc_config_cdn_t *cdn, const dc_config_cache_rule_t *rule, bool negative,
                          const char *const *tags, size_t ntags, dc_cdn_headers_t *out);
void dc_cdn_headers_dispose(dc_cdn_headers_t *h);

#endif
