/*
 * Snapshot life cycle (load, ref, release) and the two lookups the request path uses.
 * Parsing is YAML -> tree (yaml_tree.c) -> tables (directive.c + tables.c); this file glues them.
 */
#include "config/config.h"
#include "core/refcount.h"
#include "config/directive.h"
#include "config/yaml_tree.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A config file is a few KiB; this only stops an accidental /dev/zero or log file. */
#define DC_CONFIG_MAX_FILE (16u << 20)

static void config_free(dc_config_t *cfg)
{
    dc__table_release(&dc__config_root_table, cfg);
    free(cfg->path);
    free(cfg->warnings);
    cfg->magic = 0;
    free(cfg);
}

int dc_config_load_string(const char *name, const char *text, size_t len, dc_config_t **out, char *err, size_t errlen)
{
    dc__ynode_t *root;
    char *warnings = NULL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (text == NULL && len == 0)
        text = "";
    int rc = dc__ytree_parse(name, text, len, &root, &warnings, err, errlen);
    if (rc != 0)
        return rc;
    if (root == NULL || root->type != DC__YNODE_MAP) {
        char found[256];
        if (root == NULL)
            snprintf(found, sizeof(found), "an empty file");
        else
            dc__ynode_describe(root, found, sizeof(found));
        rc = dc__config_fail_at(err, errlen, name, root != NULL ? root->line : 1, root != NULL ? root->col : 1, "",
                                "expected a map of settings at the top level, found %s", found);
        dc__ytree_free(root);
        free(warnings);
        return rc;
    }

    dc_config_t *cfg = dc_calloc(1, sizeof(*cfg));
    cfg->magic = DC_CONFIG_MAGIC;
    dc_refcount_init(&cfg->refcnt, 1);
    cfg->path = dc_strdup(name);
    cfg->warnings = warnings;
    dc__cfg_ctx_t ctx = {.cfg = cfg, .file = name, .err = err, .errlen = errlen};
    rc = dc__table_parse(&ctx, &dc__config_root_table, root, cfg);
    dc__ytree_free(root);
    if (rc != 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int dc_config_load_file(const char *path, dc_config_t **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
        return DC_EIO;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > DC_CONFIG_MAX_FILE) {
        close(fd);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", path,
                     !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 16MiB");
        return DC_EIO;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = dc_malloc(cap);
    for (;;) { /* the size is a hint: read until EOF */
        if (len == cap) {
            if (cap > DC_CONFIG_MAX_FILE) {
                errno = EFBIG;
                break;
            }
            cap *= 2;
            buf = dc_realloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            break;
        }
        len += (size_t)n;
    }
    int e = errno;
    close(fd);
    if (e != 0) {
        free(buf);
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
        return DC_EIO;
    }
    int rc = dc_config_load_string(path, buf, len, out, err, errlen);
    free(buf);
    return rc;
}

dc_config_t *dc_config_ref(dc_config_t *cfg)
{
    DC_CHECK_MAGIC(cfg, DC_CONFIG_MAGIC);
    dc_refcount_take(&cfg->refcnt);
    return cfg;
}

void dc_config_release(dc_config_t *cfg)
{
    if (cfg == NULL)
        return;
    DC_CHECK_MAGIC(cfg, DC_CONFIG_MAGIC);
    if (dc_refcount_drop(&cfg->refcnt))
        config_free(cfg);
}

const dc_config_route_t *dc_config_route_match(const dc_config_t *cfg, const char *path, size_t pathlen)
{
    const dc_config_route_t *best = NULL;
    size_t bestlen = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const dc_config_route_t *r = &cfg->routes[i];
        size_t plen = strlen(r->prefix);
        bool match;
        if (plen == 1) /* "/" */
            match = true;
        else
            match = pathlen >= plen && memcmp(path, r->prefix, plen) == 0 &&
                    (pathlen == plen || path[plen] == '/' || path[plen] == '?');
        if (match && (best == NULL || plen > bestlen)) {
            best = r;
            bestlen = plen;
        }
    }
    return best;
}

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    return plen <= len && memcmp(s, prefix, plen) == 0;
}

const dc_config_stream_t *dc_config_stream_match(const dc_config_t *cfg, const char *path, size_t len)
{
    for (size_t i = 0; i < cfg->nstreams; i++)
        if (strlen(cfg->streams[i].path) == len && memcmp(cfg->streams[i].path, path, len) == 0)
            return &cfg->streams[i];
    return NULL;
}

const dc_config_cache_rule_t *dc_config_cache_rule_match(const dc_config_route_t *route, const char *upstream_path,
                                                         size_t len)
{
    for (size_t i = 0; i < route->nno_cache; i++) {
        if (has_prefix(upstream_path, len, route->no_cache[i]))
            return NULL;
    }
    for (size_t i = 0; i < route->ncache; i++) {
        const dc_config_cache_rule_t *rule = &route->cache[i];
        if (strcmp(rule->path, "/") == 0 || has_prefix(upstream_path, len, rule->path))
            return rule;
    }
    return NULL;
}
