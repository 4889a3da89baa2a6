/*
 * Content codings for cached bodies: which coding a client gets (Accept-Encoding negotiation), what
 * an origin sent (Content-Encoding), which media types are worth compressing, and the gzip / br
 * encoders and the bounded gzip decoder that turn one dc_body_t into another.
 *
 * Everything here is pure and reentrant: no globals, no logging, no I/O, so the codecs can run on
 * libuv's thread pool (uv_queue_work) while the loop thread keeps serving. Allocation failure is
 * fatal (dc_malloc), including inside zlib and brotli, whose allocators are routed through it.
 * String arguments are (pointer, length) pairs and need not be NUL-terminated.
 */
#ifndef DC_CACHE_ENCODE_H
#define DC_CACHE_ENCODE_H

#include <stdbool.h>
#include <stddef.h>

#include "cache/body.h"

typedef enum { DC_ENC_IDENTITY = 0, DC_ENC_GZIP = 1, DC_ENC_BR = 2, DC_ENC_COUNT } dc_encoding_t;

/* Token for Content-Encoding / Vary bookkeeping: "identity", "gzip", "br"; NULL when `e` is not a
 * dc_encoding_t below DC_ENC_COUNT. Static storage. */
const char *dc_encoding_name(dc_encoding_t e);

/*
 * Parse a Content-Encoding header value. Returns a dc_encoding_t for exactly one of identity, gzip,
 * x-gzip (= gzip) or br, case-insensitive, surrounding whitespace and empty list elements (",gzip,")
 * allowed. Anything else returns -1: other codings (deflate, zstd, compress), several codings
 * ("gzip, br" - stacked codings are not decoded here), parameters, an empty value, v == NULL.
 */
int dc_encoding_parse(const char *v, size_t len);

/*
 * Is a response of this Content-Type worth compressing? True for text/x, application/json,
 * application/javascript, application/xml, and any type/subtype whose subtype ends in "+json" or
 * "+xml" (application/ld+json, image/svg+xml, ...). Case-insensitive; parameters after ';' are
 * ignored ("application/json; charset=utf-8"). A malformed value (no '/', empty type or subtype,
 * junk after the subtype) or ctype == NULL is false.
 */
bool dc_encoding_compressible_type(const char *ctype, size_t len);

/*
 * Accept-Encoding negotiation (RFC 9110 12.5.3). `accept` is the header value (NULL = header absent,
 * which means identity), `available_mask` the codings we hold a variant for, as bits
 * (1u << DC_ENC_GZIP) | (1u << DC_ENC_BR); identity is always available and bits >= DC_ENC_COUNT are
 * ignored. Returns the available coding with the highest weight; ties prefer br > gzip > identity.
 *  - A coding's weight is its own entry's q (default 1), else the q of "*" when present, else 0 (not
 *    acceptable). "x-gzip" is gzip. Unknown codings (deflate, zstd, ...) are ignored.
 *  - q=0 excludes. A coding listed several times gets its lowest q (an explicit refusal is never
 *    overridden; the result does not depend on the order of the entries).
 *  - identity not mentioned (and no "*") is acceptable but least preferred: it is what we return
 *    when nothing else has a weight above 0. "identity;q=0" or "*;q=0" with nothing else acceptable
 *    still returns identity: we never send 406.
 *  - Tolerant parsing: case-insensitive, OWS around ',', ';' and '=', empty list elements and empty
 *    parameters skipped, parameters other than q ignored. An entry that is not a token followed by
 *    parameters, or whose q is not a qvalue ("0" ["." 0-3 digits] / "1" ["." 0-3 zeros]: so
 *    "q=0.0001", "q=1.5", "q=.5", "q=" are rejected), or that has two q parameters, is garbage and
 *    ignored as if absent.
 */
dc_encoding_t dc_encoding_negotiate(const char *accept, size_t len, unsigned available_mask);

/*
 * Compress all the bytes of `in` into `out` with `enc`:
 *  - DC_ENC_GZIP: zlib deflate, level 6, windowBits 15+16 (gzip wrapper), memLevel 8;
 *  - DC_ENC_BR: BrotliEncoder streaming API, quality 5, lgwin 22, mode text.
 * Streams chunk by chunk (the input is never flattened); output is appended to `out` every time a
 * 64 KiB scratch buffer fills. `out` is initialised here (any previous content is NOT freed): an
 * output that fits the scratch buffer becomes one exactly sized chunk, a larger one starts with a
 * 64 KiB chunk and grows as dc_body_append does. `in` must be whole (no dc_body_release_before);
 * it is only read. The caller owns `out` and disposes it. An empty `in` gives a valid empty stream.
 * Returns 0; DC_EINVAL if `enc` is not gzip or br; DC_EIO if the codec fails (a library bug: memory
 * failure is fatal). On error `out` is empty (initialised, nothing to free).
 */
int dc_encode_body(dc_encoding_t enc, const dc_body_t *in, dc_body_t *out);

/*
 * Decompress a gzip body (an origin's Content-Encoding: gzip response) into `out` (initialised here,
 * same sizing and ownership as dc_encode_body). Concatenated gzip members are decoded one after the
 * other (RFC 1952 2.2). An empty `in` decodes to an empty body.
 * Returns 0; DC_ETOOBIG as soon as the output would exceed `max_out` bytes (zip-bomb guard: at most
 * max_out bytes plus one 64 KiB scratch buffer are ever held), also when the input would later
 * prove corrupt; DC_EINVAL for anything that is not a complete, valid sequence of gzip members (bad
 * header, bad CRC or length, truncated, trailing bytes, a zlib or raw deflate stream). The verdict
 * does not depend on how `in` is split into chunks. On error `out` is empty (initialised, nothing to
 * free).
 */
int dc_decode_gzip(const dc_body_t *in, dc_body_t *out, size_t max_out);

/* Is a compressed variant worth keeping? True when compressed_len <= 0.9 * identity_len (exact
 * integer arithmetic, no overflow); false for an empty identity body (nothing to save). */
bool dc_encoding_worth_it(size_t identity_len, size_t compressed_len);

#endif
