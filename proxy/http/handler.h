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

#endif
