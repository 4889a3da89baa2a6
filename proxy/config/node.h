/*
 * Read-only access to a kept piece of the config YAML (a plugin's `config:` map, DC__T_TREE rows)
 * for the modules above config/: walk it, read scalars after ${VAR} expansion, and write errors
 * that name the node's FILE:LINE:COL and path, like every config error.
 *
 * The nodes belong to the dc_config_t they came from and live as long as it; all functions are
 * pure and safe from any thread (the tree is immutable).
 */
#ifndef DC_CONFIG_NODE_H
#define DC_CONFIG_NODE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dc__ynode dc_confnode_t;

typedef enum { DC_CONFNODE_SCALAR = 0, DC_CONFNODE_MAP, DC_CONFNODE_LIST } dc_confnode_kind_t;

dc_confnode_kind_t dc_confnode_kind(const dc_confnode_t *n);
/* A scalar written without a value (`key:`, `~`, `null`). */
bool dc_confnode_is_null(const dc_confnode_t *n);
/* Entries of a map / items of a list (0 for a scalar). */
size_t dc_confnode_len(const dc_confnode_t *n);
/* The i-th value of a map (its key in *key when key != NULL) or item of a list; NULL past the end. */
const dc_confnode_t *dc_confnode_at(const dc_confnode_t *n, size_t i, const char **key);
/* The value under `key` of a map; NULL when absent or n is not a map. */
const dc_confnode_t *dc_confnode_get(const dc_confnode_t *n, const char *key);
/* A scalar's text after ${VAR} expansion; NULL for maps and lists. */
const char *dc_confnode_value(const dc_confnode_t *n);
/* Write "FILE:LINE:COL: PATH: message" for n into err; returns DC_ECONFIG. */
int dc_confnode_fail(const dc_confnode_t *n, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int dc_confnode_vfail(const dc_confnode_t *n, char *err, size_t errlen, const char *fmt, va_list ap);
/* What the node is, for "found ...": "'soon'", "a map", "a list", "an empty value". */
void dc_confnode_describe(const dc_confnode_t *n, char *buf, size_t len);

#endif
