/*
 * libcurl multi driven by one libuv loop (socket + timer callbacks, never curl_multi_perform
 * busy loops). One dc_curl_loop_t per worker thread; it is not thread-safe and is only touched
 * from the thread that runs its loop.
 *
 * Transfers are added with dc_curl_loop_add(); when one completes (success or error) its done
 * callback runs once, after the easy handle has been removed from the multi. The easy handle
 * stays owned by the caller.
 */
#ifndef DC_UPSTREAM_CURL_UV_H
#define DC_UPSTREAM_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

#include "core/list.h"

typedef struct dc_curl_xfer dc_curl_xfer_t;

/* Reset easy handles a loop keeps for reuse (a new handle per transfer cost an allocation of
 * curl's whole per-handle state and its 16 KiB receive buffer, then freeing them). */
#define DC_CURL_EASY_POOL 64
typedef void (*dc_curl_done_cb)(dc_curl_xfer_t *xfer, CURLcode result);

/* Embed in the caller's object; set cb and data before dc_curl_loop_add(). */
struct dc_curl_xfer {
    CURL *easy;
    dc_curl_done_cb cb;
    void *data;
    int active;           /* 1 between add and done/remove */
    dc_list_node_t _link; /* in the loop's list of active transfers */
};

typedef struct dc_curl_loop {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int closing;
    struct sock_watch **_watch; /* indexed by descriptor: the watch of each socket curl has open */
    size_t _nwatch;
    CURL *_easy_pool[DC_CURL_EASY_POOL]; /* reset easy handles for the next transfers */
    size_t _neasy;
    dc_list_t _active; /* transfers between add and done/remove, newest first, through x->_link */
    void (*on_closed)(struct dc_curl_loop *);
} dc_curl_loop_t;

/* Global libcurl init; call once from main before any thread starts. */
int dc_curl_global_init(void);

/* Global libcurl clean-up; call once from main after every loop has closed. */
void dc_curl_global_cleanup(void);

/* Returns 0 or DC_EIO. */
int dc_curl_loop_init(dc_curl_loop_t *cl, uv_loop_t *loop);
/* Start a transfer. The easy handle must have everything set; CURLOPT_PRIVATE and
 * CURLOPT_CLOSESOCKETFUNCTION/DATA are taken (a socket's watch lives until curl closes it, across
 * the transfers of a kept-alive connection).
 * DC_EIO once the loop is closing (the done callback will not run). */
int dc_curl_loop_add(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer);
/* Abort a transfer without calling its done callback. Must not be called from inside one of
 * this transfer's curl callbacks (write/header/read): make those return an error instead. */
void dc_curl_loop_remove(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer);
/* Unpause a transfer paused by CURL_WRITEFUNC_PAUSE. May call the write callback synchronously. */
void dc_curl_loop_unpause(dc_curl_loop_t *cl, dc_curl_xfer_t *xfer);
/* Close (worker teardown): every active transfer is removed and its done callback runs now with
 * CURLE_ABORTED_BY_CALLBACK (callbacks may try to add transfers: refused), then the timer is
 * closed and the multi cleaned up, which closes curl's cached connections and their watches. The
 * loop must run until they are closed; on_closed (may be NULL) runs once the multi is gone. */
void dc_curl_loop_close(dc_curl_loop_t *cl, void (*on_closed)(dc_curl_loop_t *));
/* An easy handle for a new transfer: a reset one from the loop's pool, else a new one; NULL when
 * curl cannot allocate one. */
CURL *dc_curl_easy_get(dc_curl_loop_t *cl);
/* Give back an easy handle that is in no transfer (not between add and done/remove): it is reset
 * and pooled, or cleaned up when the pool is full or the loop is closing. NULL is ignored. */
void dc_curl_easy_put(dc_curl_loop_t *cl, CURL *easy);
/* Transfers active now (0 after close). */
size_t dc_curl_loop_active(const dc_curl_loop_t *cl);

#endif
