/*
 * Internal to config/: YAML text -> a tree of nodes that each know where they were written.
 *
 * libyaml's event parser feeds a small tree (scalars, maps, sequences). Every node carries its
 * 1-based line and column and a link to its parent, so any later error can name
 * "FILE:LINE:COL: routes[0].cache[1].ttl". The builder refuses what the config language does not
 * use: anchors, aliases, explicit tags, non-scalar map keys, duplicate keys, several documents,
 * nesting deeper than DC__YTREE_MAX_DEPTH. ${VAR} expansion is applied here to every scalar value
 * (not to keys), so the directive layer only ever sees final text.
 *
 * The tree is owned by whoever called dc__ytree_parse() and freed with dc__ytree_free(); nothing
 * in a dc_config_t points into it.
 */
#ifndef DC_CONFIG_YAML_TREE_H
#define DC_CONFIG_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#define DC__YTREE_MAX_DEPTH 32

typedef enum { DC__YNODE_SCALAR, DC__YNODE_MAP, DC__YNODE_SEQ } dc__ynode_type_t;

typedef struct dc__ynode dc__ynode_t;
struct dc__ynode {
    dc__ynode_type_t type;
    const char *file;    /* name given to dc__ytree_parse (borrowed: the tree must not outlive it) */
    unsigned line, col;  /* 1-based position of the node's first character */
    dc__ynode_t *parent; /* NULL for the root */
    const char *pkey;    /* key text when parent is a map (owned by the key node) */
    size_t pindex;       /* position when parent is a sequence */
    bool is_key;         /* a map key (never expanded) */
    /* scalars */
    char *raw;    /* as written, after YAML unquoting */
    char *value;  /* after ${VAR} expansion; the same pointer as raw when nothing changed */
    bool is_null; /* plain "", "~" or "null": the key was written without a value */
    /* maps: keys[i] -> items[i]; sequences: items[i] */
    dc__ynode_t **keys;
    dc__ynode_t **items;
    size_t n, cap;
};

/*
 * Parse `len` bytes of `text`. On success returns 0 and *out is the root node, or NULL when the
 * text holds no document at all. On failure returns DC_ECONFIG with one line in err:
 * "FILE:LINE:COL: [KEY: ]message". `file` names the input in messages.
 * On success *warnings (when not NULL) is a heap string of "FILE:LINE:COL: warning: ..." lines,
 * each ending in '\n' (an unset ${NAME} without a default), or NULL when there are none; the
 * caller frees it. COL is the "${" itself in a one-line plain or simply quoted scalar, else the
 * scalar's first character.
 */
int dc__ytree_parse(const char *file, const char *text, size_t len, dc__ynode_t **out, char **warnings, char *err,
                    size_t errlen);
void dc__ytree_free(dc__ynode_t *root);

/* A deep copy of `node` and its subtree that outlives the parsed tree: every node keeps its line,
 * column and key, `file` becomes `file` given here (it must outlive the copy), and the copy hangs
 * under stub copies of node's ancestors (no children of their own) so that dc__ynode_path() of a
 * copied node still names the whole path ("plugins[0].config.jwt.alg"). Freed with
 * dc__ynode_copy_free(). */
dc__ynode_t *dc__ynode_copy(const dc__ynode_t *node, const char *file);
void dc__ynode_copy_free(dc__ynode_t *copy);

/* Value stored under `key` in a map node, or NULL. */
const dc__ynode_t *dc__ynode_get(const dc__ynode_t *map, const char *key);
/* The key node under which map->items[i] sits. */
static inline const dc__ynode_t *dc__ynode_key_at(const dc__ynode_t *map, size_t i)
{
    return map->keys[i];
}

/* Dotted path of a node: "upstreams.jupiter.rate[1]"; "" for the root. Truncates to fit. */
void dc__ynode_path(const dc__ynode_t *node, char *buf, size_t len);
/* What a node is, for "found ...": "'soon'", "'' (from '${X}')", "a map", "a list", "an empty value". */
void dc__ynode_describe(const dc__ynode_t *node, char *buf, size_t len);

/*
 * Write "FILE:LINE:COL: PATH: message" into err, PATH omitted when empty, control characters
 * escaped so the result is always one line. Returns DC_ECONFIG so callers can `return` it.
 */
int dc__config_fail_at(char *err, size_t errlen, const char *file, unsigned line, unsigned col, const char *path,
                       const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#endif
