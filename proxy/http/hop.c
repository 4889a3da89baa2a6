#include "http/hop.h"

#include <string.h>
#include <strings.h>

bool dc_hop_is_hop_by_hop(const char *name, size_t len)
{
    static const char *const hop[] = {
        "connection", "keep-alive",        "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
        "trailer",    "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strlen(hop[i]) == len && strncasecmp(hop[i], name, len) == 0)
            return true;
    return false;
}

bool dc_hop_listed_in_connection(const char *v, size_t vlen, const char *name, size_t len)
{
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == len && len > 0 && strncasecmp(v + start, name, len) == 0)
            return true;
    }
    return false;
}

static bool in_list(const char *const *list, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && strncasecmp(list[i], name, len) == 0)
            return true;
    return false;
}

bool dc_hop_is_spoofable(const char *name, size_t len)
{
    static const char *const spoof[] = {"forwarded",      "x-forwarded",         "x-real-ip",        "true-client-ip",
                                        "x-client-ip",    "x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip",
                                        "x-original-url", "x-original-uri",      "x-rewrite-url",    "x-original-host",
                                        "x-host",         "x-proxyuser-ip",      "client-ip"};
    if (len > 12 && strncasecmp(name, "x-forwarded-", 12) == 0)
        return true;
    return in_list(spoof, sizeof(spoof) / sizeof(spoof[0]), name, len);
}

bool dc_hop_cache_default_forward(const char *name, size_t len)
{
    static const char *const allow[] = {"accept", "content-type", "user-agent", "traceparent", "tracestate"};
    return in_list(allow, sizeof(allow) / sizeof(allow[0]), name, len);
}
