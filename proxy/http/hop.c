#include "http/hop.h"

#include <string.h>
#include <strings.h>

bool dc_hop_is_hop_by_hop(const char *name, size_t len)
{
    static const char *const hop[] = {"connection",          "keep-alive", "proxy-connection",  "proxy-authenticate",
                                      "proxy-authorization", "te",         "trailer",           "transfer-encoding",
                                      "upgrade"};
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
