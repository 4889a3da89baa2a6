#include "http/cdn.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t add_windows(char *buf, size_t cap, size_t o, uint64_t swr_ms, uint64_t sie_ms)
{
    if (swr_ms > 0 && o < cap)
        o += (size_t)snprintf(buf + o, cap - o, ", stale-while-revalidate=%llu", (unsigned long long)(swr_ms / 1000));
    if (sie_ms > 0 && o < cap)
        o += (size_t)snprintf(buf + o, cap - o, ", stale-if-error=%llu", (unsigned long long)(sie_ms / 1000));
    return o;
}

static char *join(const char *const *tags, size_t n, char sep)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(tags[i]) + 1;
    char *s = dc_malloc(len);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(tags[i]);
        if (i > 0)
            s[o++] = sep;
        memcpy(s + o, tags[i], l);
        o += l;
    }
    s[o] = '\0';
    return s;
}

void dc_cdn_headers_build(const dc_config_cdn_t *cdn, const dc_config_cache_rule_t *rule, bool negative,
                          const char *const *tags, size_t ntags, dc_cdn_headers_t *out)
{
    uint64_t max_age = cdn->max_age_ms, s_maxage = cdn->s_maxage_ms;
    uint64_t swr = cdn->stale_while_revalidate_ms, sie = cdn->stale_if_error_ms;
    if (negative) {
        uint64_t n = rule != NULL ? rule->negative_ttl_ms : 0;
        max_age = max_age < n ? max_age : n;
        s_maxage = s_maxage < n ? s_maxage : n;
        swr = sie = 0;
    }
    size_t o = (size_t)snprintf(out->cache_control, sizeof(out->cache_control), "public, max-age=%llu, s-maxage=%llu",
                                (unsigned long long)(max_age / 1000), (unsigned long long)(s_maxage / 1000));
    add_windows(out->cache_control, sizeof(out->cache_control), o, swr, sie);
    out->cdn_cache_control[0] = '\0';
    if (cdn->cdn_cache_control) {
        o = (size_t)snprintf(out->cdn_cache_control, sizeof(out->cdn_cache_control), "max-age=%llu",
                             (unsigned long long)(s_maxage / 1000));
        add_windows(out->cdn_cache_control, sizeof(out->cdn_cache_control), o, swr, sie);
    }
    out->surrogate_key = join(tags, ntags, ' ');
    out->cache_tag = join(tags, ntags, ',');
}

void dc_cdn_headers_dispose(dc_cdn_headers_t *h)
{
    free(h->surrogate_key);
    free(h->cache_tag);
    h->surrogate_key = h->cache_tag = NULL;
}
