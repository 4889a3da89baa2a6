#include "http/batch.h"
#include "cache/jsonobj.h"
#include "cache/key.h"
#include "cache/variants.h"
#include "cache/encode.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/request.h"

#include <mbedtls/sha256.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS_PER_REQUEST 1000

/* ---- the process-wide gatherer of ids to fetch ---- */

typedef struct pending_id {
    char *id;
    size_t id_len;
    char *key; /* the id's own cache key */
    size_t key_len;
    uint64_t hash;
    dc_flight_t *flight;     /* led by this process: finished when the id's answer is known */
    dc_cache_entry_t *stale; /* a copy to fall back on (owned), or NULL */
} pending_id_t;

struct dc_batcher {
    pthread_mutex_t lock;
    pending_id_t *ids; /* waiting for the window to close */
    size_t n, cap;
    bool window_open;
};

dc_batcher_t *dc_batcher_create(void)
{
    dc_batcher_t *b = dc_calloc(1, sizeof(*b));
    pthread_mutex_init(&b->lock, NULL);
    return b;
}

void dc_batcher_destroy(dc_batcher_t *b)
{
    if (b == NULL)
        return;
    DC_ASSERT(b->n == 0); /* an open window holds a snapshot reference */
    free(b->ids);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

/* ---- the route slot holding each batching route's batcher ---- */

#define NO_SLOT UINT_MAX
static unsigned batch_slot = NO_SLOT; /* written once at start-up */

static void *slot_create(const dc_config_route_t *route)
{
    return route->batch.enabled ? dc_batcher_create() : NULL;
}

static void slot_destroy(void *state)
{
    dc_batcher_destroy(state);
}

void dc_batch_register(void)
{
    if (batch_slot == NO_SLOT)
        batch_slot = dc_snapshot_register_route_slot(slot_create, slot_destroy);
}

static void pending_dispose(pending_id_t *p)
{
    free(p->id);
    free(p->key);
    dc_cache_entry_release(p->stale);
}

/* ---- query helpers ---- */

static bool unreserved(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static size_t encode_into(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved((char)c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    return o;
}

/* "<path>?<param>=<ids joined by ','>" (ids percent-encoded), heap. */
static char *path_query(const char *path, const char *param, char *const *ids, const size_t *lens, size_t n,
                        size_t *out_len)
{
    size_t cap = strlen(path) + strlen(param) + 4;
    for (size_t i = 0; i < n; i++)
        cap += 3 * lens[i] + 1;
    char *s = dc_malloc(cap);
    size_t o = strlen(path);
    memcpy(s, path, o);
    s[o++] = '?';
    o += encode_into(s + o, param, strlen(param));
    s[o++] = '=';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            s[o++] = ',';
        o += encode_into(s + o, ids[i], lens[i]);
    }
    s[o] = '\0';
    *out_len = o;
    return s;
}

/* method "GET" for an id's own key (what a request for that id alone has); "BATCH" for the
 * upstream request of a chunk, whose flight must never be an id's flight (a one-id chunk would
 * otherwise wait for itself). */
static char *key_for(const char *method, const dc_config_route_t *route, const dc_config_cache_rule_t *rule,
                     const char *pq, size_t pqlen, size_t *key_len)
{
    dc_cache_key_opts_t opts = {rule->key_sets, rule->nkey_sets, rule->ignore_params, rule->nignore_params};
    size_t ml = strlen(method);
    size_t cap = dc_cache_key_bound(ml, strlen(route->prefix), pqlen);
    char *key = dc_malloc(cap);
    long n = dc_cache_key_build(method, ml, route->prefix, pq, pqlen, &opts, key, cap);
    if (n < 0) {
        free(key);
        return NULL;
    }
    *key_len = (size_t)n;
    return key;
}

/* ---- one upstream request for up to `max` ids (on the worker that closed the window) ---- */

typedef struct chunk {
    dc_waiter_t waiter;
    dc_route_ctx_t ctx; /* worker, snap (an owned reference), route, rule */
    pending_id_t *ids;  /* owned */
    size_t n;
    dc_flight_upstream_t upstream; /* the chunk's fetch, passed on to each id's waiters */
    /* an ERROR result's upstream, cause and Retry-After, passed on the same way ("" = not said) */
    char err_upstream[sizeof(((dc_flight_result_t *)0)->upstream)];
    char err_cause[sizeof(((dc_flight_result_t *)0)->cause)];
    unsigned err_retry_after_s;
} chunk_t;

static void finish_id_error(chunk_t *c, pending_id_t *p, int status, const char *message, int fwd_status)
{
    dc_worker_t *w = c->ctx.worker;
    if (dc_cache_entry_stale_usable(p->stale, dc_now_wall_ms())) {
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY,
                                  .entry = p->stale,
                                  .stale = true,
                                  .fwd_status = fwd_status,
                                  .fetched = c->upstream};
        dc_inflight_finish(w->inflight, p->flight, &res);
        return;
    }
    dc_flight_result_t res = {.outcome = DC_FLIGHT_ERROR,
                              .status = status,
                              .message = message,
                              .fwd_status = fwd_status,
                              .retry_after_s = c->err_retry_after_s,
                              .fetched = c->upstream};
    memcpy(res.upstream, c->err_upstream, sizeof(res.upstream));
    memcpy(res.cause, c->err_cause, sizeof(res.cause));
    dc_inflight_finish(w->inflight, p->flight, &res);
}

/* An entry like `like` (headers, lifetimes) with this body. */
static dc_cache_entry_t *entry_with_body(const dc_cache_entry_t *like, const char *key, size_t key_len,
                                         const char *const *tags, size_t ntags, const char *body, size_t len)
{
    dc_body_t b;
    dc_body_init(&b, len);
    dc_body_append(&b, body, len);
    /* the batch answer's ETag names the whole batch, not this item: the item gets our digest tag */
    dc_cache_hdr_t *hs = dc_calloc(like->nheaders ? like->nheaders : 1, sizeof(*hs));
    size_t nh = 0;
    for (size_t i = 0; i < like->nheaders; i++)
        if (!(like->headers[i].name_len == 4 && memcmp(like->headers[i].name, "etag", 4) == 0))
            hs[nh++] = like->headers[i];
    dc_cache_entry_t *e =
        dc_cache_entry_create(key, key_len, like->status, hs, nh, tags, ntags, dc_shared_body_create(&b));
    for (size_t i = 0; i < e->nheaders; i++)
        e->headers[i].token = hs[i].token;
    free(hs);
    e->stored_at_ms = like->stored_at_ms;
    e->fresh_until_ms = like->fresh_until_ms;
    e->swr_until_ms = like->swr_until_ms;
    e->sie_until_ms = like->sie_until_ms;
    e->keep_until_ms = like->keep_until_ms;
    e->origin_age_s = like->origin_age_s;
    e->no_stale = like->no_stale;
    e->route_metric = like->route_metric;
    const dc_cache_hdr_t *ct = dc_cache_entry_header(e, "content-type", 12);
    e->compressible =
        ct != NULL && dc_encoding_compressible_type(ct->value, ct->value_len) && len >= DC_VARIANTS_MIN_BYTES;
    unsigned char digest[32];
    int hrc = mbedtls_sha256_ret((const unsigned char *)body, len, digest, 0);
    DC_ASSERT(hrc == 0);
    dc_cache_entry_set_etag(e, digest);
    return e;
}

typedef struct split {
    pending_id_t *ids;
    size_t n;
    const char **vals;
    size_t *vlens;
} split_t;

static int on_member(void *data, const dc_json_member_t *m)
{
    split_t *s = data;
    for (size_t i = 0; i < s->n; i++)
        if (s->vals[i] == NULL && s->ids[i].id_len == m->key_len && memcmp(s->ids[i].id, m->key, m->key_len) == 0) {
            s->vals[i] = m->value;
            s->vlens[i] = m->value_len;
        }
    return 0;
}

/* The upstream's answer for the chunk: one stored entry per id. */
static void split_answer(chunk_t *c, const dc_cache_entry_t *all)
{
    dc_worker_t *w = c->ctx.worker;
    const dc_body_t *b = &all->body->body;
    char *flat = dc_body_flatten(b);
    split_t s = {c->ids, c->n, dc_calloc(c->n, sizeof(char *)), dc_calloc(c->n, sizeof(size_t))};
    if (dc_json_object_members(flat, b->len, on_member, &s) != 0) {
        dc_log_warn("batch: upstream %s answered %s with something other than a JSON object",
                    c->ctx.route->upstream->name, c->ctx.route->batch.path);
        for (size_t i = 0; i < c->n; i++)
            finish_id_error(c, &c->ids[i], 502, "upstream answer is not a JSON object", all->status);
    } else {
        bool tag_ids = false;
        for (size_t i = 0; i < c->ctx.route->cdn.ntag_params; i++)
            tag_ids = tag_ids || strcmp(c->ctx.route->cdn.tag_params[i], c->ctx.route->batch.param) == 0;
        uint64_t now = dc_now_wall_ms();
        for (size_t i = 0; i < c->n; i++) {
            pending_id_t *p = &c->ids[i];
            /* {"<id>":<value>} as the upstream would answer this id alone; {} when it left it out */
            size_t len = s.vals[i] != NULL ? p->id_len + s.vlens[i] + 5 : 2;
            char *body = dc_malloc(len + 1);
            if (s.vals[i] != NULL) {
                body[0] = '{';
                body[1] = '"';
                memcpy(body + 2, p->id, p->id_len);
                memcpy(body + 2 + p->id_len, "\":", 2);
                memcpy(body + 4 + p->id_len, s.vals[i], s.vlens[i]);
                body[len - 1] = '}';
            } else {
                memcpy(body, "{}", 2);
            }
            const char *tags[2] = {all->ntags > 0 ? all->tags[0] : "batch", p->id};
            dc_cache_entry_t *e = entry_with_body(all, p->key, p->key_len, tags, tag_ids ? 2 : 1, body, len);
            free(body);
            /* absent_ids: refetch: an id left out is answered {} now but not remembered */
            bool remember = s.vals[i] != NULL || c->ctx.route->batch.absent_ids == DC_ABSENT_IDS_REMEMBER;
            bool stored = remember && dc_cache_insert(w->cache, e, now) == 0;
            if (stored) {
                dc_counter_add(&w->metrics.cache_stores[e->route_metric], 1);
                dc_fill_share_l2(w, e); /* single-id requests on other instances find it */
            }
            dc_flight_result_t res = {.outcome = DC_FLIGHT_ENTRY,
                                      .entry = e,
                                      .shared_only = !stored,
                                      .fwd_status = all->status,
                                      .fetched = c->upstream};
            dc_inflight_finish(w->inflight, p->flight, &res);
            dc_cache_entry_release(e);
        }
    }
    free(s.vals);
    free(s.vlens);
    free(flat);
}

static void on_chunk_result(dc_waiter_t *wt, dc_flight_result_t *res)
{
    chunk_t *c = wt->data;
    c->upstream = res->fetched;
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        if (res->entry->status == 200 && !res->stale) {
            split_answer(c, res->entry);
        } else {
            /* an upstream error (or a stale copy of the whole list): each id falls back on its own
             * stale copy, else gets the upstream's status */
            int st = res->stale ? 502 : res->entry->status;
            for (size_t i = 0; i < c->n; i++)
                finish_id_error(c, &c->ids[i], st >= 400 ? st : 502, "upstream answered an error",
                                res->fwd_status ? res->fwd_status : res->entry->status);
        }
        dc_cache_entry_release(res->entry);
        break;
    case DC_FLIGHT_ERROR:
        memcpy(c->err_upstream, res->upstream, sizeof(c->err_upstream));
        memcpy(c->err_cause, res->cause, sizeof(c->err_cause));
        c->err_retry_after_s = res->retry_after_s;
        for (size_t i = 0; i < c->n; i++)
            finish_id_error(c, &c->ids[i], res->status, res->message, res->fwd_status);
        break;
    case DC_FLIGHT_PASS:
        for (size_t i = 0; i < c->n; i++)
            finish_id_error(c, &c->ids[i], 502, "upstream answer not cacheable", res->fwd_status);
        break;
    case DC_FLIGHT_STREAM:
        dc_flight_result_release(res);
        for (size_t i = 0; i < c->n; i++)
            finish_id_error(c, &c->ids[i], 502, "upstream answer too large to split", 0);
        break;
    }
    for (size_t i = 0; i < c->n; i++)
        c->ids[i].flight = NULL;
}

static void on_chunk_release(dc_waiter_t *wt)
{
    chunk_t *c = wt->data;
    for (size_t i = 0; i < c->n; i++) {
        DC_ASSERT(c->ids[i].flight == NULL);
        pending_dispose(&c->ids[i]);
    }
    free(c->ids);
    dc_snapshot_release(c->ctx.snap);
    free(c);
}

static void chunk_start(chunk_t *c)
{
    dc_worker_t *w = c->ctx.worker;
    const dc_config_batch_t *bc = &c->ctx.route->batch;
    char **ids = dc_malloc(c->n * sizeof(char *));
    size_t *lens = dc_malloc(c->n * sizeof(size_t));
    for (size_t i = 0; i < c->n; i++) {
        ids[i] = c->ids[i].id;
        lens[i] = c->ids[i].id_len;
    }
    /* the other parameters are the same for every id of a batcher window: see dc_batch_try */
    size_t pql;
    char *pq = path_query(bc->path, bc->param, ids, lens, c->n, &pql);
    free(ids);
    free(lens);
    size_t key_len;
    char *key = key_for("BATCH", c->ctx.route, c->ctx.rule, pq, pql, &key_len);
    char *url = dc_asprintf("%s%s", c->ctx.route->upstream->url, pq);
    free(pq);
    c->waiter.on_result = on_chunk_result;
    c->waiter.on_release = on_chunk_release;
    c->waiter.target = w;
    c->waiter.data = c;
    uint64_t hash = key != NULL ? dc_cache_hash(key, key_len) : 0;
    if (key == NULL) {
        for (size_t i = 0; i < c->n; i++) {
            finish_id_error(c, &c->ids[i], 502, "batch key too long", 0);
            c->ids[i].flight = NULL;
        }
        on_chunk_release(&c->waiter);
        free(url);
        return;
    }
    dc_fill_target_t t = {key, key_len, hash, url, NULL};
    dc_fill_fetch_as_waiter(&c->ctx, &t, NULL, &c->waiter, false);
    free(key);
    free(url);
}

typedef struct window {
    uv_timer_t timer;
    dc_batcher_t *b;
    dc_route_ctx_t ctx; /* worker, snap (an owned reference), route, rule */
} window_t;

static void on_window_closed(uv_handle_t *h)
{
    window_t *win = (window_t *)h;
    dc_snapshot_release(win->ctx.snap);
    free(win);
}

static void on_window(uv_timer_t *t)
{
    window_t *win = (window_t *)t;
    dc_batcher_t *b = win->b;
    pthread_mutex_lock(&b->lock);
    pending_id_t *ids = b->ids;
    size_t n = b->n;
    b->ids = NULL;
    b->n = b->cap = 0;
    b->window_open = false;
    pthread_mutex_unlock(&b->lock);
    size_t max = win->ctx.route->batch.max;
    for (size_t off = 0; off < n; off += max) {
        chunk_t *c = dc_calloc(1, sizeof(*c));
        c->ctx = win->ctx;
        c->ctx.snap = dc_snapshot_ref(win->ctx.snap);
        c->n = n - off < max ? n - off : max;
        c->ids = dc_malloc(c->n * sizeof(pending_id_t));
        memcpy(c->ids, ids + off, c->n * sizeof(pending_id_t));
        chunk_start(c);
    }
    free(ids);
    uv_close((uv_handle_t *)&win->timer, on_window_closed);
}

/* Queue an id this process leads; the first id of a window arms its timer on this worker. */
static void batcher_add(dc_batcher_t *b, dc_request_t *r, pending_id_t *p)
{
    pthread_mutex_lock(&b->lock);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->ids = dc_realloc(b->ids, b->cap * sizeof(*b->ids));
    }
    b->ids[b->n++] = *p;
    bool open = !b->window_open;
    b->window_open = true;
    pthread_mutex_unlock(&b->lock);
    if (!open)
        return;
    window_t *win = dc_calloc(1, sizeof(*win));
    win->b = b;
    win->ctx = r->ctx;
    win->ctx.snap = dc_snapshot_ref(r->ctx.snap);
    uv_timer_init(&r->ctx.worker->loop, &win->timer);
    uv_timer_start(&win->timer, on_window, r->ctx.route->batch.window_ms, 0);
}

/* ---- one client request ---- */

typedef struct batch_req batch_req_t;

typedef struct want {
    batch_req_t *br;
    dc_waiter_t waiter;
    dc_cache_entry_t *entry; /* answer (owned) */
    int status;              /* error to answer when entry is NULL */
    const char *message;
    bool stale;
    dc_flight_upstream_t upstream;                                  /* the fetch that answered it, if one did */
    char err_upstream[sizeof(((dc_flight_result_t *)0)->upstream)]; /* with status: as the fill said it */
    char err_cause[sizeof(((dc_flight_result_t *)0)->cause)];
    unsigned err_retry_after_s;
} want_t;

struct batch_req {
    dc_request_t *r; /* a reference */
    want_t *wants;
    size_t n, pending;
    bool hit; /* every id was answered from the cache at once */
    bool collapsed;
};

static void respond(batch_req_t *br)
{
    dc_request_t *r = br->r;
    if (r->req == NULL)
        return;
    dc_worker_metrics_t *m = &r->ctx.worker->metrics;
    /* the access log's upstream figures: the slowest of the fetches that answered its ids */
    for (size_t i = 0; i < br->n; i++) {
        const dc_flight_upstream_t *u = &br->wants[i].upstream;
        if (u->attempts > 0 && u->us >= r->upstream_us) {
            r->upstream_us = u->us;
            r->attempts = u->attempts;
            r->tier = u->tier;
        }
    }
    for (size_t i = 0; i < br->n; i++) {
        want_t *wt = &br->wants[i];
        if (wt->entry == NULL) {
            dc_request_respond_upstream_error(r, wt->status ? wt->status : 502,
                                              wt->message ? wt->message : "upstream failed", wt->err_upstream,
                                              wt->err_cause, wt->err_retry_after_s);
            return;
        }
        if (wt->entry->status != 200) { /* the upstream's own error for this id: as it said it */
            dc_serve_entry(r, wt->entry, "MISS", "dexcache; fwd=miss; detail=batch");
            return;
        }
    }
    /* {"a":...,"b":...} in the client's order: each id's body is {"<id>":<value>} or {} */
    size_t len = 2;
    uint64_t stored = UINT64_MAX;
    bool stale = false;
    for (size_t i = 0; i < br->n; i++) {
        len += br->wants[i].entry->body->body.len + 1;
        if (br->wants[i].entry->stored_at_ms < stored)
            stored = br->wants[i].entry->stored_at_ms;
        stale = stale || br->wants[i].stale;
    }
    char *body = dc_malloc(len);
    size_t o = 0;
    body[o++] = '{';
    for (size_t i = 0; i < br->n; i++) {
        const dc_body_t *b = &br->wants[i].entry->body->body;
        if (b->len <= 2)
            continue; /* {}: the upstream has nothing for this id */
        if (o > 1)
            body[o++] = ',';
        dc_body_copy(b, 1, b->len - 2, body + o); /* the member, without the braces */
        o += b->len - 2;
    }
    body[o++] = '}';
    const dc_cache_entry_t *first = br->wants[0].entry;
    size_t plen = r->req->path.len; /* a composed answer, never stored: its key is only a name */
    dc_cache_entry_t *e = entry_with_body(first, r->req->path.base, plen, NULL, 0, body, o);
    free(body);
    e->stored_at_ms = stored;
    if (br->hit) {
        dc_counter_add(&m->cache_hits[r->ctx.route_metric], 1);
        dc_serve_entry(r, e, "HIT", "dexcache; hit; detail=batch");
    } else {
        dc_counter_add(&m->cache_misses[r->ctx.route_metric], 1);
        dc_serve_entry(r, e, stale ? "STALE" : "MISS",
                       stale ? "dexcache; fwd=stale; detail=batch" : "dexcache; fwd=miss; stored; detail=batch");
    }
    dc_cache_entry_release(e);
}

static void br_done(batch_req_t *br)
{
    respond(br);
    for (size_t i = 0; i < br->n; i++)
        dc_cache_entry_release(br->wants[i].entry);
    free(br->wants);
    dc_request_unref(br->r);
    free(br);
}

static void on_want_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    want_t *wt = w->data;
    wt->upstream = res->fetched;
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        wt->entry = res->entry; /* taken over */
        wt->stale = res->stale;
        break;
    case DC_FLIGHT_ERROR:
        wt->status = res->status;
        wt->message = res->message;
        memcpy(wt->err_upstream, res->upstream, sizeof(wt->err_upstream));
        memcpy(wt->err_cause, res->cause, sizeof(wt->err_cause));
        wt->err_retry_after_s = res->retry_after_s;
        break;
    case DC_FLIGHT_PASS:
        wt->status = 502;
        wt->message = "upstream answer not cacheable";
        break;
    case DC_FLIGHT_STREAM:
        dc_flight_result_release(res);
        wt->status = 502;
        wt->message = "upstream answer too large";
        break;
    }
}

static void on_want_release(dc_waiter_t *w)
{
    want_t *wt = w->data;
    batch_req_t *br = wt->br;
    if (--br->pending == 0)
        br_done(br);
}

/* The ids of a batchable request, split from its id parameter into pool memory: empty items and
 * repeats dropped, the client's order kept. Returns the count, or 0 when the request is not batched
 * (no id parameter, other parameters too, more ids than one upstream request takes). */
static size_t read_id_list(h2o_req_t *req, const dc_config_batch_t *bc, char ***ids_out, size_t **lens_out)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1;
    size_t qlen = req->path.len - req->query_at - 1;
    char *val = h2o_mem_alloc_pool(&req->pool, qlen + 1);
    long vl = dc_cache_query_param(q, qlen, bc->param, val, qlen + 1);
    if (vl <= 0)
        return 0;
    if (!dc_cache_query_only(q, qlen, bc->param)) /* not batched: a window mixes only plain id lists */
        return 0;
    char **ids = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * MAX_IDS_PER_REQUEST);
    size_t *lens = h2o_mem_alloc_pool(&req->pool, sizeof(size_t) * MAX_IDS_PER_REQUEST);
    size_t n = 0;
    for (char *p = val, *end = val + vl; p < end;) {
        char *c = memchr(p, ',', (size_t)(end - p));
        size_t il = c ? (size_t)(c - p) : (size_t)(end - p);
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = lens[i] == il && memcmp(ids[i], p, il) == 0;
        if (il > 0 && !dup) {
            if (n == bc->max || n == MAX_IDS_PER_REQUEST)
                return 0; /* more than one upstream request allows: the upstream decides */
            ids[n] = p;
            lens[n++] = il;
        }
        p += il + 1;
    }
    *ids_out = ids;
    *lens_out = lens;
    return n;
}

/* Set up one id of br: answered now (a fresh cached entry, or an id too long for a key: the want
 * is settled and br->pending dropped), or waiting on the id's flight (joined, or led through the
 * batcher, which then owns the key and the stale copy). */
static void want_start(dc_batcher_t *b, batch_req_t *br, want_t *wt, char *id, size_t id_len, uint64_t now)
{
    dc_request_t *r = br->r;
    dc_worker_t *w = r->ctx.worker;
    const dc_config_batch_t *bc = &r->ctx.route->batch;
    wt->br = br;
    size_t pql;
    char *pq = path_query(bc->path, bc->param, &id, &id_len, 1, &pql);
    size_t key_len;
    char *key = key_for("GET", r->ctx.route, r->ctx.rule, pq, pql, &key_len);
    free(pq);
    if (key == NULL) {
        wt->status = 414;
        wt->message = "id too long";
        br->pending--;
        return;
    }
    uint64_t hash = dc_cache_hash(key, key_len);
    dc_cache_entry_t *e = dc_cache_lookup(w->cache, key, key_len, hash, now);
    if (e != NULL && !e->is_pass && dc_cache_entry_freshness(e, false, now) == DC_FRESH) {
        wt->entry = e;
        br->pending--;
        free(key);
        return;
    }
    if (e != NULL && (e->is_pass || e->is_vary)) { /* a vary record is no answer (http/vary.h) */
        dc_cache_entry_release(e);
        e = NULL;
    }
    br->hit = false;
    wt->waiter.on_result = on_want_result;
    wt->waiter.on_release = on_want_release;
    wt->waiter.target = w;
    wt->waiter.data = wt;
    dc_flight_t *flight;
    if (dc_inflight_join(w->inflight, key, key_len, hash, &wt->waiter, &flight) == DC_INFLIGHT_LEADER) {
        pending_id_t p = {dc_strndup(id, id_len), id_len, key, key_len, hash, flight, e};
        batcher_add(b, r, &p);
        dc_inflight_wait_on(w->inflight, flight, &wt->waiter); /* like everyone else */
        return;                                                /* key and stale now belong to the batcher */
    }
    br->collapsed = true;
    dc_cache_entry_release(e);
    free(key);
}

bool dc_batch_try(dc_request_t *r)
{
    if (batch_slot == NO_SLOT)
        return false;
    dc_batcher_t *b = dc_snapshot_route_slot(r->ctx.snap, r->ctx.route, batch_slot);
    if (b == NULL)
        return false;
    char **ids;
    size_t *lens;
    size_t n = read_id_list(r->req, &r->ctx.route->batch, &ids, &lens);
    /* in a fleet a lone id takes the normal path: its key is the same, and that path reads L2 and
     * collapses across instances (the batcher works per instance, on L1) */
    if (n == 0 || (n == 1 && r->ctx.worker->fleet != NULL))
        return false;

    batch_req_t *br = dc_calloc(1, sizeof(*br));
    br->r = r;
    dc_request_ref(r);
    br->n = n;
    br->wants = dc_calloc(n, sizeof(want_t));
    br->pending = n + 1; /* +1 until every id is set up */
    br->hit = true;
    uint64_t now = dc_now_wall_ms();
    for (size_t i = 0; i < n; i++)
        want_start(b, br, &br->wants[i], ids[i], lens[i], now);
    if (--br->pending == 0)
        br_done(br);
    return true;
}
