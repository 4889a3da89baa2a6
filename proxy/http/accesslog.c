/* The access log line of a request, written when it is disposed (http/steps.h). */
#include "cache/encode.h"
#include "cache/key.h"
#include "cache/l2fleet.h"
#include "cache/l2codec.h"
#include "cache/policy.h"
#include "core/error.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/time.h"
#include "http/batch.h"
#include "http/handler.h"
#include "http/reqcheck.h"
#include "http/request.h"
#include "http/respond.h"
#include "http/steps.h"
#include "ratelimit/clientid.h"
#include "ratelimit/gcra_fleet.h"
#include "ratelimit/local.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

/* A bounded line under construction: appends past the end are dropped (the line is cut, never
 * overrun). */
typedef struct {
    char *buf;
    size_t cap, len;
} line_t;

static void put(line_t *l, const char *s, size_t n)
{
    if (l->len >= l->cap)
        return;
    if (n > l->cap - l->len)
        n = l->cap - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void putf(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line_t *l, const char *fmt, ...)
{
    if (l->len >= l->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, l->cap - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < l->cap - l->len ? (size_t)n : l->cap - l->len - 1;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlongs, surrogates or
 * code points above U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (len == 0 || len > n || c > 0xf4)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
        (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* A JSON string body: quote, backslash, control bytes and DEL escaped; well-formed UTF-8 as it is
 * (a path /jup/\xc3\xa9 reads "é"); any other byte as U+FFFD, so the line is valid JSON in UTF-8
 * whatever bytes came in. */
static void put_json(line_t *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(l, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(l, e, 6);
        } else if (c < 0x80) {
            put(l, (const char *)&c, 1);
        } else {
            size_t k = utf8_seq((const unsigned char *)s + i, n - i);
            if (k == 0) {
                put(l, H2O_STRLIT("\\ufffd"));
            } else {
                put(l, s + i, k);
                i += k - 1;
            }
        }
    }
}

/* A quoted field of the combined line: nginx's escaping (quote, backslash, control and bytes >= 0x7f
 * as \xHH). */
static void put_nginx(line_t *l, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            put(l, e, 4);
        } else {
            put(l, (const char *)&c, 1);
        }
    }
}

/* The client's traceparent when it has the W3C shape (version-traceid-parentid-flags, lowercase hex:
 * 55 bytes for version 00, a longer future version with the same prefix); NULL otherwise, so nothing
 * a client sends can break a line. */
static const h2o_iovec_t *traceparent_of(h2o_req_t *req)
{
    ssize_t idx = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);
    if (idx < 0)
        return NULL;
    const h2o_iovec_t *v = &req->headers.entries[idx].value;
    if (v->len < 55 || v->len > 128)
        return NULL;
    for (size_t i = 0; i < v->len; i++) {
        char c = v->base[i];
        bool dash = i == 2 || i == 35 || i == 52 || i == 55;
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (dash ? c != '-' : !(hex || (i > 55 && c == '-')))
            return NULL;
    }
    if (v->len != 55 && memcmp(v->base, "00", 2) == 0)
        return NULL;
    return v;
}

static const h2o_iovec_t *header_of(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t idx = h2o_find_header(&req->headers, token, -1);
    return idx >= 0 ? &req->headers.entries[idx].value : NULL;
}

/* What one line says besides what the h2o request holds. */
typedef struct access {
    int format;         /* dc_log_format_t */
    const char *client; /* the client's address (limits' view), "-" when unknown */
    h2o_iovec_t path;   /* as logged (credentials redacted) */
    double dur_ms;
    double up_ms;
    unsigned attempts;
    unsigned tier;     /* 0: not logged (one origin) */
    const char *cache; /* X-Cache, "-" */
    const char *rid;
} access_t;

static void write_line(h2o_req_t *req, const access_t *a)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char ts[40];
    if (a->format == DC_LOG_FORMAT_COMBINED) {
        strftime(ts, sizeof(ts), "%d/%b/%Y:%H:%M:%S +0000", &tm);
    } else {
        size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + tl, sizeof(ts) - tl, ".%03ldZ", now.tv_nsec / 1000000);
    }
    size_t pathlen = a->path.len > 2048 ? 2048 : a->path.len;
    int mlen = (int)(req->input.method.len > 32 ? 32 : req->input.method.len);
    const h2o_iovec_t *tp = traceparent_of(req);
    char buf[4096];
    line_t l = {buf, sizeof(buf), 0};
    switch (a->format) {
    case DC_LOG_FORMAT_JSON:
        putf(&l, "{\"time\":\"%s\",\"client\":\"%s\",\"method\":\"", ts, a->client);
        put_json(&l, req->input.method.base, (size_t)mlen);
        put(&l, H2O_STRLIT("\",\"path\":\""));
        put_json(&l, a->path.base, pathlen);
        putf(&l,
             "\",\"status\":%d,\"bytes\":%zu,\"dur_ms\":%.3f,\"up_ms\":%.3f,\"attempts\":%u,\"cache\":\"%s\","
             "\"rid\":\"%s\"",
             req->res.status, req->bytes_sent, a->dur_ms, a->up_ms, a->attempts, a->cache, a->rid);
        if (a->tier > 0)
            putf(&l, ",\"tier\":%u", a->tier);
        if (tp != NULL)
            putf(&l, ",\"traceparent\":\"%.*s\"", (int)tp->len, tp->base);
        put(&l, "}", 1);
        break;
    case DC_LOG_FORMAT_COMBINED: {
        const h2o_iovec_t *referer = header_of(req, H2O_TOKEN_REFERER);
        const h2o_iovec_t *ua = header_of(req, H2O_TOKEN_USER_AGENT);
        putf(&l, "%s - - [%s] \"", a->client, ts);
        put_nginx(&l, req->input.method.base, (size_t)mlen);
        put(&l, " ", 1);
        put_nginx(&l, a->path.base, pathlen);
        if (req->version >= 0x200)
            putf(&l, " HTTP/%d\" ", req->version >> 8);
        else
            putf(&l, " HTTP/%d.%d\" ", req->version >> 8, req->version & 0xff);
        putf(&l, "%d %zu \"", req->res.status, req->bytes_sent);
        if (referer != NULL)
            put_nginx(&l, referer->base, referer->len > 1024 ? 1024 : referer->len);
        else
            put(&l, "-", 1);
        put(&l, H2O_STRLIT("\" \""));
        if (ua != NULL)
            put_nginx(&l, ua->base, ua->len > 1024 ? 1024 : ua->len);
        else
            put(&l, "-", 1);
        putf(&l, "\" rid=%s cache=%s dur_ms=%.3f", a->rid, a->cache, a->dur_ms);
        if (tp != NULL)
            putf(&l, " traceparent=%.*s", (int)tp->len, tp->base);
        break;
    }
    default:
        /* what the client chose (method, path) is escaped: nothing it sends can end the field and
         * forge another (path="/x\" status=200 rid=..." once read as a second status) */
        putf(&l, "time=%s client=%s method=", ts, a->client);
        put_nginx(&l, req->input.method.base, (size_t)mlen);
        put(&l, H2O_STRLIT(" path=\""));
        put_nginx(&l, a->path.base, pathlen);
        putf(&l, "\" status=%d bytes=%zu dur_ms=%.3f up_ms=%.3f attempts=%u cache=%s rid=%s", req->res.status,
             req->bytes_sent, a->dur_ms, a->up_ms, a->attempts, a->cache, a->rid);
        if (a->tier > 0)
            putf(&l, " tier=%u", a->tier);
        if (tp != NULL)
            putf(&l, " traceparent=%.*s", (int)tp->len, tp->base);
        break;
    }
    dc_log_access_line(buf, l.len);
}

void dc__http_access_log(dc_request_t *r, h2o_req_t *req)
{
    if (!dc_log_access_enabled())
        return;
    bool tiered = r->tier > 0 && r->ctx.up_rt != NULL && r->ctx.up_rt->ntiers > 1; /* which origin answered */
    access_t a = {
        .format = r->ctx.snap->cfg->log.format,
        .client = dc_request_real_ip(r),
        .path = r->log_path.base != NULL ? r->log_path : req->input.path, /* credentials redacted */
        .dur_ms = (double)(dc_now_mono_us() - r->start_us) / 1000.0,
        .up_ms = (double)r->upstream_us / 1000.0,
        .attempts = r->attempts,
        .tier = tiered ? r->tier : 0,
        .cache = r->x_cache ? r->x_cache : "-",
        .rid = r->request_id,
    };
    write_line(req, &a);
}

/* A request libh2o answered itself before our handler saw it (a malformed request line or header,
 * a body over the size limit): its 400/413 gets a line too, with the request id the JSON error
 * filter gave it (http/respond.h). */
static void log_h2o_answered(h2o_logger_t *self, h2o_req_t *req)
{
    (void)self;
    if (!dc_log_access_enabled() || dc__http_request_of(req) != NULL)
        return; /* ours: logged at disposal (handler.c) */
    dc_worker_t *w = dc_worker_from_ctx(req->conn->ctx);
    char peer[INET6_ADDRSTRLEN];
    dc_conn_peer_ip(req->conn, peer);
    ssize_t idx = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);
    char rid[80] = "-";
    if (idx >= 0) {
        h2o_iovec_t v = req->res.headers.entries[idx].value;
        snprintf(rid, sizeof(rid), "%.*s", (int)(v.len < sizeof(rid) ? v.len : sizeof(rid) - 1), v.base);
    }
    struct timeval now;
    gettimeofday(&now, NULL);
    double dur_ms = req->timestamps.request_begin_at.tv_sec != 0
                        ? (double)(now.tv_sec - req->timestamps.request_begin_at.tv_sec) * 1000.0 +
                              (double)(now.tv_usec - req->timestamps.request_begin_at.tv_usec) / 1000.0
                        : 0.0;
    access_t a = {.format = w->snap->cfg->log.format,
                  .client = peer,
                  .path = req->input.path,
                  .dur_ms = dur_ms > 0 ? dur_ms : 0,
                  .cache = "-",
                  .rid = rid};
    write_line(req, &a);
}

void dc_http_log_h2o_answered(h2o_hostconf_t *host)
{
    h2o_logger_t *l = h2o_create_logger(&host->fallback_path, sizeof(*l));
    l->log_access = log_h2o_answered;
}
