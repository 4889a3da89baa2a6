#include "upstream/keyring.h"
#include "core/error.h"

#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dc_keyring_init(dc_keyring_t *kr, char *const *keys, size_t nkeys, uint64_t quarantine_ms)
{
    kr->nkeys = nkeys;
    kr->keys = keys;
    kr->quarantine_ms = quarantine_ms;
    atomic_init(&kr->next, 0);
    kr->quarantined_until = nkeys ? dc_calloc(nkeys, sizeof(*kr->quarantined_until)) : NULL;
    kr->ids = nkeys ? dc_calloc(nkeys, sizeof(*kr->ids)) : NULL;
    for (size_t i = 0; i < nkeys; i++) {
        atomic_init(&kr->quarantined_until[i], 0);
        unsigned char d[32];
        int hrc = mbedtls_sha256_ret((const unsigned char *)keys[i], strlen(keys[i]), d, 0);
        DC_ASSERT(hrc == 0);
        for (int j = 0; j < DC_KEYRING_ID_LEN / 2; j++)
            snprintf(kr->ids[i] + 2 * j, 3, "%02x", d[j]);
    }
}

void dc_keyring_dispose(dc_keyring_t *kr)
{
    free((void *)kr->quarantined_until);
    kr->quarantined_until = NULL;
    free(kr->ids);
    kr->ids = NULL;
    kr->nkeys = 0;
}

int dc_keyring_pick(dc_keyring_t *kr, uint64_t now_ms)
{
    if (kr->nkeys == 0)
        return -1;
    uint64_t start = atomic_fetch_add_explicit(&kr->next, 1, memory_order_relaxed);
    size_t best = 0;
    uint64_t best_until = UINT64_MAX;
    for (size_t i = 0; i < kr->nkeys; i++) {
        size_t idx = (size_t)((start + i) % kr->nkeys);
        uint64_t until = atomic_load_explicit(&kr->quarantined_until[idx], memory_order_relaxed);
        if (until <= now_ms)
            return (int)idx;
        if (until < best_until) {
            best_until = until;
            best = idx;
        }
    }
    return (int)best;
}

size_t dc_keyring_usable(const dc_keyring_t *kr, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < kr->nkeys; i++)
        if (atomic_load_explicit(&kr->quarantined_until[i], memory_order_relaxed) <= now_ms)
            n++;
    return n;
}

int dc_keyring_quarantine(dc_keyring_t *kr, int idx, uint64_t now_ms)
{
    if (idx < 0 || (size_t)idx >= kr->nkeys)
        return 0;
    uint64_t until = now_ms + kr->quarantine_ms;
    uint64_t prev = atomic_exchange_explicit(&kr->quarantined_until[idx], until, memory_order_relaxed);
    return prev <= now_ms;
}

int dc_keyring_quarantine_until(dc_keyring_t *kr, int idx, uint64_t now_ms, uint64_t until_ms)
{
    if (idx < 0 || (size_t)idx >= kr->nkeys)
        return 0;
    uint64_t prev = atomic_load_explicit(&kr->quarantined_until[idx], memory_order_relaxed);
    while (prev < until_ms && !atomic_compare_exchange_weak_explicit(&kr->quarantined_until[idx], &prev, until_ms,
                                                                     memory_order_relaxed, memory_order_relaxed))
        ;
    return prev <= now_ms && until_ms > now_ms;
}

int dc_keyring_find_id(const dc_keyring_t *kr, const char *id, size_t len)
{
    if (len != DC_KEYRING_ID_LEN)
        return -1;
    for (size_t i = 0; i < kr->nkeys; i++)
        if (memcmp(kr->ids[i], id, len) == 0)
            return (int)i;
    return -1;
}

void dc_keyring_inherit(dc_keyring_t *kr, const dc_keyring_t *old)
{
    for (size_t i = 0; i < kr->nkeys; i++)
        for (size_t j = 0; j < old->nkeys; j++)
            if (strcmp(kr->keys[i], old->keys[j]) == 0)
                atomic_store(&kr->quarantined_until[i], atomic_load(&old->quarantined_until[j]));
}
