/*
 * Internal to http/'s fill (fill.c, fill_body.c, fill_entry.c): the fill's state and the steps its
 * files call in one another. A fill runs on one worker; nothing here is thread-safe or needs to be.
 *
 *   fill.c        the lifecycle: start, the upstream fetch, the decision at the response head,
 *                 the end of the fetch, errors and pass-through, the leader's detach
 *   fill_body.c   the body as it arrives (decoding, streaming to waiters, the leader's response)
 *                 and its completion (store and hand over)
 *   fill_entry.c  cache entries built from a response head, and after a 304 (RFC 9111 §4.3.4)
 */
#ifndef DC_HTTP_FILL_PRIVATE_H
#define DC_HTTP_FILL_PRIVATE_H

#include <mbedtls/sha256.h>
#include <stdbool.h>
#include <zlib.h>

#include "cache/policy.h"
#include "cache/vary.h"
#include "http/request.h"

#define FILL_MAGIC 0x46494c4cu /* "FILL" */
/* Answers are streamed to waiters once this many bytes have arrived; smaller ones are handed over
 * complete (one wake-up instead of many, and a failure is still a clean error answer). */
#define STREAM_TO_WAITERS_MIN (256 * 1024)
/* The leader's response head waits for the whole body or this many bytes (see above). */
#define HOLD_HEAD_MAX DC_STREAM_HIGH_WATER
/* How long a key whose answer was private stays hit-for-pass (requests skip collapsing). */
#define PASS_MARKER_MS 10000

typedef enum { FILL_HEAD_WAIT = 0, FILL_STORE, FILL_SHARE, FILL_PASS, FILL_REVALIDATED, FILL_DONE } fill_mode_t;

typedef struct dc_fill {
    uint32_t magic;
    dc_route_ctx_t ctx; /* holds one snapshot reference (ctx.snap) */
    char *key;
    size_t key_len;
    uint64_t hash;
    dc_flight_t *flight; /* NULL once finished */
    dc_fetch_t *fetch;
    dc_flight_upstream_t upstream; /* the fetch's figures (head, then end), for the waiters' logs */
    dc_cache_entry_t *stale;
    dc_shared_body_t *sb;       /* the body as the origin sent it */
    dc_shared_body_t *sb_ident; /* decoded as it arrives when the origin sent gzip (else NULL) */
    z_stream zs;
    bool inflating;
    bool completed;         /* complete_body ran */
    uint32_t retry_after_s; /* refused by the upstream budget: when to come back (for waiters' Retry-After) */
    /* the fetch failed at the transport (upstream/cause.h), copied at on_done for the waiters */
    dc_upstream_cause_t cause;
    char cause_upstream[64];
    char cause_text[DC_CAUSE_TEXT_MAX];
    bool fleet_lock;         /* this fill holds the fleet-wide lock of its key (other instances follow) */
    uv_timer_t *lease_timer; /* renews the lock's lease while fleet_lock (heap: closed asynchronously) */
    int complete_err;
    dc_growing_t *growing;    /* set when the identity body is streamed to waiters on other workers */
    dc_growing_t *growing_gz; /* and the gzip body as received, when the origin sent gzip */
    bool growing_ended;
    dc_request_t *client;
    bool leader_started; /* the leader's response has started (dc_serve_follow_start) */
    bool leader_decoded; /* the leader is sent the decoded stream (it does not accept gzip) */
    fill_mode_t mode;
    dc_policy_decision_t decision;
    mbedtls_sha256_context sha;
    bool sha_on;
    const char *pass_detail; /* why a storable answer passes (Cache-Status detail); NULL = too big */
    bool client_revalidate;
    bool client_no_store; /* the leader's request said no-store: nothing it fetches is stored */
    char **tags;
    size_t ntags;
    char digest_tag[40]; /* our tag of the identity body once complete (no origin ETag); "" before */
    /* for an unconditional fetch again after a 304 that does not match the stored entry */
    char *url;
    char **hdrs;         /* NULL-terminated, heap */
    bool unconditional;  /* our validators are not sent (again) */
    bool reval_mismatch; /* the origin's 304 names another representation than fill->stale */
    /* Vary (http/vary.h): the header lines sent upstream (heap, NULL-terminated), whether this fill
     * may store variants (not for batch and stream polls, which forward none of a client's headers),
     * and, when the answer varies, its canonical name list and the variant's secondary key (heap) */
    char **sent_lines;
    bool vary_ok;
    bool vary_evicted; /* storing this variant evicted the least recently used one (detail=vary-limit) */
    char vary_names[DC_VARY_NAMES_MAX + 1];
    size_t vary_names_len;
    char *vary_key;
    size_t vary_key_len;
    /* validation (fill_validate.c) */
    bool validating; /* a 2xx answer whose body the rule checks before anyone sees it */
    bool judged;     /* the fetch asked our verdict (judge): it counted a rejection on its tier */
    bool checked;    /* dc__fill_check_body ran for this answer: check_err is its result */
    int check_err;
    const char *fail_reason; /* the answer failed: the 502 message (interned, process lifetime), else NULL */
} dc_fill_t;

/* fill.c */
/* Hand the result to the in-flight table (once: later calls do nothing) and let the fleet lock go. */
void dc__fill_finish_flight(dc_fill_t *fill, const dc_flight_result_t *res);
/* Stop the transfer (from inside one of its callbacks is fine) and free the fill: nobody needs it. */
void dc__fill_abandon(dc_fill_t *fill, dc_fetch_t *f);
/* Mark the key hit-for-pass for PASS_MARKER_MS. */
void dc__fill_mark_pass(dc_fill_t *fill, uint64_t now);
/* The client that followed this fill now answers with a stale copy or an error instead. */
void dc__fill_client_fallback(dc_fill_t *fill, dc_fetch_t *f, int err, int fwd_status);
/* Waiters get the stale copy when one is usable, else the error (see fill.c). */
void dc__fill_finish_with_error(dc_fill_t *fill, int err, int fwd_status);

/* fill_body.c */
/* The fetch's body callback (dc_fetch_callbacks_t.on_body). */
int dc__fill_on_body(void *data, dc_fetch_t *f, const char *buf, size_t len);
/* Every byte of a STORE/SHARE answer is here: store it and hand it to the waiters. Returns 0 or
 * the error that made the body unusable. */
/* fill_body.c: the end checks of a complete body (a gzip stream that ends, the rule's validation),
 * once per answer: 0 or the error that makes it unusable (fail_reason says why for validation). */
int dc__fill_check_body(dc_fill_t *fill);
/* fill.c: the fetch's judge (upstream/fetch.h): our verdict on an answer's head or complete body. */
int dc__fill_judge(void *data, dc_fetch_t *f, bool body);
int dc__fill_complete_body(dc_fill_t *fill, dc_fetch_t *f);
/* The fetch is over for the leader (err == 0: complete). */
void dc__fill_end_leader(dc_fill_t *fill, dc_fetch_t *f, int err);

/* fill_validate.c */
/* Does the rule count this status as a failure? If so fill->fail_reason is set and the upstream's
 * breaker learns of it. */
bool dc__fill_status_fails(dc_fill_t *fill, int status);
/* Does the rule check the body of an answer with this status? */
bool dc__fill_wants_validation(const dc_fill_t *fill, int status);
/* Are the leader's head and the waiters' stream held back for validation (the body is still small
 * enough to check)? Turns validation off for good once the body outgrows DC_VALIDATE_MAX_BODY. */
bool dc__fill_holds_for_validation(dc_fill_t *fill);
/* Check the complete identity body: 0, or DC_EUPSTREAM with fill->fail_reason set. */
int dc__fill_validate_body(dc_fill_t *fill);

/* fill_entry.c */
/* Does the origin's 304 select the stored `old` for update (RFC 9111 §4.3.4)? */
bool dc__fill_reval_304_selects(const dc_cache_entry_t *old, const dc_fetch_header_t *hs, size_t n);
/* The origin's CDN-Cache-Control stays with us: the rule says so, or the route sends its own. */
bool dc__fill_drop_cdn_cache_control(const dc_fill_t *fill);
/* The successor of fill->stale after a 304 (decides fill->decision again). A new reference. */
dc_cache_entry_t *dc__fill_build_revalidated_entry(dc_fill_t *fill, dc_fetch_t *f);
/* An entry from the response head, its body still growing. A new reference. */
dc_cache_entry_t *dc__fill_entry_from_head(dc_fill_t *fill, dc_fetch_t *f);
/* The complete entry (gzip representation, our digest ETag). A new reference. */
dc_cache_entry_t *dc__fill_build_entry(dc_fill_t *fill, dc_fetch_t *f);
/* Store the vary record for variant `e` under the primary key. */
void dc__fill_store_vary_record(dc_fill_t *fill, const dc_cache_entry_t *e);

#endif
