/*
 * Validators and preconditions on the answers dexcache sends (the h2o side of http/conditional.h).
 *
 * Which ETag a client sees (REFERENCE.md "Validators"):
 *  - the origin's ETag, unchanged, on every answer that carries the origin's bytes (leader, hits,
 *    stale answers, collapsed waiters, entries read from L2);
 *  - when the origin sent none: dexcache's own strong tag, "<32 hex of the SHA-256 of the identity
 *    body>" (on the leader's answer only when the whole body is in before its head goes out);
 *  - a representation dexcache encoded itself (gzip/br made here, the identity body inflated from
 *    the origin's gzip) gets that tag weakened: W/"x" for "x" (nginx's rule for gzip): its bytes are
 *    not the ones the strong tag names and may differ between instances, but it is semantically
 *    the same, so If-None-Match (weak comparison) revalidates either, while If-Match and If-Range
 *    (strong comparison) never match it. A tag that is already weak is used as it is.
 * Answers to requests with preconditions (If-Match, If-None-Match, If-Modified-Since,
 * If-Unmodified-Since) are evaluated here against the validators of the answer being sent, only
 * when its status is 2xx (RFC 9110 §13.2.1); 304 answers keep only the fields §15.4.5 lists.
 */
#ifndef DC_HTTP_CONDSERVE_H
#define DC_HTTP_CONDSERVE_H

#include <h2o.h>
#include <stdbool.h>

#include "cache/store.h"
#include "http/conditional.h"

/* `tag` as a weak validator: W/ prepended when it is strong (pool memory), else itself. */
h2o_iovec_t dc_condserve_weaken(const char *tag, size_t len, h2o_mem_pool_t *pool);

/* The ETag of representation `enc` (dc_encoding_t) of `e`: the origin's, else our digest tag,
 * weakened when `enc` is not the representation it names (e->etag_enc). {NULL, 0} when `e` has
 * none. Points into `e` or `pool`. */
h2o_iovec_t dc_condserve_entry_etag(const dc_cache_entry_t *e, unsigned enc, h2o_mem_pool_t *pool);

/* Collect the request's precondition fields into `out`; returns whether any is present (one pass
 * over the request headers, no allocation: the cheap test of the hit path). */
bool dc_condserve_collect(const h2o_req_t *req, dc_cond_request_t *out);

/*
 * Evaluate the request's preconditions against the answer about to start (req->res: status and
 * headers already set; its ETag and Last-Modified are the validators). `ims_fallback_s` is used
 * for If-Modified-Since when the answer has no Last-Modified (-1 = none). Returns PROCEED (nothing
 * changed) when there are no preconditions or the status is not 2xx. On NOT_MODIFIED the answer
 * has been turned into a 304: status, no Content-Length, only the fields of §15.4.5 (and dexcache's
 * own: Age, Via, X-Cache, Cache-Status, X-Request-Id); the caller sends no body. On
 * PRECONDITION_FAIL nothing is changed: the caller answers 412 (dc_condserve_respond_412).
 */
dc_cond_result_t dc_condserve_apply(h2o_req_t *req, int64_t ims_fallback_s);

/* Answer 412 (a JSON error body), keeping only dexcache's own headers of the answer prepared. */
void dc_condserve_respond_412(h2o_req_t *req, const char *request_id);

#endif
