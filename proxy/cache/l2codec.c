#include "cache/l2codec.h"
#include "core/error.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct wbuf {
    char *p;
    size_t len, cap;
} wbuf_t;

static void put(wbuf_t *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n)
            cap *= 2;
        b->p = dc_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u(wbuf_t *b, uint64_t v, int bytes)
{
    unsigned char tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

char *dc_l2_encode(const dc_cache_entry_t *e, size_t *len)
{
    wbuf_t b = {0};
    put(&b, "DCL2", 4);
    put_u(&b, DC_L2_VERSION, 1);
    put_u(&b,
          (e->no_stale ? 1u : 0u) | (e->negative ? 2u : 0u) | (e->compressible ? 4u : 0u) |
              (e->etag_enc != 0 ? 8u : 0u),
          1);
    put_u(&b, (uint64_t)e->status, 2);
    put_u(&b, e->stored_at_ms, 8);
    put_u(&b, e->fresh_until_ms, 8);
    put_u(&b, e->swr_until_ms, 8);
    put_u(&b, e->sie_until_ms, 8);
    put_u(&b, e->keep_until_ms, 8);
    put_u(&b, e->origin_age_s, 4);
    put_u(&b, e->etag_len, 1);
    put(&b, e->etag, e->etag_len);
    put_u(&b, e->nheaders, 2);
    for (size_t i = 0; i < e->nheaders; i++) {
        put_u(&b, e->headers[i].name_len, 2);
        put(&b, e->headers[i].name, e->headers[i].name_len);
        put_u(&b, e->headers[i].value_len, 4);
        put(&b, e->headers[i].value, e->headers[i].value_len);
    }
    put_u(&b, e->ntags, 2);
    for (size_t i = 0; i < e->ntags; i++) {
        size_t l = strlen(e->tags[i]);
        put_u(&b, l, 2);
        put(&b, e->tags[i], l);
    }
    const dc_body_t *body = &e->body->body;
    put_u(&b, body->len, 8);
    for (size_t i = 0; i < body->nchunks; i++)
        put(&b, body->chunks[i].data, body->chunks[i].len);
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)b.p, (uInt)b.len);
    put_u(&b, crc, 4);
    *len = b.len;
    return b.p;
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, off;
    int bad;
} rbuf_t;

static uint64_t get_u(rbuf_t *r, int bytes)
{
    if (r->bad || r->len - r->off < (size_t)bytes) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
    r->off += (size_t)bytes;
    return v;
}

static const char *get_bytes(rbuf_t *r, uint64_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = 1;
        return NULL;
    }
    const char *p = (const char *)r->p + r->off;
    r->off += (size_t)n;
    return p;
}

#define MAX_HEADERS 512
#define MAX_TAGS 256

dc_cache_entry_t *dc_l2_decode(const char *key, size_t key_len, const char *buf, size_t len, int *err)
{
    *err = DC_EPROTO;
    if (len < 4 + 1 + 4 || memcmp(buf, "DCL2", 4) != 0)
        return NULL;
    uint32_t want = (uint32_t)crc32(0, (const Bytef *)buf, (uInt)(len - 4));
    rbuf_t tail = {(const unsigned char *)buf + len - 4, 4, 0, 0};
    if ((uint32_t)get_u(&tail, 4) != want)
        return NULL;
    rbuf_t r = {(const unsigned char *)buf, len - 4, 4, 0};
    if (get_u(&r, 1) != DC_L2_VERSION) {
        *err = DC_ERANGE;
        return NULL;
    }
    unsigned flags = (unsigned)get_u(&r, 1);
    int status = (int)get_u(&r, 2);
    uint64_t t[5];
    for (int i = 0; i < 5; i++)
        t[i] = get_u(&r, 8);
    uint32_t origin_age = (uint32_t)get_u(&r, 4);
    size_t etag_len = (size_t)get_u(&r, 1);
    const char *etag = get_bytes(&r, etag_len);
    size_t nh = (size_t)get_u(&r, 2);
    if (r.bad || nh > MAX_HEADERS || etag_len >= sizeof(((dc_cache_entry_t *)0)->etag))
        return NULL;
    dc_cache_hdr_t *hs = dc_calloc(nh ? nh : 1, sizeof(*hs));
    for (size_t i = 0; i < nh && !r.bad; i++) {
        hs[i].name_len = (size_t)get_u(&r, 2);
        hs[i].name = get_bytes(&r, hs[i].name_len);
        hs[i].value_len = (size_t)get_u(&r, 4);
        hs[i].value = get_bytes(&r, hs[i].value_len);
    }
    size_t nt = (size_t)get_u(&r, 2);
    char **tags = NULL;
    if (!r.bad && nt <= MAX_TAGS) {
        tags = dc_calloc(nt ? nt : 1, sizeof(char *));
        for (size_t i = 0; i < nt && !r.bad; i++) {
            size_t l = (size_t)get_u(&r, 2);
            const char *p = get_bytes(&r, l);
            tags[i] = p != NULL ? dc_strndup(p, l) : NULL;
        }
    } else {
        r.bad = 1;
    }
    uint64_t body_len = get_u(&r, 8);
    const char *body = get_bytes(&r, body_len);
    dc_cache_entry_t *e = NULL;
    if (!r.bad && r.off == r.len && status >= 100 && status < 600) {
        dc_body_t b;
        dc_body_init(&b, (size_t)body_len);
        dc_body_append(&b, body, (size_t)body_len);
        e = dc_cache_entry_create(key, key_len, status, hs, nh, (const char *const *)tags, nt,
                                  dc_shared_body_create(&b));
        memcpy(e->etag, etag, etag_len);
        e->etag[etag_len] = '\0';
        e->etag_len = etag_len;
        e->no_stale = flags & 1;
        e->negative = (flags & 2) != 0;
        e->compressible = (flags & 4) != 0;
        /* only the identity body travels: when the origin's tag named another representation
         * (its gzip bytes), no representation here is the origin's any more (all tags weak) */
        e->etag_enc = (flags & 8) != 0 ? 3 : 0;
        e->stored_at_ms = t[0];
        e->fresh_until_ms = t[1];
        e->swr_until_ms = t[2];
        e->sie_until_ms = t[3];
        e->keep_until_ms = t[4];
        e->origin_age_s = origin_age;
        *err = 0;
    }
    if (tags != NULL)
        for (size_t i = 0; i < nt; i++)
            free(tags[i]);
    free(tags);
    free(hs);
    return e;
}
