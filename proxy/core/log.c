#include "core/log.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = DC_LOG_INFO;
/* -1 = off. A file sink keeps its descriptor number for good: a reopen (SIGUSR1, SIGHUP) dup2()s the
 * new file onto it, so a writer that loaded the number writes to the old or the new file, never to a
 * descriptor closed and reused by a socket. Only a change of destination swaps the number. */
static _Atomic int access_fd = STDOUT_FILENO;
/* The file path behind access_fd (NULL for stdout, stderr, off). Main thread only. */
static char *access_path;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int dc_log_level_parse(const char *s, dc_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (dc_log_level_t)i;
            return 0;
        }
    }
    return DC_EINVAL;
}

const char *dc_log_level_name(dc_log_level_t level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

void dc_log_set_level(dc_log_level_t level)
{
    atomic_store(&log_level, (int)level);
}

dc_log_level_t dc_log_get_level(void)
{
    return (dc_log_level_t)atomic_load(&log_level);
}

static int open_access(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        dc_log_error("cannot open access log %s: %s", path, strerror(errno));
    return fd;
}

int dc_log_set_access(const char *dest)
{
    int fd;
    bool file = false;
    if (strcmp(dest, "stdout") == 0)
        fd = STDOUT_FILENO;
    else if (strcmp(dest, "off") == 0)
        fd = -1;
    else if (strcmp(dest, "stderr") == 0)
        fd = STDERR_FILENO;
    else if ((fd = open_access(dest)) < 0)
        return DC_EIO;
    else
        file = true;
    int old = atomic_load(&access_fd);
    if (file && old > STDERR_FILENO) {
        /* file to file: the descriptor number stays, the file behind it changes */
        int rc = dup2(fd, old);
        int dup_errno = errno;
        close(fd);
        if (rc < 0) {
            dc_log_error("cannot switch the access log to %s: %s", dest, strerror(dup_errno));
            return DC_EIO;
        }
    } else {
        atomic_store(&access_fd, fd);
        if (old > STDERR_FILENO)
            close(old);
    }
    free(access_path);
    access_path = file ? dc_strdup(dest) : NULL;
    return 0;
}

int dc_log_reopen(void)
{
    int fd = atomic_load(&access_fd);
    if (access_path == NULL || fd <= STDERR_FILENO)
        return 0;
    int nfd = open_access(access_path);
    if (nfd < 0)
        return DC_EIO; /* the old file stays open: lines keep going to it */
    int rc = dup2(nfd, fd);
    int dup_errno = errno;
    close(nfd);
    if (rc < 0) {
        dc_log_error("cannot reopen the access log %s: %s", access_path, strerror(dup_errno));
        return DC_EIO;
    }
    dc_log_info("access log %s reopened", access_path);
    return 0;
}

int dc_log_access_enabled(void)
{
    return atomic_load(&access_fd) >= 0;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

void dc_log_access_line(const char *line, size_t len)
{
    int fd = atomic_load(&access_fd);
    if (fd < 0)
        return;
    char buf[4096];
    if (len + 1 <= sizeof(buf)) {
        memcpy(buf, line, len);
        buf[len] = '\n';
        write_all(fd, buf, len + 1);
    } else {
        write_all(fd, line, len);
        write_all(fd, "\n", 1);
    }
}

void dc_logv(dc_log_level_t level, const char *fmt, va_list ap)
{
    if ((int)level < atomic_load(&log_level))
        return;
    char buf[2048];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t off = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    off += (size_t)snprintf(buf + off, sizeof(buf) - off, ".%03dZ [%s] ", (int)(tv.tv_usec / 1000),
                            dc_log_level_name(level));
    int n = vsnprintf(buf + off, sizeof(buf) - off - 1, fmt, ap);
    if (n < 0)
        n = 0;
    off += (size_t)n;
    if (off > sizeof(buf) - 2)
        off = sizeof(buf) - 2;
    buf[off++] = '\n';
    write_all(STDERR_FILENO, buf, off);
}

void dc_log(dc_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dc_logv(level, fmt, ap);
    va_end(ap);
}
