/*
 * Cache key normalisation: see key.h for the key's shape.
 *
 * Decisions the header leaves to the implementation, made here:
 *  - Parameters are split on raw '&' only (';' and "%26" are data). Empty segments are dropped.
 *  - "Byte order" is the order of the DECODED bytes (unsigned), for names, values and set items.
 *    Any total order of the decoded form keeps the output idempotent; this one lets already
 *    plain spans (no '%' or '+') compare with memcmp.
 *  - Names are matched against key_sets / ignore_params after decoding ("i%64s" is "ids"). A name
 *    in both lists is ignored. Duplicate plain parameters are kept ("a=1&a=1" stays), because an
 *    upstream may read repeated names as a list; only key_sets merge and de-duplicate.
 *  - A key_sets param present only without '=' ("ids") is written "ids"; with '=' in any
 *    occurrence and no non-empty item it is written "ids=" (absent, empty and non-empty differ).
 *  - Paths: raw unreserved, sub-delims, ':', '@' and '/' stay literal; escapes of unreserved bytes
 *    are decoded, other escapes keep upper-case hex (so "%2F" != "/" and "%3B" != ";"); every other
 *    raw byte (space, controls, non-ASCII, '?', '#', a malformed '%') is escaped. '+' is literal.
 *    Dot segments are not resolved: the key follows the bytes sent upstream.
 *  - dc_cache_key_build: trailing '/' of the route prefix are dropped (so "/" counts as empty and
 *    "/jup/" as "/jup"), an empty path is "/", a path not starting with '/' gets one; the method is
 *    copied verbatim (the caller passes a validated token), only "HEAD" becomes "GET".
 *  - On DC_ETOOBIG `out` holds an empty string (when cap > 0).
 *
 * Memory: spans (offset, length) into the caller's input, sorted in place in stack arrays; a heap
 * array (dc_malloc, aborts on failure) is used only past PARAMS_STACK params or ITEMS_STACK items.
 */
#include "cache/key.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum {
    PARAMS_STACK = 64,  /* typical quote: ~10 params */
    ITEMS_STACK = 128,  /* price v3: at most 50 ids; tokens search: up to 100 */
    INSERTION_MAX = 24, /* below this, insertion sort beats heapsort (and is O(n) on sorted input) */
    HEADS_MAX = 16,     /* distinct key sets in one query found without scanning all params */
};

/* Character classes: 1 = unreserved (RFC 3986), 2 = also literal in a path (sub-delims : @ /). */
static const uint8_t cclass[256] = {
    ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1, ['-'] = 1,  ['.'] = 1, ['_'] = 1, ['~'] = 1,
    ['!'] = 2,         ['$'] = 2,         ['&'] = 2,         ['\''] = 2, ['('] = 2, [')'] = 2, ['*'] = 2,
    ['+'] = 2,         [','] = 2,         [';'] = 2,         ['='] = 2,  [':'] = 2, ['@'] = 2, ['/'] = 2,
};
/* Hex digit value + 1; 0 = not a hex digit (so the rest of the table needs no initialiser). */
static const uint8_t hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};
static const char hexdig[] = "0123456789ABCDEF";

/* Is p[0..n) a valid "%hh" escape? Stores the byte. */
static inline bool escape_at(const char *p, size_t n, unsigned *b)
{
    unsigned hi, lo;
    if (n < 3 || p[0] != '%' || (hi = hex1[(unsigned char)p[1]]) == 0 || (lo = hex1[(unsigned char)p[2]]) == 0)
        return false;
    *b = (hi - 1) << 4 | (lo - 1);
    return true;
}

/* Output cursor. Bytes past `cap` are counted, not written; finish() turns that into DC_ETOOBIG. */
typedef struct wr {
    char *buf;
    size_t cap, len;
} wr_t;

static inline void put(wr_t *w, char c)
{
    if (w->len < w->cap)
        w->buf[w->len] = c;
    w->len++;
}

static inline void put_enc(wr_t *w, unsigned char b)
{
    if (cclass[b] == 1) {
        put(w, (char)b);
    } else {
        put(w, '%');
        put(w, hexdig[b >> 4]);
        put(w, hexdig[b & 15]);
    }
}

static long finish(wr_t *w)
{
    if (w->len >= w->cap) {
        if (w->cap > 0)
            w->buf[0] = '\0';
        return DC_ETOOBIG;
    }
    w->buf[w->len] = '\0';
    return (long)w->len;
}

/* One query token at p (n > 0): "%hh" (either case), '+' (space) or one literal byte (a '%' not
 * followed by two hex digits is literal). Stores the decoded byte, returns the bytes consumed. */
static inline size_t qtok(const char *p, size_t n, unsigned *b)
{
    unsigned char c = (unsigned char)p[0];
    if (c == '%' && escape_at(p, n, b))
        return 3;
    *b = c == '+' ? ' ' : c;
    return 1;
}

static inline void put_bytes(wr_t *w, const char *p, size_t n)
{
    if (w->len < w->cap)
        memcpy(w->buf + w->len, p, n < w->cap - w->len ? n : w->cap - w->len);
    w->len += n;
}

/* Decode a raw query span and write it canonically encoded. A `plain` span (all unreserved, see
 * classify()) is its own canonical form; elsewhere runs of unreserved bytes are copied at once. */
static void put_recoded(wr_t *w, const char *p, size_t n, bool plain)
{
    if (plain) {
        put_bytes(w, p, n);
        return;
    }
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && cclass[(unsigned char)p[run]] == 1)
            run++;
        if (run > i) {
            put_bytes(w, p + i, run - i);
            i = run;
            continue;
        }
        unsigned b;
        i += qtok(p + i, n - i, &b);
        put_enc(w, (unsigned char)b);
    }
}

/* A byte string to compare in decoded form: raw query bytes (`esc`: may hold '%' or '+', so it
 * must be decoded) or already decoded bytes (an option name). */
typedef struct src {
    const char *p;
    size_t n;
    bool esc;
} src_t;

static int cmp_src(src_t a, src_t b)
{
    if (!a.esc && !b.esc) {
        int c = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
        return c != 0 ? c : (a.n > b.n) - (a.n < b.n);
    }
    size_t i = 0, j = 0;
    while (i < a.n && j < b.n) {
        unsigned x, y;
        if (a.esc)
            i += qtok(a.p + i, a.n - i, &x);
        else
            x = (unsigned char)a.p[i++];
        if (b.esc)
            j += qtok(b.p + j, b.n - j, &y);
        else
            y = (unsigned char)b.p[j++];
        if (x != y)
            return x < y ? -1 : 1;
    }
    return (i < a.n) - (j < b.n);
}

/* The first 8 decoded bytes, big-endian, zero-padded: comparing two of these orders the strings
 * like a full comparison does whenever they differ (a zero pad sorts like "shorter"). */
static uint64_t prefix8(src_t s)
{
    uint64_t v = 0;
    unsigned k = 0;
    if (!s.esc && s.n >= 8) { /* compilers turn this into one big-endian load */
        const unsigned char *u = (const unsigned char *)s.p;
        return (uint64_t)u[0] << 56 | (uint64_t)u[1] << 48 | (uint64_t)u[2] << 40 | (uint64_t)u[3] << 32 |
               (uint64_t)u[4] << 24 | (uint64_t)u[5] << 16 | (uint64_t)u[6] << 8 | u[7];
    }
    for (size_t i = 0; k < 8 && i < s.n; k++) {
        unsigned b;
        if (s.esc)
            i += qtok(s.p + i, s.n - i, &b);
        else
            b = (unsigned char)s.p[i++];
        v = v << 8 | b;
    }
    return k == 0 ? 0 : v << (8 * (8 - k));
}

/* Does the raw span need decoding (holds '%' or '+')? *plain: is it all unreserved bytes, so
 * that it is its own canonical form? */
static bool classify(const char *p, size_t n, bool *plain)
{
    size_t i = 0;
    while (i < n && cclass[(unsigned char)p[i]] == 1)
        i++;
    *plain = i == n;
    return i < n && (memchr(p + i, '%', n - i) != NULL || memchr(p + i, '+', n - i) != NULL);
}

/* Does the raw name decode to exactly the C string s? */
static bool name_is(src_t name, const char *s)
{
    if (!name.esc && (name.n == 0 ? s[0] != '\0' : name.p[0] != s[0]))
        return false; /* the common miss, without strlen() */
    size_t sl = strlen(s);
    if (!name.esc)
        return name.n == sl && memcmp(name.p, s, sl) == 0;
    return cmp_src(name, (src_t){s, sl, false}) == 0;
}

/*
 * A parameter (set < 0: raw name and value spans) or a merged key set (set = index in key_sets;
 * after the items are sorted, voff/vlen are its first item and item count). An item of a key set:
 * off/len is its raw span, set its key set.
 */
typedef struct span {
    size_t off, len, voff, vlen;
    uint64_t pfx; /* prefix8() of the decoded name or item */
    long set;
    bool has_eq, nesc, vesc, nplain, vplain; /* see classify() */
} span_t;

typedef struct vec {
    span_t *v;
    size_t n, cap;
    bool heap;
} vec_t;

static span_t *vec_push(vec_t *a)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap * 2;
        if (a->heap) {
            a->v = dc_realloc(a->v, ncap * sizeof(span_t));
        } else {
            span_t *h = dc_malloc(ncap * sizeof(span_t));
            memcpy(h, a->v, a->n * sizeof(span_t));
            a->v = h;
            a->heap = true;
        }
        a->cap = ncap;
    }
    return &a->v[a->n++];
}

typedef struct ctx {
    const char *q;
    const dc_cache_key_opts_t *opts;
} ctx_t;

static src_t name_src(const ctx_t *c, const span_t *s)
{
    if (s->set >= 0) {
        const char *n = c->opts->key_sets[s->set];
        return (src_t){n, strlen(n), false};
    }
    return (src_t){c->q + s->off, s->len, s->nesc};
}

/* Params: by name, then without '=' before with, then by value. */
static int cmp_param(const ctx_t *c, const span_t *a, const span_t *b)
{
    if (a->pfx != b->pfx)
        return a->pfx < b->pfx ? -1 : 1;
    int r = cmp_src(name_src(c, a), name_src(c, b));
    if (r != 0)
        return r;
    if (a->set != b->set) /* cannot happen (one entry per set name), keeps the order total */
        return a->set < b->set ? -1 : 1;
    if (a->has_eq != b->has_eq)
        return a->has_eq ? 1 : -1;
    if (a->set >= 0)
        return 0;
    return cmp_src((src_t){c->q + a->voff, a->vlen, a->vesc}, (src_t){c->q + b->voff, b->vlen, b->vesc});
}

/* Items: by key set, then by decoded bytes. */
static int cmp_item(const ctx_t *c, const span_t *a, const span_t *b)
{
    if (a->set != b->set)
        return a->set < b->set ? -1 : 1;
    if (a->pfx != b->pfx)
        return a->pfx < b->pfx ? -1 : 1;
    return cmp_src((src_t){c->q + a->off, a->len, a->nesc}, (src_t){c->q + b->off, b->len, b->nesc});
}

typedef int (*cmp_fn)(const ctx_t *, const span_t *, const span_t *);

static void sift_down(const ctx_t *c, span_t *v, size_t root, size_t n, cmp_fn cmp)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && cmp(c, &v[child], &v[child + 1]) < 0)
            child++;
        if (cmp(c, &v[root], &v[child]) >= 0)
            return;
        span_t t = v[root];
        v[root] = v[child];
        v[child] = t;
        root = child;
    }
}

/* In place, no allocation, O(n log n) worst case: a query is attacker-controlled, so no quicksort.
 * Not stable, which is fine: elements that compare equal have the same decoded bytes. */
static void sort_spans(const ctx_t *c, span_t *v, size_t n, cmp_fn cmp)
{
    if (n <= INSERTION_MAX) {
        for (size_t i = 1; i < n; i++) {
            span_t t = v[i];
            size_t j = i;
            for (; j > 0 && cmp(c, &v[j - 1], &t) > 0; j--)
                v[j] = v[j - 1];
            v[j] = t;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        sift_down(c, v, i, n, cmp);
    for (size_t end = n - 1; end > 0; end--) {
        span_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(c, v, 0, end, cmp);
    }
}

/* Split a key set's raw value into items on ',' and "%2C"/"%2c", token-aligned (so "%252C" is the
 * item "%2C", not a separator). Empty items are kept here and skipped when written. */
static void split_items(vec_t *items, const char *q, size_t off, size_t n, long set)
{
    size_t start = off, end = off + n;
    bool esc = false, plain = true;
    for (size_t i = off; i <= end;) {
        while (i < end && cclass[(unsigned char)q[i]] == 1) /* not ',', '%' or '+' */
            i++;
        size_t sep = 0;
        unsigned b;
        if (i == end || q[i] == ',') {
            sep = 1;
        } else if (q[i] == '%' && escape_at(q + i, end - i, &b)) {
            if (b == ',') {
                sep = 3;
            } else {
                esc = true;
                plain = false;
                i += 3;
            }
        } else {
            esc |= q[i] == '%' || q[i] == '+';
            plain = false;
            i++;
        }
        if (sep != 0) {
            span_t *it = vec_push(items);
            *it = (span_t){.off = start, .len = i - start, .set = set, .nesc = esc, .nplain = plain};
            it->pfx = prefix8((src_t){q + start, i - start, esc});
            i += sep;
            start = i;
            esc = false;
            plain = true;
        }
    }
}

static long find_opt(src_t name, char *const *list, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (name_is(name, list[k]))
            return (long)k;
    return -1;
}

static void put_param(wr_t *w, const ctx_t *c, const span_t *p, const span_t *items)
{
    if (p->set >= 0) {
        for (const char *s = c->opts->key_sets[p->set]; *s != '\0'; s++)
            put_enc(w, (unsigned char)*s);
    } else {
        put_recoded(w, c->q + p->off, p->len, p->nplain);
    }
    if (!p->has_eq)
        return;
    put(w, '=');
    if (p->set < 0) {
        put_recoded(w, c->q + p->voff, p->vlen, p->vplain);
        return;
    }
    const span_t *prev = NULL;
    for (size_t i = p->voff; i < p->voff + p->vlen; i++) {
        const span_t *it = &items[i];
        if (it->len == 0 || (prev != NULL && cmp_item(c, prev, it) == 0))
            continue; /* empty item or duplicate */
        if (prev != NULL)
            put(w, ',');
        put_recoded(w, c->q + it->off, it->len, it->nplain);
        prev = it;
    }
}

/* One raw query parameter: bytes [seg, end) of the query, the name up to nend, '=' at nend when
 * has_eq. */
typedef struct qparam {
    size_t seg, nend, end;
    bool has_eq;
} qparam_t;

/* The next non-empty parameter at or after *pos (parameters are split on raw '&' only); false at
 * the end of the query. Start with *pos = 0. */
static bool next_param(const char *q, size_t qlen, size_t *pos, qparam_t *p)
{
    while (*pos < qlen) {
        const char *amp = memchr(q + *pos, '&', qlen - *pos);
        size_t end = amp != NULL ? (size_t)(amp - q) : qlen, seg = *pos;
        *pos = end + 1;
        if (end == seg)
            continue;
        const char *eq = memchr(q + seg, '=', end - seg);
        *p = (qparam_t){.seg = seg, .nend = eq != NULL ? (size_t)(eq - q) : end, .end = end, .has_eq = eq != NULL};
        return true;
    }
    return false;
}

static void norm_query(wr_t *w, const char *q, size_t qlen, const dc_cache_key_opts_t *opts)
{
    static const dc_cache_key_opts_t no_opts;
    span_t pstack[PARAMS_STACK], istack[ITEMS_STACK];
    vec_t params = {pstack, 0, PARAMS_STACK, false}, items = {istack, 0, ITEMS_STACK, false};
    ctx_t c = {q, opts != NULL ? opts : &no_opts};
    size_t heads[HEADS_MAX], nheads = 0; /* indexes in params of the key set heads */

    qparam_t qp;
    for (size_t pos = 0; next_param(q, qlen, &pos, &qp);) {
        size_t seg = qp.seg, nend = qp.nend, end = qp.end;
        const char *eq = qp.has_eq ? q + nend : NULL;
        bool nplain, vplain = true;
        src_t name = {q + seg, nend - seg, classify(q + seg, nend - seg, &nplain)};
        if (find_opt(name, c.opts->ignore_params, c.opts->nignore_params) >= 0)
            continue;
        long set = find_opt(name, c.opts->key_sets, c.opts->nkey_sets);
        if (set < 0) {
            span_t *p = vec_push(&params);
            size_t vlen = eq != NULL ? end - nend - 1 : 0;
            bool vesc = eq != NULL && classify(q + nend + 1, vlen, &vplain);
            *p = (span_t){.off = seg,
                          .len = nend - seg,
                          .voff = nend + 1,
                          .vlen = vlen,
                          .set = -1,
                          .has_eq = eq != NULL,
                          .nesc = name.esc,
                          .vesc = vesc,
                          .nplain = nplain,
                          .vplain = vplain,
                          .pfx = prefix8(name)};
            continue;
        }
        /* one head per key set present: look among the heads only, so that many occurrences among
         * many params stay linear (the number of key sets is small and comes from the config) */
        span_t *head = NULL;
        for (size_t k = 0; k < nheads && head == NULL; k++)
            if (params.v[heads[k]].set == set)
                head = &params.v[heads[k]];
        for (size_t k = 0; k < params.n && head == NULL && nheads == HEADS_MAX; k++)
            if (params.v[k].set == set)
                head = &params.v[k];
        if (head == NULL) {
            if (nheads < HEADS_MAX)
                heads[nheads++] = params.n;
            head = vec_push(&params);
            *head = (span_t){.set = set, .pfx = prefix8(name)}; /* name decodes to key_sets[set] */
        }
        head->has_eq |= eq != NULL;
        if (eq != NULL)
            split_items(&items, q, nend + 1, end - nend - 1, set);
    }

    sort_spans(&c, items.v, items.n, cmp_item);
    for (size_t i = 0; i < items.n;) { /* give each key set its run of items */
        size_t j = i;
        while (j < items.n && items.v[j].set == items.v[i].set)
            j++;
        for (size_t k = 0; k < params.n; k++) {
            if (params.v[k].set == items.v[i].set) {
                params.v[k].voff = i;
                params.v[k].vlen = j - i;
            }
        }
        i = j;
    }
    sort_spans(&c, params.v, params.n, cmp_param);
    for (size_t k = 0; k < params.n; k++) {
        if (k > 0)
            put(w, '&');
        put_param(w, &c, &params.v[k], items.v);
    }
    if (params.heap)
        free(params.v);
    if (items.heap)
        free(items.v);
}

long dc_cache_query_normalize(const char *q, size_t qlen, const dc_cache_key_opts_t *opts, char *out, size_t cap)
{
    wr_t w = {out, cap, 0};
    if (qlen > 0)
        norm_query(&w, q, qlen, opts);
    return finish(&w);
}

static void norm_path(wr_t *w, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)p[i];
        unsigned e;
        if (b == '%' && escape_at(p + i, n - i, &e)) {
            put_enc(w, (unsigned char)e);
            i += 3;
            continue;
        }
        if (cclass[b] != 0)
            put(w, (char)b);
        else
            put_enc(w, b);
        i++;
    }
}

long dc_cache_path_normalize(const char *p, size_t plen, char *out, size_t cap)
{
    wr_t w = {out, cap, 0};
    if (plen > 0)
        norm_path(&w, p, plen);
    return finish(&w);
}

long dc_cache_key_build(const char *method, size_t mlen, const char *route_prefix, const char *pq, size_t pqlen,
                        const dc_cache_key_opts_t *opts, char *out, size_t cap)
{
    wr_t w = {out, cap, 0};
    if (mlen == 4 && memcmp(method, "HEAD", 4) == 0)
        method = "GET", mlen = 3;
    for (size_t i = 0; i < mlen; i++)
        put(&w, method[i]);
    put(&w, ' ');

    size_t plen = route_prefix != NULL ? strlen(route_prefix) : 0;
    while (plen > 0 && route_prefix[plen - 1] == '/')
        plen--;
    if (plen > 0)
        norm_path(&w, route_prefix, plen);

    const char *qm = pqlen > 0 ? memchr(pq, '?', pqlen) : NULL;
    size_t pathlen = qm != NULL ? (size_t)(qm - pq) : pqlen;
    if (pathlen == 0 || pq[0] != '/')
        put(&w, '/');
    if (pathlen > 0)
        norm_path(&w, pq, pathlen);

    if (qm != NULL) {
        size_t mark = w.len;
        put(&w, '?');
        norm_query(&w, qm + 1, pqlen - pathlen - 1, opts);
        if (w.len == mark + 1) /* nothing left after normalisation: no '?' */
            w.len = mark;
    }
    return finish(&w);
}

static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t mul3_sat(size_t a)
{
    return a > SIZE_MAX / 3 ? SIZE_MAX : 3 * a;
}

size_t dc_cache_key_bound(size_t mlen, size_t prefix_len, size_t pqlen)
{
    /* method + ' ' + every prefix and pq byte at most tripled ('?' and separators are not) + a '/'
     * put before an empty or relative path + the NUL */
    return add_sat(add_sat(add_sat(mlen, 3), mul3_sat(prefix_len)), mul3_sat(pqlen));
}

/* Does the parameter's name decode to `name`? */
static bool param_is(const char *q, const qparam_t *p, const char *name)
{
    bool plain;
    size_t nlen = p->nend - p->seg;
    return name_is((src_t){q + p->seg, nlen, classify(q + p->seg, nlen, &plain)}, name);
}

long dc_cache_query_param(const char *q, size_t qlen, const char *name, char *out, size_t cap)
{
    DC_ASSERT(name != NULL);
    qparam_t qp;
    for (size_t pos = 0; next_param(q, qlen, &pos, &qp);) {
        if (!param_is(q, &qp, name))
            continue;
        wr_t w = {out, cap, 0};
        for (size_t j = qp.nend + 1; j < qp.end;) {
            unsigned b;
            j += qtok(q + j, qp.end - j, &b);
            put(&w, (char)b);
        }
        return finish(&w);
    }
    return -1;
}

bool dc_cache_query_only(const char *q, size_t qlen, const char *name)
{
    DC_ASSERT(name != NULL);
    qparam_t qp;
    for (size_t pos = 0; next_param(q, qlen, &pos, &qp);)
        if (!param_is(q, &qp, name))
            return false;
    return true;
}

size_t dc_cache_key_header_bound(size_t nlen, size_t vlen)
{
    return nlen + 2 + 3 * vlen;
}

size_t dc_cache_key_add_header(char *out, size_t cap, const char *name, size_t nlen, const char *value, size_t vlen)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cap < dc_cache_key_header_bound(nlen, vlen))
        return 0;
    size_t o = 0;
    out[o++] = ' ';
    memcpy(out + o, name, nlen);
    o += nlen;
    out[o++] = ':';
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c <= 0x20 || c >= 0x7f || c == '%') {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}
