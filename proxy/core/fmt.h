/* Small formatting and parsing helpers for hot paths (no printf machinery). */
#ifndef DC_CORE_FMT_H
#define DC_CORE_FMT_H

#include <stdbool.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal digits of v into buf (at least 21 bytes); returns the length; no NUL is written. */
static inline size_t dc_fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/* The value of one hex digit (either case), or -1. */
static inline int dc_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A query component form-decoded into out (room for n + 1 bytes; NUL-terminated): '+' is a space,
 * %XX its byte, a malformed '%' stays as it is. Returns the decoded length. */
static inline size_t dc_query_decode(char *out, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            out[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < n && dc_hex_value(s[i + 1]) >= 0 && dc_hex_value(s[i + 2]) >= 0) {
            out[o++] = (char)(dc_hex_value(s[i + 1]) * 16 + dc_hex_value(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
}

/* One '&'-separated part of a query string: [start, end), and its first '=' (NULL when it has none). */
typedef struct dc_query_part {
    const char *start, *end, *eq;
} dc_query_part_t;

/* The part at *cur (a query without its '?', up to `end`) into *part, and *cur moved past it; false
 * once every part was read. "a&" has two parts, the second empty. Start with *cur = the query. */
static inline bool dc_query_next(const char **cur, const char *end, dc_query_part_t *part)
{
    const char *p = *cur;
    if (p == NULL || p > end)
        return false;
    const char *amp = (const char *)memchr(p, '&', (size_t)(end - p));
    part->start = p;
    part->end = amp != NULL ? amp : end;
    part->eq = (const char *)memchr(p, '=', (size_t)(part->end - p));
    *cur = amp != NULL ? amp + 1 : NULL;
    return true;
}

/* Exactly [s, s+n) as a decimal number: at least one digit, nothing else, no overflow. */
static inline bool dc_parse_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

#endif
