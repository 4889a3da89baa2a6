/*
 * CORS done by dexcache (config: cors: at the top level and per route, config.h dc_config_cors_t).
 *
 * Two points of the request path, and nothing else:
 *   - dc__http_cors_preflight(), called by the handler right after routing (before plugins and the
 *     client limit): a preflight (OPTIONS with Origin and Access-Control-Request-Method) on a route
 *     with a policy is answered 204 here and never reaches the upstream or its budget;
 *   - an h2o filter (dc__http_cors_register_filter) that every answer of our path passes in
 *     h2o_start_response, whoever made it (hit, miss, stale, collapsed waiter, batch, stream,
 *     pass-through, dexcache's own JSON errors): the upstream's Access-Control-* headers are dropped
 *     and the route's policy is applied for the request's Origin.
 * The fill drops Access-Control-* from what it stores on a route with a policy
 * (dc_cors_is_cors_header), so no stored answer carries another client's origin.
 */
#ifndef DC_HTTP_CORS_H
#define DC_HTTP_CORS_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "http/request.h"

/* What a policy says for one request Origin (pure; points into p or into origin). */
typedef struct dc_cors_answer {
    bool allowed;             /* false: no CORS header at all */
    bool vary_origin;         /* Vary: Origin (the policy echoes origins: the answer depends on it) */
    const char *allow_origin; /* "*" or the request's Origin (not NUL-terminated: allow_origin_len) */
    size_t allow_origin_len;
    bool credentials; /* Access-Control-Allow-Credentials: true */
} dc_cors_answer_t;

/* Decide for Origin [origin, origin+len); origin NULL = the request had none. Pure. */
void dc_cors_decide(const dc_config_cors_t *p, const char *origin, size_t len, dc_cors_answer_t *out);

/* True for a header name starting with "access-control-" (any case). Pure. */
bool dc_cors_is_cors_header(const char *name, size_t len);

/* Answer r (routed: r->ctx.route set, or NULL for the top-level policy) when it is a preflight and a
 * policy applies: 204 with Access-Control-Allow-Origin / -Methods / -Headers / -Max-Age (and
 * -Credentials, Vary: Origin) for an allowed Origin, a bare 204 for another. Returns true when
 * answered (r is done), false when the request goes on. */
bool dc__http_cors_preflight(dc_request_t *r);

/* Start-up: the filter on the handler's path (see above). */
void dc__http_cors_register_filter(h2o_pathconf_t *pathconf);

#endif
