/* Vary on the request path (see http/vary.h). */
#include "http/vary.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/vary.h"
#include "core/error.h"
#include "http/hop.h"

bool dc_http_vary_name_ok(const char *name, size_t len, const char *key_header)
{
    static const char *const never[] = {
        "host",          "content-length", "transfer-encoding",  "expect", "x-request-id", "x-forwarded-for", "via",
        "authorization", "cookie",         "proxy-authorization"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (strlen(never[i]) == len && strncasecmp(never[i], name, len) == 0)
            return false;
    if (key_header != NULL && strlen(key_header) == len && strncasecmp(key_header, name, len) == 0)
        return false;
    return !dc_hop_is_hop_by_hop(name, len) && !dc_hop_is_spoofable(name, len);
}

bool dc_http_vary_names_ok(const char *names, size_t len, const char *key_header)
{
    size_t i = 0;
    while (i < len) {
        size_t s = i;
        while (i < len && names[i] != ',')
            i++;
        if (!dc_http_vary_name_ok(names + s, i - s, key_header))
            return false;
        i++;
    }
    return true;
}

/* The field lines of a request header, from the h2o request (dc_vary_get_fn). */
static size_t get_req(void *ctx, const char *name, size_t nlen, const char **vals, size_t *lens, size_t max)
{
    h2o_req_t *req = ctx;
    size_t n = 0;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len == nlen && strncasecmp(h->name->base, name, nlen) == 0) {
            if (n < max) {
                vals[n] = h->value.base;
                lens[n] = h->value.len;
            }
            n++;
        }
    }
    return n;
}

/* r's secondary key for `names` in its pool, or NULL. */
static char *request_key(dc_request_t *r, size_t plen, const char *names, size_t names_len, long *len)
{
    h2o_req_t *req = r->req;
    size_t bytes = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
    size_t cap = dc_vary_key_bound(plen, names_len, bytes, req->headers.size);
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    *len = dc_vary_key_build(r->key, plen, names, names_len, get_req, req, buf, cap);
    return *len < 0 ? NULL : buf;
}

bool dc_http_vary_select(dc_request_t *r, const dc_cache_entry_t *rec)
{
    DC_ASSERT(rec->is_vary && rec->vary != NULL);
    size_t plen = dc_vary_primary_len(r->key, r->key_len);
    long len;
    char *k = request_key(r, plen, rec->vary, rec->vary_len, &len);
    if (k == NULL)
        return false;
    if (r->key_owned)
        free(r->key);
    r->key_owned = false;
    r->key = k;
    r->key_len = (size_t)len;
    r->hash = dc_vary_hash(dc_cache_hash(k, plen), dc_cache_hash(k, (size_t)len));
    r->vary_names = h2o_strdup(&r->req->pool, rec->vary, rec->vary_len).base;
    r->vary_names_len = rec->vary_len;
    return true;
}

void dc_http_vary_reset(dc_request_t *r)
{
    size_t plen = dc_vary_primary_len(r->key, r->key_len);
    if (plen == r->key_len)
        return;
    char *k = h2o_strdup(&r->req->pool, r->key, plen).base;
    if (r->key_owned)
        free(r->key);
    r->key_owned = false;
    r->key = k;
    r->key_len = plen;
    r->hash = dc_cache_hash(k, plen);
    r->vary_names = NULL;
    r->vary_names_len = 0;
}

bool dc_http_vary_matches(dc_request_t *r, const dc_cache_entry_t *e)
{
    if (e == NULL || e->vary == NULL || e->primary_len == e->key_len)
        return true;
    long len;
    char *k = request_key(r, e->primary_len, e->vary, e->vary_len, &len);
    return k != NULL && (size_t)len == e->key_len && memcmp(k, e->key, e->key_len) == 0;
}

bool dc_http_vary_forwards(const dc_request_t *r, const char *name, size_t len)
{
    const char *p = r->vary_names, *end = p + r->vary_names_len;
    while (p != NULL && p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t l = c != NULL ? (size_t)(c - p) : (size_t)(end - p);
        if (l == len && strncasecmp(p, name, len) == 0)
            return true;
        p += l + 1;
    }
    return false;
}

typedef struct lines_ctx {
    const char *const *lines;
} lines_ctx_t;

/* The field lines of a header among "Name: value" lines (dc_vary_get_fn). */
static size_t get_lines(void *ctx, const char *name, size_t nlen, const char **vals, size_t *lens, size_t max)
{
    const lines_ctx_t *lc = ctx;
    size_t n = 0;
    for (const char *const *l = lc->lines; *l != NULL; l++) {
        const char *colon = strchr(*l, ':');
        if (colon == NULL || (size_t)(colon - *l) != nlen || strncasecmp(*l, name, nlen) != 0)
            continue;
        if (n < max) {
            const char *v = colon + 1;
            vals[n] = v;
            lens[n] = strlen(v);
        }
        n++;
    }
    return n;
}

char *dc_http_vary_key_from_lines(const char *primary, size_t plen, const char *names, size_t names_len,
                                  const char *const *lines, size_t *len)
{
    size_t bytes = 0, n = 0;
    for (const char *const *l = lines; *l != NULL; l++, n++)
        bytes += strlen(*l);
    size_t cap = dc_vary_key_bound(plen, names_len, bytes, n);
    char *buf = dc_malloc(cap);
    lines_ctx_t lc = {lines};
    long l = dc_vary_key_build(primary, plen, names, names_len, get_lines, &lc, buf, cap);
    if (l < 0) {
        free(buf);
        return NULL;
    }
    *len = (size_t)l;
    return buf;
}
