/* Verified-token cache: see tcache.h. */
#include "tcache.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/constant_time.h>

#define WAYS 4

typedef struct entry {
    unsigned char digest[DCA_DIGEST_LEN];
    int64_t dies; /* 0 = empty slot */
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

int dca_tcache_get(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, dca_identity_t *out)
{
    if (c->nsets == 0) {
        c->misses++;
        return 0;
    }
    entry_t *set = set_of(c, digest);
    for (int i = 0; i < WAYS; i++) {
        entry_t *e = set + i;
        if (e->dies == 0)
            continue;
        if (mbedtls_ct_memcmp(e->digest, digest, DCA_DIGEST_LEN) != 0)
            continue;
        if (now >= e->dies) {
            memset(e, 0, sizeof(*e));
            break;
        }
        *out = e->id;
        c->hits++;
        return 1;
    }
    c->misses++;
    return 0;
}

void dca_tcache_put(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, const dca_identity_t *id)
{
    if (c->nsets == 0 || now >= id->expires)
        return;
    int64_t dies = id->expires;
    if (now <= INT64_MAX - DCA_TCACHE_MAX_TTL && dies > now + DCA_TCACHE_MAX_TTL)
        dies = now + DCA_TCACHE_MAX_TTL;
    entry_t *set = set_of(c, digest), *victim = NULL;
    for (int i = 0; i < WAYS && victim == NULL; i++)
        if (set[i].dies != 0 && memcmp(set[i].digest, digest, DCA_DIGEST_LEN) == 0)
            victim = set + i;
    for (int i = 0; i < WAYS && victim == NULL; i++)
        if (set[i].dies == 0 || now >= set[i].dies)
            victim = set + i;
    if (victim == NULL) {
        victim = set;
        for (int i = 1; i < WAYS; i++)
            if (set[i].dies < victim->dies)
                victim = set + i;
        c->evictions++;
    }
    memcpy(victim->digest, digest, DCA_DIGEST_LEN);
    victim->dies = dies;
    victim->id = *id;
}

void dca_tcache_stats(const dca_tcache_t *c, dca_tcache_stats_t *out)
{
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->capacity = c->nsets * WAYS;
}
