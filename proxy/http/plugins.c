/* The plugin hook points of the request path (http/plugins.h): calls through the operations the
 * plugin module registered, and the on_deliver filter. */
#include "http/plugins.h"
#include "cache/key.h"
#include "core/error.h"
#include "http/steps.h"

#include <stdatomic.h>
#include <string.h>

static const dc_http_plugin_ops_t *plugin_ops;
static atomic_bool want_deliver;

void dc_http_register_plugins(const dc_http_plugin_ops_t *ops)
{
    plugin_ops = ops;
}

void dc_http_plugins_want_deliver(void)
{
    atomic_store_explicit(&want_deliver, true, memory_order_relaxed);
}

bool dc__http_plugins_on_request(dc_request_t *r, const void *chain)
{
    if (plugin_ops == NULL) { /* a chain without a registered module cannot be built; be safe */
        dc_request_respond_error(r, 500, "plugins are not available");
        return false;
    }
    return plugin_ops->on_request(r, chain);
}

bool dc__http_plugins_cache_key(dc_request_t *r, const void *chain)
{
    return plugin_ops == NULL || plugin_ops->cache_key(r, chain);
}

bool dc__http_plugins_view_claim(dc_request_t *r, const void *chain)
{
    return plugin_ops == NULL || plugin_ops->view_claim == NULL || plugin_ops->view_claim(r, chain);
}

void dc__http_plugins_view_fill(dc_request_t *r, dc_flight_t *flight)
{
    DC_ASSERT(r->view && plugin_ops != NULL); /* only a claim sets r->view */
    plugin_ops->view_fill(r, flight);
}

void dc__http_plugins_dispose(dc_request_t *r)
{
    if (plugin_ops != NULL)
        plugin_ops->dispose(r);
}

/* Runs in h2o_start_response, before the head is serialised: every answer of our path passes. */
static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (atomic_load_explicit(&want_deliver, memory_order_relaxed)) {
        dc_request_t *r = dc__http_request_of(req);
        if (r != NULL && r->plugin != NULL && r->req == req) {
            const void *chain = dc_snapshot_route_rt(r->ctx.snap, r->ctx.route)->plugins;
            if (chain != NULL)
                plugin_ops->on_deliver(r, chain);
        }
    }
    h2o_setup_next_ostream(req, slot);
}

void dc__http_plugins_register_filter(h2o_pathconf_t *pathconf)
{
    h2o_filter_t *f = h2o_create_filter(pathconf, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}

static size_t escaped_len(const unsigned char *p, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n; i++)
        out += (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '%') ? 3 : 1;
    return out;
}

void dc_request_key_append(dc_request_t *r, const char *tag, const void *bytes, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = bytes;
    size_t tlen = strlen(tag);
    size_t cap = r->key_len + 2 + tlen + 1 + escaped_len(p, len) + 1;
    char *buf = h2o_mem_alloc_pool(&r->req->pool, cap);
    memcpy(buf, r->key, r->key_len);
    size_t o = r->key_len;
    buf[o++] = ' ';
    buf[o++] = '~';
    memcpy(buf + o, tag, tlen), o += tlen;
    buf[o++] = '=';
    for (size_t i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '%') {
            buf[o++] = '%';
            buf[o++] = hex[p[i] >> 4];
            buf[o++] = hex[p[i] & 15];
        } else {
            buf[o++] = (char)p[i];
        }
    }
    buf[o] = '\0';
    DC_ASSERT(o < cap);
    r->key = buf;
    r->key_len = o;
    r->hash = dc_cache_hash(buf, o);
}
