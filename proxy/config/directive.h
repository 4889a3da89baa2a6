/*
 * Internal to config/: the directive engine.
 *
 * Every key the config accepts is one dc__directive_t row in a table (tables.c), in the spirit
 * of Redis' standardConfig and h2o's configurators: name, type, where the value goes (an offset
 * into the struct being filled), range, default, one-line doc. One generic engine (directive.c)
 * uses the same rows to parse a YAML map, apply defaults, reject unknown keys, free a snapshot and
 * write conf/REFERENCE.md (reference.c), so code, checks and docs cannot drift apart.
 *
 * Keys of a map are processed in table order, not file order, so a table can rely on earlier
 * rows being done: upstreams are resolved before routes name them, server.max_body is known
 * before routes default to it.
 */
#ifndef DC_CONFIG_DIRECTIVE_H
#define DC_CONFIG_DIRECTIVE_H

#include "config/config.h"
#include "config/yaml_tree.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DC__T_STRING,   /* char *; an empty value gives "" */
    DC__T_BOOL,     /* bool */
    DC__T_UINT,     /* uint32_t within [min, max] */
    DC__T_DURATION, /* uint64_t milliseconds within [min, max] */
    DC__T_SIZE,     /* uint64_t bytes within [min, max] */
    DC__T_RATE,     /* dc_config_rate_t */
    DC__T_RATES,    /* dc_config_rate_t * at offset, size_t count at aux; a rate or a list of them */
    DC__T_STRLIST,  /* char ** at offset, size_t count at aux */
    DC__T_LISTEN,   /* dc_config_listen_t */
    DC__T_LISTENS,  /* dc_config_listen_t * at offset, size_t count at aux; an address or a list */
    DC__T_ENUM,     /* int; names in enum_names, values in enum_values */
    DC__T_MAP,      /* nested table `sub` on base + offset; bool "present" flag at aux (or DC__NOFIELD) */
    DC__T_MAPLIST,  /* list of `sub` maps: array at offset, count at aux, elem_size each; >= min items */
    DC__T_NAMEDMAP, /* map name -> `sub` map: array at offset, count at aux; the name goes to name_offset */
    DC__T_CUSTOM,   /* scalar handled by parse(); release() frees what it allocated */
    DC__T_TREE,     /* a map kept as a tree: struct dc__ynode * (a copy, dc__ynode_copy) at offset */
    DC__T_UINTMAP,  /* map name -> integer within [min, max]: array of {char *name; uint32_t value} at
                     * offset (dc_config_weight_t's layout), count at aux; names through check */
} dc__dtype_t;

#define DC__NOFIELD ((size_t)-1)
#define DC__UNBOUNDED UINT64_MAX

enum {
    DC__D_REQUIRED = 1 << 0,   /* error when absent from a present map */
    DC__D_DROP_EMPTY = 1 << 1, /* STRLIST: drop "" items (an unset ${VAR}) instead of refusing them */
};

/* State of one load: the snapshot being filled and where to write the one error line. */
typedef struct dc__cfg_ctx {
    dc_config_t *cfg;
    const char *file;
    char *err;
    size_t errlen;
} dc__cfg_ctx_t;

typedef struct dc__directive dc__directive_t;
typedef struct dc__table dc__table_t;

/*
 * Scalar hooks receive the final text and the node it came from. `node` is NULL when the text
 * is the row's default, which must always be valid (a failure then is a bug and aborts).
 * Hooks return 0 or the result of dc__cfg_fail().
 */
typedef int (*dc__check_cb)(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, char **value);
typedef int (*dc__parse_cb)(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const char *text, const dc__ynode_t *node,
                            void *base);
typedef void (*dc__release_cb)(const dc__directive_t *d, void *base);
/* After a map was parsed (map == NULL: the map was absent and only defaults were applied). */
typedef int (*dc__finish_cb)(dc__cfg_ctx_t *ctx, const dc__ynode_t *map, void *base);
/* After item `i` of a MAPLIST was parsed; items 0..i are complete. */
typedef int (*dc__item_cb)(dc__cfg_ctx_t *ctx, const dc__ynode_t *item, void *array, size_t i);

struct dc__directive {
    const char *name;
    dc__dtype_t type;
    unsigned flags;
    size_t offset;
    size_t aux;
    uint64_t min, max;    /* UINT, DURATION, SIZE: inclusive range; MAPLIST: min = fewest items */
    const char *dflt;     /* default, parsed like a written value; NULL = zero / empty / absent */
    const char *dflt_doc; /* default as documented when computed rather than literal */
    const char *doc;      /* one line for conf/REFERENCE.md */
    const char *expect;   /* "expected ..." text, overriding the type's */
    const dc__table_t *sub;
    size_t elem_size;
    size_t name_offset;
    const char *const *enum_names; /* NULL-terminated */
    const int *enum_values;
    dc__check_cb check;     /* STRING, STRLIST items, NAMEDMAP names: validate / normalize */
    dc__parse_cb parse;     /* CUSTOM */
    dc__release_cb release; /* CUSTOM */
    dc__item_cb item_check; /* MAPLIST */
};

struct dc__table {
    const dc__directive_t *rows;
    size_t nrows;
    dc__finish_cb finish;
};

/* The root table (dc_config_t), in tables.c. */
extern const dc__table_t dc__config_root_table;

/*
 * Parse `map` (a MAP node, or NULL for "absent: defaults only") into `base` following `t`.
 * Returns 0 or DC_ECONFIG with ctx->err written. On failure `base` may be partly filled;
 * dc__table_release() frees whatever was filled.
 */
int dc__table_parse(dc__cfg_ctx_t *ctx, const dc__table_t *t, const dc__ynode_t *map, void *base);
/* Free everything `t` allocated into `base` (not base itself). Zeroed fields are fine. */
void dc__table_release(const dc__table_t *t, void *base);

/* "FILE:L:C: PATH[.suffix]: message" at `node`; suffix names a missing key under a map. */
int dc__cfg_fail(dc__cfg_ctx_t *ctx, const dc__ynode_t *node, const char *suffix, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* "expected <what d accepts>, found <node>" at `node`; a NULL node means a broken default (abort). */
/* with_range: the value parsed but fell outside [min, max], so say the range instead of the syntax. */
int dc__cfg_fail_expected(dc__cfg_ctx_t *ctx, const dc__directive_t *d, const dc__ynode_t *node, bool with_range);

/* What a row accepts, e.g. "a duration (500ms, 2s, 5m, 1h)" or "an integer from 0 to 10". */
void dc__directive_expect(const dc__directive_t *d, bool with_range, char *buf, size_t len);
/* Type name and range for the reference ("duration", "1ms..1h"). */
const char *dc__directive_type_name(const dc__directive_t *d);
void dc__directive_range(const dc__directive_t *d, char *buf, size_t len);

/* A row whose absence means "none of these" rather than a missing value (maps, lists). */
bool dc__directive_is_collection(const dc__directive_t *d);
/* Every row of `t` and of its sub-tables, depth first, with its full key ("routes[].cache[].ttl",
 * "upstreams.<name>.url") and its range as the reference prints it: the one walk behind
 * REFERENCE.md and the man pages. */
typedef void (*dc__directive_row_cb)(FILE *out, const dc__directive_t *d, const char *key, const char *range);
void dc__directive_walk(FILE *out, const dc__table_t *t, const char *prefix, dc__directive_row_cb row);

/* Write conf/REFERENCE.md from the tables (reference.c). */
void dc__config_write_reference(FILE *out);
/* Write man/dexcache.yaml.5 and man/dexcache.8 from the same tables (man.c). */
void dc__config_write_man5(FILE *out);
void dc__config_write_man8(FILE *out);

#endif
