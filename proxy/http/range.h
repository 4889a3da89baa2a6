/*
 * Byte ranges (RFC 9110 §14), pure: the Range header of a GET evaluated against the length of the
 * representation dexcache is about to send (If-Range is http/conditional.h's dc_cond_if_range_ok). No I/O, no
 * allocation; unit-tested (tests/unit/test_range.c) and fuzzed (tests/fuzz/fuzz_range.c).
 *
 * What dexcache answers (http/serve.c applies it):
 *   DC_RANGE_NONE           no usable Range (absent, another unit, invalid syntax, a zero-length
 *                           representation): 200 with the whole body (RFC 9110 §14.2: a server may
 *                           ignore Range; an invalid one must be ignored);
 *   DC_RANGE_SINGLE         exactly one satisfiable range: 206, Content-Range bytes F-L/LEN;
 *   DC_RANGE_MULTI          two or more satisfiable ranges: 200 with the whole body (allowed; saves
 *                           multipart/byteranges and its overlap attacks);
 *   DC_RANGE_UNSATISFIABLE  a valid range set of which nothing is satisfiable: 416 with
 *                           Content-Range bytes * /LEN.
 * Ranges are over the bytes of the selected representation (RFC 9110 §14.1.1): the gzip bytes when
 * the client is sent gzip; each representation has its own ETag, so If-Range keeps them apart.
 */
#ifndef DC_HTTP_RANGE_H
#define DC_HTTP_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DC_RANGE_NONE = 0,
    DC_RANGE_SINGLE,
    DC_RANGE_MULTI,
    DC_RANGE_UNSATISFIABLE,
} dc_range_result_t;

/*
 * Evaluate the Range field value `v` (`len` bytes, not NUL-terminated) against a representation of
 * `size` bytes. For DC_RANGE_SINGLE, *first and *last are the inclusive byte positions to send
 * (first <= last < size); otherwise they are left unchanged. Positions of any size are accepted (they
 * saturate: "bytes=99999999999999999999999-" is simply unsatisfiable).
 */
dc_range_result_t dc_range_eval(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last);

/* "bytes F-L/LEN" or, with first == UINT64_MAX, "bytes * /LEN" (without the space) into out
 * (at least DC_RANGE_CONTENT_RANGE_MAX bytes). Returns the length written (no NUL counted). */
#define DC_RANGE_CONTENT_RANGE_MAX 72
size_t dc_range_content_range(char *out, uint64_t first, uint64_t last, uint64_t size);

#endif
