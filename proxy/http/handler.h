/*
 * The client-facing request path (design: "The request path"). This slice implements
 *   receive -> check -> route -> upstream pass-through (streamed, never stored) -> respond
 * and the access log line written when a request is disposed. The cache, collapsing and limits
 * plug in between route and upstream in later slices.
 */
#ifndef DC_HTTP_HANDLER_H
#define DC_HTTP_HANDLER_H

#include <h2o.h>

/* Install the dexcache handler on an h2o path configuration. */
void dc_http_handler_register(h2o_pathconf_t *pathconf);
/* accesslog.c: requests libh2o answers itself before the handler (a malformed request, a body over
 * the size limit) get an access log line too: a logger on the host's fallback path. */
void dc_http_log_h2o_answered(h2o_hostconf_t *host);

#endif
