/*
 * Request checks made before anything reaches an upstream (pure functions, unit-tested):
 * method allow-list, URI length, header count and size, and the framing ambiguities that libh2o
 * resolves silently (Transfer-Encoding winning over Content-Length, the first of two
 * Content-Lengths, the last of two Hosts). Each check returns 0 when the request passes, or the
 * HTTP status to answer with and a static message in *why.
 */
#ifndef DC_HTTP_REQCHECK_H
#define DC_HTTP_REQCHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct dc_reqcheck_limits {
    uint64_t max_uri;          /* path + query, bytes */
    uint64_t max_header_bytes; /* sum over header lines of name + ": " + value + CRLF */
    uint32_t max_headers;
} dc_reqcheck_limits_t;

/*
 * libh2o 2.2.5 parses an HTTP/1 head with picohttpparser into a fixed array of H2O_MAX_HEADERS
 * (100) entries and answers a head with more lines with its own plain-text 400, before any handler
 * runs. HTTP/1 heads are therefore held to this count whatever server.max_headers says (a larger
 * max_headers applies to HTTP/2 only); the gate (http/h1gate.c) answers 431 for them.
 */
#define DC_REQCHECK_H1_MAX_HEADERS 100

/* dc_reqcheck_h1_prefix: more bytes are needed before a verdict. */
#define DC_REQCHECK_MORE (-1)

/* GET HEAD POST PUT PATCH DELETE OPTIONS pass; TRACE, CONNECT and anything else -> 405. */
int dc_reqcheck_method(const char *method, size_t len, const char **why);

/* 414 when the request target is longer than limits->max_uri. */
int dc_reqcheck_uri(size_t uri_len, const dc_reqcheck_limits_t *limits, const char **why);

/*
 * Scan a raw HTTP/1.x request head (request line + header lines, up to and including the blank
 * line; `len` may include bytes after it, which are ignored). Returns 400 for two Hosts, two
 * Content-Lengths, Content-Length together with Transfer-Encoding, an HTTP/1.1 request without
 * Host (HTTP/1.0 may omit it), an obs-fold line (a header line starting with SP or HTAB, which
 * picohttpparser would silently drop; RFC 9112 5.2 lets a server refuse it), or a malformed head;
 * 431 for more header lines than limits->max_headers or DC_REQCHECK_H1_MAX_HEADERS, or a header
 * block over the size limit; 0 otherwise.
 */
int dc_reqcheck_h1_head(const char *head, size_t len, const dc_reqcheck_limits_t *limits, const char **why);

/* Count/size check for requests that have no raw head (HTTP/2): headers given as name/value lengths. */
int dc_reqcheck_header_totals(size_t nheaders, size_t header_bytes, const dc_reqcheck_limits_t *limits,
                              const char **why);

/*
 * The first bytes of an HTTP/1 connection, judged before libh2o parses them (see
 * DC_REQCHECK_H1_MAX_HEADERS). Returns DC_REQCHECK_MORE while the head is incomplete and within
 * the caps; 431 for a head with too many lines or over max_header_bytes (as soon as the buffered
 * head exceeds it, complete or not); 414 for a request line over max_uri that has not ended yet;
 * 0 to hand the bytes to libh2o, whose handler-side checks (dc_reqcheck_h1_head & co.) decide the
 * rest (a chunked body is decoded by libh2o with our strict decoder, http/h1chunked.c). An HTTP/2
 * preface ("PRI ") is handed on at once. Verdicts are the same whatever bytes follow the head.
 */
int dc_reqcheck_h1_prefix(const char *buf, size_t len, const dc_reqcheck_limits_t *limits, const char **why);

/*
 * Check and normalise an origin-form request target (path + optional "?query"): what is routed,
 * keyed and forwarded upstream is the normalised target. Returns 400 and *why for a target that
 * does not start with '/', a "%00" or a '%' not followed by two hex digits in the path, or dot
 * segments that climb above the root ("/.."). Otherwise returns 0 and writes the normalised target
 * to `out` (capacity >= len; it is never longer than the input) and its length to *out_len:
 * duplicate slashes are collapsed and "." / ".." segments, also percent-encoded ("%2e", "%2E"),
 * are resolved as RFC 3986 5.2.4 does; other percent-escapes and the query are copied unchanged.
 */
int dc_reqcheck_path(const char *target, size_t len, char *out, size_t *out_len, const char **why);

#endif
