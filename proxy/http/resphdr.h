/*
 * Which upstream response headers reach clients and which are stored in cache entries (pure).
 * Dropped: hop-by-hop headers and names listed in the response's Connection header, framing and
 * per-hop headers h2o or dexcache write themselves (Content-Length, Date, Server, Via, Age), and
 * for stored entries also Set-Cookie and the X-Cache/Cache-Status of any cache upstream of us. The
 * origin's ETag is stored (as the validator for revalidation) but never replayed: clients get ours.
 */
#ifndef DC_HTTP_RESPHDR_H
#define DC_HTTP_RESPHDR_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/policy.h"
#include "upstream/fetch.h"

/* True when header `h` of a response whose Connection header is conn (may be NULL) is forwarded. */
bool dc_resphdr_forward(const dc_fetch_header_t *h, const char *conn, size_t conn_len);
/* True when it is kept in a stored entry. */
bool dc_resphdr_store(const dc_fetch_header_t *h, const char *conn, size_t conn_len);
/* Value of the Connection and Via headers among hs (NULL when absent). */
const char *dc_resphdr_find(const dc_fetch_header_t *hs, size_t n, const char *name, size_t *len);

/* Fill the policy's view of a response from its status and headers. `complete` is set true. */
void dc_resphdr_policy_view(int status, const dc_fetch_header_t *hs, size_t n, dc_policy_response_t *out);

#endif
