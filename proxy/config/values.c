/*
 * Scalar value syntax: durations, sizes, rates, listen addresses, booleans, integers, CIDRs,
 * ${VAR} expansion. All parsers are strict: the whole string must match, no sign, no spaces, and
 * a value that cannot be represented exactly (1.5ms, 0.1B) is refused instead of rounded.
 */
#include "config/config.h"
#include "config/values.h"
#include "core/error.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct unit {
    const char *suffix;
    uint64_t mult;
} unit_t;

#define KiB 1024ull
static const unit_t duration_units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000}, {NULL, 0},
};
static const unit_t size_units[] = {
    {"", 1},
    {"B", 1},
    {"k", KiB},
    {"K", KiB},
    {"KiB", KiB},
    {"KB", 1000},
    {"kB", 1000},
    {"m", KiB *KiB},
    {"M", KiB *KiB},
    {"MiB", KiB *KiB},
    {"MB", 1000000},
    {"g", KiB *KiB *KiB},
    {"G", KiB *KiB *KiB},
    {"GiB", KiB *KiB *KiB},
    {"GB", 1000000000},
    {"t", KiB *KiB *KiB *KiB},
    {"T", KiB *KiB *KiB *KiB},
    {"TiB", KiB *KiB *KiB *KiB},
    {"TB", 1000000000000ull},
    {NULL, 0},
};

/*
 * "<digits>[.<digits>]<unit>" -> integer in base units. The fraction may have up to 9 digits and
 * must land on a whole base unit. Returns 0, DC_EINVAL (syntax, unknown unit, inexact) or
 * DC_ERANGE (does not fit in 64 bits).
 */
static int parse_scaled(const char *s, const unit_t *units, uint64_t *out)
{
    const char *p = s;
    unsigned __int128 whole = 0, frac = 0, scale = 1;
    if (!isdigit((unsigned char)*p))
        return DC_EINVAL;
    bool big = false;
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (unsigned)(*p - '0');
        if (whole > UINT64_MAX)
            big = true, whole = UINT64_MAX; /* keep scanning to tell syntax errors from range errors */
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return DC_EINVAL;
        for (int n = 0; isdigit((unsigned char)*p); p++, n++) {
            if (n == 9)
                return DC_EINVAL;
            frac = frac * 10 + (unsigned)(*p - '0');
            scale *= 10;
        }
    }
    const unit_t *u = units;
    for (; u->suffix != NULL; u++) {
        if (strcmp(p, u->suffix) == 0)
            break;
    }
    if (u->suffix == NULL)
        return DC_EINVAL;
    if ((frac * u->mult) % scale != 0)
        return DC_EINVAL;
    unsigned __int128 v = whole * u->mult + frac * u->mult / scale;
    if (big || v > UINT64_MAX)
        return DC_ERANGE;
    *out = (uint64_t)v;
    return 0;
}

int dc_config_parse_duration_ms(const char *s, uint64_t *out)
{
    return parse_scaled(s, duration_units, out);
}

int dc_config_parse_size(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, out);
}

int dc__config_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return DC_EINVAL;
    bool big = false;
    for (const char *p = s; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return DC_EINVAL;
        if (v > (UINT64_MAX - 9) / 10)
            big = true;
        else
            v = v * 10 + (uint64_t)(*p - '0');
    }
    if (big || v > max)
        return DC_ERANGE;
    *out = v;
    return 0;
}

int dc_config_parse_rate(const char *s, dc_config_rate_t *out)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL || slash == s)
        return DC_EINVAL;
    char num[32];
    size_t nlen = (size_t)(slash - s);
    if (nlen >= sizeof(num))
        return DC_ERANGE;
    memcpy(num, s, nlen);
    num[nlen] = '\0';
    uint64_t limit, window;
    int rc = dc__config_parse_uint(num, UINT32_MAX, &limit);
    if (rc != 0)
        return rc;
    const char *w = slash + 1;
    /* "10/s" and "600/m": a bare unit means one of it */
    if (strcmp(w, "ms") == 0 || strcmp(w, "s") == 0 || strcmp(w, "m") == 0 || strcmp(w, "h") == 0 ||
        strcmp(w, "d") == 0) {
        char one[8];
        snprintf(one, sizeof(one), "1%s", w);
        rc = dc_config_parse_duration_ms(one, &window);
    } else {
        rc = dc_config_parse_duration_ms(w, &window);
    }
    if (rc != 0)
        return rc;
    if (limit == 0 || window == 0)
        return DC_ERANGE;
    out->limit = (uint32_t)limit;
    out->window_ms = window;
    return 0;
}

int dc_config_parse_listen(const char *s, dc_config_listen_t *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text;
    bool ipv6;
    unsigned char addr[16];

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return DC_EINVAL;
        size_t hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= sizeof(host))
            return DC_EINVAL;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1)
            return DC_EINVAL;
        ipv6 = true;
        port_text = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
            return DC_EINVAL;
        size_t hlen = (size_t)(colon - s);
        if (hlen >= sizeof(host))
            return DC_EINVAL;
        if (hlen == 0) {
            strcpy(host, "0.0.0.0"); /* ":8080" = every IPv4 address */
        } else {
            memcpy(host, s, hlen);
            host[hlen] = '\0';
            if (inet_pton(AF_INET, host, addr) != 1) /* also refuses an unbracketed IPv6 address */
                return DC_EINVAL;
        }
        ipv6 = false;
        port_text = colon + 1;
    }
    uint64_t port;
    int rc = dc__config_parse_uint(port_text, 65535, &port);
    if (rc != 0)
        return rc;
    if (port == 0)
        return DC_ERANGE;
    out->host = dc_strdup(host);
    out->port = (uint16_t)port;
    out->ipv6 = ipv6;
    return 0;
}

int dc__config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return DC_EINVAL;
}

int dc__config_parse_cidr(const char *s, char **normalized)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    const char *slash = strchr(s, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host))
        return DC_EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    unsigned maxbits;
    if (inet_pton(AF_INET, host, addr) == 1)
        maxbits = 32;
    else if (inet_pton(AF_INET6, host, addr) == 1)
        maxbits = 128;
    else
        return DC_EINVAL;
    uint64_t bits = maxbits;
    if (slash != NULL && dc__config_parse_uint(slash + 1, maxbits, &bits) != 0)
        return DC_EINVAL;
    *normalized = dc_asprintf("%s/%u", host, (unsigned)bits);
    return 0;
}

bool dc__config_is_header_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (!isalnum(*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
            return false;
    }
    return true;
}

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

int dc__config_expand_env(const char *s, char **out, size_t *bad_off, dc__config_unset_cb on_unset, void *ctx)
{
    size_t cap = strlen(s) + 1, len = 0;
    char *buf = dc_malloc(cap);
#define PUT(ptr, n)                                                                                                    \
    do {                                                                                                               \
        size_t n_ = (n);                                                                                               \
        if (len + n_ + 1 > cap) {                                                                                      \
            cap = (len + n_ + 1) * 2;                                                                                  \
            buf = dc_realloc(buf, cap);                                                                                \
        }                                                                                                              \
        memcpy(buf + len, (ptr), n_);                                                                                  \
        len += n_;                                                                                                     \
    } while (0)
    for (const char *p = s; *p != '\0';) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') { /* escaped: "$${" -> "${" */
            PUT("${", 2);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            PUT(p, 1);
            p++;
            continue;
        }
        const char *name = p + 2, *q = name;
        if (!is_name_start(*q))
            goto bad;
        while (is_name_char(*q))
            q++;
        const char *dflt = NULL, *end;
        if (q[0] == ':' && q[1] == '-') {
            dflt = q + 2;
            end = strchr(dflt, '}');
        } else {
            end = q;
        }
        if (end == NULL || *end != '}')
            goto bad;
        char *var = dc_strndup(name, (size_t)(q - name));
        const char *val = getenv(var);
        if (val == NULL && dflt == NULL && on_unset != NULL)
            on_unset(ctx, var, (size_t)(p - s));
        free(var);
        if (dflt != NULL && (val == NULL || val[0] == '\0'))
            PUT(dflt, (size_t)(end - dflt));
        else if (val != NULL)
            PUT(val, strlen(val));
        p = end + 1;
        continue;
    bad:
        free(buf);
        *bad_off = (size_t)(p - s);
        return DC_EINVAL;
    }
#undef PUT
    buf[len] = '\0';
    *out = buf;
    return 0;
}

void dc__config_format_duration(uint64_t ms, char *buf, size_t len)
{
    static const unit_t units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {NULL, 0}};
    if (ms == 0) {
        snprintf(buf, len, "0");
        return;
    }
    for (const unit_t *u = units; u->suffix != NULL; u++) {
        if (ms % u->mult == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / u->mult), u->suffix);
            return;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

void dc__config_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const unit_t units[] = {
        {"TiB", KiB * KiB * KiB * KiB}, {"GiB", KiB * KiB * KiB}, {"MiB", KiB * KiB}, {"KiB", KiB}, {NULL, 0}};
    if (bytes == 0) {
        snprintf(buf, len, "0");
        return;
    }
    for (const unit_t *u = units; u->suffix != NULL; u++) {
        if (bytes % u->mult == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(bytes / u->mult), u->suffix);
            return;
        }
    }
    snprintf(buf, len, "%llu", (unsigned long long)bytes);
}

uint32_t dc__config_online_cpus(uint32_t max)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return (uint64_t)n > max ? max : (uint32_t)n;
}

bool dc__config_is_reserved_forward_header(const char *s)
{
    static const char *const reserved[] = {
        /* hop-by-hop and framing */
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
        "transfer-encoding", "upgrade", "host", "content-length", "expect",
        /* set by dexcache */
        "via", "x-request-id", "forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip",
        "cf-connecting-ip", "fastly-client-ip", "x-original-url", "x-original-uri", "x-rewrite-url", "x-original-host",
        "x-host", "x-proxyuser-ip", "client-ip", "x-forwarded",
        /* decided by a cache fill */
        "accept-encoding", "if-none-match", "if-match", "if-modified-since", "if-unmodified-since", "if-range",
        "range"};
    if (strncmp(s, "x-forwarded-", 12) == 0)
        return true;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(reserved[i], s) == 0)
            return true;
    return false;
}
