/*
 * The fleet connection of one worker thread: what every Redis feature of dexcache shares. It owns
 * the worker's two Redis clients (commands, and a subscriber for pub/sub), the key prefix, this
 * process's instance id, the up/down state (process-wide, for /health and /metrics), the instance
 * registry (worker 0 of every instance heartbeats into a sorted set, so every instance knows N, the
 * number of live instances, which sizes the local fallbacks), the scripts the features run (each
 * registered on first use and loaded again on every reconnect), per-feature state hung on the
 * connection, and the one call record every feature's round trip goes through.
 *
 * The features live next to their users, above this module: the per-client GCRA in
 * ratelimit/gcra_fleet.h, L2 and cross-instance collapsing in cache/l2fleet.h, the upstream budget
 * in upstream/budget_fleet.h, event stream leases in sse/sse_fleet.h. Redis is never required for
 * serving: every feature falls back locally when a call fails.
 *
 * Threads: a dc_fleet_t belongs to the thread that runs its loop. Only the process-wide getters
 * (dc_fleet_instances, dc_fleet_any_up, dc_fleet_state) may be called from any thread.
 */
#ifndef DC_REDIS_FLEET_H
#define DC_REDIS_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "redis/redis.h"

typedef struct dc_fleet dc_fleet_t;

typedef struct dc_fleet_opts {
    const char *url;    /* redis:// or unix:// (redis/redis.h) */
    const char *prefix; /* of every key and channel; NULL = "dexcache:" */
    bool heartbeat;     /* this connection registers the instance (one per process) */
} dc_fleet_opts_t;

/* Connect (asynchronously). DC_EINVAL on a bad url. The loop must outlive the fleet. */
int dc_fleet_create(uv_loop_t *loop, const dc_fleet_opts_t *opts, dc_fleet_t **out);
/* Worker teardown, in two steps. close: the heartbeat stops, each feature's close hook runs (the
 * fill-notice followers are told to look again, and find Redis gone), both Redis connections close
 * (pending calls complete with DC_EIO from the loop, their callbacks run); f stays valid and
 * answers like a fleet whose Redis is down (dc_fleet_up false, every call fails at once), so
 * requests and fetches still holding it finish normally. destroy: frees f and the features' state
 * once nothing holds it and the loop has run the closes (the worker's last step). NULL is ignored. */
void dc_fleet_close(dc_fleet_t *f);
void dc_fleet_destroy(dc_fleet_t *f);

/* Does this worker's connection answer now (redis.h: dc_redis_connected)? false for NULL. */
bool dc_fleet_up(const dc_fleet_t *f);
/* Live instances last seen in Redis (1 until the first heartbeat answers). Process-wide. */
unsigned dc_fleet_instances(void);
/* Process-wide: is at least one worker's Redis connection up? */
bool dc_fleet_any_up(void);
/* "up" (every worker connected), "partial" (some) or "down" (none), for /health. */
const char *dc_fleet_state(void);
/* Process-wide: Redis connections the workers hold (0 without redis: in the config) and how many
 * of them are connected now, for /metrics. */
void dc_fleet_connections(unsigned *up, unsigned *total);

/* Key prefix and instance id (host:pid:random), owned by f. */
const char *dc_fleet_prefix(const dc_fleet_t *f);
const char *dc_fleet_instance_id(const dc_fleet_t *f);
/* "<prefix><kind><key>" in a new heap string that the caller frees. */
char *dc_fleet_key(const dc_fleet_t *f, const char *kind, const char *key, size_t len);

/*
 * The call record: one round trip of a feature. `on_reply` is the feature's adapter: it
 * interprets the reply (err 0 and reply, or err < 0 and reply NULL, as in redis.h) and calls the
 * caller's `cb` (stored as a generic function pointer, cast back by the adapter to the type it was
 * given as) with `data`. The record is copied: the fleet owns the copy and frees it after
 * on_reply returns; data stays the caller's. A call that returns 0 runs on_reply exactly once,
 * later, from the loop; a non-zero return (Redis unavailable) means it never runs. A NULL call
 * is fire and forget (the reply is ignored).
 */
typedef void (*dc_fleet_fn)(void);
typedef struct dc_fleet_call dc_fleet_call_t;
struct dc_fleet_call {
    void (*on_reply)(const dc_fleet_call_t *c, int err, const redisReply *reply);
    dc_fleet_fn cb;
    void *data;
};
/* Run a script: `lua` must be a string that lives as long as the process (its address names the
 * script: registered with this connection on first use, SCRIPT LOADed on every reconnect). args
 * holds nkeys keys then nargs arguments, lens[i] bytes each, copied before returning. */
int dc_fleet_eval(dc_fleet_t *f, const char *lua, const dc_fleet_call_t *call, int nkeys, int nargs, const char **args,
                  const size_t *lens);
/* A plain command, argv copied before returning. */
int dc_fleet_command(dc_fleet_t *f, const dc_fleet_call_t *call, int argc, const char **argv, const size_t *lens);
/* GET of the key `<prefix><kind><key>` (L2 entries, the last stream event): dc_fleet_command's contract. */
int dc_fleet_get(dc_fleet_t *f, const char *kind, const char *key, size_t len, const dc_fleet_call_t *call);

/* Pub/sub on the subscriber connection (redis.h: dc_redis_subscribe; cb gets msg NULL each time
 * the subscription is (re)established). NULL when f has no subscriber. The handle is owned by f. */
dc_redis_sub_t *dc_fleet_subscribe(dc_fleet_t *f, const char *channel, dc_redis_msg_cb cb, void *data);
void dc_fleet_unsubscribe(dc_fleet_t *f, dc_redis_sub_t *s); /* NULL: no-op */

/* Per-feature state on a connection (like h2o's context slots): the state for `type` (a static
 * object of the feature), created by type->create on the first call and destroyed by
 * type->destroy when f closes. */
typedef struct dc_fleet_ext_type {
    void *(*create)(dc_fleet_t *f);
    void (*destroy)(dc_fleet_t *f, void *state);
    void (*close)(dc_fleet_t *f, void *state); /* may be NULL: run by dc_fleet_close */
} dc_fleet_ext_type_t;
void *dc_fleet_ext(dc_fleet_t *f, const dc_fleet_ext_type_t *type);

/* Reply interpretation shared by the features (pure; exposed for tests and fuzzing). Pointers
 * handed out point into the reply and are valid as long as it is. */
/* A plain GET (L2 entry, SSE last update): the string, or NULL for anything else (nil = absent). */
const char *dc_fleet_reply_string(const redisReply *reply, size_t *len);
/* An integer element of a script's answer: its value when positive, 0 for anything else. */
uint64_t dc_fleet_reply_nonneg(const redisReply *e);
/* Heartbeat script: the number of live instances, a positive integer; false for anything else
 * (the caller keeps its last count). Clamped to UINT32_MAX. */
bool dc_fleet_reply_instances(const redisReply *reply, unsigned *n);

#endif
