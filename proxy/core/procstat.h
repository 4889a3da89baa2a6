/*
 * The process's own resource use as Prometheus's standard process_* metrics expect it, read from
 * /proc/self (stat, statm's page size via sysconf, fd, limits) and /proc/stat (boot time). The
 * parsers are pure functions over the files' text so they are unit-testable; dc_procstat_read does
 * the I/O. Linux only; any field that cannot be read is reported as absent (its `has_` flag false).
 */
#ifndef DC_CORE_PROCSTAT_H
#define DC_CORE_PROCSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dc_procstat {
    bool has_stat;           /* cpu, memory and start time below */
    double cpu_seconds;      /* user + system */
    uint64_t virtual_bytes;  /* vsize */
    uint64_t resident_bytes; /* rss pages * page size */
    bool has_start;
    double start_time_s; /* Unix time the process started (boot time + starttime ticks) */
    bool has_fds;
    uint64_t open_fds; /* entries of /proc/self/fd (the directory's own fd excluded) */
    bool has_max_fds;
    uint64_t max_fds; /* soft RLIMIT_NOFILE ("unlimited" = UINT64_MAX) */
} dc_procstat_t;

/* Parse /proc/<pid>/stat's text: utime, stime (ticks), starttime (ticks since boot), vsize (bytes),
 * rss (pages). The command name may hold spaces and parentheses: fields are counted after the last
 * ')'. 0 on success, DC_EINVAL when the text does not have those fields. */
int dc_procstat_parse_stat(const char *text, uint64_t *utime, uint64_t *stime, uint64_t *starttime, uint64_t *vsize,
                           uint64_t *rss_pages);
/* The soft limit of "Max open files" in /proc/<pid>/limits' text. 0 or DC_EINVAL. */
int dc_procstat_parse_max_fds(const char *text, uint64_t *out);
/* "btime N" of /proc/stat. 0 or DC_EINVAL. */
int dc_procstat_parse_btime(const char *text, uint64_t *out);

/* Read this process's figures now. Blocking file reads of procfs (cheap): call from the scrape. */
void dc_procstat_read(dc_procstat_t *out);

#endif
