#include "core/procstat.h"
#include "core/error.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int dc_procstat_parse_stat(const char *text, uint64_t *utime, uint64_t *stime, uint64_t *starttime, uint64_t *vsize,
                           uint64_t *rss_pages)
{
    const char *p = strrchr(text, ')');
    if (p == NULL)
        return DC_EINVAL;
    p++;
    /* fields after the command: 3 state, 4 ppid, ... 14 utime, 15 stime, 22 starttime, 23 vsize, 24 rss */
    uint64_t v[25] = {0};
    for (unsigned field = 3; field <= 24; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return DC_EINVAL;
        if (field == 3) {
            while (*p != '\0' && *p != ' ')
                p++; /* the state letter */
            continue;
        }
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p)
            return DC_EINVAL;
        v[field] = x < 0 ? 0 : (uint64_t)x;
        p = end;
    }
    *utime = v[14];
    *stime = v[15];
    *starttime = v[22];
    *vsize = v[23];
    *rss_pages = v[24];
    return 0;
}

int dc_procstat_parse_max_fds(const char *text, uint64_t *out)
{
    const char *p = strstr(text, "Max open files");
    if (p == NULL)
        return DC_EINVAL;
    p += strlen("Max open files");
    while (*p == ' ')
        p++;
    if (strncmp(p, "unlimited", 9) == 0) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    unsigned long long x = strtoull(p, &end, 10);
    if (end == p)
        return DC_EINVAL;
    *out = x;
    return 0;
}

int dc_procstat_parse_btime(const char *text, uint64_t *out)
{
    const char *p = strstr(text, "\nbtime ");
    if (p == NULL)
        return DC_EINVAL;
    char *end;
    unsigned long long x = strtoull(p + 7, &end, 10);
    if (end == p + 7)
        return DC_EINVAL;
    *out = x;
    return 0;
}

/* The whole of a small procfs file as a string in buf; false when it cannot be read. */
static bool read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return len > 0;
}

void dc_procstat_read(dc_procstat_t *out)
{
    memset(out, 0, sizeof(*out));
    char buf[8192];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    uint64_t ut, st, start, vsize, rss;
    if (ticks > 0 && page > 0 && read_small("/proc/self/stat", buf, sizeof(buf)) &&
        dc_procstat_parse_stat(buf, &ut, &st, &start, &vsize, &rss) == 0) {
        out->has_stat = true;
        out->cpu_seconds = (double)(ut + st) / (double)ticks;
        out->virtual_bytes = vsize;
        out->resident_bytes = rss * (uint64_t)page;
        uint64_t btime;
        /* /proc/stat outgrows buf on many-core machines (per-cpu and interrupt lines before btime) */
        char *big = dc_malloc(1 << 16);
        if (read_small("/proc/stat", big, 1 << 16) && dc_procstat_parse_btime(big, &btime) == 0) {
            out->has_start = true;
            out->start_time_s = (double)btime + (double)start / (double)ticks;
        }
        free(big);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        uint64_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.')
                n++;
        out->has_fds = true;
        out->open_fds = n > 0 ? n - 1 : 0; /* the directory stream's own descriptor */
        closedir(d);
    }
    if (read_small("/proc/self/limits", buf, sizeof(buf)) && dc_procstat_parse_max_fds(buf, &out->max_fds) == 0)
        out->has_max_fds = true;
}
