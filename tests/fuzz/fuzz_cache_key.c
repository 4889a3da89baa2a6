/* libFuzzer target for cache/key.c. Input: one option byte, then the raw query (also used as the
 * path and as the path-and-query of a whole key). Checks what key.h promises:
 *  - the canonical query fits in 3 * qlen + 1 and uses only the canonical alphabet;
 *  - normalising it again gives the same bytes; the order of '&' segments does not matter;
 *  - a buffer one byte short gives DC_ETOOBIG; build() fits in bound() and agrees with normalize();
 *  - HEAD and GET give the same key.
 * Every buffer is an exact-size heap block so that ASan sees a read or write one byte past it.
 * Option byte: bit 0 "ids" and bit 1 "dexes" are key_sets, bit 2 ignores "x", bit 3 also ignores
 * "ids" (ignore wins), bits 4-5 pick the method, bits 6-7 the route prefix. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/key.h"
#include "core/error.h"

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        if (!(x))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static bool is_uhex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* Every byte is in `extra`, unreserved, or starts an upper-case escape of a byte that must be
 * escaped (an escaped unreserved byte would not be canonical). */
static bool canonical_alphabet(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (c != '\0' && strchr(extra, c) != NULL))
            continue;
        if (c != '%' || n - i < 3 || !is_uhex((unsigned char)s[i + 1]) || !is_uhex((unsigned char)s[i + 2]))
            return false;
        unsigned v = (unsigned)strtoul((char[]){s[i + 1], s[i + 2], '\0'}, NULL, 16);
        if (is_unreserved((unsigned char)v))
            return false;
        i += 2;
    }
    return true;
}

/* Normalise into an exact-size buffer of 3 * n + 1 bytes; returns it (caller frees), *len set. */
static char *normalize(const char *q, size_t n, const dc_cache_key_opts_t *o, long *len)
{
    size_t cap = 3 * n + 1;
    char *out = malloc(cap);
    *len = dc_cache_query_normalize(q, n, o, out, cap);
    CHECK(*len >= 0 && (size_t)*len <= 3 * n && out[*len] == '\0');
    return out;
}

/* q with its '&'-separated segments in reverse order. */
static char *reverse_segments(const char *q, size_t n)
{
    char *r = malloc(n ? n : 1);
    size_t w = 0, end = n;
    for (;;) {
        size_t start = end;
        while (start > 0 && q[start - 1] != '&')
            start--;
        memcpy(r + w, q + start, end - start);
        w += end - start;
        if (start == 0)
            break;
        r[w++] = '&';
        end = start - 1;
    }
    CHECK(w == n);
    return r;
}

static void check_query(const char *q, size_t n, const dc_cache_key_opts_t *o)
{
    long len, len2, len3;
    char *out = normalize(q, n, o, &len);
    CHECK(canonical_alphabet(out, (size_t)len, o->nkey_sets > 0 ? "&=," : "&="));
    char *again = normalize(out, (size_t)len, o, &len2);
    CHECK(len2 == len && memcmp(again, out, (size_t)len) == 0);
    char *rev = reverse_segments(q, n);
    char *rout = normalize(rev, n, o, &len3);
    CHECK(len3 == len && memcmp(rout, out, (size_t)len) == 0);
    char *small = malloc((size_t)len); /* one byte short: no room for the NUL */
    CHECK(dc_cache_query_normalize(q, n, o, small, (size_t)len) == DC_ETOOBIG);
    free(small);
    free(rout);
    free(rev);
    free(again);
    free(out);
}

static void check_path(const char *p, size_t n)
{
    size_t cap = 3 * n + 1;
    char *out = malloc(cap), *again = malloc(cap);
    long len = dc_cache_path_normalize(p, n, out, cap);
    CHECK(len >= 0 && (size_t)len <= 3 * n);
    CHECK(canonical_alphabet(out, (size_t)len, "/!$&'()*+,;=:@"));
    CHECK(dc_cache_path_normalize(out, (size_t)len, again, cap) == len && memcmp(again, out, (size_t)len) == 0);
    free(again);
    free(out);
}

/* Build the key into an exact-size buffer of bound() bytes; returns it (caller frees). */
static char *build(const char *m, const char *prefix, const char *pq, size_t n, const dc_cache_key_opts_t *o, long *len)
{
    size_t bound = dc_cache_key_bound(strlen(m), strlen(prefix), n);
    char *out = malloc(bound);
    *len = dc_cache_key_build(m, strlen(m), prefix, pq, n, o, out, bound);
    CHECK(*len >= 0 && (size_t)*len < bound && out[*len] == '\0');
    return out;
}

static void check_key(const char *m, const char *prefix, const char *pq, size_t n, const dc_cache_key_opts_t *o)
{
    long len, hlen, qlen;
    char *key = build(m, prefix, pq, n, o, &len);
    char *small = malloc((size_t)len);
    CHECK(dc_cache_key_build(m, strlen(m), prefix, pq, n, o, small, (size_t)len) == DC_ETOOBIG);
    free(small);
    if (strcmp(m, "GET") == 0) {
        char *head = build("HEAD", prefix, pq, n, o, &hlen);
        CHECK(hlen == len && memcmp(head, key, (size_t)len) == 0);
        free(head);
    }
    /* the key's path never holds a raw '?', so its first '?' starts normalize()'s output */
    const char *kq = memchr(key, '?', (size_t)len), *pqq = memchr(pq, '?', n);
    if (kq != NULL || pqq != NULL) {
        CHECK(pqq != NULL);
        char *nq = normalize(pqq + 1, n - (size_t)(pqq + 1 - pq), o, &qlen);
        if (qlen == 0)
            CHECK(kq == NULL);
        else
            CHECK(kq != NULL && (size_t)(len - (kq + 1 - key)) == (size_t)qlen &&
                  memcmp(kq + 1, nq, (size_t)qlen) == 0);
        free(nq);
    }
    free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", ""};
    static const char *const prefixes[] = {"", "/", "/jup", "/jup/"};
    if (size < 1)
        return 0;
    unsigned bits = data[0];
    size_t n = size - 1;
    char *q = malloc(n ? n : 1); /* exact size: ASan sees any overread */
    memcpy(q, data + 1, n);

    char *sets[2], *ignore[2];
    size_t nsets = 0, nignore = 0;
    if (bits & 1)
        sets[nsets++] = "ids";
    if (bits & 2)
        sets[nsets++] = "dexes";
    if (bits & 4)
        ignore[nignore++] = "x";
    if (bits & 8)
        ignore[nignore++] = "ids";
    const dc_cache_key_opts_t o = {sets, nsets, ignore, nignore};

    check_query(q, n, &o);
    check_path(q, n);
    check_key(methods[(bits >> 4) & 3], prefixes[bits >> 6], q, n, &o);

    char *val = malloc(n + 1); /* a decoded value is never longer than the query */
    long v = dc_cache_query_param(q, n, "ids", val, n + 1);
    CHECK(v == -1 || (v >= 0 && (size_t)v <= n && val[v] == '\0'));
    /* a query made only of "ids" parameters has an "ids" value (unless every one of them is bare) */
    if (dc_cache_query_only(q, n, "ids") && memchr(q, '=', n) != NULL && v == -1)
        CHECK(0);
    free(val);
    free(q);
    return 0;
}
