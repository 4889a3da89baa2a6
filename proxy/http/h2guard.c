/*
 * HTTP/2 abuse guard (see h2guard.h): the budget and stall decisions (pure), and the per-worker
 * table of HTTP/2 connections, the deferred upstream starts and the stall sweep.
 *
 * libh2o 2.2.x keeps the HTTP/2 connection's state in h2o/http2_internal.h (installed with the
 * library): we read it (stream pending data, write in flight) and, to close a connection, do what
 * its static enqueue_goaway() + close_connection() do (lib/http2/connection.c, v2.2.5): encode the
 * GOAWAY into conn->_write.buf, request a write and mark the connection IS_CLOSING. h2o's parse loop
 * then stops at the next frame, and its write path (do_emit_writereq) sends the GOAWAY and closes.
 * The socket's uv handle is reached through h2o's private struct st_h2o_uv_socket_t, mirrored
 * below. Both are pinned to the packaged version.
 */
#include "http/h2guard.h"
#include "core/error.h"
#include "core/list.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/request.h"

#include <h2o.h>
#include <h2o/http2.h>
#include <h2o/http2_internal.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#if !defined(H2O_VERSION_MAJOR) || H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2 || !H2O_USE_LIBUV
#error "h2guard is written against libh2o 2.2.x (libuv): re-check h2o_http2_conn_t, enqueue_goaway, st_h2o_uv_socket_t"
#endif
/* The fields we touch sit where the installed library's code reads them (x86-64, read off the
 * disassembly of h2o_http2_conn_request_write in Debian's libh2o.so.0.13.5). */
#if defined(__x86_64__)
_Static_assert(offsetof(h2o_http2_conn_t, sock) == 0x30, "libh2o h2o_http2_conn_t layout changed");
_Static_assert(offsetof(h2o_http2_conn_t, state) == 0xa8, "libh2o h2o_http2_conn_t layout changed");
_Static_assert(offsetof(h2o_http2_conn_t, _write.buf) == 0x180, "libh2o h2o_http2_conn_t layout changed");
_Static_assert(offsetof(h2o_http2_conn_t, _write.buf_in_flight) == 0x188, "libh2o h2o_http2_conn_t layout changed");
#endif

/* ---- budget (pure) ---- */

void dc_h2guard_budget_init(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim)
{
    memset(b, 0, sizeof(*b));
    b->balance = lim->reset_budget;
}

void dc_h2guard_budget_request(dc_h2guard_budget_t *b)
{
    b->requests++;
}

void dc_h2guard_budget_answered(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim)
{
    b->answered++;
    if (b->balance < (int64_t)lim->reset_budget)
        b->balance++;
}

dc_h2guard_verdict_t dc_h2guard_budget_reset(dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim)
{
    b->early_resets++;
    b->balance--;
    if (b->balance <= -(int64_t)lim->reset_budget)
        return DC_H2GUARD_CLOSE;
    return b->balance <= 0 ? DC_H2GUARD_DELAY : DC_H2GUARD_OK;
}

uint64_t dc_h2guard_budget_delay(const dc_h2guard_budget_t *b, const dc_h2guard_limits_t *lim)
{
    return b->balance <= 0 ? lim->delay_ms : 0;
}

/* ---- stall (pure) ---- */

bool dc_h2guard_stall_sample(dc_h2guard_stall_t *s, bool blocked, uint64_t progress, uint64_t now_ms,
                             uint64_t timeout_ms)
{
    bool moved = progress != s->last_progress;
    s->last_progress = progress;
    if (!blocked) {
        s->blocked = false;
        return false;
    }
    if (!s->blocked || moved) {
        s->blocked = true;
        s->since_ms = now_ms;
        return false;
    }
    return now_ms - s->since_ms >= timeout_ms;
}

/* ---- per-worker state ---- */

#define SWEEP_MS 500        /* stall sampling period */
#define MIN_RETAIN_MS 10000 /* an entry without requests is kept at least this long */
#define INITIAL_BUCKETS 64
/* Response bytes a blocked connection may hold in our buffers (pass-through streams: up to
 * DC_STREAM_HIGH_WATER each, times h2o's 100 streams) before it is closed without waiting for the
 * stall deadline. */
#define MAX_BLOCKED_BYTES (8u << 20)

struct dc_h2conn {
    h2o_conn_t *conn; /* valid while live > 0 (h2o disposes every request before freeing it) */
    uint64_t id;      /* h2o_conn_t::id: tells a reused pointer from the connection we saw */
    dc_h2conn_t *next_in_bucket;
    dc_list_t reqs; /* live requests, through r->h2_link (newest first) */
    unsigned live;
    uint64_t ended;   /* requests ended (a progress signal) */
    uint64_t last_ms; /* loop time of the last request start or end */
    dc_h2guard_budget_t budget;
    dc_h2guard_stall_t stall;
    bool closing; /* we closed it: later disposals are neither answers nor resets */
};

struct dc_h2guard {
    dc_worker_t *w;
    dc_h2conn_t **buckets;
    size_t nbuckets, count;
    dc_h2conn_t *last; /* the entry of the previous request (consecutive requests share a connection) */
    dc_list_t soon;    /* after the current read batch, through r->defer_link (FIFO) */
    dc_list_t later;   /* delayed (budget spent), due times in r->defer_due_ms (FIFO) */
    uv_idle_t idle;    /* runs `soon`: after the poll phase's callbacks, before the next poll */
    uv_timer_t later_timer;
    uv_timer_t sweep_timer;
    bool idle_on, sweep_on;
    unsigned closing_handles; /* dc_h2guard_destroy: handles whose close is pending */
};

static void limits_of(dc_h2guard_t *g, dc_h2guard_limits_t *lim)
{
    const dc_config_t *cfg = g->w->snap->cfg;
    lim->reset_budget = cfg->server.h2_reset_budget;
    lim->delay_ms = cfg->server.h2_dos_delay_ms;
}

static void on_sweep(uv_timer_t *t);

dc_h2guard_t *dc_h2guard_of(dc_worker_t *w)
{
    if (w->h2guard != NULL)
        return w->h2guard;
    dc_h2guard_t *g = dc_calloc(1, sizeof(*g));
    g->w = w;
    g->nbuckets = INITIAL_BUCKETS;
    g->buckets = dc_calloc(g->nbuckets, sizeof(*g->buckets));
    dc_list_init(&g->soon);
    dc_list_init(&g->later);
    uv_idle_init(&w->loop, &g->idle);
    g->idle.data = g;
    uv_timer_init(&w->loop, &g->later_timer);
    g->later_timer.data = g;
    uv_timer_init(&w->loop, &g->sweep_timer);
    g->sweep_timer.data = g;
    w->h2guard = g;
    return g;
}

static size_t bucket_of(const dc_h2guard_t *g, const h2o_conn_t *conn, uint64_t id)
{
    uint64_t h = ((uint64_t)(uintptr_t)conn >> 4) ^ (id * 0x9e3779b97f4a7c15ull);
    h ^= h >> 29;
    return (size_t)(h & (g->nbuckets - 1));
}

static void grow(dc_h2guard_t *g)
{
    size_t old_n = g->nbuckets;
    dc_h2conn_t **old = g->buckets;
    g->nbuckets = old_n * 2;
    g->buckets = dc_calloc(g->nbuckets, sizeof(*g->buckets));
    for (size_t i = 0; i < old_n; i++) {
        dc_h2conn_t *e = old[i];
        while (e != NULL) {
            dc_h2conn_t *next = e->next_in_bucket;
            size_t b = bucket_of(g, e->conn, e->id);
            e->next_in_bucket = g->buckets[b];
            g->buckets[b] = e;
            e = next;
        }
    }
    free(old);
}

/* The entry of `conn`, created on first use. A pointer h2o reused for a later connection has a
 * new id, so it gets a new entry; the old one (no requests left) ages out in the sweep. */
static dc_h2conn_t *entry_get(dc_h2guard_t *g, h2o_conn_t *conn)
{
    size_t b = bucket_of(g, conn, conn->id);
    for (dc_h2conn_t *e = g->buckets[b]; e != NULL; e = e->next_in_bucket)
        if (e->conn == conn && e->id == conn->id)
            return e;
    dc_h2guard_limits_t lim;
    limits_of(g, &lim);
    dc_h2conn_t *e = dc_calloc(1, sizeof(*e));
    e->conn = conn;
    e->id = conn->id;
    dc_list_init(&e->reqs);
    dc_h2guard_budget_init(&e->budget, &lim);
    e->next_in_bucket = g->buckets[b];
    g->buckets[b] = e;
    if (++g->count > g->nbuckets * 2)
        grow(g);
    if (!g->sweep_on) {
        g->sweep_on = true;
        uv_timer_start(&g->sweep_timer, on_sweep, SWEEP_MS, SWEEP_MS);
    }
    return e;
}

static void entry_remove(dc_h2guard_t *g, dc_h2conn_t *e)
{
    DC_ASSERT(e->live == 0);
    dc_h2conn_t **p = &g->buckets[bucket_of(g, e->conn, e->id)];
    while (*p != e)
        p = &(*p)->next_in_bucket;
    *p = e->next_in_bucket;
    if (g->last == e)
        g->last = NULL;
    g->count--;
    free(e);
}

/* The uv handle under an h2o socket (h2o's private struct, v2.2.x lib/common/socket/uv-binding.c.h). */
struct dc_h2o_uv_socket_prefix {
    h2o_socket_t super;
    struct {
        uv_stream_t *stream;
        uv_close_cb close_cb;
    } uv;
};

static int socket_fd(h2o_socket_t *sock)
{
    uv_os_fd_t fd;
    struct dc_h2o_uv_socket_prefix *s = (struct dc_h2o_uv_socket_prefix *)sock;
    if (s->uv.stream == NULL || uv_fileno((uv_handle_t *)s->uv.stream, &fd) != 0)
        return -1;
    return fd;
}

typedef enum { CLOSE_RESETS = 0, CLOSE_STALLED = 1 } close_reason_t;

/*
 * Close an HTTP/2 connection for abuse: GOAWAY(ENHANCE_YOUR_CALM) and close, as h2o's
 * enqueue_goaway() + close_connection() do. When a write is still in flight (the client does not
 * read), the GOAWAY would wait behind it forever: the socket is aborted instead (RST on close), and
 * h2o closes the connection when the write fails. Callable from h2o's callbacks (inside its parse
 * loop: it stops at the next frame) and from our timers.
 */
static void close_conn(dc_h2guard_t *g, dc_h2conn_t *e, close_reason_t why)
{
    h2o_http2_conn_t *c = (h2o_http2_conn_t *)e->conn;
    e->closing = true;
    if (c->state == H2O_HTTP2_CONN_STATE_IS_CLOSING)
        return;
    dc_counter_add(&g->w->metrics.h2_abuse_closed[why], 1);
    char peer[NI_MAXHOST] = "?";
    struct sockaddr_storage ss;
    socklen_t sl = c->super.callbacks->get_peername(&c->super, (struct sockaddr *)&ss);
    if (sl != 0)
        h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, peer);
    dc_log_warn("http2: closing the connection from %s: %s (requests %llu, reset before the answer %llu, "
                "answered %llu)",
                peer, why == CLOSE_RESETS ? "too many streams reset before their answer" : "output stalled",
                (unsigned long long)e->budget.requests, (unsigned long long)e->budget.early_resets,
                (unsigned long long)e->budget.answered);
    int fd = socket_fd(c->sock);
    if (c->_write.buf_in_flight != NULL && why == CLOSE_STALLED) {
        if (fd >= 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            shutdown(fd, SHUT_RDWR); /* the pending write fails; h2o closes the connection */
        }
        return;
    }
    if (c->_write.buf_in_flight != NULL && fd >= 0) {
        /* the GOAWAY goes out after the write in flight: bound how long an unread socket keeps it */
        unsigned int ms = (unsigned int)g->w->snap->cfg->server.h2_stall_timeout_ms;
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
    }
    static const char debug[][16] = {"rapid reset", "output stalled"};
    h2o_http2_encode_goaway_frame(&c->_write.buf, c->pull_stream_ids.max_open, H2O_HTTP2_ERROR_ENHANCE_YOUR_CALM,
                                  h2o_iovec_init(debug[why], strlen(debug[why])));
    h2o_http2_conn_request_write(c); /* before IS_CLOSING: it refuses to schedule a write after */
    c->state = H2O_HTTP2_CONN_STATE_IS_CLOSING;
}

void dc_h2guard_attach(dc_request_t *r)
{
    DC_ASSERT(r->req != NULL && r->req->version >= 0x200 && r->h2 == NULL);
    dc_h2guard_t *g = dc_h2guard_of(r->ctx.worker);
    h2o_conn_t *conn = r->req->conn;
    dc_h2conn_t *e = g->last;
    if (e == NULL || e->conn != conn || e->id != conn->id)
        g->last = e = entry_get(g, conn);
    r->h2 = e;
    dc_list_push_front(&e->reqs, &r->h2_link);
    e->live++;
    e->last_ms = uv_now(&r->ctx.worker->loop);
    dc_h2guard_budget_request(&e->budget);
}

void dc_h2guard_detach(dc_request_t *r)
{
    dc_h2conn_t *e = r->h2;
    h2o_req_t *req = r->req;
    DC_ASSERT(e != NULL && req != NULL && e->live > 0);
    dc_h2guard_t *g = r->ctx.worker->h2guard;
    dc_list_remove(&r->h2_link);
    r->h2 = NULL;
    e->live--;
    e->ended++;
    e->last_ms = uv_now(&r->ctx.worker->loop);
    h2o_http2_conn_t *c = (h2o_http2_conn_t *)req->conn;
    if (e->closing || c->state == H2O_HTTP2_CONN_STATE_IS_CLOSING)
        return; /* the connection is going away: its requests end with it */
    dc_h2guard_limits_t lim;
    limits_of(g, &lim);
    /* h2o_send() clears _generator with the final part: answered */
    if (req->res.status != 0 && req->_generator == NULL) {
        dc_h2guard_budget_answered(&e->budget, &lim);
        return;
    }
    dc_counter_add(&g->w->metrics.h2_early_resets, 1);
    if (dc_h2guard_budget_reset(&e->budget, &lim) == DC_H2GUARD_CLOSE)
        close_conn(g, e, CLOSE_RESETS);
}

/* ---- deferred upstream starts ---- */

static void run_deferred(dc_h2guard_t *g, dc_request_t *r)
{
    dc_h2guard_resume_cb cb = r->defer_cb;
    r->defer_cb = NULL;
    if (r->req != NULL)
        cb(r, r->defer_a, r->defer_b);
    else
        dc_counter_add(&g->w->metrics.h2_deferred_dropped, 1);
    dc_request_unref(r); /* the queue's reference */
}

static void on_idle(uv_idle_t *h)
{
    dc_h2guard_t *g = h->data;
    /* only what is queued now: requests deferred by these callbacks wait for the next round */
    dc_list_t q;
    dc_list_init(&q);
    dc_list_splice_back(&q, &g->soon);
    dc_list_node_t *n;
    while ((n = dc_list_pop_front(&q)) != NULL)
        run_deferred(g, dc_container_of(n, dc_request_t, defer_link));
    if (dc_list_empty(&g->soon)) {
        uv_idle_stop(&g->idle);
        g->idle_on = false;
    }
}

static dc_request_t *later_first(dc_h2guard_t *g)
{
    dc_list_node_t *n = dc_list_first(&g->later);
    return n != NULL ? dc_container_of(n, dc_request_t, defer_link) : NULL;
}

static void on_later(uv_timer_t *t)
{
    dc_h2guard_t *g = t->data;
    uint64_t now = uv_now(&g->w->loop);
    dc_request_t *r;
    while ((r = later_first(g)) != NULL && r->defer_due_ms <= now) {
        dc_list_remove(&r->defer_link);
        run_deferred(g, r);
    }
    if (r != NULL)
        uv_timer_start(&g->later_timer, on_later, r->defer_due_ms - now, 0);
}

bool dc_h2guard_defer(dc_request_t *r, dc_h2guard_resume_cb resume, const char *a, const char *b)
{
    if (r->h2 == NULL || r->h2_deferred)
        return false;
    dc_h2guard_t *g = r->ctx.worker->h2guard;
    dc_h2guard_limits_t lim;
    limits_of(g, &lim);
    r->h2_deferred = true;
    r->defer_cb = resume;
    r->defer_a = a;
    r->defer_b = b;
    dc_request_ref(r); /* held by the queue */
    uint64_t delay = dc_h2guard_budget_delay(&r->h2->budget, &lim);
    if (delay == 0) {
        dc_list_push_back(&g->soon, &r->defer_link);
        if (!g->idle_on) {
            g->idle_on = true;
            uv_idle_start(&g->idle, on_idle);
        }
        return true;
    }
    /* FIFO: the delay is the same for every request (a reload may shorten it: those wait a little more) */
    uint64_t now = uv_now(&r->ctx.worker->loop);
    r->defer_due_ms = now + delay;
    bool was_empty = dc_list_empty(&g->later);
    dc_list_push_back(&g->later, &r->defer_link);
    if (was_empty)
        uv_timer_start(&g->later_timer, on_later, delay, 0);
    return true;
}

/* ---- stall sweep ---- */

static void sample_stall(dc_h2guard_t *g, dc_h2conn_t *e, uint64_t now)
{
    h2o_http2_conn_t *c = (h2o_http2_conn_t *)e->conn; /* alive: it has requests */
    if (c->state == H2O_HTTP2_CONN_STATE_IS_CLOSING)
        return;
    bool blocked = c->_write.buf_in_flight != NULL && c->_write.buf_in_flight->size != 0;
    uint64_t progress = e->ended;
    size_t held = 0;
    dc_list_node_t *n;
    dc_list_foreach (n, &e->reqs) {
        dc_request_t *r = dc_container_of(n, dc_request_t, h2_link);
        h2o_http2_stream_t *st = H2O_STRUCT_FROM_MEMBER(h2o_http2_stream_t, req, r->req);
        if (h2o_http2_stream_has_pending_data(st))
            blocked = true;
        progress += r->req->bytes_sent;
        held += r->sending.len + r->pending.len;
    }
    bool stalled =
        dc_h2guard_stall_sample(&e->stall, blocked, progress, now, g->w->snap->cfg->server.h2_stall_timeout_ms);
    if (stalled || (blocked && held > MAX_BLOCKED_BYTES))
        close_conn(g, e, CLOSE_STALLED);
}

static void on_sweep(uv_timer_t *t)
{
    dc_h2guard_t *g = t->data;
    uint64_t now = uv_now(&g->w->loop);
    uint64_t retain = g->w->snap->cfg->server.idle_timeout_ms;
    if (retain < MIN_RETAIN_MS)
        retain = MIN_RETAIN_MS;
    for (size_t b = 0; b < g->nbuckets; b++) {
        dc_h2conn_t *e = g->buckets[b];
        while (e != NULL) {
            dc_h2conn_t *next = e->next_in_bucket;
            if (e->live == 0) {
                /* no request holds the connection: forget it after a while (it may be gone, or
                 * only pinging) */
                if (now - e->last_ms >= retain)
                    entry_remove(g, e);
            } else if (!e->closing) {
                sample_stall(g, e, now);
            }
            e = next;
        }
    }
    if (g->count == 0) {
        uv_timer_stop(&g->sweep_timer);
        g->sweep_on = false;
    }
}

/* ---- teardown ---- */

static void on_guard_handle_closed(uv_handle_t *h)
{
    dc_h2guard_t *g = h->data;
    if (--g->closing_handles == 0)
        free(g);
}

void dc_h2guard_destroy(dc_worker_t *w)
{
    dc_h2guard_t *g = w->h2guard;
    if (g == NULL)
        return;
    DC_ASSERT(dc_list_empty(&g->soon) && dc_list_empty(&g->later));
    w->h2guard = NULL;
    for (size_t i = 0; i < g->nbuckets; i++) {
        while (g->buckets[i] != NULL) {
            dc_h2conn_t *e = g->buckets[i];
            DC_ASSERT(e->live == 0);
            g->buckets[i] = e->next_in_bucket;
            free(e);
        }
    }
    free(g->buckets);
    g->closing_handles = 3;
    uv_close((uv_handle_t *)&g->idle, on_guard_handle_closed);
    uv_close((uv_handle_t *)&g->later_timer, on_guard_handle_closed);
    uv_close((uv_handle_t *)&g->sweep_timer, on_guard_handle_closed);
}
