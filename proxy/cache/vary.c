/* Vary names, value normalisation and secondary keys (see cache/vary.h). Pure. */
#include "cache/vary.h"

#include <string.h>
#include <strings.h>

#include "cache/key.h"
#include "core/httptok.h"

#define MAX_LINES 32

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

typedef struct name_ref {
    const char *p;
    size_t len;
} name_ref_t;

static int name_cmp(const name_ref_t *a, const name_ref_t *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    for (size_t i = 0; i < n; i++) {
        char x = lower(a->p[i]), y = lower(b->p[i]);
        if (x != y)
            return (unsigned char)x < (unsigned char)y ? -1 : 1;
    }
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

size_t dc_vary_names_parse(const char *const *values, const size_t *lens, size_t nvalues, char *out, size_t cap,
                           unsigned *flags)
{
    name_ref_t names[DC_VARY_MAX_NAMES];
    size_t n = 0;
    for (size_t l = 0; l < nvalues; l++) {
        const char *v = values[l];
        size_t len = lens[l], i = 0;
        while (i < len) {
            while (i < len && (dc_http_is_ows(v[i]) || v[i] == ','))
                i++;
            size_t s = i;
            while (i < len && v[i] != ',')
                i++;
            size_t e = i;
            while (e > s && dc_http_is_ows(v[e - 1]))
                e--;
            if (e == s)
                continue;
            if (e - s == 1 && v[s] == '*') {
                *flags |= DC_VARY_STAR;
                continue;
            }
            bool token = true;
            for (size_t k = s; k < e; k++)
                token = token && dc_http_is_tchar(v[k]);
            if (!token) {
                *flags |= DC_VARY_INVALID;
                continue;
            }
            if (e - s == 15 && strncasecmp(v + s, "accept-encoding", 15) == 0) {
                *flags |= DC_VARY_ENCODING;
                continue;
            }
            name_ref_t nr = {v + s, e - s};
            size_t at = 0; /* insertion sort, de-duplicated */
            while (at < n && name_cmp(&names[at], &nr) < 0)
                at++;
            if (at < n && name_cmp(&names[at], &nr) == 0)
                continue;
            if (n == DC_VARY_MAX_NAMES) {
                *flags |= DC_VARY_TOO_MANY;
                continue;
            }
            memmove(&names[at + 1], &names[at], (n - at) * sizeof(names[0]));
            names[at] = nr;
            n++;
        }
    }
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        if (o + names[k].len + 2 > cap || o + names[k].len + 1 > DC_VARY_NAMES_MAX) {
            *flags |= DC_VARY_TOO_MANY;
            o = 0;
            break;
        }
        if (k > 0)
            out[o++] = ',';
        for (size_t i = 0; i < names[k].len; i++)
            out[o++] = lower(names[k].p[i]);
    }
    if (cap > 0)
        out[o] = '\0';
    return o;
}

size_t dc_vary_names_count(const char *names, size_t len)
{
    if (len == 0)
        return 0;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += names[i] == ',';
    return n;
}

typedef enum { KIND_OTHER = 0, KIND_LIST, KIND_LIST_LOWER } value_kind_t;

/* The headers whose syntax we know well enough to normalise more than the outer whitespace. */
static value_kind_t value_kind(const char *name, size_t nlen)
{
    static const struct {
        const char *name;
        value_kind_t kind;
    } known[] = {
        {"accept", KIND_LIST},
        {"accept-charset", KIND_LIST_LOWER},
        {"accept-language", KIND_LIST_LOWER},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == nlen && memcmp(known[i].name, name, nlen) == 0)
            return known[i].kind;
    return KIND_OTHER;
}

typedef struct wr {
    char *out;
    size_t cap, len;
    bool overflow;
} wr_t;

static void put(wr_t *w, char c)
{
    if (w->len < w->cap)
        w->out[w->len] = c;
    else
        w->overflow = true;
    w->len++;
}

/* One element of a known list header (already trimmed): whitespace around ';' and '=' dropped
 * outside quoted strings, lowercased when asked (quoted strings keep their case). */
static void put_element(wr_t *w, const char *p, size_t n, bool lowercase)
{
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (quoted) {
            put(w, c);
            if (c == '\\' && i + 1 < n)
                put(w, p[++i]);
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"') {
            quoted = true;
            put(w, c);
        } else if (dc_http_is_ows(c)) {
            /* kept only between two characters that are not separators */
            size_t j = i;
            while (j < n && dc_http_is_ows(p[j]))
                j++;
            char prev = w->len > 0 && w->len <= w->cap ? w->out[w->len - 1] : 0;
            if (j < n && p[j] != ';' && p[j] != '=' && prev != ';' && prev != '=')
                put(w, ' ');
            i = j - 1;
        } else {
            put(w, lowercase ? lower(c) : c);
        }
    }
}

/* The elements of a list value, split on commas outside quoted strings, each trimmed; empty
 * elements dropped. `first` says whether nothing was written yet (for the ", " joints). */
static void put_list(wr_t *w, const char *v, size_t len, bool lowercase, bool *first)
{
    size_t i = 0;
    while (i < len) {
        size_t s = i;
        bool quoted = false;
        while (i < len && (quoted || v[i] != ',')) {
            if (quoted && v[i] == '\\' && i + 1 < len)
                i++;
            else if (v[i] == '"')
                quoted = !quoted;
            i++;
        }
        size_t e = i;
        while (s < e && dc_http_is_ows(v[s]))
            s++;
        while (e > s && dc_http_is_ows(v[e - 1]))
            e--;
        if (e > s) {
            if (!*first) {
                put(w, ',');
                put(w, ' ');
            }
            *first = false;
            put_element(w, v + s, e - s, lowercase);
        }
        i++; /* the comma */
    }
}

size_t dc_vary_value_normalize(const char *name, size_t nlen, const char *const *values, const size_t *lens,
                               size_t nvalues, char *out, size_t cap)
{
    wr_t w = {out, cap, 0, false};
    value_kind_t kind = value_kind(name, nlen);
    bool first = true;
    for (size_t l = 0; l < nvalues; l++) {
        const char *v = values[l];
        size_t len = lens[l];
        if (kind != KIND_OTHER) {
            put_list(&w, v, len, kind == KIND_LIST_LOWER, &first);
            continue;
        }
        while (len > 0 && dc_http_is_ows(v[0]))
            v++, len--;
        while (len > 0 && dc_http_is_ows(v[len - 1]))
            len--;
        if (!first) {
            put(&w, ',');
            put(&w, ' ');
        }
        first = false;
        for (size_t i = 0; i < len; i++)
            put(&w, v[i]);
    }
    return w.overflow ? (size_t)-1 : w.len;
}

size_t dc_vary_key_bound(size_t plen, size_t names_len, size_t hdr_bytes, size_t nlines)
{
    /* per name: ' ' + name + ':'; per value byte up to 3 (escaped); joints ", " per extra line */
    return plen + DC_VARY_MARKER_LEN + 2 * names_len + DC_VARY_MAX_NAMES * 2 + 3 * (hdr_bytes + 2 * nlines) + 1;
}

long dc_vary_key_build(const char *primary, size_t plen, const char *names, size_t names_len, dc_vary_get_fn get,
                       void *ctx, char *out, size_t cap)
{
    if (cap < plen + DC_VARY_MARKER_LEN + 1)
        return -1;
    memcpy(out, primary, plen);
    memcpy(out + plen, DC_VARY_MARKER, DC_VARY_MARKER_LEN);
    size_t o = plen + DC_VARY_MARKER_LEN;
    size_t i = 0;
    while (i < names_len) {
        size_t s = i;
        while (i < names_len && names[i] != ',')
            i++;
        const char *name = names + s;
        size_t nl = i - s;
        i++;
        const char *vals[MAX_LINES];
        size_t lens[MAX_LINES];
        size_t nv = get(ctx, name, nl, vals, lens, MAX_LINES);
        if (nv > MAX_LINES)
            return -1;
        if (nv == 0) { /* absent: the name alone */
            if (o + 1 + nl + 1 > cap)
                return -1;
            out[o++] = ' ';
            memcpy(out + o, name, nl);
            o += nl;
            continue;
        }
        char norm[DC_VARY_VALUE_MAX];
        size_t vl = dc_vary_value_normalize(name, nl, vals, lens, nv, norm, sizeof(norm));
        if (vl == (size_t)-1 || o + dc_cache_key_header_bound(nl, vl) + 1 > cap)
            return -1;
        o += dc_cache_key_add_header(out + o, cap - o, name, nl, norm, vl);
    }
    out[o] = '\0';
    return (long)o;
}

size_t dc_vary_primary_len(const char *key, size_t len)
{
    for (size_t i = 0; i + DC_VARY_MARKER_LEN <= len; i++)
        if (key[i] == ' ' && key[i + 1] == '{' && memcmp(key + i, DC_VARY_MARKER, DC_VARY_MARKER_LEN) == 0)
            return i;
    return len;
}

uint64_t dc_vary_hash(uint64_t primary_hash, uint64_t own_hash)
{
    return (own_hash & ~UINT64_C(0xff)) | (primary_hash & UINT64_C(0xff));
}
