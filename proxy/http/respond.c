#include "http/respond.h"

#include <stdio.h>
#include <string.h>

const char *dc_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static size_t json_escape(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(dst + o, cap - o, "\\u%04x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}

size_t dc_error_json(char *buf, size_t cap, int status, const char *message, const char *request_id)
{
    return dc_error_json_upstream(buf, cap, status, message, NULL, NULL, request_id);
}

size_t dc_error_json_upstream(char *buf, size_t cap, int status, const char *message, const char *upstream,
                              const char *cause, const char *request_id)
{
    char msg[512], up[160], why[512], rid[160];
    json_escape(msg, sizeof(msg), message != NULL ? message : "");
    int n = snprintf(buf, cap, "{\"error\":\"%s\",\"status\":%d", msg, status);
    if (upstream != NULL && n >= 0 && (size_t)n < cap) {
        json_escape(up, sizeof(up), upstream);
        n += snprintf(buf + n, cap - (size_t)n, ",\"upstream\":\"%s\"", up);
    }
    if (cause != NULL && n >= 0 && (size_t)n < cap) {
        json_escape(why, sizeof(why), cause);
        n += snprintf(buf + n, cap - (size_t)n, ",\"cause\":\"%s\"", why);
    }
    if (request_id != NULL && n >= 0 && (size_t)n < cap) {
        json_escape(rid, sizeof(rid), request_id);
        n += snprintf(buf + n, cap - (size_t)n, ",\"request_id\":\"%s\"", rid);
    }
    if (n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, "}");
    if (n < 0)
        n = 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

void dc_respond_error(h2o_req_t *req, int status, const char *message, const char *request_id)
{
    dc_respond_error_upstream(req, status, message, NULL, NULL, request_id);
}

void dc_respond_error_upstream(h2o_req_t *req, int status, const char *message, const char *upstream, const char *cause,
                               const char *request_id)
{
    char body[2048];
    size_t len = dc_error_json_upstream(body, sizeof(body), status, message, upstream, cause, request_id);
    req->res.status = status;
    req->res.reason = dc_http_reason(status);
    req->res.content_length = len; /* h2o_send_inline leaves it unset, which would close keep-alive */
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"), 1);
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"), 1);
    if (request_id != NULL)
        h2o_set_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, request_id,
                              strlen(request_id), 1);
    h2o_send_inline(req, body, len);
}

/* ---- libh2o's own error answers, as JSON ---- */

typedef struct json_error_filter {
    h2o_filter_t super;
    size_t (*next_id)(h2o_req_t *req, char *buf);
} json_error_filter_t;

typedef struct json_error_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body; /* in the request's pool; emptied once sent */
} json_error_ostream_t;

static void json_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *inbufs, size_t inbufcnt,
                            h2o_send_state_t state)
{
    json_error_ostream_t *o = (json_error_ostream_t *)self;
    h2o_iovec_t body = o->body;
    o->body = h2o_iovec_init(NULL, 0);
    (void)inbufs;
    /* HEAD: libh2o sends no buffers, and neither do we */
    h2o_ostream_send_next(&o->super, req, &body, inbufcnt != 0 && body.len != 0 ? 1 : 0, state);
}

static const char *h2o_error_message(int status)
{
    switch (status) {
    case 400:
        return "malformed request body";
    case 413:
        return "request body too large";
    case 417:
        return "unsupported Expect";
    default:
        return dc_http_reason(status);
    }
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    json_error_filter_t *f = (json_error_filter_t *)self;
    if (req->res.status >= 400) {
        char rid[72], body[512];
        const char *id = NULL;
        if (f->next_id != NULL) {
            f->next_id(req, rid);
            id = rid;
        }
        size_t len = dc_error_json(body, sizeof(body), req->res.status, h2o_error_message(req->res.status), id);
        json_error_ostream_t *o = (json_error_ostream_t *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = json_error_send;
        o->body = h2o_strdup(&req->pool, body, len);
        req->res.reason = dc_http_reason(req->res.status);
        req->res.content_length = len;
        memset(&req->res.headers, 0, sizeof(req->res.headers));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        if (id != NULL)
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL,
                                  h2o_strdup(&req->pool, id, SIZE_MAX).base, strlen(id));
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

void dc_respond_h2o_errors_as_json(h2o_hostconf_t *host, size_t (*next_id)(h2o_req_t *req, char *buf))
{
    json_error_filter_t *f = (json_error_filter_t *)h2o_create_filter(&host->fallback_path, sizeof(*f));
    f->super.on_setup_ostream = json_error_setup;
    f->next_id = next_id;
}
