/*
 * Fleet coordination through Redis for one worker thread: its own Redis connection (proxy/redis),
 * the per-client GCRA evaluated inside Redis with Redis TIME (one EVALSHA round trip per decision,
 * exact across instances), and the instance registry: worker 0 of every instance heartbeats into
 * a sorted set so each instance knows N, the number of live instances, which sizes the local
 * fallback (limits / N) used whenever Redis does not answer. Redis is never required for serving.
 */
#ifndef DC_RATELIMIT_FLEET_H
#define DC_RATELIMIT_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "ratelimit/gcra.h"

typedef struct dc_fleet dc_fleet_t;

/* Connect (asynchronously) to cfg->redis. `heartbeat`: this worker registers the instance. */
int dc_fleet_create(uv_loop_t *loop, const dc_config_t *cfg, bool heartbeat, dc_fleet_t **out);
bool dc_fleet_up(const dc_fleet_t *f);
/* Live instances last seen in Redis (1 until the first heartbeat answers). Process-wide. */
unsigned dc_fleet_instances(void);
/* Process-wide: is at least one worker's Redis connection up? */
bool dc_fleet_any_up(void);
/* "up" (every worker connected), "partial" (some) or "down" (none), for /health. */
const char *dc_fleet_state(void);
uint64_t dc_fleet_fallbacks(void);

/* Decide one request of bucket `key` in Redis. The callback always runs later, on this worker:
 * err 0 and *res, or err < 0 (Redis unavailable: the caller falls back to its local limiter).
 * `granted` tokens were taken (>= 1 when allowed): more than one is a lease this instance may
 * spend locally (granted only far from the limit, so decisions near it stay exact). */
typedef void (*dc_fleet_gcra_cb)(void *data, int err, const dc_gcra_result_t *res, unsigned granted);
/* Tokens asked per round trip for these params: burst / (16 x live instances), 1..256. */
unsigned dc_fleet_lease_size(const dc_gcra_params_t *p);
int dc_fleet_gcra(dc_fleet_t *f, const char *key, size_t len, const dc_gcra_params_t *p, dc_fleet_gcra_cb cb,
                  void *data);
/* Count one decision that fell back to the local limiter. */
void dc_fleet_count_fallback(void);

/* Fleet-wide upstream budget (see upstream/budget.h for the local one): reserve one attempt's slot
 * in Redis. The callback runs later: err < 0 (Redis unavailable: fall back locally), else
 * ok = 1 with wait_us until the slot (0 = now), or ok = 0 (refused; wait_us = when one frees). */
#define DC_BUDGET_FLEET_MAX_WIN 4
typedef void (*dc_fleet_budget_cb)(void *data, int err, int ok, uint64_t wait_us);
int dc_fleet_budget_reserve(dc_fleet_t *f, const char *upstream, const uint64_t *emission_us, size_t nwin,
                            uint64_t queue_timeout_us, bool background, dc_fleet_budget_cb cb, void *data);
/* Share an upstream 429's pause with every instance. */
void dc_fleet_cooldown(dc_fleet_t *f, const char *upstream, uint64_t retry_after_us);

/* L2 cache in Redis (values in cache/l2codec.h format, key prefix "l2:"). get: the callback runs
 * later with err 0 and the value (NULL/0 when absent; valid only during the call) or err < 0.
 * set: fire and forget, with an expiry. */
#define DC_FLEET_L2_MAX (8 * 1024 * 1024)
typedef void (*dc_fleet_l2_cb)(void *data, int err, const char *value, size_t len);
int dc_fleet_l2_get(dc_fleet_t *f, const char *key, size_t len, dc_fleet_l2_cb cb, void *data);
void dc_fleet_l2_set(dc_fleet_t *f, const char *key, size_t len, const char *value, size_t vlen, uint64_t ttl_ms);
uint64_t dc_fleet_l2_hits(void);

/* Cross-instance collapsing. lock: one round trip (a script) that reads the L2 value and takes
 * SET lk:<key> <instance id> NX PX ttl; the callback gets err < 0 (Redis unavailable), or got =
 * true/false and the L2 value (NULL when absent; valid during the callback only). Reading both at
 * once closes the window in which another instance stores the answer and unlocks between this
 * instance's L2 miss and its lock attempt (it would fetch the key a second time). A caller that
 * uses the value and got the lock unlocks at once. unlock: delete it only if it is still ours,
 * and then announce the key to every instance's followers (see dc_fleet_watch).
 * peek: one round trip returning the L2 value (NULL when absent) and whether the lock exists. */
typedef void (*dc_fleet_lock_cb)(void *data, int err, bool got, const char *l2, size_t l2_len);
int dc_fleet_lock(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lock_cb cb, void *data);
void dc_fleet_unlock(dc_fleet_t *f, const char *key, size_t len);
/* Followers on this worker waiting for another instance's fill: the node is the caller's, and its
 * callback runs once (the node is then unlinked) when any instance unlocks that key (its entry is in
 * L2 by then, or there is none), or when the notice channel was re-subscribed (notices may have
 * been missed). Notices are a shortcut: followers keep polling with dc_fleet_peek as well. */
typedef struct dc_fleet_watch {
    struct dc_fleet_watch *prev, *next; /* NULL when not watching */
    const char *key;                    /* borrowed while watching */
    size_t len;
    void (*cb)(struct dc_fleet_watch *w);
} dc_fleet_watch_t;
void dc_fleet_watch(dc_fleet_t *f, dc_fleet_watch_t *w);
void dc_fleet_unwatch(dc_fleet_t *f, dc_fleet_watch_t *w); /* no-op when not watching */
typedef void (*dc_fleet_peek_cb)(void *data, int err, const char *value, size_t vlen, bool locked);
int dc_fleet_peek(dc_fleet_t *f, const char *key, size_t len, dc_fleet_peek_cb cb, void *data);

/* Event streams (sse/sse.h) in a fleet: exactly one instance polls a channel. lease: become or
 * stay the channel's poller for ttl_ms (leader = true), or learn that another instance is
 * (false). publish: number the event fleet-wide (a counter in Redis, so ids stay in order across
 * leader changes) and send "<id>|<type>|<body>" to every instance's subscription of the channel;
 * the callback gets the id. Callbacks always run later on this worker; err < 0 = Redis
 * unavailable (poll and number locally). */
typedef void (*dc_fleet_lease_cb)(void *data, int err, bool leader);
int dc_fleet_sse_lease(dc_fleet_t *f, const char *key, size_t len, uint64_t ttl_ms, dc_fleet_lease_cb cb, void *data);
typedef void (*dc_fleet_publish_cb)(void *data, int err, uint64_t id);
int dc_fleet_sse_publish(dc_fleet_t *f, const char *key, size_t len, const char *type, const char *body, size_t blen,
                         dc_fleet_publish_cb cb, void *data);
struct dc_redis_sub;
struct dc_redis_sub *dc_fleet_sse_subscribe(dc_fleet_t *f, const char *key, size_t len,
                                            void (*cb)(void *data, const char *msg, size_t len), void *data);
void dc_fleet_sse_unsubscribe(dc_fleet_t *f, struct dc_redis_sub *s);
/* The channel's last update as published ("<id>|update|<body>"), or msg NULL (none, or Redis
 * unavailable): for an instance that starts relaying a channel and has nothing to show yet. */
int dc_fleet_sse_last(dc_fleet_t *f, const char *key, size_t len, void (*cb)(void *data, const char *msg, size_t len),
                      void *data);

/* Params for the local fallback: the limit shared out over the live instances. */
void dc_fleet_local_share(const dc_gcra_params_t *in, dc_gcra_params_t *out);

/* Worker teardown, in two steps. close: the heartbeat stops, followers' watches fire (they find
 * Redis gone), both Redis connections close (pending commands complete with DC_EIO on the next
 * loop turns); f stays valid and answers like a fleet whose Redis is down (dc_fleet_up false,
 * every call fails at once), so requests and fetches still holding it finish normally. destroy:
 * frees f once nothing holds it and the loop has run the closes (the worker's last step). */
void dc_fleet_close(dc_fleet_t *f);
void dc_fleet_destroy(dc_fleet_t *f);

#endif
