/* Verified-token cache: see tcache.h. */
#include "tcache.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/constant_time.h>

#define WAYS 4

typedef struct entry {
    unsigned char digest[DCA_DIGEST_LEN];
    int64_t dies; /* 0 = empty slot */
    int reason;   /* 0: `id` was proved; else why the token was refused (dca_tcache_put_refusal) */
    dca_identity_t id;
} entry_t;

struct dca_tcache {
    entry_t *e;
    size_t nsets; /* a power of two; 0 = disabled */
    uint64_t hits, misses, evictions;
};

dca_tcache_t *dca_tcache_new(size_t entries)
{
    dca_tcache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if (entries == 0)
        return c;
    if (entries > ((size_t)1 << 24))
        goto fail;
    size_t nsets = 1;
    while (nsets * WAYS < entries)
        nsets <<= 1;
    c->e = calloc(nsets * WAYS, sizeof(entry_t));
    if (c->e == NULL)
        goto fail;
    c->nsets = nsets;
    return c;
fail:
    free(c);
    return NULL;
}

void dca_tcache_free(dca_tcache_t *c)
{
    if (c == NULL)
        return;
    free(c->e);
    free(c);
}

/* the digest is SHA-256 output: its first bytes are already uniformly spread */
static entry_t *set_of(dca_tcache_t *c, const unsigned char *digest)
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    return c->e + (h & (c->nsets - 1)) * WAYS;
}

/* the live entry of digest, or NULL (a dead one found on the way is cleared) */
static entry_t *find(dca_tcache_t *c, const unsigned char *digest, int64_t now)
{
    if (c->nsets == 0)
        return NULL;
    entry_t *set = set_of(c, digest);
    for (int i = 0; i < WAYS; i++) {
        entry_t *e = set + i;
        if (e->dies == 0 || mbedtls_ct_memcmp(e->digest, digest, DCA_DIGEST_LEN) != 0)
            continue;
        if (now >= e->dies) {
            memset(e, 0, sizeof(*e));
            return NULL;
        }
        return e;
    }
    return NULL;
}

int dca_tcache_get(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, dca_identity_t *out)
{
    entry_t *e = find(c, digest, now);
    if (e == NULL || e->reason != 0) {
        c->misses++;
        return 0;
    }
    *out = e->id;
    c->hits++;
    return 1;
}

int dca_tcache_get_refusal(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now)
{
    entry_t *e = find(c, digest, now);
    if (e == NULL || e->reason == 0) {
        c->misses++;
        return 0;
    }
    c->hits++;
    return e->reason;
}

/* the slot for digest: its own, a free or dead one, or the one that dies first (evicted) */
static entry_t *slot_for(dca_tcache_t *c, const unsigned char *digest, int64_t now)
{
    entry_t *set = set_of(c, digest);
    for (int i = 0; i < WAYS; i++)
        if (set[i].dies != 0 && memcmp(set[i].digest, digest, DCA_DIGEST_LEN) == 0)
            return set + i;
    for (int i = 0; i < WAYS; i++)
        if (set[i].dies == 0 || now >= set[i].dies)
            return set + i;
    entry_t *victim = set;
    for (int i = 1; i < WAYS; i++)
        if (set[i].dies < victim->dies)
            victim = set + i;
    c->evictions++;
    return victim;
}

static int64_t capped(int64_t now, int64_t dies)
{
    if (now <= INT64_MAX - DCA_TCACHE_MAX_TTL && dies > now + DCA_TCACHE_MAX_TTL)
        return now + DCA_TCACHE_MAX_TTL;
    return dies;
}

void dca_tcache_put(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, const dca_identity_t *id)
{
    if (c->nsets == 0 || now >= id->expires)
        return;
    entry_t *e = slot_for(c, digest, now);
    memcpy(e->digest, digest, DCA_DIGEST_LEN);
    e->dies = capped(now, id->expires);
    e->reason = 0;
    e->id = *id;
}

void dca_tcache_put_refusal(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, int reason)
{
    if (c->nsets == 0 || reason == 0)
        return;
    entry_t *e = slot_for(c, digest, now);
    memset(e, 0, sizeof(*e));
    memcpy(e->digest, digest, DCA_DIGEST_LEN);
    e->dies = capped(now, INT64_MAX);
    e->reason = reason;
}

void dca_tcache_stats(const dca_tcache_t *c, dca_tcache_stats_t *out)
{
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->capacity = c->nsets * WAYS;
}
