/*
 * dexcache error codes: one X-macro table, negative DC_E* values, a message each.
 * Convention everywhere: functions return 0 on success or a negative DC_E* code.
 * Small-allocation failure is not an error code: it is fatal (dc_fatal_oom).
 */
#ifndef DC_CORE_ERROR_H
#define DC_CORE_ERROR_H

#include <stddef.h>

#define DC_ERRNO_MAP(X)                                                                                                \
    X(NOMEM, "out of memory")                                                                                          \
    X(INVAL, "invalid argument")                                                                                       \
    X(CONFIG, "configuration error")                                                                                   \
    X(IO, "input/output error")                                                                                        \
    X(NOTFOUND, "not found")                                                                                           \
    X(EXISTS, "already exists")                                                                                        \
    X(RANGE, "value out of range")                                                                                     \
    X(TOOBIG, "too large")                                                                                             \
    X(TIMEDOUT, "timed out")                                                                                           \
    X(CONNREFUSED, "connection refused")                                                                               \
    X(UPSTREAM, "upstream error")                                                                                      \
    X(PROTO, "protocol error")                                                                                         \
    X(AGAIN, "try again")                                                                                              \
    X(UNAVAIL, "upstream unavailable (circuit breaker open)")                                                          \
    X(BIND, "cannot bind listener")                                                                                    \
    X(ABI, "plugin ABI mismatch")                                                                                      \
    X(VALIDATION, "upstream answer failed validation")

enum {
    DC_OK = 0,
#define DC__ERR_ENUM(name, msg) DC__ERR_INDEX_##name,
    DC__ERR_FIRST_MINUS_ONE = 0,
    DC_ERRNO_MAP(DC__ERR_ENUM) DC__ERR_COUNT
#undef DC__ERR_ENUM
};

enum {
#define DC__ERR_VALUE(name, msg) DC_E##name = -DC__ERR_INDEX_##name,
    DC_ERRNO_MAP(DC__ERR_VALUE)
#undef DC__ERR_VALUE
};

/* Static message for a DC_E* code (or "success" for 0, "unknown error" otherwise). */
const char *dc_strerror(int err);
/* Symbolic name ("DC_ETIMEDOUT") for a DC_E* code. */
const char *dc_errname(int err);

/* Abort with file:line and a message. Used for broken invariants and allocation failure. */
void dc__fatal(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define dc_fatal(...) dc__fatal(__FILE__, __LINE__, __VA_ARGS__)

/* Always-on assertion (stays in release builds, Varnish-style). */
#define DC_ASSERT(expr)                                                                                                \
    do {                                                                                                               \
        if (__builtin_expect(!(expr), 0))                                                                              \
            dc__fatal(__FILE__, __LINE__, "assertion failed: %s", #expr);                                              \
    } while (0)

/* Objects that cross callbacks carry a magic number checked on entry. */
#define DC_CHECK_MAGIC(obj, m) DC_ASSERT((obj) != NULL && (obj)->magic == (m))

/* Allocation helpers: never return NULL (abort on failure). Free with free(). */
void *dc_malloc(size_t n);
void *dc_calloc(size_t count, size_t n);
void *dc_realloc(void *p, size_t n);
char *dc_strdup(const char *s);
char *dc_strndup(const char *s, size_t n);
/* printf into a fresh heap string; caller frees. */
char *dc_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
