/*
 * The L2 (Redis) entry format, pure. Versioned and checksummed so a corrupt, truncated or foreign
 * value is a miss, never a crash:
 *   "DCL2" | u8 version (1) | u8 flags (1 no_stale, 2 negative, 4 compressible) | u16 status
 *   | u64 stored_at | u64 fresh_until | u64 swr_until | u64 sie_until | u64 keep_until (wall ms)
 *   | u32 origin_age_s | u8 etag_len | etag | u16 nheaders | { u16 name_len | name | u32 value_len
 *   | value }* | u16 ntags | { u16 len | tag }* | u64 body_len | body | u32 crc32 (of all before)
 * Integers are little-endian. Only the identity body travels; gzip/br are remade locally.
 */
#ifndef DC_CACHE_L2CODEC_H
#define DC_CACHE_L2CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

#define DC_L2_VERSION 1

/* Serialise `e` (a complete, non-pass entry) into a new heap buffer; *len its size. */
char *dc_l2_encode(const dc_cache_entry_t *e, size_t *len);
/* Parse a value read from Redis for `key`. Returns a new entry (refcount 1, header tokens unset,
 * not stored) or NULL with *err = DC_EPROTO (corrupt, truncated, bad checksum) or DC_ERANGE
 * (unknown version). */
dc_cache_entry_t *dc_l2_decode(const char *key, size_t key_len, const char *buf, size_t len, int *err);

#endif
