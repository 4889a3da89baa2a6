/* config/node.h: read-only access to kept YAML subtrees, for the modules above config/. */
#include "config/node.h"
#include "config/yaml_tree.h"
#include "core/error.h"

#include <stdio.h>
#include <string.h>

dc_confnode_kind_t dc_confnode_kind(const dc_confnode_t *n)
{
    return n->type == DC__YNODE_MAP   ? DC_CONFNODE_MAP
           : n->type == DC__YNODE_SEQ ? DC_CONFNODE_LIST
                                      : DC_CONFNODE_SCALAR;
}

bool dc_confnode_is_null(const dc_confnode_t *n)
{
    return n->type == DC__YNODE_SCALAR && n->is_null;
}

size_t dc_confnode_len(const dc_confnode_t *n)
{
    return n->type == DC__YNODE_SCALAR ? 0 : n->n;
}

const dc_confnode_t *dc_confnode_at(const dc_confnode_t *n, size_t i, const char **key)
{
    if (n->type == DC__YNODE_SCALAR || i >= n->n)
        return NULL;
    if (key != NULL)
        *key = n->type == DC__YNODE_MAP ? n->keys[i]->raw : NULL;
    return n->items[i];
}

const dc_confnode_t *dc_confnode_get(const dc_confnode_t *n, const char *key)
{
    if (n == NULL || n->type != DC__YNODE_MAP)
        return NULL;
    return dc__ynode_get(n, key);
}

const char *dc_confnode_value(const dc_confnode_t *n)
{
    return n->type == DC__YNODE_SCALAR ? (n->is_null ? "" : n->value) : NULL;
}

int dc_confnode_vfail(const dc_confnode_t *n, char *err, size_t errlen, const char *fmt, va_list ap)
{
    char msg[768], path[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    dc__ynode_path(n, path, sizeof(path));
    return dc__config_fail_at(err, errlen, n->file, n->line, n->col, path, "%s", msg);
}

int dc_confnode_fail(const dc_confnode_t *n, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = dc_confnode_vfail(n, err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

void dc_confnode_describe(const dc_confnode_t *n, char *buf, size_t len)
{
    dc__ynode_describe(n, buf, len);
}
