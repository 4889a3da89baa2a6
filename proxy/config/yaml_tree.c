/*
 * libyaml events -> dc__ynode_t tree (see yaml_tree.h for the contract).
 *
 * The builder keeps one pointer, `cur`, to the innermost open container; parent links lead back
 * out. A map whose last key has no value yet (items[n-1] == NULL) is waiting for a value, so no
 * separate key/value state is needed. Every node is attached to the tree before anything that
 * can fail, so on error freeing the root frees everything.
 */
#include "config/yaml_tree.h"
#include "config/values.h"
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- errors and descriptions ---------------------------------------------------------------- */

/* Append `s` to buf (at *pos, capacity len) escaping control bytes so the result stays one line. */
static void append_escaped(char *buf, size_t len, size_t *pos, const char *s, size_t max_chars)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++, n++) {
        if (n == max_chars) {
            append_escaped(buf, len, pos, "...", 3);
            return;
        }
        char tmp[8];
        if (*p == '\n')
            strcpy(tmp, "\\n");
        else if (*p == '\t')
            strcpy(tmp, "\\t");
        else if (*p == '\r')
            strcpy(tmp, "\\r");
        else if (*p < 0x20 || *p == 0x7f)
            snprintf(tmp, sizeof(tmp), "\\x%02x", *p);
        else {
            tmp[0] = (char)*p;
            tmp[1] = '\0';
        }
        for (const char *t = tmp; *t != '\0'; t++) {
            if (*pos + 1 < len)
                buf[(*pos)++] = *t;
        }
    }
    if (len > 0)
        buf[*pos < len ? *pos : len - 1] = '\0';
}

int dc__config_fail_at(char *err, size_t errlen, const char *file, unsigned line, unsigned col, const char *path,
                       const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return DC_ECONFIG;
    char msg[1024], where[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t pos = 0;
    err[0] = '\0';
    append_escaped(err, errlen, &pos, file, 256);
    snprintf(where, sizeof(where), ":%u:%u: ", line, col);
    append_escaped(err, errlen, &pos, where, sizeof(where));
    if (path != NULL && path[0] != '\0') {
        append_escaped(err, errlen, &pos, path, 256);
        append_escaped(err, errlen, &pos, ": ", 2);
    }
    /* msg's variable parts are already escaped by dc__ynode_describe; this only guards the rest */
    append_escaped(err, errlen, &pos, msg, sizeof(msg));
    return DC_ECONFIG;
}

void dc__ynode_path(const dc__ynode_t *node, char *buf, size_t len)
{
    const dc__ynode_t *chain[DC__YTREE_MAX_DEPTH + 2];
    size_t depth = 0, pos = 0;
    for (const dc__ynode_t *n = node; n != NULL && n->parent != NULL && depth < DC__YTREE_MAX_DEPTH + 2; n = n->parent)
        chain[depth++] = n;
    if (len > 0)
        buf[0] = '\0';
    while (depth-- > 0) {
        const dc__ynode_t *n = chain[depth];
        if (n->parent->type == DC__YNODE_MAP) {
            if (pos > 0)
                append_escaped(buf, len, &pos, ".", 1);
            append_escaped(buf, len, &pos, n->pkey != NULL ? n->pkey : "?", 64);
        } else {
            char idx[32];
            snprintf(idx, sizeof(idx), "[%zu]", n->pindex);
            append_escaped(buf, len, &pos, idx, sizeof(idx));
        }
    }
}

void dc__ynode_describe(const dc__ynode_t *node, char *buf, size_t len)
{
    size_t pos = 0;
    if (len > 0)
        buf[0] = '\0';
    if (node == NULL) {
        append_escaped(buf, len, &pos, "nothing", 16);
    } else if (node->type == DC__YNODE_MAP) {
        append_escaped(buf, len, &pos, "a map", 16);
    } else if (node->type == DC__YNODE_SEQ) {
        append_escaped(buf, len, &pos, "a list", 16);
    } else if (node->is_null) {
        append_escaped(buf, len, &pos, "an empty value", 16);
    } else {
        append_escaped(buf, len, &pos, "'", 1);
        append_escaped(buf, len, &pos, node->value, 64);
        append_escaped(buf, len, &pos, "'", 1);
        if (node->value != node->raw) {
            append_escaped(buf, len, &pos, " (from '", 8);
            append_escaped(buf, len, &pos, node->raw, 64);
            append_escaped(buf, len, &pos, "')", 2);
        }
    }
}

/* Fail at `node`, naming its path. */
static int fail_node(const char *file, const dc__ynode_t *node, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_node(const char *file, const dc__ynode_t *node, char *err, size_t errlen, const char *fmt, ...)
{
    char path[512], msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dc__ynode_path(node, path, sizeof(path));
    return dc__config_fail_at(err, errlen, node->file != NULL ? node->file : file, node->line, node->col, path, "%s",
                              msg);
}

/* ---- tree ------------------------------------------------------------------------------------ */

const dc__ynode_t *dc__ynode_get(const dc__ynode_t *map, const char *key)
{
    if (map == NULL || map->type != DC__YNODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i]->raw, key) == 0)
            return map->items[i];
    }
    return NULL;
}

static void node_free(dc__ynode_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys != NULL)
            node_free(n->keys[i]);
        node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    if (n->value != n->raw)
        free(n->value);
    free(n->raw);
    free(n);
}

void dc__ytree_free(dc__ynode_t *root)
{
    node_free(root);
}

static dc__ynode_t *copy_subtree(const dc__ynode_t *s, dc__ynode_t *parent, const char *file)
{
    dc__ynode_t *n = dc_calloc(1, sizeof(*n));
    n->type = s->type;
    n->file = file;
    n->line = s->line;
    n->col = s->col;
    n->parent = parent;
    n->pindex = s->pindex;
    n->is_key = s->is_key;
    n->is_null = s->is_null;
    if (s->raw != NULL) {
        n->raw = dc_strdup(s->raw);
        n->value = s->value == s->raw ? n->raw : dc_strdup(s->value);
    }
    if (s->is_key)
        n->pkey = n->raw;
    if (s->n > 0) {
        n->n = n->cap = s->n;
        n->items = dc_calloc(s->n, sizeof(*n->items));
        if (s->keys != NULL)
            n->keys = dc_calloc(s->n, sizeof(*n->keys));
        for (size_t i = 0; i < s->n; i++) {
            if (s->keys != NULL)
                n->keys[i] = copy_subtree(s->keys[i], n, file);
            if (s->items[i] != NULL) {
                n->items[i] = copy_subtree(s->items[i], n, file);
                if (s->keys != NULL)
                    n->items[i]->pkey = n->keys[i]->raw;
            }
        }
    }
    return n;
}

dc__ynode_t *dc__ynode_copy(const dc__ynode_t *node, const char *file)
{
    dc__ynode_t *copy = copy_subtree(node, NULL, file);
    /* stubs for the ancestors: each owns (in raw) the key its child sits under */
    dc__ynode_t *child = copy;
    for (const dc__ynode_t *a = node; a->parent != NULL; a = a->parent) {
        dc__ynode_t *stub = dc_calloc(1, sizeof(*stub));
        stub->type = a->parent->type;
        stub->file = file;
        stub->line = a->parent->line;
        stub->col = a->parent->col;
        stub->pindex = a->parent->pindex;
        if (a->pkey != NULL) {
            stub->raw = dc_strdup(a->pkey);
            stub->value = stub->raw;
            child->pkey = stub->raw;
        }
        child->parent = stub;
        child = stub;
    }
    return copy;
}

void dc__ynode_copy_free(dc__ynode_t *copy)
{
    if (copy == NULL)
        return;
    dc__ynode_t *up = copy->parent;
    node_free(copy);
    while (up != NULL) { /* the stubs: no children */
        dc__ynode_t *next = up->parent;
        node_free(up);
        up = next;
    }
}

static dc__ynode_t *node_new(const char *file, dc__ynode_type_t type, const yaml_mark_t *mark)
{
    dc__ynode_t *n = dc_calloc(1, sizeof(*n));
    n->type = type;
    n->file = file;
    n->line = (unsigned)mark->line + 1;
    n->col = (unsigned)mark->column + 1;
    return n;
}

static void grow(dc__ynode_t *c)
{
    if (c->n < c->cap)
        return;
    c->cap = c->cap == 0 ? 4 : c->cap * 2;
    c->items = dc_realloc(c->items, c->cap * sizeof(*c->items));
    if (c->type == DC__YNODE_MAP)
        c->keys = dc_realloc(c->keys, c->cap * sizeof(*c->keys));
}

typedef struct builder {
    const char *file;
    char *err;
    size_t errlen;
    dc__ynode_t *root;
    dc__ynode_t *cur; /* innermost open container, NULL at document level */
    unsigned depth;
    char *warnings; /* "FILE:LINE:COL: warning: ..." lines, each ending in '\n'; NULL when none */
    size_t wlen;
} builder_t;

typedef struct unset_ctx {
    builder_t *b;
    const dc__ynode_t *n;
    bool exact_col; /* a one-line plain scalar: offsets in raw are columns in the file */
    int quote;      /* 1 when the scalar starts with a quote character */
} unset_ctx_t;

/* An unset ${NAME} without a default expands to "" silently in the shell; here it is a warning
 * (a misspelled variable would otherwise run without, say, an API key). */
static void on_unset(void *vctx, const char *name, size_t off)
{
    unset_ctx_t *u = vctx;
    builder_t *b = u->b;
    unsigned col = u->n->col + (u->exact_col ? (unsigned)off + (unsigned)u->quote : 0);
    char line[512];
    int n = snprintf(line, sizeof(line), "%s:%u:%u: warning: ${%.200s} is not set (empty)\n", b->file, u->n->line, col,
                     name);
    if (n <= 0)
        return;
    size_t l = strlen(line);
    b->warnings = dc_realloc(b->warnings, b->wlen + l + 1);
    memcpy(b->warnings + b->wlen, line, l + 1);
    b->wlen += l;
}

static bool map_wants_key(const dc__ynode_t *map)
{
    return map->n == 0 || map->items[map->n - 1] != NULL;
}

/* Attach `n` where the document currently is. Always attaches (so the tree owns it), then
 * returns DC_ECONFIG if it was not acceptable there. */
static int attach(builder_t *b, dc__ynode_t *n)
{
    dc__ynode_t *c = b->cur;
    n->parent = c;
    if (c == NULL) {
        if (b->root != NULL) { /* cannot happen with one document; keep the node owned anyway */
            node_free(n);
            return dc__config_fail_at(b->err, b->errlen, b->file, 1, 1, "", "expected a single YAML document");
        }
        b->root = n;
        return 0;
    }
    if (c->type == DC__YNODE_SEQ) {
        grow(c);
        n->pindex = c->n;
        c->items[c->n++] = n;
        return 0;
    }
    if (!map_wants_key(c)) { /* the value of the last key */
        n->pkey = c->keys[c->n - 1]->raw;
        c->items[c->n - 1] = n;
        return 0;
    }
    /* a new key */
    grow(c);
    n->is_key = true;
    c->keys[c->n] = n;
    c->items[c->n] = NULL;
    c->n++;
    if (n->type != DC__YNODE_SCALAR) {
        n->pkey = "?";
        return fail_node(b->file, c, b->err, b->errlen, "expected a plain key, found %s used as a key",
                         n->type == DC__YNODE_MAP ? "a map" : "a list");
    }
    n->pkey = n->raw;
    for (size_t i = 0; i + 1 < c->n; i++) {
        const dc__ynode_t *k = c->keys[i];
        if (strcmp(k->raw, n->raw) == 0)
            return fail_node(b->file, n, b->err, b->errlen,
                             "expected each key once in a map, found a duplicate (first at line %u, column %u)",
                             k->line, k->col);
    }
    return 0;
}

/* Anchors, aliases and tags are YAML features the config language does not use; refusing them
 * keeps "what you read is what is loaded" true. */
static int check_props(builder_t *b, const dc__ynode_t *n, const yaml_char_t *anchor, const yaml_char_t *tag)
{
    if (anchor != NULL)
        return fail_node(b->file, n, b->err, b->errlen,
                         "expected a plain value, found an anchor '&%.40s' (anchors and aliases are not supported)",
                         (const char *)anchor);
    if (tag != NULL)
        return fail_node(b->file, n, b->err, b->errlen,
                         "expected a plain value, found a tag '%.40s' (tags are not supported)", (const char *)tag);
    return 0;
}

static int on_scalar(builder_t *b, const yaml_event_t *ev)
{
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    dc__ynode_t *n = node_new(b->file, DC__YNODE_SCALAR, &ev->start_mark);
    n->raw = dc_strndup(text, len);
    n->value = n->raw;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    n->is_null = plain && (len == 0 || strcmp(n->raw, "~") == 0 || strcmp(n->raw, "null") == 0 ||
                           strcmp(n->raw, "Null") == 0 || strcmp(n->raw, "NULL") == 0);
    int rc = attach(b, n);
    if (rc != 0)
        return rc;
    if ((rc = check_props(b, n, ev->data.scalar.anchor, ev->data.scalar.tag)) != 0)
        return rc;
    if (memchr(text, '\0', len) != NULL)
        return fail_node(b->file, n, b->err, b->errlen, "expected text, found a NUL character");
    if (n->is_key)
        return 0;
    char *expanded;
    size_t bad;
    bool simple = strchr(n->raw, '\n') == NULL && (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
                                                   (strchr(n->raw, '\\') == NULL && strchr(n->raw, '\'') == NULL &&
                                                    (ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                                                     ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)));
    unset_ctx_t uctx = {.b = b, .n = n, .exact_col = simple, .quote = plain ? 0 : 1};
    if (dc__config_expand_env(n->raw, &expanded, &bad, on_unset, &uctx) != 0) {
        char found[128];
        dc__ynode_describe(n, found, sizeof(found));
        return fail_node(b->file, n, b->err, b->errlen, "expected ${NAME} or ${NAME:-default}, found %s", found);
    }
    if (strcmp(expanded, n->raw) == 0)
        free(expanded);
    else
        n->value = expanded;
    return 0;
}

static int on_container(builder_t *b, const yaml_event_t *ev, dc__ynode_type_t type)
{
    dc__ynode_t *n = node_new(b->file, type, &ev->start_mark);
    int rc = attach(b, n);
    if (rc != 0)
        return rc;
    b->cur = n;
    const yaml_char_t *anchor = type == DC__YNODE_MAP ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    const yaml_char_t *tag = type == DC__YNODE_MAP ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    if ((rc = check_props(b, n, anchor, tag)) != 0)
        return rc;
    if (++b->depth > DC__YTREE_MAX_DEPTH)
        return fail_node(b->file, n, b->err, b->errlen, "expected at most %d levels of nesting, found more",
                         DC__YTREE_MAX_DEPTH);
    return 0;
}

static int on_alias(builder_t *b, const yaml_event_t *ev)
{
    dc__ynode_t *n = node_new(b->file, DC__YNODE_SCALAR, &ev->start_mark);
    n->raw = dc_strdup("");
    n->value = n->raw;
    int rc = attach(b, n);
    if (rc != 0)
        return rc;
    return fail_node(b->file, n, b->err, b->errlen,
                     "expected a plain value, found an alias '*%.40s' (anchors and aliases are not supported)",
                     (const char *)ev->data.alias.anchor);
}

/* libyaml's reader errors carry a byte offset instead of a mark. */
static void offset_to_mark(const char *text, size_t len, size_t off, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int syntax_error(builder_t *b, const yaml_parser_t *p, const char *text, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        dc_fatal("libyaml: out of memory");
    const char *problem = p->problem != NULL ? p->problem : "unknown problem";
    unsigned line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_to_mark(text, len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            return dc__config_fail_at(b->err, b->errlen, b->file, line, col, "", "YAML syntax error: %s (byte 0x%02x)",
                                      problem, (unsigned)p->problem_value & 0xffu);
        return dc__config_fail_at(b->err, b->errlen, b->file, line, col, "", "YAML syntax error: %s", problem);
    }
    line = (unsigned)p->problem_mark.line + 1;
    col = (unsigned)p->problem_mark.column + 1;
    /* libyaml's "found character that cannot start any token" at a tab means tab indentation */
    size_t at = (size_t)p->problem_mark.index;
    if ((at < len && text[at] == '\t') || strstr(problem, "tab character") != NULL)
        return dc__config_fail_at(b->err, b->errlen, b->file, line, col, "",
                                  "YAML syntax error: a tab character where YAML needs spaces (indent with spaces "
                                  "only; libyaml: %s)",
                                  problem);
    if (p->context != NULL)
        return dc__config_fail_at(b->err, b->errlen, b->file, line, col, "",
                                  "YAML syntax error: %s (%s at line %u, column %u)", problem, p->context,
                                  (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
    return dc__config_fail_at(b->err, b->errlen, b->file, line, col, "", "YAML syntax error: %s", problem);
}

int dc__ytree_parse(const char *file, const char *text, size_t len, dc__ynode_t **out, char **warnings, char *err,
                    size_t errlen)
{
    builder_t b = {.file = file, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    int rc = 0, ndocs = 0;
    bool done = false;

    *out = NULL;
    if (warnings != NULL)
        *warnings = NULL;
    if (!yaml_parser_initialize(&parser))
        dc_fatal("libyaml: cannot initialize parser");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = syntax_error(&b, &parser, text, len);
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1)
                rc = dc__config_fail_at(err, errlen, file, (unsigned)ev.start_mark.line + 1,
                                        (unsigned)ev.start_mark.column + 1, "",
                                        "expected a single YAML document, found a second one");
            break;
        case YAML_SCALAR_EVENT:
            rc = on_scalar(&b, &ev);
            break;
        case YAML_MAPPING_START_EVENT:
            rc = on_container(&b, &ev, DC__YNODE_MAP);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = on_container(&b, &ev, DC__YNODE_SEQ);
            break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
            DC_ASSERT(b.cur != NULL);
            b.cur = b.cur->parent;
            b.depth--;
            break;
        case YAML_ALIAS_EVENT:
            rc = on_alias(&b, &ev);
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default: /* stream start, document end, no event */
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (rc != 0) {
        node_free(b.root);
        free(b.warnings);
        return rc;
    }
    if (warnings != NULL)
        *warnings = b.warnings;
    else
        free(b.warnings);
    *out = b.root;
    return 0;
}
