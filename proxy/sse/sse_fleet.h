/*
 * Event streams (sse/sse.h) in a fleet, on the worker's fleet connection (redis/fleet.h): exactly
 * one instance polls a channel (a lease "<prefix>ssel:<key>"), events are numbered fleet-wide (a
 * counter "<prefix>ssei:<key>", so ids stay in order across leader changes), published on
 * "<prefix>sse:<key>" to every instance, and the last update is kept ("<prefix>ssev:<key>") for
 * instances that start relaying a channel later.
 *
 * Ownership: calls copy what they are given before returning and own nothing of the caller's;
 * values handed to callbacks are valid during the callback only. Subscriptions are owned by the
 * fleet's subscriber (freed by dc_fleet_sse_unsubscribe or when the fleet closes).
 */
#ifndef DC_SSE_SSE_FLEET_H
#define DC_SSE_SSE_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis/fleet.h"

/* lease: become or stay the channel's poller for ttl_ms (leader = true), or learn that another
 * instance is (false). publish: number the event and send "<id>|<type>|<body>" to every instance's
 * subscription of the channel; the callback gets the id. Callbacks always run later on this
 * worker; err < 0 = Redis unavailable (poll and number locally). A non-zero return means the
 * callback never runs. */
typedef void (*dc_fleet_lease_cb)(void *data, int err, bool leader);
int dc_fleet_sse_lease(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lease_cb cb, void *data);
typedef void (*dc_fleet_publish_cb)(void *data, int err, uint64_t id);
int dc_fleet_sse_publish(dc_fleet_t *f, const char *key, size_t len, const char *type, const char *body, size_t blen,
                         dc_fleet_publish_cb cb, void *data);
/* The channel's events as published (cb as in redis.h: msg NULL on each (re)subscription); NULL
 * when f has no subscriber. */
dc_redis_sub_t *dc_fleet_sse_subscribe(dc_fleet_t *f, const char *key, size_t len,
                                       void (*cb)(void *data, const char *msg, size_t len), void *data);
void dc_fleet_sse_unsubscribe(dc_fleet_t *f, dc_redis_sub_t *s); /* NULL: no-op */
/* The channel's last update as published ("<id>|update|<body>"), or msg NULL (none, or Redis
 * unavailable): for an instance that starts relaying a channel and has nothing to show yet. */
int dc_fleet_sse_last(dc_fleet_t *f, const char *key, size_t len, void (*cb)(void *data, const char *msg, size_t len),
                      void *data);

/* Replies (pure; exposed for tests and fuzzing). lease: the integer 1 (this instance leads) or
 * another integer (another does); anything else is DC_EPROTO (*leader false). publish: the event
 * id, an integer (negative ones are DC_EPROTO: ids count from 1). */
int dc_fleet_reply_lease(const redisReply *reply, bool *leader);
int dc_fleet_reply_publish(const redisReply *reply, uint64_t *id);

#endif
