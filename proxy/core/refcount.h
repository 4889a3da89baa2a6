/*
 * The one reference count of long-lived shared objects (cache entries and bodies, growing bodies,
 * config and snapshots, event-stream channels and events): atomic, so any thread may hold and drop
 * references. Taking one is relaxed (the taker already holds a reference that keeps the object
 * alive); dropping one is acquire-release, so the thread that frees sees every other holder's last
 * accesses finished. Dropping below zero is a bug and aborts.
 */
#ifndef DC_CORE_REFCOUNT_H
#define DC_CORE_REFCOUNT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"

typedef _Atomic uint32_t dc_refcount_t;

static inline void dc_refcount_init(dc_refcount_t *r, uint32_t n)
{
    atomic_init(r, n);
}

static inline void dc_refcount_take(dc_refcount_t *r)
{
    atomic_fetch_add_explicit(r, 1, memory_order_relaxed);
}

/* Drop one reference: true when it was the last (the caller frees the object). */
static inline bool dc_refcount_drop(dc_refcount_t *r)
{
    uint32_t prev = atomic_fetch_sub_explicit(r, 1, memory_order_acq_rel);
    DC_ASSERT(prev > 0);
    return prev == 1;
}

static inline uint32_t dc_refcount_get(dc_refcount_t *r)
{
    return atomic_load_explicit(r, memory_order_relaxed);
}

#endif
