/*
 * Conditional requests (RFC 9110 §8.8 validators, §13 preconditions), pure: no I/O, no allocation,
 * time is a parameter. The h2o side collects the request's header lines into a dc_cond_request_t
 * and the representation's validators into a dc_cond_validators_t; this module says whether the
 * request proceeds (200 / the method runs), is answered 304 Not Modified, or 412 Precondition Failed.
 *
 * Evaluation order is RFC 9110 §13.2.2:
 *   1. If-Match (strong comparison, `*`, lists)                 false -> 412
 *   2. else If-Unmodified-Since (invalid date: ignored)          false -> 412
 *   3. If-None-Match (weak comparison, `*`, lists, W/)           false -> 304 for GET/HEAD, else 412
 *   4. else If-Modified-Since (GET/HEAD only; invalid, several members or later than our Date:
 *      ignored)                                                  false -> 304
 * The caller applies it only where RFC 9110 §13.2.1 says preconditions apply: to a 2xx answer
 * (a stored 404 is served as it is, whatever the request's conditionals say).
 *
 * Parsing is tolerant and bounded: a malformed list member is skipped (it matches nothing), a
 * field with more lines than DC_COND_MAX_LINES keeps its first lines.
 */
#ifndef DC_HTTP_CONDITIONAL_H
#define DC_HTTP_CONDITIONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DC_COND_MAX_LINES 8

/* One request field, possibly sent as several lines (list fields are combined with commas). */
typedef struct dc_cond_field {
    const char *v[DC_COND_MAX_LINES];
    size_t len[DC_COND_MAX_LINES];
    unsigned n; /* lines kept (0 = field absent) */
    bool more;  /* more lines than DC_COND_MAX_LINES were sent (the rest is ignored) */
} dc_cond_field_t;

typedef struct dc_cond_request {
    bool get_or_head; /* the method is GET or HEAD */
    dc_cond_field_t if_match, if_none_match, if_modified_since, if_unmodified_since;
} dc_cond_request_t;

/* The selected representation's validators. Strings are not copied and need no NUL. */
typedef struct dc_cond_validators {
    const char *etag; /* entity-tag as sent in ETag (`"x"` or `W/"x"`); NULL or malformed = none */
    size_t etag_len;
    int64_t last_modified_s; /* Last-Modified, epoch seconds; -1 = none */
    /* If-Modified-Since without Last-Modified uses this instead (RFC 9111 §4.3.2: the stored
     * Date, or the time the response was received); -1 = not evaluated */
    int64_t ims_fallback_s;
} dc_cond_validators_t;

typedef enum {
    DC_COND_PROCEED = 0,      /* no condition failed: answer normally */
    DC_COND_NOT_MODIFIED,     /* 304 */
    DC_COND_PRECONDITION_FAIL /* 412 */
} dc_cond_result_t;

/* A parsed entity-tag: `opaque` points at the opaque-tag including its quotes. */
typedef struct dc_etag {
    bool weak;
    const char *opaque;
    size_t opaque_len;
} dc_etag_t;

/* Parse one entity-tag (OWS around it allowed). Returns false when `v` is not exactly one. */
bool dc_etag_parse(const char *v, size_t len, dc_etag_t *out);
/* §8.8.3.2: strong = both strong and the same opaque-tag; weak = the same opaque-tag. */
bool dc_etag_strong_eq(const dc_etag_t *a, const dc_etag_t *b);
bool dc_etag_weak_eq(const dc_etag_t *a, const dc_etag_t *b);

/* True when `r` carries any of the four precondition fields (the cheap test for the hit path). */
static inline bool dc_cond_present(const dc_cond_request_t *r)
{
    return r->if_match.n | r->if_none_match.n | r->if_modified_since.n | r->if_unmodified_since.n;
}

/* Evaluate the preconditions of `r` against `v`; `now_s` is the Date of our answer (an
 * If-Modified-Since later than it is ignored). */
dc_cond_result_t dc_cond_evaluate(const dc_cond_request_t *r, const dc_cond_validators_t *v, int64_t now_s);

/* If-Range (§13.1.5): true when the range may be served, i.e. the field value is an entity-tag
 * that strongly matches v->etag (a weak tag on either side never matches), or an HTTP-date equal
 * to v->last_modified_s. A malformed value is false (send the whole representation). */
bool dc_cond_if_range_ok(const char *v, size_t len, const dc_cond_validators_t *val);

/* Does `list` (one field line: `*` or a comma-separated list of entity-tags) contain a member that
 * matches `tag` (strong comparison when `strong`, else weak)? `*` matches whenever `has_repr` (a
 * current representation exists, tagged or not); `tag` NULL matches no listed tag. */
bool dc_cond_list_match(const char *list, size_t len, const dc_etag_t *tag, bool has_repr, bool strong);

/* The textual name of a result ("proceed", "304", "412"), for logs and Cache-Status detail. */
const char *dc_cond_result_name(dc_cond_result_t r);

#endif
