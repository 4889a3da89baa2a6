/*
 * json_view's core, pure C with no dexcache header (json_view.c is the plugin glue): the one-pass
 * scanner of a JSON array of objects, the view config, the query parser, the index of one source
 * body and the answer to a query. Shared by json_view.so, its unit tests and its fuzzer.
 *
 * The index never copies the source: member spans point into the body, which the host keeps as
 * long as the index (DEXCACHE_VIEW_BODY_KEPT). Per member: its span (12 bytes); per match field
 * and member holding it: one posting (hash, member, value span: 24 bytes), sorted by hash; per
 * numeric (min/max/sort) field: one double per member; per sort field: one uint32 order.
 */
#ifndef JV_H
#define JV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JV_MAX_FIELDS 32
#define JV_MAX_MATCH 8
#define JV_MAX_VALUES 64 /* values of one match parameter */
#define JV_MAX_PROJECT 32
#define JV_MAX_DEPTH 64

/* ---- scanner ---- */

typedef struct jv_scan_ops {
    /* A top-level field of the current member: key (raw, between the quotes), value (its JSON
     * text). Return 0, or non-zero to stop the scan (returned as is). */
    int (*field)(void *ud, const char *key, size_t klen, const char *val, size_t vlen);
    /* The current member is complete: bytes [start, end) of the input. */
    int (*member)(void *ud, size_t start, size_t end);
} jv_scan_ops_t;

/* Scan a JSON array in one pass: for each member (objects, or any value: no fields then), its
 * top-level fields and its span. Nested values are skipped, never parsed. Returns the number of
 * members, or -1 when the input is not one JSON array (*err_at = byte offset of the problem), or
 * what a callback returned when it stopped the scan (as a negative number below -1). */
long jv_scan_array(const char *s, size_t n, const jv_scan_ops_t *ops, void *ud, size_t *err_at);

/* The number a JSON value stands for: a number, or a string holding one ("123.5"). */
bool jv_number(const char *val, size_t vlen, double *out);

/* ---- config ---- */

typedef struct jv_match {
    char *qname;                    /* query parameter */
    unsigned fields[JV_MAX_FIELDS]; /* indexes into jv_conf_t.fields */
    unsigned nfields;
} jv_match_t;

typedef struct jv_conf {
    char *fields[JV_MAX_FIELDS]; /* every field named by match/min/max/sort, once */
    unsigned nfields;
    bool is_match[JV_MAX_FIELDS], is_num[JV_MAX_FIELDS], is_sort[JV_MAX_FIELDS];
    bool has_min[JV_MAX_FIELDS], has_max[JV_MAX_FIELDS];
    jv_match_t match[JV_MAX_MATCH];
    unsigned nmatch;
    char **project; /* allowed `fields=` names (NULL: any name the source has) */
    unsigned nproject;
    uint32_t max_limit, default_limit;
} jv_conf_t;

/* Index of `name` in conf->fields, added when absent; -1 when full or the name is bad. */
int jv_conf_field(jv_conf_t *c, const char *name);
void jv_conf_free(jv_conf_t *c);

/* ---- query ---- */

typedef struct jv_query {
    struct {
        unsigned match; /* index into conf->match */
        unsigned nvals;
        char *vals[JV_MAX_VALUES]; /* decoded, into `buf` */
        size_t lens[JV_MAX_VALUES];
    } m[JV_MAX_MATCH];
    unsigned nm;
    double min[JV_MAX_FIELDS], max[JV_MAX_FIELDS];
    bool has_min[JV_MAX_FIELDS], has_max[JV_MAX_FIELDS];
    int sort_field; /* -1: source order */
    bool sort_desc;
    uint32_t limit, offset;
    char *project[JV_MAX_PROJECT]; /* `fields=` names, into `buf` */
    size_t project_len[JV_MAX_PROJECT];
    unsigned nproject;
    char *buf; /* heap: decoded values */
} jv_query_t;

/* Parse a raw query string (percent-encoded, '&'-separated, no '?') against the config. 0, or -1
 * with a message naming the parameter in err ("unknown parameter: x", "min_liquidity: not a
 * number", "limit: at most 1000", ...). Free with jv_query_free either way. */
int jv_query_parse(const jv_conf_t *c, const char *qs, size_t len, jv_query_t *q, char *err, size_t errlen);
void jv_query_free(jv_query_t *q);

/* ---- index ---- */

typedef struct jv_index jv_index_t;

/* Build the index of `body` (a JSON array), which must outlive it. NULL with err on bad input. */
jv_index_t *jv_index_build(const jv_conf_t *c, const char *body, size_t len, char *err, size_t errlen);
void jv_index_free(jv_index_t *ix);
size_t jv_index_bytes(const jv_index_t *ix);
size_t jv_index_members(const jv_index_t *ix);

/* Answer `q`: the JSON array of matching members, each byte for byte as in the source (or, with
 * `fields=`, an object of those fields with the source's value bytes, in the order asked),
 * through `write` (return non-zero to stop). 0, -1 with err naming the parameter (an unknown
 * `fields=` name), or what `write` returned. */
typedef int (*jv_write_fn)(void *ud, const char *p, size_t len);
int jv_answer(const jv_conf_t *c, const jv_index_t *ix, const jv_query_t *q, jv_write_fn write, void *ud, char *err,
              size_t errlen);

#endif
