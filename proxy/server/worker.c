#include "server/worker.h"
#include "core/crash.h"
#include "core/error.h"
#include "core/log.h"
#include "cache/variants.h"
#include "http/h1chunked.h"
#include "http/h1gate.h"
#include "http/h2guard.h"
#include "redis/fleet.h"
#include "plugin/plugin.h"
#include "sse/sse.h"
#include "server/server.h"

#include <h2o/http2.h>
#include <h2o/http2_internal.h> /* h2o_http2_conn_t: see on_h2_probe */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A client connection's uv handle plus the worker that accepted it (h2o owns handle.data). */
typedef struct client_conn {
    uv_tcp_t tcp;
    dc_worker_t *worker;
} client_conn_t;

static void on_client_closed(uv_handle_t *h)
{
    client_conn_t *c = (client_conn_t *)h;
    dc_counter_add(&c->worker->metrics.connections_closed, 1);
    c->worker->nconns--;
    free(c);
}

static void on_unaccepted_closed(uv_handle_t *h)
{
    free(h);
}

static void on_accept(uv_stream_t *listener, int status)
{
    dc_worker_listener_t *l = listener->data;
    dc_worker_t *w = l->worker;
    if (status != 0 || w->draining || w->closing)
        return;
    client_conn_t *c = dc_calloc(1, sizeof(*c));
    c->worker = w;
    uv_tcp_init(&w->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_unaccepted_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    dc_counter_add(&w->metrics.connections_accepted, 1);
    w->nconns++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_client_closed);
    if (l->accept_ctx->ssl_ctx == NULL)
        dc_h1gate_accept(w, l->accept_ctx, sock); /* first request judged before libh2o parses it */
    else
        h2o_accept(l->accept_ctx, sock);
}

static void close_listeners(dc_worker_t *w)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].open) {
            w->listeners[i].open = false;
            uv_close((uv_handle_t *)&w->listeners[i].handle, NULL);
        }
    }
}

static void on_drain_tick(uv_timer_t *t)
{
    dc_worker_t *w = t->data;
    /* finished requests, and no compression job still needs this loop */
    if (dc_counter_get(&w->metrics.requests_active) == 0 && dc_variants_pending() == 0) {
        uv_timer_stop(t);
        uv_stop(&w->loop);
    }
}

/* ---- teardown (see worker.h) ---- */

/* Every client socket still open (the listeners are closed by now): shut down both ways. h2o then
 * reads EOF (or fails its next write) and closes the connection as if the client had gone. */
static void shutdown_client(uv_handle_t *h, void *arg)
{
    (void)arg;
    uv_os_fd_t fd;
    if (h->type == UV_TCP && !uv_is_closing(h) && uv_fileno(h, &fd) == 0)
        shutdown(fd, SHUT_RDWR);
}

static bool worker_quiet(dc_worker_t *w)
{
    return dc_counter_get(&w->metrics.requests_active) == 0 && w->nconns == 0 &&
           h2o_linklist_is_empty(&w->ctx.http1._conns) && h2o_linklist_is_empty(&w->ctx.http2._conns) &&
           dc_sse_worker_channels(w) == 0 && dc_curl_loop_active(&w->curl) == 0;
}

static void on_close_tick(uv_timer_t *t)
{
    dc_worker_t *w = t->data;
    if (!worker_quiet(w))
        return;
    uv_timer_stop(t);
    if (!w->quiet_reported) {
        w->quiet_reported = true;
        dc_server_worker_quiet(w->server, w);
    }
}

/* Step one, on the worker's thread after its serving loop stopped. */
static void worker_close(dc_worker_t *w)
{
    w->closing = true;
    close_listeners(w);
    uv_timer_stop(&w->drain_timer);
    if (!w->draining)
        h2o_context_request_shutdown(&w->ctx);
    dc_sse_worker_close(w);
    dc_curl_loop_close(&w->curl, NULL); /* transfers end now, as upstream errors */
    uv_walk(&w->loop, shutdown_client, NULL);
    dc_fleet_close(w->fleet); /* pending Redis calls complete with DC_EIO on the next turns */
    uv_timer_start(&w->drain_timer, on_close_tick, 0, 10);
}

/* Step two, once no worker can post to this one: close what is left; the loop then runs dry. */
static void worker_finish(dc_worker_t *w)
{
    DC_ASSERT(w->quiet_reported);
    dc_plugin_worker_finish(w); /* before the inbox closes: later resumes must not post here */
    dc_sse_worker_finish(w);
    dc_h2guard_destroy(w);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
    uv_close((uv_handle_t *)&w->h2_probe, NULL);
    uv_close((uv_handle_t *)&w->inbox_async, NULL);
    uv_stop(&w->loop);
}

/* A recycler's cached chunks: a plain list, each chunk's first word linking the next. */
static void empty_recycler(h2o_mem_recycle_t *r)
{
    while (r->cnt > 0) {
        void *chunk = r->_link;
        r->_link = *(void **)chunk;
        r->cnt--;
        free(chunk);
    }
}

/* The HTTP/2 write buffers' cache is `static __thread` in libh2o (lib/http2/connection.c): its
 * address is only seen through a live connection's buffer, so the loop looks once per turn until
 * the first HTTP/2 connection appears, then stops looking. */
static void on_h2_probe(uv_prepare_t *p)
{
    dc_worker_t *w = p->data;
    if (h2o_linklist_is_empty(&w->ctx.http2._conns))
        return;
    h2o_http2_conn_t *c = H2O_STRUCT_FROM_MEMBER(h2o_http2_conn_t, _conns, w->ctx.http2._conns.next);
    h2o_buffer_t *b = c->_write.buf;
    w->h2_wbuf_proto =
        b->bytes != NULL ? b->_prototype : H2O_STRUCT_FROM_MEMBER(h2o_buffer_prototype_t, _initial_buf, b);
    uv_prepare_stop(p);
}

void dc_worker_free_h2o_thread_caches(h2o_buffer_prototype_t *h2_wbuf)
{
    empty_recycler(&h2o_socket_buffer_prototype.allocator); /* socket input buffers */
    if (h2_wbuf != NULL)
        empty_recycler(&h2_wbuf->allocator);
    /* pool chunks: the recycler is static in libh2o, but a pool that needs a new chunk pops one
     * from it (or mallocs one once it is empty). Take as many as it can hold (16), then free them
     * ourselves instead of handing them back. Chunks are 4 KiB, linked by their first word, and a
     * pool with chunk_offset at the end of its chunk takes a new one (lib/common/memory.c, 2.2.x). */
    h2o_mem_pool_t pool;
    h2o_mem_init_pool(&pool);
    for (int i = 0; i < 16; i++) {
        pool.chunk_offset = 4096 - 2 * sizeof(void *);
        h2o_mem_alloc_pool(&pool, 16);
    }
    void *chunk = pool.chunks;
    while (chunk != NULL) {
        void *next = *(void **)chunk;
        free(chunk);
        chunk = next;
    }
}

static void report_open_handle(uv_handle_t *h, void *arg)
{
    dc_worker_t *w = arg;
    dc_log_error("worker %u: a %s handle is still open at exit; closing it", w->id, uv_handle_type_name(h->type));
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* After the finish: h2o's context (its timeouts and message queue), then every close still under
 * way (Redis, curl's cached connections, compression jobs) until the loop has no handle left. */
static void worker_release(dc_worker_t *w)
{
    /* the only timeout entry h2o leaves linked once its connections are gone: the GOAWAY re-send
     * that h2o_context_request_shutdown armed (h2o_context_dispose asserts every timeout empty) */
    if (h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&w->ctx);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0) { /* a handle nobody closed: name it, close it */
        uv_walk(&w->loop, report_open_handle, w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&w->loop) != 0)
            dc_log_error("worker %u: the loop cannot be closed", w->id);
    }
    dc_fleet_destroy(w->fleet);
    w->fleet = NULL;
    free(w->listeners);
    w->listeners = NULL;
    dc_snapshot_release(w->inbox_snap);
    w->inbox_snap = NULL;
    dc_snapshot_release(w->snap);
    w->snap = NULL;
    dc_worker_free_h2o_thread_caches(w->h2_wbuf_proto);
}

static void on_inbox(uv_async_t *a)
{
    dc_worker_t *w = a->data;
    pthread_mutex_lock(&w->inbox_lock);
    dc_snapshot_t *snap = w->inbox_snap;
    w->inbox_snap = NULL;
    bool drain = w->inbox_drain, stop = w->inbox_stop, finish = w->inbox_finish;
    w->inbox_stop = false;
    dc_msg_t *msgs = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    pthread_mutex_unlock(&w->inbox_lock);

    while (msgs != NULL) {
        dc_msg_t *m = msgs;
        msgs = m->next;
        m->next = NULL;
        m->run(m);
    }

    if (snap != NULL) {
        dc_snapshot_t *old = w->snap;
        w->snap = snap;
        dc_snapshot_release(old);
    }
    if (finish) {
        worker_finish(w);
        return;
    }
    if (stop && !w->closing) {
        uv_stop(&w->loop); /* worker_main goes on with worker_close */
        return;
    }
    if (drain && !w->draining) {
        w->draining = true;
        close_listeners(w);
        h2o_context_request_shutdown(&w->ctx);
        dc_sse_worker_drain(w); /* event streams never end by themselves */
        uv_timer_start(&w->drain_timer, on_drain_tick, 0, 20);
    }
}

static void *worker_main(void *arg)
{
    dc_worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "dc-worker-%u", w->id);
    pthread_setname_np(pthread_self(), name);

    w->accept_plain.ctx = &w->ctx;
    w->accept_tls.ctx = &w->ctx;
    if (dc_curl_loop_init(&w->curl, &w->loop) != 0)
        dc_fatal("worker %u: cannot create the curl multi handle", w->id);
    dc_fleet_opts_t fleet_opts = {w->snap->cfg->redis.url, w->snap->cfg->redis.prefix, w->id == 0};
    if (w->snap->cfg->redis.enabled && dc_fleet_create(&w->loop, &fleet_opts, &w->fleet) != 0)
        dc_log_error("worker %u: bad redis url %s: running without Redis", w->id, w->snap->cfg->redis.url);
    for (size_t i = 0; i < w->nlisteners; i++) {
        dc_worker_listener_t *l = &w->listeners[i];
        uv_tcp_init(&w->loop, &l->handle);
        l->handle.data = l;
        if (uv_tcp_open(&l->handle, l->fd) != 0 || uv_listen((uv_stream_t *)&l->handle, 4096, on_accept) != 0)
            dc_fatal("worker %u: cannot listen on fd %d", w->id, l->fd);
        l->open = true;
    }
    dc_crash_thread_init();           /* a crash report also after a stack overflow here */
    dc_plugin_worker_start(w);        /* the plugins' per-worker states, on this thread */
    uv_run(&w->loop, UV_RUN_DEFAULT); /* serving, until drained or stopped */
    worker_close(w);
    uv_run(&w->loop, UV_RUN_DEFAULT); /* until the finish */
    worker_release(w);
    dc_server_worker_exited(w->server, w);
    return NULL;
}

void dc_worker_init(dc_worker_t *w, dc_server_t *server, unsigned id, dc_snapshot_t *snap, h2o_globalconf_t *gconf,
                    SSL_CTX *ssl_ctx, const int *plain_fds, size_t nplain, const int *tls_fds, size_t ntls,
                    dc_cache_t *cache, dc_inflight_t *inflight, struct dc_limiter *limiter)
{
    dc_h1chunked_install(); /* libh2o decodes chunked request bodies with our strict decoder */
    memset(w, 0, sizeof(*w));
    w->cache = cache;
    w->inflight = inflight;
    w->limiter = limiter;
    w->magic = DC_WORKER_MAGIC;
    w->id = id;
    w->server = server;
    w->snap = dc_snapshot_ref(snap);
    uv_loop_init(&w->loop);
    h2o_context_init(&w->ctx, &w->loop, gconf);
    w->accept_plain.hosts = gconf->hosts;
    w->accept_tls.hosts = gconf->hosts;
    w->accept_tls.ssl_ctx = ssl_ctx;
    w->nlisteners = nplain + ntls;
    w->listeners = dc_calloc(w->nlisteners ? w->nlisteners : 1, sizeof(*w->listeners));
    for (size_t i = 0; i < w->nlisteners; i++) {
        dc_worker_listener_t *l = &w->listeners[i];
        l->worker = w;
        l->fd = i < nplain ? plain_fds[i] : tls_fds[i - nplain];
        l->accept_ctx = i < nplain ? &w->accept_plain : &w->accept_tls;
    }
    w->reqid_prefix = (uint32_t)random() ^ ((uint32_t)getpid() << 8) ^ (id << 24);
    pthread_mutex_init(&w->inbox_lock, NULL);
    uv_async_init(&w->loop, &w->inbox_async, on_inbox);
    w->inbox_async.data = w;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_prepare_init(&w->loop, &w->h2_probe);
    w->h2_probe.data = w;
    uv_prepare_start(&w->h2_probe, on_h2_probe);
    uv_unref((uv_handle_t *)&w->h2_probe);
    dc_metrics_register_worker(&w->metrics);
}

int dc_worker_start(dc_worker_t *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return DC_EIO;
    return 0;
}

void dc_worker_post_snapshot(dc_worker_t *w, dc_snapshot_t *snap)
{
    pthread_mutex_lock(&w->inbox_lock);
    dc_snapshot_t *stale = w->inbox_snap;
    w->inbox_snap = dc_snapshot_ref(snap);
    pthread_mutex_unlock(&w->inbox_lock);
    dc_snapshot_release(stale);
    uv_async_send(&w->inbox_async);
}

void dc_worker_post(void *target, dc_msg_t *msg)
{
    dc_worker_t *w = target;
    DC_CHECK_MAGIC(w, DC_WORKER_MAGIC);
    msg->next = NULL;
    pthread_mutex_lock(&w->inbox_lock);
    if (w->inbox_tail != NULL)
        w->inbox_tail->next = msg;
    else
        w->inbox_head = msg;
    w->inbox_tail = msg;
    pthread_mutex_unlock(&w->inbox_lock);
    uv_async_send(&w->inbox_async);
}

void dc_worker_post_drain(dc_worker_t *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    w->inbox_drain = true;
    pthread_mutex_unlock(&w->inbox_lock);
    uv_async_send(&w->inbox_async);
}

void dc_worker_post_stop(dc_worker_t *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    w->inbox_stop = true;
    pthread_mutex_unlock(&w->inbox_lock);
    uv_async_send(&w->inbox_async);
}

void dc_worker_post_finish(dc_worker_t *w)
{
    pthread_mutex_lock(&w->inbox_lock);
    w->inbox_finish = true;
    pthread_mutex_unlock(&w->inbox_lock);
    uv_async_send(&w->inbox_async);
}

void dc_worker_join(dc_worker_t *w)
{
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->inbox_lock);
}

size_t dc_worker_next_request_id(dc_worker_t *w, char *buf)
{
    /* 8 hex digits of per-worker random prefix + 12 of counter: unique per process run and sortable
     * (hand-formatted: this runs on every request) */
    static const char hex[] = "0123456789abcdef";
    uint64_t c = ++w->reqid_counter;
    for (int i = 7; i >= 0; i--)
        buf[7 - i] = hex[(w->reqid_prefix >> (4 * i)) & 15];
    for (int i = 11; i >= 0; i--)
        buf[8 + 11 - i] = hex[(c >> (4 * i)) & 15];
    buf[20] = '\0';
    return 20;
}
