/*
 * A plugin's `config:` map against the options table it declares (plugin.h): unknown keys,
 * missing required keys, wrong types and out-of-range values are errors at the node's
 * FILE:LINE:COL, like every config error. Pure; main thread in practice.
 */
#include "plugin/plugin_private.h"
#include "core/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dc__plugin_parse_int(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return DC_EINVAL;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return DC_EINVAL;
    *out = v;
    return 0;
}

static const char *type_noun(dexcache_opt_type_t t)
{
    switch (t) {
    case DEXCACHE_OPT_STRING:
        return "a string";
    case DEXCACHE_OPT_INT:
        return "an integer";
    case DEXCACHE_OPT_BOOL:
        return "true or false";
    case DEXCACHE_OPT_DURATION:
        return "a duration (500ms, 2s, 5m)";
    case DEXCACHE_OPT_SIZE:
        return "a size (64KiB, 10MB, 123)";
    case DEXCACHE_OPT_MAP:
        return "a map";
    case DEXCACHE_OPT_LIST:
        return "a list";
    default:
        return "a value";
    }
}

static int fail_expected(const dexcache_option_t *o, const dc_confnode_t *n, char *err, size_t errlen,
                         const char *extra)
{
    char found[200];
    dc_confnode_describe(n, found, sizeof(found));
    return dc_confnode_fail(n, err, errlen, "expected %s%s, found %s%s%s%s", type_noun(o->type), extra, found,
                            o->doc ? " (" : "", o->doc ? o->doc : "", o->doc ? ")" : "");
}

static int check_range(const dexcache_option_t *o, const dc_confnode_t *n, int64_t v, char *err, size_t errlen)
{
    if (o->min == 0 && o->max == 0)
        return 0;
    if (v >= o->min && v <= o->max)
        return 0;
    char extra[96];
    snprintf(extra, sizeof(extra), " from %" PRId64 " to %" PRId64 "%s", o->min, o->max,
             o->type == DEXCACHE_OPT_DURATION ? " ms"
             : o->type == DEXCACHE_OPT_SIZE   ? " bytes"
                                              : "");
    return fail_expected(o, n, err, errlen, extra);
}

static int check_map(const dexcache_option_t *opts, const dc_confnode_t *map, char *err, size_t errlen);

static int check_value(const dexcache_option_t *o, const dc_confnode_t *n, char *err, size_t errlen)
{
    dc_confnode_kind_t k = dc_confnode_kind(n);
    const char *v = dc_confnode_value(n);
    switch (o->type) {
    case DEXCACHE_OPT_STRING:
        return k == DC_CONFNODE_SCALAR ? 0 : fail_expected(o, n, err, errlen, "");
    case DEXCACHE_OPT_INT: {
        int64_t x;
        if (k != DC_CONFNODE_SCALAR || dc__plugin_parse_int(v, &x) != 0)
            return fail_expected(o, n, err, errlen, "");
        return check_range(o, n, x, err, errlen);
    }
    case DEXCACHE_OPT_BOOL:
        return k == DC_CONFNODE_SCALAR && (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
                   ? 0
                   : fail_expected(o, n, err, errlen, "");
    case DEXCACHE_OPT_DURATION:
    case DEXCACHE_OPT_SIZE: {
        uint64_t x;
        int rc = k != DC_CONFNODE_SCALAR            ? DC_EINVAL
                 : o->type == DEXCACHE_OPT_DURATION ? dc_config_parse_duration_ms(v, &x)
                                                    : dc_config_parse_size(v, &x);
        if (rc != 0 || x > INT64_MAX)
            return fail_expected(o, n, err, errlen, "");
        return check_range(o, n, (int64_t)x, err, errlen);
    }
    case DEXCACHE_OPT_MAP:
        if (k != DC_CONFNODE_MAP)
            return fail_expected(o, n, err, errlen, "");
        return o->children != NULL ? check_map(o->children, n, err, errlen) : 0;
    case DEXCACHE_OPT_LIST:
        if (k != DC_CONFNODE_LIST)
            return fail_expected(o, n, err, errlen, "");
        for (size_t i = 0; o->children != NULL && i < dc_confnode_len(n); i++) {
            int rc = check_value(&o->children[0], dc_confnode_at(n, i, NULL), err, errlen);
            if (rc != 0)
                return rc;
        }
        return 0;
    case DEXCACHE_OPT_ANY:
        return 0;
    }
    return dc_confnode_fail(n, err, errlen, "the plugin's options table has an unknown type %d", (int)o->type);
}

static int check_map(const dexcache_option_t *opts, const dc_confnode_t *map, char *err, size_t errlen)
{
    for (size_t i = 0; i < dc_confnode_len(map); i++) {
        const char *key = NULL;
        const dc_confnode_t *v = dc_confnode_at(map, i, &key);
        const dexcache_option_t *o = opts;
        while (o->name != NULL && strcmp(o->name, key) != 0)
            o++;
        if (o->name == NULL) {
            char names[512];
            size_t pos = 0;
            names[0] = '\0';
            for (const dexcache_option_t *p = opts; p->name != NULL && pos < sizeof(names); p++)
                pos += (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s", p == opts ? "" : ", ", p->name);
            return dc_confnode_fail(v, err, errlen, "unknown key (expected one of: %s)", names[0] ? names : "none");
        }
        int rc = check_value(o, v, err, errlen);
        if (rc != 0)
            return rc;
    }
    for (const dexcache_option_t *o = opts; o->name != NULL; o++) {
        if ((o->flags & DEXCACHE_OPT_REQUIRED) && dc_confnode_get(map, o->name) == NULL)
            return dc_confnode_fail(map, err, errlen,
                                    "expected the key %s (%s%s%s), found nothing (the key is required)", o->name,
                                    type_noun(o->type), o->doc ? ": " : "", o->doc ? o->doc : "");
    }
    return 0;
}

int dc__plugin_check_options(const dexcache_option_t *opts, const dc_confnode_t *node, char *err, size_t errlen)
{
    static const dexcache_option_t none[] = {{0}};
    return check_map(opts != NULL ? opts : none, node, err, errlen);
}
