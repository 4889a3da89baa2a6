#include "http/handler.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/hop.h"
#include "http/reqcheck.h"
#include "http/respond.h"
#include "server/worker.h"
#include "upstream/fetch.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQUEST_MAGIC 0x52455155u /* "REQU" */
/* Body bytes buffered per client before the upstream transfer is paused: bounds memory for slow
 * readers while keeping enough in flight to fill a fast client's socket. */
#define STREAM_HIGH_WATER (256 * 1024)

typedef struct stream_buf {
    char *p;
    size_t len, cap;
} stream_buf_t;

/* Per-request state, on the heap and refcounted. The request's h2o pool holds one reference
 * through a small link object whose dispose callback runs when the request is over (completed,
 * failed, or the client went away): it sets `req` to NULL and drops that reference. Code that calls
 * into h2o or the fetch in ways that can complete the request synchronously (h2o_send with a final
 * state, resuming a transfer) holds its own reference across the call and re-checks `req`. */
typedef struct dc_request {
    uint32_t magic;
    unsigned refs;
    h2o_req_t *req; /* NULL once the request is disposed */
    dc_worker_t *worker;
    dc_snapshot_t *snap;
    const dc_config_route_t *route;
    dc_upstream_rt_t *up_rt;
    unsigned route_metric;
    char request_id[72];
    char client_ip[INET6_ADDRSTRLEN];
    uint64_t start_us;
    const char *cache_status; /* X-Cache value, for the access log */

    dc_fetch_t *fetch;
    h2o_generator_t generator;
    stream_buf_t sending; /* handed to h2o_send, valid until proceed() */
    stream_buf_t pending; /* received from upstream while a send is in flight */
    bool is_head;
    bool client_key_forwarded;
    bool response_started;
    bool send_inflight;
    bool upstream_done;
    bool final_sent;
    bool paused;
    int upstream_err;
    uint64_t upstream_us; /* time to the upstream response head */
    unsigned attempts;
} dc_request_t;

/* ---- access log ---- */

static void access_log(dc_request_t *r, h2o_req_t *req)
{
    if (!dc_log_access_enabled())
        return;
    char ts[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);
    double dur_ms = (double)(dc_now_mono_us() - r->start_us) / 1000.0;
    int pathlen = (int)(req->input.path.len > 2048 ? 2048 : req->input.path.len);
    char line[3072];
    int n = snprintf(line, sizeof(line),
                     "time=%s client=%s method=%.*s path=\"%.*s\" status=%d bytes=%zu dur_ms=%.3f up_ms=%.3f "
                     "attempts=%u cache=%s rid=%s",
                     ts, r->client_ip, (int)req->input.method.len, req->input.method.base, pathlen,
                     req->input.path.base, req->res.status, req->bytes_sent, dur_ms,
                     (double)r->upstream_us / 1000.0, r->attempts, r->cache_status ? r->cache_status : "-",
                     r->request_id);
    if (n > 0)
        dc_log_access_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void request_ref(dc_request_t *r)
{
    r->refs++;
}

static void request_unref(dc_request_t *r)
{
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    if (--r->refs > 0)
        return;
    DC_ASSERT(r->req == NULL && r->fetch == NULL);
    free(r->sending.p);
    free(r->pending.p);
    dc_snapshot_release(r->snap);
    r->magic = 0;
    free(r);
}

static void on_pool_dispose(void *p)
{
    dc_request_t *r = *(dc_request_t **)p;
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    h2o_req_t *req = r->req;
    if (r->fetch != NULL) {
        dc_fetch_abort(r->fetch);
        r->fetch = NULL;
    }
    dc_worker_metrics_t *m = &r->worker->metrics;
    dc_counter_add(&m->requests[r->route_metric][dc_metrics_status_class(req->res.status)], 1);
    dc_counter_add(&m->bytes_out, req->bytes_sent);
    dc_counter_sub(&m->requests_active, 1);
    access_log(r, req);
    r->req = NULL;
    request_unref(r);
}

/* ---- helpers ---- */

static void add_header(h2o_req_t *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, nlen, 1, NULL, h2o_strdup(&req->pool, value, vlen).base,
                          vlen);
}

static void respond_error(dc_request_t *r, int status, const char *message)
{
    r->cache_status = r->cache_status ? r->cache_status : "-";
    dc_respond_error(r->req, status, message, r->request_id);
}

static void fill_client_ip(dc_request_t *r, h2o_req_t *req)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    strcpy(r->client_ip, "-");
    if (len == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, r->client_ip, sizeof(r->client_ip));
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, r->client_ip, sizeof(r->client_ip));
}

static bool valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == ':'))
            return false;
    }
    return true;
}

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

static int run_checks(dc_request_t *r, h2o_req_t *req, const char **why)
{
    const dc_config_t *cfg = r->snap->cfg;
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
    return 0;
}

/* ---- response streaming ---- */

static void buf_append(stream_buf_t *b, const char *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + len)
            cap *= 2;
        b->p = dc_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

/* Push what we have to h2o if no send is in flight. */
static void flush(dc_request_t *r)
{
    if (r->send_inflight || r->final_sent || r->req == NULL)
        return;
    stream_buf_t tmp = r->sending;
    r->sending = r->pending;
    r->pending = tmp;
    r->pending.len = 0;
    h2o_send_state_t state = H2O_SEND_STATE_IN_PROGRESS;
    if (r->upstream_done)
        state = r->upstream_err != 0 ? H2O_SEND_STATE_ERROR : H2O_SEND_STATE_FINAL;
    if (r->sending.len == 0 && state == H2O_SEND_STATE_IN_PROGRESS)
        return; /* nothing to send yet */
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        r->final_sent = true;
    else
        r->send_inflight = true;
    h2o_iovec_t iov = h2o_iovec_init(r->sending.p, r->sending.len);
    h2o_send(r->req, &iov, r->sending.len ? 1 : 0, state);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    dc_request_t *r = H2O_STRUCT_FROM_MEMBER(dc_request_t, generator, gen);
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    r->send_inflight = false;
    r->sending.len = 0;
    request_ref(r);
    flush(r);
    if (r->req != NULL && r->paused && r->fetch != NULL && r->pending.len < STREAM_HIGH_WATER) {
        r->paused = false;
        dc_fetch_resume(r->fetch); /* may call on_body / on_done synchronously */
    }
    request_unref(r);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    dc_request_t *r = H2O_STRUCT_FROM_MEMBER(dc_request_t, generator, gen);
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    if (r->fetch != NULL) {
        dc_fetch_abort(r->fetch);
        r->fetch = NULL;
    }
}

static bool skip_response_header(const dc_fetch_header_t *h, const char *conn_value, size_t conn_len)
{
    if (dc_hop_is_hop_by_hop(h->name, h->name_len))
        return true;
    if (conn_value != NULL && dc_hop_listed_in_connection(conn_value, conn_len, h->name, h->name_len))
        return true;
    /* h2o writes its own framing and Date; Via is rebuilt below */
    static const char *const own[] = {"content-length", "date", "server", "via"};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strlen(own[i]) == h->name_len && memcmp(own[i], h->name, h->name_len) == 0)
            return true;
    return false;
}

static void on_upstream_head(void *data, dc_fetch_t *f)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    h2o_req_t *req = r->req;
    int status = dc_fetch_status(f);
    r->upstream_us = dc_fetch_head_us(f);
    req->res.status = status;
    const char *reason = dc_fetch_reason(f);
    req->res.reason = reason[0] ? h2o_strdup(&req->pool, reason, strlen(reason)).base : dc_http_reason(status);

    size_t n;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    const char *conn_value = NULL, *via = NULL;
    size_t conn_len = 0, via_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (hs[i].name_len == 10 && memcmp(hs[i].name, "connection", 10) == 0) {
            conn_value = hs[i].value;
            conn_len = hs[i].value_len;
        } else if (hs[i].name_len == 3 && memcmp(hs[i].name, "via", 3) == 0) {
            via = hs[i].value;
            via_len = hs[i].value_len;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (skip_response_header(&hs[i], conn_value, conn_len))
            continue;
        add_header(req, hs[i].name, hs[i].name_len, hs[i].value, hs[i].value_len);
    }
    char tmp[512];
    int tl = via ? snprintf(tmp, sizeof(tmp), "%.*s, 1.1 dexcache", (int)(via_len > 400 ? 400 : via_len), via)
                 : snprintf(tmp, sizeof(tmp), "1.1 dexcache");
    add_header(req, H2O_STRLIT("via"), tmp, (size_t)tl);
    add_header(req, H2O_STRLIT("x-cache"), H2O_STRLIT("BYPASS"));
    add_header(req, H2O_STRLIT("cache-status"), H2O_STRLIT("dexcache; fwd=bypass"));
    add_header(req, H2O_STRLIT("x-request-id"), r->request_id, strlen(r->request_id));
    tl = snprintf(tmp, sizeof(tmp), "upstream;dur=%.1f", (double)r->upstream_us / 1000.0);
    add_header(req, H2O_STRLIT("server-timing"), tmp, (size_t)tl);
    r->cache_status = "BYPASS";

    int64_t cl = dc_fetch_content_length(f);
    if (r->is_head)
        req->res.content_length = cl >= 0 ? (size_t)cl : 0;
    else
        req->res.content_length = cl >= 0 ? (size_t)cl : SIZE_MAX;
    if (status == 204 || status == 304)
        req->res.content_length = SIZE_MAX;

    r->generator.proceed = on_proceed;
    r->generator.stop = on_stop;
    r->response_started = true;
    h2o_start_response(req, &r->generator);
}

static int on_upstream_body(void *data, dc_fetch_t *f, const char *buf, size_t len)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    if (r->is_head)
        return 0;
    if (r->pending.len >= STREAM_HIGH_WATER && r->send_inflight) {
        r->paused = true;
        return 1; /* refuse: the upstream transfer pauses until proceed() */
    }
    buf_append(&r->pending, buf, len);
    request_ref(r);
    flush(r);
    request_unref(r);
    return 0;
}

static void record_upstream_outcome(dc_request_t *r, dc_fetch_t *f, int err)
{
    dc_worker_metrics_t *m = &r->worker->metrics;
    unsigned id = r->up_rt->metrics_id;
    unsigned attempts = dc_fetch_attempts(f);
    r->attempts = attempts;
    dc_counter_add(&m->upstream_attempts[id], attempts);
    if (attempts > 1)
        dc_counter_add(&m->upstream_retries[id], attempts - 1);
    int status = dc_fetch_status(f);
    if (err == 0 || status != 0)
        dc_counter_add(&m->upstream_responses[id][dc_metrics_status_class(status)], 1);
    else
        dc_counter_add(&m->upstream_responses[id][0], 1);
    if (err == DC_ETIMEDOUT)
        dc_counter_add(&m->upstream_timeouts[id], 1);
    if (dc_fetch_head_us(f) > 0)
        dc_metrics_observe_upstream_latency(m, id, dc_fetch_head_us(f));
    uint64_t now = dc_now_mono_ms();
    if (err != 0 || status >= 500)
        dc_upstream_state_failure(&r->up_rt->health, now);
    else
        dc_upstream_state_success(&r->up_rt->health, now);
}

static void on_upstream_done(void *data, dc_fetch_t *f, int err)
{
    dc_request_t *r = data;
    DC_CHECK_MAGIC(r, REQUEST_MAGIC);
    record_upstream_outcome(r, f, err);
    r->fetch = NULL;
    if (r->req == NULL)
        return;
    if (!r->response_started) {
        /* no response head reached the client: answer with our own error */
        r->cache_status = "-";
        if (err == DC_ETIMEDOUT)
            respond_error(r, 504, "upstream timed out");
        else if (err == DC_ECONNREFUSED)
            respond_error(r, 502, "upstream connection refused");
        else
            respond_error(r, 502, "upstream failed");
        return;
    }
    r->upstream_done = true;
    r->upstream_err = err;
    if (err != 0)
        dc_log_warn("upstream %s failed after the response started (%s); client connection reset, rid=%s",
                    r->route->upstream->name, dc_strerror(err), r->request_id);
    request_ref(r);
    flush(r);
    request_unref(r);
}

/* ---- request entry ---- */

static const char *build_upstream_url(dc_request_t *r, h2o_req_t *req)
{
    const dc_config_route_t *route = r->route;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    const char *rest = req->path.base + plen;
    size_t rest_len = req->path.len - plen;
    const char *base = route->upstream->url;
    size_t blen = strlen(base);
    bool need_slash = rest_len == 0 || rest[0] != '/';
    char *url = h2o_mem_alloc_pool(&req->pool, blen + rest_len + 2);
    memcpy(url, base, blen);
    size_t o = blen;
    if (need_slash)
        url[o++] = '/';
    memcpy(url + o, rest, rest_len);
    url[o + rest_len] = '\0';
    return url;
}

static bool header_is(const h2o_header_t *h, const char *name, size_t len)
{
    return h->name->len == len && memcmp(h->name->base, name, len) == 0;
}

/* "Name: value" lines toward the upstream, in the request pool. */
static const char **build_upstream_headers(dc_request_t *r, h2o_req_t *req)
{
    const dc_config_route_t *route = r->route;
    const char *key_header = route->upstream->key_header;
    size_t key_len = key_header ? strlen(key_header) : 0;
    const char **lines = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * (req->headers.size + 8));
    size_t n = 0;
    const char *conn_value = NULL, *xff = NULL, *via = NULL;
    size_t conn_len = 0, xff_len = 0, via_len = 0;
    bool has_accept = false;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (header_is(h, H2O_STRLIT("connection"))) {
            conn_value = h->value.base;
            conn_len = h->value.len;
        }
    }
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        const char *name = h->name->base;
        size_t nlen = h->name->len;
        if (dc_hop_is_hop_by_hop(name, nlen) ||
            (conn_value != NULL && dc_hop_listed_in_connection(conn_value, conn_len, name, nlen)))
            continue;
        if (header_is(h, H2O_STRLIT("host")) || header_is(h, H2O_STRLIT("content-length")) ||
            header_is(h, H2O_STRLIT("expect")) || header_is(h, H2O_STRLIT("x-forwarded-proto")) ||
            header_is(h, H2O_STRLIT("x-request-id")) || (nlen > 0 && name[0] == ':'))
            continue;
        if (header_is(h, H2O_STRLIT("x-forwarded-for"))) {
            xff = h->value.base;
            xff_len = h->value.len;
            continue;
        }
        if (header_is(h, H2O_STRLIT("via"))) {
            via = h->value.base;
            via_len = h->value.len;
            continue;
        }
        if (key_len > 0 && nlen == key_len && strncasecmp(name, key_header, key_len) == 0) {
            if (!route->forward_client_key)
                continue; /* the client's own key never leaks upstream unless the route says so */
            r->client_key_forwarded = true; /* it replaces ours: never send two keys */
        }
        if (header_is(h, H2O_STRLIT("accept")))
            has_accept = true;
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(name, nlen), h2o_iovec_init(H2O_STRLIT(": ")), h->value).base;
    }
    if (xff != NULL)
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("X-Forwarded-For: ")), h2o_iovec_init(xff, xff_len),
                                h2o_iovec_init(H2O_STRLIT(", ")), h2o_iovec_init(r->client_ip, strlen(r->client_ip)))
                         .base;
    else
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("X-Forwarded-For: ")),
                                h2o_iovec_init(r->client_ip, strlen(r->client_ip)))
                         .base;
    lines[n++] = req->scheme == &H2O_URL_SCHEME_HTTPS ? "X-Forwarded-Proto: https" : "X-Forwarded-Proto: http";
    const char *proto = req->version >= 0x200 ? "2" : (req->version == 0x100 ? "1.0" : "1.1");
    if (via != NULL)
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Via: ")), h2o_iovec_init(via, via_len),
                                h2o_iovec_init(H2O_STRLIT(", ")), h2o_iovec_init(proto, strlen(proto)),
                                h2o_iovec_init(H2O_STRLIT(" dexcache")))
                         .base;
    else
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Via: ")), h2o_iovec_init(proto, strlen(proto)),
                                h2o_iovec_init(H2O_STRLIT(" dexcache")))
                         .base;
    lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("X-Request-Id: ")),
                            h2o_iovec_init(r->request_id, strlen(r->request_id)))
                     .base;
    if (!has_accept)
        lines[n++] = "Accept:"; /* stop curl from inventing a default Accept header */
    lines[n] = NULL;
    return lines;
}

static void start_passthrough(dc_request_t *r, h2o_req_t *req)
{
    const dc_config_upstream_t *up = r->route->upstream;
    dc_fetch_request_t fr = {0};
    char *method = h2o_strdup(&req->pool, req->method.base, req->method.len).base;
    fr.method = method;
    fr.url = build_upstream_url(r, req);
    fr.headers = build_upstream_headers(r, req);
    fr.body = req->entity.base;
    fr.body_len = req->entity.base ? req->entity.len : 0;
    fr.idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    fr.retries = up->retries;
    fr.retry_backoff_ms = up->retry_backoff_ms;
    fr.connect_timeout_ms = up->connect_timeout_ms;
    fr.timeout_ms = up->timeout_ms;
    fr.http2 = up->http2;
    fr.tls_verify = up->tls_verify;
    fr.keyring = r->client_key_forwarded ? NULL : &r->up_rt->keyring;
    fr.key_header = up->key_header;
    static const dc_fetch_callbacks_t cbs = {on_upstream_head, on_upstream_body, on_upstream_done};
    r->fetch = dc_fetch_start(&r->worker->curl, &fr, &cbs, r);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dc_worker_t *w = dc_worker_from_ctx(req->conn->ctx);
    DC_CHECK_MAGIC(w, DC_WORKER_MAGIC);
    dc_request_t *r = dc_calloc(1, sizeof(*r));
    r->magic = REQUEST_MAGIC;
    r->refs = 1; /* held by the pool link below */
    dc_request_t **link = h2o_mem_alloc_shared(&req->pool, sizeof(*link), on_pool_dispose);
    *link = r;
    r->req = req;
    r->worker = w;
    r->snap = dc_snapshot_ref(w->snap);
    r->start_us = dc_now_mono_us();
    r->is_head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    dc_counter_add(&w->metrics.requests_active, 1);
    fill_client_ip(r, req);

    ssize_t idx = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (idx >= 0 && valid_request_id(req->headers.entries[idx].value.base, req->headers.entries[idx].value.len)) {
        memcpy(r->request_id, req->headers.entries[idx].value.base, req->headers.entries[idx].value.len);
        r->request_id[req->headers.entries[idx].value.len] = '\0';
    } else {
        dc_worker_next_request_id(w, r->request_id);
    }

    const char *why = NULL;
    int status = run_checks(r, req, &why);
    if (status != 0) {
        dc_counter_add(&w->metrics.rejected[dc_metrics_status_class(status)], 1);
        if (status == 405)
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                           H2O_STRLIT("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
        if (status == 400)
            req->http1_is_persistent = 0; /* framing is in doubt: never reuse this connection */
        respond_error(r, status, why);
        return 0;
    }

    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    r->route = dc_config_route_match(r->snap->cfg, req->path.base, pathlen);
    if (r->route == NULL) {
        respond_error(r, 404, "no route for this path");
        return 0;
    }
    dc_route_rt_t *rrt = dc_snapshot_route_rt(r->snap, r->route);
    r->route_metric = rrt->metrics_id;
    r->up_rt = dc_snapshot_upstream_rt(r->snap, r->route->upstream);
    if (req->entity.base != NULL && req->entity.len > r->route->max_body) {
        req->http1_is_persistent = 0;
        respond_error(r, 413, "request body too large");
        return 0;
    }
    start_passthrough(r, req);
    return 0;
}

void dc_http_handler_register(h2o_pathconf_t *pathconf)
{
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h));
    h->on_req = on_req;
}
