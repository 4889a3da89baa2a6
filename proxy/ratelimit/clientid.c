#include "ratelimit/clientid.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int dc_cidr_parse(const char *s, dc_cidr_t *out)
{
    char buf[64];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof(buf))
        return DC_EINVAL;
    memcpy(buf, s, len + 1);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        *slash = '\0';
        char *end;
        prefix = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || prefix < 0)
            return DC_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = prefix < 0 ? 32 : (unsigned)prefix;
        return out->prefix <= 32 ? 0 : DC_EINVAL;
    }
    if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = prefix < 0 ? 128 : (unsigned)prefix;
        return out->prefix <= 128 ? 0 : DC_EINVAL;
    }
    return DC_EINVAL;
}

static bool in_cidr(const dc_cidr_t *c, const uint8_t *addr)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool dc_cidr_match_any(const dc_cidr_t *list, size_t n, const char *ip, size_t len)
{
    char buf[64];
    if (n == 0 || len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, ip, len);
    buf[len] = '\0';
    uint8_t a4[4], a6[16];
    bool v4 = inet_pton(AF_INET, buf, a4) == 1;
    bool v6 = !v4 && inet_pton(AF_INET6, buf, a6) == 1;
    for (size_t i = 0; i < n; i++) {
        if (v4 && list[i].family == AF_INET && in_cidr(&list[i], a4))
            return true;
        if (v6 && list[i].family == AF_INET6 && in_cidr(&list[i], a6))
            return true;
    }
    return false;
}

static size_t put(char *out, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(out, s, len);
    out[len] = '\0';
    return len;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

size_t dc_client_id(const char *peer, const char *xff, size_t xff_len, const char *cf, size_t cf_len,
                    const dc_cidr_t *trusted, size_t ntrusted, char *out, size_t cap)
{
    size_t plen = strlen(peer);
    if (!dc_cidr_match_any(trusted, ntrusted, peer, plen))
        return put(out, cap, peer, plen);
    if (cf != NULL) {
        trim(&cf, &cf_len);
        if (cf_len > 0 && cf_len < 46)
            return put(out, cap, cf, cf_len);
    }
    const char *last = peer;
    size_t last_len = plen;
    while (xff != NULL && xff_len > 0) {
        /* rightmost element */
        size_t i = xff_len;
        while (i > 0 && xff[i - 1] != ',')
            i--;
        const char *item = xff + i;
        size_t ilen = xff_len - i;
        trim(&item, &ilen);
        xff_len = i > 0 ? i - 1 : 0;
        if (ilen == 0)
            continue;
        last = item;
        last_len = ilen;
        if (!dc_cidr_match_any(trusted, ntrusted, item, ilen))
            break; /* the first untrusted address from the right is the client */
    }
    return put(out, cap, last, last_len);
}
