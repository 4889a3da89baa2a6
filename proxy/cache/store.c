#include "cache/store.h"
#include "core/refcount.h"
#include "cache/purgelog.h"
#include "cache/vary.h"
#include "core/error.h"
#include "core/hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 64
#define ENTRY_OVERHEAD 256 /* struct, table slot and allocator slack, charged per entry */

typedef struct shard {
    pthread_mutex_t lock;
    /* The hash table's chains stay singly linked through hnext: buckets are short (the table grows
     * at one entry per bucket), removal walks its bucket, and a second pointer per entry would buy
     * nothing (hnext also threads the chain detach_all() hands to release_chain()). The lists that
     * need O(1) removal from the middle are core/list.h's. */
    dc_cache_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    dc_list_t lru; /* of entries (lru_link): first = most recently used, last = least */
} shard_t;

struct dc_cache {
    shard_t shards[NSHARDS];
    _Atomic uint64_t bytes;
    _Atomic uint64_t memory;
    _Atomic uint64_t max_object;
    _Atomic uint64_t entries;
    _Atomic uint64_t inserts, replaced, evictions, expired, purged, too_big;
    _Atomic unsigned evict_cursor;
    _Atomic uint64_t derived; /* entries in store tagged with another key (views): see dc_cache_purge */
    dc_purgelog_t purges;
};

/* ---- entries ---- */

dc_shared_body_t *dc_shared_body_create(dc_body_t *b)
{
    dc_shared_body_t *sb = dc_malloc(sizeof(*sb));
    dc_refcount_init(&sb->refs, 1);
    sb->body = *b;
    atomic_init(&sb->attached, NULL);
    memset(b, 0, sizeof(*b));
    return sb;
}

dc_shared_body_t *dc_shared_body_ref(dc_shared_body_t *sb)
{
    dc_refcount_take(&sb->refs);
    return sb;
}

void dc_shared_body_release(dc_shared_body_t *sb)
{
    if (sb != NULL && dc_refcount_drop(&sb->refs)) {
        dc_cache_attach_t *a = atomic_load(&sb->attached);
        while (a != NULL) {
            dc_cache_attach_t *next = a->next;
            atomic_fetch_sub(&a->charged->bytes, a->bytes);
            a->release(a);
            a = next;
        }
        dc_body_dispose(&sb->body);
        free(sb);
    }
}

static void evict_to_budget(dc_cache_t *c, unsigned start_shard);

void dc_cache_body_attach(dc_cache_t *c, dc_shared_body_t *sb, dc_cache_attach_t *a)
{
    a->charged = c;
    atomic_fetch_add(&c->bytes, a->bytes);
    dc_cache_attach_t *head = atomic_load(&sb->attached);
    do
        a->next = head;
    while (!atomic_compare_exchange_weak(&sb->attached, &head, a));
    evict_to_budget(c, atomic_fetch_add(&c->evict_cursor, 1));
}

dc_cache_attach_t *dc_cache_body_attached(dc_shared_body_t *sb, const void *owner)
{
    for (dc_cache_attach_t *a = atomic_load(&sb->attached); a != NULL; a = a->next)
        if (a->owner == owner)
            return a;
    return NULL;
}

/* Does e carry a tag that is a cache key ("GET /...": derived from that key's entry)? */
static bool is_derived(const dc_cache_entry_t *e)
{
    for (size_t i = 0; i < e->ntags; i++)
        if (strncmp(e->tags[i], "GET ", 4) == 0)
            return true;
    return false;
}

dc_cache_entry_t *dc_cache_entry_create(const char *key, size_t key_len, int status, const dc_cache_hdr_t *headers,
                                        size_t nheaders, const char *const *tags, size_t ntags, dc_shared_body_t *body)
{
    size_t arena = key_len + 1;
    for (size_t i = 0; i < nheaders; i++)
        arena += headers[i].name_len + headers[i].value_len + 2;
    for (size_t i = 0; i < ntags; i++)
        arena += strlen(tags[i]) + 1;
    dc_cache_entry_t *e = dc_calloc(1, sizeof(*e));
    e->magic = DC_CACHE_ENTRY_MAGIC;
    dc_refcount_init(&e->refs, 1);
    dc_list_init(&e->vlist); /* a zeroed list is not an empty one (core/list.h) */
    e->arena = dc_malloc(arena);
    e->headers = nheaders ? dc_malloc(nheaders * sizeof(*e->headers)) : NULL;
    e->tags = ntags ? dc_malloc(ntags * sizeof(char *)) : NULL;
    char *p = e->arena;
    memcpy(p, key, key_len);
    p[key_len] = '\0';
    e->key = p;
    e->key_len = key_len;
    p += key_len + 1;
    for (size_t i = 0; i < nheaders; i++) {
        dc_cache_hdr_t *h = &e->headers[i];
        h->token = headers[i].token;
        memcpy(p, headers[i].name, headers[i].name_len);
        p[headers[i].name_len] = '\0';
        h->name = p;
        h->name_len = headers[i].name_len;
        p += h->name_len + 1;
        memcpy(p, headers[i].value, headers[i].value_len);
        p[headers[i].value_len] = '\0';
        h->value = p;
        h->value_len = headers[i].value_len;
        p += h->value_len + 1;
    }
    e->nheaders = nheaders;
    for (size_t i = 0; i < ntags; i++) {
        size_t l = strlen(tags[i]);
        memcpy(p, tags[i], l + 1);
        ((const char **)e->tags)[i] = p;
        p += l + 1;
    }
    e->ntags = ntags;
    e->status = status;
    e->body = body;
    e->hash = dc_cache_hash(key, key_len);
    e->primary_len = dc_vary_primary_len(key, key_len);
    if (e->primary_len < key_len) /* under a secondary key: in its record's shard */
        e->hash = dc_vary_hash(dc_cache_hash(key, e->primary_len), e->hash);
    const dc_cache_hdr_t *h;
    if ((h = dc_cache_entry_header(e, "vary", 4)) != NULL) {
        e->vary = h->value;
        e->vary_len = h->value_len;
    }
    if ((h = dc_cache_entry_header(e, "etag", 4)) != NULL)
        e->origin_etag = h->value;
    if ((h = dc_cache_entry_header(e, "last-modified", 13)) != NULL)
        e->origin_last_modified = h->value;
    e->charge = ENTRY_OVERHEAD + arena + nheaders * sizeof(*e->headers) + ntags * sizeof(char *) +
                (body != NULL ? dc_body_allocated(&body->body) : 0);
    return e;
}

dc_cache_entry_t *dc_cache_entry_ref(dc_cache_entry_t *e)
{
    DC_CHECK_MAGIC(e, DC_CACHE_ENTRY_MAGIC);
    dc_refcount_take(&e->refs);
    return e;
}

void dc_cache_entry_release(dc_cache_entry_t *e)
{
    if (e == NULL)
        return;
    DC_CHECK_MAGIC(e, DC_CACHE_ENTRY_MAGIC);
    if (!dc_refcount_drop(&e->refs))
        return;
    DC_ASSERT(!e->in_store);
    dc_shared_body_release(e->body);
    for (int i = 1; i < 3; i++)
        dc_shared_body_release(e->variants[i]);
    free(e->headers);
    free((void *)e->tags);
    free(e->arena);
    e->magic = 0;
    free(e);
}

void dc_cache_entry_set_variant(dc_cache_entry_t *e, unsigned enc, dc_shared_body_t *sb)
{
    DC_ASSERT(!e->in_store && enc >= 1 && enc < 3);
    if (e->variants[enc] != NULL) {
        e->charge -= dc_body_allocated(&e->variants[enc]->body);
        dc_shared_body_release(e->variants[enc]);
    }
    e->variants[enc] = sb;
    if (sb != NULL)
        e->charge += dc_body_allocated(&sb->body);
}

dc_cache_entry_t *dc_cache_entry_clone(const dc_cache_entry_t *e)
{
    dc_cache_entry_t *n = dc_cache_entry_create(e->key, e->key_len, e->status, e->headers, e->nheaders, e->tags,
                                                e->ntags, e->body != NULL ? dc_shared_body_ref(e->body) : NULL);
    for (int i = 1; i < 3; i++)
        if (e->variants[i] != NULL)
            dc_cache_entry_set_variant(n, (unsigned)i, dc_shared_body_ref(e->variants[i]));
    memcpy(n->etag, e->etag, sizeof(n->etag));
    n->etag_len = e->etag_len;
    n->etag_enc = e->etag_enc;
    n->compressible = e->compressible;
    n->is_pass = e->is_pass;
    n->is_vary = e->is_vary;
    n->vary_max = e->vary_max;
    n->stored_at_ms = e->stored_at_ms;
    n->fresh_until_ms = e->fresh_until_ms;
    n->swr_until_ms = e->swr_until_ms;
    n->sie_until_ms = e->sie_until_ms;
    n->keep_until_ms = e->keep_until_ms;
    n->origin_age_s = e->origin_age_s;
    n->no_stale = e->no_stale;
    n->negative = e->negative;
    n->route_metric = e->route_metric;
    return n;
}

const dc_cache_hdr_t *dc_cache_entry_header(const dc_cache_entry_t *e, const char *name, size_t len)
{
    for (size_t i = 0; i < e->nheaders; i++)
        if (e->headers[i].name_len == len && memcmp(e->headers[i].name, name, len) == 0)
            return &e->headers[i];
    return NULL;
}

void dc_cache_entry_set_etag(dc_cache_entry_t *e, const unsigned char digest[32])
{
    static const char hex[] = "0123456789abcdef";
    e->etag[0] = '"';
    for (int i = 0; i < 16; i++) {
        e->etag[1 + 2 * i] = hex[digest[i] >> 4];
        e->etag[2 + 2 * i] = hex[digest[i] & 15];
    }
    e->etag[33] = '"';
    e->etag[34] = '\0';
    e->etag_len = 34;
}

/* ---- hashing ---- */

uint64_t dc_cache_hash(const char *key, size_t len)
{
    return dc_hash64(key, len);
}

/* ---- shard internals (lock held) ---- */

/* The entry of an LRU node (NULL for NULL). */
static dc_cache_entry_t *lru_entry(dc_list_node_t *n)
{
    return n != NULL ? dc_container_of(n, dc_cache_entry_t, lru_link) : NULL;
}

static dc_cache_entry_t **bucket_of(shard_t *s, uint64_t hash)
{
    /* the low bits chose the shard: use the high bits for the bucket */
    return &s->buckets[(hash >> 20) & (s->nbuckets - 1)];
}

static void table_grow(shard_t *s)
{
    size_t n = s->nbuckets * 2;
    dc_cache_entry_t **nb = dc_calloc(n, sizeof(*nb));
    for (size_t i = 0; i < s->nbuckets; i++) {
        dc_cache_entry_t *e = s->buckets[i];
        while (e != NULL) {
            dc_cache_entry_t *next = e->hnext;
            size_t b = (e->hash >> 20) & (n - 1);
            e->hnext = nb[b];
            nb[b] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

static dc_cache_entry_t *table_find(shard_t *s, const char *key, size_t len, uint64_t hash)
{
    for (dc_cache_entry_t *e = *bucket_of(s, hash); e != NULL; e = e->hnext)
        if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* ---- a record's variants (lock held) ---- */

static void vlist_unlink(dc_cache_entry_t *v)
{
    dc_list_remove(&v->vlink);
    v->vrec->nvariants--;
    v->vrec = NULL;
}

static void vlist_push_front(dc_cache_entry_t *rec, dc_cache_entry_t *v)
{
    v->vrec = rec;
    dc_list_push_front(&rec->vlist, &v->vlink);
    rec->nvariants++;
}

/* The entry of a variant node (NULL for NULL). */
static dc_cache_entry_t *vlist_entry(dc_list_node_t *n)
{
    return n != NULL ? dc_container_of(n, dc_cache_entry_t, vlink) : NULL;
}

static bool same_names(const dc_cache_entry_t *a, const dc_cache_entry_t *b)
{
    return a->vary_len == b->vary_len && memcmp(a->vary, b->vary, a->vary_len) == 0;
}

/* Unlink `e` from its shard; returns it so the caller drops the store's reference after unlocking. */
static dc_cache_entry_t *detach(dc_cache_t *c, shard_t *s, dc_cache_entry_t *e)
{
    dc_cache_entry_t **pp = bucket_of(s, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    dc_list_remove(&e->lru_link);
    if (e->vrec != NULL)
        vlist_unlink(e);
    e->in_store = false;
    s->count--;
    atomic_fetch_sub(&c->bytes, e->charge);
    atomic_fetch_sub(&c->entries, 1);
    if (is_derived(e))
        atomic_fetch_sub(&c->derived, 1);
    return e;
}

/* Unlink `e` and, when it is a vary record, its variants (unreachable without it). Returns a chain
 * through hnext, e first, for release_chain() after unlocking. */
static dc_cache_entry_t *detach_all(dc_cache_t *c, shard_t *s, dc_cache_entry_t *e)
{
    detach(c, s, e);
    while (!dc_list_empty(&e->vlist)) {
        dc_cache_entry_t *v = vlist_entry(dc_list_first(&e->vlist));
        DC_ASSERT(v->shard == e->shard);
        detach(c, s, v);
        v->hnext = e->hnext;
        e->hnext = v;
    }
    return e;
}

/* Drop the store's references to a chain from detach_all(); returns how many there were. */
static size_t release_chain(dc_cache_entry_t *e)
{
    size_t n = 0;
    while (e != NULL) {
        dc_cache_entry_t *next = e->hnext;
        e->hnext = NULL;
        dc_cache_entry_release(e);
        e = next;
        n++;
    }
    return n;
}

/* ---- public ---- */

dc_cache_t *dc_cache_create(uint64_t memory, uint64_t max_object)
{
    dc_cache_t *c = dc_calloc(1, sizeof(*c));
    for (int i = 0; i < NSHARDS; i++) {
        shard_t *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = 64;
        s->buckets = dc_calloc(s->nbuckets, sizeof(*s->buckets));
        dc_list_init(&s->lru);
    }
    atomic_init(&c->memory, memory);
    atomic_init(&c->max_object, max_object);
    dc_purgelog_init(&c->purges);
    return c;
}

void dc_cache_destroy(dc_cache_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        shard_t *s = &c->shards[i];
        while (!dc_list_empty(&s->lru))
            release_chain(detach_all(c, s, lru_entry(dc_list_first(&s->lru))));
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    dc_purgelog_dispose(&c->purges);
    free(c);
}

uint64_t dc_cache_max_object(const dc_cache_t *c)
{
    return atomic_load(&((dc_cache_t *)c)->max_object);
}

void dc_cache_note_too_big(dc_cache_t *c)
{
    atomic_fetch_add(&c->too_big, 1);
}

/* Evict least-recently-used entries until the budget holds. Takes shard locks one at a time. */
static void evict_to_budget(dc_cache_t *c, unsigned start_shard)
{
    unsigned empty_in_a_row = 0, i = start_shard;
    while (atomic_load(&c->bytes) > atomic_load(&c->memory) && empty_in_a_row < NSHARDS) {
        shard_t *s = &c->shards[i % NSHARDS];
        dc_cache_entry_t *victim = NULL;
        pthread_mutex_lock(&s->lock);
        if (!dc_list_empty(&s->lru))
            victim = detach_all(c, s, lru_entry(dc_list_last(&s->lru)));
        pthread_mutex_unlock(&s->lock);
        if (victim != NULL) {
            atomic_fetch_add(&c->evictions, release_chain(victim));
            empty_in_a_row = 0;
        } else {
            empty_in_a_row++;
            i++;
        }
    }
}

void dc_cache_set_limits(dc_cache_t *c, uint64_t memory, uint64_t max_object, uint64_t now_ms)
{
    atomic_store(&c->memory, memory);
    atomic_store(&c->max_object, max_object);
    evict_to_budget(c, atomic_fetch_add(&c->evict_cursor, 1));
}

dc_cache_entry_t *dc_cache_lookup(dc_cache_t *c, const char *key, size_t len, uint64_t hash, uint64_t now_ms)
{
    shard_t *s = &c->shards[hash % NSHARDS];
    dc_cache_entry_t *dead = NULL, *e;
    pthread_mutex_lock(&s->lock);
    e = table_find(s, key, len, hash);
    if (e != NULL) {
        if (now_ms >= e->keep_until_ms) {
            dead = detach_all(c, s, e);
            e = NULL;
        } else {
            if (dc_list_first(&s->lru) != &e->lru_link) {
                dc_list_remove(&e->lru_link);
                dc_list_push_front(&s->lru, &e->lru_link);
            }
            if (e->vrec != NULL &&
                dc_list_first(&e->vrec->vlist) != &e->vlink) { /* a variant: most recently used of its record */
                dc_cache_entry_t *rec = e->vrec;
                vlist_unlink(e);
                vlist_push_front(rec, e);
            }
            dc_refcount_take(&e->refs);
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (dead != NULL)
        atomic_fetch_add(&c->expired, release_chain(dead));
    return e;
}

/* Link e into the table and the LRU (lock held; the store's reference is taken by the caller). */
static void link_entry(dc_cache_t *c, shard_t *s, unsigned idx, dc_cache_entry_t *e)
{
    if (s->count + 1 > s->nbuckets)
        table_grow(s);
    dc_cache_entry_t **b = bucket_of(s, e->hash);
    e->hnext = *b;
    *b = e;
    dc_list_push_front(&s->lru, &e->lru_link);
    e->in_store = true;
    e->shard = idx;
    s->count++;
    atomic_fetch_add(&c->bytes, e->charge);
    atomic_fetch_add(&c->entries, 1);
    if (is_derived(e))
        atomic_fetch_add(&c->derived, 1);
}

int dc_cache_insert(dc_cache_t *c, dc_cache_entry_t *e, uint64_t now_ms)
{
    return dc_cache_insert_variant(c, e, now_ms, NULL);
}

int dc_cache_insert_variant(dc_cache_t *c, dc_cache_entry_t *e, uint64_t now_ms, bool *vary_evicted)
{
    (void)now_ms;
    DC_CHECK_MAGIC(e, DC_CACHE_ENTRY_MAGIC);
    DC_ASSERT(!e->in_store);
    if (vary_evicted != NULL)
        *vary_evicted = false;
    if (e->charge > atomic_load(&c->max_object) || e->charge > atomic_load(&c->memory)) {
        atomic_fetch_add(&c->too_big, 1);
        return DC_ETOOBIG;
    }
    unsigned idx = (unsigned)(e->hash % NSHARDS);
    shard_t *s = &c->shards[idx];
    dc_cache_entry_t *old = NULL, *lru_variant = NULL, *rec = NULL;
    bool is_variant = e->primary_len < e->key_len && e->vary != NULL;
    pthread_mutex_lock(&s->lock);
    if (is_variant) {
        rec = table_find(s, e->key, e->primary_len, dc_cache_hash(e->key, e->primary_len));
        if (rec == NULL || !rec->is_vary || !same_names(rec, e)) {
            pthread_mutex_unlock(&s->lock);
            return DC_ENOTFOUND; /* its record is gone or says other names: unreachable */
        }
    }
    old = table_find(s, e->key, e->key_len, e->hash);
    if (e->is_vary && old != NULL && old->is_vary && same_names(old, e)) {
        /* the same record: keep it and its variants */
        if (e->keep_until_ms > old->keep_until_ms)
            old->keep_until_ms = e->keep_until_ms;
        old->vary_max = e->vary_max;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (old != NULL)
        detach_all(c, s, old);
    if (rec != NULL && rec->nvariants >= (rec->vary_max > 0 ? rec->vary_max : 1)) {
        lru_variant = vlist_entry(dc_list_last(&rec->vlist));
        detach(c, s, lru_variant);
    }
    dc_refcount_take(&e->refs); /* the store's reference */
    link_entry(c, s, idx, e);
    if (rec != NULL) {
        vlist_push_front(rec, e);
        if (e->keep_until_ms > rec->keep_until_ms)
            rec->keep_until_ms = e->keep_until_ms;
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&c->inserts, 1);
    if (old != NULL) {
        atomic_fetch_add(&c->replaced, 1);
        release_chain(old);
    }
    if (lru_variant != NULL) {
        atomic_fetch_add(&c->evictions, 1);
        dc_cache_entry_release(lru_variant);
        if (vary_evicted != NULL)
            *vary_evicted = true;
    }
    evict_to_budget(c, idx);
    return 0;
}

int dc_cache_replace(dc_cache_t *c, dc_cache_entry_t *old, dc_cache_entry_t *successor, uint64_t now_ms)
{
    DC_CHECK_MAGIC(successor, DC_CACHE_ENTRY_MAGIC);
    DC_ASSERT(!successor->in_store && successor->hash == old->hash);
    if (successor->charge > atomic_load(&c->max_object) || successor->charge > atomic_load(&c->memory)) {
        atomic_fetch_add(&c->too_big, 1);
        return DC_ETOOBIG;
    }
    unsigned idx = (unsigned)(old->hash % NSHARDS);
    shard_t *s = &c->shards[idx];
    pthread_mutex_lock(&s->lock);
    if (!old->in_store || table_find(s, old->key, old->key_len, old->hash) != old) {
        pthread_mutex_unlock(&s->lock);
        return DC_ENOTFOUND;
    }
    dc_cache_entry_t *rec = old->vrec; /* a variant's successor takes its place under the record */
    detach_all(c, s, old);
    dc_refcount_take(&successor->refs); /* the store's reference */
    link_entry(c, s, idx, successor);
    if (rec != NULL)
        vlist_push_front(rec, successor);
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(&c->replaced, 1);
    release_chain(old); /* the store's reference to the old one (and a record's variants) */
    evict_to_budget(c, idx);
    return 0;
}

void dc_cache_remove_entry(dc_cache_t *c, dc_cache_entry_t *e)
{
    shard_t *s = &c->shards[e->hash % NSHARDS];
    dc_cache_entry_t *victim = NULL;
    pthread_mutex_lock(&s->lock);
    if (e->in_store && table_find(s, e->key, e->key_len, e->hash) == e)
        victim = detach_all(c, s, e);
    pthread_mutex_unlock(&s->lock);
    release_chain(victim);
}

static bool purge_covers(const dc_cache_entry_t *e, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at_ms)
{
    return e->stored_at_ms <= at_ms && dc_purge_matches(kind, arg, len, e->key, e->key_len, e->tags, e->ntags);
}

/* One exact key: one shard, one lookup. */
static size_t purge_one_key(dc_cache_t *c, const char *key, size_t len, uint64_t at_ms)
{
    uint64_t hash = dc_cache_hash(key, len);
    shard_t *s = &c->shards[hash % NSHARDS];
    dc_cache_entry_t *victim = NULL;
    pthread_mutex_lock(&s->lock);
    dc_cache_entry_t *e = table_find(s, key, len, hash);
    if (e != NULL && e->stored_at_ms <= at_ms)
        victim = detach_all(c, s, e); /* a record: with its variants */
    pthread_mutex_unlock(&s->lock);
    return release_chain(victim);
}

size_t dc_cache_purge(dc_cache_t *c, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at_ms)
{
    dc_purgelog_add(&c->purges, kind, arg, len, at_ms);
    size_t n = 0;
    if (kind == DC_PURGE_KEY)
        n = purge_one_key(c, arg, len, at_ms);
    if (kind != DC_PURGE_KEY || atomic_load(&c->derived) > 0) { /* a key: also what derives from it */
        for (int i = 0; i < NSHARDS; i++) {
            shard_t *s = &c->shards[i];
            dc_cache_entry_t *doomed = NULL;
            pthread_mutex_lock(&s->lock);
            dc_list_node_t *node = dc_list_first(&s->lru);
            while (node != NULL) {
                dc_cache_entry_t *e = lru_entry(node);
                dc_list_node_t *next = dc_list_next(&s->lru, node);
                if (purge_covers(e, kind, arg, len, at_ms)) {
                    while (next != NULL && lru_entry(next)->vrec == e) /* going with e */
                        next = dc_list_next(&s->lru, next);
                    dc_cache_entry_t *tail = detach_all(c, s, e);
                    while (tail->hnext != NULL) /* the chain goes in front of the release list */
                        tail = tail->hnext, n++;
                    tail->hnext = doomed;
                    doomed = e;
                    n++;
                }
                node = next;
            }
            pthread_mutex_unlock(&s->lock);
            release_chain(doomed); /* outside the lock */
        }
    }
    atomic_fetch_add(&c->purged, n);
    return n;
}

bool dc_cache_purged(dc_cache_t *c, const dc_cache_entry_t *e)
{
    return dc_purgelog_covers(&c->purges, e->key, e->key_len, e->tags, e->ntags, e->stored_at_ms);
}

void dc_cache_get_stats(dc_cache_t *c, dc_cache_stats_t *out)
{
    out->entries = atomic_load(&c->entries);
    out->bytes = atomic_load(&c->bytes);
    out->inserts = atomic_load(&c->inserts);
    out->replaced = atomic_load(&c->replaced);
    out->evictions = atomic_load(&c->evictions);
    out->expired = atomic_load(&c->expired);
    out->purged = atomic_load(&c->purged);
    out->too_big = atomic_load(&c->too_big);
}
