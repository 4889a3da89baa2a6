#include "ratelimit/local.h"
#include "cache/store.h" /* dc_cache_hash */
#include "core/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 32
#define NBUCKETS 1024 /* per shard */
#define SWEEP_AT 4096 /* entries per shard before idle ones are dropped */

typedef struct bucket_entry {
    struct bucket_entry *next;
    uint64_t hash;
    uint64_t tat_us; /* for lease entries ("~" + key): when the lease expires */
    uint32_t lease;
    uint64_t hint;
    size_t len;
    char key[];
} bucket_entry_t;

typedef struct shard {
    pthread_mutex_t lock;
    bucket_entry_t *slots[NBUCKETS];
    size_t count;
} shard_t;

struct dc_limiter {
    shard_t shards[NSHARDS];
    _Atomic size_t size;
};

dc_limiter_t *dc_limiter_create(void)
{
    dc_limiter_t *l = dc_calloc(1, sizeof(*l));
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&l->shards[i].lock, NULL);
    return l;
}

void dc_limiter_destroy(dc_limiter_t *l)
{
    if (l == NULL)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        for (int b = 0; b < NBUCKETS; b++) {
            bucket_entry_t *e = l->shards[i].slots[b];
            while (e != NULL) {
                bucket_entry_t *n = e->next;
                free(e);
                e = n;
            }
        }
        pthread_mutex_destroy(&l->shards[i].lock);
    }
    free(l);
}

/* Drop full (idle) buckets. Lock held. */
static void sweep(dc_limiter_t *l, shard_t *s, uint64_t now_us)
{
    for (int b = 0; b < NBUCKETS; b++) {
        bucket_entry_t **pp = &s->slots[b];
        while (*pp != NULL) {
            if ((*pp)->tat_us <= now_us) {
                bucket_entry_t *dead = *pp;
                *pp = dead->next;
                free(dead);
                s->count--;
                atomic_fetch_sub(&l->size, 1);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

void dc_limiter_check(dc_limiter_t *l, const char *key, size_t len, const dc_gcra_params_t *p, uint64_t now_us,
                      dc_gcra_result_t *out)
{
    uint64_t h = dc_cache_hash(key, len);
    shard_t *s = &l->shards[h % NSHARDS];
    pthread_mutex_lock(&s->lock);
    bucket_entry_t **slot = &s->slots[(h >> 16) % NBUCKETS], *e;
    for (e = *slot; e != NULL; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            break;
    dc_gcra_check(p, e != NULL ? e->tat_us : 0, now_us, out);
    if (out->allowed) {
        if (e == NULL) {
            if (s->count >= SWEEP_AT)
                sweep(l, s, now_us);
            e = dc_calloc(1, sizeof(*e) + len);
            e->hash = h;
            e->len = len;
            memcpy(e->key, key, len);
            e->next = *slot;
            *slot = e;
            s->count++;
            atomic_fetch_add(&l->size, 1);
        }
        e->tat_us = out->new_tat_us;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Deny marks live in the same table under "!" + key, their TAT being the end of the refusal (so
 * the sweep drops them once they are over). */
static bucket_entry_t **find(shard_t *s, const char *key, size_t len, uint64_t h)
{
    bucket_entry_t **slot = &s->slots[(h >> 16) % NBUCKETS];
    while (*slot != NULL && !((*slot)->hash == h && (*slot)->len == len && memcmp((*slot)->key, key, len) == 0))
        slot = &(*slot)->next;
    return slot;
}

/* Side entries ("!" + key: deny marks; "~" + key: leases) live in the same table. Finds (and
 * with `create`, makes) the entry for tag + key; returns it with its shard locked (NULL: not found
 * or the key is too long; then the shard is not locked). */
static bucket_entry_t *side_entry(dc_limiter_t *l, char tag, const char *key, size_t len, bool create, shard_t **locked)
{
    char mark[512];
    if (len + 1 > sizeof(mark))
        return NULL;
    mark[0] = tag;
    memcpy(mark + 1, key, len);
    uint64_t h = dc_cache_hash(mark, len + 1);
    shard_t *s = &l->shards[h % NSHARDS];
    pthread_mutex_lock(&s->lock);
    bucket_entry_t **slot = find(s, mark, len + 1, h);
    if (*slot == NULL && create) {
        bucket_entry_t *e = dc_calloc(1, sizeof(*e) + len + 1);
        e->hash = h;
        e->len = len + 1;
        memcpy(e->key, mark, len + 1);
        *slot = e;
        s->count++;
        atomic_fetch_add(&l->size, 1);
    }
    if (*slot == NULL) {
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    *locked = s;
    return *slot;
}

void dc_limiter_deny(dc_limiter_t *l, const char *key, size_t len, uint64_t until_us)
{
    shard_t *s;
    bucket_entry_t *e = side_entry(l, '!', key, len, true, &s);
    if (e == NULL)
        return;
    e->tat_us = until_us;
    pthread_mutex_unlock(&s->lock);
}

bool dc_limiter_denied(dc_limiter_t *l, const char *key, size_t len, uint64_t now_us, uint64_t *retry_after_us)
{
    shard_t *s;
    bucket_entry_t *e = side_entry(l, '!', key, len, false, &s);
    if (e == NULL)
        return false;
    bool denied = e->tat_us > now_us;
    if (denied)
        *retry_after_us = e->tat_us - now_us;
    pthread_mutex_unlock(&s->lock);
    return denied;
}

void dc_limiter_lease_put(dc_limiter_t *l, const char *key, size_t len, uint32_t n, uint64_t until_us,
                          uint64_t remaining_hint)
{
    shard_t *s;
    bucket_entry_t *e = side_entry(l, '~', key, len, true, &s);
    if (e == NULL)
        return;
    e->lease = n;
    e->tat_us = until_us;
    e->hint = remaining_hint;
    pthread_mutex_unlock(&s->lock);
}

bool dc_limiter_lease_take(dc_limiter_t *l, const char *key, size_t len, uint64_t now_us, uint64_t *remaining_hint)
{
    shard_t *s;
    bucket_entry_t *e = side_entry(l, '~', key, len, false, &s);
    if (e == NULL)
        return false;
    bool ok = e->lease > 0 && e->tat_us > now_us;
    if (ok) {
        e->lease--;
        *remaining_hint = e->hint > 0 ? --e->hint : 0;
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

size_t dc_limiter_size(dc_limiter_t *l)
{
    return atomic_load(&l->size);
}
