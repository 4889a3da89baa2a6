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

/* GET HEAD POST PUT PATCH DELETE OPTIONS pass; TRACE, CONNECT and anything else -> 405. */
int dc_reqcheck_method(const char *method, size_t len, const char **why);

/* 414 when the request target is longer than limits->max_uri. */
int dc_reqcheck_uri(size_t uri_len, const dc_reqcheck_limits_t *limits, const char **why);

/*
 * Scan a raw HTTP/1.x request head (request line + header lines, up to and including the blank
 * line; `len` may include bytes after it, which are ignored). Returns 400 for two Hosts, two
 * Content-Lengths, Content-Length together with Transfer-Encoding, or a malformed head; 431 for
 * too many headers or a header block over the size limit; 0 otherwise.
 */
int dc_reqcheck_h1_head(const char *head, size_t len, const dc_reqcheck_limits_t *limits, const char **why);

/* Count/size check for requests that have no raw head (HTTP/2): headers given as name/value lengths. */
int dc_reqcheck_header_totals(size_t nheaders, size_t header_bytes, const dc_reqcheck_limits_t *limits,
                              const char **why);

#endif
