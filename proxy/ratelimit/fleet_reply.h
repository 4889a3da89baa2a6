/*
 * What the fleet's Redis scripts and commands answer, interpreted (pure: no I/O, no counters).
 * Each function takes the reply tree hiredis built from Redis's bytes, which may be anything (a
 * different script under the same SHA, a proxy in the way, a bug): every shape is checked, and
 * an unexpected one is DC_EPROTO (the caller then treats Redis as unavailable) or "absent".
 * Pointers handed out point into the reply and are valid as long as it is.
 */
#ifndef DC_RATELIMIT_FLEET_REPLY_H
#define DC_RATELIMIT_FLEET_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "ratelimit/gcra.h"

/* GCRA script: {allowed, granted, remaining, retry_after_us, reset_us}, five integers (a
 * non-integer element counts as 0, a negative one as 0). 0 and *res / *granted filled, or
 * DC_EPROTO (then *res is zeroed and *granted is 0). */
int dc_fleet_reply_gcra(const redisReply *reply, dc_gcra_result_t *res, unsigned *granted);

/* Budget script: {1 (slot taken) or anything else (refused), wait_us}. 0 with *ok and *wait_us
 * (negative or non-integer wait = 0), or DC_EPROTO (*ok = 0, *wait_us = 0). */
int dc_fleet_reply_budget(const redisReply *reply, int *ok, uint64_t *wait_us);

/* Lock and peek scripts: {L2 value or nil, 0/1}. 0 with *value (NULL when L2 has no string
 * there) and *flag (true only for the integer 1), or DC_EPROTO (*value NULL, *flag false). */
int dc_fleet_reply_l2_and_flag(const redisReply *reply, const char **value, size_t *len, bool *flag);

/* A plain GET (L2 entry, SSE last update): the string, or NULL for anything else (nil = absent). */
const char *dc_fleet_reply_string(const redisReply *reply, size_t *len);

/* SSE lease script: the integer 1 (this instance leads) or another integer (another does); anything
 * else is DC_EPROTO (*leader false). */
int dc_fleet_reply_lease(const redisReply *reply, bool *leader);

/* SSE publish script: the event id, an integer (negative ones are DC_EPROTO: ids count from 1). */
int dc_fleet_reply_publish(const redisReply *reply, uint64_t *id);

/* Heartbeat script: the number of live instances, a positive integer; false for anything else
 * (the caller keeps its last count). Clamped to UINT32_MAX. */
bool dc_fleet_reply_instances(const redisReply *reply, unsigned *n);

#endif
