#include "http/range.h"

#include <string.h>
#include <strings.h>

#include "core/fmt.h"

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1*DIGIT at *i, saturating at UINT64_MAX. False when there is no digit. */
static bool number(const char *v, size_t len, size_t *i, uint64_t *out)
{
    if (*i >= len || !digit(v[*i]))
        return false;
    uint64_t n = 0;
    for (; *i < len && digit(v[*i]); (*i)++) {
        uint64_t d = (uint64_t)(v[*i] - '0');
        n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
    }
    *out = n;
    return true;
}

dc_range_result_t dc_range_eval(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
    /* ranges-specifier = range-unit "=" range-set; range-unit is case-insensitive */
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
        return DC_RANGE_NONE;
    size_t i = 6;
    unsigned specs = 0, satisfiable = 0;
    uint64_t f1 = 0, l1 = 0;
    for (;;) {
        /* range-set = 1#range-spec: empty list elements and OWS around commas are allowed */
        while (i < len && (ows(v[i]) || v[i] == ','))
            i++;
        if (i == len)
            break;
        uint64_t a = 0, b = 0; /* set by number() when it returns true; 0 keeps -O2 sure of it */
        bool has_first = number(v, len, &i, &a);
        if (i >= len || v[i] != '-')
            return DC_RANGE_NONE;
        i++;
        bool has_last = number(v, len, &i, &b);
        while (i < len && ows(v[i]))
            i++;
        if (i < len && v[i] != ',')
            return DC_RANGE_NONE;
        if (!has_first && !has_last)
            return DC_RANGE_NONE;
        if (has_first && has_last && b < a)
            return DC_RANGE_NONE; /* an invalid int-range makes the whole field invalid */
        specs++;
        uint64_t f, l;
        if (!has_first) { /* suffix-range: the last b bytes */
            if (b == 0 || size == 0)
                continue;
            f = b >= size ? 0 : size - b;
            l = size - 1;
        } else {
            if (a >= size)
                continue;
            f = a;
            l = has_last && b < size ? b : size - 1;
        }
        if (satisfiable++ == 0) {
            f1 = f;
            l1 = l;
        }
    }
    if (specs == 0)
        return DC_RANGE_NONE;
    if (size == 0)
        return DC_RANGE_NONE; /* nothing to slice: the (empty) whole answer */
    if (satisfiable == 0)
        return DC_RANGE_UNSATISFIABLE;
    if (satisfiable > 1)
        return DC_RANGE_MULTI;
    *first = f1;
    *last = l1;
    return DC_RANGE_SINGLE;
}

size_t dc_range_content_range(char *out, uint64_t first, uint64_t last, uint64_t size)
{
    size_t n = 0;
    memcpy(out, "bytes ", 6);
    n = 6;
    if (first == UINT64_MAX) {
        out[n++] = '*';
    } else {
        n += dc_fmt_u64(out + n, first);
        out[n++] = '-';
        n += dc_fmt_u64(out + n, last);
    }
    out[n++] = '/';
    n += dc_fmt_u64(out + n, size);
    return n;
}
