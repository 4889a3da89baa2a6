/*
 * The fleet's message bus: small typed messages that every instance must apply (purges, API-key
 * quarantines), carried by Redis pub/sub and also kept in a capped log in Redis, so an instance
 * that was disconnected, or has just started, catches up: every (re)subscription replays the log.
 * Messages must therefore be idempotent and carry their own time (at_ms, the sender's wall clock).
 *
 * Wire format of one message: "<type>|<at_ms>|<sender id>|<body>"; the log is the list
 * <prefix>bus:log (newest first, at most DC_BUS_LOG_MAX, expiring a day after the last message)
 * and the channel is <prefix>bus.
 *
 * Threads: the bus runs on the loop it was created on (the main thread), with two Redis
 * connections of its own (a subscriber, and one for commands). dc_bus_post() may be called from
 * any thread: messages go through a mutex-protected queue and a uv_async_t. While Redis is down
 * they wait in that queue (at most DC_BUS_QUEUE_MAX; beyond it the oldest are dropped and
 * counted) and are published when it is back. Handlers run on the bus loop. One bus per process.
 */
#ifndef DC_REDIS_BUS_H
#define DC_REDIS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "redis/redis.h"

#define DC_BUS_LOG_MAX 1000
#define DC_BUS_QUEUE_MAX 1024

typedef struct dc_bus dc_bus_t;

/* Message types. Bodies: purge = kind char (cache/purgelog.h) + argument; quarantine =
 * "<upstream name>\t<key id>" (upstream/keyring.h), lasting the receiver's key_quarantine from at_ms. */
#define DC_BUS_PURGE 'P'
#define DC_BUS_QUARANTINE 'Q'
#define DC_BUS_BREAKER 'B' /* a tier's breaker opened / closed, or it was cordoned: upstream/breaker_fleet.h */

typedef struct dc_bus_msg {
    char type;
    uint64_t at_ms;
    bool replay; /* from the log after a (re)subscription, not live */
    const char *body;
    size_t len;
} dc_bus_msg_t;

/* Runs on the bus loop for every message sent by another process (never for this process's own:
 * the poster applies its message locally when it posts it). */
typedef void (*dc_bus_handler)(void *data, const dc_bus_msg_t *m);

/* Connect (asynchronously) to `url`; keys and channel under `prefix`. Installs the process's bus. */
int dc_bus_create(uv_loop_t *loop, const char *url, const char *prefix, dc_bus_handler handler, void *data,
                  dc_bus_t **out);
/* Stop; uninstalls the process's bus and frees it once its connections have closed. */
void dc_bus_close(dc_bus_t *b);

/* Any thread: send a message to every other instance, stamped with `at_ms`. Returns false when
 * no bus exists (no Redis configured): the message stays local. */
bool dc_bus_post(char type, uint64_t at_ms, const char *body, size_t len);

/* The same, and with it (in the same Redis script, atomically) the state key <prefix><key> (NULL =
 * none) is set to `value` for px_ms (0 = no expiry), or deleted (value NULL): state that outlives
 * the log (a cordon), read back by the sync hook; and <prefix><del_key> (NULL = none) is deleted. */
bool dc_bus_post_state(char type, uint64_t at_ms, const char *body, size_t len, const char *key, const char *value,
                       uint64_t px_ms, const char *del_key);

/* State sync (polling as the fallback of pub/sub, and at every (re)connection): fn runs on the bus
 * loop after each catch-up from the log and every `every_ms` (0 = only after catch-ups), while
 * Redis answers and no message of ours waits to be published. It may read keys with dc_bus_mget. */
typedef void (*dc_bus_sync_fn)(void *data);
void dc_bus_set_sync(dc_bus_t *b, uint64_t every_ms, dc_bus_sync_fn fn, void *data);
/* MGET of <prefix>keys[i] on the bus's command connection; redis.h's completion contract (cb runs
 * exactly once when 0 is returned). DC_EIO when Redis is not connected. */
int dc_bus_mget(dc_bus_t *b, const char *const *keys, size_t n, dc_redis_cb cb, void *data);

/* For /health and /metrics (any thread). */
bool dc_bus_up(void);
uint64_t dc_bus_published(void);
uint64_t dc_bus_received(void);
uint64_t dc_bus_dropped(void);
/* Add the dexcache_bus_* families to /metrics (core/metrics.h source; once, at start-up, with or
 * without a bus: they read 0 without Redis). */
void dc_bus_metrics_register(void);

/* Parse one wire message (pure). Returns false when malformed. *sender points into `raw`. */
bool dc_bus_parse(const char *raw, size_t len, dc_bus_msg_t *m, const char **sender, size_t *sender_len);

/* The catch-up log as LRANGE answers it (newest first), interpreted (pure): fn runs for each string
 * element, oldest first (other elements are skipped; each string still has to pass dc_bus_parse).
 * Returns false, without calling fn, when the reply is not an array. */
bool dc_bus_log_each(const redisReply *reply, void (*fn)(void *data, const char *raw, size_t len), void *data);

#endif
