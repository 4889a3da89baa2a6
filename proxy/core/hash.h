/*
 * dc_hash64: the 64-bit hash of a byte string used across dexcache (cache keys, bus messages).
 * FNV-1a with a final avalanche (splitmix64): inputs are short, this is cheap and well spread.
 * Not for anything an attacker must not be able to collide on purpose (mbedtls for that).
 */
#ifndef DC_CORE_HASH_H
#define DC_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t dc_hash64(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

#endif
