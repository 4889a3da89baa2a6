/*
 * The HTTP/1 gate: the first request on a plain-HTTP connection is read and judged
 * (dc_reqcheck_h1_prefix) before libh2o parses it. libh2o 2.2.5 answers what picohttpparser
 * cannot hold (more than 100 header lines, a head over its buffer) with its own plain-text 400
 * before any handler runs. The gate answers those with the JSON error and Connection: close,
 * so no handler and no upstream ever sees them; everything else is handed to h2o_accept with the
 * bytes already read left in the socket's input buffer, where libh2o parses them as if it had read
 * them itself.
 *
 * Chunked request bodies are not the gate's: libh2o decodes every one (first request or not, TLS
 * or not) with our strict decoder (http/h1chunked.c).
 *
 * Known limits: only the first request of a connection passes the gate (libh2o re-arms its own
 * read callback between keep-alive requests), and TLS connections are handed to libh2o for the
 * handshake at once. For those, libh2o's own refusals of oversized heads stay (plain-text 400),
 * still never reaching a handler or the origin; everything libh2o does parse meets the handler's
 * checks.
 */
#ifndef DC_HTTP_H1GATE_H
#define DC_HTTP_H1GATE_H

#include <h2o.h>

struct dc_worker;

/* Take over a freshly accepted plain-HTTP socket of worker `w`; it is handed to h2o_accept(ctx)
 * once its first request passes, or answered and closed by the gate. */
void dc_h1gate_accept(struct dc_worker *w, h2o_accept_ctx_t *ctx, h2o_socket_t *sock);

#endif
