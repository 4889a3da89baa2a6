/*
 * The generic directive engine: YAML map + table -> filled struct, and back to free().
 * See directive.h for the contract; the tables themselves live in tables.c.
 */
#include "config/directive.h"
#include "config/values.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(base, off, T) ((T *)((char *)(base) + (off)))

/* ---- errors ---------------------------------------------------------------------------------- */

int dc__cfg_fail(dc__cfg_ctx_t *ctx, const dc__ynode_t *node, const char *suffix, const char *fmt, ...)
{
    char msg[768], path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node == NULL) /* only defaults are parsed without a node, and they are constants */
        dc_fatal("config: built-in default is invalid: %s", msg);
    dc__ynode_path(node, path, sizeof(path));
    if (suffix != NULL) {
        size_t n = strlen(path);
        snprintf(path + n, sizeof(path) - n, "%s%s", n > 0 ? "." : "", suffix);
    }
    return dc__config_fail_at(ctx->err, ctx->errlen, node->file, node->line, node->col, path, "%s", msg);
}

int dc__cfg_fail_expected(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, bool with_range)
{
    char expect[256], found[256];
    dc__directive_expect(d, with_range, expect, sizeof(expect));
    dc__ynode_describe(node, found, sizeof(found));
    return dc__cfg_fail(ctx, node, NULL, "expected %s, found %s", expect, found);
}

/* ---- descriptions (errors and reference) ------------------------------------------------------ */

static void format_bound(const dc__directive_t *d, uint64_t v, char *buf, size_t len)
{
    if (d->type == DC__T_DURATION)
        dc__config_format_duration(v, buf, len);
    else if (d->type == DC__T_SIZE)
        dc__config_format_size(v, buf, len);
    else
        snprintf(buf, len, "%llu", (unsigned long long)v);
}

static bool has_range(const dc__directive_t *d)
{
    return (d->type == DC__T_UINT || d->type == DC__T_DURATION || d->type == DC__T_SIZE) &&
           (d->min != 0 || d->max != DC__UNBOUNDED);
}

void dc__directive_range(const dc__directive_t *d, char *buf, size_t len)
{
    char lo[32], hi[32];
    buf[0] = '\0';
    if (!has_range(d))
        return;
    format_bound(d, d->min, lo, sizeof(lo));
    format_bound(d, d->max, hi, sizeof(hi));
    if (d->max == DC__UNBOUNDED)
        snprintf(buf, len, ">= %s", lo);
    else
        snprintf(buf, len, "%s..%s", lo, hi);
}

bool dc__directive_is_collection(const dc__directive_t *d)
{
    return d->type == DC__T_MAP || d->type == DC__T_MAPLIST || d->type == DC__T_NAMEDMAP || d->type == DC__T_STRLIST ||
           d->type == DC__T_LISTENS || d->type == DC__T_RATES || d->type == DC__T_UINTMAP;
}

void dc__directive_walk(FILE *out, const dc__table_t *t, const char *prefix, dc__directive_row_cb row)
{
    for (size_t i = 0; i < t->nrows; i++) {
        const dc__directive_t *d = &t->rows[i];
        char key[256], range[64];
        snprintf(key, sizeof(key), "%s%s", prefix, d->name);
        dc__directive_range(d, range, sizeof(range));
        if (d->type == DC__T_MAPLIST && d->min > 0)
            snprintf(range, sizeof(range), ">= %llu item%s", (unsigned long long)d->min, d->min == 1 ? "" : "s");
        row(out, d, key, range);
        if (d->sub == NULL)
            continue;
        char sub[sizeof(key) + 16];
        if (d->type == DC__T_MAPLIST)
            snprintf(sub, sizeof(sub), "%s[].", key);
        else if (d->type == DC__T_NAMEDMAP)
            snprintf(sub, sizeof(sub), "%s.<name>.", key);
        else
            snprintf(sub, sizeof(sub), "%s.", key);
        dc__directive_walk(out, d->sub, sub, row);
    }
}

static void append_enum_names(const dc__directive_t *d, char *buf, size_t len)
{
    size_t pos = strlen(buf);
    for (size_t i = 0; d->enum_names[i] != NULL && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%s", i > 0 ? ", " : "", d->enum_names[i]);
}

void dc__directive_expect(const dc__directive_t *d, bool with_range, char *buf, size_t len)
{
    static const char *const noun[] = {
        [DC__T_STRING] = "a string",
        [DC__T_BOOL] = "a boolean (true, false, yes, no, on, off)",
        [DC__T_UINT] = "an integer",
        [DC__T_DURATION] = "a duration (500ms, 2s, 5m, 1h)",
        [DC__T_SIZE] = "a size (64KiB, 256MiB, 1GiB, 10KB)",
        [DC__T_RATE] = "a rate (45/1s, 2700/60s, 10/s)",
        [DC__T_RATES] = "a rate or a list of rates (45/1s, 2700/60s)",
        [DC__T_STRLIST] = "a list of strings",
        [DC__T_LISTEN] = "a listen address (127.0.0.1:8080, [::1]:8080, :8080)",
        [DC__T_LISTENS] = "a listen address or a list of them (127.0.0.1:8080, [::1]:8080, :8080)",
        [DC__T_ENUM] = "one of: ",
        [DC__T_MAP] = "a map",
        [DC__T_MAPLIST] = "a list of maps",
        [DC__T_NAMEDMAP] = "a map of name: settings",
        [DC__T_CUSTOM] = "a value",
        [DC__T_TREE] = "a map",
        [DC__T_UINTMAP] = "a map of name: integer",
    };
    if (d->type == DC__T_UINT || (with_range && has_range(d))) {
        static const char *const bare[] = {
            [DC__T_UINT] = "an integer", [DC__T_DURATION] = "a duration", [DC__T_SIZE] = "a size"};
        char lo[32], hi[32];
        format_bound(d, d->min, lo, sizeof(lo));
        format_bound(d, d->max, hi, sizeof(hi));
        if (d->max == DC__UNBOUNDED)
            snprintf(buf, len, "%s of at least %s", bare[d->type], lo);
        else
            snprintf(buf, len, "%s from %s to %s", bare[d->type], lo, hi);
        return;
    }
    snprintf(buf, len, "%s", d->expect != NULL ? d->expect : noun[d->type]);
    if (d->type == DC__T_ENUM && d->expect == NULL)
        append_enum_names(d, buf, len);
}

const char *dc__directive_type_name(const dc__directive_t *d)
{
    static const char *const names[] = {
        [DC__T_STRING] = "string",
        [DC__T_BOOL] = "bool",
        [DC__T_UINT] = "integer",
        [DC__T_DURATION] = "duration",
        [DC__T_SIZE] = "size",
        [DC__T_RATE] = "rate",
        [DC__T_RATES] = "rate or list of rates",
        [DC__T_STRLIST] = "list of strings",
        [DC__T_LISTEN] = "listen address",
        [DC__T_LISTENS] = "listen address or list",
        [DC__T_ENUM] = "enum",
        [DC__T_MAP] = "map",
        [DC__T_MAPLIST] = "list of maps",
        [DC__T_NAMEDMAP] = "map of name: map",
        [DC__T_CUSTOM] = "custom",
        [DC__T_TREE] = "map (checked by its plugin)",
        [DC__T_UINTMAP] = "map of name: integer",
    };
    return names[d->type];
}

/* ---- scalars ----------------------------------------------------------------------------------- */

static int parse_listen_into(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                             dc_config_listen_t *l)
{
    if (dc_config_parse_listen(text, l) != 0)
        return dc__cfg_fail_expected(ctx, d, node, false);
    l->text = dc_strdup(text);
    return 0;
}

static int parse_number(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                        uint64_t *v)
{
    int rc;
    if (d->type == DC__T_DURATION)
        rc = dc_config_parse_duration_ms(text, v);
    else if (d->type == DC__T_SIZE)
        rc = dc_config_parse_size(text, v);
    else
        rc = dc__config_parse_uint(text, UINT64_MAX, v);
    if (rc == DC_EINVAL)
        return dc__cfg_fail_expected(ctx, d, node, false);
    if (rc != 0 || *v < d->min || *v > d->max)
        return dc__cfg_fail_expected(ctx, d, node, true);
    return 0;
}

/* Parse one scalar `text` into the row's field. `node` is NULL for defaults. */
static int parse_scalar(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                        void *base)
{
    uint64_t v;
    int rc;
    switch (d->type) {
    case DC__T_STRING: {
        char **field = FIELD(base, d->offset, char *);
        *field = dc_strdup(text);
        return d->check != NULL ? d->check(ctx, d, node, field) : 0;
    }
    case DC__T_BOOL:
        if (dc__config_parse_bool(text, FIELD(base, d->offset, bool)) != 0)
            return dc__cfg_fail_expected(ctx, d, node, false);
        return 0;
    case DC__T_UINT:
        if ((rc = parse_number(ctx, d, text, node, &v)) != 0)
            return rc;
        *FIELD(base, d->offset, uint32_t) = (uint32_t)v;
        return 0;
    case DC__T_DURATION:
    case DC__T_SIZE:
        if ((rc = parse_number(ctx, d, text, node, &v)) != 0)
            return rc;
        *FIELD(base, d->offset, uint64_t) = v;
        return 0;
    case DC__T_RATE:
        if (dc_config_parse_rate(text, FIELD(base, d->offset, dc_config_rate_t)) != 0)
            return dc__cfg_fail_expected(ctx, d, node, false);
        return 0;
    case DC__T_LISTEN:
        return parse_listen_into(ctx, d, text, node, FIELD(base, d->offset, dc_config_listen_t));
    case DC__T_ENUM:
        for (size_t i = 0; d->enum_names[i] != NULL; i++) {
            if (strcmp(text, d->enum_names[i]) == 0) {
                *FIELD(base, d->offset, int) = d->enum_values[i];
                return 0;
            }
        }
        return dc__cfg_fail_expected(ctx, d, node, false);
    case DC__T_CUSTOM:
        return d->parse(ctx, d, text, node, base);
    default:
        dc_fatal("config: %s is not a scalar directive", d->name);
    }
}

static bool is_scalar_type(dc__dtype_t t)
{
    return t == DC__T_STRING || t == DC__T_BOOL || t == DC__T_UINT || t == DC__T_DURATION || t == DC__T_SIZE ||
           t == DC__T_RATE || t == DC__T_LISTEN || t == DC__T_ENUM || t == DC__T_CUSTOM;
}

/* Text of a scalar node for row `d`, or NULL after writing the error. */
static const char *scalar_text(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node)
{
    if (node->type != DC__YNODE_SCALAR || (node->is_null && d->type != DC__T_STRING)) {
        dc__cfg_fail_expected(ctx, d, node, false);
        return NULL;
    }
    return node->is_null ? "" : node->value;
}

/* ---- lists ------------------------------------------------------------------------------------- */

/* Items of a list-typed row: a sequence's items, or the scalar itself for rows that accept one. */
static size_t list_items(const dc__ynode_t *const *nodep, const dc__ynode_t *const **items)
{
    if ((*nodep)->type == DC__YNODE_SEQ) {
        *items = (const dc__ynode_t *const *)(*nodep)->items;
        return (*nodep)->n;
    }
    *items = nodep; /* a one-element view of a lone scalar */
    return 1;
}

static int parse_strlist(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type != DC__YNODE_SEQ)
        return dc__cfg_fail_expected(ctx, d, node, false);
    char ***arr = FIELD(base, d->offset, char **);
    size_t *count = FIELD(base, d->aux, size_t);
    *arr = dc_calloc(node->n, sizeof(char *));
    *count = node->n; /* release() frees every slot; empty ones are NULL */
    size_t kept = 0;
    for (size_t i = 0; i < node->n; i++) {
        const dc__ynode_t *item = node->items[i];
        if (item->type != DC__YNODE_SCALAR) {
            char found[64];
            dc__ynode_describe(item, found, sizeof(found));
            return dc__cfg_fail(ctx, item, NULL, "expected a string, found %s", found);
        }
        const char *text = item->is_null ? "" : item->value;
        if (text[0] == '\0') {
            if (d->flags & DC__D_DROP_EMPTY)
                continue;
            char found[160];
            dc__ynode_describe(item, found, sizeof(found));
            return dc__cfg_fail(ctx, item, NULL, "expected a non-empty string, found %s", found);
        }
        (*arr)[kept] = dc_strdup(text);
        int rc = d->check != NULL ? d->check(ctx, d, item, &(*arr)[kept]) : 0;
        kept++;
        if (rc != 0)
            return rc;
    }
    *count = kept;
    return 0;
}

static int parse_listens(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type == DC__YNODE_MAP || (node->type == DC__YNODE_SCALAR && node->is_null))
        return dc__cfg_fail_expected(ctx, d, node, false);
    const dc__ynode_t *const *items;
    size_t n = list_items(&node, &items);
    dc_config_listen_t **arr = FIELD(base, d->offset, dc_config_listen_t *);
    *arr = dc_calloc(n, sizeof(dc_config_listen_t));
    *FIELD(base, d->aux, size_t) = n;
    dc__directive_t one = *d; /* items are reported as what one item should be */
    one.type = DC__T_LISTEN;
    for (size_t i = 0; i < n; i++) {
        const char *text = items[i]->type == DC__YNODE_SCALAR && !items[i]->is_null ? items[i]->value : NULL;
        if (text == NULL)
            return dc__cfg_fail_expected(ctx, &one, items[i], false);
        int rc = parse_listen_into(ctx, &one, text, items[i], &(*arr)[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_rates(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type == DC__YNODE_MAP || (node->type == DC__YNODE_SCALAR && node->is_null))
        return dc__cfg_fail_expected(ctx, d, node, false);
    const dc__ynode_t *const *items;
    size_t n = list_items(&node, &items);
    dc_config_rate_t **arr = FIELD(base, d->offset, dc_config_rate_t *);
    *arr = dc_calloc(n, sizeof(dc_config_rate_t));
    *FIELD(base, d->aux, size_t) = n;
    dc__directive_t one = *d;
    one.type = DC__T_RATE;
    for (size_t i = 0; i < n; i++) {
        if (items[i]->type != DC__YNODE_SCALAR || dc_config_parse_rate(items[i]->value, &(*arr)[i]) != 0)
            return dc__cfg_fail_expected(ctx, &one, items[i], false);
    }
    return 0;
}

static int parse_maplist(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type != DC__YNODE_SEQ)
        return dc__cfg_fail_expected(ctx, d, node, false);
    if (node->n < d->min) {
        char expect[256];
        dc__directive_expect(d, false, expect, sizeof(expect));
        return dc__cfg_fail(ctx, node, NULL, "expected %s with at least %llu item%s, found %s", expect,
                            (unsigned long long)d->min, d->min == 1 ? "" : "s",
                            node->n == 0 ? "an empty list" : "too few");
    }
    void **arr = FIELD(base, d->offset, void *);
    *arr = dc_calloc(node->n, d->elem_size);
    *FIELD(base, d->aux, size_t) = node->n;
    for (size_t i = 0; i < node->n; i++) {
        const dc__ynode_t *item = node->items[i];
        if (item->type != DC__YNODE_MAP) {
            char found[160];
            dc__ynode_describe(item, found, sizeof(found));
            return dc__cfg_fail(ctx, item, NULL, "expected a map, found %s", found);
        }
        int rc = dc__table_parse(ctx, d->sub, item, (char *)*arr + i * d->elem_size);
        if (rc == 0 && d->item_check != NULL)
            rc = d->item_check(ctx, item, *arr, i);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_namedmap(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type != DC__YNODE_MAP)
        return dc__cfg_fail_expected(ctx, d, node, false);
    void **arr = FIELD(base, d->offset, void *);
    *arr = dc_calloc(node->n, d->elem_size);
    *FIELD(base, d->aux, size_t) = node->n;
    for (size_t i = 0; i < node->n; i++) {
        void *elem = (char *)*arr + i * d->elem_size;
        const dc__ynode_t *key = node->keys[i], *val = node->items[i];
        char **name = FIELD(elem, d->name_offset, char *);
        *name = dc_strdup(key->raw);
        int rc = d->check != NULL ? d->check(ctx, d, key, name) : 0;
        if (rc != 0)
            return rc;
        if (val->type != DC__YNODE_MAP) {
            char found[160];
            dc__ynode_describe(val, found, sizeof(found));
            return dc__cfg_fail(ctx, val, NULL, "expected a map, found %s", found);
        }
        if ((rc = dc__table_parse(ctx, d->sub, val, elem)) != 0)
            return rc;
    }
    return 0;
}

static int parse_uintmap(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (node->type != DC__YNODE_MAP)
        return dc__cfg_fail_expected(ctx, d, node, false);
    dc_config_weight_t **arr = FIELD(base, d->offset, dc_config_weight_t *);
    *arr = dc_calloc(node->n ? node->n : 1, sizeof(dc_config_weight_t));
    *FIELD(base, d->aux, size_t) = node->n;
    dc__directive_t one = *d; /* values are reported as one integer */
    one.type = DC__T_UINT;
    for (size_t i = 0; i < node->n; i++) {
        const dc__ynode_t *key = node->keys[i], *val = node->items[i];
        (*arr)[i].name = dc_strdup(key->raw);
        int rc = d->check != NULL ? d->check(ctx, d, key, &(*arr)[i].name) : 0;
        if (rc != 0)
            return rc;
        const char *text = scalar_text(ctx, &one, val);
        if (text == NULL)
            return DC_ECONFIG;
        uint64_t v;
        if ((rc = parse_number(ctx, &one, text, val, &v)) != 0)
            return rc;
        (*arr)[i].value = (uint32_t)v;
    }
    return 0;
}

/* ---- tables ------------------------------------------------------------------------------------ */

static int parse_value(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, void *base)
{
    if (is_scalar_type(d->type)) {
        const char *text = scalar_text(ctx, d, node);
        return text != NULL ? parse_scalar(ctx, d, text, node, base) : DC_ECONFIG;
    }
    switch (d->type) {
    case DC__T_STRLIST:
        return parse_strlist(ctx, d, node, base);
    case DC__T_LISTENS:
        return parse_listens(ctx, d, node, base);
    case DC__T_RATES:
        return parse_rates(ctx, d, node, base);
    case DC__T_MAP:
        if (node->type != DC__YNODE_MAP)
            return dc__cfg_fail_expected(ctx, d, node, false);
        if (d->aux != DC__NOFIELD)
            *FIELD(base, d->aux, bool) = true;
        return dc__table_parse(ctx, d->sub, node, (char *)base + d->offset);
    case DC__T_MAPLIST:
        return parse_maplist(ctx, d, node, base);
    case DC__T_NAMEDMAP:
        return parse_namedmap(ctx, d, node, base);
    case DC__T_UINTMAP:
        return parse_uintmap(ctx, d, node, base);
    case DC__T_TREE:
        if (node->type != DC__YNODE_MAP && !(node->type == DC__YNODE_SCALAR && node->is_null))
            return dc__cfg_fail_expected(ctx, d, node, false);
        *FIELD(base, d->offset, dc__ynode_t *) = dc__ynode_copy(node, ctx->cfg->path);
        return 0;
    default:
        dc_fatal("config: unhandled directive type %d", (int)d->type);
    }
}

/* A default is text parsed exactly like a written value; list rows take it as their one item. */
static void apply_default(dc__cfg_ctx_t *ctx, const dc__directive_t *d, void *base)
{
    if (d->dflt == NULL)
        return;
    int rc;
    if (is_scalar_type(d->type)) {
        rc = parse_scalar(ctx, d, d->dflt, NULL, base);
    } else if (d->type == DC__T_LISTENS) {
        dc_config_listen_t **arr = FIELD(base, d->offset, dc_config_listen_t *);
        *arr = dc_calloc(1, sizeof(dc_config_listen_t));
        *FIELD(base, d->aux, size_t) = 1;
        rc = parse_listen_into(ctx, d, d->dflt, NULL, &(*arr)[0]);
    } else {
        dc_fatal("config: %s: defaults are not supported for this type", d->name);
    }
    DC_ASSERT(rc == 0);
}

static const dc__directive_t *find_row(const dc__table_t *t, const char *name)
{
    for (size_t i = 0; i < t->nrows; i++) {
        if (strcmp(t->rows[i].name, name) == 0)
            return &t->rows[i];
    }
    return NULL;
}

int dc__table_parse(dc__cfg_ctx_t *ctx, const dc__table_t *t, const dc__ynode_t *map, void *base)
{
    int rc;
    if (map != NULL) {
        DC_ASSERT(map->type == DC__YNODE_MAP);
        for (size_t i = 0; i < map->n; i++) { /* unknown keys first, in file order */
            if (find_row(t, map->keys[i]->raw) != NULL)
                continue;
            char names[512];
            size_t pos = 0;
            names[0] = '\0';
            for (size_t j = 0; j < t->nrows && pos < sizeof(names); j++)
                pos += (size_t)snprintf(names + pos, sizeof(names) - pos, "%s%s", j > 0 ? ", " : "", t->rows[j].name);
            return dc__cfg_fail(ctx, map->keys[i], NULL, "unknown key (expected one of: %s)", names);
        }
    }
    for (size_t i = 0; i < t->nrows; i++) {
        const dc__directive_t *d = &t->rows[i];
        const dc__ynode_t *node = dc__ynode_get(map, d->name);
        if (node != NULL) {
            rc = parse_value(ctx, d, node, base);
        } else if (map != NULL && (d->flags & DC__D_REQUIRED)) {
            char expect[256];
            dc__directive_expect(d, false, expect, sizeof(expect));
            rc = dc__cfg_fail(ctx, map, d->name, "expected %s, found nothing (the key is required)", expect);
        } else if (d->type == DC__T_MAP) {
            rc = dc__table_parse(ctx, d->sub, NULL, (char *)base + d->offset);
        } else {
            apply_default(ctx, d, base);
            rc = 0;
        }
        if (rc != 0)
            return rc;
    }
    return t->finish != NULL ? t->finish(ctx, map, base) : 0;
}

void dc__table_release(const dc__table_t *t, void *base)
{
    for (size_t i = 0; i < t->nrows; i++) {
        const dc__directive_t *d = &t->rows[i];
        switch (d->type) {
        case DC__T_STRING:
            free(*FIELD(base, d->offset, char *));
            break;
        case DC__T_LISTEN: {
            dc_config_listen_t *l = FIELD(base, d->offset, dc_config_listen_t);
            free(l->text);
            free(l->host);
            break;
        }
        case DC__T_LISTENS: {
            dc_config_listen_t *arr = *FIELD(base, d->offset, dc_config_listen_t *);
            size_t n = *FIELD(base, d->aux, size_t);
            for (size_t j = 0; arr != NULL && j < n; j++) {
                free(arr[j].text);
                free(arr[j].host);
            }
            free(arr);
            break;
        }
        case DC__T_RATES:
            free(*FIELD(base, d->offset, dc_config_rate_t *));
            break;
        case DC__T_STRLIST: {
            char **arr = *FIELD(base, d->offset, char **);
            size_t n = *FIELD(base, d->aux, size_t);
            for (size_t j = 0; arr != NULL && j < n; j++)
                free(arr[j]);
            free(arr);
            break;
        }
        case DC__T_MAP:
            dc__table_release(d->sub, (char *)base + d->offset);
            break;
        case DC__T_MAPLIST:
        case DC__T_NAMEDMAP: {
            char *arr = *FIELD(base, d->offset, char *);
            size_t n = *FIELD(base, d->aux, size_t);
            for (size_t j = 0; arr != NULL && j < n; j++) {
                dc__table_release(d->sub, arr + j * d->elem_size);
                if (d->type == DC__T_NAMEDMAP)
                    free(*FIELD(arr + j * d->elem_size, d->name_offset, char *));
            }
            free(arr);
            break;
        }
        case DC__T_CUSTOM:
            if (d->release != NULL)
                d->release(d, base);
            break;
        case DC__T_TREE:
            dc__ynode_copy_free(*FIELD(base, d->offset, dc__ynode_t *));
            break;
        case DC__T_UINTMAP: {
            dc_config_weight_t *arr = *FIELD(base, d->offset, dc_config_weight_t *);
            size_t n = *FIELD(base, d->aux, size_t);
            for (size_t j = 0; arr != NULL && j < n; j++)
                free(arr[j].name);
            free(arr);
            break;
        }
        default:
            break;
        }
    }
}
