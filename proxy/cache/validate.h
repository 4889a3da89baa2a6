/*
 * Validation of an upstream answer before it is stored or shared (pure: no I/O, time is a
 * parameter). A cache rule may ask that a 2xx body parse as JSON, that JSON pointers (RFC 6901)
 * resolve or not, and that the payload's own timestamp be recent; and it may list statuses that
 * count as failures. http/ (the fill) calls these once the body is complete; an answer that fails
 * is an upstream error there (never stored, never handed to waiters as a success).
 */
#ifndef DC_CACHE_VALIDATE_H
#define DC_CACHE_VALIDATE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Bodies larger than this (decoded) are not validated: their head is not held back for them (a
 * multi-megabyte list streams to clients as it arrives) and parsing them would stall a worker. */
#define DC_VALIDATE_MAX_BODY (4u * 1024 * 1024)
/* Numeric timestamps from here on are milliseconds, below it seconds (1e11 s is the year 5138,
 * 1e11 ms is 1973). */
#define DC_PAYLOAD_MS_FROM 1e11

/* Is `p` (NUL-terminated) an RFC 6901 pointer: "" or "/"-separated tokens, '~' only as ~0 or ~1? */
bool dc_json_pointer_valid(const char *p);
/* The value `p` points to in `root`, or NULL (absent, or `p` invalid). Object members are matched
 * by their exact (unescaped) name, the first of duplicates; array tokens are decimal indexes
 * without leading zeros ("-", the element past the end, never resolves). */
const cJSON *dc_json_pointer_get(const cJSON *root, const char *p);

/* "2024-06-05T08:55:25.527Z" / "...+02:00" (RFC 3339; 't', 'z' and a space separator accepted) ->
 * unix milliseconds. Returns 0, or DC_EINVAL on anything else (range checks included). */
int dc_rfc3339_parse_ms(const char *s, size_t len, int64_t *ms);
/* A payload timestamp: a number (seconds, or milliseconds from DC_PAYLOAD_MS_FROM on; fractions
 * allowed), a string of such a number, or an RFC 3339 string. Returns 0 with *ms, or DC_EINVAL
 * (missing, negative or before 1970, not finite, another type). */
int dc_payload_time_ms(const cJSON *v, int64_t *ms);

/* Does `rule` count `status` as a failure (fail_statuses)? */
bool dc_validate_status_fails(const dc_config_cache_rule_t *rule, int status);
/* Does `rule` ask anything of a body? */
bool dc_validate_wants_body(const dc_config_cache_rule_t *rule);

/*
 * Check a complete 2xx body against `rule` at wall time `now_ms`: JSON parse, then every
 * validate_rules item in order, then the payload age. Returns 0 (good) or DC_EINVAL with a short
 * reason written to `reason` (always NUL-terminated), e.g. "not JSON", "/error present",
 * "/data not a non-empty array", "/ts older than max_payload_age". The reason names only config
 * text, never body bytes, so the set of reasons of a config is finite.
 */
int dc_validate_body(const dc_config_cache_rule_t *rule, const char *body, size_t len, uint64_t now_ms, char *reason,
                     size_t reason_cap);

#endif
