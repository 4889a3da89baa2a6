/* Small formatting helpers for hot paths (no printf machinery). */
#ifndef DC_CORE_FMT_H
#define DC_CORE_FMT_H

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

#endif
