/*
 * Vary on the request path (RFC 9111 4.1): which Vary names dexcache can store variants for, the
 * secondary key of a request under a vary record, and whether a variant handed to a waiter answers
 * its request. The pure rules (name lists, normalisation, key layout) are in cache/vary.h.
 *
 * The secondary key of a stored variant is built from the header lines the fill sent upstream
 * (what the origin saw), a request's from its own headers: the two agree because, once a URL has a
 * vary record, its fills forward the headers the record names (dc_http_vary_forwards). The first
 * fill of a URL, before any record exists, forwards only the cache path's usual headers, so its
 * variant is keyed with the others as absent: a request that sent one of them does not match it
 * and is fetched for itself (list the header in the route's forward_headers to have it sent from
 * the first request on).
 */
#ifndef DC_HTTP_VARY_H
#define DC_HTTP_VARY_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/store.h"
#include "http/request.h"

/* May a response that varies on request header `name` (lower case) be stored as variants? Not for
 * headers the cache path never forwards as the client sent them (hop-by-hop, Host, framing,
 * forwarding headers dexcache writes itself), nor credentials (Authorization, Cookie): those stay
 * uncached (Cache-Status detail=vary). `key_header` is the upstream's API-key header (may be NULL). */
bool dc_http_vary_name_ok(const char *name, size_t len, const char *key_header);
/* Every name of a canonical list dc_http_vary_name_ok? */
bool dc_http_vary_names_ok(const char *names, size_t len, const char *key_header);

/* r found the vary record `rec` under its primary key: r->key becomes the secondary key (in the
 * request's pool) and r->vary_names the record's names. False when no key can be built (a header
 * value too long): the request is then passed through. */
bool dc_http_vary_select(dc_request_t *r, const dc_cache_entry_t *rec);
/* Back to the primary key (before looking up again). */
void dc_http_vary_reset(dc_request_t *r);
/* Does the variant `e` (handed to r as a waiter) answer r's request? True for an entry that is no
 * variant. */
bool dc_http_vary_matches(dc_request_t *r, const dc_cache_entry_t *e);
/* Is request header `name` one that r's vary record names (then it is forwarded on the cache path)? */
bool dc_http_vary_forwards(const dc_request_t *r, const char *name, size_t len);
/* The secondary key of `primary` for the names list from "Name: value" header lines (heap,
 * NUL-terminated, *len set), or NULL when none can be built. */
char *dc_http_vary_key_from_lines(const char *primary, size_t plen, const char *names, size_t names_len,
                                  const char *const *lines, size_t *len);

#endif
