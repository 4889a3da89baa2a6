/*
 * Leveled error log (stderr) and the access log sink (stdout, a file, or off).
 * Thread-safe: each line is formatted into a local buffer and written with one write(2).
 * The module owns the access log file descriptor; dc_log_set_access() swaps it on reload.
 */
#ifndef DC_CORE_LOG_H
#define DC_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum { DC_LOG_DEBUG = 0, DC_LOG_INFO, DC_LOG_WARN, DC_LOG_ERROR } dc_log_level_t;
/* The shape of an access line (log.format): key=value pairs, one JSON object, or the Apache/nginx
 * "combined" line followed by key=value pairs (http/accesslog.c). */
typedef enum { DC_LOG_FORMAT_KV = 0, DC_LOG_FORMAT_JSON, DC_LOG_FORMAT_COMBINED } dc_log_format_t;

/* Parse "debug|info|warn|error"; returns 0 and sets *out, or DC_EINVAL. */
int dc_log_level_parse(const char *s, dc_log_level_t *out);
const char *dc_log_level_name(dc_log_level_t level);

void dc_log_set_level(dc_log_level_t level);
dc_log_level_t dc_log_get_level(void);

/* Access log destination: "stdout", "off", or a path opened for append.
 * Returns 0 or DC_EIO (the previous sink is kept on failure). */
int dc_log_set_access(const char *dest);
/* Reopen the access log file at its path (after a rotation renamed it): the same descriptor then
 * writes to the file now at the path. No-op for stdout, stderr and off. Main thread (like
 * dc_log_set_access). Returns 0, or DC_EIO when the path cannot be opened (lines keep going to the
 * file already open). */
int dc_log_reopen(void);
/* Non-zero when access lines are wanted (skip formatting work otherwise). */
int dc_log_access_enabled(void);
/* Write one already-formatted access line (a trailing newline is added). */
void dc_log_access_line(const char *line, size_t len);

void dc_log(dc_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dc_logv(dc_log_level_t level, const char *fmt, va_list ap);

#define dc_log_debug(...) dc_log(DC_LOG_DEBUG, __VA_ARGS__)
#define dc_log_info(...) dc_log(DC_LOG_INFO, __VA_ARGS__)
#define dc_log_warn(...) dc_log(DC_LOG_WARN, __VA_ARGS__)
#define dc_log_error(...) dc_log(DC_LOG_ERROR, __VA_ARGS__)

#endif
