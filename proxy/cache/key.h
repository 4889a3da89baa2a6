/*
 * Cache key normalisation (pure, no I/O; working memory is on the stack up to 64 parameters and
 * 128 set items, on the heap beyond that).
 *
 * The key of a request is   METHOD ' ' ROUTE_PREFIX PATH [ '?' CANONICAL_QUERY ]
 * e.g. "GET /jup/price/v3?ids=A%2CB" where
 *  - METHOD: HEAD is keyed as GET (a HEAD is answered from the GET entry);
 *  - PATH: the upstream path after the route prefix, with percent-encoding made canonical
 *    (unreserved characters decoded, other escapes upper-case hex), never decoded "/" (%2F stays);
 *  - CANONICAL_QUERY: parameters percent-decoded ("+" = space), then re-encoded canonically
 *    (unreserved A-Z a-z 0-9 - . _ ~ literal, everything else %XX upper-case, space = %20),
 *    sorted by name (byte order) and, for equal names, by value; empty query = no '?';
 *    a parameter without '=' keeps no '=' ("a" and "a=" differ);
 *  - params named in `key_sets`: the decoded value is split on ',', items are sorted and
 *    de-duplicated, empty items dropped, and re-joined with a literal ',' (each item encoded;
 *    so "%2C" and "," are the same separator); repeated occurrences of such a param are merged
 *    into one set;
 *  - params named in `ignore_params` are left out.
 * Normalising an already normalised key's query gives the same bytes (idempotent; fuzzed).
 */
#ifndef DC_CACHE_KEY_H
#define DC_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dc_cache_key_opts {
    char *const *key_sets; /* parameter names, exact match */
    size_t nkey_sets;
    char *const *ignore_params;
    size_t nignore_params;
} dc_cache_key_opts_t;

/*
 * Canonical form of a raw query string (the part after '?', without it). Writes at most `cap`
 * bytes into `out` (NUL-terminated) and returns the canonical length, or a negative DC_E* code:
 * DC_ETOOBIG when it does not fit (call again with a bigger buffer; the canonical form is never
 * longer than 3 * qlen + 1), DC_EINVAL for a malformed escape is NOT an error: a '%' not followed
 * by two hex digits is taken literally (encoded as %25).
 */
long dc_cache_query_normalize(const char *q, size_t qlen, const dc_cache_key_opts_t *opts, char *out, size_t cap);

/* Canonical form of a path (no query). Same return convention. */
long dc_cache_path_normalize(const char *p, size_t plen, char *out, size_t cap);

/*
 * Whole key: method, route prefix, and the upstream path-and-query (`pq`, everything after the
 * route prefix, starting with '/' or '?', or empty). Same return convention; the caller owns `out`.
 */
long dc_cache_key_build(const char *method, size_t mlen, const char *route_prefix, const char *pq, size_t pqlen,
                        const dc_cache_key_opts_t *opts, char *out, size_t cap);

/*
 * A request header named in a cache rule's key_headers, appended to a built key as
 *   ' ' NAME ':' VALUE
 * (NAME lowercased as configured; VALUE with '%', space, controls and non-ASCII bytes as %XX, so
 * neither can forge a separator). A request without the header keeps the plain key; several
 * occurrences append one segment each. Writes into out (cap bytes, no NUL) and returns the bytes
 * written, or 0 when cap is below dc_cache_key_header_bound().
 */
size_t dc_cache_key_add_header(char *out, size_t cap, const char *name, size_t nlen, const char *value, size_t vlen);
size_t dc_cache_key_header_bound(size_t nlen, size_t vlen);

/* An upper bound of dc_cache_key_build()'s output length for these inputs (plus the NUL). */
size_t dc_cache_key_bound(size_t mlen, size_t prefix_len, size_t pqlen);

/* Value of parameter `name` in a raw query, percent-decoded, written to out (NUL-terminated).
 * Returns its length, -1 when absent, DC_ETOOBIG when it does not fit. First occurrence wins. */
long dc_cache_query_param(const char *q, size_t qlen, const char *name, char *out, size_t cap);

/* Is every non-empty parameter of the raw query `name` (names compared percent-decoded, as the
 * cache key compares them)? True for an empty query. */
bool dc_cache_query_only(const char *q, size_t qlen, const char *name);

#endif
