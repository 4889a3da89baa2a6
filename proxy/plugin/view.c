/*
 * Derived views (dexcache/plugin.h view_source / view_prepare / view_render / view_free): a view
 * request is answered from a cached source object on the same route.
 *
 *   claim   after cache_key: the chain's view_source names the source (or answers a bad query 400);
 *           the request's own key (path + normalised query) is then looked up like any key by http:
 *           a fresh rendered answer is a plain hit, concurrent misses collapse on its flight
 *   fill    the leader of a view key's miss (here): the source key is looked up in L1 (fresh: used;
 *           inside stale-while-revalidate: used, one background refresh; refresh-ahead as for any
 *           key) or fetched through the in-flight table and, in a fleet, the fleet lock like any
 *           key (one upstream request however many views, clients and instances wait; a source over
 *           L2's size limit: one per instance; stale-if-error as for any key);
 *   index   once per source body (the identity body a stored version and its successors share) and
 *           view identity (plugin file, name and config: a reload that leaves them unchanged keeps
 *           the indexes, rendered with the new instance; view_free gets the builder's instance):
 *           view_prepare on libuv's thread pool; concurrent view requests of that version wait on
 *           an in-flight key "VIEWIDX <identity> <body>"; the index is attached to the
 *           body (cache/store.h dc_cache_body_attach): charged to the cache budget, freed with the
 *           body, so it lives exactly as long as some stored version or reader of that source;
 *   render  view_render on the worker, from the key's path and query (never the live request: the
 *           answer is shared); stored under the view key with the source's remaining freshness
 *           (never longer, no stale window of its own), tagged with the source key so a purge of
 *           the source purges its views; the flight's waiters get it like any collapsed answer.
 *   memo    a source that cannot be stored (over cache.max_object, refused by the cache, or not
 *           cacheable by its rule and headers) is remembered per (view identity, source key, config
 *           generation) for the source rule's ttl (at least NOSTORE_MIN_MS): view requests answer
 *           502 with the reason from the memo instead of downloading the whole source for each of
 *           them, and the error log says it once per memo, with the config keys to change. A
 *           reload (another generation) forgets it.
 */
#include "plugin/plugin_private.h"
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/store.h"
#include "cache/variants.h"
#include "core/error.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/cdn.h"
#include "http/plugins.h"
#include "inflight/inflight.h"

#include <mbedtls/sha256.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct dexcache_req preq_t;

/* An index attached to a source body. */
typedef struct view_index {
    dc_cache_attach_t att; /* first: the release callback finds the struct */
    dc__plugin_inst_t *inst;
    dc_plugin_set_t *set; /* a reference: the instance outlives its index */
    void *index;          /* NULL when view_prepare failed (views answer 502 for this version) */
    char *flat;           /* the body made contiguous (heap) when it was in several chunks */
} view_index_t;

/* One view key's miss, led by one request. */
typedef struct view_job {
    dc_request_t *r;     /* a reference; r->req NULL once the client left */
    dc_flight_t *flight; /* the view key's flight; NULL: nobody joins (request no-store) */
    dc__plugin_inst_t *inst;
    const char *source_path; /* the source's upstream-side path and query (plugin-owned) */
    dc_route_ctx_t sctx;     /* r's context with the source's cache rule (borrowed snapshot: r holds it) */
    char *src_key;
    size_t src_key_len;
    uint64_t src_hash;
    char *src_url;
    dc_cache_entry_t *src;   /* the source version the answer is rendered from (owned) */
    dc_cache_entry_t *stale; /* a stored source past its freshness, to fall back on (owned) */
    bool src_stale;          /* src is not fresh (SWR, or a stale copy because the origin failed) */
    int err_status;          /* the source could not be had */
    const char *err_message; /* static */
    dc_waiter_t waiter;      /* on the source's flight, then on the index's */
    dc_growing_t *growing;   /* the source arriving on another worker (a reference) */
    dc_growing_sub_t gsub;
    bool subscribed;
    /* the index build this job leads */
    uv_work_t work;
    dc_flight_t *ix_flight;
    view_index_t *vi;
    dexcache_view_source_t vsrc;
    int prep_rc;
    size_t prep_bytes;
    uint64_t prep_us;
    dc_cache_t *cache;
} view_job_t;

static _Atomic uint64_t source_versions; /* dexcache_view_source_t.version */

/* ---- sources that cannot be stored ----
 * What the fetch of a source found that the next fetch would find again, remembered so that view
 * requests do not each download the whole source only to drop it. Shared by the workers (one
 * fetch per memo for the instance, not one per worker); a handful of entries at most (one per
 * view and source), pruned as they expire and capped: past the cap a source is simply fetched. */

#define NOSTORE_MIN_MS 5000
#define NOSTORE_MAX 256

typedef struct nostore {
    struct nostore *next;
    const void *owner;   /* the view identity (dc__plugin_inst_t.view_owner) */
    uint64_t generation; /* of the config snapshot that fetched it */
    uint64_t until_ms;   /* wall clock */
    const char *message; /* static: the 502's */
    size_t key_len;
    char key[]; /* the source key */
} nostore_t;

static pthread_mutex_t nostore_lock = PTHREAD_MUTEX_INITIALIZER;
static nostore_t *nostores;
static size_t nnostores;

static const char msg_too_big[] = "the view's source is larger than cache.max_object: it cannot be cached, so no view "
                                  "of it is answered (raise cache.max_object)";
static const char msg_not_stored[] =
    "the view's source could not be stored in the cache (cache.max_object, cache.memory)";
static const char msg_not_cacheable[] = "the view's source is not cacheable";

/* Under nostore_lock: the live memo of (owner, key, generation), expired ones unlinked and freed. */
static nostore_t *nostore_find_locked(const void *owner, const char *key, size_t key_len, uint64_t generation,
                                      uint64_t now)
{
    nostore_t *found = NULL;
    for (nostore_t **pp = &nostores; *pp != NULL;) {
        nostore_t *m = *pp;
        if (m->until_ms <= now) {
            *pp = m->next;
            nnostores--;
            free(m);
            continue;
        }
        if (m->owner == owner && m->generation == generation && m->key_len == key_len &&
            memcmp(m->key, key, key_len) == 0)
            found = m;
        pp = &m->next;
    }
    return found;
}

/* The 502 message of the job's source's live memo, or NULL (then the source is looked for). */
static const char *nostore_find(const view_job_t *job, uint64_t now)
{
    pthread_mutex_lock(&nostore_lock);
    nostore_t *m =
        nostore_find_locked(job->inst->view_owner, job->src_key, job->src_key_len, job->sctx.snap->generation, now);
    const char *msg = m != NULL ? m->message : NULL;
    pthread_mutex_unlock(&nostore_lock);
    return msg;
}

/* The job's source could not be stored, for a reason its next fetch would meet again: `detail`
 * ("too-big", "not-stored", or the fill's pass detail). Sets the job's error; remembers it (and
 * logs it, once per memo) for the source rule's ttl. */
static void nostore_note(view_job_t *job, const char *detail)
{
    bool too_big = strcmp(detail, "too-big") == 0, not_stored = strcmp(detail, "not-stored") == 0;
    const char *msg = too_big ? msg_too_big : not_stored ? msg_not_stored : msg_not_cacheable;
    job->err_status = 502;
    job->err_message = msg;
    uint64_t now = dc_now_wall_ms();
    uint64_t ttl = job->sctx.rule->ttl_ms > NOSTORE_MIN_MS ? job->sctx.rule->ttl_ms : NOSTORE_MIN_MS;
    pthread_mutex_lock(&nostore_lock);
    nostore_t *m =
        nostore_find_locked(job->inst->view_owner, job->src_key, job->src_key_len, job->sctx.snap->generation, now);
    bool fresh = m == NULL && nnostores < NOSTORE_MAX;
    if (fresh) {
        m = dc_malloc(sizeof(*m) + job->src_key_len);
        *m = (nostore_t){.next = nostores,
                         .owner = job->inst->view_owner,
                         .generation = job->sctx.snap->generation,
                         .until_ms = now + ttl,
                         .message = msg,
                         .key_len = job->src_key_len};
        memcpy(m->key, job->src_key, job->src_key_len);
        nostores = m;
        nnostores++;
    }
    pthread_mutex_unlock(&nostore_lock);
    if (!fresh)
        return; /* said already (or the memo is full: nothing new to say) */
    const char *fix = too_big      ? "raise cache.max_object (and cache.memory with it) above the source's size"
                      : not_stored ? "raise cache.max_object and cache.memory above the source's size (its "
                                     "identity and gzip bodies together)"
                                   : "make the source cacheable (its cache rule, or the origin's headers)";
    dc_log_error("plugin %s: the view's source %s cannot be cached (%s; cache.max_object is %llu bytes): views of "
                 "it answer 502 without fetching it for %llu s; %s",
                 job->inst->cfg->name, job->src_key, detail,
                 (unsigned long long)dc_cache_max_object(job->r->ctx.worker->cache), (unsigned long long)(ttl / 1000),
                 fix);
}

/* ---- claim (the request's worker) ---- */

bool dc__plugin_view_claim(dc_request_t *r, const void *chain_)
{
    const dc__plugin_chain_t *chain = chain_;
    preq_t *pr = NULL;
    for (size_t i = 0; i < chain->n; i++) {
        dc__plugin_inst_t *in = chain->inst[i];
        const dexcache_plugin_t *p = in->file->p;
        if (p->view_source == NULL)
            continue;
        if (pr == NULL)
            pr = dc__plugin_preq(r, chain);
        bool ok;
        void *ws = dc__plugin_wstate(in, r->ctx.worker, &ok);
        const char *source = NULL;
        pr->cur = in;
        pr->phase = DC__PH_VIEW;
        int rc = ok ? p->view_source(pr, in->state, ws, &source) : DEXCACHE_ERROR;
        pr->phase = DC__PH_NONE;
        if (pr->answered || r->req->_generator != NULL)
            return false; /* a bad view query, answered by the plugin */
        if (rc != DEXCACHE_CONTINUE) {
            if (!dc__plugin_hook_failed(pr, in, "view_source"))
                return false;
            continue;
        }
        if (source != NULL && source[0] == '/') {
            pr->view_inst = in;
            pr->view_source = source;
            r->view = true;
            return true;
        }
    }
    return true;
}

/* ---- the end of a job ---- */

static void job_free(view_job_t *job)
{
    DC_ASSERT(!job->subscribed && job->flight == NULL);
    dc_cache_entry_release(job->src);
    dc_cache_entry_release(job->stale);
    dc_growing_release(job->growing);
    free(job->src_key);
    free(job->src_url);
    dc_request_unref(job->r);
    free(job);
}

/* Nothing to answer from: the flight's waiters and the leader get the error. */
static void job_fail(view_job_t *job, int status, const char *message)
{
    if (job->flight != NULL) {
        dc_flight_result_t res = {.outcome = DC_FLIGHT_ERROR, .status = status, .message = message};
        dc_inflight_finish(job->r->ctx.worker->inflight, job->flight, &res);
        job->flight = NULL;
    }
    if (job->r->req != NULL)
        dc_request_respond_error(job->r, status, message);
    job_free(job);
}

/* ---- render and store ---- */

static void add_hdr(dc_cache_hdr_t *hs, size_t *n, const char *name, const char *value)
{
    hs[*n] = (dc_cache_hdr_t){h2o_lookup_token(name, strlen(name)), name, strlen(name), value, strlen(value)};
    (*n)++;
}

/* The stored answer for the view key: the rendered body, JSON, our digest ETag, the route's CDN
 * headers (or a max-age of what is left of the source's freshness), the source's lifetime. */
static dc_cache_entry_t *view_entry(view_job_t *job, dc_body_t *body, uint64_t now)
{
    dc_request_t *r = job->r;
    const dc_cache_entry_t *src = job->src;
    uint64_t fresh_until = src->fresh_until_ms > now && !job->src_stale ? src->fresh_until_ms : now;
    dc_cache_hdr_t hs[6];
    size_t nh = 0;
    add_hdr(hs, &nh, "content-type", "application/json");
    char cc[64];
    dc_cdn_headers_t cdn;
    bool with_cdn = r->ctx.route->cdn.enabled;
    if (with_cdn) {
        dc_cdn_headers_build(&r->ctx.route->cdn, r->ctx.rule, false, src->tags, src->ntags, &cdn);
        add_hdr(hs, &nh, "cache-control", cdn.cache_control);
        if (cdn.cdn_cache_control[0])
            add_hdr(hs, &nh, "cdn-cache-control", cdn.cdn_cache_control);
        if (cdn.surrogate_key[0]) {
            add_hdr(hs, &nh, "surrogate-key", cdn.surrogate_key);
            add_hdr(hs, &nh, "cache-tag", cdn.cache_tag);
        }
    } else {
        snprintf(cc, sizeof(cc), "public, max-age=%llu", (unsigned long long)((fresh_until - now) / 1000));
        add_hdr(hs, &nh, "cache-control", cc);
    }
    /* the source's tags (route, tag_params values) and the source key: a purge of it takes this */
    const char **tags = dc_calloc(src->ntags + 1, sizeof(char *));
    for (size_t i = 0; i < src->ntags; i++)
        tags[i] = src->tags[i];
    tags[src->ntags] = job->src_key;
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    mbedtls_sha256_starts_ret(&sha, 0);
    for (size_t i = 0; i < body->nchunks; i++)
        mbedtls_sha256_update_ret(&sha, (const unsigned char *)body->chunks[i].data, body->chunks[i].len);
    unsigned char digest[32];
    mbedtls_sha256_finish_ret(&sha, digest);
    mbedtls_sha256_free(&sha);
    size_t len = body->len;
    dc_cache_entry_t *e =
        dc_cache_entry_create(r->key, r->key_len, 200, hs, nh, tags, src->ntags + 1, dc_shared_body_create(body));
    free(tags);
    if (with_cdn)
        dc_cdn_headers_dispose(&cdn);
    dc_cache_entry_set_etag(e, digest);
    e->stored_at_ms = now;
    e->fresh_until_ms = e->swr_until_ms = e->sie_until_ms = e->keep_until_ms = fresh_until;
    e->no_stale = true; /* rendered again from the source once expired, never served stale itself */
    e->route_metric = r->ctx.route_metric;
    e->compressible = len >= DC_VARIANTS_MIN_BYTES;
    return e;
}

static void render(view_job_t *job, view_index_t *vi)
{
    dc_request_t *r = job->r;
    dc__plugin_inst_t *in = job->inst;
    const dexcache_plugin_t *p = in->file->p;
    if (vi->index == NULL || p->view_render == NULL) {
        job_fail(job, 502, "the view's index could not be built from its source");
        return;
    }
    /* what the render sees: the path and normalised query of the view's key ("GET <path>[?<q>]") */
    dc__view_render_t rc_ctx = {0};
    h2o_mem_init_pool(&rc_ctx.pool);
    const char *pq = memchr(r->key, ' ', r->key_len);
    DC_ASSERT(pq != NULL);
    pq++;
    const char *end = memchr(pq, ' ', (size_t)(r->key + r->key_len - pq));
    end = end != NULL ? end : r->key + r->key_len;
    const char *q = memchr(pq, '?', (size_t)(end - pq));
    const char *pend = q != NULL ? q : end;
    rc_ctx.path = h2o_strdup(&rc_ctx.pool, pq, (size_t)(pend - pq)).base;
    rc_ctx.path_len = (size_t)(pend - pq);
    rc_ctx.query = q != NULL ? h2o_strdup(&rc_ctx.pool, q + 1, (size_t)(end - q - 1)).base : "";
    rc_ctx.query_len = q != NULL ? (size_t)(end - q - 1) : 0;
    preq_t rp = {.r = r, .phase = DC__PH_RENDER, .cur = in, .render = &rc_ctx};
    dexcache_view_out_t out = {.open = true};
    dc_body_init(&out.body, 0);
    bool ok;
    void *ws = dc__plugin_wstate(in, r->ctx.worker, &ok);
    int rc = ok ? p->view_render(&rp, in->state, ws, vi->index, &out) : DEXCACHE_ERROR;
    out.open = false;
    if (rc_ctx.err_status != 0) {
        /* the waiters share the key, hence the query: the same refusal (a static message for
         * them; the plugin's own to the leader) */
        int st = rc_ctx.err_status;
        if (job->flight != NULL) {
            dc_flight_result_t res = {.outcome = DC_FLIGHT_ERROR, .status = st, .message = "bad view query"};
            dc_inflight_finish(r->ctx.worker->inflight, job->flight, &res);
            job->flight = NULL;
        }
        if (r->req != NULL)
            dc_request_respond_error(r, st, rc_ctx.err_message);
        dc_body_dispose(&out.body);
        h2o_mem_clear_pool(&rc_ctx.pool);
        job_free(job);
        return;
    }
    h2o_mem_clear_pool(&rc_ctx.pool);
    if (rc != DEXCACHE_CONTINUE) {
        dc_log_error("plugin %s: view_render failed for %.*s", in->cfg->name, (int)r->key_len, r->key);
        dc_body_dispose(&out.body);
        job_fail(job, 500, "the view could not be rendered");
        return;
    }
    uint64_t now = dc_now_wall_ms();
    dc_cache_entry_t *e = view_entry(job, &out.body, now);
    dc_worker_t *w = r->ctx.worker;
    unsigned want = dc_variants_wanted(e);
    unsigned now_part = dc_variants_inline_part(e, want);
    if (now_part != 0) {
        dc_variants_make_inline(e, now_part);
        want &= ~now_part;
    }
    bool stored = false;
    if (job->flight != NULL && e->fresh_until_ms > now) {
        stored = dc_cache_insert(w->cache, e, now) == 0;
        if (stored) {
            dc_counter_add(&w->metrics.cache_stores[e->route_metric], 1);
            if (want != 0)
                dc_variants_schedule(&w->loop, w->cache, e, want);
        }
    }
    if (job->flight != NULL) {
        dc_flight_result_t res = {
            .outcome = DC_FLIGHT_ENTRY, .entry = e, .stale = job->src_stale, .shared_only = !stored, .fwd_status = 0};
        dc_inflight_finish(w->inflight, job->flight, &res);
        job->flight = NULL;
    }
    if (r->req != NULL)
        dc_serve_entry(r, e, job->src_stale ? "STALE" : "MISS",
                       job->src_stale ? "dexcache; fwd=miss; detail=view-of-stale-source"
                       : stored       ? "dexcache; fwd=miss; stored; detail=view"
                                      : "dexcache; fwd=miss; detail=view");
    dc_cache_entry_release(e);
    job_free(job);
}

/* ---- the index of a source version ---- */

static void index_release(dc_cache_attach_t *a)
{
    view_index_t *vi = (view_index_t *)a;
    const dexcache_plugin_t *p = vi->inst->file->p;
    if (vi->index != NULL && p->view_free != NULL)
        p->view_free(vi->inst->state, vi->index);
    free(vi->flat);
    dc__plugin_set_unref(vi->set);
    free(vi);
}

/* A thread-pool thread: the body made contiguous if it is not, then view_prepare. */
static void build_work(uv_work_t *w)
{
    view_job_t *job = w->data;
    const dc_body_t *b = &job->src->body->body;
    uint64_t t0 = dc_now_mono_us();
    const char *body = "";
    if (b->nchunks == 1) {
        body = b->chunks[0].data;
    } else if (b->nchunks > 1) {
        job->vi->flat = dc_body_flatten(b);
        body = job->vi->flat;
    }
    const dc_cache_entry_t *src = job->src;
    job->vsrc = (dexcache_view_source_t){
        .size = sizeof(dexcache_view_source_t),
        .body = body,
        .body_len = b->len,
        .path = job->source_path,
        .etag = src->origin_etag,
        .version = atomic_fetch_add(&source_versions, 1) + 1,
        .expires_unix = src->fresh_until_ms / 1000,
        .flags = DEXCACHE_VIEW_BODY_KEPT,
    };
    const dexcache_plugin_t *p = job->inst->file->p;
    void *index = NULL;
    size_t bytes = 0;
    job->prep_rc =
        p->view_prepare != NULL ? p->view_prepare(job->inst->state, &job->vsrc, &index, &bytes) : DEXCACHE_ERROR;
    job->vi->index = job->prep_rc == DEXCACHE_CONTINUE ? index : NULL;
    job->prep_bytes = bytes;
    job->prep_us = dc_now_mono_us() - t0;
}

static void after_build(uv_work_t *w, int status)
{
    (void)status;
    view_job_t *job = w->data;
    view_index_t *vi = job->vi;
    job->vi = NULL;
    const dc_body_t *b = &job->src->body->body;
    vi->att.owner = job->inst->view_owner;
    vi->att.bytes = sizeof(*vi) + job->prep_bytes + (vi->flat != NULL ? b->len + 1 : 0);
    vi->att.release = index_release;
    if (job->prep_rc == DEXCACHE_CONTINUE)
        dc_log_info("plugin %s: view index built for %s (%zu bytes of source): %zu bytes in %.1f ms%s",
                    job->inst->cfg->name, job->src_key, b->len, vi->att.bytes, (double)job->prep_us / 1000.0,
                    vi->flat != NULL ? " (with a contiguous copy of the source)" : "");
    else
        dc_log_error("plugin %s: view_prepare failed for %s (%zu bytes): views answer 502 until the next version",
                     job->inst->cfg->name, job->src_key, b->len);
    dc_cache_body_attach(job->cache, job->src->body, &vi->att);
    dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS}; /* waiters look again: the index is attached */
    dc_inflight_finish(job->r->ctx.worker->inflight, job->ix_flight, &res);
    job->ix_flight = NULL;
}

static void on_index_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    (void)w;
    dc_flight_result_release(res);
}

static void on_index_release(dc_waiter_t *w)
{
    view_job_t *job = w->data;
    dc_cache_attach_t *a = dc_cache_body_attached(job->src->body, job->inst->view_owner);
    if (a == NULL) {
        job_fail(job, 502, "the view's index could not be built from its source");
        return;
    }
    render(job, (view_index_t *)a);
}

/* job->src is the source version to answer from: its index, then the render. */
static void have_source(view_job_t *job)
{
    dc_shared_body_t *sb = job->src->body;
    if (sb == NULL || job->src->status != 200) {
        job_fail(job, 502, "the view's source is not a 200 answer");
        return;
    }
    dc_cache_attach_t *a = dc_cache_body_attached(sb, job->inst->view_owner);
    if (a != NULL) {
        render(job, (view_index_t *)a);
        return;
    }
    dc_worker_t *w = job->r->ctx.worker;
    char key[96];
    int kl = snprintf(key, sizeof(key), "VIEWIDX %p %p", job->inst->view_owner, (void *)sb);
    job->waiter.on_result = on_index_result;
    job->waiter.on_release = on_index_release;
    job->waiter.target = w;
    job->waiter.data = job;
    dc_flight_t *flight = NULL;
    if (dc_inflight_join(w->inflight, key, (size_t)kl, dc_cache_hash(key, (size_t)kl), &job->waiter, &flight) ==
        DC_INFLIGHT_JOINED)
        return;
    if ((a = dc_cache_body_attached(sb, job->inst->view_owner)) != NULL) { /* built between the look and the join */
        dc_flight_result_t res = {.outcome = DC_FLIGHT_PASS};
        dc_inflight_finish(w->inflight, flight, &res);
        render(job, (view_index_t *)a);
        return;
    }
    job->ix_flight = flight;
    job->cache = w->cache;
    job->vi = dc_calloc(1, sizeof(*job->vi));
    job->vi->inst = job->inst;
    job->vi->set = job->inst->set;
    dc__plugin_set_ref(job->inst->set);
    job->work.data = job;
    dc_inflight_wait_on(w->inflight, flight, &job->waiter); /* like any waiter: released after the build */
    int rc = uv_queue_work(&w->loop, &job->work, build_work, after_build);
    DC_ASSERT(rc == 0);
    (void)rc;
}

/* ---- the source ---- */

static const char *const source_headers[] = {"Accept: application/json", NULL};

/* One background refresh of the source (stale-while-revalidate, refresh-ahead), as for any key:
 * one per key on this instance, and in a fleet one across instances. */
static void refresh_source(view_job_t *job, dc_cache_entry_t *stale)
{
    dc_fill_target_t t = {job->src_key, job->src_key_len, job->src_hash, job->src_url, source_headers};
    dc_fill_refresh(&job->sctx, &t, stale);
}

static void source_settled(view_job_t *job)
{
    if (job->src != NULL) {
        have_source(job);
        return;
    }
    if (dc_cache_entry_stale_usable(job->stale, dc_now_wall_ms())) {
        job->src = job->stale;
        job->stale = NULL;
        job->src_stale = true;
        have_source(job);
        return;
    }
    job_fail(job, job->err_status ? job->err_status : 502,
             job->err_message != NULL ? job->err_message : "the view's source could not be fetched");
}

/* The source arrived whole on another worker (it was streamed): it is in L1 now, unless it could
 * not be stored. */
static void source_streamed(view_job_t *job, bool error)
{
    if (!error) {
        dc_cache_entry_t *e =
            dc_cache_lookup(job->r->ctx.worker->cache, job->src_key, job->src_key_len, job->src_hash, dc_now_wall_ms());
        if (e != NULL && (e->is_pass || e->is_vary || e->body == NULL)) {
            dc_cache_entry_release(e);
            e = NULL;
        }
        job->src = e;
        if (e == NULL)
            nostore_note(job, "not-stored"); /* the cache refused it (over max_object with its gzip body, or memory) */
    } else if (dc_growing_too_big(job->growing)) {
        nostore_note(job, "too-big");
    } else {
        job->err_status = 502;
        job->err_message = "the view's source failed while it was received";
    }
    source_settled(job);
}

static void on_source_growing(dc_msg_t *m)
{
    view_job_t *job = dc_container_of(m, view_job_t, gsub.msg);
    dc_growing_woken(&job->gsub);
    if (job->gsub.cancelled)
        return;
    const char *bases[1];
    size_t lens[1], avail;
    bool ended, error;
    (void)dc_growing_read(job->growing, 0, bases, lens, 1, &avail, &ended, &error);
    if (!ended)
        return;
    bool idle = dc_growing_unsubscribe(job->growing, &job->gsub);
    DC_ASSERT(idle); /* we are the wake-up that was pending */
    (void)idle;
    job->subscribed = false;
    source_streamed(job, error);
}

static void on_source_result(dc_waiter_t *w, dc_flight_result_t *res)
{
    view_job_t *job = w->data;
    switch (res->outcome) {
    case DC_FLIGHT_ENTRY:
        job->src = res->entry; /* taken over */
        job->src_stale = res->stale;
        break;
    case DC_FLIGHT_STREAM:
        job->growing = res->growing; /* taken over; the gzip stream is not needed */
        dc_growing_release(res->growing_gz);
        dc_cache_entry_release(res->entry);
        break;
    case DC_FLIGHT_ERROR:
        job->err_status = res->status;
        job->err_message = res->message;
        break;
    case DC_FLIGHT_PASS:
        if (res->detail != NULL) {
            nostore_note(job, res->detail);
        } else {
            job->err_status = 502;
            job->err_message = msg_not_cacheable;
        }
        break;
    }
}

static void on_source_release(dc_waiter_t *w)
{
    view_job_t *job = w->data;
    if (job->growing != NULL && job->src == NULL) {
        job->gsub.msg.run = on_source_growing;
        job->gsub.target = job->r->ctx.worker;
        job->gsub.post = dc_worker_post;
        job->subscribed = true;
        dc_growing_subscribe(job->growing, &job->gsub); /* wakes us once: it may have ended already */
        return;
    }
    source_settled(job);
}

/* The source as a request for it would find it: L1, else fetched like a request's miss (in a fleet
 * through the fleet lock: another instance's L2 copy, or one fetch for the whole fleet, as for any
 * key; a source over L2's size limit is fetched once per instance, one instance at a time). */
static void get_source(view_job_t *job)
{
    dc_worker_t *w = job->r->ctx.worker;
    uint64_t now = dc_now_wall_ms();
    dc_cache_entry_t *e = dc_cache_lookup(w->cache, job->src_key, job->src_key_len, job->src_hash, now);
    if (e != NULL && (e->is_pass || e->is_vary || e->body == NULL)) {
        dc_cache_entry_release(e);
        e = NULL;
    }
    if (e != NULL) {
        dc_freshness_t fr = dc_cache_entry_freshness(e, false, now);
        if (fr == DC_FRESH) {
            if (dc_cache_entry_prefetch_due(e, job->sctx.rule->prefetch, now) && dc_cache_entry_refresh_due(e, now))
                refresh_source(job, e);
            job->src = e;
            have_source(job);
            return;
        }
        bool backoff = !dc_cache_entry_refresh_due(e, now);
        if (fr == DC_STALE_SWR || (fr == DC_STALE_SIE && backoff && dc_cache_entry_stale_usable(e, now))) {
            if (!backoff)
                refresh_source(job, e);
            job->src = e;
            job->src_stale = true;
            have_source(job);
            return;
        }
        job->stale = e; /* to fall back on if the origin fails, and for revalidation */
    }
    const char *nostore = nostore_find(job, now);
    if (nostore != NULL) { /* fetching it again would only drop it again */
        job->err_status = 502;
        job->err_message = nostore;
        source_settled(job); /* a stale copy within stale_if_error still serves */
        return;
    }
    job->waiter.on_result = on_source_result;
    job->waiter.on_release = on_source_release;
    job->waiter.target = w;
    job->waiter.data = job;
    dc_fill_target_t t = {job->src_key, job->src_key_len, job->src_hash, job->src_url, NULL};
    dc_fill_fetch_as_waiter(&job->sctx, &t, job->stale, &job->waiter, true);
}

void dc__plugin_view_fill(dc_request_t *r, dc_flight_t *flight)
{
    preq_t *pr = r->plugin;
    DC_ASSERT(pr != NULL && pr->view_inst != NULL);
    view_job_t *job = dc_calloc(1, sizeof(*job));
    job->r = r;
    dc_request_ref(r);
    dc_request_own_key(r); /* the render reads it, maybe after the client left */
    job->flight = flight;
    job->inst = pr->view_inst;
    job->source_path = pr->view_source;
    job->sctx = r->ctx;
    const char *src = pr->view_source;
    const char *q = strchr(src, '?');
    size_t plen = q != NULL ? (size_t)(q - src) : strlen(src);
    job->sctx.rule = dc_config_cache_rule_match(r->ctx.route, src, plen);
    if (job->sctx.rule == NULL) {
        job_fail(job, 502, "the view's source has no cache rule on this route");
        return;
    }
    const dc_config_route_t *route = r->ctx.route;
    const dc_config_cache_rule_t *rule = job->sctx.rule;
    dc_cache_key_opts_t opts = {rule->key_sets, rule->nkey_sets, rule->ignore_params, rule->nignore_params};
    size_t cap = dc_cache_key_bound(3, strlen(route->prefix), strlen(src));
    job->src_key = dc_malloc(cap);
    long n = dc_cache_key_build("GET", 3, route->prefix, src, strlen(src), &opts, job->src_key, cap);
    if (n < 0) {
        job_fail(job, 502, "the view's source path makes no cache key");
        return;
    }
    job->src_key_len = (size_t)n;
    job->src_hash = dc_cache_hash(job->src_key, job->src_key_len);
    const char *base = route->upstream->url;
    size_t blen = strlen(base);
    job->src_url = dc_asprintf("%.*s%s", (int)(blen > 0 && base[blen - 1] == '/' ? blen - 1 : blen), base, src);
    get_source(job);
}
