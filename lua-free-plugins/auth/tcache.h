/* Verified-token cache of the auth plugin: token digest -> the identity it proved, per worker.
 *
 * A repeated bearer token costs one SHA-256 of the token and a lookup here instead of a signature
 * check. The cache is a fixed-size 4-way set-associative table allocated once: it never grows,
 * never allocates after dca_tcache_new, and an entry dies at the instant the token stops being
 * valid (its exp plus leeway, capped by DCA_TCACHE_MAX_TTL). Not thread-safe by design: one cache
 * per worker thread (style.md habit 7). */
#ifndef DCA_TCACHE_H
#define DCA_TCACHE_H

#include <stddef.h>
#include <stdint.h>

/* A token's cache key: SipHash-2-4 with a 128-bit output (libsodium crypto_shorthash_siphashx24)
 * under a random key of the cache's owner. Keyed, so nobody who lacks the key can make two tokens
 * collide (a false hit, or evicting a set on purpose), and about ten times cheaper than SHA-256:
 * on a hit it is the whole cost of a repeated token. */
#define DCA_DIGEST_LEN 16
/* longest identity (key id, or the token's identity claim) and tier names, without the NUL */
#define DCA_ID_MAX 127
#define DCA_TIER_MAX 31
/* a token without exp is re-verified at least this often (seconds) */
#define DCA_TCACHE_MAX_TTL 300

/* What a credential proved: the client identity the route's limit uses and the tier that selects
 * its rate. `expires` is the first second (unix time) at which the credential is no longer
 * accepted, INT64_MAX when it never expires. */
typedef struct dca_identity {
    char id[DCA_ID_MAX + 1];
    char tier[DCA_TIER_MAX + 1];
    uint8_t id_len;
    uint8_t tier_len;
    int64_t expires;
} dca_identity_t;

typedef struct dca_tcache dca_tcache_t;

/* A cache of at least `entries` entries (rounded up to a power of two, at least 4); 0 gives a
 * cache that never hits. Returns NULL only when entries is absurdly large. */
dca_tcache_t *dca_tcache_new(size_t entries);
void dca_tcache_free(dca_tcache_t *c);

/* 1 and *out filled when `digest` is cached and still valid at `now`; 0 otherwise (a dead entry
 * found on the way is cleared). */
int dca_tcache_get(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, dca_identity_t *out);
/* Remembers `id` for `digest` until min(id->expires, now + DCA_TCACHE_MAX_TTL). An already dead
 * identity is not stored. When the set is full, the entry that dies first is replaced. */
void dca_tcache_put(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, const dca_identity_t *id);

/* Refusals, kept in a cache of their own so that a flood of bad tokens never evicts good ones: a
 * token refused for a reason that time cannot change (bad signature, expired, wrong issuer, ...)
 * is refused again for DCA_TCACHE_MAX_TTL at the cost of a lookup. get_refusal returns the reason
 * stored for digest, or 0. */
void dca_tcache_put_refusal(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now, int reason);
int dca_tcache_get_refusal(dca_tcache_t *c, const unsigned char digest[DCA_DIGEST_LEN], int64_t now);

typedef struct dca_tcache_stats {
    uint64_t hits, misses, evictions;
    size_t capacity;
} dca_tcache_stats_t;
void dca_tcache_stats(const dca_tcache_t *c, dca_tcache_stats_t *out);

#endif
