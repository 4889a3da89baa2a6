/*
 * The members of a top-level JSON object as raw byte spans (pure): used to split an id-keyed answer
 * (Jupiter's /price/v3: {"<mint>": {...}, ...}) into per-id pieces without re-serialising, so each
 * piece is byte-for-byte what the upstream sent. Validates structure enough to find the spans
 * (strings with escapes, nesting, literals); it does not check numbers or UTF-8.
 */
#ifndef DC_CACHE_JSONOBJ_H
#define DC_CACHE_JSONOBJ_H

#include <stddef.h>

typedef struct dc_json_member {
    const char *key; /* raw, between the quotes (escapes not decoded) */
    size_t key_len;
    const char *value; /* raw value text, no surrounding whitespace */
    size_t value_len;
} dc_json_member_t;

/* Parse `len` bytes holding exactly one JSON object (whitespace around allowed). Calls `cb` for
 * each member in order; a non-zero return from cb stops and is returned. Returns 0, or DC_EPROTO
 * when the text is not one well-formed object (nesting beyond 64 levels included). */
int dc_json_object_members(const char *s, size_t len, int (*cb)(void *data, const dc_json_member_t *m), void *data);

#endif
