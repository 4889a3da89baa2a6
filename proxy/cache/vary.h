/*
 * Vary (RFC 9111 4.1), the pure part: the name list of a response's Vary, the normalised values of
 * the request headers it names, and the secondary cache key of a variant. No I/O, no allocation
 * (callers hand buffers in).
 *
 * A URL whose answers carry Vary (other than Accept-Encoding, which dexcache handles itself by
 * making the encodings) is stored as a "vary record" under the URL's key (the primary key) and one
 * entry per variant under a secondary key:
 *     PRIMARY ' ' "{vary}" { ' ' NAME ( ':' VALUE | <nothing> ) }*
 * one segment per name of the record, in the record's (sorted) order: "NAME:VALUE" when the request
 * had the header (VALUE normalised, then escaped like a key_headers value, so it holds no space or
 * control byte), "NAME" alone when it did not (absent differs from present-but-empty "NAME:").
 * No primary key contains " {" (paths and queries are %-encoded, key_headers names are tokens), so
 * the marker cannot be forged and dc_vary_primary_len() finds the primary key back.
 *
 * Normalisation of a request header's value (the "transformations" RFC 9111 4.1 allows), decided
 * header by header, conservatively:
 *  - every header: several field lines are combined with ", " in the order received; leading and
 *    trailing whitespace is dropped.
 *  - known list headers (Accept, Accept-Charset, Accept-Language): whitespace around the list's
 *    commas and around ';' and '=' of element parameters is dropped (outside quoted strings);
 *    empty elements are dropped; Accept-Charset and Accept-Language are lowercased (charset names
 *    and language tags are case-insensitive); Accept keeps its case (parameter values may not be).
 *  - list order is never changed: for Accept* headers the q-values decide, but elements of equal
 *    weight are commonly ranked by their order, so "en, fr" and "fr, en" are different variants.
 *  - any other header: only the two rules of every header (its syntax is unknown to us, so inner
 *    whitespace may be significant).
 */
#ifndef DC_CACHE_VARY_H
#define DC_CACHE_VARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most names a Vary list may have for the response to be stored (more: not stored). */
#define DC_VARY_MAX_NAMES 8
/* The longest name list (comma-joined) we store. */
#define DC_VARY_NAMES_MAX 256
/* The longest normalised request header value a secondary key takes (longer: no key). */
#define DC_VARY_VALUE_MAX 4096
/* The marker between the primary key and the variant's segments. */
#define DC_VARY_MARKER " {vary}"
#define DC_VARY_MARKER_LEN 7

/* Flags of dc_vary_names_parse(). */
#define DC_VARY_STAR 1u     /* Vary: * (never matches: not stored) */
#define DC_VARY_TOO_MANY 2u /* more than DC_VARY_MAX_NAMES names, or a list over DC_VARY_NAMES_MAX */
#define DC_VARY_INVALID 4u  /* an element that is not a token */
#define DC_VARY_ENCODING 8u /* Accept-Encoding was named (left out of the list) */

/*
 * The names of the Vary field lines `values[i]` (lens[i] bytes each), as one canonical list: lower
 * case, de-duplicated, sorted (byte order), joined with ',' and without Accept-Encoding. Written to
 * out (cap >= DC_VARY_NAMES_MAX + 1, NUL-terminated); returns its length (0 = nothing to vary on)
 * and ORs DC_VARY_* into *flags. When *flags has STAR, TOO_MANY or INVALID, out is unusable.
 */
size_t dc_vary_names_parse(const char *const *values, const size_t *lens, size_t nvalues, char *out, size_t cap,
                           unsigned *flags);

/* Number of names in a canonical list (0 for ""). */
size_t dc_vary_names_count(const char *names, size_t len);

/*
 * The normalised value of request header `name` (lower case) from its field lines (in order).
 * Writes at most cap bytes (no NUL) and returns the length, or (size_t)-1 when it does not fit.
 * The result is never longer than the sum of lens plus 2 * (nvalues - 1).
 */
size_t dc_vary_value_normalize(const char *name, size_t nlen, const char *const *values, const size_t *lens,
                               size_t nvalues, char *out, size_t cap);

/* Gives the field lines of request header `name` (lower case): up to max of them into vals/lens,
 * returns how many there are (0 = absent). */
typedef size_t (*dc_vary_get_fn)(void *ctx, const char *name, size_t nlen, const char **vals, size_t *lens, size_t max);

/* An upper bound of the secondary key's length for a primary key of plen bytes and requests
 * headers of `hdr_bytes` bytes in total (names and values), plus the NUL. */
size_t dc_vary_key_bound(size_t plen, size_t names_len, size_t hdr_bytes, size_t nlines);

/*
 * The secondary key (see above) for a request: primary key, then a segment per name of the
 * canonical list `names`, values read through `get`. Writes into out (NUL-terminated) and returns
 * the length, or -1 when cap is too small (use dc_vary_key_bound), a header has more than 32
 * field lines or a normalised value is longer than DC_VARY_VALUE_MAX (the caller then does not
 * use the cache for this request).
 */
long dc_vary_key_build(const char *primary, size_t plen, const char *names, size_t names_len, dc_vary_get_fn get,
                       void *ctx, char *out, size_t cap);

/* Length of the primary key inside `key` (all of it when it is not a secondary key). */
size_t dc_vary_primary_len(const char *key, size_t len);

/* The store's hash of a secondary key: its own hash for the buckets, with the shard bits of the
 * primary key's hash, so that a record and its variants share a shard (one lock covers them). */
uint64_t dc_vary_hash(uint64_t primary_hash, uint64_t own_hash);

#endif
