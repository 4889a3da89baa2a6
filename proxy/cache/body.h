/*
 * An append-only response body made of chunks that never move once written, so h2o can send
 * straight from them (zero copy) while more bytes are still being appended on the same thread.
 * A body is built by one thread; once it is sealed (inside a cache entry) it is immutable and may
 * be read from any thread.
 */
#ifndef DC_CACHE_BODY_H
#define DC_CACHE_BODY_H

#include <stddef.h>
#include <stdint.h>

typedef struct dc_body_chunk {
    char *data;
    size_t len; /* bytes written */
    size_t cap;
} dc_body_chunk_t;

typedef struct dc_body {
    dc_body_chunk_t *chunks;
    size_t nchunks, capchunks;
    size_t len;        /* total bytes */
    size_t next_chunk; /* size hint for the next chunk */
} dc_body_t;

/* `expected` = Content-Length when known (0 otherwise): the first chunk is sized to hold it. */
void dc_body_init(dc_body_t *b, size_t expected);
void dc_body_append(dc_body_t *b, const char *p, size_t len);
void dc_body_dispose(dc_body_t *b);
/* Bytes actually allocated (for memory accounting). */
size_t dc_body_allocated(const dc_body_t *b);

/* Fill up to `max` iovec-like spans covering bytes [from, from+len) of the body. Returns the number
 * of spans written. Spans are (pointer, length) pairs in `bases`/`lens`. */
size_t dc_body_spans(const dc_body_t *b, size_t from, size_t len, const char **bases, size_t *lens, size_t max);

/* Free the chunks that lie entirely before byte `off` (they were sent and are not needed again:
 * pass-through streams). Offsets of later bytes do not change. */
void dc_body_release_before(dc_body_t *b, size_t off);

/* Copy bytes [from, from+len) of the body (which must hold them) to `out`. */
void dc_body_copy(const dc_body_t *b, size_t from, size_t len, char *out);
/* Copy the whole body into one new heap buffer, NUL-terminated (caller frees). */
char *dc_body_flatten(const dc_body_t *b);

#endif
