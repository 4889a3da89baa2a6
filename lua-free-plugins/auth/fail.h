/* The auth plugin's error reporting for loaders (keys, key sets): a printf-formatted message into
 * the caller's buffer (err may be NULL when errlen is 0), and -1 to return. Internal to the plugin. */
#ifndef DCA_FAIL_H
#define DCA_FAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

static inline int dca_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int dca_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
