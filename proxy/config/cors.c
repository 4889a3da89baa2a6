/* CORS origins in the config (config.h): the allow_origins syntax and the pure origin match the
 * request path uses (http/cors.c). Both live here so the check and the match cannot disagree. */
#include "config/config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* A DNS name or IPv4 literal of [a-z0-9-] labels separated by single dots (already lowercased). */
static bool is_hostname(const char *s, size_t len, size_t *labels)
{
    size_t n = 0, label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            n++;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    if (label == 0)
        return false;
    *labels = n + 1;
    return true;
}

static bool is_ipv6_literal(const char *s, size_t len)
{
    if (len < 4 || s[0] != '[' || s[len - 1] != ']')
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (!(isxdigit((unsigned char)s[i]) || s[i] == ':' || s[i] == '.'))
            return false;
    return true;
}

int dc_config_cors_origin_normalise(char *s, const char **why)
{
    static const char expect[] = "an origin: https://app.example, https://*.example.org (any subdomain) or *";
    *why = expect;
    if (strcmp(s, "*") == 0)
        return 0;
    if (strcmp(s, "null") == 0) {
        *why = "an origin other than null (sandboxed pages and files all send null: allowing it allows them all)";
        return -1;
    }
    for (char *p = s; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    size_t slen = strlen(s), skip;
    bool https;
    if (strncmp(s, "https://", 8) == 0)
        skip = 8, https = true;
    else if (strncmp(s, "http://", 7) == 0)
        skip = 7, https = false;
    else
        return -1;
    char *host = s + skip;
    size_t hlen = slen - skip;
    if (memchr(host, '/', hlen) != NULL || memchr(host, '?', hlen) != NULL || memchr(host, '#', hlen) != NULL) {
        *why = "an origin without a path (scheme://host[:port], no trailing slash)";
        return -1;
    }
    /* port: after the last ':' that is not inside an IPv6 literal */
    char *colon = NULL;
    char *rb = memchr(host, ']', hlen);
    for (char *p = rb != NULL ? rb : host; p < host + hlen; p++)
        if (*p == ':')
            colon = p;
    if (colon != NULL) {
        size_t plen = (size_t)(host + hlen - (colon + 1));
        if (plen == 0 || plen > 5 || colon[1] == '0')
            return -1;
        for (size_t i = 1; i <= plen; i++)
            if (!isdigit((unsigned char)colon[i]))
                return -1;
        long port = strtol(colon + 1, NULL, 10);
        if (port < 1 || port > 65535)
            return -1;
        if ((https && port == 443) || (!https && port == 80)) /* browsers never send the default port */
            *colon = '\0';
        hlen = (size_t)(colon - host);
    }
    size_t labels;
    if (hlen > 2 && host[0] == '*' && host[1] == '.') {
        if (!is_hostname(host + 2, hlen - 2, &labels) || labels < 2) {
            *why = "a wildcard origin of the form scheme://*.domain.tld (the domain has at least two labels)";
            return -1;
        }
        return 0;
    }
    if (is_ipv6_literal(host, hlen) || is_hostname(host, hlen, &labels))
        return 0;
    return -1;
}

/* Does origin [o, o+len) match wildcard pattern "scheme://STAR.rest"? The part the '*' stands for is one
 * or more whole labels, so https://STAR.example.org matches https://a.b.example.org and not
 * https://example.org, https://evilexample.org or http://a.example.org. */
static bool wildcard_match(const char *pat, const char *star, const char *o, size_t len)
{
    size_t pre = (size_t)(star - pat); /* "https://" */
    size_t suf = strlen(star + 1);     /* ".example.org[:port]" */
    if (len < pre + 1 + suf || memcmp(o, pat, pre) != 0 || memcmp(o + len - suf, star + 1, suf) != 0)
        return false;
    size_t labels;
    return is_hostname(o + pre, len - pre - suf, &labels);
}

bool dc_config_cors_origin_allowed(const dc_config_cors_t *p, const char *origin, size_t len)
{
    if (p->any_origin)
        return true;
    for (size_t i = 0; i < p->nallow_origins; i++) {
        const char *pat = p->allow_origins[i];
        const char *star = strchr(pat, '*');
        if (star != NULL) {
            if (wildcard_match(pat, star, origin, len))
                return true;
        } else if (strlen(pat) == len && memcmp(pat, origin, len) == 0) {
            return true;
        }
    }
    return false;
}
