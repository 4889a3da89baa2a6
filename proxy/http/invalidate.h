/*
 * Invalidation by unsafe methods (RFC 9111 §4.4). A request whose method is not safe (anything but
 * GET, HEAD, OPTIONS, TRACE: POST, PUT, DELETE, PATCH...) and whose answer is 2xx/3xx removes the
 * stored answers of its target URI, and of the URIs its answer's Location and Content-Location
 * name when they are on the same host and route. The keys are the GET keys those URIs have on
 * their route (the same normalisation as a request: http/lookup.c, cache/key.h), plus every
 * key_headers variant of them ("KEY " prefix). Applied here at once and, in a fleet, through the
 * purge bus (redis/bus.h) like an admin purge, stamped with this moment: copies stored before it
 * anywhere (L1 of every instance, L2) are gone, later ones stay.
 */
#ifndef DC_HTTP_INVALIDATE_H
#define DC_HTTP_INVALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

/* Does a `method` answered with `status` invalidate (RFC 9111 §4.4)? (pure) */
bool dc_invalidate_applies(const char *method, size_t mlen, int status);

/*
 * Resolve a Location / Content-Location value against the request (authority `host`, path-and-query
 * `base`): an absolute URI on the same host (case-insensitive; http or https), an absolute path, or
 * a relative reference (resolved against base's directory). Writes the path-and-query (starting
 * with '/', without fragment) into out (cap bytes, NUL-terminated) and returns its length, or -1
 * when the URI is elsewhere, unusable or does not fit. (pure)
 */
long dc_invalidate_resolve(const char *v, size_t len, const char *host, size_t host_len, const char *base,
                           size_t base_len, char *out, size_t cap);

/* The answer to r (an unsafe method on r->ctx.route) has arrived with this status and headers:
 * invalidate what it changed. No-op when dc_invalidate_applies() says no. */
void dc_http_invalidate(dc_request_t *r, int status, const dc_fetch_header_t *hs, size_t n);

#endif
