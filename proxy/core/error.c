#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dc_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define DC__ERR_MSG(name, msg)                                                                                         \
    case DC_E##name:                                                                                                   \
        return msg;
        DC_ERRNO_MAP(DC__ERR_MSG)
#undef DC__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *dc_errname(int err)
{
    switch (err) {
    case 0:
        return "DC_OK";
#define DC__ERR_NAME(name, msg)                                                                                        \
    case DC_E##name:                                                                                                   \
        return "DC_E" #name;
        DC_ERRNO_MAP(DC__ERR_NAME)
#undef DC__ERR_NAME
    default:
        return "DC_E?";
    }
}

void dc__fatal(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "dexcache: fatal at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void *dc_malloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL)
        dc_fatal("out of memory allocating %zu bytes", n);
    return p;
}

void *dc_calloc(size_t count, size_t n)
{
    void *p = calloc(count == 0 ? 1 : count, n == 0 ? 1 : n);
    if (p == NULL)
        dc_fatal("out of memory allocating %zu x %zu bytes", count, n);
    return p;
}

void *dc_realloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL)
        dc_fatal("out of memory reallocating %zu bytes", n);
    return q;
}

char *dc_strdup(const char *s)
{
    return dc_strndup(s, strlen(s));
}

char *dc_strndup(const char *s, size_t n)
{
    char *p = dc_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *dc_asprintf(const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    DC_ASSERT(n >= 0);
    if ((size_t)n < sizeof(small))
        return dc_strndup(small, (size_t)n);
    char *p = dc_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
