/*
 * The directive tables: every key dexcache accepts, with its type, default, range and doc.
 * conf/REFERENCE.md is generated from these rows (reference.c), so the doc strings are the
 * operator-facing documentation: one line each, stating what the key does.
 *
 * Row order matters: a map's keys are processed in row order (see directive.h), so rows that
 * others depend on come first (server before routes, upstreams before routes and streams).
 * Checks that involve several keys live in the finish/item hooks below each table.
 */
#include "config/directive.h"
#include "config/values.h"
#include "core/error.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIELD(base, off, T) ((T *)((char *)(base) + (off)))

#define SEC 1000ull
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)
#define KIB 1024ull
#define MIB (1024 * KIB)

/* Row builders; extra designated fields (.flags, .check, .dflt_doc, ...) go in the trailing args. */
#define R_STR(nm, T, f, dflt_, doc_, ...)                                                                              \
    {                                                                                                                  \
        .name = (nm), .type = DC__T_STRING, .offset = offsetof(T, f), .dflt = (dflt_), .doc = (doc_), __VA_ARGS__      \
    }
#define R_BOOL(nm, T, f, dflt_, doc_)                                                                                  \
    {                                                                                                                  \
        .name = (nm), .type = DC__T_BOOL, .offset = offsetof(T, f), .dflt = (dflt_), .doc = (doc_)                     \
    }
#define R_NUM(kind, nm, T, f, dflt_, lo, hi, doc_, ...)                                                                \
    {                                                                                                                  \
        .name = (nm), .type = (kind), .offset = offsetof(T, f), .dflt = (dflt_), .min = (lo), .max = (hi),             \
        .doc = (doc_), __VA_ARGS__                                                                                     \
    }
#define R_UINT(...) R_NUM(DC__T_UINT, __VA_ARGS__)
#define R_DUR(...) R_NUM(DC__T_DURATION, __VA_ARGS__)
#define R_SIZE(...) R_NUM(DC__T_SIZE, __VA_ARGS__)
#define R_LIST(nm, T, f, n, doc_, ...)                                                                                 \
    {                                                                                                                  \
        .name = (nm), .type = DC__T_STRLIST, .offset = offsetof(T, f), .aux = offsetof(T, n), .doc = (doc_),           \
        __VA_ARGS__                                                                                                    \
    }
#define R_MAP(nm, off, present, tbl, doc_)                                                                             \
    {                                                                                                                  \
        .name = (nm), .type = DC__T_MAP, .offset = (off), .aux = (present), .sub = (tbl), .doc = (doc_)                \
    }
#define TABLE(rows_, finish_)                                                                                          \
    {                                                                                                                  \
        .rows = (rows_), .nrows = sizeof(rows_) / sizeof((rows_)[0]), .finish = (finish_)                              \
    }

/* ---- value checks (dc__check_cb): validate and normalize a string in place ---------------------- */

static int fail_found(dc__cfg_ctx_t *ctx, const dc__ynode_t *node, const char *expect)
{
    char found[256];
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL, "expected %s, found %s", expect, found);
}

static int check_nonempty(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    return (*v)[0] != '\0' ? 0 : fail_found(ctx, node, "a non-empty string");
}

/* log.access: stdout, stderr, off, or a file the process can open for append (an existing file it
 * may write, or a new one in a directory it may write). Checked without creating anything, so `-t`
 * fails on a path start-up could not open. */
static int check_access_log(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    const char *path = *v;
    if (path[0] == '\0')
        return fail_found(ctx, node, "a non-empty string");
    if (strcmp(path, "stdout") == 0 || strcmp(path, "stderr") == 0 || strcmp(path, "off") == 0)
        return 0;
    (void)d;
    char why[512];
    struct stat st;
    why[0] = '\0';
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            snprintf(why, sizeof(why), "a directory");
        else if (access(path, W_OK) != 0)
            snprintf(why, sizeof(why), "%s", strerror(errno));
    } else if (errno != ENOENT) {
        snprintf(why, sizeof(why), "%s", strerror(errno));
    } else {
        char dir[4096];
        const char *slash = strrchr(path, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else if (slash == path)
            snprintf(dir, sizeof(dir), "/");
        else
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        if (stat(dir, &st) != 0)
            snprintf(why, sizeof(why), "directory %.300s: %s", dir, strerror(errno));
        else if (!S_ISDIR(st.st_mode))
            snprintf(why, sizeof(why), "%.300s is not a directory", dir);
        else if (access(dir, W_OK | X_OK) != 0)
            snprintf(why, sizeof(why), "cannot create a file in %.300s: %s", dir, strerror(errno));
    }
    if (why[0] == '\0')
        return 0;
    char found[256];
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL,
                        "expected stdout, stderr, off or a file that can be opened for append, found %s (%s)", found,
                        why);
}

/* An absolute path: starts with '/', no spaces, no query or fragment. */
static bool is_abs_path(const char *s)
{
    if (s[0] != '/')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#')
            return false;
    }
    return true;
}

static int check_abs_path(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    return is_abs_path(*v) ? 0 : fail_found(ctx, node, "a path starting with '/' (no spaces, '?' or '#')");
}

/* An RFC 6901 JSON pointer: "" (the whole document) or "/"-separated tokens where '~' is only
 * ever followed by '0' or '1'. */
static int check_json_pointer(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    const char *p = *v;
    bool ok = p[0] == '\0' || p[0] == '/';
    for (; ok && *p != '\0'; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            ok = false;
    return ok ? 0 : fail_found(ctx, node, "a JSON pointer (RFC 6901: \"\" or \"/a/0/b\", '~' only as ~0 or ~1)");
}

/* A status from 100 to 599 (fail_statuses). */
static int check_status(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    const char *p = *v;
    bool ok =
        strlen(p) == 3 && p[0] >= '1' && p[0] <= '5' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]);
    return ok ? 0 : fail_found(ctx, node, "an HTTP status from 100 to 599");
}

/* Route prefixes lose their trailing slashes so "/jup/" and "/jup" are the same route. */
static int check_route_prefix(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    if (!is_abs_path(*v))
        return fail_found(ctx, node, "a path prefix starting with '/' (no spaces, '?' or '#')");
    size_t n = strlen(*v);
    while (n > 1 && (*v)[n - 1] == '/')
        (*v)[--n] = '\0';
    return 0;
}

static int check_header_name(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    if (!dc__config_is_header_name(*v))
        return fail_found(ctx, node, "an HTTP header name (x-api-key)");
    for (char *p = *v; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}

/* A header value we send (an API key): no control characters, which would split or end the line
 * (a key from ${VAR} with a CR LF in it would inject headers toward the origin). */
static int check_header_value(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    (void)d;
    for (const char *p = *v; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return fail_found(ctx, node, "a header value without control characters (CR, LF, ...)");
    return 0;
}

/* A request header a route may add to what cacheable requests forward (see dc__config_is_reserved_forward_header). */
static int check_forward_header(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    if (check_header_name(ctx, d, node, v) != 0)
        return DC_ECONFIG;
    if (dc__config_is_reserved_forward_header(*v))
        return fail_found(ctx, node,
                          "a header name dexcache does not set or decide itself (not hop-by-hop, Host, Via, "
                          "X-Request-Id, Forwarded, X-Forwarded-*, conditionals, Range, Accept-Encoding)");
    return 0;
}

/* Upstream base URL: http or https, a host, no query or fragment; trailing slashes stripped so
 * url + upstream path never has "//". */
static int check_upstream_url(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    static const char *const expect = "an http:// or https:// URL (https://api.jup.ag)";
    char *s = *v;
    size_t skip;
    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return fail_found(ctx, node, expect);
    if (s[skip] == '\0' || s[skip] == '/' || s[skip] == ':')
        return fail_found(ctx, node, expect);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#')
            return fail_found(ctx, node, expect);
    }
    size_t n = strlen(s);
    while (n > skip && s[n - 1] == '/')
        s[--n] = '\0';
    return 0;
}

static int check_redis_url(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    static const char *const schemes[] = {"redis://", "rediss://", "unix://"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(*v, schemes[i], n) == 0 && (*v)[n] != '\0')
            return 0;
    }
    return fail_found(ctx, node, "a Redis URL (redis://host:port/db, rediss://..., unix:///path)");
}

static int check_cidr(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    char *norm;
    if (dc__config_parse_cidr(*v, &norm) != 0)
        return fail_found(ctx, node, "a CIDR (10.0.0.0/8, 2001:db8::/32) or an IP address");
    free(*v);
    *v = norm;
    return 0;
}

/* Upstream names appear in metrics labels, Redis keys and logs: keep them boring. */
static int check_upstream_name(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    size_t n = strlen(*v);
    bool ok = n >= 1 && n <= 64;
    for (const char *p = *v; ok && *p != '\0'; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
    return ok ? 0 : fail_found(ctx, node, "an upstream name of 1 to 64 characters from a-z, 0-9, '_', '-'");
}

/* ---- custom scalars ------------------------------------------------------------------------------ */

static int parse_workers(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                         void *base)
{
    uint64_t n;
    if (strcmp(text, "auto") == 0)
        n = dc__config_online_cpus(256);
    else if (dc__config_parse_uint(text, 256, &n) != 0 || n == 0)
        return dc__cfg_fail_expected(ctx, d, node, false);
    *FIELD(base, d->offset, uint32_t) = (uint32_t)n;
    return 0;
}

/* Plain decimal only: strtod alone would also take "nan", "inf", hex and leading spaces. */
static int parse_prefetch(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                          void *base)
{
    bool ok = isdigit((unsigned char)text[0]) && strspn(text, "0123456789.") == strlen(text) && strlen(text) < 32;
    double v = 0;
    if (ok) {
        char *end;
        v = strtod(text, &end);
        ok = *end == '\0' && isfinite(v) && (v == 0 || (v >= 0.5 && v <= 0.99));
    }
    if (!ok)
        return dc__cfg_fail_expected(ctx, d, node, false);
    *FIELD(base, d->offset, double) = v;
    return 0;
}

/* heuristic: "N%" with N from 0 to 100 (decimals allowed), stored as a fraction. */
static int parse_percent(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                         void *base)
{
    size_t len = strlen(text);
    bool ok = len >= 2 && len < 32 && text[len - 1] == '%' && isdigit((unsigned char)text[0]) &&
              strspn(text, "0123456789.") == len - 1;
    double v = 0;
    if (ok) {
        char *end;
        v = strtod(text, &end);
        ok = end == text + len - 1 && isfinite(v) && v >= 0 && v <= 100;
    }
    if (!ok)
        return dc__cfg_fail_expected(ctx, d, node, false);
    *FIELD(base, d->offset, double) = v / 100.0;
    return 0;
}

/* breaker.failure_ratio: a fraction from 0 to 1 ("0.5") or a percentage ("50%"); 0 = off. */
static int parse_fraction(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                          void *base)
{
    size_t len = strlen(text);
    bool pct = len > 1 && text[len - 1] == '%';
    size_t nlen = len - pct;
    bool ok = len > 0 && len < 32 && isdigit((unsigned char)text[0]) && strspn(text, "0123456789.") == nlen;
    double v = 0;
    if (ok) {
        char *end;
        v = strtod(text, &end);
        if (pct)
            v /= 100.0;
        ok = end == text + nlen && isfinite(v) && v >= 0 && v <= 1;
    }
    if (!ok)
        return dc__cfg_fail_expected(ctx, d, node, false);
    *FIELD(base, d->offset, double) = v;
    return 0;
}

/* limit.by: "client" or "header:<name>"; the header name goes to the field at d->aux. */
static int parse_limit_by(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                          void *base)
{
    if (strcmp(text, "client") == 0) {
        *FIELD(base, d->offset, dc_limit_by_t) = DC_LIMIT_BY_CLIENT;
        return 0;
    }
    if (strcmp(text, "plugin") == 0) {
        *FIELD(base, d->offset, dc_limit_by_t) = DC_LIMIT_BY_PLUGIN;
        return 0;
    }
    if (strncmp(text, "header:", 7) != 0 || !dc__config_is_header_name(text + 7))
        return dc__cfg_fail_expected(ctx, d, node, false);
    char *name = dc_strdup(text + 7);
    for (char *p = name; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    *FIELD(base, d->offset, dc_limit_by_t) = DC_LIMIT_BY_HEADER;
    *FIELD(base, d->aux, char *) = name;
    return 0;
}

static void release_string_at_aux(const dc__directive_t *d, void *base)
{
    free(*FIELD(base, d->aux, char *));
}

/* "upstream: jupiter": name at d->offset, resolved pointer at d->aux. Upstreams are parsed
 * before routes and streams (row order) and their array never moves afterwards. */
static int parse_upstream_ref(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                              void *base)
{
    const dc_config_t *cfg = ctx->cfg;
    *FIELD(base, d->offset, char *) = dc_strdup(text);
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        if (strcmp(cfg->upstreams[i].name, text) == 0) {
            *FIELD(base, d->aux, dc_config_upstream_t *) = &cfg->upstreams[i];
            return 0;
        }
    }
    char names[256] = "", found[256];
    size_t pos = 0;
    for (size_t i = 0; i < cfg->nupstreams && pos < sizeof(names); i++)
        pos += (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s", i > 0 ? ", " : "", cfg->upstreams[i].name);
    dc__ynode_describe(node, found, sizeof(found));
    if (cfg->nupstreams == 0)
        return dc__cfg_fail(ctx, node, NULL, "expected the name of an upstream, found %s (no upstreams are defined)",
                            found);
    return dc__cfg_fail(ctx, node, NULL, "expected the name of an upstream (%s), found %s", names, found);
}

static void release_upstream_ref(const dc__directive_t *d, void *base)
{
    free(*FIELD(base, d->offset, char *));
}

/* ---- tls, admin, log, cache, redis, server (fields of dc_config_t itself) ------------------------- */

typedef dc_config_t C;

/* Opened, not just access()ed: that is what the TLS setup will do. O_NONBLOCK so a FIFO named by
 * mistake cannot hang the load. */
static int check_readable(dc__cfg_ctx_t *ctx, const dc__ynode_t *node, const char *path)
{
    const char *why = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0)
        why = strerror(errno);
    else if (fstat(fd, &st) != 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    if (fd >= 0)
        close(fd);
    if (why == NULL)
        return 0;
    char found[256];
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL, "expected a readable file, found %s (%s)", found, why);
}

/* tls.listen, tls.cert and tls.key go together: listeners need both files, files need a listener. */
static int tls_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    C *cfg = base;
    if (map == NULL)
        return 0;
    static const struct {
        const char *key, *what;
    } files[] = {{"cert", "a PEM certificate chain file"}, {"key", "a PEM private key file"}};
    const char *values[] = {cfg->tls.cert, cfg->tls.key};
    bool any = cfg->tls.nlisten > 0 || (values[0] != NULL && values[0][0]) || (values[1] != NULL && values[1][0]);
    if (!any)
        return 0;
    for (size_t i = 0; i < 2; i++) {
        const dc__ynode_t *node = dc__ynode_get(map, files[i].key);
        if (values[i] != NULL && values[i][0] != '\0')
            continue;
        char expect[128];
        snprintf(expect, sizeof(expect), "%s (tls.listen, tls.cert and tls.key go together)", files[i].what);
        if (node != NULL)
            return fail_found(ctx, node, expect);
        return dc__cfg_fail(ctx, map, files[i].key, "expected %s, found nothing", expect);
    }
    if (cfg->tls.nlisten == 0)
        return dc__cfg_fail(ctx, map, "listen",
                            "expected at least one listen address (tls.cert and tls.key are set), found nothing");
    for (size_t i = 0; i < 2; i++) {
        int rc = check_readable(ctx, dc__ynode_get(map, files[i].key), values[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static const dc__directive_t tls_rows[] = {
    {.name = "listen",
     .type = DC__T_LISTENS,
     .offset = offsetof(C, tls.listen),
     .aux = offsetof(C, tls.nlisten),
     .doc = "TLS listeners (HTTP/1.1 and HTTP/2 via ALPN); needs cert and key"},
    R_STR("cert", C, tls.cert, NULL, "PEM certificate chain file (checked readable at load)"),
    R_STR("key", C, tls.key, NULL, "PEM private key file (checked readable at load)"),
};
static const dc__table_t tls_table = TABLE(tls_rows, tls_finish);

static const dc__directive_t admin_rows[] = {
    {.name = "listen",
     .type = DC__T_LISTEN,
     .offset = offsetof(C, admin.listen),
     .dflt = "127.0.0.1:9090",
     .doc = "admin listener: GET /health, GET /metrics, POST /purge"},
    R_STR("token", C, admin.token, NULL,
          "bearer token required by POST /purge; empty = no token (only on a loopback listen address)"),
};
/* A loopback listen host: 127.0.0.0/8, ::1, localhost (an empty host is every address). */
static bool is_loopback_host(const char *h, bool ipv6)
{
    if (h == NULL || h[0] == '\0')
        return false;
    if (ipv6)
        return strcmp(h, "::1") == 0;
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0;
}

/* The admin listener purges and reports: off loopback it needs a token (nginx-style safe default). */
static int admin_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    C *cfg = base;
    if (map == NULL || !cfg->admin.enabled)
        return 0;
    bool token = cfg->admin.token != NULL && cfg->admin.token[0] != '\0';
    if (token || is_loopback_host(cfg->admin.listen.host, cfg->admin.listen.ipv6))
        return 0;
    const dc__ynode_t *node = dc__ynode_get(map, "listen");
    char found[256];
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL,
                        "expected a loopback address (127.0.0.1, ::1) while admin.token is unset, found %s "
                        "(POST /purge would be open to the network: set admin.token or listen on loopback)",
                        found);
}
static const dc__table_t admin_table = TABLE(admin_rows, admin_finish);

static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const int log_level_values[] = {DC_LOG_DEBUG, DC_LOG_INFO, DC_LOG_WARN, DC_LOG_ERROR};
static const char *const log_format_names[] = {"kv", "json", "combined", NULL};
static const int log_format_values[] = {DC_LOG_FORMAT_KV, DC_LOG_FORMAT_JSON, DC_LOG_FORMAT_COMBINED};
static const dc__directive_t log_rows[] = {
    R_STR("access", C, log.access, "stdout",
          "access log: stdout, stderr, off, or a file path (opened for append; checked at load, reopened on "
          "SIGUSR1 and SIGHUP)",
          .check = check_access_log),
    {.name = "level",
     .type = DC__T_ENUM,
     .offset = offsetof(C, log.level),
     .dflt = "info",
     .enum_names = log_level_names,
     .enum_values = log_level_values,
     .doc = "error log level (stderr)"},
    {.name = "format",
     .type = DC__T_ENUM,
     .offset = offsetof(C, log.format),
     .dflt = "kv",
     .enum_names = log_format_names,
     .enum_values = log_format_values,
     .doc = "access line: kv (key=value pairs), json (one object a line) or combined (the nginx/Apache "
            "combined line, then rid=, cache=, dur_ms= and traceparent=); every format carries the request id and the "
            "client's "
            "traceparent when it sent a valid one"},
};
static const dc__table_t log_table = TABLE(log_rows, NULL);

/* A max_object above memory could never be stored: an explicit one is an error, the default is
 * capped so a small `memory:` alone stays valid. */
static int cache_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    C *cfg = base;
    if (cfg->cache.max_object <= cfg->cache.memory)
        return 0;
    const dc__ynode_t *node = dc__ynode_get(map, "max_object");
    if (node == NULL) {
        cfg->cache.max_object = cfg->cache.memory;
        return 0;
    }
    char mem[32], found[256];
    dc__config_format_size(cfg->cache.memory, mem, sizeof(mem));
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL, "expected a size of at most cache.memory (%s), found %s", mem, found);
}

static const dc__directive_t cache_rows[] = {
    R_SIZE("memory", C, cache.memory, "256MiB", MIB, DC__UNBOUNDED, "memory budget of the in-process cache"),
    R_SIZE("max_object", C, cache.max_object, "128MiB", 1, DC__UNBOUNDED,
           "largest single object stored (an unset default is capped at cache.memory)"),
};
static const dc__table_t cache_table = TABLE(cache_rows, cache_finish);

static const dc__directive_t redis_rows[] = {
    R_STR("url", C, redis.url, NULL, "redis://host:port/db, rediss://... or unix:///path", .flags = DC__D_REQUIRED,
          .check = check_redis_url, .expect = "a Redis URL"),
    R_STR("prefix", C, redis.prefix, "dexcache:", "prefix of every Redis key and channel"),
};
static const dc__table_t redis_table = TABLE(redis_rows, NULL);

static const dc__directive_t server_rows[] = {
    R_SIZE("max_body", C, server.max_body, "1MiB", 0, DC__UNBOUNDED, "request body cap (413 above it)"),
    R_SIZE("max_uri", C, server.max_uri, "8KiB", 256, MIB, "request target cap (414 above it)"),
    R_SIZE("max_header_bytes", C, server.max_header_bytes, "16KiB", KIB, MIB, "total request header bytes cap"),
    R_UINT("max_headers", C, server.max_headers, "100", 1, 10000,
           "request header count cap (HTTP/1 heads: at most 100, libh2o's parser; 431 above)"),
    R_DUR("drain_timeout", C, server.drain_timeout_ms, "10s", 0, HOUR,
          "on SIGTERM, how long in-flight requests may finish"),
    R_DUR("idle_timeout", C, server.idle_timeout_ms, "30s", SEC, HOUR, "client keep-alive idle timeout"),
    R_UINT("h2_reset_budget", C, server.h2_reset_budget, "100", 1, 1000000,
           "HTTP/2 streams a client may reset before their answer, beyond those it let finish; past it the "
           "connection's upstream work waits h2_dos_delay, past twice it the connection is closed "
           "(GOAWAY ENHANCE_YOUR_CALM)"),
    R_DUR("h2_dos_delay", C, server.h2_dos_delay_ms, "100ms", 0, 10 * SEC,
          "how long upstream work of an HTTP/2 connection waits once its reset budget is spent"),
    R_DUR("h2_stall_timeout", C, server.h2_stall_timeout_ms, "30s", SEC, HOUR,
          "an HTTP/2 connection whose responses cannot progress this long (zero window, unread output) is closed"),
    R_LIST("trusted_proxies", C, server.trusted_proxies, server.ntrusted_proxies,
           "CIDRs whose X-Forwarded-For / CF-Connecting-IP are believed (a bare IP = /32 or /128)",
           .check = check_cidr),
};
static const dc__table_t server_table = TABLE(server_rows, NULL);

/* ---- upstreams ------------------------------------------------------------------------------------ */

typedef dc_config_upstream_t U;

static const dc__directive_t queue_rows[] = {
    R_UINT("max", U, queue_max, "1000", 0, 1000000, "requests waiting for budget; 0 = fail at once"),
    R_DUR("timeout", U, queue_timeout_ms, "2s", 0, 10 * MINUTE, "longest wait for budget before a 503"),
};
static const dc__table_t queue_table = TABLE(queue_rows, NULL);

static const dc__directive_t breaker_rows[] = {
    R_UINT("failures", U, breaker_failures, "5", 1, 1000000,
           "consecutive failed fetches (connect error, reset, timeout, 5xx) that open the breaker (1000000 with "
           "failure_ratio: 0 = a breaker that practically never opens)"),
    {.name = "failure_ratio",
     .type = DC__T_CUSTOM,
     .offset = offsetof(U, breaker_failure_ratio),
     .dflt = "0",
     .parse = parse_fraction,
     .expect = "a fraction from 0 to 1 (0.5) or a percentage (50%)",
     .doc = "outlier detection: the breaker also opens when, over the last `window`, at least `min_requests` "
            "attempts went to the origin and this share of them failed (0.5 is a good start); 0 = consecutive failures "
            "only (off "
            "by default: configs written with `failures: 1000` to keep the breaker shut stay so)"},
    R_DUR("window", U, breaker_window_ms, "10s", 100, HOUR, "the sliding window of failure_ratio (10 buckets)"),
    R_UINT("min_requests", U, breaker_min_requests, "20", 1, 1000000,
           "attempts within the window before failure_ratio may open the breaker"),
    R_DUR("backoff", U, breaker_backoff_ms, "1s", 1, HOUR,
          "first pause while open; doubles each time a probe fails (shared by the fleet with Redis); also the first "
          "pause "
          "before a key whose refresh failed is refreshed again"),
    R_DUR("max_backoff", U, breaker_max_backoff_ms, "30s", 1, DAY, "longest pause, for the breaker and per key"),
};
static const dc__table_t breaker_table = TABLE(breaker_rows, NULL);

static const char *const rate_per_names[] = {"account", "key", NULL};
static const int rate_per_values[] = {DC_RATE_PER_ACCOUNT, DC_RATE_PER_KEY};

typedef dc_config_tier_t UTIER;

static const dc__directive_t origin_tier_rows[] = {
    R_STR("url", UTIER, url, NULL, "this origin's base URL, http or https", .flags = DC__D_REQUIRED,
          .check = check_upstream_url, .expect = "an http:// or https:// URL"),
    R_LIST("keys", UTIER, keys, nkeys, "this origin's own API keys (none = keyless)", .flags = DC__D_DROP_EMPTY,
           .check = check_header_value),
    {.name = "rate",
     .type = DC__T_RATES,
     .offset = offsetof(UTIER, rates),
     .aux = offsetof(UTIER, nrates),
     .doc = "this origin's own fleet-wide budget, one or more windows"},
};
static const dc__table_t origin_tier_table = TABLE(origin_tier_rows, NULL);

static const dc__directive_t retry_budget_rows[] = {
    R_UINT("percent", U, retry_budget_percent, "20", 0, 100,
           "retries and failovers in progress may be this share of the upstream's active requests"),
    R_UINT("min_concurrency", U, retry_budget_min, "3", 0, 100000,
           "retries and failovers always allowed at once, whatever the share"),
};
static const dc__table_t retry_budget_table = TABLE(retry_budget_rows, NULL);

/* An endpoint pattern of groups and weights: an upstream path ("/swap/v2/execute"), or a prefix
 * ending in a star; no query, the star only last. */
static int check_path_pattern(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    (void)d;
    const char *p = *v;
    const char *star = strchr(p, '*');
    if (p[0] != '/' || strchr(p, '?') != NULL || (star != NULL && star[1] != '\0'))
        return fail_found(ctx, node, "an upstream path (/swap/v2/execute) or a prefix ending in * (/v1/wallet/*)");
    for (; *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail_found(ctx, node, "a path without spaces or control characters");
    return 0;
}

typedef dc_config_account_t UACCT;

static const dc__directive_t account_rows[] = {
    R_STR("name", UACCT, name, NULL, "the account's name: names its budget in Redis, /metrics and logs",
          .flags = DC__D_REQUIRED, .check = check_nonempty),
    R_LIST("keys", UACCT, keys, nkeys, "the account's API keys (they share its rate); empty entries are dropped",
           .flags = DC__D_DROP_EMPTY | DC__D_REQUIRED, .check = check_header_value),
    {.name = "rate",
     .type = DC__T_RATES,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(UACCT, rates),
     .aux = offsetof(UACCT, nrates),
     .doc = "the account's fleet-wide budget, one or more windows; a request counts its path's weight"},
};
static int account_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    UACCT *a = array;
    if (a[i].nkeys == 0)
        return dc__cfg_fail(ctx, item, "keys", "expected at least one key, found none (unset ${VAR}?)");
    if (a[i].nrates == 0)
        return dc__cfg_fail(ctx, item, "rate", "expected a rate (600/1m), found none");
    for (size_t j = 0; j < i; j++)
        if (strcmp(a[j].name, a[i].name) == 0)
            return dc__cfg_fail(ctx, item, "name", "expected a name no other account has, found \"%s\" again",
                                a[i].name);
    return 0;
}
static const dc__table_t account_table = TABLE(account_rows, NULL);

typedef dc_config_group_t UGROUP;

static const dc__directive_t group_rows[] = {
    R_STR("name", UGROUP, name, NULL, "the group's name: names its budgets in Redis and /metrics",
          .flags = DC__D_REQUIRED, .check = check_nonempty),
    R_LIST("paths", UGROUP, paths, npaths,
           "upstream paths of the group: exact (/swap/v2/execute) or a prefix ending in * (/v1/wallet/*); "
           "a request belongs to the first group one of whose paths matches",
           .flags = DC__D_REQUIRED, .check = check_path_pattern),
    {.name = "rate",
     .type = DC__T_RATES,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(UGROUP, rates),
     .aux = offsetof(UGROUP, nrates),
     .doc = "the group's fleet-wide budget in requests (weights do not apply), one per account (or one for "
            "the upstream without accounts)"},
    R_BOOL("separate", UGROUP, separate, "false",
           "the group is its own bucket (Jupiter's /swap/v2/execute): its requests do not count in the "
           "account's budget; false: they count in both"),
};
/* Does path pattern `a` (exact, or a prefix ending in '*') match every path `b` matches? */
static bool pattern_covers(const char *a, const char *b)
{
    size_t al = strlen(a), bl = strlen(b);
    if (al == 0 || a[al - 1] != '*')
        return strcmp(a, b) == 0;
    if (bl > 0 && b[bl - 1] == '*')
        bl--; /* b's own prefix: covered when it starts with a's */
    return bl >= al - 1 && memcmp(a, b, al - 1) == 0;
}

static int group_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    UGROUP *g = array;
    if (g[i].npaths == 0)
        return dc__cfg_fail(ctx, item, "paths", "expected at least one path, found none");
    if (g[i].nrates == 0)
        return dc__cfg_fail(ctx, item, "rate", "expected a rate (60/1m), found none");
    for (size_t j = 0; j < i; j++)
        if (strcmp(g[j].name, g[i].name) == 0)
            return dc__cfg_fail(ctx, item, "name", "expected a name no other group has, found \"%s\" again", g[i].name);
    /* the first group whose path matches wins: a path an earlier group's pattern covers whole would
     * never be this group's (a silent misconfiguration: its rate never applies) */
    for (size_t k = 0; k < g[i].npaths; k++)
        for (size_t j = 0; j < i; j++)
            for (size_t m = 0; m < g[j].npaths; m++)
                if (pattern_covers(g[j].paths[m], g[i].paths[k]))
                    return dc__cfg_fail(ctx, item, "paths",
                                        "expected paths no earlier group covers, found %s (group %s has %s and "
                                        "comes first)",
                                        g[i].paths[k], g[j].name, g[j].paths[m]);
    return 0;
}
static const dc__table_t group_table = TABLE(group_rows, NULL);

/* accounts: the keys of every account become the upstream's keys (in order), each account has its
 * own budget; they replace keys / rate / rate_per and are for the single-url form. groups and
 * weights are for tier 1 (the single-url form). */
static int upstream_accounts_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, U *u)
{
    const dc__ynode_t *node;
    if (u->ntiers > 0) {
        static const char *const one_origin[] = {"accounts", "groups", "weights"};
        for (size_t i = 0; i < 3; i++)
            if ((node = dc__ynode_get(map, one_origin[i])) != NULL)
                return dc__cfg_fail(ctx, node, NULL,
                                    "expected no %s beside tiers: (single-url upstreams only), found one",
                                    one_origin[i]);
    }
    if (u->rate_per == DC_RATE_PER_KEY && (u->naccounts > 0 || u->ngroups > 0))
        return dc__cfg_fail(ctx, dc__ynode_get(map, "rate_per"), NULL,
                            "expected no rate_per: key with accounts or groups (an account is the keys sharing a "
                            "rate), found one");
    if (u->nweights > 0) {
        /* a request must fit its budget: one that counts more than a window allows never goes, and
         * pacing at rate - (largest cost - 1) would starve every other path of the account */
        uint32_t heaviest = 0;
        const char *which = NULL;
        for (size_t i = 0; i < u->nweights; i++)
            if (u->weights[i].value > heaviest) {
                heaviest = u->weights[i].value;
                which = u->weights[i].name;
            }
        const dc_config_rate_t *tightest = NULL;
        for (size_t a = 0; a < (u->naccounts > 0 ? u->naccounts : 1); a++) {
            const dc_config_rate_t *rs = u->naccounts > 0 ? u->accounts[a].rates : u->rates;
            size_t nr = u->naccounts > 0 ? u->accounts[a].nrates : u->nrates;
            for (size_t i = 0; i < nr; i++)
                if (tightest == NULL || rs[i].limit < tightest->limit)
                    tightest = &rs[i];
        }
        if (tightest != NULL && heaviest > tightest->limit / 2)
            return dc__cfg_fail(ctx, dc__ynode_get(map, "weights"), NULL,
                                "expected every weight at most half the tightest rate's %u requests per %llu ms (a "
                                "request of weight w leaves a budget of rate - (w - 1) for every other path), "
                                "found %s: %u",
                                tightest->limit, (unsigned long long)tightest->window_ms, which, heaviest);
    }
    if (u->naccounts == 0)
        return 0;
    static const char *const replaced[] = {"keys", "rate"};
    for (size_t i = 0; i < 2; i++)
        if ((node = dc__ynode_get(map, replaced[i])) != NULL)
            return dc__cfg_fail(ctx, node, NULL,
                                "expected no %s beside accounts: (give each account its keys and rate), found one",
                                replaced[i]);
    size_t n = 0;
    for (size_t a = 0; a < u->naccounts; a++)
        n += u->accounts[a].nkeys;
    for (size_t k = 0; k < u->nkeys; k++)
        free(u->keys[k]);
    free(u->keys); /* absent: empty, but maybe allocated by the defaults */
    u->keys = dc_calloc(n, sizeof(char *));
    u->nkeys = 0;
    for (size_t a = 0; a < u->naccounts; a++)
        for (size_t k = 0; k < u->accounts[a].nkeys; k++)
            u->keys[u->nkeys++] = dc_strdup(u->accounts[a].keys[k]);
    return 0;
}

/* url or tiers (exactly one); with tiers, the first origin's url, keys and rate are copied to the
 * upstream's own fields, which every reader of the first origin uses. */
static int upstream_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    U *u = base;
    if (map == NULL)
        return 0;
    int rc = upstream_accounts_finish(ctx, map, u);
    if (rc != 0)
        return rc;
    const dc__ynode_t *tiers = dc__ynode_get(map, "tiers");
    if (u->ntiers == 0) {
        if (tiers != NULL)
            return fail_found(ctx, tiers, "a list of 1 to 4 tiers ({ url: ..., keys: [...], rate: ... })");
        if (u->url == NULL)
            return dc__cfg_fail(ctx, map, "url",
                                "expected an http:// or https:// URL, found nothing (the key is "
                                "required)");
        return 0;
    }
    if (u->ntiers > DC_CONFIG_TIERS_MAX)
        return fail_found(ctx, tiers, "a list of 1 to 4 tiers");
    static const char *const moved[] = {"url", "keys", "rate"};
    for (size_t i = 0; i < 3; i++) {
        const dc__ynode_t *node = dc__ynode_get(map, moved[i]);
        if (node != NULL)
            return dc__cfg_fail(ctx, node, NULL, "expected no %s beside tiers: (give each tier its own), found one",
                                moved[i]);
    }
    const dc_config_tier_t *t0 = &u->tiers[0];
    u->url = dc_strdup(t0->url);
    free(u->keys); /* absent: empty, but maybe allocated by the defaults */
    free(u->rates);
    u->nkeys = t0->nkeys;
    u->keys = dc_calloc(t0->nkeys ? t0->nkeys : 1, sizeof(char *));
    for (size_t k = 0; k < t0->nkeys; k++)
        u->keys[k] = dc_strdup(t0->keys[k]);
    u->nrates = t0->nrates;
    u->rates = dc_calloc(t0->nrates ? t0->nrates : 1, sizeof(dc_config_rate_t));
    if (t0->nrates > 0)
        memcpy(u->rates, t0->rates, t0->nrates * sizeof(dc_config_rate_t));
    return 0;
}

static const dc__directive_t upstream_rows[] = {
    R_STR("url", U, url, NULL, "base URL, http or https; a trailing slash is dropped; required unless `tiers` is given",
          .check = check_upstream_url, .expect = "an http:// or https:// URL"),
    R_LIST("keys", U, keys, nkeys, "API keys rotated across requests; empty entries (unset ${VAR}) are dropped",
           .flags = DC__D_DROP_EMPTY, .check = check_header_value),
    R_STR("key_header", U, key_header, "x-api-key", "request header that carries the key (lowercased)",
          .check = check_header_name),
    {.name = "rate",
     .type = DC__T_RATES,
     .offset = offsetof(U, rates),
     .aux = offsetof(U, nrates),
     .doc = "fleet-wide request budget toward this upstream, one or more windows"},
    {.name = "rate_per",
     .type = DC__T_ENUM,
     .offset = offsetof(U, rate_per),
     .dflt = "account",
     .enum_names = rate_per_names,
     .enum_values = rate_per_values,
     .doc = "what `rate` limits. account: all keys share it (the provider limits the organisation, like "
            "Jupiter); key: each of `keys` has its own budget of `rate` (the provider limits per key) and "
            "keys are used in turn, each attempt waiting for its own key's slot"},
    R_MAP("queue", 0, DC__NOFIELD, &queue_table, "waiting for budget instead of failing"),
    R_MAP("breaker", 0, DC__NOFIELD, &breaker_table,
          "when every fetch fails, stop sending: no request for a pause that grows, then one probe"),
    R_DUR("connect_timeout", U, connect_timeout_ms, "2s", 1, 5 * MINUTE, "TCP + TLS connect deadline"),
    R_DUR("timeout", U, timeout_ms, "10s", 1, HOUR,
          "whole-response deadline (head and body, across retries); past it the client gets a 504 or the "
          "stale copy, and nothing is stored"),
    R_DUR("idle_timeout", U, idle_timeout_ms, "5s", 1, HOUR,
          "longest gap between two bytes of an upstream body; past it, as for timeout"),
    R_UINT("retries", U, retries, "2", 0, 10,
           "retries of GET/HEAD after a connect error, a reset, 502/503/504, or a 429 (after the pause it asks for)"),
    R_DUR("retry_backoff", U, retry_backoff_ms, "100ms", 0, MINUTE, "base of exponential backoff with jitter"),
    R_DUR("key_quarantine", U, key_quarantine_ms, "60s", 0, DAY, "how long a key answered 401/403 is set aside"),
    R_BOOL("http2", U, http2, "true", "use HTTP/2 when the upstream offers it (ALPN)"),
    R_BOOL("tls_verify", U, tls_verify, "true", "verify the upstream certificate"),
    {.name = "tiers",
     .type = DC__T_MAPLIST,
     .offset = offsetof(U, tiers),
     .aux = offsetof(U, ntiers),
     .elem_size = sizeof(UTIER),
     .min = 1,
     .sub = &origin_tier_table,
     .doc = "origins in order of preference (1 to 4), instead of url/keys/rate: a request goes to the first "
            "that is not cordoned, whose breaker admits it and that has budget, and an idempotent one moves "
            "down on a connect error, a timeout (attempt_timeout), a 5xx or a 429, within `timeout`; each tier has "
            "its own keys, budget and breaker; Cache-Status says detail=tier-N when tier N > 1 answered"},
    R_DUR("attempt_timeout", U, attempt_timeout_ms, "0", 0, HOUR,
          "with tiers: an attempt with no response head by then moves to the next tier (0 = wait for `timeout`)"),
    R_MAP("retry_budget", 0, DC__NOFIELD, &retry_budget_table,
          "retries and failovers in progress stay below max(min_concurrency, percent of active requests), as "
          "Envoy's retry_budget: an outage never multiplies the load on the origin"),
    {.name = "accounts",
     .type = DC__T_MAPLIST,
     .offset = offsetof(U, accounts),
     .aux = offsetof(U, naccounts),
     .elem_size = sizeof(UACCT),
     .min = 1,
     .sub = &account_table,
     .item_check = account_item_check,
     .doc = "keys grouped by the organisation whose limit they share, instead of keys/rate: each account has "
            "its own fleet-wide budget and an attempt waits for the slot of its key's account (keys are used in "
            "turn across accounts)"},
    {.name = "groups",
     .type = DC__T_MAPLIST,
     .offset = offsetof(U, groups),
     .aux = offsetof(U, ngroups),
     .elem_size = sizeof(UGROUP),
     .min = 1,
     .sub = &group_table,
     .item_check = group_item_check,
     .doc = "endpoint groups with their own rate inside each account's budget (Jupiter's execute bucket, "
            "Birdeye's wallet group): a request of a group waits for a slot free in both its group's and its "
            "account's budget; a 429 to it pauses its group only"},
    {.name = "weights",
     .type = DC__T_UINTMAP,
     .offset = offsetof(U, weights),
     .aux = offsetof(U, nweights),
     .min = 1,
     .max = 1000,
     .check = check_path_pattern,
     .doc = "path pattern: cost (1..1000) of one request in the account's (or upstream's, or key's) budget, "
            "default 1; an exact path wins over prefixes, the longest prefix over shorter ones; pacing keeps "
            "every window's weighted count within its rate (the budget paces at rate - (largest cost - 1)), so a "
            "weight may be at most half the tightest rate it counts in"},
};
static const dc__table_t upstream_table = TABLE(upstream_rows, upstream_finish);

/* ---- routes ---------------------------------------------------------------------------------------- */

typedef dc_config_cache_rule_t RULE;

static const char *const client_no_cache_names[] = {"ignore", "revalidate", NULL};
static const int client_no_cache_values[] = {DC_CLIENT_NO_CACHE_IGNORE, DC_CLIENT_NO_CACHE_REVALIDATE};

typedef dc_config_validate_rule_t VRULE;
static const dc__directive_t vrule_rows[] = {
    R_STR("pointer", VRULE, pointer, NULL, "RFC 6901 JSON pointer into the answer (\"\" = the whole document)",
          .flags = DC__D_REQUIRED, .check = check_json_pointer),
    R_BOOL("absent", VRULE, absent, "false", "the pointer must resolve to nothing (an error member, say)"),
    R_BOOL("present", VRULE, present, "false", "the pointer must resolve to something (null counts)"),
    R_BOOL("nonempty_array", VRULE, nonempty_array, "false", "the pointer must resolve to a non-empty array"),
};

/* Exactly one check per item. */
static int vrule_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    const VRULE *v = base;
    if (map == NULL || (int)v->absent + (int)v->present + (int)v->nonempty_array == 1)
        return 0;
    char found[256];
    dc__ynode_describe(map, found, sizeof(found));
    return dc__cfg_fail(ctx, map, NULL, "expected exactly one of absent, present, nonempty_array set to true, found %s",
                        found);
}
static const dc__table_t vrule_table = TABLE(vrule_rows, vrule_finish);

/* hedge.after: "p95" or a duration above 0. */
static int parse_hedge_after(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                             void *base)
{
    dc_config_hedge_t *h = base;
    if (strcmp(text, "p95") == 0) {
        h->p95 = true;
        return 0;
    }
    uint64_t ms;
    if (dc_config_parse_duration_ms(text, &ms) != 0 || ms == 0 || ms > HOUR)
        return dc__cfg_fail_expected(ctx, d, node, false);
    h->p95 = false;
    h->after_ms = ms;
    return 0;
}

typedef dc_config_hedge_t HEDGE;
static const char *const hedge_tier_names[] = {"same", "next", NULL};
static const int hedge_tier_values[] = {DC_HEDGE_TIER_SAME, DC_HEDGE_TIER_NEXT};
static const dc__directive_t hedge_rows[] = {
    {.name = "after",
     .type = DC__T_CUSTOM,
     .offset = 0,
     .parse = parse_hedge_after,
     .flags = DC__D_REQUIRED,
     .expect = "p95 or a duration from 1ms to 1h",
     .doc = "when the first attempt has no response head by then, the hedge goes: p95 = the 95th percentile of "
            "the tier's response heads over the last 10-20 s (not below `floor`; `fallback` until it has 20 of "
            "them), or a fixed delay"},
    R_DUR("fallback", HEDGE, fallback_ms, "100ms", 1, HOUR,
          "with after: p95, the delay while the tier has too few samples"),
    R_DUR("floor", HEDGE, floor_ms, "20ms", 0, HOUR, "with after: p95, the shortest delay"),
    R_UINT("max", HEDGE, max, "1", 0, 1, "extra attempts per request (1; 0 = hedging off)"),
    {.name = "tier",
     .type = DC__T_ENUM,
     .offset = offsetof(HEDGE, tier),
     .dflt = "same",
     .enum_names = hedge_tier_names,
     .enum_values = hedge_tier_values,
     .doc = "where the hedge goes: the same tier as the first attempt, or the next one (the same when it is the "
            "last)"},
};
static const dc__table_t hedge_table = TABLE(hedge_rows, NULL);

static const char *const validate_names[] = {"none", "json", NULL};
static const int validate_values[] = {DC_VALIDATE_NONE, DC_VALIDATE_JSON};

static const dc__directive_t rule_rows[] = {
    R_STR("path", RULE, path, NULL, "prefix of the upstream path this rule covers; / = everything",
          .flags = DC__D_REQUIRED, .check = check_abs_path, .expect = "a path starting with '/'"),
    R_DUR("ttl", RULE, ttl_ms, NULL, 0, 365 * DAY,
          "how long an answer is fresh; 0 (only with respect_origin: true) = the origin decides: an answer "
          "without freshness from the origin (max-age, s-maxage, Expires, or heuristic) is not stored",
          .flags = DC__D_REQUIRED),
    R_DUR("stale_while_revalidate", RULE, stale_while_revalidate_ms, "0", 0, 365 * DAY,
          "after ttl, serve stale while one background refresh runs"),
    R_DUR("stale_if_error", RULE, stale_if_error_ms, "0", 0, 365 * DAY,
          "after ttl, serve stale when the upstream fails"),
    R_DUR("negative_ttl", RULE, negative_ttl_ms, "0", 0, 365 * DAY,
          "ttl of 400/404/405/410/414/451/501 answers; 0 = not cached (unless, under respect_origin, the "
          "origin gives them a lifetime)"),
    R_BOOL("respect_origin", RULE, respect_origin, "false",
           "RFC 9111 freshness: the origin's s-maxage / max-age / Expires (minus the Age and Date correction) "
           "win over ttl when sent, and make any final status storable (5xx, 429 and 302 included; never 1xx, "
           "206, 304); without them the rule's ttl / negative_ttl (or heuristic) apply as usual"),
    {.name = "heuristic",
     .type = DC__T_CUSTOM,
     .offset = offsetof(RULE, heuristic),
     .dflt = "0%",
     .parse = parse_percent,
     .expect = "a percentage from 0% to 100%",
     .doc = "heuristic freshness (RFC 9111 4.2.2), with respect_origin only: an answer of a heuristically "
            "cacheable status (200 203 204 300 301 308 404 405 410 414 451 501, or any with `public`) that "
            "has a Last-Modified and no explicit freshness is fresh for this share of the time between "
            "Last-Modified and Date, capped by heuristic_max, instead of ttl; 0% = off"},
    R_DUR("heuristic_max", RULE, heuristic_max_ms, "1h", 0, 365 * DAY,
          "longest heuristic lifetime (a day-old object at 10% would get 2.4 h)"),
    R_BOOL("cdn_role", RULE, cdn_role, "false",
           "dexcache acts as a CDN for its clients (RFC 9213): a valid CDN-Cache-Control from the origin "
           "replaces Cache-Control, Expires and Pragma for dexcache's own storage decision (a valid "
           "Dexcache-Cache-Control, targeted at dexcache alone, always does and comes first)"),
    R_BOOL("forward_cdn_cache_control", RULE, forward_cdn_cache_control, "true",
           "the origin's CDN-Cache-Control reaches clients (false: dropped, for example when dexcache is the "
           "last CDN layer); replaced by the route's own when cdn.cdn_cache_control is on. "
           "Dexcache-Cache-Control never leaves dexcache"),
    R_LIST("key_sets", RULE, key_sets, nkey_sets, "params whose comma lists are sorted and deduplicated in the key"),
    R_LIST("ignore_params", RULE, ignore_params, nignore_params, "params left out of the cache key"),
    R_UINT("max_variants", RULE, max_variants, "8", 1, 64,
           "Vary (RFC 9111 4.1): answers whose Vary names request headers (other than Accept-Encoding) are "
           "stored as variants of their URL keyed by the normalised values of those headers, up to this many per "
           "URL; a new variant past it evicts the least recently used one (Cache-Status detail=vary-limit). "
           "Vary: * and Vary on Host, Authorization, Cookie, hop-by-hop or forwarding headers or the upstream's "
           "key header are never stored (detail=vary); a changed Vary list drops the URL's other variants; "
           "headers a URL varies on are forwarded upstream once it has variants (add them to forward_headers "
           "to have the first request's sent too); variants are not shared through Redis L2"),
    R_LIST("key_headers", RULE, key_headers, nkey_headers,
           "request headers that are forwarded upstream and made part of the cache key (each value its own "
           "entry); not applied to batched requests, which forward none of the client's headers",
           .check = check_forward_header),
    {.name = "prefetch",
     .type = DC__T_CUSTOM,
     .offset = offsetof(RULE, prefetch),
     .dflt = "0",
     .parse = parse_prefetch,
     .expect = "0 or a fraction from 0.5 to 0.99",
     .doc = "refresh ahead once this fraction of ttl has passed and the entry is read; 0 = off"},
    {.name = "client_no_cache",
     .type = DC__T_ENUM,
     .offset = offsetof(RULE, client_no_cache),
     .dflt = "ignore",
     .enum_names = client_no_cache_names,
     .enum_values = client_no_cache_values,
     .doc = "what a client's freshness directives (Cache-Control no-cache, max-age, min-fresh, max-stale; "
            "Pragma: no-cache) do. ignore: served from cache anyway, because one client asking for a fresh copy "
            "on every call would spend the shared upstream budget of all clients (Cache-Status says "
            "detail=client-cc-ignored); revalidate: RFC 9111 5.2.1 - no-cache, max-age=0, an entry older than "
            "max-age or fresh for less than min-fresh go to the origin (collapsed with others asking for the "
            "same key, falling back to the cached copy if the origin fails), and max-stale accepts a stale copy "
            "still kept (not past must-revalidate). Either way only-if-cached answers 504 instead of asking the "
            "origin, and a request's no-store keeps its own answer out of the cache"},
    R_BOOL("public", RULE, is_public, "false", "cache even requests that carry Authorization"),
    {.name = "validate",
     .type = DC__T_ENUM,
     .offset = offsetof(RULE, validate),
     .dflt = "none",
     .enum_names = validate_names,
     .enum_values = validate_values,
     .doc = "json: a 2xx answer's body must parse as JSON, else the answer is an upstream failure: never stored, "
            "never written to L2, never handed to collapsed waiters as a success; like a 5xx it counts as a failure "
            "of the tier that answered (health, breaker) and the fetch moves to the next tier or retries when its "
            "retry rules, retry budget and deadline allow; else they and the client get the stale copy (within "
            "stale_if_error) or a 502 whose JSON error names the reason. validate_rules and payload_time imply "
            "json. Bodies are "
            "validated up to 4 MiB (decoded): a validated answer's head waits for its whole body up to that "
            "size; larger ones stream as before and are not checked"},
    {.name = "validate_rules",
     .type = DC__T_MAPLIST,
     .offset = offsetof(RULE, validate_rules),
     .aux = offsetof(RULE, nvalidate_rules),
     .elem_size = sizeof(VRULE),
     .sub = &vrule_table,
     .doc = "checks on JSON pointers a 2xx answer must all pass, as for validate: json, e.g. "
            "[{ pointer: /error, absent: true }, { pointer: /data, nonempty_array: true }]"},
    R_LIST("fail_statuses", RULE, fail_statuses, nfail_statuses,
           "upstream statuses that count as failures (as for validate): e.g. [400] for an API that answers "
           "transient errors with 400; a failure is never cached nor shared, even under negative_ttl",
           .check = check_status),
    R_STR("payload_time", RULE, payload_time, NULL,
          "JSON pointer to the answer's own timestamp: unix seconds, unix milliseconds (numbers from 1e11 on), "
          "either as a decimal string, or an RFC 3339 string; with max_payload_age",
          .check = check_json_pointer),
    R_DUR("max_payload_age", RULE, max_payload_age_ms, "0", 0, 365 * DAY,
          "a 2xx answer whose payload_time is older than this (or missing, or not a timestamp) is a failure, "
          "as for validate, whatever its HTTP freshness; 0 = off"),
    R_MAP("hedge", offsetof(RULE, hedge), offsetof(RULE, hedge.enabled), &hedge_table,
          "hedged GETs, opt-in: when the first upstream attempt of a cache fill or refresh has no response head "
          "after `after`, one more attempt goes (a slot of the retry budget and of the upstream budget free now, "
          "fleet-wide, else none: skipped_budget); the first head that is not a 5xx or 429 is used and the other "
          "attempt is cancelled; validation applies to the winner. Never for pass-through, no_cache routes or "
          "POST. Metrics: dexcache_upstream_hedges_total{upstream,outcome=won|lost|skipped_budget}"),
};

/* A rule whose path starts with an earlier rule's path can never match: first match wins. */
static int rule_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    const RULE *rules = array;
    for (size_t j = 0; j < i; j++) {
        const char *earlier = rules[j].path;
        if (strcmp(earlier, "/") != 0 && strncmp(rules[i].path, earlier, strlen(earlier)) != 0)
            continue;
        char where[256], found[256];
        const dc__ynode_t *node = dc__ynode_get(item, "path");
        dc__ynode_path(item->parent->items[j], where, sizeof(where));
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected a path no earlier rule covers, found %s (%s has path '%s')",
                            found, where, earlier);
    }
    return 0;
}

/* ttl 0 and heuristic freshness hand the decision to the origin's headers: only with respect_origin. */
static int rule_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    RULE *r = base;
    char found[256];
    const dc__ynode_t *node;
    memset(r->fail_status_bits, 0, sizeof(r->fail_status_bits));
    for (size_t i = 0; i < r->nfail_statuses; i++) {
        unsigned st = (unsigned)atoi(r->fail_statuses[i]);
        r->fail_status_bits[st / 64] |= 1ull << (st % 64);
    }
    if (map != NULL && (r->payload_time != NULL) != (r->max_payload_age_ms > 0)) {
        node = dc__ynode_get(map, r->payload_time != NULL ? "payload_time" : "max_payload_age");
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected payload_time and max_payload_age together, found %s alone",
                            found);
    }
    r->validate_body = r->validate == DC_VALIDATE_JSON || r->nvalidate_rules > 0 || r->payload_time != NULL;
    if (map == NULL || r->respect_origin)
        return 0;
    if (r->ttl_ms == 0 && (node = dc__ynode_get(map, "ttl")) != NULL) {
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL,
                            "expected a ttl above 0 (ttl 0 needs respect_origin: true: the origin decides), found %s",
                            found);
    }
    if (r->heuristic > 0 && (node = dc__ynode_get(map, "heuristic")) != NULL) {
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected heuristic only with respect_origin: true, found %s", found);
    }
    return 0;
}

static const dc__table_t rule_table = TABLE(rule_rows, rule_finish);

typedef dc_config_batch_t BATCH;
static const char *const absent_ids_names[] = {"remember", "refetch", NULL};
static const int absent_ids_values[] = {DC_ABSENT_IDS_REMEMBER, DC_ABSENT_IDS_REFETCH};
static const dc__directive_t batch_rows[] = {
    R_STR("path", BATCH, path, NULL, "upstream path whose requests are split per id and batched",
          .flags = DC__D_REQUIRED, .check = check_abs_path, .expect = "a path starting with '/'"),
    R_STR("param", BATCH, param, NULL, "query parameter holding the comma-separated ids", .flags = DC__D_REQUIRED,
          .check = check_nonempty),
    R_UINT("max", BATCH, max, "50", 1, 1000, "most ids per upstream request"),
    R_DUR("window", BATCH, window_ms, "5ms", 0, SEC, "how long misses are gathered before one upstream request"),
    {.name = "absent_ids",
     .type = DC__T_ENUM,
     .offset = offsetof(BATCH, absent_ids),
     .dflt = "remember",
     .enum_names = absent_ids_names,
     .enum_values = absent_ids_values,
     .doc = "an id the upstream left out of its answer (Jupiter's /price/v3 leaves out unpriced mints). "
            "remember: stored as absent ({}) for the rule's ttl like any answer; refetch: answered {} this "
            "time but not stored, so the next request for it asks the upstream again"},
};
static const dc__table_t batch_table = TABLE(batch_rows, NULL);

typedef dc_config_limit_t LIMIT;
static int limit_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    LIMIT *l = base;
    if (map != NULL && dc__ynode_get(map, "burst") == NULL)
        l->burst = l->rate.limit;
    const dc__ynode_t *tiers = map != NULL ? dc__ynode_get(map, "tiers") : NULL;
    if (tiers != NULL && l->by != DC_LIMIT_BY_PLUGIN)
        return dc__cfg_fail(ctx, tiers, NULL, "expected tiers only with by: plugin (a plugin sets the tier)");
    return 0;
}

/* limit.tiers: tier names as plugins hand them (auth: the credential's tier after its `tiers:` map). */
static int check_tier_name(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    size_t n = strlen(*v);
    bool ok = n >= 1 && n <= 64;
    for (const char *p = *v; ok && *p != '\0'; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.';
    return ok ? 0 : fail_found(ctx, node, "a tier name of 1 to 64 characters from A-Z, a-z, 0-9, '_', '-', '.'");
}

typedef dc_config_limit_tier_t TIER;
static int tier_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    TIER *t = base;
    if (map != NULL && dc__ynode_get(map, "burst") == NULL)
        t->burst = t->rate.limit;
    return 0;
}

static const dc__directive_t tier_rows[] = {
    {.name = "rate",
     .type = DC__T_RATE,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(TIER, rate),
     .doc = "sustained rate per client of this tier"},
    R_UINT("burst", TIER, burst, NULL, 1, UINT32_MAX, "requests allowed at once above the tier's rate",
           .dflt_doc = "the tier's rate count"),
};
static const dc__table_t tier_table = TABLE(tier_rows, tier_finish);

static const dc__directive_t limit_rows[] = {
    {.name = "rate",
     .type = DC__T_RATE,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(LIMIT, rate),
     .doc = "sustained rate per client"},
    R_UINT("burst", LIMIT, burst, NULL, 1, UINT32_MAX, "requests allowed at once above the rate",
           .dflt_doc = "the rate's count"),
    {.name = "by",
     .type = DC__T_CUSTOM,
     .offset = offsetof(LIMIT, by),
     .aux = offsetof(LIMIT, by_header),
     .dflt = "client",
     .parse = parse_limit_by,
     .release = release_string_at_aux,
     .expect = "client, header:<name> or plugin",
     .doc = "who is limited: client (IP), header:<name> (for example an API key), or plugin: the identity a "
            "plugin of the route set (set_client_id, for example the verified API key id or JWT subject); a "
            "request no plugin gave an identity is limited by its client IP"},
    {.name = "tiers",
     .type = DC__T_NAMEDMAP,
     .offset = offsetof(LIMIT, tiers),
     .aux = offsetof(LIMIT, ntiers),
     .elem_size = sizeof(TIER),
     .name_offset = offsetof(TIER, name),
     .sub = &tier_table,
     .check = check_tier_name,
     .doc = "with by: plugin, rates by the tier the plugin set (for example the auth plugin's credential tier): "
            "tiers: {pro: {rate: 600/1m, burst: 50}}; a client of a tier not listed, or of none, gets rate and "
            "burst above. Each tier is its own bucket, across the fleet like every limit"},
};
static const dc__table_t limit_table = TABLE(limit_rows, limit_finish);

typedef dc_config_cdn_t CDN;
static const dc__directive_t cdn_rows[] = {
    R_DUR("max_age", CDN, max_age_ms, "0", 0, 365 * DAY, "Cache-Control max-age for browsers"),
    R_DUR("s_maxage", CDN, s_maxage_ms, "0", 0, 365 * DAY, "Cache-Control s-maxage for shared caches"),
    R_DUR("stale_while_revalidate", CDN, stale_while_revalidate_ms, "0", 0, 365 * DAY,
          "Cache-Control stale-while-revalidate"),
    R_DUR("stale_if_error", CDN, stale_if_error_ms, "0", 0, 365 * DAY, "Cache-Control stale-if-error"),
    R_BOOL("cdn_cache_control", CDN, cdn_cache_control, "false", "also send CDN-Cache-Control"),
    R_LIST("tag_params", CDN, tag_params, ntag_params, "query params whose values become Surrogate-Key / Cache-Tag"),
};
static const dc__table_t cdn_table = TABLE(cdn_rows, NULL);

/* ---- cors (top level and per route) ---------------------------------------------------------------- */

typedef dc_config_cors_t CORS;

static int check_cors_origin(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    const char *why;
    return dc_config_cors_origin_normalise(*v, &why) == 0 ? 0 : fail_found(ctx, node, why);
}

/* A method or header name as written (a token; names are case-insensitive, browsers compare so). */
static int check_cors_token(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    return dc__config_is_header_name(*v) ? 0 : fail_found(ctx, node, "a token (GET, Content-Type, X-Cache)");
}

/* Join a list into one header value ("a, b"), or take dflt when the list is absent. */
static int cors_join(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, const char *key, char **items, size_t n,
                     const char *dflt, char *out)
{
    size_t o = 0;
    if (dc__ynode_get(map, key) == NULL) {
        snprintf(out, DC_CORS_VALUE_MAX, "%s", dflt);
        return 0;
    }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, DC_CORS_VALUE_MAX - o, "%s%s", i ? ", " : "", items[i]);
        if (w < 0 || (size_t)w >= DC_CORS_VALUE_MAX - o)
            return dc__cfg_fail(ctx, dc__ynode_get(map, key), NULL,
                                "expected a list shorter than %d characters joined, found a longer one",
                                DC_CORS_VALUE_MAX);
        o += (size_t)w;
    }
    return 0;
}

static int cors_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    CORS *c = base;
    if (map == NULL)
        return 0;
    for (size_t i = 0; i < c->nallow_origins; i++)
        if (strcmp(c->allow_origins[i], "*") == 0)
            c->any_origin = true;
    const dc__ynode_t *origins = dc__ynode_get(map, "allow_origins");
    if (c->nallow_origins == 0)
        return dc__cfg_fail(ctx, origins, NULL, "expected at least one origin, found an empty list");
    if (c->any_origin && c->nallow_origins > 1)
        return dc__cfg_fail(ctx, origins, NULL,
                            "expected either [\"*\"] or a list of origins, found \"*\" among other origins");
    if (c->any_origin && c->credentials)
        return dc__cfg_fail(ctx, dc__ynode_get(map, "credentials"), NULL,
                            "expected false with allow_origins [\"*\"] (browsers refuse a wildcard with "
                            "credentials: list the origins), found true");
    int rc;
    if ((rc = cors_join(ctx, map, "allow_methods", c->allow_methods, c->nallow_methods, "GET, HEAD, POST",
                        c->methods_value)) != 0 ||
        (rc = cors_join(ctx, map, "allow_headers", c->allow_headers, c->nallow_headers,
                        "Content-Type, Authorization, X-Api-Key, X-Request-Id", c->headers_value)) != 0 ||
        (rc = cors_join(ctx, map, "expose_headers", c->expose_headers, c->nexpose_headers,
                        "X-Cache, Cache-Status, Age, X-Request-Id, RateLimit-Policy, RateLimit, Retry-After",
                        c->expose_value)) != 0)
        return rc;
    snprintf(c->max_age_value, sizeof(c->max_age_value), "%llu", (unsigned long long)(c->max_age_ms / 1000));
    return 0;
}

static const dc__directive_t cors_rows[] = {
    R_LIST("allow_origins", CORS, allow_origins, nallow_origins,
           "origins allowed: exact ones (https://app.example, http://127.0.0.1:3000), any subdomain "
           "(https://*.example.org matches https://a.example.org and https://a.b.example.org, not "
           "https://example.org), or [\"*\"] alone; null is refused. An allowed Origin is echoed with "
           "Vary: Origin (`*` is sent as `*`); any other Origin gets no CORS header, the answer otherwise unchanged",
           .flags = DC__D_REQUIRED, .check = check_cors_origin),
    R_LIST("allow_methods", CORS, allow_methods, nallow_methods, "Access-Control-Allow-Methods of preflight answers",
           .check = check_cors_token, .dflt_doc = "GET, HEAD, POST"),
    R_LIST("allow_headers", CORS, allow_headers, nallow_headers,
           "Access-Control-Allow-Headers of preflight answers (request headers a page may set)",
           .check = check_cors_token, .dflt_doc = "Content-Type, Authorization, X-Api-Key, X-Request-Id"),
    R_LIST("expose_headers", CORS, expose_headers, nexpose_headers,
           "Access-Control-Expose-Headers of every allowed answer (response headers a page may read)",
           .check = check_cors_token,
           .dflt_doc = "X-Cache, Cache-Status, Age, X-Request-Id, RateLimit-Policy, RateLimit, Retry-After"),
    R_DUR("max_age", CORS, max_age_ms, "10m", 0, DAY,
          "Access-Control-Max-Age: how long a browser reuses a preflight (Chromium caps it at 2h)"),
    R_BOOL("credentials", CORS, credentials, "false",
           "Access-Control-Allow-Credentials: true (cookies, HTTP auth); refused with allow_origins [\"*\"]"),
};
static const dc__table_t cors_table = TABLE(cors_rows, cors_finish);

#define CORS_DOC                                                                                                       \
    "CORS answered by dexcache: preflights (OPTIONS with Origin and Access-Control-Request-Method) get a 204 "         \
    "here, before plugins and the client limit (they are not counted against it), never sent upstream nor "            \
    "charged to its budget; every other answer (hits, misses, stale, collapsed, streams, batches, "                    \
    "pass-through and dexcache's own errors) gets Access-Control-Allow-Origin, -Allow-Credentials and "                \
    "-Expose-Headers for an allowed Origin. The upstream's own Access-Control-* headers are dropped (never "           \
    "stored, never sent). With allow_origins [\"*\"] every answer says `*`, also without an Origin. Errors "           \
    "made before a route is known (400 for bad header bytes, 405, 414, 431) carry only the top-level policy's "        \
    "headers; libh2o's own 413 / 417 none. Absent = the upstream's pass through (an answer with Vary: Origin is "      \
    "then stored per Origin, as any Vary; one that grants the request's Origin without Vary: Origin is not "           \
    "stored: detail=cors-origin)"

/* routes[].plugins: names of instances under plugins: (parsed before routes), each once. */
static int check_route_plugin(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    const dc_config_t *cfg = ctx->cfg;
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (strcmp(cfg->plugins[i].name, *v) == 0)
            goto known;
    char found[160];
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL, "expected the name of a plugin under plugins:, found %s%s", found,
                        cfg->nplugins == 0 ? " (no plugins are defined)" : "");
known:
    for (size_t i = 0; i < node->pindex && node->parent != NULL; i++) {
        const dc__ynode_t *prev = node->parent->items[i];
        if (prev != NULL && prev->type == DC__YNODE_SCALAR && strcmp(prev->value, *v) == 0) {
            char again[160];
            dc__ynode_describe(node, again, sizeof(again));
            return dc__cfg_fail(ctx, node, NULL, "expected each plugin once per route, found %s again", again);
        }
    }
    return 0;
}

typedef dc_config_route_t ROUTE;
static int route_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    ROUTE *r = base;
    if (dc__ynode_get(map, "max_body") == NULL)
        r->max_body = ctx->cfg->server.max_body; /* server is parsed before routes */
    return 0;
}

static const dc__directive_t route_rows[] = {
    R_STR("prefix", ROUTE, prefix, NULL, "client path prefix; removed before the request goes upstream",
          .flags = DC__D_REQUIRED, .check = check_route_prefix, .expect = "a path prefix starting with '/'"),
    {.name = "upstream",
     .type = DC__T_CUSTOM,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(ROUTE, upstream_name),
     .aux = offsetof(ROUTE, upstream),
     .parse = parse_upstream_ref,
     .release = release_upstream_ref,
     .expect = "the name of an upstream",
     .doc = "name of the upstream (under upstreams:) that serves this route"},
    {.name = "cache",
     .type = DC__T_MAPLIST,
     .offset = offsetof(ROUTE, cache),
     .aux = offsetof(ROUTE, ncache),
     .elem_size = sizeof(RULE),
     .sub = &rule_table,
     .item_check = rule_item_check,
     .doc = "cache rules; the first whose path prefixes the upstream path wins; no match = not cached. "
            "Stored 200s answer `Range: bytes=` themselves (RFC 9110 14): one range = 206 with Content-Range over "
            "the representation sent (the gzip bytes when the client gets gzip; each has its own ETag for "
            "If-Range), several = the whole 200, none satisfiable = 416; a miss fetches the whole object once "
            "(Range is never sent upstream on the cache path) and slices it. A 2xx/3xx answer to POST, PUT, "
            "DELETE or PATCH on the route removes the stored answers of its URI and of its Location / "
            "Content-Location on the same host and route (RFC 9111 4.4), on every instance of a fleet"},
    R_LIST("no_cache", ROUTE, no_cache, nno_cache, "upstream path prefixes never cached, checked before cache rules",
           .check = check_abs_path),
    R_MAP("batch", offsetof(ROUTE, batch), offsetof(ROUTE, batch.enabled), &batch_table,
          "split multi-id requests into per-id entries and batch the misses"),
    R_MAP("limit", offsetof(ROUTE, limit), offsetof(ROUTE, limit.enabled), &limit_table, "per-client rate limit"),
    R_MAP("cdn", offsetof(ROUTE, cdn), offsetof(ROUTE, cdn.enabled), &cdn_table,
          "caching headers sent to CDNs and browsers"),
    R_BOOL("forward_client_key", ROUTE, forward_client_key, "false",
           "pass the client's own key_header upstream instead of a configured key"),
    R_LIST("forward_headers", ROUTE, forward_headers, nforward_headers,
           "request headers a cacheable request forwards besides the default Accept, Content-Type, User-Agent, "
           "traceparent and tracestate; they are NOT in the cache key (use the cache rule's key_headers for "
           "headers that change the answer). Pass-through requests forward the client's headers anyway, minus "
           "hop-by-hop and spoofable forwarding headers (Forwarded, X-Forwarded-*, X-Real-IP, X-Original-URL, "
           "...), which dexcache sets itself from what it knows",
           .check = check_forward_header),
    R_SIZE("max_body", ROUTE, max_body, NULL, 0, DC__UNBOUNDED, "request body cap for this route",
           .dflt_doc = "server.max_body"),
    R_LIST("plugins", ROUTE, plugins, nplugins,
           "plugin instances (names under plugins:) this route runs, in order: on_request after routing and "
           "before the limit, cache_key before the lookup, on_deliver before the answer's head leaves",
           .check = check_route_plugin),
    R_MAP("cors", offsetof(ROUTE, cors), offsetof(ROUTE, cors.enabled), &cors_table,
          "this route's CORS policy, replacing the top-level cors: as a whole (keys it omits take their "
          "defaults)"),
};
static const dc__table_t route_table = TABLE(route_rows, route_finish);

static int route_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    const ROUTE *routes = array;
    for (size_t j = 0; j < i; j++) {
        if (strcmp(routes[j].prefix, routes[i].prefix) != 0)
            continue;
        char found[256];
        const dc__ynode_t *node = dc__ynode_get(item, "prefix");
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected a prefix no other route has, found %s (routes[%zu] has it)",
                            found, j);
    }
    return 0;
}

/* ---- plugins --------------------------------------------------------------------------------------- */

typedef dc_config_plugin_t PLUGIN;

static int check_plugin_name(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    size_t n = strlen(*v);
    bool ok = n >= 1 && n <= 32;
    for (size_t i = 0; ok && i < n; i++) {
        char c = (*v)[i];
        ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }
    return ok ? 0 : dc__cfg_fail_expected(ctx, d, node, false);
}

static const char *const on_error_names[] = {"closed", "open", NULL};
static const int on_error_values[] = {DC_PLUGIN_ON_ERROR_CLOSED, DC_PLUGIN_ON_ERROR_OPEN};
static const dc__directive_t plugin_rows[] = {
    R_STR("name", PLUGIN, name, NULL, "the instance's name, which routes list ([a-z0-9_-], 1 to 32 characters)",
          .flags = DC__D_REQUIRED, .check = check_plugin_name, .expect = "a name of 1 to 32 characters [a-z0-9_-]"),
    R_STR("path", PLUGIN, path, NULL,
          "the plugin's shared object; a relative path is taken from the config file's folder, else (no such "
          "file there) from the folder the shipped plugins install to (PREFIX/lib/dexcache/plugins, or "
          "/usr/lib/<multiarch>/dexcache/plugins from the Debian package; `dexcache -h` prints it), so "
          "`path: auth.so` finds the installed auth plugin. Loaded from a private copy (later changes to the "
          "file never touch the running code) with "
          "dlopen(RTLD_NOW|RTLD_LOCAL) at start and never unloaded; its ABI version is checked (dexcache -t too)",
          .flags = DC__D_REQUIRED, .check = check_nonempty),
    {.name = "config",
     .type = DC__T_TREE,
     .offset = offsetof(PLUGIN, config),
     .doc = "the instance's settings, checked against the options table the plugin declares (errors name the "
            "line and column here)"},
    {.name = "on_error",
     .type = DC__T_ENUM,
     .offset = offsetof(PLUGIN, on_error),
     .dflt = "closed",
     .enum_names = on_error_names,
     .enum_values = on_error_values,
     .doc = "a hook that fails: closed = the request is answered 500 (nothing cached, nothing sent upstream); "
            "open = the request goes on as if the plugin were absent"},
};
static const dc__table_t plugin_table = TABLE(plugin_rows, NULL);

static int plugin_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    const PLUGIN *plugins = array;
    for (size_t j = 0; j < i; j++) {
        if (strcmp(plugins[j].name, plugins[i].name) != 0)
            continue;
        char found[160];
        const dc__ynode_t *node = dc__ynode_get(item, "name");
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected a name no other plugin has, found %s (plugins[%zu] has it)",
                            found, j);
    }
    return 0;
}

/* ---- streams --------------------------------------------------------------------------------------- */

typedef dc_config_stream_t STREAM;
static const dc__directive_t stream_rows[] = {
    R_STR("path", STREAM, path, NULL, "client path of the SSE channel (query = upstream query)",
          .flags = DC__D_REQUIRED, .check = check_abs_path, .expect = "a path starting with '/'"),
    {.name = "upstream",
     .type = DC__T_CUSTOM,
     .flags = DC__D_REQUIRED,
     .offset = offsetof(STREAM, upstream_name),
     .aux = offsetof(STREAM, upstream),
     .parse = parse_upstream_ref,
     .release = release_upstream_ref,
     .expect = "the name of an upstream",
     .doc = "upstream polled for this channel; the stream belongs to the route to this upstream whose prefix covers "
            "its path (the longest; else the first route to it): that route's cache, CORS policy, plugins and client "
            "limit apply"},
    R_STR("upstream_path", STREAM, upstream_path, NULL, "upstream path polled", .flags = DC__D_REQUIRED,
          .check = check_abs_path, .expect = "a path starting with '/'"),
    R_DUR("interval", STREAM, interval_ms, "1s", 10, HOUR,
          "poll interval, one poll per channel; also how fresh the stream's data must be: a cached answer (the "
          "route's, shared with plain GETs) older than half an interval is refreshed at the poll, whatever the "
          "route's ttl, and the refreshed entry serves plain GETs too"),
    R_BOOL("on_change", STREAM, on_change, "true", "push an event only when the polled body changed"),
    R_DUR("heartbeat", STREAM, heartbeat_ms, "15s", 100, HOUR,
          "a comment line sent to subscribers this often, so dead HTTP/1.1 clients are found"),
    R_SIZE("max_subscriber_buffer", STREAM, max_subscriber_buffer, "1MiB", 4096, 1024 * 1024 * 1024,
           "bytes waiting for one slow subscriber before it is dropped (with a final event)"),
};

/* The poll's own cache rule, used when the route's rules do not cover upstream_path: fresh for half
 * an interval, so each poll fetches once and polls of other workers in between share it. */
static int stream_finish(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base)
{
    STREAM *s = base;
    memset(&s->poll_rule, 0, sizeof(s->poll_rule));
    s->poll_rule.ttl_ms = s->interval_ms / 2 > 0 ? s->interval_ms / 2 : 1;
    return 0;
}
static const dc__table_t stream_table = TABLE(stream_rows, stream_finish);

static int stream_item_check(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i)
{
    STREAM *streams = array;
    /* routes are parsed before streams. The stream's route (its polls' cache, and the CORS policy,
     * plugins and client limit of its subscribers) is the one to this upstream whose prefix covers
     * the stream's path (the longest), else the first route to this upstream. */
    size_t best = 0;
    for (size_t r = 0; r < ctx->cfg->nroutes; r++) {
        const dc_config_route_t *rt = &ctx->cfg->routes[r];
        if (rt->upstream != streams[i].upstream)
            continue;
        size_t pl = strlen(rt->prefix);
        bool covers = strcmp(rt->prefix, "/") == 0 || (strncmp(streams[i].path, rt->prefix, pl) == 0 &&
                                                       (streams[i].path[pl] == '/' || streams[i].path[pl] == '\0'));
        if (streams[i].route == NULL || (covers && pl > best)) {
            streams[i].route = rt;
            best = covers ? pl : 0;
        }
    }
    if (streams[i].route == NULL) {
        char found[256];
        const dc__ynode_t *node = dc__ynode_get(item, "upstream");
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL,
                            "expected an upstream that a route serves (streams poll through a route's cache), "
                            "found %s",
                            found);
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(streams[j].path, streams[i].path) != 0)
            continue;
        char found[256];
        const dc__ynode_t *node = dc__ynode_get(item, "path");
        dc__ynode_describe(node, found, sizeof(found));
        return dc__cfg_fail(ctx, node, NULL, "expected a path no other stream has, found %s (streams[%zu] has it)",
                            found, j);
    }
    return 0;
}

/* ---- cdn (root): purge forwarding to the CDN in front of dexcache ---------------------------------- */

/* A public base URL: scheme://host[:port] only (a purged URL is this + the purged path). */
static int check_base_url(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **v)
{
    int rc = check_upstream_url(ctx, d, node, v);
    if (rc != 0)
        return rc;
    const char *host = strstr(*v, "://") + 3;
    if (strchr(host, '/') != NULL)
        return fail_found(ctx, node, "a scheme and host without a path (https://dex.example.com)");
    return 0;
}

static const dc__directive_t cf_purge_rows[] = {
    R_STR("zone", C, cdn_purge_cf.zone, NULL,
          "Cloudflare zone id; empty (an unset ${CF_ZONE_ID:-}) = purges are not forwarded", .flags = DC__D_REQUIRED),
    R_STR("token", C, cdn_purge_cf.token, NULL,
          "API token with Zone > Cache Purge, sent as Authorization: Bearer (never logged); empty = not forwarded",
          .flags = DC__D_REQUIRED),
    R_STR("api", C, cdn_purge_cf.api, "https://api.cloudflare.com/client/v4",
          "API base URL; each call is POST {api}/zones/{zone}/purge_cache", .check = check_upstream_url,
          .expect = "an http:// or https:// URL"),
    R_STR("base_url", C, cdn_purge_cf.base_url, NULL,
          "public scheme://host of dexcache behind Cloudflare: a purge by url or key sends {\"files\":[base_url + "
          "path]}, by prefix {\"prefixes\":[host + prefix]}",
          .flags = DC__D_REQUIRED, .check = check_base_url, .expect = "an http:// or https:// URL"),
    R_UINT("retries", C, cdn_purge_cf.retries, "3", 0, 10,
           "further attempts of a call answered 5xx or 429 or not answered (connect error, timeout); then given up"),
    R_DUR("timeout", C, cdn_purge_cf.timeout_ms, "5s", 100, MINUTE, "deadline of one attempt"),
    R_DUR("backoff", C, cdn_purge_cf.backoff_ms, "1s", 10, MINUTE,
          "pause before the first retry, doubled each time (a Retry-After of up to 5 minutes wins)"),
    R_DUR("window", C, cdn_purge_cf.window_ms, "100ms", 0, MINUTE,
          "purges within this window go out as one call per kind (up to 30 values each), as Cloudflare rate-limits "
          "purge calls"),
};
static const dc__table_t cf_purge_table = TABLE(cf_purge_rows, NULL);

static const dc__directive_t cdn_purge_rows[] = {
    R_MAP("cloudflare", 0, offsetof(C, cdn_purge_cf.enabled), &cf_purge_table,
          "forward every POST /purge at the admin listener to Cloudflare's purge API (tag -> tags, url and key -> "
          "files, prefix -> prefixes, all -> purge_everything), after the local purge, without delaying its answer"),
};
static const dc__table_t cdn_purge_table = TABLE(cdn_purge_rows, NULL);

static const dc__directive_t cdn_root_rows[] = {
    R_MAP("purge", 0, DC__NOFIELD, &cdn_purge_table, "purges sent on to the CDN"),
};
static const dc__table_t cdn_root_table = TABLE(cdn_root_rows, NULL);

/* ---- root ------------------------------------------------------------------------------------------ */

static const dc__directive_t root_rows[] = {
    {.name = "listen",
     .type = DC__T_LISTENS,
     .offset = offsetof(C, listen),
     .aux = offsetof(C, nlisten),
     .dflt = "127.0.0.1:8080",
     .doc = "plain HTTP/1.1 and h2c listeners"},
    {.name = "workers",
     .type = DC__T_CUSTOM,
     .offset = offsetof(C, workers),
     .dflt = "auto",
     .parse = parse_workers,
     .expect = "auto or an integer from 1 to 256",
     .doc = "worker threads; auto = online CPUs"},
    R_MAP("tls", 0, DC__NOFIELD, &tls_table, "TLS listeners; absent = none"),
    R_MAP("admin", 0, offsetof(C, admin.enabled), &admin_table, "admin listener; absent = none"),
    R_MAP("log", 0, DC__NOFIELD, &log_table, "logging"),
    R_MAP("cache", 0, DC__NOFIELD, &cache_table, "in-process cache"),
    R_MAP("redis", 0, offsetof(C, redis.enabled), &redis_table,
          "shared limiter state, L2 cache, fleet locks and pub/sub; absent = standalone"),
    R_MAP("server", 0, DC__NOFIELD, &server_table, "client-facing limits and timeouts"),
    R_MAP("cdn", 0, DC__NOFIELD, &cdn_root_table,
          "the CDN in front of dexcache (purge forwarding); the headers toward it are each route's routes[].cdn"),
    R_MAP("cors", offsetof(C, cors), offsetof(C, cors.enabled), &cors_table, CORS_DOC),
    {.name = "upstreams",
     .type = DC__T_NAMEDMAP,
     .offset = offsetof(C, upstreams),
     .aux = offsetof(C, nupstreams),
     .elem_size = sizeof(U),
     .name_offset = offsetof(U, name),
     .sub = &upstream_table,
     .check = check_upstream_name,
     .doc = "origins by name ([a-z0-9_-], 1 to 64 characters)"},
    {.name = "plugins",
     .type = DC__T_MAPLIST,
     .offset = offsetof(C, plugins),
     .aux = offsetof(C, nplugins),
     .elem_size = sizeof(PLUGIN),
     .sub = &plugin_table,
     .item_check = plugin_item_check,
     .doc = "C plugins (lua-free-plugins/include/dexcache/plugin.h): each entry is one instance of a shared "
            "object with its own config; routes name the instances they run"},
    {.name = "routes",
     .type = DC__T_MAPLIST,
     .flags = DC__D_REQUIRED,
     .min = 1,
     .offset = offsetof(C, routes),
     .aux = offsetof(C, nroutes),
     .elem_size = sizeof(ROUTE),
     .sub = &route_table,
     .item_check = route_item_check,
     .expect = "a list of routes",
     .doc = "client path prefixes mapped to upstreams; longest prefix wins; at least one"},
    {.name = "streams",
     .type = DC__T_MAPLIST,
     .offset = offsetof(C, streams),
     .aux = offsetof(C, nstreams),
     .elem_size = sizeof(STREAM),
     .sub = &stream_table,
     .item_check = stream_item_check,
     .doc = "server-sent event channels: one upstream poll fanned out to every subscriber"},
};

const dc__table_t dc__config_root_table = TABLE(root_rows, NULL);
