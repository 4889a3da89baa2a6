/*
 * Which upstream response headers reach clients and which are stored in cache entries (pure).
 * Dropped: hop-by-hop headers and names listed in the response's Connection header, framing and
 * per-hop headers h2o or dexcache write themselves (Content-Length, Date, Server, Via, Age),
 * Dexcache-Cache-Control (RFC 9213: targeted at dexcache alone, never passed on), and
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

/* Fill the policy's view of a response from its status and headers. `complete` is set true and
 * response_delay_ms 0 (the caller knows them). Cache-Control, Dexcache-Cache-Control and
 * CDN-Cache-Control are all parsed (a targeted field with an invalid line is absent); Date and Age:
 * the first line; Last-Modified / ETag make has_validator. */
void dc_resphdr_policy_view(int status, const dc_fetch_header_t *hs, size_t n, dc_policy_response_t *out);
/* True when header h is named by a qualified no-cache="..." / private="..." in the field `src`
 * (Cache-Control, Dexcache-Cache-Control or CDN-Cache-Control) among hs: such a header is not
 * stored (RFC 9111 5.2.2.4, 5.2.2.7). Only worth asking when the decision says strip_fields. */
bool dc_resphdr_cc_strips(const dc_fetch_header_t *hs, size_t n, dc_cc_source_t src, const dc_fetch_header_t *h);

#endif
