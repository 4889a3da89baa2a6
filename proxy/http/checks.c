/* The request checks run before routing (http/steps.h): method, target, and the raw HTTP/1 head
 * (framing and header limits that libh2o resolves before a handler sees the request). */
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/l2fleet.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/batch.h"
#include "http/reqcheck.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/steps.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * libh2o 2.2.5 resolves framing ambiguities before a handler sees the request (Transfer-Encoding
 * wins over Content-Length, the first of two Content-Lengths, the last of two Hosts) and drops
 * those headers from req->headers. To refuse them we re-read the raw HTTP/1 head, which is still
 * at the start of the connection's input buffer while the request is being handled. The prefix of
 * h2o's private struct st_h2o_http1_conn_t is mirrored here; it is pinned to the packaged version.
 */
#if !defined(H2O_VERSION_MAJOR) || H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "the raw HTTP/1 head check is written against libh2o 2.2.x; re-check struct st_h2o_http1_conn_t"
#endif
struct dc_h2o_http1_conn_prefix {
    h2o_conn_t super;
    h2o_socket_t *sock;
};

static int check_raw_h1_head(h2o_req_t *req, const dc_reqcheck_limits_t *limits, const char **why)
{
    h2o_socket_t *sock = ((struct dc_h2o_http1_conn_prefix *)req->conn)->sock;
    if (sock == NULL || sock->input == NULL || sock->input->size < req->input.method.len)
        return 0;
    const char *head = sock->input->bytes;
    /* sanity: the buffer must start with this request's method */
    if (memcmp(head, req->input.method.base, req->input.method.len) != 0)
        return 0;
    return dc_reqcheck_h1_head(head, sock->input->size, limits, why);
}

int dc__http_run_checks(dc_request_t *r, h2o_req_t *req, const char **why)
{
    const dc_config_t *cfg = r->ctx.snap->cfg;
    dc_reqcheck_limits_t limits = {cfg->server.max_uri, cfg->server.max_header_bytes, cfg->server.max_headers};
    int status;
    if ((status = dc_reqcheck_method(req->input.method.base, req->input.method.len, why)) != 0)
        return status;
    if ((status = dc_reqcheck_uri(req->input.path.len, &limits, why)) != 0)
        return status;
    if (req->version < 0x200) {
        if ((status = check_raw_h1_head(req, &limits, why)) != 0)
            return status;
    } else {
        size_t bytes = 0;
        for (size_t i = 0; i < req->headers.size; i++)
            bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
        if ((status = dc_reqcheck_header_totals(req->headers.size, bytes, &limits, why)) != 0)
            return status;
    }
    /* what is routed, keyed and forwarded is the normalised target (dot segments, "//") */
    char *target = h2o_mem_alloc_pool(&req->pool, req->path.len + 1);
    size_t tlen;
    if ((status = dc_reqcheck_path(req->path.base, req->path.len, target, &tlen, why)) != 0)
        return status;
    if (tlen != req->path.len || memcmp(target, req->path.base, tlen) != 0) {
        const char *q = memchr(target, '?', tlen);
        req->path = h2o_iovec_init(target, tlen);
        req->query_at = q != NULL ? (size_t)(q - target) : SIZE_MAX;
    }
    return 0;
}
