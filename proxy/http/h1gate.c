#include "http/h1gate.h"
#include "core/error.h"
#include "core/metrics.h"
#include "http/reqcheck.h"
#include "http/respond.h"
#include "server/worker.h"

#include <stdio.h>
#include <stdlib.h>

#define H1GATE_MAGIC 0x68316761u /* "h1ga" */

/* One connection waiting at the gate; freed when it is handed on or closed. */
typedef struct h1gate {
    unsigned magic;
    dc_worker_t *w;
    h2o_accept_ctx_t *ctx;
    h2o_socket_t *sock;
    h2o_timeout_entry_t timeout; /* the worker's HTTP/1 request timeout */
    char resp[1024];             /* the refusal being written */
} h1gate_t;

static void gate_free(h1gate_t *g)
{
    if (h2o_timeout_is_linked(&g->timeout))
        h2o_timeout_unlink(&g->timeout);
    g->magic = 0;
    free(g);
}

static void on_refusal_written(h2o_socket_t *sock, const char *err)
{
    h1gate_t *g = sock->data;
    DC_CHECK_MAGIC(g, H1GATE_MAGIC);
    (void)err;
    h2o_socket_close(sock);
    gate_free(g);
}

static void refuse(h1gate_t *g, int status, const char *why)
{
    char rid[72], body[512];
    dc_worker_next_request_id(g->w, rid);
    size_t blen = dc_error_json(body, sizeof(body), status, why, rid);
    int n = snprintf(g->resp, sizeof(g->resp),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                     "X-Request-Id: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, dc_http_reason(status), rid, blen, body);
    DC_ASSERT(n > 0 && (size_t)n < sizeof(g->resp));
    dc_counter_add(&g->w->metrics.rejected[dc_metrics_status_class(status)], 1);
    h2o_socket_read_stop(g->sock);
    if (h2o_timeout_is_linked(&g->timeout))
        h2o_timeout_unlink(&g->timeout);
    h2o_iovec_t buf = h2o_iovec_init(g->resp, (size_t)n);
    h2o_socket_write(g->sock, &buf, 1, on_refusal_written);
}

static void on_gate_read(h2o_socket_t *sock, const char *err)
{
    h1gate_t *g = sock->data;
    DC_CHECK_MAGIC(g, H1GATE_MAGIC);
    if (err != NULL) {
        h2o_socket_close(sock);
        gate_free(g);
        return;
    }
    const dc_config_t *cfg = g->w->snap->cfg;
    dc_reqcheck_limits_t limits = {cfg->server.max_uri, cfg->server.max_header_bytes, cfg->server.max_headers};
    const char *why = NULL;
    int verdict = dc_reqcheck_h1_prefix(sock->input->bytes, sock->input->size, &limits, &why);
    if (verdict == DC_REQCHECK_MORE)
        return;
    if (verdict != 0) {
        refuse(g, verdict, why);
        return;
    }
    /* pass: libh2o takes the socket and parses what is already in sock->input first */
    h2o_accept_ctx_t *ctx = g->ctx;
    h2o_socket_read_stop(sock);
    sock->data = NULL;
    gate_free(g);
    h2o_accept(ctx, sock);
}

static void on_gate_timeout(h2o_timeout_entry_t *entry)
{
    h1gate_t *g = H2O_STRUCT_FROM_MEMBER(h1gate_t, timeout, entry);
    DC_CHECK_MAGIC(g, H1GATE_MAGIC);
    h2o_socket_close(g->sock); /* like libh2o's own request timeout: closed without an answer */
    gate_free(g);
}

void dc_h1gate_accept(struct dc_worker *w, h2o_accept_ctx_t *ctx, h2o_socket_t *sock)
{
    DC_ASSERT(ctx->ssl_ctx == NULL);
    h1gate_t *g = dc_calloc(1, sizeof(*g));
    g->magic = H1GATE_MAGIC;
    g->w = w;
    g->ctx = ctx;
    g->sock = sock;
    g->timeout.cb = on_gate_timeout;
    h2o_timeout_link(ctx->ctx->loop, &ctx->ctx->http1.req_timeout, &g->timeout);
    sock->data = g;
    h2o_socket_read_start(sock, on_gate_read);
}
