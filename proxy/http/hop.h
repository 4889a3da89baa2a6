/* Hop-by-hop header rules (RFC 9110 7.6.1), pure. Names are compared case-insensitively. */
#ifndef DC_HTTP_HOP_H
#define DC_HTTP_HOP_H

#include <stdbool.h>
#include <stddef.h>

/* Connection, Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
 * Transfer-Encoding, Upgrade. */
bool dc_hop_is_hop_by_hop(const char *name, size_t len);
/* Headers that say who the client is or which URL/host/method it "really" asked for (Forwarded,
 * X-Forwarded-*, X-Real-IP, True-Client-IP, CF-Connecting-IP, X-Original-URL, X-Rewrite-URL,
 * X-Original-Host, X-Host, ...). A client must not choose them: they are never passed upstream as
 * sent (dexcache sets X-Forwarded-For/-Proto/-Host and Forwarded itself). */
bool dc_hop_is_spoofable(const char *name, size_t len);
/* The request headers a cacheable request forwards by default (the answer is shared, so only
 * headers that do not change it, or that every client of a DEX API sends alike): Accept,
 * Content-Type, User-Agent, traceparent, tracestate. */
bool dc_hop_cache_default_forward(const char *name, size_t len);
/* True when `name` is one of the comma-separated tokens of a Connection header value. */
bool dc_hop_listed_in_connection(const char *conn_value, size_t conn_len, const char *name, size_t len);

#endif
