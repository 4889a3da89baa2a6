/*
 * The per-request state of the request path: shared by http/'s files (handler.c dispatch,
 * passthrough.c, serve.c, fill.c, batch.c) and by the request-facing modules layered on http
 * (sse/, which answers event streams through dc_http_register_streams() below). Nothing under
 * http/ includes those modules (proxy/README.md, the layering).
 *
 * A dc_request_t lives on the heap and is refcounted. The h2o request holds one reference: it
 * carries r in a request variable, and our disposal logger (handler.c on_req_dispose, run by h2o
 * just before it clears the request's pool, whether the request completed, failed or the client
 * went away) sets `req` to NULL, detaches r from whatever feeds it (fetch, fill, in-flight wait)
 * and drops that reference.
 *
 * The lifetime rule: nothing that may run after disposal points into the request's pool. Work that
 * outlives the client (a fleet wait, an L2 read, a fill) owns heap copies of what it needs
 * (dc_request_own_key() for the key; the fill copies key, URL and headers), and callbacks that can
 * run late check `req` before touching the h2o request. Code that calls into h2o or a fetch in ways that
 * can complete the request synchronously (h2o_send with a final state, resuming a transfer) holds
 * its own reference across the call and re-checks `req`. Single-threaded: a request lives on the
 * worker that accepted it.
 */
#ifndef DC_HTTP_REQUEST_H
#define DC_HTTP_REQUEST_H

#include <h2o.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "cache/growing.h"
#include "cache/store.h"
#include "config/config.h"
#include "core/list.h"
#include "http/h2guard.h"
#include "http/routectx.h"
#include "inflight/inflight.h"
#include "server/snapshot.h"
#include "server/worker.h"
#include "upstream/fetch.h"

#define DC_REQUEST_MAGIC 0x52455155u /* "REQU" */
/* Unsent bytes buffered per client before the upstream transfer is paused (pass-through modes). */
#define DC_STREAM_HIGH_WATER (256 * 1024)

struct dc_fill;

typedef struct dc_stream_buf {
    char *p;
    size_t len, cap;
} dc_stream_buf_t;

typedef enum {
    DC_OUT_NONE = 0, /* no response started */
    DC_OUT_PASS,     /* streaming a pass-through fetch (sending/pending buffers) */
    DC_OUT_BODY,     /* streaming from a shared body (hit, or the leader following its fill) */
    DC_OUT_SSE,      /* an event stream (sse/sse.h owns the subscriber) */
} dc_out_mode_t;

typedef struct dc_request {
    uint32_t magic;
    unsigned refs;
    h2o_req_t *req;     /* NULL once disposed */
    dc_route_ctx_t ctx; /* holds one snapshot reference (ctx.snap), released with r */
    char request_id[72];
    char client_ip[INET6_ADDRSTRLEN]; /* "" until dc_request_client_ip() fills it (a syscall: lazily) */
    char real_ip[64];                 /* "" until dc_request_real_ip() fills it */
    uint64_t start_us;
    const char *x_cache; /* X-Cache value, also for the access log */
    bool is_head;
    bool cors_preflight; /* answered by http/cors.c as a CORS preflight */
    bool client_key_forwarded;
    uint64_t upstream_us;
    unsigned attempts;
    unsigned tier; /* 1-based tier of the upstream that answered (0 = none), from dc_request_set_upstream_head */
    /* the path the access log shows: .base NULL = req->input.path; else that path with the values of
     * the query parameters a plugin removed (credentials: dc_request_redact_query) replaced */
    h2o_iovec_t log_path;

    /* cache */
    char *key; /* request-pool memory, or heap once dc_request_own_key() ran (key_owned) */
    size_t key_len;
    bool key_owned;
    uint64_t hash;
    bool client_revalidate;     /* client no-cache + client_no_cache: revalidate */
    bool client_no_store;       /* request Cache-Control: no-store: its answer is not stored */
    bool client_only_if_cached; /* request Cache-Control: only-if-cached: 504 rather than the origin */
    bool client_cc_ignored;     /* freshness directives ignored (client_no_cache: ignore): Cache-Status says so */
    bool client_cc_set;         /* client_cc holds the request's Cache-Control (+ Pragma: no-cache) */
    bool client_pragma_no_cache;
    dc_cc_t client_cc;
    bool from_l2;                /* the entry was just read from the fleet's L2 */
    bool l2_read_done;           /* the L2 read this request waited for has ended (see ask_l2) */
    struct dc_flight *l2_flight; /* leading the read of this key from L2 (see ask_l2) */
    dc_cache_entry_t *stale;     /* a copy to fall back on if the origin fails (owned ref) */
    const char *vary_names;      /* the vary record's names when r->key is a secondary key (pool), else NULL */
    size_t vary_names_len;
    bool vary_retry;       /* a waiter handed another variant: look up again once released (http/vary.h) */
    unsigned vary_retries; /* how often it did (once more: pass through) */

    /* waiting on another request's fetch */
    dc_waiter_t waiter;
    bool waiting;
    struct dc_wait_timer *wait_timer;

    /* output */
    dc_out_mode_t out;
    h2o_generator_t generator;
    bool send_inflight;
    bool final_sent;
    /* DC_OUT_PASS */
    dc_fetch_t *fetch;
    dc_stream_buf_t sending, pending;
    bool upstream_done;
    bool paused;
    int upstream_err;
    /* DC_OUT_BODY */
    dc_shared_body_t *body;  /* owned ref, or borrowed from `entry` (body_borrowed) */
    bool body_borrowed;      /* body is one of entry's representations: entry's reference keeps it */
    dc_cache_entry_t *entry; /* entry being served, owned ref (keeps header strings alive) */
    struct dc_fill *fill;    /* the fill this leader follows (not a reference: detached on either side) */
    size_t sent, acked;      /* bytes handed to h2o / confirmed by proceed() */
    size_t body_end;         /* bytes of `body` to send (SIZE_MAX while the fill still runs) */
    bool body_error;         /* the fill failed mid-body: end the response with an error */
    bool ranged;             /* a 206 / 416: only bytes [sent, range_end) of the body go out */
    size_t range_end;
    /* following a body another worker's fill is receiving (DC_OUT_BODY with growing != NULL) */
    dc_growing_t *growing; /* owned ref */
    dc_growing_sub_t gsub;
    bool subscribed; /* holds a request reference while true (or while a wake-up is queued) */
    /* DC_OUT_SSE */
    const dc_config_stream_t *stream; /* a subscription to this stream (after the limit) */
    struct dc_sse_sub *sse;           /* detached when the request goes */
    /* HTTP/2 guard (h2guard.c) */
    struct dc_h2conn *h2;      /* the connection's entry while req is set (HTTP/2 only) */
    dc_list_node_t h2_link;    /* in the entry's list of live requests */
    bool h2_deferred;          /* upstream work was deferred once (never twice) */
    dc_list_node_t defer_link; /* in a deferral queue (holding a reference) */
    dc_h2guard_resume_cb defer_cb;
    const char *defer_a, *defer_b; /* the resume callback's arguments (static strings) */
    uint64_t defer_due_ms;
    /* plugins (http/plugins.h): the chain's per-request state (plugin/ owns it), NULL on routes
     * without plugins; the identity a plugin set for `limit.by: plugin` (pool memory, NULL = none,
     * the client IP then) and its tier */
    struct dexcache_req *plugin; /* dexcache/plugin.h's dexcache_req_t, defined by plugin/ */
    /* a plugin's view (http/plugins.h view_claim): answered from a cached source object by the
     * plugin module, never fetched upstream under its own key, never refreshed, never read from L2 */
    bool view;
    const char *limit_id;
    size_t limit_id_len;
    const char *limit_tier;
} dc_request_t;

/* The client's address as text, looked up on first use (hits with logging off never need it). */
const char *dc_request_client_ip(dc_request_t *r);
/* The peer's address of `conn` as text into buf, "-" when it cannot be had. */
void dc_conn_peer_ip(h2o_conn_t *conn, char buf[INET6_ADDRSTRLEN]);
/* The client as limits and logs name it (ratelimit/clientid.h): the peer, or when the peer is one of
 * server.trusted_proxies, CF-Connecting-IP / X-Forwarded-For. Looked up on first use, then kept. */
const char *dc_request_real_ip(dc_request_t *r);
/* Allocate / recycle request states through a small per-worker free list (no malloc per hit). */
dc_request_t *dc_request_new(dc_worker_t *w);
void dc_request_ref(dc_request_t *r);
void dc_request_unref(dc_request_t *r);
/* Move r->key from the request's pool to the heap (freed with r). Call before handing the key to
 * anything that may run after the client has gone (a fleet wait, an L2 read): the pool is cleared
 * when h2o disposes of the request, while r lives on through its references. Idempotent. */
void dc_request_own_key(dc_request_t *r);

/* Add a response header, copying name and value into the request pool. */
void dc_request_add_header(dc_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen);
/* Replace the body the request sends: an owned reference (released here later) or, borrowed, one
 * of r->entry's representations. Releases the previous one if it was owned. */
void dc_request_set_body(dc_request_t *r, dc_shared_body_t *body, bool borrowed);
/* The error answer for a fetch that failed before any response head: 503 + Retry-After (budget,
 * breaker); a transport failure by its cause (upstream/cause.h: its message, 504 for a timeout else
 * 502, "upstream" and "cause" in the JSON, Retry-After when retrying soon makes sense). */
void dc_request_respond_fetch_error(dc_request_t *r, dc_fetch_t *f, int err);
/* JSON error answer (records X-Cache "-" when nothing else was recorded). */
void dc_request_respond_error(dc_request_t *r, int status, const char *message);
/* The same for an upstream's failure: "upstream" and "cause" (NULL or "" = left out), and a
 * Retry-After of `retry_after_s` seconds unless 0. */
void dc_request_respond_upstream_error(dc_request_t *r, int status, const char *message, const char *upstream,
                                       const char *cause, unsigned retry_after_s);

/* passthrough.c: forward the request as is, stream the answer, never store. */
void dc_passthrough_start(dc_request_t *r, const char *x_cache, const char *cache_status);

/* serve.c */
/* Answer from a complete entry: 304 on a matching If-None-Match, HEAD without body. The request
 * takes its own reference to e (kept until it is disposed). */
void dc_serve_entry(dc_request_t *r, dc_cache_entry_t *e, const char *x_cache, const char *cache_status);
/* The same, taking over the caller's reference to e (the hit path: no extra reference counting on
 * an entry every worker is serving). e stays valid while r is. */
void dc_serve_entry_adopt(dc_request_t *r, dc_cache_entry_t *e, const char *x_cache, const char *cache_status);
/* Start a response whose body is still being appended to `body` by the fill this leader follows. */
struct dc_cdn_headers;
/* `cdn` (may be NULL): headers toward CDNs that replace the origin's Cache-Control. With
 * DC_HEAD_RANGES (a 200 being stored) the answer says Accept-Ranges: bytes and a Range is served
 * from the body as it arrives when `range_len` (the body's final length) is known (else SIZE_MAX:
 * the whole body). */
void dc_serve_follow_start(dc_request_t *r, struct dc_fill *fill, dc_fetch_t *f, dc_shared_body_t *body,
                           const char *x_cache, const char *cache_status, const struct dc_cdn_headers *cdn,
                           unsigned head_flags, size_t range_len);
/* Answer with `preview`'s head now and send `g`'s bytes as another worker's fill receives them.
 * Takes over the caller's reference to `g`. */
void dc_serve_stream(dc_request_t *r, dc_cache_entry_t *preview, dc_growing_t *g, const char *content_encoding,
                     const char *x_cache, const char *cache_status);
/* Stop following a growing body (client gone or response complete). */
void dc_serve_stream_detach(dc_request_t *r);
/* The fill appended bytes (or finished: end = final length, error = it failed). */
void dc_serve_follow_pump(dc_request_t *r);
void dc_serve_follow_end(dc_request_t *r, bool error);
/* The generator callbacks for both output modes. */
void dc_out_proceed(h2o_generator_t *gen, h2o_req_t *req);
void dc_out_stop(h2o_generator_t *gen, h2o_req_t *req);

/* What a fill fetches and stores under: the cache key (and its hash), the upstream URL and the
 * NULL-terminated upstream request header lines. All borrowed for the call (the fill copies them). */
typedef struct dc_fill_target {
    const char *key;
    size_t key_len;
    uint64_t hash;
    const char *url;
    const char *const *headers; /* NULL for dc_fill_fetch_as_waiter (it sends its own) */
} dc_fill_target_t;

/* fill.c: the answer for `t->key` delivered to `waiter` (its callbacks run later, on its target
 * worker): join the fetch in flight, or start one with no client (like a background refresh) and
 * wait for it (dc_inflight_wait_on). The waiter is always queued. `ctx` (worker, snap, route, rule
 * are read) and `stale` (may be NULL) are borrowed. through_fleet: in a fleet, the fetch is
 * collapsed across instances like a request's miss (the fleet lock, another instance's L2 copy or
 * fill: collapse.c); else this instance fetches at once. */
void dc_fill_fetch_as_waiter(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_cache_entry_t *stale,
                             dc_waiter_t *waiter, bool through_fleet);
/* fill.c: a fill for a flight's waiters only (no client, so no Vary: the waiters' requests are not
 * known); the rest as dc_fill_start. */
void dc_fill_start_shared(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                          dc_cache_entry_t *stale, bool holds_fleet_lock);
/* collapse.c: one background refresh of t's key (stale-while-revalidate, refresh-ahead) unless one
 * is in flight, fleet-wide in a fleet (the lock; another instance's fresh L2 copy is adopted instead).
 * All borrowed. */
void dc_fill_refresh(const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_cache_entry_t *stale);
/* fill.c: share a stored entry with the fleet (L2 in Redis; nothing without redis:). */
void dc_fill_share_l2(dc_worker_t *w, const dc_cache_entry_t *e);
/* fill.c: the leader's fetch that fills the cache for a key. `client` may be NULL (background
 * refresh). Takes over `flight`; `ctx` is borrowed (the fill copies worker, route and rule and takes
 * its own snapshot reference; up_rt is looked up in the snapshot); `stale` (may be NULL) is borrowed
 * (the fill takes its own ref). */
void dc_fill_start(dc_request_t *client, const dc_route_ctx_t *ctx, const dc_fill_target_t *t, dc_flight_t *flight,
                   dc_cache_entry_t *stale, bool holds_fleet_lock);
/* The leader's client is gone. */
void dc_fill_detach(struct dc_fill *fill, dc_request_t *r);
/* Bytes the leader has confirmed sent (lets a pass-mode fill drop them and resume). */
void dc_fill_client_progress(struct dc_fill *fill);

/* Status, reason and the forwarded upstream headers of `f` onto r's response, plus Via and
 * Server-Timing. Flags: */
enum {
    DC_HEAD_SKIP_CACHE_CONTROL = 1, /* the route's CDN policy replaces the origin's */
    DC_HEAD_SKIP_ETAG = 2,          /* our strong ETag names cached representations */
    DC_HEAD_DECODED = 4,            /* the body is sent decoded: no Content-Encoding/Length, no Vary from origin */
    DC_HEAD_SKIP_CDN_CC = 8,        /* the origin's CDN-Cache-Control is not passed on (rule or route says so) */
    DC_HEAD_RANGES = 16,            /* ranges are served from the cache: no Accept-Ranges from origin */
    DC_HEAD_STRIP_QUALIFIED = 32,   /* no field named by a no-cache="..." / private="..." qualifier */
};
void dc_request_set_upstream_head(dc_request_t *r, dc_fetch_t *f, unsigned flags);
/* Cache-Status `cs` naming the tier that answered when it is not the first (RFC 9211 2.8: the
 * `detail` parameter, since an unregistered parameter would need IANA registration):
 * "...; detail=tier-2", or "...; detail=\"pass tier-2\"" when cs already has a detail token. */
const char *dc_request_cache_status_tier(h2o_mem_pool_t *pool, const char *cs, unsigned tier);
/* Fetch options of upstream `up` (timeouts, retries, HTTP/2, TLS verification, key header, budget);
 * with_keys: our API keys are injected (false when the client's own key is forwarded). */
void dc_fetch_request_from_upstream(dc_fetch_request_t *fr, const dc_config_upstream_t *up, dc_upstream_rt_t *rt,
                                    bool with_keys, struct dc_fleet *fleet);
/* Stop whatever feeds this request (pass-through fetch, fill, in-flight wait timer excluded). */
void dc_request_detach_sources(dc_request_t *r);

/*
 * Event streams plug into the request path here, from the layer above. The module that serves
 * them (sse/) registers its operations once at start-up, before any worker runs (the pointer is
 * never changed again); http calls `subscribe` for a request routed to a `streams:` path after
 * its client limit, and `proceed` / `detach` for a request in DC_OUT_SSE mode (r->sse set).
 * Without a registration a stream path is answered 503.
 */
typedef struct dc_http_stream_ops {
    void (*subscribe)(dc_request_t *r, const dc_config_stream_t *stream); /* takes over the response */
    void (*proceed)(struct dc_sse_sub *sub);
    void (*detach)(struct dc_sse_sub *sub); /* sets r->sse to NULL */
} dc_http_stream_ops_t;
void dc_http_register_streams(const dc_http_stream_ops_t *ops);
/* Hand r to the registered stream module (or answer 503). */
void dc_http_stream_subscribe(dc_request_t *r, const dc_config_stream_t *stream);
/* h2o's proceed for a DC_OUT_SSE response. */
void dc_http_stream_proceed(dc_request_t *r);

/* Shared with fill.c: upstream URL and request headers for this request (pool memory). */
const char *dc_request_upstream_url(dc_request_t *r);
/* The upstream URL of a cacheable request, built from its cache key (canonical path and query:
 * key_sets merged, sorted and deduplicated, ignore_params left out): what is stored under a key is
 * always the answer to that key, so two requests that share a key can never have one's answer
 * (an error provoked by an odd spelling of the query) served to the other. Pool memory. */
const char *dc_request_cache_url(dc_request_t *r);
/* The access log shows `name`'s value(s) in the query as "REDACTED" (the name compared after
 * percent-decoding, like the query functions plugins use). Request pool memory. */
void dc_request_redact_query(dc_request_t *r, const char *name, size_t name_len);
const char **dc_request_upstream_headers(dc_request_t *r, bool for_cache);
/* Append the rule's key_headers (each occurrence the request has, in the rule's order) to r->key
 * and recompute r->hash; the key is unchanged when the request sends none of them. Those headers
 * are also the ones dc_request_upstream_headers() forwards on the cache path. */
void dc_request_key_add_headers(dc_request_t *r);
/* Record the outcome of a fetch in metrics and upstream health. */
void dc_request_record_upstream(dc_worker_t *w, dc_upstream_rt_t *up_rt, dc_fetch_t *f, int err);

#endif
