#include "upstream/curl_uv.h"
#include "core/error.h"
#include "core/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One per socket curl asks us to watch. It lives as long as the socket, not the transfer: curl
 * removes a kept-alive connection's socket between transfers (CURL_POLL_REMOVE) and asks for it again
 * on the next one; the watch stays, idle, and what libuv has armed is changed only when the wanted
 * events really change (each uv_poll_start costs an epoll_ctl ADD that fails with EEXIST, then a
 * MOD). It is closed when curl closes the socket (on_close_socket), before the descriptor goes. */
typedef struct sock_watch {
    uv_poll_t poll;
    curl_socket_t fd;
    dc_curl_loop_t *cl;
    int events; /* UV_READABLE / UV_WRITABLE armed in libuv now; 0 = stopped */
    bool idle;  /* curl removed the socket: a connection in its cache, between transfers */
} sock_watch_t;

int dc_curl_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK ? 0 : DC_EIO;
}

void dc_curl_global_cleanup(void)
{
    curl_global_cleanup();
}

static void xfer_link(dc_curl_loop_t *cl, dc_curl_xfer_t *x)
{
    x->_link = (dc_list_node_t){0}; /* not active: the caller need not zero it */
    dc_list_push_front(&cl->_active, &x->_link);
}

static void xfer_unlink(dc_curl_xfer_t *x)
{
    dc_list_remove(&x->_link);
}

static void drain_messages(dc_curl_loop_t *cl)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(cl->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        dc_curl_xfer_t *xfer = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&xfer);
        curl_multi_remove_handle(cl->multi, easy);
        if (xfer != NULL) {
            xfer->active = 0;
            xfer_unlink(xfer);
            xfer->cb(xfer, result);
        }
    }
}

/* ---- watches, by descriptor ---- */

static sock_watch_t *watch_of(const dc_curl_loop_t *cl, curl_socket_t s)
{
    return s >= 0 && (size_t)s < cl->_nwatch ? cl->_watch[s] : NULL;
}

static void watch_set(dc_curl_loop_t *cl, curl_socket_t s, sock_watch_t *w)
{
    DC_ASSERT(s >= 0);
    if ((size_t)s >= cl->_nwatch) {
        size_t n = cl->_nwatch ? cl->_nwatch : 64;
        while (n <= (size_t)s)
            n *= 2;
        cl->_watch = dc_realloc(cl->_watch, n * sizeof(*cl->_watch));
        memset(cl->_watch + cl->_nwatch, 0, (n - cl->_nwatch) * sizeof(*cl->_watch));
        cl->_nwatch = n;
    }
    cl->_watch[s] = w;
}

static void on_poll(uv_poll_t *handle, int status, int events);

/* Arm exactly `events` (0 stops); libuv is touched only when they differ from what is armed. */
static int watch_arm(sock_watch_t *w, int events)
{
    if (events == w->events)
        return 0;
    int rc = events == 0 ? uv_poll_stop(&w->poll) : uv_poll_start(&w->poll, events, on_poll);
    if (rc == 0)
        w->events = events;
    return rc;
}

static void on_watch_closed(uv_handle_t *h)
{
    free(h->data);
}

/* The socket is about to be closed: its watch goes first (uv_close takes the descriptor out of
 * epoll, which must happen while it is still open: after close() its number may be another's). */
static void watch_drop(dc_curl_loop_t *cl, sock_watch_t *w)
{
    watch_set(cl, w->fd, NULL);
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    sock_watch_t *w = handle->data;
    dc_curl_loop_t *cl = w->cl;
    if (w->idle) {
        /* an idle kept-alive connection became readable: the origin closed it (or sent bytes nobody
         * asked for). curl finds it dead when it next considers reusing it; until then, stop
         * watching (libuv takes it out of epoll if it stays ready) */
        watch_arm(w, 0);
        return;
    }
    int flags = 0;
    if (status < 0) /* libuv saw POLLERR and says only that (UV_EBADF): let curl read and write, so that it
                     * meets the socket's own error (ECONNRESET...) and names it, not "select/poll returned error" */
        flags = CURL_CSELECT_ERR | CURL_CSELECT_IN | CURL_CSELECT_OUT;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(cl->multi, w->fd, flags, &running);
    drain_messages(cl);
}

static int on_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
    dc_curl_loop_t *cl = userp;
    sock_watch_t *w = socketp != NULL ? socketp : watch_of(cl, s);
    if (action == CURL_POLL_REMOVE) {
        if (w == NULL)
            return 0;
        curl_multi_assign(cl->multi, s, NULL);
        curl_socket_t kept = CURL_SOCKET_BAD;
        curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &kept);
        if (kept == s) {
            /* a connection curl keeps for the next transfer (its close comes through
             * on_close_socket): the watch stays, readable only, to notice a close by the origin */
            w->idle = true;
            if (w->events != 0 && w->events != UV_READABLE)
                watch_arm(w, UV_READABLE);
        } else {
            /* anything else (a connect attempt that lost, the resolver's pipe) may already be
             * closed without a word to us: its watch goes now */
            uv_poll_stop(&w->poll);
            watch_drop(cl, w);
        }
        return 0;
    }
    if (w == NULL) {
        w = dc_calloc(1, sizeof(*w));
        w->fd = s;
        w->cl = cl;
        if (uv_poll_init_socket(cl->loop, &w->poll, s) != 0) {
            free(w);
            return -1;
        }
        w->poll.data = w;
        watch_set(cl, s, w);
    }
    if (w->idle || socketp == NULL)
        curl_multi_assign(cl->multi, s, w);
    w->idle = false;
    int events = 0;
    if (action & CURL_POLL_IN)
        events |= UV_READABLE;
    if (action & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return watch_arm(w, events) == 0 ? 0 : -1;
}

/* CURLOPT_CLOSESOCKETFUNCTION of every transfer's easy handle (curl keeps it with the connection). */
static int on_close_socket(void *clientp, curl_socket_t s)
{
    dc_curl_loop_t *cl = clientp;
    sock_watch_t *w = watch_of(cl, s);
    if (w != NULL)
        watch_drop(cl, w);
    return close(s);
}

static void on_timer(uv_timer_t *t)
{
    dc_curl_loop_t *cl = t->data;
    int running;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_messages(cl);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    dc_curl_loop_t *cl = userp;
    if (cl->closing)
        return 0; /* the timer is closing (curl_multi_cleanup may still call this) */
    if (timeout_ms < 0) {
        uv_timer_stop(&cl->timer);
    } else {
        /* never act synchronously here: curl may be inside its own call stack */
        uv_timer_start(&cl->timer, on_timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

int dc_curl_loop_init(dc_curl_loop_t *cl, uv_loop_t *loop)
{
    cl->loop = loop;
    cl->closing = 0;
    cl->_watch = NULL;
    cl->_nwatch = 0;
    cl->_neasy = 0;
    dc_list_init(&cl->_active);
    cl->multi = curl_multi_init();
    if (cl->multi == NULL)
        return DC_EIO;
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* keep plenty of idle connections per worker for keep-alive reuse toward upstreams */
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 256L);
    return 0;
}

int dc_curl_loop_add(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer)
{
    DC_ASSERT(!xfer->active);
    if (cl->closing)
        return DC_EIO;
    curl_easy_setopt(xfer->easy, CURLOPT_PRIVATE, xfer);
    curl_easy_setopt(xfer->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(xfer->easy, CURLOPT_CLOSESOCKETDATA, cl);
    if (curl_multi_add_handle(cl->multi, xfer->easy) != CURLM_OK)
        return DC_EIO;
    xfer->active = 1;
    xfer_link(cl, xfer);
    return 0;
}

void dc_curl_loop_remove(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer)
{
    if (!xfer->active)
        return;
    curl_multi_remove_handle(cl->multi, xfer->easy);
    xfer->active = 0;
    xfer_unlink(xfer);
}

void dc_curl_loop_unpause(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer)
{
    if (!xfer->active)
        return;
    curl_easy_pause(xfer->easy, CURLPAUSE_CONT);
    /* pausing state changes may need a kick so curl re-evaluates the socket */
    int running;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_messages(cl);
}

CURL *dc_curl_easy_get(dc_curl_loop_t *cl)
{
    if (cl->_neasy > 0)
        return cl->_easy_pool[--cl->_neasy];
    return curl_easy_init();
}

void dc_curl_easy_put(dc_curl_loop_t *cl, CURL *easy)
{
    if (easy == NULL)
        return;
    if (cl->closing || cl->_neasy == DC_CURL_EASY_POOL) {
        curl_easy_cleanup(easy);
        return;
    }
    curl_easy_reset(easy);
    cl->_easy_pool[cl->_neasy++] = easy;
}

static void on_timer_closed(uv_handle_t *h)
{
    dc_curl_loop_t *cl = h->data;
    while (cl->_neasy > 0)
        curl_easy_cleanup(cl->_easy_pool[--cl->_neasy]);
    curl_multi_cleanup(cl->multi); /* closes the cached connections: on_close_socket drops their watches */
    cl->multi = NULL;
    for (size_t i = 0; i < cl->_nwatch; i++) /* none should be left; never leak one */
        if (cl->_watch[i] != NULL)
            watch_drop(cl, cl->_watch[i]);
    free(cl->_watch);
    cl->_watch = NULL;
    cl->_nwatch = 0;
    if (cl->on_closed != NULL)
        cl->on_closed(cl);
}

void dc_curl_loop_close(dc_curl_loop_t *cl, void (*on_closed)(dc_curl_loop_t *))
{
    DC_ASSERT(!cl->closing);
    cl->closing = 1;
    cl->on_closed = on_closed;
    /* one at a time from the head: a done callback may remove other transfers */
    while (!dc_list_empty(&cl->_active)) {
        dc_curl_xfer_t *x = dc_container_of(dc_list_first(&cl->_active), dc_curl_xfer_t, _link);
        curl_multi_remove_handle(cl->multi, x->easy);
        x->active = 0;
        xfer_unlink(x);
        x->cb(x, CURLE_ABORTED_BY_CALLBACK);
    }
    uv_timer_stop(&cl->timer);
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}

size_t dc_curl_loop_active(const dc_curl_loop_t *cl)
{
    size_t n = 0;
    const dc_list_node_t *node;
    dc_list_foreach (node, &cl->_active)
        n++;
    return n;
}
