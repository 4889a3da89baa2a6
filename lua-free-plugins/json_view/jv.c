/* json_view's core (jv.h): scanner, config, query parser, index, answers. */
#define _GNU_SOURCE /* qsort_r */
#include "jv.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD ((size_t)-1)

/* ---- scanner ---- */

static size_t ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] == '"': the index just past the closing quote, or BAD. */
static size_t str_end(const char *s, size_t n, size_t i)
{
    size_t from = i + 1;
    for (;;) {
        if (from >= n)
            return BAD;
        const char *q = memchr(s + from, '"', n - from);
        if (q == NULL)
            return BAD;
        size_t at = (size_t)(q - s), bs = 0;
        while (at - bs > i + 1 && s[at - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0)
            return at + 1;
        from = at + 1; /* an escaped quote */
    }
}

/* The index just past the value starting at s[i], or BAD. Nested values are skipped by matching
 * brackets (strings excepted; at most JV_MAX_DEPTH deep), never parsed. */
static size_t skip_value(const char *s, size_t n, size_t i)
{
    if (i >= n)
        return BAD;
    char c = s[i];
    if (c == '"')
        return str_end(s, n, i);
    if (c == '{' || c == '[') {
        char open[JV_MAX_DEPTH];
        size_t depth = 0;
        while (i < n) {
            c = s[i];
            if (c == '"') {
                if ((i = str_end(s, n, i)) == BAD)
                    return BAD;
                continue;
            }
            if (c == '{' || c == '[') {
                if (depth == JV_MAX_DEPTH)
                    return BAD;
                open[depth++] = c;
            } else if (c == '}' || c == ']') {
                if (open[depth - 1] != (c == '}' ? '{' : '['))
                    return BAD;
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return BAD;
    }
    if (!((c >= '0' && c <= '9') || c == '-' || c == 't' || c == 'f' || c == 'n'))
        return BAD;
    size_t start = i;
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' &&
           s[i] != '\r' && s[i] != '"' && s[i] != '{' && s[i] != '[' && s[i] != ':')
        i++;
    return i > start ? i : BAD;
}

/* The fields of the object at s[*pi] == '{': *pi ends past its '}'. 0, -1 on bad input (*pi at
 * the problem), or the callback's non-zero return. */
static int scan_object(const char *s, size_t n, size_t *pi, const jv_scan_ops_t *ops, void *ud)
{
    size_t i = ws(s, n, *pi + 1);
    if (i < n && s[i] == '}') {
        *pi = i + 1;
        return 0;
    }
    for (;;) {
        if (i >= n || s[i] != '"')
            goto bad;
        size_t ke = str_end(s, n, i);
        if (ke == BAD)
            goto bad;
        size_t ks = i + 1;
        i = ws(s, n, ke);
        if (i >= n || s[i] != ':')
            goto bad;
        i = ws(s, n, i + 1);
        size_t vs = i, ve = skip_value(s, n, i);
        if (ve == BAD)
            goto bad;
        if (ops != NULL && ops->field != NULL) {
            int rc = ops->field(ud, s + ks, ke - 1 - ks, s + vs, ve - vs);
            if (rc != 0)
                return rc;
        }
        i = ws(s, n, ve);
        if (i < n && s[i] == ',') {
            i = ws(s, n, i + 1);
            continue;
        }
        if (i < n && s[i] == '}') {
            *pi = i + 1;
            return 0;
        }
        goto bad;
    }
bad:
    *pi = i;
    return -1;
}

long jv_scan_array(const char *s, size_t n, const jv_scan_ops_t *ops, void *ud, size_t *err_at)
{
    size_t i = ws(s, n, 0);
    long count = 0;
    if (i >= n || s[i] != '[')
        goto bad;
    i = ws(s, n, i + 1);
    if (i < n && s[i] == ']') {
        i = ws(s, n, i + 1);
        if (i != n)
            goto bad;
        return 0;
    }
    for (;;) {
        size_t start = i;
        if (i < n && s[i] == '{') {
            int rc = scan_object(s, n, &i, ops, ud);
            if (rc == -1)
                goto bad;
            if (rc != 0)
                return rc < 0 ? rc - 1 : -2;
        } else {
            size_t e = skip_value(s, n, i);
            if (e == BAD)
                goto bad;
            i = e;
        }
        if (ops != NULL && ops->member != NULL) {
            int rc = ops->member(ud, start, i);
            if (rc != 0)
                return rc < 0 ? rc - 1 : -2;
        }
        count++;
        i = ws(s, n, i);
        if (i < n && s[i] == ',') {
            i = ws(s, n, i + 1);
            continue;
        }
        if (i < n && s[i] == ']') {
            i = ws(s, n, i + 1);
            if (i != n)
                goto bad;
            return count;
        }
        goto bad;
    }
bad:
    if (err_at != NULL)
        *err_at = i;
    return -1;
}

bool jv_number(const char *val, size_t vlen, double *out)
{
    if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
        val++;
        vlen -= 2;
    }
    if (vlen == 0 || vlen > 63)
        return false;
    char buf[64];
    for (size_t i = 0; i < vlen; i++) {
        char c = val[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'))
            return false;
        buf[i] = c;
    }
    buf[vlen] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (end != buf + vlen || !isfinite(d))
        return false;
    *out = d;
    return true;
}

/* ---- config ---- */

static bool good_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

int jv_conf_field(jv_conf_t *c, const char *name)
{
    for (unsigned i = 0; i < c->nfields; i++)
        if (strcmp(c->fields[i], name) == 0)
            return (int)i;
    if (c->nfields == JV_MAX_FIELDS || !good_name(name, strlen(name)))
        return -1;
    c->fields[c->nfields] = strdup(name);
    if (c->fields[c->nfields] == NULL)
        return -1;
    return (int)c->nfields++;
}

void jv_conf_free(jv_conf_t *c)
{
    for (unsigned i = 0; i < c->nfields; i++)
        free(c->fields[i]);
    for (unsigned i = 0; i < c->nmatch; i++)
        free(c->match[i].qname);
    for (unsigned i = 0; i < c->nproject; i++)
        free(c->project[i]);
    free(c->project);
    memset(c, 0, sizeof(*c));
}

/* ---- query ---- */

static int hexv(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static size_t decode(char *out, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            out[o++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool parse_uint(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > 0x7fffffff)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int field_named(const jv_conf_t *c, const char *name, size_t n)
{
    for (unsigned i = 0; i < c->nfields; i++)
        if (strlen(c->fields[i]) == n && memcmp(c->fields[i], name, n) == 0)
            return (int)i;
    return -1;
}

int jv_query_parse(const jv_conf_t *c, const char *qs, size_t len, jv_query_t *q, char *err, size_t errlen)
{
    memset(q, 0, sizeof(*q));
    q->sort_field = -1;
    q->limit = c->default_limit;
    q->buf = malloc(len + 1);
    if (q->buf == NULL)
        return fail(err, errlen, "out of memory");
    char *bp = q->buf;
    bool seen_limit = false, seen_offset = false, seen_sort = false, seen_fields = false;
    bool seen_match[JV_MAX_MATCH] = {0}, seen_min[JV_MAX_FIELDS] = {0}, seen_max[JV_MAX_FIELDS] = {0};
    const char *p = qs, *end = qs + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq != NULL ? eq : pe;
        if (pe == p) {
            p = pe + 1;
            continue;
        }
        char key[72];
        size_t kl = (size_t)(ke - p) < 64 ? decode(key, p, (size_t)(ke - p)) : (memcpy(key, p, 64), key[64] = 0, 64);
        char *v = bp;
        size_t vl = eq != NULL ? decode(v, eq + 1, (size_t)(pe - eq - 1)) : (v[0] = '\0', 0);
        bp += vl + 1;
        p = pe + 1;
        if (strcmp(key, "limit") == 0) {
            if (seen_limit)
                return fail(err, errlen, "%s: given twice", "limit");
            seen_limit = true;
            if (!parse_uint(v, vl, &q->limit))
                return fail(err, errlen, "%s: not a whole number", "limit");
            if (q->limit > c->max_limit)
                return fail(err, errlen, "limit: at most %lu", (unsigned long)c->max_limit);
        } else if (strcmp(key, "offset") == 0) {
            if (seen_offset)
                return fail(err, errlen, "%s: given twice", "offset");
            seen_offset = true;
            if (!parse_uint(v, vl, &q->offset))
                return fail(err, errlen, "%s: not a whole number", "offset");
        } else if (strcmp(key, "sort") == 0) {
            if (seen_sort)
                return fail(err, errlen, "%s: given twice", "sort");
            seen_sort = true;
            const char *name = v;
            size_t nl = vl;
            if (nl > 0 && (name[0] == '-' || name[0] == ' ')) { /* " " is a '+' as sent */
                q->sort_desc = name[0] == '-';
                name++, nl--;
            }
            int f = field_named(c, name, nl);
            if (f < 0 || !c->is_sort[f])
                return fail(err, errlen, "sort: unknown field %s", name);
            q->sort_field = f;
        } else if (strcmp(key, "fields") == 0) {
            if (seen_fields)
                return fail(err, errlen, "%s: given twice", "fields");
            seen_fields = true;
            for (char *s = v, *ve = v + vl; s <= ve;) {
                char *comma = memchr(s, ',', (size_t)(ve - s));
                char *se = comma != NULL ? comma : ve;
                *se = '\0';
                size_t sl = (size_t)(se - s);
                if (sl > 0) {
                    if (!good_name(s, sl))
                        return fail(err, errlen, "fields: bad field name %s", s);
                    bool allowed = c->project == NULL;
                    for (unsigned i = 0; i < c->nproject && !allowed; i++)
                        allowed = strcmp(c->project[i], s) == 0;
                    if (!allowed)
                        return fail(err, errlen, "fields: unknown field %s", s);
                    /* a name twice would make an object with a duplicate key (RFC 8259 4: its
                     * meaning is up to each parser): refused, never silently dropped */
                    for (unsigned i = 0; i < q->nproject; i++)
                        if (q->project_len[i] == sl && memcmp(q->project[i], s, sl) == 0)
                            return fail(err, errlen, "fields: %s given twice", s);
                    if (q->nproject == JV_MAX_PROJECT)
                        return fail(err, errlen, "fields: at most %d names", JV_MAX_PROJECT);
                    q->project[q->nproject] = s;
                    q->project_len[q->nproject++] = sl;
                }
                s = se + 1;
            }
            if (q->nproject == 0)
                return fail(err, errlen, "%s: empty", "fields");
        } else if ((strncmp(key, "min_", 4) == 0 || strncmp(key, "max_", 4) == 0) && kl > 4) {
            bool is_min = key[1] == 'i';
            int f = field_named(c, key + 4, kl - 4);
            if (f < 0 || (is_min ? !c->has_min[f] : !c->has_max[f]))
                return fail(err, errlen, "unknown parameter: %s", key);
            bool *seen = is_min ? seen_min : seen_max;
            if (seen[f])
                return fail(err, errlen, "%s: given twice", key);
            seen[f] = true;
            double d;
            if (v[0] == '"' || !jv_number(v, vl, &d))
                return fail(err, errlen, "%s: not a number", key);
            if (is_min) {
                q->min[f] = d;
                q->has_min[f] = true;
            } else {
                q->max[f] = d;
                q->has_max[f] = true;
            }
        } else {
            unsigned mi = 0;
            while (mi < c->nmatch && strcmp(c->match[mi].qname, key) != 0)
                mi++;
            if (mi == c->nmatch)
                return fail(err, errlen, "unknown parameter: %s", key);
            if (seen_match[mi])
                return fail(err, errlen, "%s: given twice", key);
            seen_match[mi] = true;
            unsigned k = q->nm++;
            q->m[k].match = mi;
            for (char *s = v, *ve = v + vl; s <= ve;) {
                char *comma = memchr(s, ',', (size_t)(ve - s));
                char *se = comma != NULL ? comma : ve;
                *se = '\0';
                if (se > s) {
                    if (q->m[k].nvals == JV_MAX_VALUES)
                        return fail(err, errlen, "%s: at most %d values", key, JV_MAX_VALUES);
                    q->m[k].vals[q->m[k].nvals] = s;
                    q->m[k].lens[q->m[k].nvals++] = (size_t)(se - s);
                }
                s = se + 1;
            }
            if (q->m[k].nvals == 0)
                return fail(err, errlen, "%s: no value", key);
        }
    }
    return 0;
}

void jv_query_free(jv_query_t *q)
{
    free(q->buf);
    q->buf = NULL;
}

/* ---- index ---- */

typedef struct posting {
    uint64_t h;
    uint32_t member;
    uint32_t vlen;
    uint32_t voff;
} posting_t;

typedef struct name_slot {
    const char *name; /* into the body; NULL = empty */
    uint32_t len;
    int field; /* index into conf->fields, or -1 */
} name_slot_t;

#define NAME_SLOTS 1024 /* distinct top-level key names remembered (for `fields=`) */

struct jv_index {
    const char *body;
    size_t len;
    uint32_t n, cap;
    uint32_t *off, *mlen; /* member spans */
    posting_t *post[JV_MAX_FIELDS];
    size_t npost[JV_MAX_FIELDS], cappost[JV_MAX_FIELDS];
    double *num[JV_MAX_FIELDS];
    uint32_t *order[JV_MAX_FIELDS];
    uint32_t nnum[JV_MAX_FIELDS]; /* members with a number in that field */
    name_slot_t names[NAME_SLOTS];
    uint32_t nnames;
    const jv_conf_t *conf;
    bool oom;
};

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* The name's slot (found or added; NULL when the table is full). */
static name_slot_t *name_slot(jv_index_t *ix, const char *k, size_t kl, bool add)
{
    uint64_t h = fnv(k, kl);
    for (size_t probe = 0; probe < NAME_SLOTS; probe++) {
        name_slot_t *s = &ix->names[(h + probe) & (NAME_SLOTS - 1)];
        if (s->name == NULL) {
            if (!add || ix->nnames >= NAME_SLOTS / 2)
                return NULL;
            s->name = k;
            s->len = (uint32_t)kl;
            s->field = field_named(ix->conf, k, kl);
            ix->nnames++;
            return s;
        }
        if (s->len == kl && memcmp(s->name, k, kl) == 0)
            return s;
    }
    return NULL;
}

static bool grow_members(jv_index_t *ix)
{
    uint32_t cap = ix->cap ? ix->cap * 2 : 1024;
    uint32_t *off = realloc(ix->off, cap * sizeof(uint32_t));
    if (off == NULL)
        return false;
    ix->off = off;
    uint32_t *ml = realloc(ix->mlen, cap * sizeof(uint32_t));
    if (ml == NULL)
        return false;
    ix->mlen = ml;
    for (unsigned f = 0; f < ix->conf->nfields; f++) {
        if (!ix->conf->is_num[f])
            continue;
        double *d = realloc(ix->num[f], cap * sizeof(double));
        if (d == NULL)
            return false;
        for (uint32_t i = ix->cap; i < cap; i++)
            d[i] = NAN;
        ix->num[f] = d;
    }
    ix->cap = cap;
    return true;
}

static int on_field(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    jv_index_t *ix = ud;
    if (ix->n >= ix->cap && !grow_members(ix)) {
        ix->oom = true;
        return -1;
    }
    name_slot_t *s = name_slot(ix, k, kl, true);
    if (s == NULL || s->field < 0)
        return 0;
    unsigned f = (unsigned)s->field;
    const jv_conf_t *c = ix->conf;
    if (c->is_num[f]) {
        double d;
        if (jv_number(v, vl, &d))
            ix->num[f][ix->n] = d;
    }
    if (c->is_match[f]) {
        if (vl >= 2 && v[0] == '"') { /* a string: its raw bytes between the quotes */
            v++;
            vl -= 2;
        } else if (vl > 0 && (v[0] == '{' || v[0] == '[')) {
            return 0; /* objects and arrays are never matched */
        }
        if (ix->npost[f] == ix->cappost[f]) {
            size_t cap = ix->cappost[f] ? ix->cappost[f] * 2 : 1024;
            posting_t *p = realloc(ix->post[f], cap * sizeof(posting_t));
            if (p == NULL) {
                ix->oom = true;
                return -1;
            }
            ix->post[f] = p;
            ix->cappost[f] = cap;
        }
        ix->post[f][ix->npost[f]++] = (posting_t){fnv(v, vl), ix->n, (uint32_t)vl, (uint32_t)(v - ix->body)};
    }
    return 0;
}

static int on_member(void *ud, size_t start, size_t end)
{
    jv_index_t *ix = ud;
    if (ix->n >= ix->cap && !grow_members(ix)) {
        ix->oom = true;
        return -1;
    }
    ix->off[ix->n] = (uint32_t)start;
    ix->mlen[ix->n] = (uint32_t)(end - start);
    ix->n++;
    return 0;
}

static int cmp_post(const void *a_, const void *b_)
{
    const posting_t *a = a_, *b = b_;
    if (a->h != b->h)
        return a->h < b->h ? -1 : 1;
    return a->member < b->member ? -1 : a->member > b->member;
}

/* Ascending by value, members without one last; ties in source order. */
static int cmp_num(const void *a_, const void *b_, void *arg)
{
    const double *d = arg;
    uint32_t a = *(const uint32_t *)a_, b = *(const uint32_t *)b_;
    bool na = isnan(d[a]), nb = isnan(d[b]);
    if (na != nb)
        return na ? 1 : -1;
    if (!na && d[a] != d[b])
        return d[a] < d[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

jv_index_t *jv_index_build(const jv_conf_t *c, const char *body, size_t len, char *err, size_t errlen)
{
    if (len >= UINT32_MAX) {
        fail(err, errlen, "source too large for an index (%zu bytes)", len);
        return NULL;
    }
    jv_index_t *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return NULL;
    ix->body = body;
    ix->len = len;
    ix->conf = c;
    jv_scan_ops_t ops = {on_field, on_member};
    size_t at = 0;
    long n = jv_scan_array(body, len, &ops, ix, &at);
    if (n < 0) {
        if (ix->oom)
            fail(err, errlen, "out of memory");
        else
            fail(err, errlen, "the source is not a JSON array (at byte %zu)", at);
        jv_index_free(ix);
        return NULL;
    }
    if (ix->n > 0 && ix->n < ix->cap) { /* no room left over: the index lives as long as the source */
        uint32_t *p = realloc(ix->off, ix->n * sizeof(uint32_t));
        ix->off = p != NULL ? p : ix->off;
        p = realloc(ix->mlen, ix->n * sizeof(uint32_t));
        ix->mlen = p != NULL ? p : ix->mlen;
        for (unsigned f = 0; f < c->nfields; f++) {
            double *d = ix->num[f] != NULL ? realloc(ix->num[f], ix->n * sizeof(double)) : NULL;
            ix->num[f] = d != NULL ? d : ix->num[f];
        }
        ix->cap = ix->n; /* a failed shrink keeps a larger block: never smaller than counted */
    }
    for (unsigned f = 0; f < c->nfields; f++) {
        if (ix->post[f] != NULL && ix->npost[f] > 0) { /* sorted, and no room left over */
            qsort(ix->post[f], ix->npost[f], sizeof(posting_t), cmp_post);
            posting_t *p = realloc(ix->post[f], ix->npost[f] * sizeof(posting_t));
            if (p != NULL) {
                ix->post[f] = p;
                ix->cappost[f] = ix->npost[f];
            }
        }
        if (c->is_sort[f] && ix->n > 0) {
            ix->order[f] = malloc(ix->n * sizeof(uint32_t));
            if (ix->order[f] == NULL) {
                jv_index_free(ix);
                return NULL;
            }
            for (uint32_t i = 0; i < ix->n; i++)
                ix->order[f][i] = i;
            qsort_r(ix->order[f], ix->n, sizeof(uint32_t), cmp_num, ix->num[f]);
        }
        if (c->is_num[f])
            for (uint32_t i = 0; i < ix->n; i++)
                ix->nnum[f] += !isnan(ix->num[f][i]);
    }
    return ix;
}

void jv_index_free(jv_index_t *ix)
{
    if (ix == NULL)
        return;
    free(ix->off);
    free(ix->mlen);
    for (unsigned f = 0; f < JV_MAX_FIELDS; f++) {
        free(ix->post[f]);
        free(ix->num[f]);
        free(ix->order[f]);
    }
    free(ix);
}

size_t jv_index_bytes(const jv_index_t *ix)
{
    size_t b = sizeof(*ix) + (size_t)ix->cap * 2 * sizeof(uint32_t);
    for (unsigned f = 0; f < JV_MAX_FIELDS; f++) {
        b += ix->cappost[f] * sizeof(posting_t);
        if (ix->num[f] != NULL)
            b += (size_t)ix->cap * sizeof(double);
        if (ix->order[f] != NULL)
            b += (size_t)ix->n * sizeof(uint32_t);
    }
    return b;
}

size_t jv_index_members(const jv_index_t *ix)
{
    return ix->n;
}

/* ---- answers ---- */

typedef struct ids {
    uint32_t *v;
    size_t n, cap;
} ids_t;

static bool ids_push(ids_t *s, uint32_t m)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *v = realloc(s->v, cap * sizeof(uint32_t));
        if (v == NULL)
            return false;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = m;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_unique(ids_t *s)
{
    if (s->n == 0)
        return;
    qsort(s->v, s->n, sizeof(uint32_t), cmp_u32);
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++)
        if (o == 0 || s->v[o - 1] != s->v[i])
            s->v[o++] = s->v[i];
    s->n = o;
}

/* Members whose field f holds value (v, vl), appended to out. */
static bool lookup(const jv_index_t *ix, unsigned f, const char *v, size_t vl, ids_t *out)
{
    const posting_t *p = ix->post[f];
    size_t lo = 0, hi = ix->npost[f];
    uint64_t h = fnv(v, vl);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < ix->npost[f] && p[i].h == h; i++)
        if (p[i].vlen == vl && memcmp(ix->body + p[i].voff, v, vl) == 0 && !ids_push(out, p[i].member))
            return false;
    return true;
}

static bool keep(const jv_conf_t *c, const jv_index_t *ix, const jv_query_t *q, uint32_t m)
{
    for (unsigned f = 0; f < c->nfields; f++) {
        if (!q->has_min[f] && !q->has_max[f])
            continue;
        double d = ix->num[f][m];
        if (isnan(d) || (q->has_min[f] && d < q->min[f]) || (q->has_max[f] && d > q->max[f]))
            return false;
    }
    return true;
}

typedef struct sort_ctx {
    const double *d;
    bool desc;
} sort_ctx_t;

static int cmp_sort(const void *a_, const void *b_, void *arg)
{
    const sort_ctx_t *sc = arg;
    uint32_t a = *(const uint32_t *)a_, b = *(const uint32_t *)b_;
    double x = sc->d[a], y = sc->d[b];
    bool na = isnan(x), nb = isnan(y);
    if (na != nb)
        return na ? 1 : -1;
    if (!na && x != y)
        return (x < y) != sc->desc ? -1 : 1;
    return a < b ? -1 : a > b;
}

typedef struct emit {
    jv_write_fn write;
    void *ud;
    size_t count;
    int rc;
    const jv_query_t *q;
    uint64_t skip, left; /* the page: members still to pass over (offset), then to write (limit) */
    const char *vals[JV_MAX_PROJECT];
    size_t vlens[JV_MAX_PROJECT];
} emit_t;

static int on_project_field(void *ud, const char *k, size_t kl, const char *v, size_t vl)
{
    emit_t *e = ud;
    for (unsigned i = 0; i < e->q->nproject; i++)
        if (e->vals[i] == NULL && e->q->project_len[i] == kl && memcmp(e->q->project[i], k, kl) == 0) {
            e->vals[i] = v;
            e->vlens[i] = vl;
        }
    return 0;
}

static int emit_member(emit_t *e, const jv_index_t *ix, uint32_t m)
{
    const char *s = ix->body + ix->off[m];
    size_t n = ix->mlen[m];
    if (e->count++ > 0 && (e->rc = e->write(e->ud, ",", 1)) != 0)
        return e->rc;
    if (e->q->nproject == 0)
        return e->rc = e->write(e->ud, s, n);
    memset(e->vals, 0, sizeof(e->vals));
    size_t i = 0;
    jv_scan_ops_t ops = {on_project_field, NULL};
    if (n > 0 && s[0] == '{')
        (void)scan_object(s, n, &i, &ops, e);
    bool first = true;
    if ((e->rc = e->write(e->ud, "{", 1)) != 0)
        return e->rc;
    for (unsigned k = 0; k < e->q->nproject; k++) {
        if (e->vals[k] == NULL)
            continue;
        if ((!first && (e->rc = e->write(e->ud, ",", 1)) != 0) || (e->rc = e->write(e->ud, "\"", 1)) != 0 ||
            (e->rc = e->write(e->ud, e->q->project[k], e->q->project_len[k])) != 0 ||
            (e->rc = e->write(e->ud, "\":", 2)) != 0 || (e->rc = e->write(e->ud, e->vals[k], e->vlens[k])) != 0)
            return e->rc;
        first = false;
    }
    return e->rc = e->write(e->ud, "}", 1);
}

/* A member that matched, in answer order: passed over while the offset lasts, else written. */
static void page_member(emit_t *e, const jv_index_t *ix, uint32_t m)
{
    if (e->skip > 0) {
        e->skip--;
        return;
    }
    emit_member(e, ix, m);
    e->left--;
}

int jv_answer(const jv_conf_t *c, const jv_index_t *ix, const jv_query_t *q, jv_write_fn write, void *ud, char *err,
              size_t errlen)
{
    if (c->project == NULL)
        for (unsigned i = 0; i < q->nproject; i++) {
            name_slot_t *s = name_slot((jv_index_t *)ix, q->project[i], q->project_len[i], false);
            if (s == NULL)
                return fail(err, errlen, "fields: unknown field %s", q->project[i]);
        }
    emit_t e = {.write = write, .ud = ud, .q = q};
    ids_t cand = {0};
    bool all = q->nm == 0;
    int rc = 0;
    for (unsigned k = 0; k < q->nm && rc == 0; k++) {
        const jv_match_t *mt = &c->match[q->m[k].match];
        ids_t s = {0};
        for (unsigned v = 0; v < q->m[k].nvals && rc == 0; v++)
            for (unsigned j = 0; j < mt->nfields && rc == 0; j++)
                if (!lookup(ix, mt->fields[j], q->m[k].vals[v], q->m[k].lens[v], &s))
                    rc = fail(err, errlen, "out of memory");
        sort_unique(&s);
        if (k == 0) {
            cand = s;
            continue;
        }
        size_t o = 0, a = 0, b = 0; /* intersection of sorted lists */
        while (a < cand.n && b < s.n) {
            if (cand.v[a] < s.v[b])
                a++;
            else if (cand.v[a] > s.v[b])
                b++;
            else
                cand.v[o++] = cand.v[a++], b++;
        }
        cand.n = o;
        free(s.v);
    }
    if (rc != 0) {
        free(cand.v);
        return rc;
    }
    if ((rc = write(ud, "[", 1)) != 0) {
        free(cand.v);
        return rc;
    }
    e.skip = q->offset;
    e.left = q->limit;
    if (!all) {
        size_t o = 0;
        for (size_t i = 0; i < cand.n; i++)
            if (keep(c, ix, q, cand.v[i]))
                cand.v[o++] = cand.v[i];
        cand.n = o;
        if (q->sort_field >= 0 && cand.n > 1) {
            sort_ctx_t sc = {ix->num[q->sort_field], q->sort_desc};
            qsort_r(cand.v, cand.n, sizeof(uint32_t), cmp_sort, &sc);
        }
        for (size_t i = 0; i < cand.n && e.left > 0 && e.rc == 0; i++) {
            page_member(&e, ix, cand.v[i]);
        }
    } else if (q->sort_field < 0 || ix->n == 0) {
        for (uint32_t m = 0; m < ix->n && e.left > 0 && e.rc == 0; m++) {
            if (!keep(c, ix, q, m))
                continue;
            page_member(&e, ix, m);
        }
    } else {
        /* the precomputed ascending order: numbers first, then members without one; descending
         * walks the numbers from the top, runs of equal values in source order */
        const uint32_t *ord = ix->order[q->sort_field];
        const double *d = ix->num[q->sort_field];
        uint32_t nn = ix->nnum[q->sort_field];
        uint32_t i = 0, run_end = 0, hi = nn;
        for (uint32_t step = 0; step < ix->n && e.left > 0 && e.rc == 0; step++) {
            uint32_t m;
            if (!q->sort_desc || step >= nn) {
                m = ord[step];
            } else {
                if (i == run_end) { /* the next run of equal values, from the top */
                    uint32_t lo = hi - 1;
                    while (lo > 0 && d[ord[lo - 1]] == d[ord[hi - 1]])
                        lo--;
                    i = lo;
                    run_end = hi;
                    hi = lo;
                }
                m = ord[i++];
            }
            if (!keep(c, ix, q, m))
                continue;
            page_member(&e, ix, m);
        }
    }
    free(cand.v);
    if (e.rc != 0)
        return e.rc;
    return write(ud, "]", 1);
}
