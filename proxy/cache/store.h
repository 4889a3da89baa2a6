/*
 * The shared response cache: one per process, used by every worker thread.
 *
 * Sharded by key hash, one mutex per shard (held only for table/LRU updates, never while a socket
 * is written). Memory is bounded by a global byte budget (`memory`, counting bodies, headers, keys,
 * tags); eviction takes the least recently used entry of a shard, moving to the next shard when
 * one is empty, so the LRU order is approximate across shards, exact within one.
 *
 * Entries are immutable once inserted and atomically refcounted: a lookup returns a reference the
 * caller releases with dc_cache_entry_release(); an entry evicted or replaced while a client is
 * still being sent its body stays alive until that last reference goes. The body is a separate
 * refcounted object so a revalidated entry can share it with its successor.
 */
#ifndef DC_CACHE_STORE_H
#define DC_CACHE_STORE_H

#include <stdatomic.h>
#include "core/refcount.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/body.h"
#include "cache/policy.h"
#include "cache/purgelog.h"
#include "core/list.h"

#define DC_CACHE_ENTRY_MAGIC 0x43454e54u /* "CENT" */

typedef struct dc_cache dc_cache_t;

typedef struct dc_cache_hdr {
    const void *token; /* h2o token for the name when it has one (resolved once at store time), else NULL */
    const char *name;  /* lower-case */
    size_t name_len;
    const char *value;
    size_t value_len;
} dc_cache_hdr_t;

/* Something derived from a body (a plugin's view index, plugin/view.c) that lives exactly as long
 * as the body: attached once, released when the body's last reference goes, its bytes charged to
 * the cache budget meanwhile. The attacher embeds it in its own object and frees that in release. */
typedef struct dc_cache_attach {
    struct dc_cache_attach *next;               /* set by dc_cache_body_attach */
    const void *owner;                          /* who attached it: one attachment per owner and body */
    size_t bytes;                               /* charged to `charged`'s budget until released */
    struct dc_cache *charged;                   /* set by dc_cache_body_attach */
    void (*release)(struct dc_cache_attach *a); /* any thread: the body is being freed */
} dc_cache_attach_t;

typedef struct dc_shared_body {
    dc_refcount_t refs;
    dc_body_t body;
    _Atomic(dc_cache_attach_t *) attached; /* a push-only list until the body is freed */
} dc_shared_body_t;

typedef struct dc_cache_entry {
    uint32_t magic;
    dc_refcount_t refs;
    uint64_t hash;
    const char *key;
    size_t key_len;

    bool is_pass; /* hit-for-pass marker: this key was uncacheable; bypass until keep_until */
    /* Vary (cache/vary.h). A vary record (is_vary) stands under a URL's primary key for the
     * variants stored under its secondary keys; it has no body and is never served. `vary` is the
     * canonical name list of a record and of each variant (its stored "vary" header, also sent to
     * clients), NULL for every other entry; primary_len < key_len for an entry under a secondary key
     * (a variant, or a hit-for-pass marker of one), whose hash is dc_vary_hash()'s. */
    bool is_vary;
    unsigned vary_max; /* record: the most variants kept (the rule's max_variants) */
    const char *vary;
    size_t vary_len;
    size_t primary_len;
    int status;
    dc_cache_hdr_t *headers; /* replayed on hits (hop-by-hop, framing, Date/Server/Via/Age excluded) */
    size_t nheaders;
    dc_shared_body_t *body;        /* identity representation; NULL for pass markers */
    dc_shared_body_t *variants[3]; /* [1] gzip, [2] br (dc_encoding_t order); [0] unused (= body) */
    bool compressible;             /* worth compressing (type and size): Vary: Accept-Encoding is sent */
    char etag[40];                 /* our strong validator "\"<32 hex of sha256>\"" of the identity body, used
                                      only when the origin sent no ETag; etag_len 0 when not computed */
    size_t etag_len;
    /* The representation (dc_encoding_t) whose bytes the base ETag (origin_etag, else etag) names
     * as sent; the others are made here and get that tag weakened (http/condserve.h). 0 =
     * identity; DC_ENC_COUNT (3) = none: every representation was made here (e.g. the origin's gzip
     * after an L2 round trip, which keeps only the identity body). */
    uint8_t etag_enc;
    const char *origin_etag; /* validators the origin gave (passed to clients, used to revalidate);
                                NULL when absent */
    const char *origin_last_modified;
    const char *const *tags; /* Surrogate-Key/Cache-Tag values, for purge by tag */
    size_t ntags;

    uint64_t stored_at_ms; /* wall ms */
    uint64_t fresh_until_ms;
    uint64_t swr_until_ms;
    uint64_t sie_until_ms;
    uint64_t keep_until_ms; /* dropped from the store after this */
    uint32_t origin_age_s;
    bool no_stale;
    bool negative;
    unsigned route_metric; /* metrics label id of the route that stored it */
    /* Mutable, unlike the rest: refreshes of this entry that failed (the origin is failing) and the
     * wall ms before which no new refresh starts (see dc_cache_entry_refresh_failed). */
    _Atomic uint32_t refresh_failures;
    _Atomic uint64_t refresh_not_before_ms;

    /* owned by the store (guarded by the shard lock) */
    size_t charge;
    unsigned shard;
    bool in_store;
    struct dc_cache_entry *hnext; /* the bucket's chain: singly linked (see store.c) */
    dc_list_node_t lru_link;      /* in the shard's LRU list */
    /* a record's variants (same shard), most recently used first; vrec is a variant's record */
    struct dc_cache_entry *vrec;
    dc_list_node_t vlink; /* a variant: in its record's vlist */
    dc_list_t vlist;      /* a record: its variants (an empty list on every other entry) */
    unsigned nvariants;   /* a record: how many vlist holds */
    char *arena;          /* key, header strings, tags */
} dc_cache_entry_t;

typedef struct dc_cache_stats {
    uint64_t entries;
    uint64_t bytes;
    uint64_t inserts;
    uint64_t replaced;
    uint64_t evictions;
    uint64_t expired;
    uint64_t purged;
    uint64_t too_big;
} dc_cache_stats_t;

/* ---- entries ---- */

/*
 * A new entry (refcount 1, owned by the caller) holding copies of the key, headers and tags.
 * `body` is taken over (may be NULL for a pass marker); lifetimes and flags are set by the caller
 * through the struct fields before dc_cache_insert(); never after.
 */
dc_cache_entry_t *dc_cache_entry_create(const char *key, size_t key_len, int status, const dc_cache_hdr_t *headers,
                                        size_t nheaders, const char *const *tags, size_t ntags, dc_shared_body_t *body);
/* Attach a compressed representation (index 1 = gzip, 2 = br) before insertion; takes over `sb`. */
void dc_cache_entry_set_variant(dc_cache_entry_t *e, unsigned enc, dc_shared_body_t *sb);
/* A new entry with the same key, headers, tags, validators, ETag, lifetimes and identity body as
 * `e` (sharing the body, not copying it), and its variants; used to publish a successor. */
dc_cache_entry_t *dc_cache_entry_clone(const dc_cache_entry_t *e);
dc_cache_entry_t *dc_cache_entry_ref(dc_cache_entry_t *e);
void dc_cache_entry_release(dc_cache_entry_t *e);

/* What may be done with a stored entry at `now_ms`, wherever it came from (L1, L2, another
 * instance's fill): the policy decides from the lifetimes stored with it. Never DC_FRESH past
 * its fresh_until, whatever path adopted it. */
static inline dc_freshness_t dc_cache_entry_freshness(const dc_cache_entry_t *e, bool client_revalidate,
                                                      uint64_t now_ms)
{
    return dc_policy_freshness(e->fresh_until_ms, e->swr_until_ms, e->sie_until_ms, e->no_stale, client_revalidate,
                               now_ms);
}

/* A refresh of `e` failed at now_ms: the next one waits `pause_ms` (the caller's backoff for
 * this many failures, dc_cache_entry_refresh_failures() + 1). Meanwhile a stale `e` is served as
 * it is (SWR and stale-if-error alike) instead of asking a failing origin again per request. */
static inline void dc_cache_entry_refresh_failed(dc_cache_entry_t *e, uint64_t now_ms, uint64_t pause_ms)
{
    atomic_fetch_add_explicit(&e->refresh_failures, 1, memory_order_relaxed);
    atomic_store_explicit(&e->refresh_not_before_ms, now_ms + pause_ms, memory_order_relaxed);
}

static inline uint32_t dc_cache_entry_refresh_failures(const dc_cache_entry_t *e)
{
    return atomic_load_explicit(&e->refresh_failures, memory_order_relaxed);
}

/* May a refresh of `e` start at now_ms (no failed refresh is being backed off)? */
static inline bool dc_cache_entry_refresh_due(const dc_cache_entry_t *e, uint64_t now_ms)
{
    return now_ms >= atomic_load_explicit(&e->refresh_not_before_ms, memory_order_relaxed);
}

/* Refresh-ahead: once `prefetch` (0 = off, else a fraction of the lifetime) of e's lifetime has
 * passed, plus a per-key jitter of up to half of what is left (from the key hash, so refreshes of
 * many keys do not line up), a read starts a background refresh. Never for negative entries. */
static inline bool dc_cache_entry_prefetch_due(const dc_cache_entry_t *e, double prefetch, uint64_t now_ms)
{
    if (prefetch <= 0.0 || e->fresh_until_ms <= e->stored_at_ms || e->negative)
        return false;
    double life = (double)(e->fresh_until_ms - e->stored_at_ms);
    double jitter = (double)(e->hash % 1024) / 1024.0 * (1.0 - prefetch) * 0.5;
    return (double)(now_ms - e->stored_at_ms) >= life * (prefetch + jitter);
}

/* May `e` (may be NULL) answer because the origin failed: a real entry inside stale-if-error that
 * does not forbid stale use. The one definition for the fill, waiters and batching. */
static inline bool dc_cache_entry_stale_usable(const dc_cache_entry_t *e, uint64_t now_ms)
{
    return e != NULL && !e->is_pass && !e->no_stale && now_ms < e->sie_until_ms;
}
/* Our strong validator from a SHA-256 digest of the identity body: "\"<first 16 bytes in hex>\"". */
void dc_cache_entry_set_etag(dc_cache_entry_t *e, const unsigned char digest[32]);
/* First stored header with this lower-case name, or NULL. */
const dc_cache_hdr_t *dc_cache_entry_header(const dc_cache_entry_t *e, const char *name, size_t len);

/* A shared body taking over `b` (refcount 1). */
dc_shared_body_t *dc_shared_body_create(dc_body_t *b);
dc_shared_body_t *dc_shared_body_ref(dc_shared_body_t *sb);
void dc_shared_body_release(dc_shared_body_t *sb);

/* Attach `a` (a->owner, a->bytes and a->release set) to `sb`: its bytes count against `c`'s
 * budget (least recently used entries are evicted to make room, maybe the one holding `sb`: the
 * attachment then lives on with the body while readers hold it) until `sb` is freed, when
 * a->release runs. Any thread. The caller makes sure an owner attaches at most once per body. */
void dc_cache_body_attach(dc_cache_t *c, dc_shared_body_t *sb, dc_cache_attach_t *a);
/* The attachment of `owner` on `sb`, or NULL. Any thread. */
dc_cache_attach_t *dc_cache_body_attached(dc_shared_body_t *sb, const void *owner);

/* ---- the store ---- */

dc_cache_t *dc_cache_create(uint64_t memory, uint64_t max_object);
void dc_cache_destroy(dc_cache_t *c);
/* Change the budget (reload); evicts down to the new budget. */
void dc_cache_set_limits(dc_cache_t *c, uint64_t memory, uint64_t max_object, uint64_t now_ms);
uint64_t dc_cache_max_object(const dc_cache_t *c);
/* Count one answer refused for its size before it became an entry (a fill that saw a
 * Content-Length or a body over max_object); dc_cache_insert counts the ones it refuses itself.
 * Both feed dc_cache_stats_t.too_big (dexcache_cache_too_big_total). */
void dc_cache_note_too_big(dc_cache_t *c);

uint64_t dc_cache_hash(const char *key, size_t len);

/* A new reference to the entry for `key`, or NULL. Entries past keep_until are dropped here. */
dc_cache_entry_t *dc_cache_lookup(dc_cache_t *c, const char *key, size_t len, uint64_t hash, uint64_t now_ms);
/* Insert (the store takes its own reference; the caller keeps its own). Replaces an entry with the
 * same key. Returns 0, or DC_ETOOBIG when the entry is larger than max_object (not stored).
 * Vary (cache/vary.h):
 *  - an entry replacing a vary record (a plain entry, or a record with another name list) drops
 *    the record's variants with it: they can no longer be reached;
 *  - a record finding a record with the same names keeps that one (and its variants), only
 *    extending its keep time and taking the new vary_max; `e` is then not stored (returns 0);
 *  - a variant is stored only under a record with its name list (else DC_ENOTFOUND); when the
 *    record has vary_max variants already, the least recently used one goes (*vary_evicted, when
 *    not NULL, says so). dc_cache_lookup() of a variant makes it the most recently used. */
int dc_cache_insert(dc_cache_t *c, dc_cache_entry_t *e, uint64_t now_ms);
int dc_cache_insert_variant(dc_cache_t *c, dc_cache_entry_t *e, uint64_t now_ms, bool *vary_evicted);
/* Insert `successor` in place of `old` only if `old` is still the entry stored under its key (so a
 * newer answer is never overwritten by an older one's successor). Returns 0, DC_ENOTFOUND when
 * `old` is gone, or DC_ETOOBIG. */
int dc_cache_replace(dc_cache_t *c, dc_cache_entry_t *old, dc_cache_entry_t *successor, uint64_t now_ms);
/* Remove this exact entry if it is still the one stored under its key (used to drop a stale copy
 * without racing a newer insert). A record goes with its variants. */
void dc_cache_remove_entry(dc_cache_t *c, dc_cache_entry_t *e);

/* Remove the entries matching (kind, arg) that were stored at or before `at_ms` (wall ms; a purge
 * by key also removes the entries derived from that key: those carrying the key as a tag, such as
 * a plugin's views of a source object; a purge
 * from another instance carries its own time, so a copy stored after it survives; a vary record
 * removed takes all its variants), and remember
 * the purge (see cache/purgelog.h). Returns the number of entries removed. */
size_t dc_cache_purge(dc_cache_t *c, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at_ms);
/* Is `e` (typically just read from L2) covered by a purge remembered here? Then it must not be
 * served or stored. */
bool dc_cache_purged(dc_cache_t *c, const dc_cache_entry_t *e);

void dc_cache_get_stats(dc_cache_t *c, dc_cache_stats_t *out);

#endif
