#include "http/request.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/metrics.h"
#include "core/time.h"
#include "cache/key.h"
#include "http/hop.h"
#include "ratelimit/clientid.h"
#include "http/respond.h"
#include "http/resphdr.h"
#include "http/vary.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FREE_LIST_MAX 256

/* Per-worker free list of request states; only the owning worker thread touches it. */
typedef struct free_list {
    dc_request_t *head;
    unsigned n;
} free_list_t;

static __thread free_list_t free_requests;

/* Under AddressSanitizer every request gets fresh memory, so a use after the last reference is
 * still caught; the free list is a release-build optimisation. */
#if defined(__SANITIZE_ADDRESS__)
#define RECYCLE_REQUESTS 0
#else
#define RECYCLE_REQUESTS 1
#endif

dc_request_t *dc_request_new(dc_worker_t *w)
{
    dc_request_t *r = free_requests.head;
    if (r != NULL) {
        free_requests.head = *(dc_request_t **)r;
        free_requests.n--;
        memset(r, 0, sizeof(*r));
    } else {
        r = dc_calloc(1, sizeof(*r));
    }
    r->magic = DC_REQUEST_MAGIC;
    r->ctx.worker = w;
    return r;
}

static void request_recycle(dc_request_t *r)
{
    r->magic = 0;
    if (!RECYCLE_REQUESTS || free_requests.n >= FREE_LIST_MAX) {
        free(r);
        return;
    }
    *(dc_request_t **)r = free_requests.head;
    free_requests.head = r;
    free_requests.n++;
}

void dc_conn_peer_ip(h2o_conn_t *conn, char buf[INET6_ADDRSTRLEN])
{
    struct sockaddr_storage ss;
    socklen_t len = conn->callbacks->get_peername(conn, (struct sockaddr *)&ss);
    strcpy(buf, "-");
    if (len == 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, INET6_ADDRSTRLEN);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, INET6_ADDRSTRLEN);
}

const char *dc_request_client_ip(dc_request_t *r)
{
    if (r->client_ip[0] != '\0' || r->req == NULL)
        return r->client_ip[0] ? r->client_ip : "-";
    dc_conn_peer_ip(r->req->conn, r->client_ip);
    return r->client_ip;
}

const char *dc_request_real_ip(dc_request_t *r)
{
    if (r->real_ip[0] != '\0' || r->req == NULL)
        return r->real_ip[0] ? r->real_ip : dc_request_client_ip(r);
    h2o_req_t *req = r->req;
    const char *peer = dc_request_client_ip(r);
    ssize_t x = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-forwarded-for"), -1);
    ssize_t c = h2o_find_header_by_str(&req->headers, H2O_STRLIT("cf-connecting-ip"), -1);
    if (r->ctx.snap == NULL || r->ctx.snap->ntrusted == 0 || (x < 0 && c < 0)) {
        snprintf(r->real_ip, sizeof(r->real_ip), "%s", peer);
        return r->real_ip;
    }
    size_t n = dc_client_id(
        peer, x >= 0 ? req->headers.entries[x].value.base : NULL, x >= 0 ? req->headers.entries[x].value.len : 0,
        c >= 0 ? req->headers.entries[c].value.base : NULL, c >= 0 ? req->headers.entries[c].value.len : 0,
        r->ctx.snap->trusted, r->ctx.snap->ntrusted, r->real_ip, sizeof(r->real_ip));
    r->real_ip[n < sizeof(r->real_ip) ? n : sizeof(r->real_ip) - 1] = '\0';
    return r->real_ip;
}

void dc_request_ref(dc_request_t *r)
{
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    r->refs++;
}

void dc_request_unref(dc_request_t *r)
{
    DC_CHECK_MAGIC(r, DC_REQUEST_MAGIC);
    if (--r->refs > 0)
        return;
    DC_ASSERT(r->req == NULL && r->fetch == NULL && r->fill == NULL && !r->waiting && !r->subscribed);
    dc_growing_release(r->growing);
    free(r->sending.p);
    free(r->pending.p);
    dc_request_set_body(r, NULL, false);
    dc_cache_entry_release(r->entry);
    dc_cache_entry_release(r->stale);
    dc_snapshot_release(r->ctx.snap);
    if (r->key_owned)
        free(r->key);
    request_recycle(r);
}

void dc_request_own_key(dc_request_t *r)
{
    if (r->key_owned)
        return;
    r->key = dc_strndup(r->key, r->key_len);
    r->key_owned = true;
}

void dc_request_set_body(dc_request_t *r, dc_shared_body_t *body, bool borrowed)
{
    if (!r->body_borrowed)
        dc_shared_body_release(r->body);
    r->body = body;
    r->body_borrowed = borrowed;
}

void dc_request_add_header(dc_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    h2o_req_t *req = r->req;
    h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, name, nlen).base, nlen, 1, NULL,
                          h2o_strdup(&req->pool, value, vlen).base, vlen);
}

void dc_request_respond_fetch_error(dc_request_t *r, dc_fetch_t *f, int err)
{
    if (err == DC_EAGAIN) {
        char *ra = h2o_mem_alloc_pool(&r->req->pool, 24);
        int n = snprintf(ra, 24, "%llu", (unsigned long long)((dc_fetch_retry_after_ms(f) + 999) / 1000));
        h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, (size_t)n);
        dc_request_respond_error(r, 503, "upstream budget exhausted");
    } else if (err == DC_EUNAVAIL) {
        char *ra = h2o_mem_alloc_pool(&r->req->pool, 24);
        int n = snprintf(ra, 24, "%llu", (unsigned long long)((dc_fetch_retry_after_ms(f) + 999) / 1000));
        h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, (size_t)n);
        bool known = dc_fetch_cause(f) != DC_CAUSE_NONE; /* the failure that opened it */
        dc_request_respond_upstream_error(r, 503, "upstream unavailable: circuit breaker open or cordoned",
                                          known ? dc_fetch_cause_upstream(f) : NULL, dc_fetch_cause_text(f), 0);
    } else if (dc_fetch_cause(f) != DC_CAUSE_NONE) {
        dc_upstream_cause_t c = dc_fetch_cause(f);
        dc_request_respond_upstream_error(r, dc_upstream_cause_status(c), dc_upstream_cause_message(c),
                                          dc_fetch_cause_upstream(f), dc_fetch_cause_text(f),
                                          dc_upstream_cause_retry_after_s(c));
    } else if (err == DC_ETIMEDOUT) {
        dc_request_respond_error(r, 504, "upstream timed out");
    } else if (err == DC_EPROTO) {
        dc_request_respond_error(r, 502, "upstream sent an invalid response");
    } else if (err == DC_ECONNREFUSED) {
        dc_request_respond_error(r, 502, "upstream connection refused");
    } else {
        dc_request_respond_error(r, 502, "upstream failed");
    }
}

void dc_request_respond_error(dc_request_t *r, int status, const char *message)
{
    if (r->x_cache == NULL)
        r->x_cache = "-";
    dc_respond_error(r->req, status, message, r->request_id);
}

void dc_request_respond_upstream_error(dc_request_t *r, int status, const char *message, const char *upstream,
                                       const char *cause, unsigned retry_after_s)
{
    if (r->x_cache == NULL)
        r->x_cache = "-";
    if (retry_after_s > 0) {
        char *ra = h2o_mem_alloc_pool(&r->req->pool, 24);
        size_t n = (size_t)snprintf(ra, 24, "%u", retry_after_s);
        h2o_add_header(&r->req->pool, &r->req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, ra, n);
    }
    dc_respond_error_upstream(r->req, status, message, upstream != NULL && upstream[0] ? upstream : NULL,
                              cause != NULL && cause[0] ? cause : NULL, r->request_id);
}

/* The upstream's base URL followed by `rest` (an upstream path and query), in r's pool. */
static const char *upstream_url(dc_request_t *r, const char *rest, size_t rest_len)
{
    const char *base = r->ctx.route->upstream->url;
    size_t blen = strlen(base);
    bool need_slash = rest_len == 0 || rest[0] != '/';
    char *url = h2o_mem_alloc_pool(&r->req->pool, blen + rest_len + 2);
    memcpy(url, base, blen);
    size_t o = blen;
    if (need_slash)
        url[o++] = '/';
    memcpy(url + o, rest, rest_len);
    url[o + rest_len] = '\0';
    return url;
}

static size_t route_prefix_len(const dc_config_route_t *route)
{
    return strcmp(route->prefix, "/") == 0 ? 0 : strlen(route->prefix);
}

const char *dc_request_upstream_url(dc_request_t *r)
{
    size_t plen = route_prefix_len(r->ctx.route);
    return upstream_url(r, r->req->path.base + plen, r->req->path.len - plen);
}

void dc_request_redact_query(dc_request_t *r, const char *name, size_t name_len)
{
    static const char mask[] = "REDACTED";
    h2o_req_t *req = r->req;
    h2o_iovec_t in = r->log_path.base != NULL ? r->log_path : req->input.path;
    const char *q = memchr(in.base, '?', in.len);
    if (q == NULL)
        return;
    const char *end = in.base + in.len;
    /* at most one mask per '&'-separated part, each no longer than the mask */
    size_t parts = 1;
    for (const char *p = q; p < end; p++)
        parts += *p == '&';
    char *out = h2o_mem_alloc_pool(&req->pool, in.len + parts * sizeof(mask) + 1);
    char *k = h2o_mem_alloc_pool(&req->pool, in.len + 1);
    size_t o = (size_t)(q + 1 - in.base);
    memcpy(out, in.base, o);
    const char *cur = q + 1;
    bool changed = false, first = true;
    dc_query_part_t pt;
    while (dc_query_next(&cur, end, &pt)) {
        if (!first)
            out[o++] = '&';
        first = false;
        size_t kl = dc_query_decode(k, pt.start, (size_t)((pt.eq != NULL ? pt.eq : pt.end) - pt.start));
        bool secret = kl == name_len && memcmp(k, name, name_len) == 0 && pt.eq != NULL && pt.end > pt.eq + 1;
        size_t keep = secret ? (size_t)(pt.eq + 1 - pt.start) : (size_t)(pt.end - pt.start);
        memcpy(out + o, pt.start, keep);
        o += keep;
        if (secret) {
            memcpy(out + o, mask, sizeof(mask) - 1);
            o += sizeof(mask) - 1;
            changed = true;
        }
    }
    if (changed)
        r->log_path = h2o_iovec_init(out, o);
}

const char *dc_request_cache_url(dc_request_t *r)
{
    /* the key is "METHOD PREFIX PATH[?QUERY]" in canonical form (no literal space: spaces are
     * %20), then " NAME:VALUE" for each of the rule's key_headers the request sent (cache/key.h) */
    const char *end = r->key + r->key_len;
    const char *k = memchr(r->key, ' ', r->key_len);
    DC_ASSERT(k != NULL);
    const char *rest = k + 1 + route_prefix_len(r->ctx.route);
    const char *sp = memchr(rest, ' ', (size_t)(end - rest));
    return upstream_url(r, rest, (size_t)((sp != NULL ? sp : end) - rest));
}

static bool header_is(const h2o_header_t *h, const char *name, size_t len)
{
    return h->name->len == len && memcmp(h->name->base, name, len) == 0;
}

static char *concat(h2o_mem_pool_t *pool, const char *a, size_t alen, const char *b, size_t blen, const char *c,
                    size_t clen)
{
    return h2o_concat(pool, h2o_iovec_init(a, alen), h2o_iovec_init(b, blen), h2o_iovec_init(c, clen)).base;
}

static bool in_names(char *const *names, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* Is request header `name` forwarded on the cache path? The default allow-list, the route's
 * forward_headers, the rule's key_headers and the names of the URL's vary record (those are in the
 * key). */
static bool cache_forwards(const dc_request_t *r, const char *name, size_t len)
{
    if ((len == 5 && strncasecmp(name, "range", 5) == 0) || (len == 8 && strncasecmp(name, "if-range", 8) == 0))
        return false; /* the cache fetches whole objects and slices them itself (http/range.h) */
    return dc_hop_cache_default_forward(name, len) ||
           in_names(r->ctx.route->forward_headers, r->ctx.route->nforward_headers, name, len) ||
           (r->ctx.rule != NULL && in_names(r->ctx.rule->key_headers, r->ctx.rule->nkey_headers, name, len)) ||
           (r->vary_names != NULL && dc_http_vary_forwards(r, name, len)); /* in the secondary key */
}

/*
 * "Name: value" lines toward the upstream, in the request pool, NULL-terminated.
 *
 * `for_cache`: the answer will be shared with other clients, and the cache key is the method and
 * URL (plus the rule's key_headers): only headers that cannot make the answer differ between
 * clients go, i.e. the default allow-list (dc_hop_cache_default_forward), the route's
 * forward_headers and the rule's key_headers. Everything else (X-Forwarded-Host, X-Original-URL,
 * X-HTTP-Method-Override, cookies, the client's own API key, conditionals, Accept-Encoding: the fill
 * asks gzip itself) stays here. Otherwise (pass-through: the answer is this client's alone) the
 * client's headers go as sent, minus hop-by-hop headers, Host and framing, and the spoofable
 * forwarding headers (dc_hop_is_spoofable).
 *
 * Either way dexcache says who the client is, from what it knows: X-Forwarded-For (the peer
 * address, appended to the client's X-Forwarded-For only when the peer is one of
 * server.trusted_proxies), X-Forwarded-Proto, Forwarded (for, proto; and host on pass-through), and
 * on pass-through X-Forwarded-Host (the Host the client asked for: not in the cache key, so never
 * sent for a shared answer). Via gets our hop; X-Request-Id is ours.
 */
/* What the copy of the client's headers set aside for the lines added after it. */
typedef struct relayed {
    const char *xff, *via; /* the client's X-Forwarded-For and Via values, or NULL */
    size_t xff_len, via_len;
    bool has_accept;
} relayed_t;

/* The value of the client's Connection header (the names it lists are hop-by-hop too), or NULL. */
static const char *connection_value(const h2o_req_t *req, size_t *len)
{
    const char *value = NULL;
    *len = 0;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (header_is(h, H2O_STRLIT("connection"))) {
            value = h->value.base;
            *len = h->value.len;
        }
    }
    return value;
}

/* Copy the client's end-to-end headers into lines[*n...] ("Name: value", pool memory): no hop-by-hop,
 * framing, spoofable or pseudo headers; the client's API key only where the route forwards it (never
 * on the cache path), on the cache path only what the rule forwards. X-Forwarded-For and Via are set
 * aside in *rel for the lines that follow. Sets r->client_key_forwarded. */
static size_t copy_client_headers(dc_request_t *r, bool for_cache, const char **lines, size_t n, relayed_t *rel)
{
    h2o_req_t *req = r->req;
    const dc_config_route_t *route = r->ctx.route;
    const char *key_header = route->upstream->key_header;
    size_t key_len = key_header ? strlen(key_header) : 0;
    size_t conn_len;
    const char *conn_value = connection_value(req, &conn_len);
    r->client_key_forwarded = false;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        const char *name = h->name->base;
        size_t nlen = h->name->len;
        if (dc_hop_is_hop_by_hop(name, nlen) ||
            (conn_value != NULL && dc_hop_listed_in_connection(conn_value, conn_len, name, nlen)))
            continue;
        if (header_is(h, H2O_STRLIT("host")) || header_is(h, H2O_STRLIT("content-length")) ||
            header_is(h, H2O_STRLIT("expect")) || header_is(h, H2O_STRLIT("x-request-id")) ||
            (nlen > 0 && name[0] == ':'))
            continue;
        if (header_is(h, H2O_STRLIT("x-forwarded-for"))) {
            rel->xff = h->value.base; /* believed only from a trusted proxy (add_forwarded) */
            rel->xff_len = h->value.len;
            continue;
        }
        if (dc_hop_is_spoofable(name, nlen))
            continue;
        if (header_is(h, H2O_STRLIT("via"))) {
            rel->via = h->value.base;
            rel->via_len = h->value.len;
            continue;
        }
        if (key_len > 0 && nlen == key_len && strncasecmp(name, key_header, key_len) == 0) {
            if (!route->forward_client_key || for_cache)
                continue;                   /* the client's own key never leaks upstream unless the route says so */
            r->client_key_forwarded = true; /* it replaces ours: never send two keys */
        }
        if (for_cache && !cache_forwards(r, name, nlen))
            continue;
        if (header_is(h, H2O_STRLIT("accept")))
            rel->has_accept = true;
        lines[n++] = concat(&req->pool, name, nlen, H2O_STRLIT(": "), h->value.base, h->value.len);
    }
    return n;
}

/* X-Forwarded-For (the client's chain only from a trusted proxy), X-Forwarded-Proto, and Forwarded
 * (RFC 7239; with the host and X-Forwarded-Host off the cache path, when the host is safe to quote). */
static size_t add_forwarded(dc_request_t *r, bool for_cache, const relayed_t *rel, const char **lines, size_t n)
{
    h2o_req_t *req = r->req;
    const char *ip = dc_request_client_ip(r);
    size_t iplen = strlen(ip);
    bool from_trusted = rel->xff != NULL && r->ctx.snap != NULL && r->ctx.snap->ntrusted > 0 &&
                        dc_cidr_match_any(r->ctx.snap->trusted, r->ctx.snap->ntrusted, ip, iplen);
    if (from_trusted)
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("X-Forwarded-For: ")),
                                h2o_iovec_init(rel->xff, rel->xff_len), h2o_iovec_init(H2O_STRLIT(", ")),
                                h2o_iovec_init(ip, iplen))
                         .base;
    else
        lines[n++] = concat(&req->pool, H2O_STRLIT("X-Forwarded-For: "), ip, iplen, "", 0);
    bool https = req->scheme == &H2O_URL_SCHEME_HTTPS;
    lines[n++] = https ? "X-Forwarded-Proto: https" : "X-Forwarded-Proto: http";
    /* RFC 7239: an IPv6 node is quoted and bracketed; the host is always quoted (it may hold ':') */
    bool v6 = memchr(ip, ':', iplen) != NULL;
    h2o_iovec_t fwd_for = v6 ? h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("\"[")), h2o_iovec_init(ip, iplen),
                                          h2o_iovec_init(H2O_STRLIT("]\"")))
                             : h2o_iovec_init(ip, iplen);
    const char *proto = https ? ";proto=https" : ";proto=http";
    if (for_cache) {
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Forwarded: for=")), fwd_for,
                                h2o_iovec_init(proto, strlen(proto)))
                         .base;
        return n;
    }
    h2o_iovec_t host = req->authority;
    bool host_ok = host.len > 0 && host.len < 256 && memchr(host.base, '"', host.len) == NULL &&
                   memchr(host.base, '\\', host.len) == NULL;
    if (host_ok) {
        lines[n++] = concat(&req->pool, H2O_STRLIT("X-Forwarded-Host: "), host.base, host.len, "", 0);
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Forwarded: for=")), fwd_for,
                                h2o_iovec_init(H2O_STRLIT(";host=\"")), host, h2o_iovec_init(H2O_STRLIT("\"")),
                                h2o_iovec_init(proto, strlen(proto)))
                         .base;
    } else {
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Forwarded: for=")), fwd_for,
                                h2o_iovec_init(proto, strlen(proto)))
                         .base;
    }
    return n;
}

/* Via (appended to the client's off the cache path), X-Request-Id, and an empty Accept when the
 * client sent none. */
static size_t add_via_and_id(dc_request_t *r, bool for_cache, const relayed_t *rel, const char **lines, size_t n)
{
    h2o_req_t *req = r->req;
    const char *hop = req->version >= 0x200 ? "2 dexcache" : (req->version == 0x100 ? "1.0 dexcache" : "1.1 dexcache");
    if (rel->via != NULL && !for_cache)
        lines[n++] = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("Via: ")), h2o_iovec_init(rel->via, rel->via_len),
                                h2o_iovec_init(H2O_STRLIT(", ")), h2o_iovec_init(hop, strlen(hop)))
                         .base;
    else
        lines[n++] = concat(&req->pool, H2O_STRLIT("Via: "), hop, strlen(hop), "", 0);
    lines[n++] = concat(&req->pool, H2O_STRLIT("X-Request-Id: "), r->request_id, strlen(r->request_id), "", 0);
    if (!rel->has_accept)
        lines[n++] = "Accept:"; /* stop curl from inventing a default Accept header */
    return n;
}

const char **dc_request_upstream_headers(dc_request_t *r, bool for_cache)
{
    h2o_req_t *req = r->req;
    /* the client's lines, then at most 7 of ours and the NULL (room for 10) */
    const char **lines = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * (req->headers.size + 10));
    relayed_t rel = {0};
    size_t n = copy_client_headers(r, for_cache, lines, 0, &rel);
    n = add_forwarded(r, for_cache, &rel, lines, n);
    n = add_via_and_id(r, for_cache, &rel, lines, n);
    lines[n] = NULL;
    return lines;
}

void dc_request_key_add_headers(dc_request_t *r)
{
    const dc_config_cache_rule_t *rule = r->ctx.rule;
    if (rule == NULL || rule->nkey_headers == 0)
        return;
    h2o_req_t *req = r->req;
    size_t cap = r->key_len + 1;
    for (size_t i = 0; i < req->headers.size; i++) {
        const h2o_header_t *h = &req->headers.entries[i];
        if (in_names(rule->key_headers, rule->nkey_headers, h->name->base, h->name->len))
            cap += dc_cache_key_header_bound(h->name->len, h->value.len);
    }
    if (cap == r->key_len + 1)
        return; /* none sent: the plain key */
    char *buf = h2o_mem_alloc_pool(&req->pool, cap);
    memcpy(buf, r->key, r->key_len);
    size_t len = r->key_len;
    for (size_t k = 0; k < rule->nkey_headers; k++) { /* in the rule's order, each occurrence in the request's */
        const char *want = rule->key_headers[k];
        size_t wl = strlen(want);
        for (size_t i = 0; i < req->headers.size; i++) {
            const h2o_header_t *h = &req->headers.entries[i];
            if (h->name->len == wl && strncasecmp(h->name->base, want, wl) == 0)
                len += dc_cache_key_add_header(buf + len, cap - len, want, wl, h->value.base, h->value.len);
        }
    }
    buf[len] = '\0';
    r->key = buf;
    r->key_len = len;
    r->hash = dc_cache_hash(buf, len);
}

void dc_request_record_upstream(dc_worker_t *w, dc_upstream_rt_t *up_rt, dc_fetch_t *f, int err)
{
    dc_worker_metrics_t *m = &w->metrics;
    unsigned id = up_rt->metrics_id;
    unsigned attempts = dc_fetch_attempts(f);
    dc_counter_add(&m->upstream_attempts[id], attempts);
    if (attempts > 1)
        dc_counter_add(&m->upstream_retries[id], attempts - 1);
    int status = dc_fetch_status(f);
    if (err == 0 || status != 0)
        dc_counter_add(&m->upstream_responses[id][dc_metrics_status_class(status)], 1);
    else
        dc_counter_add(&m->upstream_responses[id][0], 1);
    if (err == DC_ETIMEDOUT)
        dc_counter_add(&m->upstream_timeouts[id], 1);
    if (dc_fetch_head_us(f) > 0)
        dc_metrics_observe_upstream_latency(m, id, dc_fetch_head_us(f));
    uint64_t now = dc_now_mono_us(), start = dc_fetch_started_us(f);
    dc_metrics_observe_upstream_duration(m, id, now > start ? now - start : 0);
}

static bool named(const dc_fetch_header_t *h, const char *name)
{
    size_t l = strlen(name);
    return h->name_len == l && memcmp(h->name, name, l) == 0;
}

/* Is h named by a field-name qualifier of any of the answer's cache directives? */
static bool named_by_qualifier(const dc_fetch_header_t *hs, size_t n, const dc_fetch_header_t *h)
{
    return dc_resphdr_cc_strips(hs, n, DC_CC_FROM_CACHE_CONTROL, h) ||
           dc_resphdr_cc_strips(hs, n, DC_CC_FROM_DEXCACHE, h) || dc_resphdr_cc_strips(hs, n, DC_CC_FROM_CDN, h);
}

const char *dc_request_cache_status_tier(h2o_mem_pool_t *pool, const char *cs, unsigned tier)
{
    if (tier <= 1)
        return cs;
    const char *d = strstr(cs, "detail=");
    char *out;
    if (d == NULL) {
        out = h2o_mem_alloc_pool(pool, strlen(cs) + 32);
        sprintf(out, "%s; detail=tier-%u", cs, tier);
        return out;
    }
    const char *v = d + 7;
    size_t vlen = strcspn(v, ";");
    if (*v == '"') /* a string already: leave it */
        return cs;
    out = h2o_mem_alloc_pool(pool, strlen(cs) + 40);
    sprintf(out, "%.*s\"%.*s tier-%u\"%s", (int)(v - cs), cs, (int)vlen, v, tier, v + vlen);
    return out;
}

/* Passthrough added its Cache-Status before the fetch: name the tier in it now. */
static void note_tier(dc_request_t *r, dc_fetch_t *f)
{
    r->tier = dc_fetch_tier(f);
    if (r->tier <= 1)
        return;
    h2o_req_t *req = r->req;
    ssize_t i = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("cache-status"), -1);
    if (i < 0)
        return;
    h2o_header_t *h = &req->res.headers.entries[i];
    const char *cs = h2o_strdup(&req->pool, h->value.base, h->value.len).base;
    const char *n = dc_request_cache_status_tier(&req->pool, cs, r->tier);
    h->value = h2o_iovec_init(n, strlen(n));
}

void dc_request_set_upstream_head(dc_request_t *r, dc_fetch_t *f, unsigned flags)
{
    note_tier(r, f);
    h2o_req_t *req = r->req;
    int status = dc_fetch_status(f);
    r->upstream_us = dc_fetch_head_us(f);
    req->res.status = status;
    const char *reason = dc_fetch_reason(f);
    req->res.reason = reason[0] ? h2o_strdup(&req->pool, reason, strlen(reason)).base : dc_http_reason(status);
    size_t n, conn_len, via_len;
    const dc_fetch_header_t *hs = dc_fetch_headers(f, &n);
    const char *conn = dc_resphdr_find(hs, n, "connection", &conn_len);
    const char *via = dc_resphdr_find(hs, n, "via", &via_len);
    for (size_t i = 0; i < n; i++) {
        const dc_fetch_header_t *h = &hs[i];
        if (!dc_resphdr_forward(h, conn, conn_len) || ((flags & DC_HEAD_SKIP_ETAG) && named(h, "etag")) ||
            ((flags & DC_HEAD_SKIP_CACHE_CONTROL) && named(h, "cache-control")) ||
            ((flags & DC_HEAD_SKIP_CDN_CC) && named(h, "cdn-cache-control")) ||
            ((flags & DC_HEAD_DECODED) && (named(h, "content-encoding") || named(h, "vary"))) ||
            ((flags & DC_HEAD_RANGES) && named(h, "accept-ranges")) ||
            ((flags & DC_HEAD_STRIP_QUALIFIED) && named_by_qualifier(hs, n, h)))
            continue;
        dc_request_add_header(r, h->name, h->name_len, h->value, h->value_len);
    }
    char tmp[512];
    int tl = via ? snprintf(tmp, sizeof(tmp), "%.*s, 1.1 dexcache", (int)(via_len > 400 ? 400 : via_len), via)
                 : snprintf(tmp, sizeof(tmp), "1.1 dexcache");
    dc_request_add_header(r, H2O_STRLIT("via"), tmp, (size_t)tl);
    tl = snprintf(tmp, sizeof(tmp), "upstream;dur=%.1f", (double)r->upstream_us / 1000.0);
    dc_request_add_header(r, H2O_STRLIT("server-timing"), tmp, (size_t)tl);
    /* a 429 that only says when in Jupiter's x-ratelimit-reset: clients get the standard header too */
    size_t ra_len;
    if (status == 429 && dc_resphdr_find(hs, n, "retry-after", &ra_len) == NULL) {
        uint64_t s = dc_fetch_upstream_retry_after_s(f);
        if (s > 0) {
            tl = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)s);
            dc_request_add_header(r, H2O_STRLIT("retry-after"), tmp, (size_t)tl);
        }
    }
    int64_t cl = (flags & DC_HEAD_DECODED) ? -1 : dc_fetch_content_length(f);
    if (r->is_head)
        req->res.content_length = cl >= 0 ? (size_t)cl : 0;
    else
        req->res.content_length = cl >= 0 ? (size_t)cl : SIZE_MAX;
    if (status == 204 || status == 304)
        req->res.content_length = SIZE_MAX;
}

void dc_fetch_request_from_upstream(dc_fetch_request_t *fr, const dc_config_upstream_t *up, dc_upstream_rt_t *rt,
                                    bool with_keys, struct dc_fleet *fleet)
{
    dc_keyring_t *keyring = with_keys ? &rt->keyring : NULL;
    fr->budget = &rt->budget;
    fr->key_budgets = with_keys ? rt->key_budgets : NULL;
    fr->fleet = fleet;
    fr->upstream_name = up->name;
    fr->retries = up->retries;
    fr->retry_backoff_ms = up->retry_backoff_ms;
    fr->connect_timeout_ms = up->connect_timeout_ms;
    fr->timeout_ms = up->timeout_ms;
    fr->idle_timeout_ms = up->idle_timeout_ms;
    fr->http2 = up->http2;
    fr->tls_verify = up->tls_verify;
    fr->keyring = keyring;
    fr->key_header = up->key_header;
    fr->health = &rt->health;
    fr->breaker = dc_upstream_breaker_params(up, up->connect_timeout_ms + up->timeout_ms);
    fr->tiers = with_keys ? rt->tiers : rt->tiers_keyless;
    fr->ntiers = rt->ntiers;
    fr->retry_budget = &rt->retry_budget;
    fr->attempt_timeout_ms = up->attempt_timeout_ms;
}

/* ---- event streams (registered from the layer above: sse/) ---- */

static const dc_http_stream_ops_t *stream_ops; /* written once at start-up, before workers run */

void dc_http_register_streams(const dc_http_stream_ops_t *ops)
{
    stream_ops = ops;
}

void dc_http_stream_subscribe(dc_request_t *r, const dc_config_stream_t *stream)
{
    if (stream_ops == NULL) {
        dc_request_respond_error(r, 503, "event streams are not available");
        return;
    }
    stream_ops->subscribe(r, stream);
}

void dc_http_stream_proceed(dc_request_t *r)
{
    if (r->sse != NULL)
        stream_ops->proceed(r->sse); /* r->sse is only ever set by the registered module */
}

void dc_request_detach_sources(dc_request_t *r)
{
    if (r->fetch != NULL) {
        dc_fetch_abort(r->fetch);
        r->fetch = NULL;
    }
    if (r->fill != NULL) {
        struct dc_fill *fill = r->fill;
        r->fill = NULL;
        dc_fill_detach(fill, r);
    }
    dc_serve_stream_detach(r);
    if (r->sse != NULL)
        stream_ops->detach(r->sse);
}
