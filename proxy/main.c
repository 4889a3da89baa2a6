/* dexcache: command line, logging set-up, and the server's lifecycle. No logic lives here. */
#include "config/config.h"
#include "core/crash.h"
#include "core/error.h"
#include "core/log.h"
#include "plugin/plugin.h"

#include <dexcache/plugin.h>
#include "server/server.h"
#include "upstream/curl_uv.h"

#include <curl/curl.h>
#include <getopt.h>
#include <malloc.h>
#include <h2o/version.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

/* -c's default: a source checkout's conf/dexcache.yaml when the working directory has one (make run,
 * the tests), else the installed config (DC_SYSCONFDIR is set by CMake, /etc/dexcache by default). */
#define DC_CONFIG_LOCAL "conf/dexcache.yaml"
#define DC_CONFIG_INSTALLED DC_SYSCONFDIR "/dexcache.yaml"

static const char *default_config_path(void)
{
    return access(DC_CONFIG_LOCAL, F_OK) == 0 ? DC_CONFIG_LOCAL : DC_CONFIG_INSTALLED;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: dexcache [-c FILE] [-t] [-v] [-h]\n"
                 "  -c, --config FILE  configuration file (default: " DC_CONFIG_LOCAL " when it exists in the\n"
                 "                     working directory, else " DC_CONFIG_INSTALLED ")\n"
                 "  -t, --test         check the configuration and exit (0 = valid, 1 = invalid); binds nothing\n"
                 "  -v, --version      print the version (and the plugins the configuration loads) and exit\n"
                 "  -h, --help         this help\n"
                 "signals: SIGHUP reloads the configuration and reopens the access log, SIGUSR1 reopens the\n"
                 "access log (log rotation), SIGTERM drains and exits\n"
                 "plugins: a relative path: not found next to the configuration file is taken from\n"
                 "  " DC_PLUGINDIR "\n");
}

/* -v: versions, and the plugins the configuration names when it loads (-v never fails). */
static int print_versions(const char *config_path)
{
    char err[DC_CONFIG_ERRLEN];
    dc_config_t *cfg = NULL;
    printf("dexcache %s (libh2o %s, %s, plugin ABI %d.%d)\n", DC_VERSION, H2O_VERSION, curl_version(),
           DEXCACHE_PLUGIN_ABI_MAJOR, DEXCACHE_PLUGIN_ABI_MINOR);
    dc_plugin_set_t *set = NULL;
    if (dc_config_load_file(config_path, &cfg, err, sizeof(err)) == 0 &&
        dc_plugin_set_build(cfg, 1, &set, err, sizeof(err)) == 0) {
        const char *name, *plugin, *version, *path;
        for (size_t i = 0; dc_plugin_set_info(set, i, &name, &plugin, &version, &path); i++)
            printf("plugin %s: %s %s (%s)\n", name, plugin, version, path);
    }
    dc_plugin_set_free(set);
    dc_config_release(cfg);
    return 0;
}

/* Show the config's load warnings (see dc_config_t.warnings): on stderr for -t, else in the error log. */
static void show_warnings(const dc_config_t *cfg, bool to_stderr)
{
    for (const char *w = cfg->warnings; w != NULL && *w != '\0';) {
        const char *nl = strchr(w, '\n');
        int len = nl != NULL ? (int)(nl - w) : (int)strlen(w);
        if (to_stderr)
            fprintf(stderr, "dexcache: %.*s\n", len, w);
        else
            dc_log_warn("%.*s", len, w);
        w += len + (nl != NULL);
    }
}

/* -t with a loaded config: every plugin is loaded and instantiated, so ABI and plugin config errors
 * fail the test too. Takes over cfg. */
static int test_config(const char *config_path, dc_config_t *cfg)
{
    char err[DC_CONFIG_ERRLEN];
    dc_plugin_set_t *set = NULL;
    show_warnings(cfg, true);
    int rc = dc_plugin_set_build(cfg, cfg->workers, &set, err, sizeof(err));
    dc_config_release(cfg);
    if (rc != 0) {
        fprintf(stderr, "dexcache: %s\n", err);
        fprintf(stderr, "dexcache: configuration file %s test failed\n", config_path);
        return 1;
    }
    dc_plugin_set_free(set);
    printf("dexcache: configuration file %s test is successful\n", config_path);
    return 0;
}

/* Process-wide settings before the server starts: descriptors, allocator thresholds, randomness. */
static void tune_process(void)
{
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    /* every client, upstream connection and event-stream subscriber is a descriptor: use all the
     * process may have (like nginx's worker_rlimit_nofile; systemd sets the hard limit) */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
            dc_log_warn("cannot raise the open files limit to %llu", (unsigned long long)nofile.rlim_max);
    }
    /* Codec state (zlib ~256 KiB per stream) sits above glibc's dynamic mmap threshold, so every
     * small inline compression paid mmap + munmap + page faults. Fixed thresholds keep such
     * buffers in the heap (cache chunks of 512 KiB and more are still mmapped and returned on
     * free), and trimming waits until 8 MiB are free at the top. */
    mallopt(M_MMAP_THRESHOLD, 512 * 1024);
    mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
}

/* Run the server on a loaded config (taken over) until it stops; the exit status. */
static int run(const char *config_path, dc_config_t *cfg)
{
    char err[DC_CONFIG_ERRLEN];
    dc_log_set_level((dc_log_level_t)cfg->log.level);
    show_warnings(cfg, false);
    if (dc_log_set_access(cfg->log.access ? cfg->log.access : "stdout") != 0) {
        dc_config_release(cfg);
        return 1;
    }
    tune_process();
    if (dc_curl_global_init() != 0) {
        fprintf(stderr, "dexcache: libcurl initialisation failed\n");
        dc_config_release(cfg);
        return 1;
    }
    dc_crash_install(); /* the report's text is set by the server (version, plugins) */
    dc_server_t *server = NULL;
    if (dc_server_create(config_path, cfg, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "dexcache: %s\n", err);
        dc_curl_global_cleanup();
        return 1;
    }
    int rc = dc_server_run(server);
    dc_server_destroy(server);
    dc_curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int test_only = 0, show_version = 0, opt;
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    while ((opt = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            show_version = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    if (config_path == NULL)
        config_path = default_config_path();
    if (show_version)
        return print_versions(config_path);
    char err[DC_CONFIG_ERRLEN];
    dc_config_t *cfg = NULL;
    if (dc_config_load_file(config_path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "dexcache: %s\n", err);
        if (test_only)
            fprintf(stderr, "dexcache: configuration file %s test failed\n", config_path);
        return 1;
    }
    return test_only ? test_config(config_path, cfg) : run(config_path, cfg);
}
