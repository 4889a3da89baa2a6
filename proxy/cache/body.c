#include "cache/body.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CHUNK (16 * 1024)
#define MAX_CHUNK (1024 * 1024)

void dc_body_init(dc_body_t *b, size_t expected)
{
    memset(b, 0, sizeof(*b));
    b->next_chunk = expected > 0 ? expected : MIN_CHUNK;
}

void dc_body_append(dc_body_t *b, const char *p, size_t len)
{
    while (len > 0) {
        dc_body_chunk_t *c = b->nchunks ? &b->chunks[b->nchunks - 1] : NULL;
        if (c == NULL || c->len == c->cap) {
            if (b->nchunks == b->capchunks) {
                b->capchunks = b->capchunks ? b->capchunks * 2 : 4;
                b->chunks = dc_realloc(b->chunks, b->capchunks * sizeof(*b->chunks));
            }
            c = &b->chunks[b->nchunks++];
            c->cap = b->next_chunk;
            c->data = dc_malloc(c->cap);
            c->len = 0;
            /* later chunks grow geometrically up to MAX_CHUNK (a wrong Content-Length stays cheap) */
            size_t n = c->cap * 2;
            b->next_chunk = n < MIN_CHUNK ? MIN_CHUNK : (n > MAX_CHUNK ? MAX_CHUNK : n);
        }
        size_t take = c->cap - c->len < len ? c->cap - c->len : len;
        memcpy(c->data + c->len, p, take);
        c->len += take;
        b->len += take;
        p += take;
        len -= take;
    }
}

void dc_body_dispose(dc_body_t *b)
{
    for (size_t i = 0; i < b->nchunks; i++)
        free(b->chunks[i].data);
    free(b->chunks);
    memset(b, 0, sizeof(*b));
}

size_t dc_body_allocated(const dc_body_t *b)
{
    size_t n = b->capchunks * sizeof(*b->chunks);
    for (size_t i = 0; i < b->nchunks; i++)
        n += b->chunks[i].cap;
    return n;
}

size_t dc_body_spans(const dc_body_t *b, size_t from, size_t len, const char **bases, size_t *lens, size_t max)
{
    size_t n = 0, off = 0;
    for (size_t i = 0; i < b->nchunks && len > 0 && n < max; i++) {
        const dc_body_chunk_t *c = &b->chunks[i];
        if (from >= off + c->len) {
            off += c->len;
            continue;
        }
        size_t start = from > off ? from - off : 0;
        size_t take = c->len - start < len ? c->len - start : len;
        bases[n] = c->data + start;
        lens[n] = take;
        n++;
        from += take;
        len -= take;
        off += c->len;
    }
    return n;
}

void dc_body_release_before(dc_body_t *b, size_t off)
{
    size_t end = 0;
    for (size_t i = 0; i < b->nchunks; i++) {
        end += b->chunks[i].len;
        if (end > off || b->chunks[i].len < b->chunks[i].cap)
            break; /* reached the first needed chunk, or the one still being written */
        free(b->chunks[i].data);
        b->chunks[i].data = NULL;
        b->chunks[i].cap = b->chunks[i].len; /* keeps "full" so append never writes into it */
    }
}

void dc_body_copy(const dc_body_t *b, size_t from, size_t len, char *out)
{
    const char *bases[64];
    size_t lens[64];
    while (len > 0) {
        size_t n = dc_body_spans(b, from, len, bases, lens, 64);
        DC_ASSERT(n > 0);
        for (size_t i = 0; i < n; i++) {
            memcpy(out, bases[i], lens[i]);
            out += lens[i];
            from += lens[i];
            len -= lens[i];
        }
    }
}

char *dc_body_flatten(const dc_body_t *b)
{
    char *p = dc_malloc(b->len + 1);
    dc_body_copy(b, 0, b->len, p);
    p[b->len] = '\0';
    return p;
}
