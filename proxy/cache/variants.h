/*
 * Compressed representations of cache entries (gzip, br), made once per entry.
 * Small bodies are encoded inline before the entry is stored; large ones on libuv's thread pool
 * after it is stored, so hits on other keys are never stalled: the job publishes a successor
 * entry that shares the identity body and carries the variants, and only if the entry it started
 * from is still the one stored under its key.
 */
#ifndef DC_CACHE_VARIANTS_H
#define DC_CACHE_VARIANTS_H

#include <stdbool.h>
#include <uv.h>

#include "cache/store.h"

/* Bodies smaller than this are sent as they are. */
#define DC_VARIANTS_MIN_BYTES 1024
/* gzip of bodies up to this size is made inline (tens of microseconds with a window sized to the
 * body); larger ones on the thread pool. */
#define DC_VARIANTS_INLINE_MAX (64 * 1024)
/* brotli only pays for itself on larger bodies: its encoder zero-fills hundreds of KiB of hash
 * tables per call whatever the input size, and on small JSON it gains little over gzip. It is made
 * only from this size on, and always on the thread pool. */
#define DC_VARIANTS_BR_MIN (32 * 1024)

/* Bitmask of the variants worth making for `e` (1 << DC_ENC_GZIP | 1 << DC_ENC_BR, minus those it
 * has). 0 when the entry is not compressible. */
unsigned dc_variants_wanted(const dc_cache_entry_t *e);
/* Which of `want` to make inline now (the rest goes to dc_variants_schedule). */
unsigned dc_variants_inline_part(const dc_cache_entry_t *e, unsigned want);
/* Encode `want` now into `e` (not yet stored). Keeps only variants worth it. */
void dc_variants_make_inline(dc_cache_entry_t *e, unsigned want);
/* Encode `want` on the thread pool of `loop` and publish a successor of `stored` in `cache`.
 * Takes its own reference to `stored`. */
void dc_variants_schedule(uv_loop_t *loop, dc_cache_t *cache, dc_cache_entry_t *stored, unsigned want);
/* Jobs scheduled and not finished yet, process-wide (draining waits for 0). */
unsigned dc_variants_pending(void);

#endif
