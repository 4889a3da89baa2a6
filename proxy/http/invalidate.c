#include "http/invalidate.h"
#include "cache/key.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "http/resphdr.h"
#include "redis/bus.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URI_MAX 8192

static bool is_method(const char *m, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(m, name, len) == 0;
}

bool dc_invalidate_applies(const char *method, size_t mlen, int status)
{
    if (status < 200 || status >= 400)
        return false;
    return !(is_method(method, mlen, "GET") || is_method(method, mlen, "HEAD") || is_method(method, mlen, "OPTIONS") ||
             is_method(method, mlen, "TRACE"));
}

long dc_invalidate_resolve(const char *v, size_t len, const char *host, size_t host_len, const char *base,
                           size_t base_len, char *out, size_t cap)
{
    while (len > 0 && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    const char *hash = memchr(v, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - v);
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] <= ' ' || v[i] == 0x7f)
            return -1;
    size_t prefix_len = 0; /* bytes of base kept before v (relative references) */
    if (len >= 2 && v[0] == '/' && v[1] == '/') {
        return -1; /* network-path reference: another authority as far as we can tell */
    } else if (v[0] == '/') {
        /* absolute path */
    } else {
        size_t skip = 0;
        if (len > 7 && strncasecmp(v, "http://", 7) == 0)
            skip = 7;
        else if (len > 8 && strncasecmp(v, "https://", 8) == 0)
            skip = 8;
        if (skip > 0) {
            const char *a = v + skip;
            size_t rest = len - skip;
            const char *slash = memchr(a, '/', rest), *q = memchr(a, '?', rest);
            const char *end = slash != NULL && (q == NULL || slash < q) ? slash : q;
            size_t alen = end != NULL ? (size_t)(end - a) : rest;
            if (alen != host_len || strncasecmp(a, host, host_len) != 0)
                return -1;
            v = a + alen;
            len = rest - alen;
            if (len == 0) {
                v = "/";
                len = 1;
            } else if (v[0] == '?') {
                return -1; /* "http://host?x": no path; not worth resolving */
            }
        } else {
            const char *colon = memchr(v, ':', len), *slash = memchr(v, '/', len);
            if (colon != NULL && (slash == NULL || colon < slash))
                return -1; /* another scheme */
            const char *q = memchr(base, '?', base_len);
            size_t bpath = q != NULL ? (size_t)(q - base) : base_len;
            while (bpath > 0 && base[bpath - 1] != '/')
                bpath--;
            if (bpath == 0)
                return -1;
            prefix_len = bpath;
        }
    }
    if (prefix_len + len + 1 > cap)
        return -1;
    memcpy(out, base, prefix_len);
    memcpy(out + prefix_len, v, len);
    out[prefix_len + len] = '\0';
    return (long)(prefix_len + len);
}

/* Purge one (kind, arg) here and, in a fleet, everywhere. */
static void purge(dc_request_t *r, dc_purge_kind_t kind, const char *arg, size_t len, uint64_t at)
{
    size_t n = dc_cache_purge(r->ctx.worker->cache, kind, arg, len, at);
    char *body = dc_malloc(len + 1);
    body[0] = (char)kind;
    memcpy(body + 1, arg, len);
    dc_bus_post(DC_BUS_PURGE, at, body, len + 1);
    free(body);
    if (n > 0)
        dc_log_debug("invalidated %c %.*s: %zu entries, rid=%s", kind, (int)len, arg, n, r->request_id);
}

/* The GET key(s) of path-and-query `pq` (an absolute path) when it is on r's route. */
static void invalidate_uri(dc_request_t *r, const char *pq, size_t pqlen, uint64_t at)
{
    const dc_config_route_t *route = r->ctx.route;
    const char *q = memchr(pq, '?', pqlen);
    size_t pathlen = q != NULL ? (size_t)(q - pq) : pqlen;
    if (dc_config_route_match(r->ctx.snap->cfg, pq, pathlen) != route)
        return; /* another route: not ours to touch (RFC 9111 §4.4: same origin; here, same route) */
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    const dc_config_cache_rule_t *rule = dc_config_cache_rule_match(route, pq + plen, pathlen - plen);
    if (rule == NULL)
        return; /* nothing on this path is ever stored */
    dc_cache_key_opts_t opts = {rule->key_sets, rule->nkey_sets, rule->ignore_params, rule->nignore_params};
    size_t cap = dc_cache_key_bound(3, strlen(route->prefix), pqlen - plen) + 1;
    char *key = dc_malloc(cap);
    long n = dc_cache_key_build("GET", 3, route->prefix, pq + plen, pqlen - plen, &opts, key, cap);
    if (n >= 0) {
        purge(r, DC_PURGE_KEY, key, (size_t)n, at);
        if (rule->nkey_headers > 0) { /* the variants keyed by request headers: "KEY name:value..." */
            key[n] = ' ';
            purge(r, DC_PURGE_PREFIX, key, (size_t)n + 1, at);
        }
    }
    free(key);
}

/* Location / Content-Location as the origin sent it (dexcache does not rewrite them): in the origin's
 * URI space first (an absolute path, a relative reference, or an absolute URI naming the upstream's
 * host), mapped back to the client path of this route (prefix + the part after the upstream URL's
 * path); else an absolute URI naming the client's own Host, taken as a client path. */
static void invalidate_ref(dc_request_t *r, const char *v, size_t vlen, char *buf, char *upath, uint64_t at)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->ctx.route;
    const char *url = route->upstream->url;
    const char *auth = strstr(url, "://");
    auth = auth != NULL ? auth + 3 : url;
    const char *ubase = strchr(auth, '/');
    size_t alen = ubase != NULL ? (size_t)(ubase - auth) : strlen(auth), blen = ubase != NULL ? strlen(ubase) : 0;
    size_t plen = strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
    /* the upstream request's path-and-query, to resolve relative references against */
    size_t rest = req->path.len - plen;
    if (blen + rest + 2 > URI_MAX)
        return;
    memcpy(upath, ubase != NULL ? ubase : "", blen);
    memcpy(upath + blen, req->path.base + plen, rest);
    size_t ulen = blen + rest;
    if (ulen == 0 || upath[0] != '/') {
        memmove(upath + 1, upath, ulen);
        upath[0] = '/';
        ulen++;
    }
    long l = dc_invalidate_resolve(v, vlen, auth, alen, upath, ulen, buf, URI_MAX);
    if (l > 0 && (size_t)l >= blen && memcmp(buf, ubase != NULL ? ubase : "", blen) == 0 &&
        ((size_t)l == blen || buf[blen] == '/' || buf[blen] == '?')) {
        /* client path = route prefix + what follows the upstream URL's path */
        size_t tail = (size_t)l - blen;
        if (plen + tail + 2 > URI_MAX)
            return;
        memmove(buf + plen, buf + blen, tail);
        memcpy(buf, route->prefix, plen);
        size_t cl = plen + tail;
        if (cl == 0 || buf[0] != '/') {
            memmove(buf + 1, buf, cl);
            buf[0] = '/';
            cl++;
        }
        invalidate_uri(r, buf, cl, at);
        return;
    }
    bool absolute = (vlen > 7 && strncasecmp(v, "http://", 7) == 0) || (vlen > 8 && strncasecmp(v, "https://", 8) == 0);
    if (!absolute)
        return;
    l = dc_invalidate_resolve(v, vlen, req->authority.base, req->authority.len, req->path.base, req->path.len, buf,
                              URI_MAX);
    if (l > 0)
        invalidate_uri(r, buf, (size_t)l, at);
}

void dc_http_invalidate(dc_request_t *r, int status, const dc_fetch_header_t *hs, size_t n)
{
    h2o_req_t *req = r->req;
    if (req == NULL || !dc_invalidate_applies(req->method.base, req->method.len, status))
        return;
    uint64_t at = dc_now_wall_ms();
    invalidate_uri(r, req->path.base, req->path.len, at);
    static const char *const names[] = {"location", "content-location"};
    char *buf = dc_malloc(2 * URI_MAX);
    for (size_t i = 0; i < 2; i++) {
        size_t vlen;
        const char *v = dc_resphdr_find(hs, n, names[i], &vlen);
        if (v != NULL)
            invalidate_ref(r, v, vlen, buf, buf + URI_MAX, at);
    }
    free(buf);
}
